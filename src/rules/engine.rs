//! The rule engine's state machine: per (rule, remote, entity) an alert is inactive,
//! pending (the condition holds, not yet for `for_secs` of sample time) or firing; only
//! the moves to firing and to resolved are notified. Matching is cached per series, so
//! a sample costs a hash lookup when no rule names its metric.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fleetpoll_actors::{HookBatch, PollState, RemoteId, SeriesKey, StatusChange, UnixTime};
use serde::{Deserialize, Serialize};

use super::file::{Rule, RuleKind, RuleSet, Severity};

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, not yet long enough.
    Pending,
    /// The condition held long enough; notified.
    Firing,
}

/// What a notification says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// The alert started firing.
    Firing,
    /// The alert stopped firing.
    Resolved,
}

/// The identity of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct AlertKey {
    rule: Arc<str>,
    remote: RemoteId,
    /// `None` for a state rule.
    entity: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
struct Alert {
    state: AlertState,
    /// Sample time (wall time for state rules) at which the condition began to hold.
    pending_since: UnixTime,
    /// When it began firing.
    firing_since: Option<UnixTime>,
    value: Option<f64>,
    threshold: Option<f64>,
    /// The newest sample time evaluated.
    last_ts: UnixTime,
    /// Wall time of the newest sample (stale detection).
    last_seen: UnixTime,
    severity: Severity,
    labels: Arc<BTreeMap<String, String>>,
}

/// An alert as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    /// The rule.
    pub rule: String,
    /// The remote.
    pub remote: String,
    /// The entity (`null` for a state rule).
    pub entity: Option<String>,
    /// `pending` or `firing`.
    pub state: AlertState,
    /// Since when it is in that state (Unix seconds).
    pub since: UnixTime,
    /// The last value evaluated (`null` for a state rule).
    pub value: Option<f64>,
    /// The threshold that applies (an override's where one does).
    pub threshold: Option<f64>,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
}

/// A notification: the body POSTed to every webhook, and one log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The rule.
    pub rule: String,
    /// The remote.
    pub remote: String,
    /// The entity (`null` for a state rule).
    pub entity: Option<String>,
    /// `firing` or `resolved`.
    pub state: Change,
    /// Why it resolved: `cleared`, `stale`, `rule removed`, `rule changed`, `remote removed`.
    pub reason: Option<String>,
    /// The sample that caused the transition (`null` for state rules and stale).
    pub value: Option<f64>,
    /// The threshold that applied.
    pub threshold: Option<f64>,
    /// When (Unix seconds): the sample's time, or the wall time for state and stale.
    pub at: UnixTime,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
}

/// A rule that matched a series, with the override that applies, and whether an alert
/// of it may exist for the series (so that a sample that does not cross, of a series
/// without an alert, costs no alert lookup). The flag may be stale only towards `true`.
#[derive(Debug)]
struct Matched {
    rule: u32,
    over: Option<u16>,
    has_alert: AtomicBool,
}

/// Metric name → the metric rules on it.
type RulesByMetric = HashMap<Arc<str>, Vec<u32>>;

/// How many transitions the history keeps.
pub const HISTORY_MAX: usize = 1000;

/// The engine: the rules, the alerts, the caches.
#[derive(Debug, Default)]
pub struct RuleEngine {
    set: Arc<RuleSet>,
    /// Metric name → the metric rules on it (as numerator).
    by_metric: HashMap<Arc<str>, Vec<u32>>,
    /// Metrics some rule divides by.
    denominators: HashSet<Arc<str>>,
    /// The state rules (evaluated on status changes and every tick).
    state_rules: Vec<u32>,
    /// Per remote: the metric rules covering it, by metric.
    by_remote: FxHashMap<RemoteId, Arc<RulesByMetric>>,
    /// Per remote and series: the rules it feeds (computed at first sight).
    matches: FxHashMap<RemoteId, FxHashMap<SeriesKey, Arc<[Matched]>>>,
    /// The newest value of each denominator series.
    of_values: FxHashMap<(RemoteId, Arc<str>, Arc<str>), f64>,
    alerts: FxHashMap<AlertKey, Alert>,
    /// Each remote's state and since when (wall time), for state rules.
    remote_states: HashMap<RemoteId, (PollState, UnixTime)>,
    history: VecDeque<Transition>,
    /// Transitions so far by rule and kind (for `/metrics`).
    transitions: BTreeMap<(String, Change), u64>,
    /// Seconds after which an entity with no sample is stale: three intervals.
    stale_after: i64,
}

