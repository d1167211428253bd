//! The simulated network link: a round-trip time (`--rtt-ms`) that every connection
//! pays for its setup and for each exchange on it, injected on the simulator's side
//! because loopback has none (and this kernel has no `tc netem`).
//!
//! # The model
//!
//! Every accepted connection's bytes pass through a delay line in each direction:
//! a chunk read from one side is handed to the other half a round trip later (the
//! one-way delay), in order, without holding up the chunks behind it — so the costs
//! come out of the protocol's own round trips instead of being counted by hand:
//!
//! | what | client-visible cost |
//! |---|---|
//! | TCP handshake (SYN, SYN-ACK) | 1 RTT: the client's first bytes reach the server one RTT after the accept, plus the one-way delay |
//! | TLS 1.3 full or resumed handshake | 1 RTT (ClientHello → ServerHello…Finished; the client's Finished travels with its first request) |
//! | TLS 1.2 full handshake / resumed | 2 RTT / 1 RTT |
//! | each request and its reply | 1 RTT, plus the `latency` fault (the remote's time to answer) |
//!
//! So a request on a new TLS 1.3 connection costs 3 RTT, one on a kept-alive connection
//! 1 RTT; a plain-http exposition scrape on a new connection 2 RTT. With a jitter, each
//! chunk's one-way delay is drawn anew (half of `fixed + [0, jitter]`), never letting a
//! chunk overtake the one before it. Not modelled: bandwidth (a reply arrives whole one
//! one-way delay after it was written), packet loss, and the client's `connect()` itself
//! — loopback completes it at once, so a connect timeout shorter than the RTT does not
//! fire; the TCP round trip shows as a later first reply instead.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};

use super::faults::parse_millis_jitter;
use super::fleet::{jittered, mix};

/// How much a delay line reads ahead before it waits for the far side to take it.
const MAX_IN_FLIGHT: usize = 1 << 20;
/// Bytes asked for per read.
const CHUNK: usize = 16 * 1024;

/// A round-trip time: `fixed` plus up to `jitter`, drawn per chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rtt {
    /// Always paid.
    pub fixed: Duration,
    /// Up to this much more.
    pub jitter: Duration,
}

impl Rtt {
    /// A round-trip time of exactly `ms` milliseconds.
    pub fn millis(ms: u64) -> Rtt {
        Rtt {
            fixed: Duration::from_millis(ms),
            jitter: Duration::ZERO,
        }
    }

    /// Whether there is no delay at all (connections then skip the delay line).
    pub fn is_zero(&self) -> bool {
        self.fixed.is_zero() && self.jitter.is_zero()
    }

    /// The longest round trip it can draw.
    pub fn max(&self) -> Duration {
        self.fixed + self.jitter
    }

    /// One round trip drawn from the hash `h`.
    fn draw(&self, h: u64) -> Duration {
        jittered(self.fixed, self.jitter, h)
    }
}

impl FromStr for Rtt {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (fixed, jitter) = parse_millis_jitter(text).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(Rtt { fixed, jitter })
    }
}

impl fmt::Display for Rtt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.fixed.as_millis())?;
        if !self.jitter.is_zero() {
            write!(f, "+{}", self.jitter.as_millis())?;
        }
        Ok(())
    }
}

/// Carries one accepted connection's bytes between `outer` (the socket) and `inner`
/// (the server's end of an in-memory pipe) through a link of round-trip time `rtt`,
/// until the server closes its end or the socket fails. `key` seeds the jitter.
pub(crate) async fn carry<O, I>(outer: O, inner: I, rtt: Rtt, key: u64)
where
    O: AsyncRead + AsyncWrite + Unpin,
    I: AsyncRead + AsyncWrite + Unpin,
{
    let accepted = Instant::now();
    // The TCP handshake: nothing the client sends can have left before its SYN-ACK.
    let established = accepted + rtt.draw(mix(key, 0x5A));
    let (outer_read, outer_write) = tokio::io::split(outer);
    let (inner_read, inner_write) = tokio::io::split(inner);
    let inbound = delay_line(outer_read, inner_write, rtt, mix(key, 1), established);
    let outbound = delay_line(inner_read, outer_write, rtt, mix(key, 2), accepted);
    tokio::pin!(outbound);
    tokio::select! {
        () = &mut outbound => {}
        // The client finished sending: the server may still be answering.
        () = inbound => outbound.await,
    }
}

