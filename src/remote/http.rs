//! The transport shared by the PVE, PBS and exposition clients: per-node connection pools,
//! failover to the next node when one cannot be reached, connect and request timeouts,
//! a body cap enforced while the body streams in, and errors classified for the engine.
//!
//! | what happened | class | next node tried? |
//! |---|---|---|
//! | connection refused, no connection within the connect timeout | `Unreachable` (when every node failed) | yes |
//! | connection closed or reset before a reply | `Unreachable` (when every node failed) | yes |
//! | TLS handshake failed, certificate neither trusted nor pinned | `Tls` | no |
//! | no complete reply within the request timeout (hang, trickle, latency) | `Timeout` | no |
//! | HTTP 401 / 403 | `Auth` | no |
//! | HTTP 404 (the object asked for does not exist, e.g. a task's UPID) | `NotFound` | no |
//! | any other non-2xx status, with the API's message | `Remote` | no |
//! | body over the cap, cut off, or not the promised JSON | `BadReply` | no |
//!
//! A successful reply's `Date` header is handed back with its body
//! ([`Http::get_dated`]): the remote's clock as it sees it, to second precision.
//!
//! The API flavour (PVE, PBS) speaks HTTPS under `/api2/json` and accepts JSON; the
//! exposition flavour (Prometheus targets) asks for the URL's path over http or https,
//! accepts the text format and OpenMetrics, and asks for gzip, which is decoded here
//! within the same body cap.
//!
//! A timeout is not retried on another node: the request may be running there already,
//! and a second full timeout would double the time the poll holds its permits.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fleetpoll_actors::{ErrorClass, RemoteId, SourceError, UnixTime};
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::TlsConnector;

use super::endpoint::{ClientOptions, NodeAddress, RemoteEndpoint};
use super::metrics::excerpt;
use super::pool::{NodeIdle, Sender};
use super::tls::system_roots;

/// The most a connection buffers while reading (hyper's default is about 400 KB).
const MAX_READ_BUFFER: usize = 128 * 1024;
/// Error replies are read up to this size for their message.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// One node: its address, TLS setup (none for plain http) and idle connections.
struct Node {
    address: NodeAddress,
    server_name: ServerName<'static>,
    connector: Option<TlsConnector>,
    idle: Arc<NodeIdle>,
}

/// What the requests of a client look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `{prefix}/api2/json{path}`, `Accept: application/json`.
    Api,
    /// The path as given, the exposition formats accepted, gzip asked for.
    Exposition,
}

/// The `Accept` header of a scrape: OpenMetrics first, the text format as fallback.
pub(crate) const EXPOSITION_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.9,\
     text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A successful reply.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The body, decoded if it came gzip-encoded.
    pub(crate) body: Bytes,
    /// The time its `Date` header states.
    pub(crate) date: Option<UnixTime>,
    /// Its `Content-Type`.
    pub(crate) content_type: Option<String>,
}

/// How one attempt on one node failed.
enum Attempt {
    /// The node could not be reached: try the next one.
    Unreachable(String),
    /// The node answered (or TLS failed): report this.
    Failed(SourceError),
}

/// An HTTPS client of one remote (all its nodes).
pub(crate) struct HttpClient {
    remote: RemoteId,
    nodes: Vec<Node>,
    authorization: Option<HeaderValue>,
    flavor: Flavor,
    options: ClientOptions,
    /// The node that answered last; tried first next time.
    preferred: AtomicUsize,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.address.to_string()).collect();
        f.debug_struct("HttpClient")
            .field("remote", &self.remote)
            .field("nodes", &nodes)
            .field("authorization", &"<redacted>")
            .field("options", &self.options)
            .finish()
    }
}

impl HttpClient {
    /// An API client for `endpoint` sending `authorization` with every request.
    pub(crate) fn new(
        endpoint: RemoteEndpoint,
        authorization: String,
    ) -> Result<Self, SourceError> {
        Self::build(endpoint, Some(authorization), Flavor::Api, true)
    }

    /// An exposition client of `endpoint`'s nodes over https (`tls`) or plain http,
    /// sending `authorization` (a bearer token) when there is one.
    pub(crate) fn exposition(
        endpoint: RemoteEndpoint,
        authorization: Option<String>,
        tls: bool,
    ) -> Result<Self, SourceError> {
        Self::build(endpoint, authorization, Flavor::Exposition, tls)
    }

