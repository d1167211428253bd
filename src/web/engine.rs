//! The engine page (`ui/engine`): the supervision tree with each actor's state, restarts
//! and last error; the rate limiter's use; the storage queue; the hooks (rules and
//! exporters) with their queues and errors; and the last reload's outcome.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fleetpoll_actors::TreeNode;
use maud::{html, Markup};

use super::layout::{badge, html_response, page, Base, Nav};
use crate::api::ApiState;

pub(crate) async fn engine_page(State(state): State<ApiState>) -> Response {
    let tree = state.engine.tree().await.ok();
    let limiter = state.engine.limiter().await.ok();
    let storage = state.engine.storage().await.ok();
    let hooks = state.engine.hooks();
    let last_reload = state.last_reload.lock().ok().and_then(|l| l.clone());
    let rules_error = state.rules.as_ref().and_then(|r| r.error());
    let body = html! {
        h1 { "Engine" }
        div data-live="engine" {
            div.panels {
                section aria-labelledby="limiter-h" {
                    h2 #limiter-h { "Rate limiter" }
                    @if let Some(l) = &limiter {
                        dl.status {
                            dt { "Connections in use" } dd #limiter-in-use { (l.in_use) " / " (l.global_cap) }
                            dt { "Leases out" } dd { (l.leases) }
                            dt { "Waiting (manual / scheduled)" } dd { (l.queued_manual) " / " (l.queued_scheduled) }
                            dt { "Granted / reclaimed" } dd { (l.granted) " / " (l.reclaimed) }
                        }
                    } @else { p.none { "not running" } }
                }
                section aria-labelledby="storage-h" {
                    h2 #storage-h { "Storage" }
                    @if let Some(s) = &storage {
                        dl.status {
                            dt { "Queue depth (peak)" } dd { (s.queue_depth) " (" (s.peak_queue_depth) ")" }
                            dt { "Points stored" } dd { (s.points_stored) }
                            dt { "Metric groups / task batches" } dd { (s.metric_groups) " / " (s.task_batches) }
                            dt { "Errors" } dd { (s.errors) }
                            dt { "Last error" } dd { (s.last_error.as_deref().unwrap_or("—")) }
                        }
                    } @else { p.none { "not running" } }
                }
                section aria-labelledby="reload-h" {
                    h2 #reload-h { "Last reload" }
                    @match &last_reload {
                        Some(v) => pre.json { (serde_json::to_string_pretty(v).unwrap_or_default()) },
                        None => p.none { "No reload since start." },
                    }
                    @if let Some(e) = &rules_error { p.error { "Rules file rejected: " (e) } }
                }
            }
            section aria-labelledby="hooks-h" {
                h2 #hooks-h { "Hooks and exporters" }
                @if hooks.is_empty() { p.none { "None registered." } } @else {
                    div.scroll { table {
                        thead { tr { th { "Name" } th { "State" } th { "Queued" } th { "Delivered batches" } th { "Dropped" } th { "Errors" } th { "Restarts" } th { "Last error" } } }
                        tbody {
                            @for h in &hooks {
                                tr {
                                    td { (h.name) } td { (badge(&h.state)) }
                                    td.num { (h.queued_events) } td.num { (h.delivered_batches) }
                                    td.num { (h.dropped_batches) } td.num { (h.errors) } td.num { (h.restarts) }
                                    td { (h.last_error.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    } }
                }
            }
            section aria-labelledby="tree-h" {
                h2 #tree-h { "Supervision tree" }
                @if let Some(t) = &tree { ul.tree { (node(t)) } } @else { p.none { "not running" } }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page(Base::UI, "Engine", Nav::Engine, 5, body),
    )
}

fn node(n: &TreeNode) -> Markup {
    html! {
        li data-actor=(n.name) {
            span.actor { (n.name) } " " (badge(&n.state))
            @if n.restarts > 0 { " " span.restarts { (n.restarts) " restarts" } }
            @if let Some(e) = &n.last_error { " " span.errtext { (e) } }
            @if !n.children.is_empty() {
                ul { @for c in &n.children { (node(c)) } }
            }
        }
    }
}
