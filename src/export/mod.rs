//! Exporters: every stored sample (of the selected remotes and metrics) also sent to the
//! tools operators run — Graphite, InfluxDB, statsd, Prometheus remote write. Each
//! exporter is a hook of the engine, so it runs in its own supervised actor behind its
//! own bounded queue, and a stalled receiver slows nobody else. Names per kind are in
//! `docs/export.md`.
//!
//! # Layout
//!
//! - `spec`: an exporter as the config resolved it ([`ExporterSpec`]; secrets redacted).
//! - `names`: the naming rules and the remote/metric selection.
//! - `encode`: batches into each kind's wire format, sealed into chunks.
//! - `remote_write`: remote write's protobuf messages and snappy encoding.
//! - `transport`: TCP, UDP and HTTP(S) sends within a timeout, failures classified.
//! - `exporter`: the hook — chunk queue, drop-oldest bound, jittered backoff.
//! - `status`: counters shared with the API.
//! - this file: [`Exporters`], the running set, started with the engine and changed by a
//!   reload as a diff.

mod encode;
mod exporter;
mod names;
mod remote_write;
mod spec;
mod status;
mod transport;

use std::sync::Arc;

use fleetpoll_actors::{EngineBuilder, EngineError, EngineHandle, HookOptions};
use parking_lot::Mutex;
use serde::Serialize;

pub use exporter::Exporter;
pub use spec::{ExportKind, ExporterSpec, HttpTarget, Target};
pub use status::{ExporterStats, ExporterStatus};

/// One running exporter.
#[derive(Debug, Clone)]
struct Running {
    spec: Arc<ExporterSpec>,
    stats: Arc<ExporterStats>,
}

/// The exporters the daemon runs (cheap to clone; shared with the API).
#[derive(Debug, Clone, Default)]
pub struct Exporters {
    running: Arc<Mutex<Vec<Running>>>,
}

/// What a reload did to the exporters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReload {
    /// Exporters started.
    pub added: Vec<String>,
    /// Exporters stopped (after their last flush).
    pub removed: Vec<String>,
    /// Exporters restarted with their new settings.
    pub changed: Vec<String>,
}

/// The hook name of an exporter.
pub fn hook_name(exporter: &str) -> String {
    format!("export:{exporter}")
}

fn hook_of(spec: &Arc<ExporterSpec>) -> (Running, Box<Exporter>, HookOptions) {
    let stats = Arc::new(ExporterStats::default());
    let hook = Box::new(Exporter::new(spec.clone(), stats.clone()));
    let options = HookOptions {
        queue_max_points: spec.queue_max_points.max(1),
    };
    (
        Running {
            spec: spec.clone(),
            stats,
        },
        hook,
        options,
    )
}

impl Exporters {
    /// Registers every exporter with an engine about to start (they see its first batch).
    pub fn register(specs: &[ExporterSpec], mut builder: EngineBuilder) -> (Self, EngineBuilder) {
        let mut running = Vec::new();
        for spec in specs {
            let (r, hook, options) = hook_of(&Arc::new(spec.clone()));
            builder = builder.hook_with(&hook_name(&spec.name), hook, options);
            running.push(r);
        }
        (
            Self {
                running: Arc::new(Mutex::new(running)),
            },
            builder,
        )
    }

    /// Applies a new set as a diff: an exporter whose revision is unchanged keeps
    /// running untouched; a removed one flushes and stops; a changed one is replaced.
    pub async fn apply(
        &self,
        engine: &EngineHandle,
        specs: &[ExporterSpec],
    ) -> Result<ExportReload, EngineError> {
        let old: Vec<Running> = self.running.lock().clone();
        let mut report = ExportReload::default();
        let mut next = Vec::new();
        for r in &old {
            match specs.iter().find(|s| s.name == r.spec.name) {
                Some(s) if s.revision == r.spec.revision => next.push(r.clone()),
                Some(_) => {
                    engine.remove_hook(&hook_name(&r.spec.name)).await?;
                    report.changed.push(r.spec.name.clone());
                }
                None => {
                    engine.remove_hook(&hook_name(&r.spec.name)).await?;
                    report.removed.push(r.spec.name.clone());
                }
            }
        }
        for spec in specs {
            if next.iter().any(|r| r.spec.name == spec.name) {
                continue;
            }
            let (r, hook, options) = hook_of(&Arc::new(spec.clone()));
            engine
                .add_hook(&hook_name(&spec.name), hook, options)
                .await?;
            if !report.changed.contains(&spec.name) {
                report.added.push(spec.name.clone());
            }
            next.push(r);
        }
        // Config order, as the API lists them.
        next.sort_by_key(|r| specs.iter().position(|s| s.name == r.spec.name));
        *self.running.lock() = next;
        Ok(report)
    }

    /// Every exporter's status, with its hook's queue and drops.
    pub fn status(&self, engine: &EngineHandle) -> Vec<ExporterStatus> {
        let hooks = engine.hooks();
        let running = self.running.lock().clone();
        running
            .iter()
            .map(|r| {
                let name = hook_name(&r.spec.name);
                let hook = hooks.iter().find(|h| h.name == name);
                r.stats.status(
                    &r.spec.name,
                    r.spec.kind.as_str(),
                    r.spec.target.transport(),
                    hook,
                )
            })
            .collect()
    }

    /// The stats of the exporter named `name`, if it runs.
    pub fn stats(&self, name: &str) -> Option<Arc<ExporterStats>> {
        self.running
            .lock()
            .iter()
            .find(|r| r.spec.name == name)
            .map(|r| r.stats.clone())
    }
}
