//! The state machine on hand-made batches: holds in sample time, hysteresis, ratios,
//! rates with per-entity overrides, reloads, staleness, state rules, restarts.

use std::path::Path;
use std::sync::Arc;

use fleetpoll_actors::{
    HookBatch, MetricBatch, MetricKind, PollState, RemoteId, RemoteKind, RemoteStatus, StatusChange,
};

use super::engine::{AlertState, Change, RuleEngine, Transition};
use super::file::RuleSet;

fn rules(text: &str) -> RuleSet {
    RuleSet::parse(Path::new("rules.toml"), text).unwrap()
}

/// A batch of one remote: `(entity, metric, kind, ts, value, rate)`.
type Point<'a> = (&'a str, &'a str, MetricKind, i64, f64, Option<f64>);

fn batch(points: &[Point<'_>]) -> HookBatch {
    let mut b = MetricBatch::default();
    let mut rates = Vec::new();
    for &(entity, metric, kind, ts, value, rate) in points {
        crate::test_batches::push(&mut b, entity, metric, kind, ts, value);
        rates.push(rate);
    }
    HookBatch::with_rates(RemoteId::new("pve-1"), Arc::new(b), rates)
}

fn cpu(
    entity: &str,
    ts: i64,
    value: f64,
) -> (&str, &'static str, MetricKind, i64, f64, Option<f64>) {
    (entity, "cpu_current", MetricKind::Gauge, ts, value, None)
}

fn states(out: &[Transition]) -> Vec<(String, Change, Option<String>)> {
    out.iter()
        .map(|t| {
            (
                t.entity.clone().unwrap_or_default(),
                t.state,
                t.reason.clone(),
            )
        })
        .collect()
}

const BUSY: &str = r#"
[[rules]]
name = "guest-cpu-busy"
entities = "qemu/*"
metric = "cpu_current"
op = ">"
threshold = 0.95
clear_threshold = 0.90
for_secs = 300
"#;

#[test]
fn a_batch_with_ten_minutes_of_history_fires_by_itself_after_the_hold() {
    let mut e = RuleEngine::new(rules(BUSY), 10);
    let history: Vec<_> = (0..=60)
        .map(|i| cpu("qemu/100", 1000 + i * 10, 0.99))
        .collect();
    let out = e.on_batch(&batch(&history), 2000);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].state, Change::Firing);
    assert_eq!(out[0].at, 1300, "fired at the sample that completed 300 s");
    assert_eq!((out[0].value, out[0].threshold), (Some(0.99), Some(0.95)));
    let alerts = e.alerts();
    assert_eq!(
        (alerts[0].state, alerts[0].since),
        (AlertState::Firing, 1300)
    );
}

#[test]
fn the_hold_restarts_when_the_condition_breaks_and_pending_is_never_notified() {
    let mut e = RuleEngine::new(rules(BUSY), 10);
    let out = e.on_batch(
        &batch(&[
            cpu("qemu/100", 0, 0.99),
            cpu("qemu/100", 290, 0.99),
            cpu("qemu/100", 295, 0.5),
        ]),
        300,
    );
    assert!(out.is_empty());
    assert!(
        e.alerts().is_empty(),
        "a broken hold ends the pending alert"
    );
    let out = e.on_batch(
        &batch(&[cpu("qemu/100", 300, 0.99), cpu("qemu/100", 590, 0.99)]),
        600,
    );
    assert!(out.is_empty(), "290 s is not 300 s");
    assert_eq!(e.alerts()[0].state, AlertState::Pending);
    let out = e.on_batch(&batch(&[cpu("qemu/100", 600, 0.99)]), 610);
    assert_eq!(
        states(&out),
        vec![("qemu/100".into(), Change::Firing, None)]
    );
}

