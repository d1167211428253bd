//! A remote's page (`ui/remote?id=`): its status and health, a "collect now" button, and
//! its nodes, guests (with their names and running or stopped, from the resource list),
//! storages and datastores, each with a trend line of the last hour (from the store's
//! in-memory hour, or the files in the first hour after a restart); and an
//! entity's page (`ui/entity?remote=&entity=`): CPU, memory, network and disk I/O charts
//! with the timeframe selector. `ui/charts` answers the charts alone, which the script
//! fetches when the timeframe changes or a live sample arrives.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use fleetpoll_actors::{RemoteId, RemoteStatus, Resource};
use maud::{html, Markup};
use serde::Deserialize;

use super::chart::{chart, sparkline, Line};
use super::format::Unit;
use super::layout::{badge, error_page, html_response, page, q, svg, time_ago, Base, Nav};
use super::overview::{error_class, state_name};
use crate::api::ApiState;
use crate::inventory::{HealthReport, RemoteResources};
use crate::rrd::query::{Query as RrdQuery, QueryResult, Timeframe, Window};
use crate::rrd::Cf;

/// Parameters of the remote page.
#[derive(Debug, Deserialize)]
pub(crate) struct RemoteParams {
    id: String,
}

/// Parameters of the entity page and the charts fragment.
#[derive(Debug, Deserialize)]
pub(crate) struct EntityParams {
    remote: String,
    entity: String,
    timeframe: Option<String>,
    cf: Option<String>,
}

/// The charts of an entity: title, unit, metrics (the ones the entity has are drawn).
const CHARTS: &[(&str, Unit, &[&str])] = &[
    ("CPU", Unit::Share, &["cpu_current", "cpu_iowait"]),
    ("Load", Unit::Plain, &["cpu_avg1", "cpu_avg5", "cpu_avg15"]),
    ("Memory", Unit::Bytes, &["mem_used", "mem_total"]),
    ("Swap", Unit::Bytes, &["swap_used", "swap_total"]),
    ("Network", Unit::BytesPerSec, &["net_in", "net_out"]),
    ("Disk I/O", Unit::BytesPerSec, &["disk_read", "disk_write"]),
    ("Disk usage", Unit::Bytes, &["disk_used", "disk_total"]),
    ("Uptime", Unit::Seconds, &["uptime"]),
];

pub(crate) async fn remote_page(
    State(state): State<ApiState>,
    params: Result<Query<RemoteParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return error_page(Base::UI, StatusCode::BAD_REQUEST, "expected ?id=<remote>");
    };
    match render_remote(&state, &p.id).await {
        Ok(body) => html_response(StatusCode::OK, maud::PreEscaped(body)),
        Err((status, message)) => error_page(Base::UI, status, &message),
    }
}

/// The groups of a remote's page, by the entity's first path component.
const GROUPS: &[(&str, &str)] = &[
    ("node", "Nodes"),
    ("host", "Host"),
    ("qemu", "Virtual machines"),
    ("lxc", "Containers"),
    ("storage", "Storages"),
    ("datastore", "Datastores"),
];

