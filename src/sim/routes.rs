//! The simulated API: which path answers what, token checks, and the faults that bend
//! an answer (latency, hangs, resets, errors, trickled, cut-off and oversized bodies).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetpoll_actors::RemoteKind;
use futures::stream;
use http::request::Parts;
use http::{header, Method, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};

use super::faults::Faults;
use super::fleet::{jittered, Fleet, SimRemote};
use super::listeners::Served;
use super::metrics::render_metrics;
use super::query::{percent_decode, Query};
use super::resources::{render_cluster_resources, render_datastore_usage};
use super::server::{next_roll, SimState};
use super::tasks::{find_task, tasks_between};
use crate::remote::Upid;

/// A response body: whole, trickled or streamed padding.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// What to do with a request.
pub(crate) enum Reply {
    /// Send this response.
    Respond(Response<Body>),
    /// Close the connection without an answer.
    Drop,
}

/// How long a hung request waits before the simulator gives up on it (the client's
/// timeout is expected long before).
const HANG: Duration = Duration::from_secs(3600);
/// Bytes per piece and the pause between pieces of a trickled body.
const TRICKLE_BYTES: usize = 16;
const TRICKLE_PAUSE: Duration = Duration::from_millis(250);

/// Which remote a request is for, the API path after `/api2/json/` (empty for a
/// scrape), and whether it is a scrape (`/metrics`); else what was not found.
fn target<'p>(
    state: &SimState,
    served: Served,
    path: &'p str,
) -> Result<(usize, &'p str, bool), &'static str> {
    let (index, rest, scrape) = match served {
        Served::Node { remote, .. } => match path.strip_prefix("/api2/json/") {
            Some(rest) => (remote, rest, false),
            None if path == "/metrics" => (remote, "", true),
            None => return Err("no such path"),
        },
        Served::Shared => {
            let scrape = path
                .strip_prefix('/')
                .and_then(|p| p.strip_suffix("/metrics"))
                .filter(|id| !id.contains('/'));
            let Some((remote_id, rest)) = path
                .strip_prefix('/')
                .and_then(|p| p.split_once("/api2/json/"))
                .or(scrape.map(|id| (id, "")))
            else {
                return Err("no such path");
            };
            let Some(index) = state.fleet.remotes.iter().position(|r| r.id == remote_id) else {
                return Err("no such remote");
            };
            (index, rest, scrape.is_some())
        }
    };
    let exposition = state.fleet.remotes[index].kind == RemoteKind::Prometheus;
    if exposition != scrape {
        return Err("no such path");
    }
    Ok((index, rest, scrape))
}

/// Routes one request that arrived on a listener serving `served`.
pub(crate) async fn route(state: &Arc<SimState>, served: Served, parts: &Parts) -> Reply {
    let (index, rest, exposition) = match target(state, served, parts.uri.path()) {
        Ok(found) => found,
        Err(what) => return respond(error(StatusCode::NOT_FOUND, what)),
    };
    let remote = &state.fleet.remotes[index];
    let faults = &state.faults(index);
    // A node that went offline, or an outage, while the connection was open: no answer.
    let gone = match served {
        Served::Node { remote, node } => !state.answers(remote, node),
        Served::Shared => state.outage_now(faults),
    };
    if gone {
        return Reply::Drop;
    }
    let roll = next_roll(state, index);
    if exposition || matches!(rest, "cluster/metrics/export" | "status/metrics") {
        state.metric_exports[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    // The configured latency is the remote's whole time to answer: the reply is
    // rendered while it runs, not after it.
    let delay = jittered(faults.latency, faults.jitter, roll);
    let latency = async {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    };
    if faults.hang {
        latency.await;
        tokio::time::sleep(HANG).await;
        return respond(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "hung request gave up",
        ));
    }
    if faults.reset {
        latency.await;
        return Reply::Drop;
    }
    if exposition {
        state.scrape_log[index]
            .lock()
            .push(fleetpoll_actors::system_now().as_secs_f64());
    }
    let authorized = remote.open
        || parts
            .headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == remote.expected_authorization().as_bytes());
    if !authorized {
        latency.await;
        return respond(error(StatusCode::UNAUTHORIZED, "authentication failure"));
    }
    if faults.error_rate > 0.0 && ((roll >> 11) as f64 / (1u64 << 53) as f64) < faults.error_rate {
        latency.await;
        return respond(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated internal error",
        ));
    }
    if parts.method != Method::GET {
        latency.await;
        return respond(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is simulated",
        ));
    }
    let now = state.clock.now_secs() + faults.skew_secs;
    // A large cluster's history is megabytes of JSON: render it off the async workers.
    let query = parts.uri.query().unwrap_or("").to_string();
    let rest = rest.to_string();
    let shared = state.clone();
    let bent = faults.clone();
    let accept = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let openmetrics = accept(header::ACCEPT).contains("application/openmetrics-text");
    let gzip = exposition && accept(header::ACCEPT_ENCODING).contains("gzip");
    let content_type = match (exposition, openmetrics) {
        (false, _) => "application/json;charset=UTF-8",
        (true, true) => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        (true, false) => "text/plain; version=0.0.4; charset=utf-8",
    };
    let render = async move {
        tokio::task::spawn_blocking(move || {
            let remote = &shared.fleet.remotes[index];
            if exposition {
                let text = super::exposition::render(
                    shared.fleet.seed,
                    remote,
                    remote.series,
                    now,
                    openmetrics,
                );
                return Ok(if gzip {
                    gzip_bytes(text.as_bytes())
                } else {
                    text.into_bytes()
                });
            }
            api(&shared, remote, &bent, &rest, &Query(&query), now)
        })
        .await
        .unwrap_or_else(|e| {
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("simulator bug: {e}"),
            ))
        })
    };
    let ((), result) = tokio::join!(latency, render);
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err((status, message)) => return respond(error(status, &message)),
    };
    let body = Bytes::from(body);
    let body: Body = if faults.malformed {
        Full::new(body.slice(..body.len() / 2)).boxed()
    } else if let Some(size) = faults.oversize {
        padded(body, size)
    } else if faults.trickle {
        trickled(body)
    } else {
        Full::new(body).boxed()
    };
    // The remote's clock, skew included, as a real server's `Date` header shows it.
    let date = std::time::UNIX_EPOCH + Duration::from_secs(now.max(0) as u64);
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::DATE, httpdate::fmt_http_date(date));
    if gzip {
        response = response.header(header::CONTENT_ENCODING, "gzip");
    }
    let response = response
        .body(body)
        .expect("static response parts are valid");
    respond(response)
}