impl RuleEngine {
    /// An engine running `set`; entities resolve as stale after three `interval_secs`.
    pub fn new(set: RuleSet, interval_secs: u64) -> Self {
        let mut engine = RuleEngine {
            stale_after: 3 * interval_secs as i64,
            ..Default::default()
        };
        engine.index(Arc::new(set));
        engine
    }

    fn index(&mut self, set: Arc<RuleSet>) {
        self.by_metric.clear();
        self.denominators.clear();
        self.state_rules.clear();
        self.matches.clear();
        self.by_remote.clear();
        for (i, rule) in set.rules.iter().enumerate() {
            if let RuleKind::State(_) = &rule.kind {
                self.state_rules.push(i as u32);
            }
            if let RuleKind::Metric(m) = &rule.kind {
                self.by_metric
                    .entry(m.metric.clone())
                    .or_default()
                    .push(i as u32);
                if let Some(of) = &m.of {
                    self.denominators.insert(of.clone());
                }
            }
        }
        self.of_values
            .retain(|(_, _, metric), _| self.denominators.contains(metric));
        self.set = set;
    }

    /// The running rules.
    pub fn rules(&self) -> &RuleSet {
        &self.set
    }

    /// A new collection interval (stale detection follows it).
    pub fn set_interval(&mut self, interval_secs: u64) {
        self.stale_after = 3 * interval_secs as i64;
    }

    /// The metric rules covering `remote`, by metric (globbed once per remote).
    fn remote_rules(&mut self, remote: &RemoteId) -> Arc<RulesByMetric> {
        if let Some(index) = self.by_remote.get(remote) {
            return index.clone();
        }
        let index: RulesByMetric = self
            .by_metric
            .iter()
            .filter_map(|(metric, rules)| {
                let covering: Vec<u32> = rules
                    .iter()
                    .copied()
                    .filter(|&i| self.set.rules[i as usize].covers_remote(remote.as_str()))
                    .collect();
                (!covering.is_empty()).then(|| (metric.clone(), covering))
            })
            .collect();
        let index = Arc::new(index);
        self.by_remote.insert(remote.clone(), index.clone());
        index
    }

    fn matched(&mut self, remote: &RemoteId, key: &SeriesKey) -> Arc<[Matched]> {
        if let Some(m) = self.matches.get(remote).and_then(|r| r.get(key)) {
            return m.clone();
        }
        let covering = self.remote_rules(remote);
        let found: Arc<[Matched]> = match covering.get(&key.metric) {
            None => Arc::from([]),
            Some(candidates) => candidates
                .iter()
                .filter_map(|&i| {
                    let rule = &self.set.rules[i as usize];
                    let RuleKind::Metric(m) = &rule.kind else {
                        return None;
                    };
                    m.matches(&key.entity).map(|over| Matched {
                        rule: i,
                        over,
                        has_alert: AtomicBool::new(self.alerts.contains_key(&AlertKey {
                            rule: rule.name.clone(),
                            remote: remote.clone(),
                            entity: Some(key.entity.clone()),
                        })),
                    })
                })
                .collect(),
        };
        self.matches
            .entry(remote.clone())
            .or_default()
            .insert(key.clone(), found.clone());
        found
    }

