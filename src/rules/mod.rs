//! Local evaluation: threshold and state rules run where the samples arrive, as a hook
//! of the engine, and notify only changes — to the log and to webhooks.
//!
//! - [`file`](mod@file): the rules file (`[rules] file`), validated whole, compiled to a [`RuleSet`].
//! - [`engine`]: the state machine per (rule, remote, entity): pending → firing →
//!   resolved, `for_secs` in sample time, hysteresis, overrides, ratios, staleness.
//! - [`webhook`]: one sender task per webhook with its own queue and retries.
//! - here: [`Rules`], the running rules shared by the hook, the API and reloads, which
//!   keeps the firing alerts in the state directory so a restart notifies none again.

pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod file;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleetpoll_actors::{Clock, Hook, HookBatch, HookError, StatusChange, UnixTime};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use engine::{AlertState, AlertView, Change, RuleEngine, Transition, HISTORY_MAX};
pub use file::{RuleSet, Severity};
use webhook::{Webhook, WebhookStatus};

use crate::durable::{create_dir_all_synced, move_aside, write_atomic, Mode};

/// Transitions so far of one rule and kind.
pub type TransitionCount = (String, Change, u64);

/// The name the rules hook is registered under.
pub const HOOK_NAME: &str = "rules";

/// How often the rules look at the wall clock (state-rule holds, staleness) and write
/// a waiting change of the firing alerts.
const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, Deserialize)]
struct FiringFile {
    version: u32,
    firing: Vec<AlertView>,
}

/// The running rules: the engine, the webhooks, the file of firing alerts.
#[derive(Debug)]
pub struct Rules {
    engine: Mutex<RuleEngine>,
    webhooks: Mutex<Vec<Webhook>>,
    firing_file: Option<PathBuf>,
    /// When the firing alerts were last written, and whether a change waits.
    written: Mutex<(Option<tokio::time::Instant>, bool)>,
    error: Mutex<Option<String>>,
    clock: Arc<dyn Clock>,
}

/// The firing alerts are written at most this often (a change waits for the next
/// write, at the latest the next tick or the hook's stop).
const WRITE_EVERY: Duration = Duration::from_secs(1);

impl Rules {
    /// Starts `set`; with a state directory, the firing alerts kept there are taken back
    /// (a corrupt file is set aside and named in the log).
    pub fn start(
        set: RuleSet,
        interval_secs: u64,
        state_dir: Option<&Path>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<Rules>> {
        let firing_file = match state_dir {
            Some(dir) => {
                let dir = dir.join("alerts");
                create_dir_all_synced(&dir).map_err(|e| {
                    anyhow::anyhow!("cannot create {} for the firing alerts: {e}", dir.display())
                })?;
                Some(dir.join("firing.json"))
            }
            None => None,
        };
        let webhooks = set.webhooks.iter().cloned().map(Webhook::start).collect();
        let rules = Arc::new(Rules {
            engine: Mutex::new(RuleEngine::new(set, interval_secs)),
            webhooks: Mutex::new(webhooks),
            firing_file,
            written: Mutex::new((None, false)),
            error: Mutex::new(None),
            clock,
        });
        let kept = rules.read_firing();
        let now = rules.clock.now_secs();
        let out = rules.engine.lock().restore(kept, now);
        rules.emit(out);
        Ok(rules)
    }

    fn read_firing(&self) -> Vec<AlertView> {
        let Some(path) = &self.firing_file else {
            return Vec::new();
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read the firing alerts; they will notify again");
                return Vec::new();
            }
        };
        match serde_json::from_slice::<FiringFile>(&bytes) {
            Ok(f) => f.firing,
            Err(e) => {
                let aside = move_aside(path, "corrupt");
                tracing::error!(file = %path.display(), error = %e, set_aside = ?aside.ok(),
                    "the firing-alerts file is corrupt; set aside, its alerts will notify again");
                Vec::new()
            }
        }
    }

    fn write_firing(&self, firing: Vec<AlertView>) {
        let Some(path) = &self.firing_file else {
            return;
        };
        let file = FiringFile { version: 1, firing };
        let result = serde_json::to_vec_pretty(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_atomic(path, &bytes, Mode::Umask).map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::error!(file = %path.display(), error = %e,
                "cannot keep the firing alerts; after a restart they would notify again");
        }
    }

    /// The hook that feeds the rules.
    pub fn hook(self: &Arc<Self>) -> RulesHook {
        RulesHook {
            rules: self.clone(),
        }
    }

    /// Logs and sends transitions, and keeps the firing alerts when any changed.
    fn emit(&self, out: Vec<Transition>) {
        if out.is_empty() {
            return;
        }
        let webhooks = self.webhooks.lock();
        for t in out {
            log(&t);
            let t = Arc::new(t);
            for w in webhooks.iter() {
                w.notify(&t);
            }
        }
        drop(webhooks);
        self.keep_firing(false);
    }