    fn build(
        endpoint: RemoteEndpoint,
        authorization: Option<String>,
        flavor: Flavor,
        tls: bool,
    ) -> Result<Self, SourceError> {
        let remote = endpoint.remote;
        let other =
            |what: String| SourceError::new(ErrorClass::Other, format!("remote {remote}: {what}"));
        if endpoint.nodes.is_empty() {
            return Err(other("no node address configured".into()));
        }
        let roots = endpoint.options.roots.clone().unwrap_or_else(system_roots);
        let mut nodes = Vec::with_capacity(endpoint.nodes.len());
        for address in endpoint.nodes {
            let server_name = ServerName::try_from(address.host.clone())
                .map_err(|_| other(format!("{:?} is not a valid host name", address.host)))?;
            // The node's connection identity: kept connections and TLS sessions belong
            // to it alone, and a client built again for it (a reload) finds them.
            let key = format!(
                "{remote}\0{}\0{}\0{tls}\0{:?}",
                address.host, address.port, address.fingerprint
            );
            let connector = if tls {
                let config = endpoint
                    .options
                    .tls_sessions
                    .node_config(&key, &roots, address.fingerprint, &[b"http/1.1"])
                    .map_err(|e| other(format!("TLS setup failed: {e}")))?;
                Some(TlsConnector::from(config))
            } else {
                None
            };
            nodes.push(Node {
                address,
                server_name,
                connector,
                idle: endpoint.options.idle.node(&key),
            });
        }
        let authorization = match authorization {
            None => None,
            Some(text) => {
                let mut value = HeaderValue::from_str(&text).map_err(|_| {
                    other("the token contains characters not allowed in a header".into())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Self {
            remote,
            nodes,
            authorization,
            flavor,
            options: endpoint.options,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The remote's name.
    pub(crate) fn remote(&self) -> &RemoteId {
        &self.remote
    }

    /// The client's options.
    pub(crate) fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// `GET {prefix}/api2/json{path}` on the first node that can be reached, starting
    /// with the one that answered last. Returns the body of a successful reply.
    pub(crate) async fn get(&self, path: &str) -> Result<Bytes, SourceError> {
        Ok(self.get_dated(path).await?.0)
    }

    /// As [`Http::get`], with the time the reply's `Date` header states (Unix seconds;
    /// `None` when it has none or an unreadable one).
    pub(crate) async fn get_dated(
        &self,
        path: &str,
    ) -> Result<(Bytes, Option<UnixTime>), SourceError> {
        let reply = self.get_reply(path).await?;
        Ok((reply.body, reply.date))
    }

    /// As [`Http::get`], with the reply's `Date` and `Content-Type`.
    pub(crate) async fn get_reply(&self, path: &str) -> Result<Reply, SourceError> {
        let count = self.nodes.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        let mut failures = Vec::new();
        for step in 0..count {
            let index = (first + step) % count;
            let node = &self.nodes[index];
            let started = Instant::now();
            let outcome = self.get_on(node, path).await;
            tracing::debug!(
                remote = %self.remote,
                node = %node.address,
                path,
                ok = outcome.is_ok(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "request"
            );
            match outcome {
                Ok(reply) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(Attempt::Unreachable(why)) => {
                    tracing::debug!(remote = %self.remote, node = %node.address, reason = %why, "node unreachable, trying the next");
                    failures.push(format!("{}: {why}", node.address));
                }
                Err(Attempt::Failed(err)) => return Err(err),
            }
        }
        Err(SourceError::new(
            ErrorClass::Unreachable,
            format!(
                "remote {}: no node could be reached ({})",
                self.remote,
                failures.join("; ")
            ),
        ))
    }

    /// One request on one node, reusing an idle connection when there is one; a reused
    /// connection that turns out closed is replaced by a fresh one once.
    async fn get_on(&self, node: &Node, path: &str) -> Result<Reply, Attempt> {
        let deadline = Instant::now() + self.options.request_timeout;
        if let Some(sender) = self.options.idle.take(&node.idle) {
            match self.exchange(node, sender, path, deadline).await {
                Err(Attempt::Unreachable(_)) => {}
                other => return other,
            }
        }
        let sender = self.connect(node, deadline).await?;
        self.exchange(node, sender, path, deadline).await
    }

    fn fail(&self, class: ErrorClass, node: &Node, what: impl fmt::Display) -> Attempt {
        Attempt::Failed(SourceError::new(
            class,
            format!("remote {} node {}: {what}", self.remote, node.address),
        ))
    }

    /// A new TLS connection to `node`.
    async fn connect(&self, node: &Node, deadline: Instant) -> Result<Sender, Attempt> {
        // The connect timeout, but never past the request's deadline.
        let connect_timeout = self
            .options
            .connect_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let addr = (node.address.host.as_str(), node.address.port);
        let tcp = match timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(err)) => return Err(Attempt::Unreachable(format!("connect failed: {err}"))),
            Err(_) => {
                return Err(Attempt::Unreachable(format!(
                    "no connection within {connect_timeout:?}"
                )))
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(connector) = &node.connector else {
            return self.handshake(node, tcp).await;
        };
        let tls = match timeout_at(deadline, connector.connect(node.server_name.clone(), tcp)).await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                return Err(self.fail(
                    ErrorClass::Tls,
                    node,
                    format_args!("TLS handshake failed: {err}"),
                ))
            }
            Err(_) => {
                return Err(self.fail(
                    ErrorClass::Timeout,
                    node,
                    format_args!(
                        "TLS handshake not done within {:?}",
                        self.options.request_timeout
                    ),
                ))
            }
        };
        self.handshake(node, tls).await
    }

    /// HTTP/1.1 over an open (TLS or plain) stream.
    async fn handshake<S>(&self, node: &Node, stream: S) -> Result<Sender, Attempt>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(MAX_READ_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                self.fail(
                    ErrorClass::Other,
                    node,
                    format_args!("HTTP setup failed: {e}"),
                )
            })?;
        tokio::spawn(async move {
            // Errors surface on the request side; the connection just ends.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends the request on `sender` and reads the reply within the deadline.
    async fn exchange(
        &self,
        node: &Node,
        mut sender: Sender,
        path: &str,
        deadline: Instant,
    ) -> Result<Reply, Attempt> {
        let mut request = Request::get(match self.flavor {
            Flavor::Api => format!("{}/api2/json{path}", self.options.path_prefix),
            Flavor::Exposition => path.to_string(),
        })
        .header(header::HOST, node.address.to_string());
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        request = match self.flavor {
            Flavor::Api => request.header(header::ACCEPT, "application/json"),
            Flavor::Exposition => request
                .header(header::ACCEPT, EXPOSITION_ACCEPT)
                .header(header::ACCEPT_ENCODING, "gzip"),
        };
        let uri = path;
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| {
            self.fail(
                ErrorClass::Other,
                node,
                format_args!("bad request {uri:?}: {e}"),
            )
        })?;
        let exchange = async {
            sender
                .ready()
                .await
                .map_err(|e| Attempt::Unreachable(format!("connection lost: {}", chain(&e))))?;
            let response = sender.send_request(request).await.map_err(|e| {
                Attempt::Unreachable(format!("connection closed without a reply: {}", chain(&e)))
            })?;
            let status = response.status();
            let date = response
                .headers()
                .get(header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(reply_date);
            let text_header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_string)
            };
            let content_type = text_header(header::CONTENT_TYPE);
            let gzip = text_header(header::CONTENT_ENCODING)
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"));
            let success = status.is_success();
            let cap = if success {
                self.options.max_body_bytes
            } else {
                MAX_ERROR_BODY
            };
            let too_large = || {
                self.fail(
                    ErrorClass::BadReply,
                    node,
                    format_args!("reply larger than the {cap} bytes allowed"),
                )
            };
            let announced = hyper::body::Body::size_hint(response.body()).exact();
            if success && announced.is_some_and(|len| len > cap) {
                return Err(too_large());
            }
            // An error reply is only read for its message: a long one is cut, not refused.
            let (body, complete) = read_capped(response.into_body(), cap, announced, !success)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge => too_large(),
                    BodyError::Broken(e) => self.fail(
                        ErrorClass::BadReply,
                        node,
                        format_args!("reply cut off: {}", chain(&e)),
                    ),
                })?;
            Ok::<_, Attempt>((status, body, complete, date, content_type, gzip))
        };
        let (status, body, complete, date, content_type, gzip) =
            match timeout_at(deadline, exchange).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(self.fail(
                        ErrorClass::Timeout,
                        node,
                        format_args!(
                            "no complete reply within {:?}",
                            self.options.request_timeout
                        ),
                    ))
                }
            };
        if complete {
            self.options.idle.put(&node.idle, sender);
        }
        if status.is_success() {
            let body = if gzip {
                gunzip(&body, self.options.max_body_bytes).map_err(|why| {
                    self.fail(ErrorClass::BadReply, node, format_args!("gzip body: {why}"))
                })?
            } else {
                body
            };
            return Ok(Reply {
                body,
                date,
                content_type,
            });
        }
        let message = error_message(&body, status);
        let class = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorClass::Auth,
            StatusCode::NOT_FOUND => ErrorClass::NotFound,
            _ => ErrorClass::Remote,
        };
        Err(self.fail(class, node, format_args!("HTTP {status}: {message}")))
    }
}