    /// Evaluates a stored batch at wall time `now`.
    pub fn on_batch(&mut self, batch: &HookBatch, now: UnixTime) -> Vec<Transition> {
        let mut out = Vec::new();
        let series = &batch.batch.series;
        let matched: Vec<Arc<[Matched]>> = series
            .iter()
            .map(|k| self.matched(&batch.remote, k))
            .collect();
        let has_denominators = !self.denominators.is_empty();
        for sample in batch.samples() {
            let key = &series[sample.series as usize];
            if has_denominators && self.denominators.contains(&key.metric) {
                if let Some(v) = sample.comparable() {
                    self.of_values.insert(
                        (batch.remote.clone(), key.entity.clone(), key.metric.clone()),
                        v,
                    );
                }
            }
            let rules = &matched[sample.series as usize];
            if rules.is_empty() {
                continue;
            }
            let Some(value) = sample.comparable() else {
                continue;
            };
            for m in rules.iter() {
                let (holds, still, value, threshold) = {
                    let RuleKind::Metric(metric) = &self.set.rules[m.rule as usize].kind else {
                        continue;
                    };
                    let value = match &metric.of {
                        None => value,
                        Some(of) => {
                            let lookup = (batch.remote.clone(), key.entity.clone(), of.clone());
                            match self.of_values.get(&lookup) {
                                Some(&d) if d != 0.0 => value / d,
                                _ => continue,
                            }
                        }
                    };
                    let (threshold, clear) = metric.thresholds(m.over);
                    let holds = metric.op.holds(value, threshold);
                    (holds, metric.op.holds(value, clear), value, threshold)
                };
                // Most samples cross nothing and have no alert: nothing to look up.
                if !holds && !m.has_alert.load(Ordering::Relaxed) {
                    continue;
                }
                let rule = self.set.rules[m.rule as usize].clone();
                let alert_key = AlertKey {
                    rule: rule.name.clone(),
                    remote: batch.remote.clone(),
                    entity: Some(key.entity.clone()),
                };
                let exists = self.step(
                    &rule,
                    alert_key,
                    holds,
                    still,
                    Some(value),
                    Some(threshold),
                    sample.timestamp,
                    now,
                    &mut out,
                );
                m.has_alert.store(exists, Ordering::Relaxed);
            }
        }
        self.record(&out);
        out
    }

