//! How the API answers what it refuses: every error is JSON, `{"error": "what is wrong
//! and what to do", "status": n}`. [`ApiError`] is what handlers return; the fallbacks
//! answer unknown paths (404) and methods (405); [`request_limits`] refuses an overlong
//! request target (414) or header block (431) before any handler runs; and
//! [`json_errors`] turns any other error response — an extractor's plain-text
//! rejection, say — into the same JSON, so no error leaves the API in another shape.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::limits::{MAX_HEADER_BYTES, MAX_URI_BYTES, RETRY_AFTER_SECS};

/// A JSON error reply: the status and the message.
#[derive(Debug)]
pub struct ApiError(pub(super) StatusCode, pub(super) String);

impl ApiError {
    /// A 400 naming the parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }

    /// A 404 saying what was not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, message.into())
    }

    /// A 500 for a failure of fleetpoll itself.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, message.into())
    }

    /// A 503 for a bound reached, with `Retry-After`.
    pub(super) fn busy(message: impl Into<String>) -> Response {
        let mut response =
            ApiError(StatusCode::SERVICE_UNAVAILABLE, message.into()).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({ "error": self.1, "status": self.0.as_u16() })),
        )
            .into_response()
    }
}

/// The fallback of unknown paths.
pub(super) async fn no_such_endpoint() -> ApiError {
    ApiError::not_found("no such endpoint; the endpoints are listed in docs/api.md")
}

/// The fallback of known paths asked with a method they do not take (axum keeps the
/// `Allow` header naming the ones they do).
pub(super) async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "this endpoint does not take {method}; the Allow header names the methods it takes"
        ),
    )
}

/// Refuses a request whose target is longer than [`MAX_URI_BYTES`] (414) or whose
/// headers add up to more than [`MAX_HEADER_BYTES`] (431), before its handler runs.
pub(super) async fn request_limits(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return ApiError(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request target is {target} bytes; fleetpoll accepts at most \
                 {MAX_URI_BYTES}: shorten the query"
            ),
        )
        .into_response();
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > MAX_HEADER_BYTES {
        return ApiError(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request's headers are {headers} bytes; fleetpoll accepts at most \
                 {MAX_HEADER_BYTES}: send fewer or shorter headers"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Rewrites an error response that is not JSON (an extractor's rejection, a status
/// without a body) as the API's JSON error, keeping its status and headers.
pub(super) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut json = ApiError(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().append(name.clone(), value.clone());
        }
    }
    json
}