/// A body gzip-compressed (fast level: the simulator serves many targets).
fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

fn respond(response: Response<Body>) -> Reply {
    Reply::Respond(response)
}

/// An error reply in the API's shape.
fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = json!({ "data": null, "message": format!("{message}\n") }).to_string();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json;charset=UTF-8")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("static response parts are valid")
}

/// `body` followed by spaces up to `size` bytes, streamed without a length.
fn padded(body: Bytes, size: u64) -> Body {
    let pad = Bytes::from(vec![b' '; 64 * 1024]);
    let left = size.saturating_sub(body.len() as u64);
    let chunks = stream::unfold((Some(body), left), move |(first, left)| {
        let pad = pad.clone();
        async move {
            if let Some(first) = first {
                return Some((Ok(Frame::data(first)), (None, left)));
            }
            if left == 0 {
                return None;
            }
            let n = left.min(pad.len() as u64);
            Some((Ok(Frame::data(pad.slice(..n as usize))), (None, left - n)))
        }
    });
    StreamBody::new(chunks).boxed()
}

/// `body` in small pieces with pauses between them.
fn trickled(body: Bytes) -> Body {
    let chunks = stream::unfold(0usize, move |pos| {
        let body = body.clone();
        async move {
            if pos >= body.len() {
                return None;
            }
            tokio::time::sleep(TRICKLE_PAUSE).await;
            let end = (pos + TRICKLE_BYTES).min(body.len());
            Some((Ok(Frame::data(body.slice(pos..end))), end))
        }
    });
    StreamBody::new(chunks).boxed()
}

