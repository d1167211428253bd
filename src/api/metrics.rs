//! `GET /metrics`: fleetpoll's own state in the Prometheus text exposition format —
//! remotes by state, per-remote health, polls by outcome and error class, the poll
//! duration histogram, connection permits and queues, storage and scheduler counters,
//! and per exporter its queue, sent, dropped and rejected points.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use fleetpoll_actors::PollState;

use super::{ApiResult, ApiState};

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(super) async fn prometheus(State(state): State<ApiState>) -> ApiResult<impl IntoResponse> {
    let status = state.engine.status().await?;
    let limiter = state.engine.limiter().await?;
    let storage = state.engine.storage().await?;
    let scheduler = state.engine.scheduler().await?;
    let mut out = String::with_capacity(256 + status.len() * 400);
    let _ = writeln!(out, "# HELP fleetpoll_remotes Remotes by collection state.");
    let _ = writeln!(out, "# TYPE fleetpoll_remotes gauge");
    for (name, st) in [
        ("pending", PollState::Pending),
        ("ok", PollState::Ok),
        ("failing", PollState::Failing),
        ("backoff", PollState::Backoff),
        ("failed", PollState::Failed),
        ("disabled", PollState::Disabled),
        ("unused", PollState::Unused),
    ] {
        let n = status.iter().filter(|s| s.state == st).count();
        let _ = writeln!(out, "fleetpoll_remotes{{state=\"{name}\"}} {n}");
    }
    let series: [(&str, &str, &str); 5] = [
        (
            "fleetpoll_remote_consecutive_failures",
            "gauge",
            "Failures since the last success.",
        ),
        (
            "fleetpoll_remote_last_success_timestamp_seconds",
            "gauge",
            "When the last collection succeeded.",
        ),
        (
            "fleetpoll_remote_last_duration_seconds",
            "gauge",
            "How long the last collection took.",
        ),
        (
            "fleetpoll_remote_points_stored_total",
            "counter",
            "Points stored since the poller started.",
        ),
        (
            "fleetpoll_remote_restarts_total",
            "counter",
            "Restarts of the remote's poller.",
        ),
    ];
    for (i, (name, kind, help)) in series.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in &status {
            let value = match i {
                0 => Some(s.consecutive_failures as f64),
                1 => s.last_success.map(|t| t as f64),
                2 => s.last_duration_ms.map(|ms| ms as f64 / 1000.0),
                3 => Some(s.points_stored as f64),
                _ => Some(s.restarts as f64),
            };
            if let Some(v) = value {
                let _ = writeln!(out, "{name}{{remote=\"{}\"}} {v}", label(s.remote.as_str()));
            }
        }
    }
    let gauges = [
        (
            "fleetpoll_permits_in_use",
            "Connection permits leased now.",
            limiter.in_use as f64,
        ),
        (
            "fleetpoll_permits_capacity",
            "The global connection cap.",
            limiter.global_cap as f64,
        ),
        (
            "fleetpoll_limiter_queue_manual",
            "Permit requests waiting in the manual lane.",
            limiter.queued_manual as f64,
        ),
        (
            "fleetpoll_limiter_queue_scheduled",
            "Permit requests waiting in the scheduled lane.",
            limiter.queued_scheduled as f64,
        ),
        (
            "fleetpoll_storage_queue_depth",
            "Storage operations waiting.",
            storage.queue_depth as f64,
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let counters = [
        (
            "fleetpoll_leases_granted_total",
            "Permit leases granted.",
            limiter.granted as f64,
        ),
        (
            "fleetpoll_leases_reclaimed_total",
            "Leases reclaimed from dead or stuck holders.",
            limiter.reclaimed as f64,
        ),
        (
            "fleetpoll_points_stored_total",
            "Metric points handed to the store.",
            storage.points_stored as f64,
        ),
        (
            "fleetpoll_storage_errors_total",
            "Failed store operations.",
            storage.errors as f64,
        ),
        (
            "fleetpoll_rrd_files_set_aside_total",
            "Damaged RRD files set aside (renamed *.corrupt-<time>) and started afresh.",
            state.metrics.damaged_file_count() as f64,
        ),
        (
            "fleetpoll_rrd_rows_quarantined_total",
            "Rows set aside in quarantine.jsonl because their entity's file could not be written.",
            state.metrics.quarantined_rows() as f64,
        ),
        (
            "fleetpoll_cycles_total",
            "Metric collection cycles started.",
            scheduler.cycles as f64,
        ),
        (
            "fleetpoll_tracked_tasks_finished_total",
            "Tracked tasks seen finished.",
            scheduler.tracked_finished as f64,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    write_poll_stats(&mut out, &state.engine.poll_stats());
    write_hooks(&mut out, &state.engine.hooks());
    if let Some(rules) = &state.rules {
        write_alerts(&mut out, rules);
    }
    write_exporters(&mut out, &state.exporters.status(&state.engine));
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}

/// Every hook's queue and counters.
fn write_hooks(out: &mut String, hooks: &[fleetpoll_actors::HookStatus]) {
    use fleetpoll_actors::HookStatus;
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&HookStatus) -> f64,
    );
    let families: [Family; 6] = [
        (
            "fleetpoll_hook_queued_points",
            "gauge",
            "Points waiting in a hook's queue.",
            |h| h.queued_points as f64,
        ),
        (
            "fleetpoll_hook_delivered_points_total",
            "counter",
            "Points handed to a hook.",
            |h| h.delivered_points as f64,
        ),
        (
            "fleetpoll_hook_dropped_batches_total",
            "counter",
            "Batches dropped from a hook's full queue, oldest first.",
            |h| h.dropped_batches as f64,
        ),
        (
            "fleetpoll_hook_dropped_points_total",
            "counter",
            "Points in the batches dropped from a hook's full queue.",
            |h| h.dropped_points as f64,
        ),
        (
            "fleetpoll_hook_errors_total",
            "counter",
            "Events a hook returned an error for.",
            |h| h.errors as f64,
        ),
        (
            "fleetpoll_hook_restarts_total",
            "counter",
            "Restarts of a hook after a panic.",
            |h| h.restarts as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for h in hooks {
            let _ = writeln!(out, "{name}{{hook=\"{}\"}} {}", label(&h.name), value(h));
        }
    }
}

/// Alerts by rule and state, transitions by rule, webhook counters.
fn write_alerts(out: &mut String, rules: &crate::rules::Rules) {
    let (counts, transitions) = rules.counts();
    let _ = writeln!(
        out,
        "# HELP fleetpoll_alerts Alerts by rule and state.\n# TYPE fleetpoll_alerts gauge"
    );
    for (rule, (pending, firing)) in &counts {
        let rule = label(rule);
        let _ = writeln!(
            out,
            "fleetpoll_alerts{{rule=\"{rule}\",state=\"pending\"}} {pending}"
        );
        let _ = writeln!(
            out,
            "fleetpoll_alerts{{rule=\"{rule}\",state=\"firing\"}} {firing}"
        );
    }
    let _ = writeln!(out, "# HELP fleetpoll_alert_transitions_total Notifications by rule and kind.\n# TYPE fleetpoll_alert_transitions_total counter");
    for (rule, change, n) in &transitions {
        let state = match change {
            crate::rules::Change::Firing => "firing",
            crate::rules::Change::Resolved => "resolved",
        };
        let _ = writeln!(
            out,
            "fleetpoll_alert_transitions_total{{rule=\"{}\",state=\"{state}\"}} {n}",
            label(rule)
        );
    }
    let webhooks = rules.webhooks();
    for (name, help, pick) in [
        (
            "fleetpoll_webhook_sent_total",
            "Notifications a webhook accepted.",
            0,
        ),
        (
            "fleetpoll_webhook_failed_total",
            "Notifications given up or refused.",
            1,
        ),
        (
            "fleetpoll_webhook_dropped_total",
            "Notifications dropped from a full webhook queue.",
            2,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for w in &webhooks {
            let v = [w.sent, w.failed, w.dropped][pick];
            let _ = writeln!(out, "{name}{{webhook=\"{}\"}} {v}", label(&w.name));
        }
    }
}

/// Per exporter: points queued, sent, dropped and rejected, failed sends, last success.
fn write_exporters(out: &mut String, exporters: &[crate::export::ExporterStatus]) {
    if exporters.is_empty() {
        return;
    }
    type Field = fn(&crate::export::ExporterStatus) -> Option<f64>;
    let series: [(&str, &str, &str, Field); 6] = [
        (
            "fleetpoll_exporter_queued_points",
            "gauge",
            "Points waiting for the receiver.",
            |e| Some(e.queued as f64),
        ),
        (
            "fleetpoll_exporter_sent_points_total",
            "counter",
            "Points the receiver accepted.",
            |e| Some(e.sent as f64),
        ),
        (
            "fleetpoll_exporter_dropped_points_total",
            "counter",
            "Points dropped from a full queue (oldest first).",
            |e| Some(e.dropped as f64),
        ),
        (
            "fleetpoll_exporter_rejected_points_total",
            "counter",
            "Points the receiver refused (4xx, not retried).",
            |e| Some(e.rejected as f64),
        ),
        (
            "fleetpoll_exporter_errors_total",
            "counter",
            "Failed sends.",
            |e| Some(e.errors as f64),
        ),
        (
            "fleetpoll_exporter_last_success_timestamp_seconds",
            "gauge",
            "When a send last succeeded.",
            |e| e.last_success.map(|t| t as f64),
        ),
    ];
    for (name, kind, help, field) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for e in exporters {
            if let Some(v) = field(e) {
                let _ = writeln!(
                    out,
                    "{name}{{exporter=\"{}\",kind=\"{}\"}} {v}",
                    label(&e.name),
                    e.kind
                );
            }
        }
    }
}

/// Polls by outcome and class, and the poll duration histogram.
fn write_poll_stats(out: &mut String, polls: &fleetpoll_actors::PollStatsSnapshot) {
    let _ = writeln!(
        out,
        "# HELP fleetpoll_polls_total Metric polls by outcome and error class."
    );
    let _ = writeln!(out, "# TYPE fleetpoll_polls_total counter");
    let _ = writeln!(
        out,
        "fleetpoll_polls_total{{outcome=\"ok\",class=\"\"}} {}",
        polls.ok
    );
    for (class, n) in &polls.failed {
        let _ = writeln!(
            out,
            "fleetpoll_polls_total{{outcome=\"failed\",class=\"{}\"}} {n}",
            class.as_str()
        );
    }
    let name = "fleetpoll_poll_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Time from lease to stored (or failed).");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound, n) in &polls.duration_buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", polls.duration_count);
    let _ = writeln!(out, "{name}_sum {}", polls.duration_sum_secs);
    let _ = writeln!(out, "{name}_count {}", polls.duration_count);
    for (name, help, value) in [
        (
            "fleetpoll_outages_total",
            "Times every remote was failing at once (a suspected local outage).",
            polls.outages,
        ),
        (
            "fleetpoll_canary_probes_total",
            "Remotes probed without backoff during those outages.",
            polls.canary_probes,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }
}
