//! The request transport of the API client: one HTTP/1.1 request per connection to the
//! daemon's plain-HTTP API, with the bearer token, returning the reply's JSON.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::error::ApiClientError;

/// Where the API is and how to authenticate.
#[derive(Debug, Clone)]
pub(super) struct ApiClient {
    host: String,
    port: u16,
    token: Option<String>,
    timeout: Duration,
}

impl ApiClient {
    /// A client for `url` (`http://host:port`); the token is sent as a bearer token.
    pub(super) fn new(url: &str, token: Option<String>) -> Result<ApiClient, ApiClientError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ApiClientError::NotHttp(url.to_string()))?;
        let hostport = rest.trim_end_matches('/');
        let (host, port) = hostport
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)))
            .ok_or_else(|| ApiClientError::NoHostPort(url.to_string()))?;
        Ok(ApiClient {
            host,
            port,
            token,
            timeout: Duration::from_secs(120),
        })
    }

    /// Sends a request; returns the JSON body of a 2xx reply, or the API's error.
    pub(super) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiClientError> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port)).map_err(|source| {
            ApiClientError::Unreachable {
                host: self.host.clone(),
                port: self.port,
                source,
            }
        })?;
        stream.set_read_timeout(Some(self.timeout))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        )?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, payload) = text
            .split_once("\r\n\r\n")
            .ok_or(ApiClientError::IncompleteReply)?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or(ApiClientError::NoStatus)?;
        let payload = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(payload)
        } else {
            payload.to_string()
        };
        let value: Value = serde_json::from_str(&payload)
            .map_err(|source| ApiClientError::NotJson { status, source })?;
        if !(200..300).contains(&status) {
            let message = value["error"].as_str().unwrap_or("(no message)");
            return Err(ApiClientError::Api {
                status,
                message: message.to_string(),
            });
        }
        Ok(value)
    }
}

/// Joins the chunks of a `Transfer-Encoding: chunked` body.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_url_must_be_plain_http_with_a_port() {
        assert!(ApiClient::new("http://127.0.0.1:8450", None).is_ok());
        assert!(ApiClient::new("https://127.0.0.1:8450", None).is_err());
        assert!(ApiClient::new("http://localhost", None).is_err());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n"), "{\"a\":1}");
    }
}
