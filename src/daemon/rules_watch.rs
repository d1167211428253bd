//! Watching the rules file: a change on disk (an editor's save, a rename over it, a
//! config-management tool) is read and validated whole; a valid file is applied by the
//! daemon's reload, as SIGHUP would (so that which remotes' metrics are used follows the
//! rules); a file that does not validate is rejected with the rule and key named, in
//! the log and in `/api/v1/daemon`, and the running rules stay. The directory is
//! watched, not the file, so that a file replaced by rename is still followed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::api::ReloadRequest;
use crate::rules::{RuleSet, Rules};

/// Quiet time after the last event before the file is read (editors write in steps).
const SETTLE: Duration = Duration::from_millis(300);

/// A running watch; dropping it stops watching.
#[derive(Debug)]
pub(super) struct RulesWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RulesWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RulesWatch {
    /// Watches the running rules' file; `None` without one (or when the directory
    /// cannot be watched, which is logged: SIGHUP still reloads).
    pub(super) fn start(
        rules: Arc<Rules>,
        reload: tokio::sync::mpsc::Sender<ReloadRequest>,
    ) -> Option<RulesWatch> {
        let path = rules.path()?;
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        let name = path.file_name()?.to_owned();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    if event.paths.iter().any(|p| p.file_name() == Some(&name)) {
                        let _ = tx.send(());
                    }
                }
            })
            .map_err(
                |e| tracing::warn!(error = %e, "cannot watch the rules file; SIGHUP reloads it"),
            )
            .ok()?;
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the rules file's directory; SIGHUP reloads it");
            return None;
        }
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let the writer finish, then read once for the whole burst.
                loop {
                    match tokio::time::timeout(SETTLE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let loaded = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || RuleSet::load(&path)
                })
                .await;
                match loaded {
                    Ok(Ok(set)) => {
                        let n = set.rules.len();
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        if reload.send(tx).await.is_err() {
                            return;
                        }
                        match rx.await {
                            Ok(Ok(_)) => tracing::info!(file = %path.display(), rules = n,
                                "rules file changed; applied"),
                            Ok(Err(err)) => rules.set_error(Some(err)),
                            Err(_) => return,
                        }
                    }
                    Ok(Err(err)) => {
                        tracing::error!(error = %err, "rules file changed but is invalid; the running rules stay");
                        rules.set_error(Some(err.to_string()));
                    }
                    Err(e) => tracing::error!(error = %e, "reading the rules file failed"),
                }
            }
        });
        Some(RulesWatch {
            _watcher: watcher,
            task,
        })
    }
}
