//! Webhooks: each one a task with its own bounded queue, POSTing each notification as
//! JSON, retried with capped, jittered backoff (a 4xx other than 429 is not retried), so
//! one receiver's failure never holds back another's. The URL and headers are secrets:
//! logs and status name the webhook by its `name`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::engine::Transition;
use super::file::WebhookTarget;
use crate::remote::tls::system_roots;

/// A webhook's counters, as `/api/v1/alerts` and `/metrics` show them.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Notifications delivered (2xx).
    pub sent: AtomicU64,
    /// Notifications given up after their attempts, or refused with a 4xx.
    pub failed: AtomicU64,
    /// Notifications dropped because the queue was full.
    pub dropped: AtomicU64,
    /// The last failure, without the URL.
    pub last_error: Mutex<Option<String>>,
}

/// A webhook's status.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookStatus {
    /// Its name.
    pub name: String,
    /// Delivered.
    pub sent: u64,
    /// Given up.
    pub failed: u64,
    /// Dropped from the full queue.
    pub dropped: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// A running webhook.
#[derive(Debug)]
pub struct Webhook {
    /// Its config.
    pub target: WebhookTarget,
    queue: mpsc::Sender<Arc<Transition>>,
    counters: Arc<WebhookCounters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    /// Starts the webhook's sender task.
    pub fn start(target: WebhookTarget) -> Webhook {
        let (queue, rx) = mpsc::channel(target.def.queue_max);
        let counters = Arc::new(WebhookCounters::default());
        let task = tokio::spawn(send_loop(target.clone(), rx, counters.clone()));
        Webhook {
            target,
            queue,
            counters,
            task,
        }
    }

    /// Queues a notification; a full queue drops it (counted).
    pub fn notify(&self, t: &Arc<Transition>) {
        if self.queue.try_send(t.clone()).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Its status.
    pub fn status(&self) -> WebhookStatus {
        let c = &self.counters;
        WebhookStatus {
            name: self.target.name.clone(),
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            last_error: c.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

/// Why one attempt failed; `retry` is false for a refusal (4xx but 429).
struct Failure {
    text: String,
    retry: bool,
}

async fn send_loop(
    target: WebhookTarget,
    mut rx: mpsc::Receiver<Arc<Transition>>,
    counters: Arc<WebhookCounters>,
) {
    let tls = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(system_roots())
            .with_no_client_auth(),
    );
    let mut conn = None;
    while let Some(t) = rx.recv().await {
        let body = match serde_json::to_vec(&*t) {
            Ok(b) => Bytes::from(b),
            Err(_) => continue,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match post(&target, &tls, &mut conn, body.clone()).await {
                Ok(()) => {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(f) => {
                    let text = format!("webhook {}: {}", target.name, f.text);
                    if !f.retry || attempt >= target.def.max_attempts {
                        tracing::warn!(webhook = %target.name, error = %f.text, attempt,
                            rule = %t.rule, "a notification was given up");
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut e) = counters.last_error.lock() {
                            *e = Some(text);
                        }
                        break;
                    }
                    if let Ok(mut e) = counters.last_error.lock() {
                        *e = Some(text);
                    }
                    // 0.5, 1, 2, 4 … s up to 30 s, with full jitter above half.
                    let cap = Duration::from_millis(500u64 << (attempt - 1).min(6))
                        .min(Duration::from_secs(30));
                    let wait = cap.mul_f64(rand::rng().random_range(0.5..=1.0));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

fn fail(text: impl Into<String>) -> Failure {
    Failure {
        text: text.into(),
        retry: true,
    }
}

/// A kept-alive connection to the receiver (dropped when it closes or fails).
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn connect(
    https: bool,
    host: &str,
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Conn, Failure> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| fail(format!("cannot connect: {}", e.kind())))?;
    let _ = tcp.set_nodelay(true);
    if https {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| fail("the host is not a valid TLS server name"))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        handshake(TokioIo::new(stream)).await
    } else {
        handshake(TokioIo::new(tcp)).await
    }
}

async fn handshake<S>(io: TokioIo<S>) -> Result<Conn, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| fail(format!("HTTP: {e}")))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender, driver })
}

async fn post(
    target: &WebhookTarget,
    tls: &Arc<rustls::ClientConfig>,
    conn: &mut Option<Conn>,
    body: Bytes,
) -> Result<(), Failure> {
    let uri: http::Uri = target
        .def
        .url
        .0
        .parse()
        .map_err(|_| fail("the URL does not parse"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| fail("the URL has no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut request = http::Request::post(path)
        .header(
            http::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("fleetpoll/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in &target.def.headers {
        request = request.header(k.as_str(), v.0.as_str());
    }
    let request = request
        .body(Full::new(body))
        .map_err(|_| fail("the request could not be built (check the headers)"))?;
    let exchange = async {
        if conn.as_ref().is_none_or(|c| c.sender.is_closed()) {
            *conn = Some(connect(https, &host, port, tls).await?);
        }
        let Some(c) = conn.as_mut() else {
            return Err(fail("no connection"));
        };
        c.sender
            .ready()
            .await
            .map_err(|e| fail(format!("HTTP: {e}")))?;
        let response = c
            .sender
            .send_request(request)
            .await
            .map_err(|e| fail(format!("HTTP: {e}")))?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure {
                text: format!("the receiver answered {status}"),
                retry: !status.is_client_error() || status == http::StatusCode::TOO_MANY_REQUESTS,
            })
        }
    };
    let result = tokio::time::timeout(target.timeout, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {} s", target.timeout.as_secs())))
        .and_then(|r| r);
    if result.is_err() {
        // A connection that failed or timed out mid-request is not used again.
        *conn = None;
    }
    result
}
