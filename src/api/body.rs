//! The bodies of the mutating endpoints. A `POST` must say `Content-Type:
//! application/json` (415 otherwise): a browser page cannot send that cross-origin
//! without a CORS preflight, which the API never grants, so a page cannot drive a
//! token-less daemon on loopback. An endpoint with a body needs one (an empty body is
//! 400, not "everything"); it is read within [`BODY_TIMEOUT`] (408) and up to
//! [`MAX_BODY_BYTES`] (413), then parsed (400 with the expected shape).

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::limits::{BODY_TIMEOUT, MAX_BODY_BYTES};
use super::{ApiError, ApiResult};

/// Refuses a request that does not declare a JSON body (415).
pub(super) fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_json = given.as_deref().is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    });
    if is_json {
        return Ok(());
    }
    let what = given.map_or_else(
        || "no Content-Type".to_string(),
        |v| format!("Content-Type {v:?}"),
    );
    Err(ApiError(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("this endpoint takes JSON, the request has {what}: send 'Content-Type: application/json'"),
    ))
}

/// Reads and parses the JSON body of a request; `example` shows the expected shape.
pub(super) async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    example: &str,
) -> ApiResult<T> {
    require_json(headers)?;
    let too_large = || {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY_BYTES} bytes; expected {example}"),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let raw = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES))
        .await
        .map_err(|_| {
            ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {BODY_TIMEOUT:?}; send it with the request"
                ),
            )
        })?
        .map_err(|err| {
            let limit = std::error::Error::source(&err)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if limit {
                too_large()
            } else {
                ApiError::bad_request(format!(
                    "the body could not be read ({err}); expected {example}"
                ))
            }
        })?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(format!(
            "the body is empty; expected {example}"
        )));
    }
    serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("bad JSON body ({e}); expected {example}")))
}
