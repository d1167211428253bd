//! The command-line clients of the HTTP API (`fleetpoll status`, `trigger`, …): a small
//! HTTP/1.1 client for the daemon's plain-HTTP API and the table printers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// Where the API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct ApiClient {
    host: String,
    port: u16,
    token: Option<String>,
    timeout: Duration,
}

impl ApiClient {
    /// A client for `url` (`http://host:port`); the token is sent as a bearer token.
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<ApiClient> {
        let rest = url.strip_prefix("http://").with_context(|| {
            format!("--api {url:?}: the API speaks plain HTTP; give http://HOST:PORT")
        })?;
        let hostport = rest.trim_end_matches('/');
        let (host, port) = hostport
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)))
            .with_context(|| format!("--api {url:?}: expected http://HOST:PORT"))?;
        Ok(ApiClient {
            host,
            port,
            token,
            timeout: Duration::from_secs(120),
        })
    }

    /// Sends a request; returns the JSON body of a 2xx reply, or the API's error.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port)).with_context(|| {
            format!(
                "cannot reach the fleetpoll API at http://{}:{} (is `fleetpoll run` running? see --api)",
                self.host, self.port
            )
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
            .context("the API sent no complete HTTP reply")?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .context("the API sent no HTTP status")?;
        let payload = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(payload)
        } else {
            payload.to_string()
        };
        let value: Value = serde_json::from_str(&payload)
            .with_context(|| format!("the API answered HTTP {status} without JSON"))?;
        if !(200..300).contains(&status) {
            let message = value["error"].as_str().unwrap_or("(no message)");
            bail!("the API answered HTTP {status}: {message}");
        }
        Ok(value)
    }
}

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

fn ago(now: i64, ts: Option<i64>) -> String {
    match ts {
        None => "-".into(),
        Some(t) if now >= t => format!("{}s ago", now - t),
        Some(t) => format!("in {}s", t - now),
    }
}

/// Prints the remotes' status as a table.
pub fn print_status(value: &Value) {
    let now = fleetpoll_actors::system_now_secs();
    println!(
        "{:<20} {:<5} {:<9} {:>5} {:>12} {:>12} {:>10}  LAST ERROR",
        "REMOTE", "KIND", "STATE", "FAILS", "LAST OK", "NEXT TRY", "POINTS"
    );
    for r in value["remotes"].as_array().into_iter().flatten() {
        let error: String = r["last_error"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        println!(
            "{:<20} {:<5} {:<9} {:>5} {:>12} {:>12} {:>10}  {}",
            r["remote"].as_str().unwrap_or("?"),
            r["kind"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            r["consecutive_failures"].as_u64().unwrap_or(0),
            ago(now, r["last_success"].as_i64()),
            ago(now, r["next_attempt"].as_i64()),
            r["points_stored"].as_u64().unwrap_or(0),
            error
        );
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Prints a page of tasks as a table.
pub fn print_tasks(value: &Value) {
    println!(
        "{:<10} {:<10} {:<14} {:<20} {:<8} {:<16} STATUS",
        "STARTED", "REMOTE", "NODE", "TYPE", "ID", "USER"
    );
    for t in value["tasks"].as_array().into_iter().flatten() {
        let status = match t["status"].as_str() {
            Some(s) => s.to_string(),
            None => "running".to_string(),
        };
        println!(
            "{:<10} {:<10} {:<14} {:<20} {:<8} {:<16} {}",
            t["starttime"],
            t["remote"].as_str().unwrap_or("?"),
            t["node"].as_str().unwrap_or("?"),
            t["type"].as_str().unwrap_or("?"),
            t["id"].as_str().unwrap_or(""),
            t["user"].as_str().unwrap_or("?"),
            status
        );
    }
    let shown = value["tasks"].as_array().map_or(0, Vec::len);
    println!("({shown} of {} matching tasks)", value["total"]);
}

/// Prints an entity's history as one line per metric: points known, last, min, mean, max.
pub fn print_history(value: &Value) {
    let data = &value["data"];
    let rows = data["timestamps"].as_array().map_or(0, Vec::len);
    println!(
        "{} {} ({}, {} rows of {} s from {})",
        value["remote"].as_str().unwrap_or("?"),
        value["entity"].as_str().unwrap_or("?"),
        value["cf"].as_str().unwrap_or("?"),
        rows,
        data["step"],
        data["start"]
    );
    println!(
        "{:<16} {:>6} {:>14} {:>14} {:>14} {:>14}",
        "METRIC", "KNOWN", "LAST", "MIN", "MEAN", "MAX"
    );
    for m in data["metrics"].as_array().into_iter().flatten() {
        let known: Vec<f64> = m["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
        let mean = (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64);
        println!(
            "{:<16} {:>6} {:>14} {:>14} {:>14} {:>14}",
            m["name"].as_str().unwrap_or("?"),
            known.len(),
            fmt(known.last().copied()),
            fmt(known.iter().copied().reduce(f64::min)),
            fmt(mean),
            fmt(known.iter().copied().reduce(f64::max)),
        );
    }
}

/// Prints a trigger's per-remote results.
pub fn print_trigger(value: &Value, waited: bool) {
    let results = value["results"].as_array().cloned().unwrap_or_default();
    if !waited && results.is_empty() {
        println!("collection queued");
        return;
    }
    for r in results {
        let remote = r["remote"].as_str().unwrap_or("?");
        if r["ok"] == true {
            let res = &r["result"];
            match res["outcome"].as_str() {
                Some("stored") => println!(
                    "{remote}: stored {} points, newest {}",
                    res["points"], res["cursor"]
                ),
                _ => println!(
                    "{remote}: skipped ({})",
                    res["reason"].as_str().unwrap_or("?")
                ),
            }
        } else {
            println!("{remote}: failed: {}", r["error"].as_str().unwrap_or("?"));
        }
    }
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
