//! `fleetpoll sim --write-config FILE`: a fleetpoll config for the simulated fleet —
//! every node's address with its pinned fingerprint, tokens, exposition targets as
//! `type = "prometheus"` remotes with their URLs and bearer tokens — so
//! `fleetpoll run --config FILE` works against the simulator with no editing. The file holds the tokens, so it is created
//! with mode 0600; the data directories sit next to it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::{Config, NodeEntry, RemoteEntry, Secret};
use crate::sim::Simulator;

/// The config for `sim`'s fleet, storing data under `data_dir`.
pub fn fleet_config(sim: &Simulator, data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.storage.state_dir = data_dir.join("state");
    config.storage.cache_dir = data_dir.join("cache");
    for info in sim.remotes() {
        if let Some(url) = info.url() {
            config.remotes.push(RemoteEntry {
                token: Some(Secret(info.secret.clone())),
                ..RemoteEntry::prometheus(&info.id, &url)
            });
            continue;
        }
        config.remotes.push(RemoteEntry {
            id: info.id.clone(),
            kind: info.kind.as_str().to_string(),
            nodes: info
                .nodes
                .iter()
                .map(|node| NodeEntry {
                    address: node.address.to_string(),
                    fingerprint: Some(node.fingerprint.to_string()),
                })
                .collect(),
            auth_id: info.token_id.clone(),
            token: Some(Secret(info.secret.clone())),
            path_prefix: info.path_prefix.clone(),
            ..RemoteEntry::new(&info.id, info.kind.as_str())
        });
    }
    config
}

/// Writes the fleet's config to `path` (mode 0600, replaced atomically).
pub fn write_config(sim: &Simulator, path: &Path) -> std::io::Result<()> {
    let stem = path
        .file_stem()
        .map_or_else(|| "fleetpoll".into(), |s| s.to_string_lossy().into_owned());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let data_dir = std::path::absolute(dir)?.join(format!("{stem}-data"));
    let config = fleet_config(sim, &data_dir);
    let text = toml::to_string_pretty(&config).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("toml.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(b"# Written by `fleetpoll sim --write-config`: the simulated fleet.\n")?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimConfig;

    #[tokio::test]
    async fn every_node_is_written_with_its_own_address_and_fingerprint() {
        let sim = Simulator::start(SimConfig {
            prom_targets: 1,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let config = fleet_config(&sim, Path::new("/tmp/x"));
        let pve = config.remotes.iter().find(|r| r.id == "pve-1").unwrap();
        let info = sim.remote("pve-1").unwrap();
        assert_eq!(pve.nodes.len(), 3);
        for (entry, node) in pve.nodes.iter().zip(&info.nodes) {
            assert_eq!(entry.address, node.address.to_string());
            assert_eq!(entry.fingerprint, Some(node.fingerprint.to_string()));
        }
        assert_ne!(pve.nodes[0].address, pve.nodes[1].address);
        assert_ne!(pve.nodes[0].fingerprint, pve.nodes[1].fingerprint);
        assert_eq!(pve.path_prefix, "", "a real remote's paths");
        let prom = config.remotes.iter().find(|r| r.id == "prom-1").unwrap();
        assert_eq!(
            prom.url.as_deref(),
            sim.remote("prom-1").unwrap().url().as_deref()
        );
        sim.shutdown().await;
    }
}
