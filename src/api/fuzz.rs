//! The API's parsers of request input, for the `api_request` fuzz target
//! ([`crate::fuzzing`]): the typed query strings and JSON bodies of every endpoint that
//! takes any, with the checks the handlers make of them before they ask the engine or a
//! store, and the path segments that name a task or an RRD file.

use std::path::{Component, Path};

use axum::extract::Query;
use axum::http::{StatusCode, Uri};
use fleetpoll_actors::RemoteId;
use serde::de::DeserializeOwned;

use super::alerts::HistoryQuery;
use super::live::LiveQuery;
use super::resources::ResourcesQuery;
use super::rrd::{rrd_query, top_params, RrdParams, TopParams};
use super::tasks::{status_class, TasksQuery};
use super::tracking::{task_ref, TrackBody};
use super::{ApiResult, CollectBody, RefreshBody, RemotesParams};
use crate::rrd::query::Window;
use crate::rrd::RrdStore;

/// The clock's reading for windows that end now.
const NOW: i64 = 1_700_000_000;

/// A query string as axum reads it from a request's URI; `None` where the text cannot
/// be one (hyper refuses such a request before any handler sees it).
fn query<T: DeserializeOwned>(text: &str) -> Option<Result<T, String>> {
    let uri = Uri::try_from(format!("/api?{text}")).ok()?;
    Some(
        Query::<T>::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(|e| e.to_string()),
    )
}

/// A JSON body as `json_body` reads it.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

/// A handler's refusal of input is a 400, never anything else.
fn refused_as_bad_request<T>(result: ApiResult<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            assert_eq!(e.0, StatusCode::BAD_REQUEST, "{e:?}");
            None
        }
    }
}

/// One request's input: the first byte picks the endpoint (and so what the rest is: a
/// query string, a JSON body or a path segment). No panic; a refusal is a 400; an
/// accepted explicit window is ordered; an RRD path segment names a file inside the
/// data directory, one level below it.
pub fn api_request(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(rest).ok();
    match (which % 12, text) {
        (0, Some(t)) => drop(query::<RemotesParams>(t)),
        (1, Some(t)) => {
            if let Some(Ok(q)) = query::<TasksQuery>(t) {
                refused_as_bad_request(status_class(q.status.as_deref()));
            }
        }
        (2, Some(t)) => drop(query::<HistoryQuery>(t)),
        (3, Some(t)) => drop(query::<LiveQuery>(t)),
        (4, Some(t)) => {
            if let Some(Ok(p)) = query::<RrdParams>(t) {
                if let Some(q) = refused_as_bad_request(rrd_query(p, "node/n".into(), NOW)) {
                    if let Window::Explicit {
                        start,
                        end,
                        resolution,
                    } = q.window
                    {
                        assert!(0 <= start && start < end && resolution > 0);
                    }
                }
            }
        }
        (5, Some(t)) => {
            if let Some(Ok(p)) = query::<TopParams>(t) {
                if let Some((_, n)) = refused_as_bad_request(top_params(&p)) {
                    assert!((1..=1000).contains(&n));
                }
            }
        }
        (6, Some(t)) => drop(query::<ResourcesQuery>(t)),
        (7, _) => drop(body::<CollectBody>(rest)),
        (8, _) => drop(body::<RefreshBody>(rest)),
        (9, _) => {
            if let Some(b) = body::<TrackBody>(rest) {
                refused_as_bad_request(task_ref(&b.upid));
            }
        }
        (10, Some(t)) => drop(refused_as_bad_request(task_ref(t))),
        (11, Some(t)) => rrd_path(t),
        _ => {}
    }
}

/// `/api/v1/rrd/{remote}/{*entity}`: whatever the segments, the file lies in a directory
/// of the data directory and neither name is `.`, `..` or hidden.
fn rrd_path(segments: &str) {
    // The router matches neither segment empty.
    let Some((remote, entity)) = segments.split_once('/') else {
        return;
    };
    if remote.is_empty() || entity.is_empty() {
        return;
    }
    let dir = Path::new("/data");
    let path = RrdStore::file_path(dir, &RemoteId::new(remote), entity);
    let inside = path
        .strip_prefix(dir)
        .expect("the file is inside the data directory");
    let parts: Vec<Component<'_>> = inside.components().collect();
    assert_eq!(
        parts.len(),
        2,
        "{path:?} is not one level below the data directory"
    );
    for part in parts {
        let Component::Normal(name) = part else {
            panic!("{path:?} has a component {part:?}");
        };
        assert!(
            !name.to_string_lossy().starts_with('.'),
            "{path:?} has a hidden name"
        );
    }
}