    /// Moves one alert on one observation: `holds` against the threshold, `still`
    /// against the clear threshold, at time `ts`.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        rule: &Rule,
        key: AlertKey,
        holds: bool,
        still: bool,
        value: Option<f64>,
        threshold: Option<f64>,
        ts: UnixTime,
        now: UnixTime,
        out: &mut Vec<Transition>,
    ) -> bool {
        match self.alerts.get_mut(&key) {
            None => {
                if !holds {
                    return false;
                }
                let mut alert = Alert {
                    state: AlertState::Pending,
                    pending_since: ts,
                    firing_since: None,
                    value,
                    threshold,
                    last_ts: ts,
                    last_seen: now,
                    severity: rule.def.severity,
                    labels: rule.labels.clone(),
                };
                if rule.hold == 0 {
                    alert.state = AlertState::Firing;
                    alert.firing_since = Some(ts);
                    out.push(transition(&key, &alert, Change::Firing, None, ts));
                }
                self.alerts.insert(key, alert);
                true
            }
            Some(alert) => {
                if ts < alert.last_ts {
                    return true;
                }
                alert.last_ts = ts;
                alert.last_seen = now;
                alert.value = value;
                alert.threshold = threshold;
                match alert.state {
                    AlertState::Pending if !holds => {
                        self.alerts.remove(&key);
                        false
                    }
                    AlertState::Pending => {
                        if ts - alert.pending_since >= rule.hold {
                            alert.state = AlertState::Firing;
                            alert.firing_since = Some(ts);
                            out.push(transition(&key, alert, Change::Firing, None, ts));
                        }
                        true
                    }
                    AlertState::Firing if still => true,
                    AlertState::Firing => {
                        out.push(transition(
                            &key,
                            alert,
                            Change::Resolved,
                            Some("cleared"),
                            ts,
                        ));
                        self.alerts.remove(&key);
                        false
                    }
                }
            }
        }
    }

    /// Evaluates the state rules on a remote's status change.
    pub fn on_status(&mut self, change: &StatusChange) -> Vec<Transition> {
        let mut out = Vec::new();
        match change.state() {
            None => {
                self.remote_states.remove(&change.remote);
                self.matches.remove(&change.remote);
                self.by_remote.remove(&change.remote);
                self.of_values.retain(|(r, _, _), _| r != &change.remote);
                let gone: Vec<AlertKey> = self
                    .alerts
                    .keys()
                    .filter(|k| k.remote == change.remote)
                    .cloned()
                    .collect();
                for key in gone {
                    self.resolve(&key, "remote removed", change.at, &mut out);
                }
            }
            Some(state) => {
                self.remote_states
                    .insert(change.remote.clone(), (state, change.at));
                self.eval_state_rules(&change.remote, change.at, &mut out);
            }
        }
        self.record(&out);
        out
    }

    fn eval_state_rules(&mut self, remote: &RemoteId, now: UnixTime, out: &mut Vec<Transition>) {
        let Some(&(state, _)) = self.remote_states.get(remote) else {
            return;
        };
        for i in self.state_rules.clone() {
            let rule = self.set.rules[i as usize].clone();
            let RuleKind::State(states) = &rule.kind else {
                continue;
            };
            if !rule.covers_remote(remote.as_str()) {
                continue;
            }
            let key = AlertKey {
                rule: rule.name.clone(),
                remote: remote.clone(),
                entity: None,
            };
            let holds = states.contains(&state);
            self.step(&rule, key, holds, holds, None, None, now, now, out);
        }
    }

    /// Wall-clock work: state rules whose hold elapsed, entities gone stale.
    pub fn on_tick(&mut self, now: UnixTime) -> Vec<Transition> {
        let mut out = Vec::new();
        if !self.state_rules.is_empty() {
            let remotes: Vec<RemoteId> = self.remote_states.keys().cloned().collect();
            for remote in remotes {
                self.eval_state_rules(&remote, now, &mut out);
            }
        }
        let stale: Vec<AlertKey> = self
            .alerts
            .iter()
            .filter(|(k, a)| k.entity.is_some() && now - a.last_seen > self.stale_after)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.resolve(&key, "stale", now, &mut out);
        }
        self.record(&out);
        out
    }

    /// Ends an alert: a firing one is notified as resolved, a pending one just ends.
    fn resolve(&mut self, key: &AlertKey, reason: &str, at: UnixTime, out: &mut Vec<Transition>) {
        if let Some(alert) = self.alerts.remove(key) {
            if alert.state == AlertState::Firing {
                let mut t = transition(key, &alert, Change::Resolved, Some(reason), at);
                t.value = None;
                out.push(t);
            }
        }
    }

    /// Runs a new rule set: unchanged rules keep their alerts; a removed rule resolves
    /// its alerts; a changed one keeps those it still covers (evaluated against its new
    /// thresholds at the next sample) and resolves the others.
    pub fn apply(&mut self, set: RuleSet, now: UnixTime) -> Vec<Transition> {
        let mut out = Vec::new();
        let keys: Vec<AlertKey> = self.alerts.keys().cloned().collect();
        for key in keys {
            let old = self.set.rule(&key.rule).cloned();
            match set.rule(&key.rule) {
                None => self.resolve(&key, "rule removed", now, &mut out),
                Some(new) if old.as_ref().is_some_and(|o| o.def == new.def) => {}
                Some(new) => {
                    let still = new.covers_remote(key.remote.as_str())
                        && match (&new.kind, &key.entity) {
                            (RuleKind::Metric(m), Some(e)) => {
                                old.as_ref().is_some_and(|o| {
                                    o.def.metric == new.def.metric && o.def.of == new.def.of
                                }) && m.matches(e).is_some()
                            }
                            (RuleKind::State(_), None) => true,
                            _ => false,
                        };
                    if still {
                        if let Some(alert) = self.alerts.get_mut(&key) {
                            alert.severity = new.def.severity;
                            alert.labels = new.labels.clone();
                        }
                    } else {
                        self.resolve(&key, "rule changed", now, &mut out);
                    }
                }
            }
        }
        self.index(Arc::new(set));
        let remotes: Vec<RemoteId> = self.remote_states.keys().cloned().collect();
        for remote in remotes {
            self.eval_state_rules(&remote, now, &mut out);
        }
        self.record(&out);
        out
    }

    /// Takes back the firing alerts kept across a restart (not notified again); those
    /// whose rule is gone are resolved.
    pub fn restore(&mut self, firing: Vec<AlertView>, now: UnixTime) -> Vec<Transition> {
        let mut out = Vec::new();
        for view in firing {
            let key = AlertKey {
                rule: Arc::from(view.rule.as_str()),
                remote: RemoteId::new(&view.remote),
                entity: view.entity.as_deref().map(Arc::from),
            };
            let alert = Alert {
                state: AlertState::Firing,
                pending_since: view.since,
                firing_since: Some(view.since),
                value: view.value,
                threshold: view.threshold,
                last_ts: view.since,
                last_seen: now,
                severity: view.severity,
                labels: Arc::new(view.labels),
            };
            match self.set.rule(&key.rule) {
                Some(_) => {
                    self.alerts.insert(key, alert);
                }
                None => {
                    out.push(transition(
                        &key,
                        &alert,
                        Change::Resolved,
                        Some("rule removed"),
                        now,
                    ));
                }
            }
        }
        self.record(&out);
        out
    }

    fn record(&mut self, out: &[Transition]) {
        for t in out {
            *self
                .transitions
                .entry((t.rule.clone(), t.state))
                .or_default() += 1;
            if self.history.len() == HISTORY_MAX {
                self.history.pop_back();
            }
            self.history.push_front(t.clone());
        }
    }

    /// The pending and firing alerts, by rule, remote and entity.
    pub fn alerts(&self) -> Vec<AlertView> {
        let mut list: Vec<(&AlertKey, &Alert)> = self.alerts.iter().collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        list.into_iter().map(|(k, a)| view(k, a)).collect()
    }

    /// The firing alerts only (what a restart keeps).
    pub fn firing(&self) -> Vec<AlertView> {
        self.alerts()
            .into_iter()
            .filter(|a| a.state == AlertState::Firing)
            .collect()
    }

    /// The newest `limit` transitions, newest first.
    pub fn history(&self, limit: usize) -> Vec<Transition> {
        self.history.iter().take(limit).cloned().collect()
    }

    /// Per rule: alerts pending and firing now.
    pub fn counts(&self) -> BTreeMap<String, (u64, u64)> {
        let mut counts: BTreeMap<String, (u64, u64)> = self
            .set
            .rules
            .iter()
            .map(|r| (r.name.to_string(), (0, 0)))
            .collect();
        for (k, a) in &self.alerts {
            let c = counts.entry(k.rule.to_string()).or_default();
            match a.state {
                AlertState::Pending => c.0 += 1,
                AlertState::Firing => c.1 += 1,
            }
        }
        counts
    }

    /// Transitions so far by rule and kind.
    pub fn transitions(&self) -> &BTreeMap<(String, Change), u64> {
        &self.transitions
    }
}

fn view(key: &AlertKey, alert: &Alert) -> AlertView {
    AlertView {
        rule: key.rule.to_string(),
        remote: key.remote.to_string(),
        entity: key.entity.as_deref().map(str::to_string),
        state: alert.state,
        since: match alert.state {
            AlertState::Pending => alert.pending_since,
            AlertState::Firing => alert.firing_since.unwrap_or(alert.pending_since),
        },
        value: alert.value,
        threshold: alert.threshold,
        severity: alert.severity,
        labels: (*alert.labels).clone(),
    }
}

fn transition(
    key: &AlertKey,
    alert: &Alert,
    state: Change,
    reason: Option<&str>,
    at: UnixTime,
) -> Transition {
    Transition {
        rule: key.rule.to_string(),
        remote: key.remote.to_string(),
        entity: key.entity.as_deref().map(str::to_string),
        state,
        reason: reason.map(str::to_string),
        value: alert.value,
        threshold: alert.threshold,
        at,
        severity: alert.severity,
        labels: (*alert.labels).clone(),
    }
}
