//! What the command line (or its environment variables) sets over the file: the values
//! that differ between instances sharing one config file — the instance's name and
//! shard, the API address and the data directories — so that a systemd template or a StatefulSet can run every
//! instance from the same file. Each wins over its key of the file; reloads apply the
//! same overrides again, so they never read as a change.

use std::path::PathBuf;

use super::Config;

/// Values that win over the file's (`fleetpoll run|validate --shard-index …`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `cluster.instance` (`--instance`, `FLEETPOLL_INSTANCE`).
    pub instance: Option<String>,
    /// `cluster.shard_index` (`--shard-index`, `FLEETPOLL_SHARD_INDEX`).
    pub shard_index: Option<u32>,
    /// `api.listen` (`--listen`, `FLEETPOLL_LISTEN`).
    pub listen: Option<String>,
    /// `storage.state_dir` (`--state-dir`); relative to the working directory.
    pub state_dir: Option<PathBuf>,
    /// `storage.cache_dir` (`--cache-dir`); relative to the working directory.
    pub cache_dir: Option<PathBuf>,
}

impl Overrides {
    /// Writes the overrides into a parsed file. A relative directory is made absolute
    /// against the working directory here (the file's own paths are taken relative to
    /// the file's directory later, and an absolute path is left alone there).
    pub fn apply(&self, config: &mut Config) {
        if let Some(name) = &self.instance {
            config.cluster.instance = Some(name.clone());
        }
        if let Some(index) = self.shard_index {
            config.cluster.shard_index = index;
        }
        if let Some(listen) = &self.listen {
            config.api.listen = listen.clone();
        }
        for (given, dir) in [
            (&self.state_dir, &mut config.storage.state_dir),
            (&self.cache_dir, &mut config.storage.cache_dir),
        ] {
            if let Some(path) = given {
                *dir = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            }
        }
    }
}
