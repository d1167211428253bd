//! Sending a chunk: one TCP stream, one UDP socket or one HTTP/1.1 connection per
//! exporter, opened on first use and again after a failure, every send within the
//! exporter's timeout. A failure says whether to retry ([`SendError::Retry`]: no
//! connection, a timeout, 5xx, 429) or to give the chunk up ([`SendError::Rejected`]:
//! any other 4xx). Error texts never hold the URL or a header.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;

use super::encode::Payload;
use super::spec::{HttpTarget, Target};

/// The pause after each UDP datagram (≈ 1.4 MB/s at most).
const UDP_PACE: Duration = Duration::from_millis(1);

/// Error replies are read up to this size for their message.
const MAX_REPLY: usize = 4096;

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// Worth another try later.
    #[error("{0}")]
    Retry(String),
    /// The receiver refused the data itself (HTTP 4xx other than 429): not retried.
    #[error("{0}")]
    Rejected(String),
}

/// An open connection, if any.
enum Conn {
    None,
    Tcp(TcpStream),
    Udp(UdpSocket),
    Http(http1::SendRequest<Full<Bytes>>),
}

/// One exporter's way to its receiver.
pub(crate) struct Transport {
    target: Target,
    timeout: Duration,
    conn: Conn,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(crate) fn new(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            conn: Conn::None,
        }
    }

    /// Sends one payload within the timeout; a failed connection is dropped.
    pub(crate) async fn send(&mut self, payload: &Payload) -> Result<(), SendError> {
        let result = match tokio::time::timeout(self.timeout, self.attempt(payload)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Retry(format!(
                "no answer within {} s",
                self.timeout.as_secs_f64()
            ))),
        };
        if matches!(result, Err(SendError::Retry(_))) {
            self.conn = Conn::None;
        }
        result
    }

    async fn attempt(&mut self, payload: &Payload) -> Result<(), SendError> {
        match (&self.target, payload) {
            (Target::Tcp(address), Payload::Body(body)) => {
                // A peer that closed since the last send shows as readable EOF: open anew
                // instead of writing into a dead stream.
                if let Conn::Tcp(s) = &self.conn {
                    let mut probe = [0u8; 1];
                    if !matches!(s.try_read(&mut probe), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
                    {
                        self.conn = Conn::None;
                    }
                }
                if !matches!(self.conn, Conn::Tcp(_)) {
                    let s = TcpStream::connect(address.as_str())
                        .await
                        .map_err(|e| SendError::Retry(format!("cannot connect: {e}")))?;
                    let _ = s.set_nodelay(true);
                    self.conn = Conn::Tcp(s);
                }
                let Conn::Tcp(s) = &mut self.conn else {
                    unreachable!()
                };
                s.write_all(body)
                    .await
                    .map_err(|e| SendError::Retry(format!("write failed: {e}")))?;
                Ok(())
            }
            (Target::Udp(address), Payload::Datagrams(grams)) => {
                if !matches!(self.conn, Conn::Udp(_)) {
                    let peer = tokio::net::lookup_host(address.as_str())
                        .await
                        .map_err(|e| SendError::Retry(format!("cannot resolve: {e}")))?
                        .next()
                        .ok_or_else(|| {
                            SendError::Retry("the address resolves to nothing".into())
                        })?;
                    let local = if peer.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    let s = UdpSocket::bind(local)
                        .await
                        .map_err(|e| SendError::Retry(format!("cannot bind: {e}")))?;
                    s.connect(peer)
                        .await
                        .map_err(|e| SendError::Retry(format!("cannot connect: {e}")))?;
                    self.conn = Conn::Udp(s);
                }
                let Conn::Udp(s) = &self.conn else {
                    unreachable!()
                };
                for (i, g) in grams.iter().enumerate() {
                    if i > 0 {
                        // UDP has no flow control: a burst (a backfill) paced, or the
                        // receiver's socket buffer overflows and drops it silently.
                        tokio::time::sleep(UDP_PACE).await;
                    }
                    s.send(g)
                        .await
                        .map_err(|e| SendError::Retry(format!("send failed: {e}")))?;
                }
                Ok(())
            }
            (Target::Http(http), Payload::Body(body)) => {
                let http = http.clone();
                self.post(&http, body.clone()).await
            }
            (target, _) => Err(SendError::Rejected(format!(
                "internal: payload does not fit the {} transport",
                target.transport()
            ))),
        }
    }

    async fn post(&mut self, target: &Arc<HttpTarget>, body: Bytes) -> Result<(), SendError> {
        let ready = match &mut self.conn {
            Conn::Http(s) => s.ready().await.is_ok(),
            _ => false,
        };
        if !ready {
            self.conn = Conn::Http(connect_http(target).await?);
        }
        let Conn::Http(sender) = &mut self.conn else {
            unreachable!()
        };
        let path = target
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, format!("{}:{}", target.host, target.port));
        for (name, value) in &target.headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|_| SendError::Rejected("the request could not be built".into()))?;
        let reply = sender
            .send_request(req)
            .await
            .map_err(|e| SendError::Retry(format!("request failed: {e}")))?;
        let status = reply.status();
        if status.is_success() {
            // Drain the (small) body so the connection can be used again.
            let _ = reply.into_body().collect().await;
            return Ok(());
        }
        let mut text = Vec::new();
        let mut body = reply.into_body();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(d) = frame.data_ref() {
                text.extend_from_slice(d);
            }
            if text.len() >= MAX_REPLY {
                break;
            }
        }
        text.truncate(MAX_REPLY);
        let message = format!(
            "HTTP {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(&text).trim()
        );
        self.conn = Conn::None;
        if status.as_u16() == 429 || status.is_server_error() {
            Err(SendError::Retry(message))
        } else {
            Err(SendError::Rejected(message))
        }
    }
}

async fn connect_http(target: &HttpTarget) -> Result<http1::SendRequest<Full<Bytes>>, SendError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| SendError::Retry(format!("cannot connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        None => {
            let (sender, conn) = http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| SendError::Retry(format!("HTTP handshake failed: {e}")))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(sender)
        }
        Some(tls) => {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| SendError::Rejected("the URL's host is not a TLS name".into()))?;
            let stream = TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| SendError::Retry(format!("TLS handshake failed: {e}")))?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| SendError::Retry(format!("HTTP handshake failed: {e}")))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(sender)
        }
    }
}
