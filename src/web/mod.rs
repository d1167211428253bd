//! The web status page, served at `/` on the API's listener: plain HTML drawn on the
//! server from `maud` templates, SVG charts drawn by `chart`, one small script and one
//! style sheet embedded in the binary. Nothing is fetched from elsewhere; every URL is
//! relative, so the page works wherever an embedder mounts the API router.
//!
//! # Layout
//!
//! - this file: the routes, the embedded assets, the shared query parameters.
//! - `layout`: the page shell (header, navigation, the token dialog) and small helpers.
//! - `overview`: the fleet overview at `/`.
//! - `remote`: a remote's page (its entities with trend lines) and an entity's charts.
//! - `tasks`: the task list with its filters.
//! - `engine`: the supervision tree, rate limiter, storage, hooks and the last reload.
//! - `chart`: SVG line charts and trend lines.
//! - `format`: units, ages and UTC dates for people.
//! - `assets/`: `app.js` (refresh, sort and filter, timeframe, live charts, hover,
//!   collect now with the token) and `style.css` (light and dark, phone widths).

mod chart;
mod engine;
mod format;
mod layout;
mod overview;
mod remote;
mod tasks;

use axum::extract::OriginalUri;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::api::ApiState;
use layout::Base;

pub use overview::render_overview;
pub use remote::render_remote;

/// The page's script.
const APP_JS: &str = include_str!("assets/app.js");
/// The page's style sheet.
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The page's routes, merged into the API router (which adds the state, the limits and
/// gzip).
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(root))
        .route("/ui/", get(overview::overview_page))
        .route("/ui/remote", get(remote::remote_page))
        .route("/ui/entity", get(remote::entity_page))
        .route("/ui/charts", get(remote::charts_fragment))
        .route("/ui/tasks", get(tasks::tasks_page))
        .route("/ui/engine", get(engine::engine_page))
        .route("/ui/app.js", get(app_js))
        .route("/ui/style.css", get(style_css))
}

/// The overview at `/`. Mounted under a prefix, the router's root is the prefix without
/// a slash (`/fleetpoll`: axum's `nest` routes no `/fleetpoll/`), where relative links
/// would resolve above the prefix; there the browser is sent to the overview's other
/// address `fleetpoll/ui/`, below it.
async fn root(uri: OriginalUri, state: axum::extract::State<ApiState>) -> Response {
    let path = uri.0.path();
    if !path.ends_with('/') {
        let last = path.rsplit('/').next().unwrap_or_default();
        return Redirect::temporary(&format!("{last}/ui/")).into_response();
    }
    overview::overview_at(state, Base::ROOT).await
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            // Short, so a new binary's assets are picked up within minutes.
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}
