//! [`PromClient`]: one Prometheus exposition target (a node_exporter, a switch's
//! exporter) as a [`RemoteSource`]. A metrics fetch is one scrape of the target's URL
//! over http or https (pinned fingerprint or system roots, as for the other remotes),
//! with an optional bearer token, `Accept` for OpenMetrics and the text format, and
//! gzip. The scrape's samples are stored at the scrape time (or their own timestamps).
//! An exposition target has no tasks: task lists are empty and complete.

use std::fmt;

use async_trait::async_trait;
use fleetpoll_actors::{
    Cursor, ErrorClass, MetricBatch, RemoteId, RemoteSource, SourceError, TaskBatch, TaskQuery,
    TaskState,
};

use super::parse::Format;
use super::scrape::SeriesCache;
use crate::remote::endpoint::{ApiToken, ClientOptions, NodeAddress, RemoteEndpoint};
use crate::remote::http::HttpClient;
use crate::remote::Fingerprint;

/// The most series one scrape may return unless the remote sets `series_limit`.
pub const DEFAULT_SERIES_LIMIT: usize = 10_000;

/// Where a target is and how to ask it.
#[derive(Clone)]
pub struct PromTarget {
    /// `http://host:port/path` or `https://…`.
    pub url: String,
    /// The certificate's pinned SHA-256 fingerprint (https only), accepted when the
    /// certificate does not validate against the system roots.
    pub fingerprint: Option<Fingerprint>,
    /// A bearer token sent as `Authorization: Bearer …`.
    pub bearer: Option<String>,
    /// A scrape with more series fails as a bad reply.
    pub series_limit: usize,
}

impl fmt::Debug for PromTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromTarget")
            .field("url", &self.url)
            .field("fingerprint", &self.fingerprint)
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("series_limit", &self.series_limit)
            .finish()
    }
}

/// A URL split into what the transport needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeUrl {
    /// https or http.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (default 443 / 80).
    pub port: u16,
    /// Path and query (`/metrics`).
    pub path: String,
}

impl ScrapeUrl {
    /// Parses an absolute http or https URL without user info.
    pub fn parse(url: &str) -> Result<ScrapeUrl, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL ({e})"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?} must start with http:// or https://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url:?} names no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "{url:?} holds user info; use token_file for credentials"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        if port == 0 {
            return Err(format!("{url:?} has port 0"));
        }
        let path = uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        Ok(ScrapeUrl {
            tls,
            host: host.to_string(),
            port,
            path: if path.is_empty() { "/".into() } else { path },
        })
    }
}

/// A Prometheus exposition target.
pub struct PromClient {
    http: HttpClient,
    path: String,
    series_limit: usize,
    /// The target's series across scrapes (one scrape at a time: one poller per remote).
    series: std::sync::Mutex<SeriesCache>,
}

impl fmt::Debug for PromClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromClient")
            .field("http", &self.http)
            .field("path", &self.path)
            .field("series_limit", &self.series_limit)
            .finish()
    }
}

impl PromClient {
    /// A client of `target` for remote `remote`; fails only on a bad configuration.
    pub fn new(
        remote: RemoteId,
        target: PromTarget,
        options: ClientOptions,
    ) -> Result<PromClient, SourceError> {
        let url = ScrapeUrl::parse(&target.url)
            .map_err(|e| SourceError::new(ErrorClass::Other, format!("remote {remote}: {e}")))?;
        if target.fingerprint.is_some() && !url.tls {
            return Err(SourceError::new(
                ErrorClass::Other,
                format!("remote {remote}: a fingerprint needs an https URL"),
            ));
        }
        let endpoint = RemoteEndpoint {
            remote,
            nodes: vec![NodeAddress::new(url.host, url.port, target.fingerprint)],
            // Exposition targets take a bearer token, not an API token.
            token: ApiToken::new("", ""),
            options,
        };
        let bearer = target.bearer.map(|t| format!("Bearer {t}"));
        Ok(PromClient {
            http: HttpClient::exposition(endpoint, bearer, url.tls)?,
            path: url.path,
            series_limit: target.series_limit,
            series: Default::default(),
        })
    }
}

#[async_trait]
impl RemoteSource for PromClient {
    async fn fetch_metrics(&self, _since: Cursor) -> Result<MetricBatch, SourceError> {
        let remote = self.http.remote();
        let scrape_time = self.http.options().clock.now_secs();
        let reply = self.http.get_reply(&self.path).await?;
        let bad = |what: String| {
            SourceError::new(
                ErrorClass::BadReply,
                format!("remote {remote}: scrape of {}: {what}", self.path),
            )
        };
        let text = std::str::from_utf8(&reply.body)
            .map_err(|e| bad(format!("the reply is not UTF-8 ({e})")))?;
        let format = Format::from_content_type(reply.content_type.as_deref());
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .read(text, format, self.series_limit, scrape_time)
            .map_err(|e| bad(e.to_string()))
    }

    async fn list_tasks(&self, _query: &TaskQuery) -> Result<TaskBatch, SourceError> {
        Ok(TaskBatch::default())
    }

    async fn task_status(&self, upid: &str) -> Result<TaskState, SourceError> {
        Err(SourceError::new(
            ErrorClass::NotFound,
            format!(
                "remote {}: an exposition target has no tasks ({upid})",
                self.http.remote()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_host_port_and_path() {
        let u = ScrapeUrl::parse("http://127.0.0.1:9100/metrics").unwrap();
        assert_eq!(
            u,
            ScrapeUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 9100,
                path: "/metrics".into()
            }
        );
        let u = ScrapeUrl::parse("https://[::1]/probe?target=x").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "::1", 443));
        assert_eq!(u.path, "/probe?target=x");
        assert_eq!(ScrapeUrl::parse("http://h").unwrap().path, "/");
        for bad in [
            "ftp://h/x",
            "h:9100/metrics",
            "http://u:p@h/x",
            "http://h:0/",
        ] {
            assert!(ScrapeUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bearer_token_never_shows() {
        let target = PromTarget {
            url: "http://h/metrics".into(),
            fingerprint: None,
            bearer: Some("s3cr3t".into()),
            series_limit: 10,
        };
        assert!(!format!("{target:?}").contains("s3cr3t"));
        let client = PromClient::new(
            "t".into(),
            target,
            ClientOptions {
                roots: Some(std::sync::Arc::new(rustls::RootCertStore::empty())),
                ..ClientOptions::default()
            },
        )
        .unwrap();
        assert!(!format!("{client:?}").contains("s3cr3t"));
    }
}
