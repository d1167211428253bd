//! The fleet overview at `/`: counts by state, connections in use of the cap, the remote
//! list with each remote's health (sortable and filterable by the script), the alerts
//! that fire, and the top guests (named, running or stopped, from the resource lists)
//! and nodes by CPU and memory over the last hour (the store's aggregate). The script
//! refreshes the parts marked `data-live` every few seconds.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fleetpoll_actors::{RemoteId, RemoteStatus};
use maud::{html, Markup};

use super::layout::{badge, html_response, page, q, time_ago, Base, Nav};
use crate::api::ApiState;
use crate::inventory::HealthReport;
use crate::rrd::top::TopEntry;

/// How many entries each top list shows.
const TOP_N: usize = 5;

/// How often the script refreshes the overview.
const REFRESH_SECS: u32 = 5;

/// The overview at `ui/`.
pub(crate) async fn overview_page(state: State<ApiState>) -> Response {
    overview_at(state, Base::UI).await
}

/// The overview seen from `base` (`/` or `ui/`).
pub(crate) async fn overview_at(State(state): State<ApiState>, base: Base) -> Response {
    match render_overview_at(&state, base).await {
        Ok(body) => html_response(StatusCode::OK, maud::PreEscaped(body)),
        Err(message) => super::layout::error_page(base, StatusCode::SERVICE_UNAVAILABLE, &message),
    }
}

/// The overview page at `/` as HTML (also what `fleetpoll-bench ui` times).
pub async fn render_overview(state: &ApiState) -> Result<String, String> {
    render_overview_at(state, Base::ROOT).await
}

async fn render_overview_at(state: &ApiState, base: Base) -> Result<String, String> {
    let status = state.engine.status().await.map_err(|e| e.to_string())?;
    let limiter = state.engine.limiter().await.ok();
    let now = state.clock.now_secs();
    let ids: Vec<RemoteId> = status.iter().map(|s| s.remote.clone()).collect();
    let top = state.metrics.top(&ids, now, TOP_N);
    let alerts = state.rules.as_ref().map(|r| r.alerts()).unwrap_or_default();
    let firing: Vec<_> = alerts
        .iter()
        .filter(|a| {
            serde_json::to_value(a.state)
                .ok()
                .as_ref()
                .and_then(|v| v.as_str())
                == Some("firing")
        })
        .collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for s in &status {
        *counts.entry(state_name(s)).or_default() += 1;
    }
    let main = html! {
        h1 { "Fleet" }
        section #summary data-live="summary" aria-label="summary" {
            ul.counts {
                li { strong { (status.len()) } " remotes" }
                @for (name, n) in &counts {
                    li { (badge(name)) " " strong data-count=(name) { (n) } }
                }
                @if let Some(l) = &limiter {
                    li #connections title="connections leased of the global cap; requests waiting" {
                        "connections " strong { (l.in_use) " / " (l.global_cap) }
                        @if l.queued_manual + l.queued_scheduled > 0 {
                            " (" (l.queued_manual + l.queued_scheduled) " waiting)"
                        }
                    }
                }
                li { "alerts firing " strong #firing-count { (firing.len()) } }
            }
        }
        section aria-labelledby="remotes-h" {
            h2 #remotes-h { "Remotes" }
            div.filters role="search" {
                label { "State "
                    select #state-filter data-filter="state" {
                        option value="" { "all" }
                        @for name in ["ok", "pending", "failing", "backoff", "failed", "disabled"] {
                            option value=(name) { (name) }
                        }
                    }
                }
                label { "Search "
                    input #text-filter type="search" data-filter="text" placeholder="id, kind, error";
                }
                span #shown aria-live="polite" {}
            }
            div.scroll {
                table #remotes.sortable {
                    thead { tr {
                        @for (key, label, numeric) in COLUMNS {
                            th scope="col" { button type="button" data-sort=(key) data-numeric=[numeric.then_some("1")] { (label) } }
                        }
                    } }
                    tbody data-live="remotes" {
                        @for s in &status { (remote_row(base, s, &crate::api::health_of(state, s), now)) }
                    }
                }
            }
        }
        section #alerts data-live="alerts" aria-labelledby="alerts-h" {
            h2 #alerts-h { "Alerts firing" }
            @if state.rules.is_none() {
                p.none { "No rules run in this instance." }
            } @else if firing.is_empty() {
                p.none { "None." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Rule" } th { "Severity" } th { "Remote" } th { "Entity" } th { "Value" } th { "Threshold" } th { "Since" } } }
                    tbody {
                        @for a in &firing {
                            tr {
                                td { (a.rule) }
                                td { (serde_json::to_value(a.severity).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                                td { a href=(base.to(&format!("ui/remote?id={}", q(&a.remote)))) { (a.remote) } }
                                td { (a.entity.as_deref().unwrap_or("—")) }
                                td { (a.value.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into())) }
                                td { (a.threshold.map(|v| format!("{v}")).unwrap_or_else(|| "—".into())) }
                                td { (time_ago(Some(a.since), now)) }
                            }
                        }
                    }
                } }
            }
        }
        section #top data-live="top" aria-labelledby="top-h" {
            h2 #top-h { "Top over the last hour" }
            div.tops {
                (top_list(state, base, "Guests by CPU", &top.guests_by_cpu))
                (top_list(state, base, "Guests by memory", &top.guests_by_memory))
                (top_list(state, base, "Nodes by CPU", &top.nodes_by_cpu))
                (top_list(state, base, "Nodes by memory", &top.nodes_by_memory))
            }
        }
    };
    Ok(page(base, "Fleet", Nav::Overview, REFRESH_SECS, main).into_string())
}

