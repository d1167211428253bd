//! The server's bounds over real loopback sockets. Time is paused: it advances only
//! when neither side has anything to do, so a timeout fires exactly when a connection
//! has gone quiet, and "nothing happened within 500 ms" means the server had no work.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::{serve, ServerLimits};

const SHORT: ServerLimits = ServerLimits {
    header_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_millis(300),
    max_connections: 1,
    drain_timeout: Duration::from_secs(1),
};

/// A router with an endless body and a slow answer.
fn router() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/endless",
            get(|| async {
                let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
                let chunks = futures::stream::repeat_with(move || {
                    Ok::<_, std::convert::Infallible>(chunk.clone())
                });
                axum::body::Body::from_stream(chunks)
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                "late"
            }),
        )
}

/// Serves `router()` within `bounds`; returns the port and the shutdown switch.
async fn start(bounds: ServerLimits) -> (u16, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve(listener, router(), bounds, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (port, stop, server)
}

async fn get_request(port: u16, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s
}

/// Reads until the server closes (EOF or reset): whether it did before 64 MiB arrived
/// (far more than the sockets' buffers hold, so an endless response was not cut off).
async fn read_to_close(s: &mut TcpStream) -> bool {
    let mut total = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    while total < 64 << 20 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => total += n,
        }
    }
    false
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_no_request_head_is_closed_after_the_header_timeout() {
    let bounds = ServerLimits {
        idle_timeout: Duration::from_secs(60),
        ..SHORT
    };
    let (port, _stop, _server) = start(bounds).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
    let started = tokio::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(30), read_to_close(&mut s)).await;
    assert_eq!(closed, Ok(true), "a half-sent request head is cut off");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took <= Duration::from_secs(11),
        "closed after {took:?}, the header timeout is 10 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_disconnected_after_the_idle_timeout() {
    let (port, _stop, _server) = start(SHORT).await;
    let mut s = get_request(port, "/endless").await;
    let mut probe = [0u8; 1];
    s.read_exact(&mut probe).await.unwrap();
    // Read nothing for a while: the server's writes stall, the connection goes quiet
    // and is cut off; afterwards what was buffered drains and the stream ends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        read_to_close(&mut s).await,
        "an endless response to a stalled reader was never cut off"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_in_hand_is_not_idle() {
    let (port, _stop, _server) = start(SHORT).await;
    let mut s = get_request(port, "/slow").await;
    let reply = tokio::time::timeout(Duration::from_secs(10), read_until_body(&mut s, b"late"))
        .await
        .expect("the slow answer arrives");
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
}

/// Reads until `needle` arrived (or the server closed).
async fn read_until_body(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while !all.windows(needle.len()).any(|w| w == needle) {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    all
}

#[tokio::test(start_paused = true)]
async fn at_the_connection_cap_a_client_waits_until_a_connection_closes() {
    let bounds = ServerLimits {
        idle_timeout: Duration::from_secs(30),
        ..SHORT
    };
    let (port, _stop, _server) = start(bounds).await;
    // The one connection allowed: accepted, served, kept alive.
    let mut first = get_request(port, "/ok").await;
    let reply = read_until_body(&mut first, b"ok").await;
    assert!(reply.starts_with(b"HTTP/1.1 200"));
    let mut second = get_request(port, "/ok").await;
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(early.is_err(), "a connection beyond the cap was served");
    drop(first);
    let reply = tokio::time::timeout(Duration::from_secs(10), read_until_body(&mut second, b"ok"))
        .await
        .expect("the waiting client is served once the first connection closed");
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
}

#[tokio::test(start_paused = true)]
async fn at_the_connection_cap_a_silent_connection_makes_room_for_a_new_client() {
    let bounds = ServerLimits {
        idle_timeout: Duration::from_secs(30),
        ..SHORT
    };
    let (port, _stop, _server) = start(bounds).await;
    // The one connection allowed: half a request head, then nothing (a slow loris).
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    silent.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = get_request(port, "/ok").await;
    let reply = tokio::time::timeout(
        Duration::from_millis(500),
        read_until_body(&mut second, b"ok"),
    )
    .await
    .expect("the new client is served at once, not after the header timeout");
    assert!(reply.starts_with(b"HTTP/1.1 200"));
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_millis(500), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the silent connection was closed to make room: {closed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_within_the_drain_timeout_with_a_response_still_open() {
    let bounds = ServerLimits {
        idle_timeout: Duration::from_secs(60),
        ..SHORT
    };
    let (port, stop, server) = start(bounds).await;
    let mut s = get_request(port, "/endless").await;
    let mut probe = [0u8; 1];
    s.read_exact(&mut probe).await.unwrap();
    let _ = stop.send(());
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server returns after draining")
        .unwrap();
    assert!(
        started.elapsed() <= Duration::from_secs(2),
        "drain timeout is 1 s"
    );
    assert!(read_to_close(&mut s).await, "the open response was dropped");
}