/// A remote's page as HTML (also what `fleetpoll-bench ui` times).
pub async fn render_remote(state: &ApiState, id: &str) -> Result<String, (StatusCode, String)> {
    let remote = RemoteId::new(id);
    let status = state
        .engine
        .remote_status(&remote)
        .await
        .map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))?;
    let now = state.clock.now_secs();
    let store = state.metrics.clone();
    let r = remote.clone();
    // One hour of each entity's headline metric, for the trend lines: from the store's
    // memory when it holds the hour, else (the first hour after a restart) the files.
    let rows = tokio::task::spawn_blocking(move || {
        let entities = store.entities(&r).unwrap_or_default();
        if let Some(mut hour) = store.hour_trends(&r, now) {
            return entities
                .into_iter()
                .map(|entity| {
                    let values = hour.remove(&entity).map(|t| t.values).unwrap_or_default();
                    (entity, Trend::of(values))
                })
                .collect::<Vec<_>>();
        }
        entities
            .into_iter()
            .map(|entity| {
                let (metrics, share_of) = headline(&entity);
                let query = RrdQuery {
                    entity: entity.clone(),
                    metrics: Some(metrics.iter().map(|m| m.to_string()).collect()),
                    cf: Cf::Average,
                    window: Window::Timeframe(Timeframe::Hour),
                };
                let result = store.query(&r, &query, now).ok().flatten();
                let trend = result
                    .as_ref()
                    .map(|res| trend(res, share_of))
                    .unwrap_or_default();
                (entity, trend)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let base = Base::UI;
    let health = crate::api::health_of(state, &status);
    let inventory = state.inventory.as_ref().and_then(|i| i.get(&remote));
    // Looked up once per entity: a large cluster lists thousands of guests.
    let by_id: std::collections::HashMap<&str, &Resource> = inventory
        .as_ref()
        .map(|i| i.resources.iter().map(|r| (r.id.as_str(), r)).collect())
        .unwrap_or_default();
    let known = |entity: &str| by_id.get(entity).copied();
    let main = html! {
        (status_block(&status, &health, inventory.as_ref(), now))
        @for (prefix, title) in GROUPS {
            @let members: Vec<_> = rows.iter().filter(|(e, _)| e.split('/').next() == Some(prefix)).collect();
            @if !members.is_empty() {
                section aria-label=(title) {
                    h2 { (title) " (" (members.len()) ")" }
                    div.scroll { table.entities {
                        thead { tr { th { "Entity" } th { "Last hour" } th { "Now" } } }
                        tbody {
                            @for (entity, trend) in &members {
                                @let r = known(entity.as_str());
                                tr data-entity=(entity) data-name=[r.and_then(|r| r.name.as_deref())] data-status=[r.and_then(|r| r.status.as_deref())] {
                                    td {
                                        a href=(base.to(&format!("ui/entity?remote={}&entity={}", q(id), q(entity)))) { (entity) }
                                        @if let Some(r) = r { (name_and_status(r)) }
                                    }
                                    td { (svg(sparkline(&trend.values))) }
                                    td.num { (trend.now.map(|v| trend.unit.format(v)).unwrap_or_else(|| "—".into())) }
                                }
                            }
                        }
                    } }
                }
            }
        }
        @if rows.is_empty() { p.none { "Nothing stored for this remote yet." } }
    };
    let body = html! {
        p.crumbs { a href=(base.to("ui/")) { "Overview" } " › " (id) }
        h1 { "Remote " (id) }
        (collect_button(id))
        div data-live="remote" { (main) }
    };
    Ok(page(base, id, Nav::None, 10, body).into_string())
}

/// The resource-list entry of `entity` of `remote`, when the inventory has one.
pub(crate) fn resource_of(state: &ApiState, remote: &RemoteId, entity: &str) -> Option<Resource> {
    let inventory = state.inventory.as_ref()?.get(remote)?;
    inventory.find(entity).cloned()
}

/// A guest's name and whether it runs, beside its id (nodes and storages: their status
/// when it is not the usual one).
pub(crate) fn name_and_status(r: &Resource) -> Markup {
    let guest = matches!(r.resource_type.as_str(), "qemu" | "lxc");
    let usual = matches!(r.status.as_deref(), Some("online" | "available"));
    html! {
        @if guest { @if let Some(name) = &r.name { " " span.res-name { (name) } } }
        @if let Some(status) = r.status.as_deref().filter(|_| guest || !usual) {
            " " span.res-status { (badge(status)) }
        }
    }
}

/// The status of a remote, its health and its resource list's age.
fn status_block(
    s: &RemoteStatus,
    health: &HealthReport,
    inventory: Option<&RemoteResources>,
    now: i64,
) -> Markup {
    let state = state_name(s);
    html! {
        dl.status data-remote=(s.remote.as_str()) data-state=(state) data-health=(health.health.as_str()) {
            dt { "State" } dd { (badge(&state)) }
            dt { "Health" } dd.health {
                (badge(health.health.as_str()))
                @if let Some(why) = &health.reason { " " (why) }
            }
            @if let Some(i) = inventory {
                dt { "Resource list" } dd.resources-at data-v=(i.filled_at.unwrap_or(0)) {
                    (i.resources.len()) " entries, " (time_ago(i.filled_at, now))
                }
            }
            dt { "Last success" } dd.last-success data-v=(s.last_success.unwrap_or(0)) { (time_ago(s.last_success, now)) }
            dt { "Last error" } dd {
                @if let Some(c) = error_class(s) { span.errclass { (c) } " " (s.last_error.as_deref().unwrap_or("")) }
                @else { span.none { "—" } }
            }
            dt { "Next attempt" } dd { (time_ago(s.next_attempt, now)) }
            dt { "Failures / restarts" } dd { (s.consecutive_failures) " / " (s.restarts) }
            dt { "Points stored" } dd { (s.points_stored) }
            dt { "Newest point" } dd { (time_ago(s.newest_datapoint, now)) }
        }
    }
}

/// The "collect now" button with its result, outside the part the script refreshes (so a
/// refresh does not wipe the result).
fn collect_button(id: &str) -> Markup {
    html! {
        p {
            button.collect type="button" data-remote=(id) { "Collect now" }
            " " output.collect-result aria-live="polite" {}
        }
    }
}

/// The metrics a trend line shows (the store's trend aggregate's choice), and whether
/// it is the share of the second in the first (`used / total`).
fn headline(entity: &str) -> (&'static [&'static str], bool) {
    let metrics = crate::rrd::trend::headline(entity).unwrap_or(&["cpu_current"]);
    (metrics, metrics.len() == 2)
}

#[derive(Debug, Default)]
struct Trend {
    values: Vec<Option<f64>>,
    now: Option<f64>,
    unit: Unit,
}

fn trend(res: &QueryResult, share_of: bool) -> Trend {
    let values: Vec<Option<f64>> = if share_of {
        match (res.metrics.first(), res.metrics.get(1)) {
            (Some(used), Some(total)) => used
                .values
                .iter()
                .zip(&total.values)
                .map(|(u, t)| match (u, t) {
                    (Some(u), Some(t)) if *t > 0.0 => Some(u / t),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    } else {
        res.metrics
            .first()
            .map(|m| m.values.clone())
            .unwrap_or_default()
    };
    Trend::of(values)
}

impl Trend {
    /// The line of `values` (shares), "now" its newest known value.
    fn of(values: Vec<Option<f64>>) -> Trend {
        let now = values.iter().rev().flatten().next().copied();
        Trend {
            values,
            now,
            unit: Unit::Share,
        }
    }
}

fn parse_choice(p: &EntityParams) -> Result<(Timeframe, Cf), String> {
    let timeframe = p
        .timeframe
        .as_deref()
        .unwrap_or("day")
        .parse::<Timeframe>()
        .map_err(|e| format!("timeframe: {e}"))?;
    let cf = match p
        .cf
        .as_deref()
        .unwrap_or("AVERAGE")
        .to_ascii_uppercase()
        .as_str()
    {
        "AVERAGE" => Cf::Average,
        "MAX" => Cf::Max,
        other => return Err(format!("cf: {other:?} is not AVERAGE or MAX")),
    };
    Ok((timeframe, cf))
}

pub(crate) async fn entity_page(
    State(state): State<ApiState>,
    params: Result<Query<EntityParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return error_page(
            Base::UI,
            StatusCode::BAD_REQUEST,
            "expected ?remote=<id>&entity=<entity>",
        );
    };
    let (timeframe, cf) = match parse_choice(&p) {
        Ok(c) => c,
        Err(message) => return error_page(Base::UI, StatusCode::BAD_REQUEST, &message),
    };
    let charts = match charts(&state, &p.remote, &p.entity, timeframe, cf).await {
        Ok(c) => c,
        Err((status, message)) => return error_page(Base::UI, status, &message),
    };
    let base = Base::UI;
    let cf_name = cf_name(cf);
    let body = html! {
        p.crumbs {
            a href=(base.to("ui/")) { "Overview" } " › "
            a href=(base.to(&format!("ui/remote?id={}", q(&p.remote)))) { (p.remote) } " › " (p.entity)
        }
        h1 { (p.entity) " on " (p.remote) }
        div.selector role="group" aria-label="timeframe" {
            @for t in ["hour", "day", "week", "month", "year", "decade"] {
                button type="button" data-timeframe=(t) aria-pressed=(if t == timeframe.as_str() { "true" } else { "false" }) { (t) }
            }
            span.sep {}
            @for c in ["AVERAGE", "MAX"] {
                button type="button" data-cf=(c) aria-pressed=(if c == cf_name { "true" } else { "false" }) { (c) }
            }
            " " span #live-state aria-live="polite" {}
        }
        section #charts data-remote=(p.remote) data-entity=(p.entity) data-timeframe=(timeframe.as_str()) data-cf=(cf_name) {
            (charts)
        }
    };
    html_response(StatusCode::OK, page(base, &p.entity, Nav::None, 0, body))
}

/// `ui/charts`: the charts alone, for the script.
pub(crate) async fn charts_fragment(
    State(state): State<ApiState>,
    params: Result<Query<EntityParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return error_page(
            Base::UI,
            StatusCode::BAD_REQUEST,
            "expected ?remote=<id>&entity=<entity>",
        );
    };
    let (timeframe, cf) = match parse_choice(&p) {
        Ok(c) => c,
        Err(message) => return error_page(Base::UI, StatusCode::BAD_REQUEST, &message),
    };
    match charts(&state, &p.remote, &p.entity, timeframe, cf).await {
        Ok(c) => html_response(StatusCode::OK, c),
        Err((status, message)) => error_page(Base::UI, status, &message),
    }
}

fn cf_name(cf: Cf) -> &'static str {
    match cf {
        Cf::Max => "MAX",
        _ => "AVERAGE",
    }
}

/// Every chart of one entity for one timeframe, read from the store as
/// `GET /api/v1/rrd/…` reads it.
async fn charts(
    state: &ApiState,
    remote: &str,
    entity: &str,
    timeframe: Timeframe,
    cf: Cf,
) -> Result<Markup, (StatusCode, String)> {
    let remote_id = RemoteId::new(remote);
    state
        .engine
        .remote_status(&remote_id)
        .await
        .map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))?;
    let store = state.metrics.clone();
    let now = state.clock.now_secs();
    let query = RrdQuery {
        entity: entity.to_string(),
        metrics: None,
        cf,
        window: Window::Timeframe(timeframe),
    };
    let result = tokio::task::spawn_blocking(move || store.query(&remote_id, &query, now))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("no metrics stored for {entity} of {remote}"),
            )
        })?;
    let mut drawn = Vec::new();
    for (title, unit, metrics) in CHARTS {
        let lines: Vec<Line<'_>> = metrics
            .iter()
            .filter_map(|m| result.metrics.iter().find(|s| s.name == *m))
            .map(|s| Line {
                name: &s.name,
                values: &s.values,
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        drawn.push(html! {
            figure.chart-box data-chart=(title) {
                figcaption {
                    (title)
                    @for (i, l) in lines.iter().enumerate() {
                        " " span class=(format!("key s{i}")) { (l.name) }
                    }
                }
                (svg(chart(title, &result.timestamps, &lines, *unit)))
            }
        });
    }
    Ok(html! {
        p.axis-note {
            "UTC, " (result.timestamps.len()) " rows of " (super::format::duration(result.step as i64))
        }
        div.charts { @for c in drawn { (c) } }
    })
}