    /// Writes the firing alerts if a change waits and the last write is old enough
    /// (`now`: whatever its age).
    fn keep_firing(&self, now: bool) {
        let due = {
            let mut written = self.written.lock();
            let old = written.0.is_none_or(|at| at.elapsed() >= WRITE_EVERY);
            if now || old {
                *written = (Some(tokio::time::Instant::now()), false);
                true
            } else {
                written.1 = true;
                false
            }
        };
        if due {
            let firing = self.engine.lock().firing();
            self.write_firing(firing);
        }
    }

    /// Writes the firing alerts if a change is waiting.
    fn flush_firing(&self) {
        if self.written.lock().1 {
            self.keep_firing(true);
        }
    }

    /// Runs a new rule set (a reload): see [`RuleEngine::apply`]. Webhooks whose
    /// definition is unchanged keep their queue.
    pub fn apply(&self, set: RuleSet) {
        let now = self.clock.now_secs();
        {
            let mut webhooks = self.webhooks.lock();
            let mut old: Vec<Webhook> = std::mem::take(&mut *webhooks);
            for target in &set.webhooks {
                match old.iter().position(|w| w.target == *target) {
                    Some(i) => webhooks.push(old.swap_remove(i)),
                    None => webhooks.push(Webhook::start(target.clone())),
                }
            }
        }
        let out = self.engine.lock().apply(set, now);
        *self.error.lock() = None;
        self.emit(out);
    }

    /// A new collection interval.
    pub fn set_interval(&self, interval_secs: u64) {
        self.engine.lock().set_interval(interval_secs);
    }

    /// Records why the rules file on disk was not applied (`None`: it was).
    pub fn set_error(&self, error: Option<String>) {
        *self.error.lock() = error;
    }

    /// Why the last change of the rules file was rejected, if it was.
    pub fn error(&self) -> Option<String> {
        self.error.lock().clone()
    }

    /// The rules file in use.
    pub fn path(&self) -> Option<PathBuf> {
        self.engine.lock().rules().path.clone()
    }

    /// How many rules run.
    pub fn rule_count(&self) -> usize {
        self.engine.lock().rules().rules.len()
    }

    /// The pending and firing alerts.
    pub fn alerts(&self) -> Vec<AlertView> {
        self.engine.lock().alerts()
    }

    /// The newest `limit` transitions, newest first.
    pub fn history(&self, limit: usize) -> Vec<Transition> {
        self.engine.lock().history(limit)
    }

    /// Per rule: (pending, firing) now, and the transitions so far.
    pub fn counts(&self) -> (BTreeMap<String, (u64, u64)>, Vec<TransitionCount>) {
        let engine = self.engine.lock();
        let transitions = engine
            .transitions()
            .iter()
            .map(|((r, c), n)| (r.clone(), *c, *n))
            .collect();
        (engine.counts(), transitions)
    }

    /// Alerts firing now.
    pub fn firing_count(&self) -> usize {
        self.engine.lock().firing().len()
    }

    /// Every webhook's counters.
    pub fn webhooks(&self) -> Vec<WebhookStatus> {
        self.webhooks.lock().iter().map(Webhook::status).collect()
    }
}

fn log(t: &Transition) {
    let entity = t.entity.as_deref().unwrap_or("-");
    let reason = t.reason.as_deref().unwrap_or("-");
    match t.state {
        Change::Firing => {
            tracing::warn!(target: "fleetpoll::alerts", rule = %t.rule, remote = %t.remote,
            entity, value = ?t.value, threshold = ?t.threshold, at = t.at, severity = ?t.severity,
            "alert firing")
        }
        Change::Resolved => {
            tracing::info!(target: "fleetpoll::alerts", rule = %t.rule, remote = %t.remote,
            entity, reason, at = t.at, severity = ?t.severity, "alert resolved")
        }
    }
}

/// The hook through which the engine feeds the rules.
#[derive(Debug)]
pub struct RulesHook {
    rules: Arc<Rules>,
}

#[async_trait]
impl Hook for RulesHook {
    async fn on_batch(&mut self, batch: &HookBatch) -> Result<(), HookError> {
        let now = self.rules.clock.now_secs();
        let out = self.rules.engine.lock().on_batch(batch, now);
        self.rules.emit(out);
        Ok(())
    }

    async fn on_status(&mut self, change: &StatusChange) -> Result<(), HookError> {
        let out = self.rules.engine.lock().on_status(change);
        self.rules.emit(out);
        Ok(())
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(TICK)
    }

    async fn on_tick(&mut self, now: UnixTime) -> Result<(), HookError> {
        let out = self.rules.engine.lock().on_tick(now);
        self.rules.emit(out);
        self.rules.flush_firing();
        Ok(())
    }

    async fn on_stop(&mut self) {
        self.rules.flush_firing();
    }
}
