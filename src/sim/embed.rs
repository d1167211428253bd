//! The simulator's remotes as an embedder's engine config: each remote with a real
//! PVE/PBS client over HTTPS to all its nodes, each node's certificate pinned by
//! fingerprint. For the examples
//! and tests that embed the engine without a config file.

use std::sync::Arc;

use fleetpoll_actors::{Clock, RemoteConfig, SourceError};

use super::info::SimRemoteInfo;
use crate::remote::tls::system_roots;
use crate::remote::{ApiToken, ClientOptions, RemoteEndpoint};

impl SimRemoteInfo {
    /// This remote as the engine polls it, through a real client reading `clock`.
    pub fn engine_remote(&self, clock: Arc<dyn Clock>) -> Result<RemoteConfig, SourceError> {
        if let Some(url) = self.url() {
            let target = crate::prom::PromTarget {
                url,
                fingerprint: None,
                bearer: Some(self.secret.clone()),
                series_limit: crate::prom::DEFAULT_SERIES_LIMIT,
            };
            let options = ClientOptions {
                roots: Some(system_roots()),
                clock,
                ..ClientOptions::default()
            };
            let client = crate::prom::PromClient::new(self.id.as_str().into(), target, options)?;
            let mut rc = RemoteConfig::new(self.id.as_str(), self.kind, Arc::new(client));
            rc.interval = Some(std::time::Duration::from_secs(
                crate::config::EXPOSITION_DEFAULT_INTERVAL_SECS,
            ));
            return Ok(rc);
        }
        let endpoint = RemoteEndpoint {
            remote: self.id.as_str().into(),
            nodes: self.node_addresses(),
            token: ApiToken::new(self.token_id.clone(), self.secret.clone()),
            options: ClientOptions {
                path_prefix: self.path_prefix.clone(),
                roots: Some(system_roots()),
                clock,
                ..ClientOptions::default()
            },
        };
        let source = endpoint.into_source(self.kind)?;
        Ok(RemoteConfig::new(self.id.as_str(), self.kind, source))
    }
}