type ApiResult = Result<Vec<u8>, (StatusCode, String)>;

/// The API of one remote, bent by the `faults` in force.
fn api(
    state: &SimState,
    remote: &SimRemote,
    faults: &Faults,
    path: &str,
    query: &Query<'_>,
    now: i64,
) -> ApiResult {
    let fleet = &state.fleet;
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let pbs = remote.kind == RemoteKind::Pbs;
    match segments.as_slice() {
        ["cluster", "metrics", "export"] if !pbs => metrics(fleet, remote, faults, query, now),
        ["status", "metrics"] if pbs => metrics(fleet, remote, faults, query, now),
        ["cluster", "resources"] if !pbs => {
            // `type` narrows the list as PVE's does (vm: qemu and lxc).
            let body = render_cluster_resources(fleet, remote, faults, now);
            match query.get("type").as_deref() {
                None => Ok(body),
                Some(wanted) => filter_resources(&body, wanted),
            }
        }
        ["status", "datastore-usage"] if pbs => {
            Ok(render_datastore_usage(fleet, remote, faults, now))
        }
        ["nodes"] => {
            let nodes: Vec<Value> = if pbs {
                vec![json!({ "node": "localhost" })]
            } else {
                remote
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let status = if fleet.node_up(remote, faults, i, now) {
                            "online"
                        } else {
                            "offline"
                        };
                        json!({ "node": n, "status": status, "type": "node" })
                    })
                    .collect()
            };
            Ok(json!({ "data": nodes }).to_string().into_bytes())
        }
        ["nodes", node, "tasks"] => {
            let node = node_up(fleet, remote, faults, node, now)?;
            task_list(state, remote, node, query, now)
        }
        ["nodes", node, "tasks", upid, "status"] => {
            node_up(fleet, remote, faults, node, now)?;
            let upid = Upid::parse(&percent_decode(upid, false))
                .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
            let task = find_task(fleet, remote, &upid, now)
                .ok_or((StatusCode::NOT_FOUND, format!("no such task: {upid}")))?;
            Ok(json!({ "data": task.status_reply(remote.kind, now) })
                .to_string()
                .into_bytes())
        }
        _ => Err((
            StatusCode::NOT_IMPLEMENTED,
            format!("no such API path: {path}"),
        )),
    }
}

/// A resource list narrowed to one `type` (`vm`: qemu and lxc), as PVE's parameter does.
fn filter_resources(body: &[u8], wanted: &str) -> ApiResult {
    let types: &[&str] = match wanted {
        "vm" => &["qemu", "lxc"],
        "node" => &["node"],
        "storage" => &["storage"],
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                "parameter verification failed: type: value {other:?} is not vm, node or storage"
            ),
            ))
        }
    };
    let mut reply: Value = serde_json::from_slice(body)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let Some(items) = reply["data"].as_array_mut() {
        items.retain(|i| i["type"].as_str().is_some_and(|t| types.contains(&t)));
    }
    Ok(reply.to_string().into_bytes())
}

/// PVE's status when it cannot reach the cluster member a request is for.
const NO_ROUTE: u16 = 595;

/// The index of a path's node if it is up; an offline one answers as PVE does when it
/// cannot proxy to a member (595).
fn node_up(
    fleet: &Fleet,
    remote: &SimRemote,
    faults: &Faults,
    node: &str,
    now: i64,
) -> Result<usize, (StatusCode, String)> {
    let index = node_index(remote, node)?;
    if !fleet.node_up(remote, faults, index, now) {
        let status = StatusCode::from_u16(NO_ROUTE).expect("595 is a valid status code");
        return Err((status, format!("no route to host: node {node} is offline")));
    }
    Ok(index)
}