#[test]
fn hysteresis_keeps_firing_between_the_two_thresholds() {
    let mut e = RuleEngine::new(rules(&BUSY.replace("for_secs = 300", "for_secs = 0")), 10);
    assert_eq!(e.on_batch(&batch(&[cpu("qemu/1", 10, 0.96)]), 10).len(), 1);
    assert!(
        e.on_batch(&batch(&[cpu("qemu/1", 20, 0.93)]), 20)
            .is_empty(),
        "above clear"
    );
    assert!(
        e.on_batch(&batch(&[cpu("qemu/1", 30, 0.97)]), 30)
            .is_empty(),
        "no second firing"
    );
    let out = e.on_batch(&batch(&[cpu("qemu/1", 40, 0.90)]), 40);
    assert_eq!(
        states(&out),
        vec![("qemu/1".into(), Change::Resolved, Some("cleared".into()))]
    );
    assert_eq!(out[0].value, Some(0.90), "the sample that resolved it");
    assert!(
        e.on_batch(&batch(&[cpu("qemu/1", 50, 0.93)]), 50)
            .is_empty(),
        "below the threshold again"
    );
    let out = e.on_batch(
        &batch(&[cpu("lxc/1", 60, 1.0), cpu("qemu/1/x", 60, 1.0)]),
        60,
    );
    assert!(out.is_empty(), "other entities are not covered");
}

#[test]
fn a_ratio_rule_divides_by_the_newest_denominator() {
    let text = r#"
[[rules]]
name = "mem-full"
entities = "node/*"
metric = "mem_used"
of = "mem_total"
op = ">="
threshold = 0.9
"#;
    let mut e = RuleEngine::new(rules(text), 10);
    let used = |ts, v| ("node/a", "mem_used", MetricKind::Gauge, ts, v, None);
    let total = |ts, v| ("node/a", "mem_total", MetricKind::Gauge, ts, v, None);
    assert!(
        e.on_batch(&batch(&[used(10, 95.0)]), 10).is_empty(),
        "no denominator yet"
    );
    let out = e.on_batch(&batch(&[total(20, 100.0), used(20, 89.0)]), 20);
    assert!(out.is_empty(), "0.89 < 0.9");
    let out = e.on_batch(&batch(&[total(30, 100.0), used(30, 90.0)]), 30);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].value, Some(0.9));
}

#[test]
fn a_rate_rule_compares_per_second_rates_with_a_per_guest_override() {
    let text = r#"
[[rules]]
name = "net-saturated"
entities = "qemu/*"
metric = "net_in"
op = ">"
threshold = 625000000
[[rules.overrides]]
entities = "qemu/101"
threshold = 125000000
"#;
    let mut e = RuleEngine::new(rules(text), 10);
    let net = |entity, ts, raw: f64, rate| (entity, "net_in", MetricKind::Derive, ts, raw, rate);
    let out = e.on_batch(
        &batch(&[
            net("qemu/100", 10, 9e12, None),
            net("qemu/100", 20, 1e13, Some(2.0e8)),
            net("qemu/101", 20, 1e13, Some(2.0e8)),
        ]),
        20,
    );
    assert_eq!(
        states(&out),
        vec![("qemu/101".into(), Change::Firing, None)],
        "only over its own link"
    );
    assert_eq!(
        out[0].threshold,
        Some(125_000_000.0),
        "the override's threshold is reported"
    );
    let out = e.on_batch(&batch(&[net("qemu/100", 30, 1e13, Some(7.0e8))]), 30);
    assert_eq!(
        states(&out),
        vec![("qemu/100".into(), Change::Firing, None)]
    );
    assert_eq!(out[0].threshold, Some(625_000_000.0));
}

#[test]
fn a_reload_keeps_unchanged_and_moved_rules_firing_and_resolves_removed_ones() {
    let two = format!(
        "{}\n{}",
        BUSY.replace("for_secs = 300", "for_secs = 0"),
        BUSY.replace("guest-cpu-busy", "other")
            .replace("for_secs = 300", "for_secs = 0")
    );
    let mut e = RuleEngine::new(rules(&two), 10);
    assert_eq!(e.on_batch(&batch(&[cpu("qemu/1", 10, 0.99)]), 10).len(), 2);
    // Same file again: nothing happens.
    assert!(e.apply(rules(&two), 20).is_empty());
    assert_eq!(e.firing().len(), 2);
    // The threshold moves and `other` goes: it resolves, the moved one keeps firing.
    let moved = BUSY
        .replace("for_secs = 300", "for_secs = 0")
        .replace("threshold = 0.95", "threshold = 0.98");
    let out = e.apply(rules(&moved), 30);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].rule.as_str(), out[0].reason.as_deref()),
        ("other", Some("rule removed"))
    );
    assert_eq!(e.firing().len(), 1);
    // Narrowed so that it no longer covers the entity: resolved as changed.
    let narrowed = moved.replace("qemu/*", "qemu/2");
    let out = e.apply(rules(&narrowed), 40);
    assert_eq!(out[0].reason.as_deref(), Some("rule changed"));
    assert!(e.firing().is_empty());
}

