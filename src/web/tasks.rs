//! The tasks page (`ui/tasks`): running tasks first, then the recent ones, filtered by
//! remote, running, errors, type, user and time range (a plain GET form), tracked tasks
//! highlighted; read from the task cache's index, refreshed by the script every few
//! seconds.

use std::collections::HashSet;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use fleetpoll_actors::RemoteId;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{badge, error_page, html_response, page, q, time_ago, Base, Nav};
use crate::api::{manager_ref, ApiState};
use crate::tasks::{CachedTask, TaskFilter};

/// The form's fields; empty fields mean "any".
#[derive(Debug, Deserialize, Default)]
pub(crate) struct TasksParams {
    #[serde(default)]
    remote: String,
    #[serde(default)]
    running: Option<String>,
    #[serde(default)]
    errors: Option<String>,
    #[serde(default, rename = "type")]
    task_type: String,
    #[serde(default)]
    user: String,
    /// Only tasks started within this many hours (empty: any time).
    #[serde(default)]
    hours: String,
}

/// Recent tasks shown below the running ones.
const RECENT: usize = 100;
/// Running tasks shown at most.
const RUNNING: usize = 200;

pub(crate) async fn tasks_page(
    State(state): State<ApiState>,
    params: Result<Query<TasksParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = match params {
        Ok(Query(p)) => p,
        Err(e) => return error_page(Base::UI, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let now = state.clock.now_secs();
    let since = match p.hours.trim() {
        "" => None,
        h => match h.parse::<i64>() {
            Ok(h) if h > 0 => Some(now - h * 3600),
            _ => {
                return error_page(
                    Base::UI,
                    StatusCode::BAD_REQUEST,
                    "hours: expected a whole number of hours",
                )
            }
        },
    };
    let remotes: Vec<String> = state
        .engine
        .status()
        .await
        .map(|s| s.into_iter().map(|r| r.remote.to_string()).collect())
        .unwrap_or_default();
    let remote = (!p.remote.is_empty()).then(|| RemoteId::new(&p.remote));
    let text = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let filter = TaskFilter {
        remote: remote.clone(),
        since,
        type_contains: text(&p.task_type),
        user_contains: text(&p.user),
        errors_only: p.errors.is_some(),
        now: Some(now),
        ..TaskFilter::default()
    };
    let running_filter = TaskFilter {
        running_only: true,
        limit: RUNNING,
        ..filter.clone()
    };
    let recent_filter = TaskFilter {
        limit: RECENT,
        ..filter
    };
    let only_running = p.running.is_some();
    let cache = state.tasks.clone();
    let (running, recent) = match tokio::task::spawn_blocking(move || {
        let running = cache.query(&running_filter);
        let recent = (!only_running).then(|| cache.query(&recent_filter));
        (running, recent)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => return error_page(Base::UI, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let tracked: HashSet<String> = state
        .engine
        .tracked_tasks()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|t| manager_ref(&t.remote, &t.upid))
        .collect();
    let base = Base::UI;
    let finished: Vec<&CachedTask> = recent
        .as_ref()
        .map(|r| {
            r.tasks
                .iter()
                .filter(|t| t.task.end_time.is_some())
                .collect()
        })
        .unwrap_or_default();
    let body = html! {
        h1 { "Tasks" }
        form.filters method="get" action="tasks" role="search" {
            label { "Remote "
                select name="remote" {
                    option value="" { "any" }
                    @for r in &remotes { option value=(r) selected[*r == p.remote] { (r) } }
                }
            }
            label { input type="checkbox" name="running" value="1" checked[p.running.is_some()]; " running only" }
            label { input type="checkbox" name="errors" value="1" checked[p.errors.is_some()]; " errors only" }
            label { "Type " input type="search" name="type" value=(p.task_type) size="10"; }
            label { "User " input type="search" name="user" value=(p.user) size="10"; }
            label { "Started within "
                select name="hours" {
                    @for (v, label) in [("", "any time"), ("1", "1 hour"), ("6", "6 hours"), ("24", "24 hours"), ("168", "7 days")] {
                        option value=(v) selected[v == p.hours.trim()] { (label) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        div data-live="tasks" {
            section aria-labelledby="running-h" {
                h2 #running-h { "Running (" (running.total) ")" }
                (task_table(base, &running.tasks.iter().collect::<Vec<_>>(), &tracked, now, "running-tasks"))
            }
            @if let Some(r) = &recent {
                section aria-labelledby="recent-h" {
                    h2 #recent-h { "Recent (" (finished.len()) " of " (r.total) " matching)" }
                    (task_table(base, &finished, &tracked, now, "recent-tasks"))
                }
            }
        }
    };
    html_response(StatusCode::OK, page(base, "Tasks", Nav::Tasks, 3, body))
}

fn task_table(
    base: Base,
    tasks: &[&CachedTask],
    tracked: &HashSet<String>,
    now: i64,
    id: &str,
) -> Markup {
    html! {
        @if tasks.is_empty() {
            p.none #(id) { "None." }
        } @else {
            div.scroll { table #(id) {
                thead { tr { th { "Remote" } th { "Node" } th { "Type" } th { "ID" } th { "User" } th { "Started" } th { "Ended" } th { "Status" } } }
                tbody {
                    @for t in tasks {
                        @let upid = manager_ref(&t.remote, &t.task.upid);
                        @let is_tracked = tracked.contains(&upid);
                        @let status = status_class(t);
                        tr data-upid=(upid) data-status=(status) data-remote=(t.remote.as_str()) data-type=(t.task.task_type) class=[is_tracked.then_some("tracked")] {
                            td { a href=(base.to(&format!("ui/remote?id={}", q(t.remote.as_str())))) { (t.remote.as_str()) } }
                            td { (t.task.node) }
                            td { (t.task.task_type) @if is_tracked { " " span.badge.st-tracked title="tracked: polled every task tick" { "tracked" } } }
                            td { (t.task.task_id.as_deref().unwrap_or("")) }
                            td { (t.task.user) }
                            td { (time_ago(Some(t.task.start_time), now)) }
                            td { (time_ago(t.task.end_time, now)) }
                            td { (badge(status)) " " @if status != "running" { span.errtext { (t.task.status.as_deref().unwrap_or("")) } } }
                        }
                    }
                }
            } }
        }
    }
}

/// `running`, `ok`, `warning` or `error`, as the API's `status` filter names them.
fn status_class(t: &CachedTask) -> &'static str {
    match (&t.task.end_time, t.task.status.as_deref()) {
        (None, _) => "running",
        (_, Some("OK")) => "ok",
        (_, Some(s)) if s.starts_with("WARNINGS") => "warning",
        _ => "error",
    }
}