/// The node index for a path's node name (PBS also answers to `localhost`).
fn node_index(remote: &SimRemote, node: &str) -> Result<usize, (StatusCode, String)> {
    if remote.kind == RemoteKind::Pbs && node == "localhost" {
        return Ok(0);
    }
    remote
        .nodes
        .iter()
        .position(|n| n == node)
        .ok_or((StatusCode::NOT_FOUND, format!("no such node: {node}")))
}

fn metrics(
    fleet: &Fleet,
    remote: &SimRemote,
    faults: &Faults,
    query: &Query<'_>,
    now: i64,
) -> ApiResult {
    let history = query.flag("history")?;
    query.flag("local-only")?;
    let start = query.int("start-time")?;
    Ok(render_metrics(fleet, remote, faults, now, history, start))
}

/// `GET /nodes/{node}/tasks`: PVE's `source` (archive | active | all) or PBS's `running`,
/// then `since`, `until`, `start`, `limit` (default 50).
fn task_list(
    state: &SimState,
    remote: &SimRemote,
    node: usize,
    query: &Query<'_>,
    now: i64,
) -> ApiResult {
    let (finished, running) = if remote.kind == RemoteKind::Pbs {
        if query.flag("running")? {
            (false, true)
        } else {
            (true, true)
        }
    } else {
        match query.get("source").as_deref() {
            None | Some("archive") => (true, false),
            Some("active") => (false, true),
            Some("all") => (true, true),
            Some(other) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("parameter verification failed: source: value {other:?} is not archive, active or all"),
                ))
            }
        }
    };
    let since = query.int("since")?.unwrap_or(0);
    let until = query.int("until")?.unwrap_or(now);
    let start = query.int("start")?.unwrap_or(0).max(0) as usize;
    let limit = query.int("limit")?.unwrap_or(50).max(0) as usize;
    let tasks: Vec<_> = tasks_between(&state.fleet, remote, node, since, until, now)
        .into_iter()
        .filter(|t| if t.running(now) { running } else { finished })
        .collect();
    let total = tasks.len();
    let items: Vec<Value> = tasks
        .iter()
        .skip(start)
        .take(limit)
        .map(|t| t.list_item(remote.kind, now))
        .collect();
    Ok(json!({ "data": items, "total": total })
        .to_string()
        .into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fleet::{Fleet, SimConfig};

    const NOW: i64 = 1_750_000_000;

    fn state() -> SimState {
        let fleet = Fleet::build(&SimConfig {
            task_interval_secs: 60,
            ..SimConfig::default()
        });
        SimState::new(
            fleet,
            Arc::new(fleetpoll_actors::TokioClock::system()),
            Default::default(),
        )
    }

    fn get(state: &SimState, remote: &str, path: &str, query: &str) -> Value {
        let remote = state.fleet.remote(remote).unwrap();
        let body = api(state, remote, &Faults::default(), path, &Query(query), NOW).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn tasks(reply: &Value) -> Vec<Value> {
        reply["data"].as_array().unwrap().clone()
    }

    #[test]
    fn pve_task_list_defaults_to_50_finished_tasks() {
        let state = state();
        let reply = get(&state, "pve-1", "nodes/pve-1-n1/tasks", "");
        let items = tasks(&reply);
        assert_eq!(items.len(), 50);
        assert!(items
            .iter()
            .all(|t| t["status"].is_string() && t["endtime"].is_i64()));
        assert!(reply["total"].as_u64().unwrap() > 50);
    }

    #[test]
    fn pve_task_sources_split_running_and_finished() {
        let state = state();
        let q = "since=1749990000&limit=5000";
        let all = tasks(&get(
            &state,
            "pve-1",
            "nodes/pve-1-n1/tasks",
            &format!("{q}&source=all"),
        ));
        let active = tasks(&get(
            &state,
            "pve-1",
            "nodes/pve-1-n1/tasks",
            &format!("{q}&source=active"),
        ));
        let archive = tasks(&get(&state, "pve-1", "nodes/pve-1-n1/tasks", q));
        assert!(!active.is_empty());
        assert!(active.iter().all(|t| t.get("status").is_none()));
        assert_eq!(all.len(), active.len() + archive.len());
        assert!(all
            .iter()
            .all(|t| t["starttime"].as_i64().unwrap() >= 1_749_990_000));
    }

    #[test]
    fn start_until_and_limit_page_through_the_list() {
        let state = state();
        let path = "nodes/pve-1-n2/tasks";
        let whole = tasks(&get(
            &state,
            "pve-1",
            path,
            "source=all&since=1749900000&limit=5000",
        ));
        let page = tasks(&get(
            &state,
            "pve-1",
            path,
            "source=all&since=1749900000&start=10&limit=5",
        ));
        assert_eq!(page, whole[10..15].to_vec());
        let until = whole[20]["starttime"].as_i64().unwrap();
        let older = tasks(&get(
            &state,
            "pve-1",
            path,
            &format!("source=all&since=1749900000&until={until}&limit=5000"),
        ));
        assert_eq!(older, whole[20..].to_vec());
    }

    #[test]
    fn pbs_lists_running_tasks_too_unless_asked_for_running_only() {
        let state = state();
        let path = "nodes/localhost/tasks";
        let all = tasks(&get(&state, "pbs-1", path, "since=1749990000&limit=5000"));
        let running = tasks(&get(&state, "pbs-1", path, "running=1&limit=5000"));
        assert!(all.iter().any(|t| t.get("status").is_none()));
        assert!(all
            .iter()
            .all(|t| t["worker_type"].is_string() && t.get("type").is_none()));
        assert!(!running.is_empty());
        assert!(running.iter().all(|t| t.get("endtime").is_none()));
    }

    #[test]
    fn unknown_paths_nodes_and_bad_parameters_are_errors() {
        let state = state();
        let pve = state.fleet.remote("pve-1").unwrap();
        let err = |path: &str, query: &str| {
            api(&state, pve, &Faults::default(), path, &Query(query), NOW)
                .unwrap_err()
                .0
        };
        assert_eq!(err("status/metrics", ""), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(
            err("status/datastore-usage", ""),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            err("cluster/resources", "type=sdn-ish"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(err("nodes/elsewhere/tasks", ""), StatusCode::NOT_FOUND);
        assert_eq!(
            err("nodes/pve-1-n1/tasks", "source=some"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            err("cluster/metrics/export", "history=maybe"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            err("nodes/pve-1-n1/tasks/UPID:x/status", ""),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn the_resource_lists_answer_and_narrow_by_type() {
        let state = state();
        let all = tasks(&get(&state, "pve-1", "cluster/resources", ""));
        let vms = tasks(&get(&state, "pve-1", "cluster/resources", "type=vm"));
        assert_eq!(vms.len(), 30);
        assert!(all.len() > vms.len());
        assert!(vms.iter().all(|v| v["name"].is_string()));
        let stores = tasks(&get(&state, "pbs-1", "status/datastore-usage", ""));
        assert_eq!(stores.len(), 2);
        assert!(stores[0]["store"].is_string() && stores[0]["total"].is_u64());
    }

    #[test]
    fn an_offline_node_shows_in_the_node_list() {
        let state = state();
        let pve = state.fleet.remote("pve-1").unwrap();
        let faults = Faults::from_list(&[crate::sim::Fault::NodeOffline(1)]);
        let body = api(&state, pve, &faults, "nodes", &Query(""), NOW).unwrap();
        let nodes: Value = serde_json::from_slice(&body).unwrap();
        let listed = tasks(&nodes);
        let status: Vec<&str> = listed
            .iter()
            .map(|n| n["status"].as_str().unwrap())
            .collect();
        assert_eq!(status, ["online", "online", "offline"]);
        let err = api(
            &state,
            pve,
            &faults,
            "nodes/pve-1-n3/tasks",
            &Query(""),
            NOW,
        )
        .unwrap_err();
        assert_eq!(err.0.as_u16(), 595, "{err:?}");
        assert!(api(
            &state,
            pve,
            &faults,
            "nodes/pve-1-n2/tasks",
            &Query(""),
            NOW
        )
        .is_ok());
    }
}