#[test]
fn an_entity_that_stops_reporting_resolves_as_stale_after_three_intervals() {
    let mut e = RuleEngine::new(rules(&BUSY.replace("for_secs = 300", "for_secs = 0")), 10);
    e.on_batch(&batch(&[cpu("qemu/1", 100, 0.99)]), 100);
    assert!(
        e.on_tick(130).is_empty(),
        "30 s is three intervals, not more"
    );
    let out = e.on_tick(131);
    assert_eq!(
        states(&out),
        vec![("qemu/1".into(), Change::Resolved, Some("stale".into()))]
    );
    assert_eq!(out[0].value, None);
}

fn status(remote: &str, previous: Option<PollState>, state: PollState, at: i64) -> StatusChange {
    let mut s = RemoteStatus::pending(RemoteId::new(remote), RemoteKind::Pve);
    s.state = state;
    StatusChange {
        remote: RemoteId::new(remote),
        previous,
        status: Some(s),
        at,
    }
}

#[test]
fn a_state_rule_fires_after_its_hold_in_wall_time_and_resolves_when_collection_recovers() {
    let text = r#"
[[rules]]
name = "remote-down"
remotes = "pve-*"
state = ["failing", "backoff", "failed"]
for_secs = 600
severity = "critical"
"#;
    let mut e = RuleEngine::new(rules(text), 10);
    assert!(e
        .on_status(&status("pve-1", None, PollState::Pending, 0))
        .is_empty());
    assert!(e
        .on_status(&status(
            "pve-1",
            Some(PollState::Ok),
            PollState::Backoff,
            100
        ))
        .is_empty());
    assert!(e
        .on_status(&status(
            "pve-1",
            Some(PollState::Backoff),
            PollState::Failing,
            400
        ))
        .is_empty());
    assert!(e
        .on_status(&status(
            "pbs-1",
            Some(PollState::Ok),
            PollState::Failed,
            100
        ))
        .is_empty());
    assert!(e.on_tick(699).is_empty());
    let out = e.on_tick(700);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        (
            out[0].remote.as_str(),
            out[0].entity.as_deref(),
            out[0].state
        ),
        ("pve-1", None, Change::Firing)
    );
    assert!(e.on_tick(800).is_empty(), "notified once");
    let out = e.on_status(&status(
        "pve-1",
        Some(PollState::Failing),
        PollState::Ok,
        900,
    ));
    assert_eq!(
        states(&out),
        vec![(String::new(), Change::Resolved, Some("cleared".into()))]
    );
}

#[test]
fn restored_firing_alerts_are_not_notified_again_unless_their_rule_is_gone() {
    let mut e = RuleEngine::new(rules(&BUSY.replace("for_secs = 300", "for_secs = 0")), 10);
    e.on_batch(&batch(&[cpu("qemu/1", 10, 0.99)]), 10);
    let kept = e.firing();
    let mut after = RuleEngine::new(rules(&BUSY.replace("for_secs = 300", "for_secs = 0")), 10);
    assert!(after.restore(kept.clone(), 20).is_empty());
    assert!(
        after
            .on_batch(&batch(&[cpu("qemu/1", 30, 0.99)]), 30)
            .is_empty(),
        "still firing, no repeat"
    );
    let out = after.on_batch(&batch(&[cpu("qemu/1", 40, 0.5)]), 40);
    assert_eq!(out[0].state, Change::Resolved);
    let mut without = RuleEngine::new(rules("[[rules]]\nname = \"x\"\nstate = [\"failed\"]\n"), 10);
    let out = without.restore(kept, 50);
    assert_eq!(out[0].reason.as_deref(), Some("rule removed"));
    assert_eq!(without.history(10).len(), 1);
}
