//! The page shell every page shares: head, navigation, the `<main>` the script refreshes
//! in place, and the dialog that asks for the API token. Plus the small pieces several
//! pages use (state badges, links, HTML answers).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// Where a page sits: the prefix that leads from it back to the router's root (`./`
/// for `/`, `../` for `/ui/…`), put before every link so that all links are relative.
/// Links to the overview go to `ui/`, which works under an embedder's prefix too.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Base(pub(crate) &'static str);

impl Base {
    /// The root page.
    pub(crate) const ROOT: Base = Base("./");
    /// A page under `ui/`.
    pub(crate) const UI: Base = Base("../");

    /// `path` (relative to the router's root) as seen from this page.
    pub(crate) fn to(self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Tasks,
    Engine,
    None,
}

/// A whole page: `refresh_secs` tells the script how often to refresh `<main>`
/// (0: never).
pub(crate) fn page(base: Base, title: &str, nav: Nav, refresh_secs: u32, main: Markup) -> Markup {
    let item = |n: Nav, path: &str, label: &str| {
        html! {
            a href=(base.to(path)) aria-current=[(nav == n).then_some("page")] { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · fleetpoll" }
                // No favicon request: the page fetches nothing it does not serve.
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(base.to("ui/style.css"));
                script src=(base.to("ui/app.js")) defer {}
            }
            body data-base=(base.0) data-refresh=(refresh_secs) {
                header {
                    a.brand href=(base.to("ui/")) { "fleetpoll" }
                    nav aria-label="pages" {
                        (item(Nav::Overview, "ui/", "Overview"))
                        (item(Nav::Tasks, "ui/tasks", "Tasks"))
                        (item(Nav::Engine, "ui/engine", "Engine"))
                    }
                    span #status role="status" aria-live="polite" {}
                }
                main #main { (main) }
                dialog #token-dialog {
                    form method="dialog" {
                        p { "This daemon requires its API token for changes. The page keeps it \
                             for this browser tab's session only." }
                        label for="token-input" { "API token" }
                        input #token-input type="password" autocomplete="off" required;
                        div.buttons {
                            button value="cancel" formnovalidate { "Cancel" }
                            button #token-ok value="ok" { "Use token" }
                        }
                    }
                }
                div #tooltip role="tooltip" hidden {}
            }
        }
    }
}

/// An HTML answer.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A page saying what went wrong (an unknown remote, a bad parameter).
pub(crate) fn error_page(base: Base, status: StatusCode, message: &str) -> Response {
    html_response(
        status,
        page(
            base,
            "error",
            Nav::None,
            0,
            html! {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                p.error { (message) }
                p { a href=(base.to("ui/")) { "Back to the overview" } }
            },
        ),
    )
}

/// A state as a badge (`ok`, `failing`, `running` …), its class naming the state.
pub(crate) fn badge(state: &str) -> Markup {
    html! { span class=(format!("badge st-{state}")) { (state) } }
}

/// Inline SVG drawn by the `chart` module.
pub(crate) fn svg(s: String) -> PreEscaped<String> {
    PreEscaped(s)
}

/// A Unix time as a `<time>` element: the age as text, the UTC date as its title.
pub(crate) fn time_ago(t: Option<i64>, now: i64) -> Markup {
    match t {
        Some(t) => html! {
            time datetime=(t) title=(super::format::utc_time(t)) { (super::format::ago(t, now)) }
        },
        None => html! { span.none { "—" } },
    }
}

/// Percent-encodes a query value.
pub(crate) fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