/// The remote list's columns: sort key, heading, whether the key sorts as a number.
const COLUMNS: [(&str, &str, bool); 11] = [
    ("remote", "Remote", false),
    ("kind", "Kind", false),
    ("state", "State", false),
    ("health", "Health", false),
    ("last_success", "Last success", true),
    ("error", "Last error", false),
    ("next_attempt", "Next attempt", true),
    ("failures", "Failures", true),
    ("restarts", "Restarts", true),
    ("points", "Points", true),
    ("newest", "Newest point", true),
];

/// A remote's state as the API writes it.
pub(crate) fn state_name(s: &RemoteStatus) -> String {
    serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn kind_name(s: &RemoteStatus) -> String {
    serde_json::to_value(s.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// An error class as the API writes it.
pub(crate) fn error_class(s: &RemoteStatus) -> Option<String> {
    s.last_error_class.and_then(|c| {
        serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    })
}

fn remote_row(base: Base, s: &RemoteStatus, health: &HealthReport, now: i64) -> Markup {
    let health_name = health.health.as_str();
    let state = state_name(s);
    let class = error_class(s);
    let kind = kind_name(s);
    let id = s.remote.as_str();
    let text = format!(
        "{id} {kind} {health_name} {} {} {}",
        class.as_deref().unwrap_or(""),
        s.last_error.as_deref().unwrap_or(""),
        health.reason.as_deref().unwrap_or("")
    )
    .to_lowercase();
    html! {
        tr data-remote=(id) data-state=(state) data-health=(health_name) data-text=(text) {
            td data-key="remote" data-v=(id) { a href=(base.to(&format!("ui/remote?id={}", q(id)))) { (id) } }
            td data-key="kind" data-v=(kind) { (kind) }
            td data-key="state" data-v=(state) { (badge(&state)) }
            td data-key="health" data-v=(health_name) title=[health.reason.as_deref()] { (badge(health_name)) }
            td data-key="last_success" data-v=(s.last_success.unwrap_or(0)) { (time_ago(s.last_success, now)) }
            td data-key="error" data-v=(class.as_deref().unwrap_or("")) {
                @if let Some(c) = &class {
                    span.errclass { (c) } " "
                    span.errtext { (s.last_error.as_deref().unwrap_or("")) }
                } @else { span.none { "—" } }
            }
            td data-key="next_attempt" data-v=(s.next_attempt.unwrap_or(0)) { (time_ago(s.next_attempt, now)) }
            td data-key="failures" data-v=(s.consecutive_failures) { (s.consecutive_failures) }
            td data-key="restarts" data-v=(s.restarts) { (s.restarts) }
            td data-key="points" data-v=(s.points_stored) { (s.points_stored) }
            td data-key="newest" data-v=(s.newest_datapoint.unwrap_or(0)) { (time_ago(s.newest_datapoint, now)) }
        }
    }
}

fn top_list(state: &ApiState, base: Base, title: &str, entries: &[TopEntry]) -> Markup {
    html! {
        div.top {
            h3 { (title) }
            @if entries.is_empty() {
                p.none { "Nothing stored in the last hour." }
            } @else {
                ol {
                    @for e in entries {
                        li {
                            @let known = super::remote::resource_of(state, &e.remote, &e.entity);
                            a href=(base.to(&format!("ui/entity?remote={}&entity={}", q(e.remote.as_str()), q(&e.entity)))) {
                                (e.remote.as_str()) " " (e.entity)
                            }
                            @if let Some(r) = &known { (super::remote::name_and_status(r)) }
                            " "
                            meter min="0" max="1" value=(format!("{:.3}", e.value)) {}
                            " " span.num { (format!("{:.1} %", e.value * 100.0)) }
                        }
                    }
                }
            }
        }
    }
}