/// Decodes a gzip body, refusing one that inflates past `cap` bytes.
fn gunzip(body: &[u8], cap: u64) -> Result<Bytes, String> {
    use std::io::Read;
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(cap as usize));
    let read = flate2::read::MultiGzDecoder::new(body)
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if read as u64 > cap {
        return Err(format!("inflates past the {cap} bytes allowed"));
    }
    Ok(Bytes::from(out))
}

/// The Unix time of an HTTP `Date` header (IMF-fixdate, or the obsolete forms RFC 9110
/// says to accept).
fn reply_date(value: &str) -> Option<UnixTime> {
    let time = httpdate::parse_http_date(value).ok()?;
    let secs = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// Why reading a body failed.
enum BodyError {
    TooLarge,
    Broken(hyper::Error),
}

/// Reads a body up to `cap` bytes. Past the cap it fails, or with `truncate` returns
/// the first `cap` bytes and `false` (the rest is left unread, so the connection cannot
/// be reused). An `announced` length is reserved at once: a backfill reply is megabytes,
/// and growing the buffer by doubling would hold up to twice that.
async fn read_capped(
    mut body: hyper::body::Incoming,
    cap: u64,
    announced: Option<u64>,
    truncate: bool,
) -> Result<(Bytes, bool), BodyError> {
    let mut buffer = BytesMut::with_capacity(announced.unwrap_or(0).min(cap) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Broken)?;
        if let Ok(data) = frame.into_data() {
            let room = cap.saturating_sub(buffer.len() as u64);
            if data.len() as u64 > room {
                if !truncate {
                    return Err(BodyError::TooLarge);
                }
                buffer.extend_from_slice(&data[..room as usize]);
                return Ok((buffer.freeze(), false));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok((buffer.freeze(), true))
}

/// The message of an error reply: the API's `message` member, else a quote of the body.
fn error_message(body: &[u8], status: StatusCode) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorReply {
        message: Option<String>,
    }
    match serde_json::from_slice::<ErrorReply>(body) {
        Ok(ErrorReply {
            message: Some(message),
        }) => message.trim().chars().take(300).collect(),
        _ if body.is_empty() => status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string(),
        _ => excerpt(body, 0),
    }
}

/// An error with its causes, `outer: inner: innermost`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Percent-encodes one path segment (everything but unreserved characters, `:` and `@`).
pub(crate) fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replys_date_header_is_read_as_unix_time_in_every_form_http_allows() {
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(reply_date(form), Some(784_111_777), "{form}");
        }
        assert_eq!(reply_date("yesterday"), None);
    }

    #[test]
    fn gzip_bodies_inflate_within_the_cap_and_a_bomb_is_refused() {
        use std::io::Write;
        let text = "node_load1 0.5\n".repeat(1000);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        let packed = enc.finish().unwrap();
        assert!(packed.len() < text.len() / 10);
        assert_eq!(&gunzip(&packed, 1 << 20).unwrap()[..], text.as_bytes());
        let err = gunzip(&packed, 1000).unwrap_err();
        assert!(err.contains("1000 bytes"), "{err}");
        assert!(gunzip(b"not gzip", 1000).is_err());
    }

    #[test]
    fn path_segments_escape_everything_but_safe_characters() {
        assert_eq!(
            encode_segment("UPID:pve:1:vzdump:100:u@pve!tok:"),
            "UPID:pve:1:vzdump:100:u@pve%21tok:"
        );
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn error_messages_prefer_the_api_message() {
        assert_eq!(
            error_message(
                br#"{"data":null,"message":"no such task\n"}"#,
                StatusCode::NOT_FOUND
            ),
            "no such task"
        );
        assert_eq!(error_message(b"", StatusCode::BAD_GATEWAY), "Bad Gateway");
        assert!(error_message(b"<html>oops</html>", StatusCode::BAD_GATEWAY).contains("oops"));
    }
}