/// Copies `from` to `to`, each chunk delivered half a round trip after it was read (and
/// not before `not_before` plus that), in order; at the end of `from`, shuts `to` down.
async fn delay_line<R, W>(mut from: R, mut to: W, rtt: Rtt, key: u64, not_before: Instant)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut queue: VecDeque<(Instant, Bytes)> = VecDeque::new();
    let mut queued = 0usize;
    let mut buf = BytesMut::new();
    let mut ended = false;
    let mut last = not_before;
    let mut chunks = 0u64;
    loop {
        if ended && queue.is_empty() {
            let _ = to.shutdown().await;
            return;
        }
        let due = queue.front().map(|(at, _)| *at);
        buf.reserve(CHUNK);
        tokio::select! {
            read = from.read_buf(&mut buf), if !ended && queued < MAX_IN_FLIGHT => {
                match read {
                    Ok(0) | Err(_) => ended = true,
                    Ok(_) => {
                        chunks += 1;
                        let one_way = rtt.draw(mix(key, chunks)) / 2;
                        let at = (Instant::now().max(not_before) + one_way).max(last);
                        last = at;
                        let chunk = buf.split().freeze();
                        queued += chunk.len();
                        queue.push_back((at, chunk));
                    }
                }
            }
            () = sleep_until(due.unwrap_or(last)), if due.is_some() => {
                let Some((_, chunk)) = queue.pop_front() else { continue };
                queued -= chunk.len();
                if to.write_all(&chunk).await.is_err() || to.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[test]
    fn rtt_specs_parse_like_the_latency_fault() {
        assert_eq!("100".parse::<Rtt>().unwrap(), Rtt::millis(100));
        let jittery: Rtt = "80+40".parse().unwrap();
        assert_eq!(jittery.max(), Duration::from_millis(120));
        assert_eq!(jittery.to_string(), "80+40");
        assert!("fast".parse::<Rtt>().unwrap_err().contains("milliseconds"));
        assert!("10+x".parse::<Rtt>().is_err());
        assert!(Rtt::default().is_zero() && !Rtt::millis(1).is_zero());
    }

    /// A client end and a server end joined by a link of `rtt`.
    fn linked(rtt: Rtt) -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
        let (client, socket) = duplex(1 << 16);
        let (server, pipe) = duplex(1 << 16);
        tokio::spawn(carry(socket, pipe, rtt, 7));
        (client, server)
    }

    async fn echo_once(server: &mut tokio::io::DuplexStream) {
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(&buf).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_exchange_pays_the_tcp_round_trip_and_later_ones_one_each() {
        let (mut client, mut server) = linked(Rtt::millis(100));
        tokio::spawn(async move {
            echo_once(&mut server).await;
            echo_once(&mut server).await;
        });
        let mut buf = [0u8; 5];
        for expected in [200, 100] {
            let t = Instant::now();
            client.write_all(b"hello").await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(t.elapsed(), Duration::from_millis(expected));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn chunks_in_flight_do_not_wait_for_each_other_and_stay_in_order() {
        let (mut client, mut server) = linked(Rtt {
            fixed: Duration::from_millis(100),
            jitter: Duration::from_millis(100),
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        for i in 0..20u8 {
            client.write_all(&[i]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut got = [0u8; 20];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got.to_vec(), (0..20).collect::<Vec<u8>>());
        // Twenty chunks, each at most 100 ms one way: pipelined, not 20 × 50 ms.
        assert!(
            t.elapsed() <= Duration::from_millis(20 + 100),
            "{:?}",
            t.elapsed()
        );
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_closing_ends_the_link_after_delivering_what_it_wrote() {
        let (mut client, mut server) = linked(Rtt::millis(40));
        server.write_all(b"bye").await.unwrap();
        drop(server);
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"bye");
    }
}
