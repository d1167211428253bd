//! Serving the API: fleetpoll's own accept loop around hyper's HTTP/1 connections, so
//! that every connection is bounded. A client must send a request head within the
//! header timeout; a connection that moves no byte for the idle timeout while none of
//! its requests is being handled is closed (a half-open socket, a reader that stopped
//! reading); at most `max_connections` are open. At the cap, a new client takes the
//! place of the oldest connection that has not yet sent a whole request head (a silent
//! or slow-loris client), which is closed; when every open connection has sent one, the
//! new client waits (one held beyond the cap, the rest in the listen backlog, holding no
//! descriptor of the daemon) until a connection closes. So connections that never ask
//! cannot keep the API from answering. On shutdown the loop stops accepting, asks
//! every connection to finish its request and close, and drops those still open after
//! the drain timeout.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::limits;

/// The bounds the server enforces; the default is the constants of `limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A request head must arrive within this.
    pub header_timeout: Duration,
    /// A connection without bytes moving and without a request in hand is closed after
    /// this.
    pub idle_timeout: Duration,
    /// The most connections open at once; at the cap a new client replaces the oldest
    /// connection without a request, or waits.
    pub max_connections: usize,
    /// How long open connections may finish after shutdown was asked.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        // The `[api]` keys' defaults: written once, in the config file's schema.
        let api = crate::config::ApiConfig::default();
        Self {
            header_timeout: api.header_timeout,
            idle_timeout: api.idle_timeout,
            max_connections: api.max_connections as usize,
            drain_timeout: limits::DRAIN_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` within `bounds` until `shutdown` completes, then
/// drains the open connections (at most `drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    bounds: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout)
        .max_headers(limits::HYPER_MAX_HEADERS)
        .max_header_size(limits::HYPER_MAX_HEADER_BYTES);
    let service = TowerToHyperService::new(router);
    let (stop, stopping) = watch::channel(false);
    let mut open = JoinSet::new();
    let cap = bounds.max_connections.max(1);
    let mut live: Vec<Weak<Activity>> = Vec::new();
    tokio::pin!(shutdown);
    'serve: loop {
        while open.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break 'serve,
        };
        if open.len() >= cap {
            // Make room: close the oldest connection that never sent a request head,
            // or else wait until one closes (the new client is held meanwhile).
            live.retain(|a| a.strong_count() > 0);
            if let Some(victim) = oldest_silent(&live) {
                tracing::debug!("the API is at its connection cap: closing a silent one");
                victim.evict.notify_one();
            }
            while open.len() >= cap {
                tokio::select! {
                    _ = open.join_next() => {}
                    () = &mut shutdown => break 'serve,
                }
            }
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, say: wait a little instead of spinning.
                tracing::warn!(error = %err, "accepting an API connection failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    () = &mut shutdown => break 'serve,
                }
            }
        };
        let activity = Arc::new(Activity::new());
        // Closed connections' entries are dropped once they outnumber the open ones,
        // so the list stays within twice the cap.
        if live.len() >= 2 * cap {
            live.retain(|a| a.strong_count() > 0);
        }
        live.push(Arc::downgrade(&activity));
        let conn = Connection {
            http: http.clone(),
            stream: Metered {
                inner: stream,
                activity: activity.clone(),
            },
            service: Counted {
                inner: service.clone(),
                activity: activity.clone(),
            },
            activity,
            idle_timeout: bounds.idle_timeout,
        };
        let stopping = stopping.clone();
        open.spawn(async move {
            if let Err(err) = conn.run(stopping).await {
                tracing::debug!(%peer, error = %err, "API connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(bounds.drain_timeout, async {
        while open.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = open.len(),
            "API connections still open after the drain timeout are dropped"
        );
        open.shutdown().await;
    }
    Ok(())
}

/// The open connection that was accepted first among those that have not sent a
/// whole request head yet.
fn oldest_silent(live: &[Weak<Activity>]) -> Option<Arc<Activity>> {
    live.iter()
        .filter_map(Weak::upgrade)
        .filter(|a| a.requests.load(Ordering::Relaxed) == 0)
        .min_by_key(|a| a.since)
}

/// When a connection last moved a byte, how many of its requests are in hand and were
/// received, and the signal that closes it to make room for another.
#[derive(Debug)]
struct Activity {
    since: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    evict: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            evict: Notify::new(),
        }
    }

    fn touch(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection counts as idle if nothing happens before: the idle timeout
    /// after its last byte, or a timeout from now while a request is in hand.
    fn idle_at(&self, timeout: Duration) -> Instant {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Instant::now() + timeout;
        }
        self.since + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + timeout
    }
}

/// A socket that stamps its connection's activity on every byte read or written.
#[derive(Debug)]
struct Metered {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router, counting the requests of its connection while they are handled (until
/// the response head; a streamed body moves bytes, which is activity).
#[derive(Debug, Clone)]
struct Counted {
    inner: TowerToHyperService<Router>,
    activity: Arc<Activity>,
}

/// Counts one request in hand until dropped.
struct InHand(Arc<Activity>);

impl Drop for InHand {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl hyper::service::Service<Request<Incoming>> for Counted {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        self.activity.requests.fetch_add(1, Ordering::Relaxed);
        let in_hand = InHand(self.activity.clone());
        let handled = self.inner.call(request);
        Box::pin(async move {
            let response = handled.await;
            drop(in_hand);
            response
        })
    }
}

/// One accepted connection and what bounds it.
struct Connection {
    http: hyper::server::conn::http1::Builder,
    stream: Metered,
    service: Counted,
    activity: Arc<Activity>,
    idle_timeout: Duration,
}

impl Connection {
    /// Serves the connection until the client closes it, it idles out, or — after
    /// `stopping` turned true — its request in hand is answered.
    async fn run(self, mut stopping: watch::Receiver<bool>) -> Result<(), hyper::Error> {
        let conn = self
            .http
            .serve_connection(TokioIo::new(self.stream), self.service);
        tokio::pin!(conn);
        let mut asked_to_stop = false;
        loop {
            let idle_at = self.activity.idle_at(self.idle_timeout);
            tokio::select! {
                served = conn.as_mut() => return served,
                () = self.activity.evict.notified() => return Ok(()),
                () = tokio::time::sleep_until(idle_at) => {
                    if self.activity.idle_at(self.idle_timeout) <= Instant::now() {
                        tracing::debug!("closing an idle API connection");
                        return Ok(());
                    }
                }
                _ = stopping.wait_for(|s| *s), if !asked_to_stop => {
                    asked_to_stop = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
