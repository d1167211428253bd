//! The simulator costs what a real fleet costs: every node its own address,
//! certificate and server name (so TLS sessions do not carry from one remote to the
//! next), connections that pay their round trips, nodes that go offline and come back,
//! outages, and guests that start and stop — measured with real clients over loopback.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetpoll::remote::{Fingerprint, PveClient};
use fleetpoll::sim::{Churn, Fault, Listen, NodeOutages, Rtt, SimConfig, SimRemoteInfo, Simulator};
use fleetpoll_actors::{Clock, Cursor, ErrorClass, RemoteSource, TaskQuery};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, NamedGroup, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A wall clock the test moves by hand.
#[derive(Debug)]
struct ManualClock(AtomicU64);

impl ManualClock {
    fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_secs(self.0.load(Ordering::SeqCst))
    }
}

const T0: u64 = 1_750_000_000;

fn fleet(pve: usize, pbs: usize, nodes: usize) -> SimConfig {
    SimConfig {
        seed: 11,
        pve_remotes: pve,
        pbs_remotes: pbs,
        nodes_per_cluster: nodes,
        guests_per_cluster: 6,
        ..SimConfig::default()
    }
}

/// Waits until `cond` holds, for at most five seconds.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether something listens at `addr`.
async fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

/// A TLS session store that offers whatever ticket it holds to any server — the way to
/// find out whether a server accepts another server's session. Records tickets only
/// while `recording` is on.
#[derive(Debug, Default)]
struct OneStoreForAll {
    recording: AtomicBool,
    tickets: Mutex<Vec<Tls13ClientSessionValue>>,
}

impl ClientSessionStore for OneStoreForAll {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }
    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {}
    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        if self.recording.load(Ordering::SeqCst) {
            self.tickets.lock().unwrap().push(value);
        }
    }
    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.tickets.lock().unwrap().pop()
    }
}

/// Accepts any certificate (the test compares fingerprints itself). One verifier for
/// every connection: rustls offers a session only to a config with the verifier that
/// made it, so the client side cannot be what keeps a session from resuming.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config whose sessions live in `store`.
fn client(store: &Arc<OneStoreForAll>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::store(store.clone());
    Arc::new(config)
}

/// What one raw TLS exchange with a node saw.
struct Seen {
    kind: HandshakeKind,
    certificate: Vec<u8>,
    reply: String,
}

/// Connects to `addr` with `config` and asks for `/api2/json/nodes` (under `prefix`)
/// with `Connection: close`, reading the reply to the end (so the server's session
/// tickets arrive).
async fn exchange(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    prefix: &str,
    authorization: &str,
) -> Seen {
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let (_, conn) = tls.get_ref();
    let kind = conn.handshake_kind().unwrap();
    let certificate = conn
        .peer_certificates()
        .map(|c| c[0].to_vec())
        .unwrap_or_default();
    let request = format!(
        "GET {prefix}/api2/json/nodes HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\n\
         Connection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    Seen {
        kind,
        certificate,
        reply: String::from_utf8_lossy(&reply).into_owned(),
    }
}

/// The newest point of `entity`'s `metric` in `batch`: its time and value.
fn newest(batch: &fleetpoll_actors::MetricBatch, entity: &str, metric: &str) -> Option<(i64, f64)> {
    let index = batch
        .series
        .iter()
        .position(|s| &*s.entity == entity && &*s.metric == metric)?;
    batch
        .points
        .iter()
        .filter(|p| p.series as usize == index)
        .map(|p| (p.timestamp, p.value))
        .max_by_key(|(ts, _)| *ts)
}

/// Whether `batch` has any point of `entity`.
fn exports(batch: &fleetpoll_actors::MetricBatch, entity: &str) -> bool {
    batch.series.iter().any(|s| &*s.entity == entity)
}

fn pve_authorization(info: &SimRemoteInfo) -> String {
    format!("PVEAPIToken={}={}", info.token_id, info.secret)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn two_remotes_have_their_own_addresses_certificates_and_server_names() {
    let sim = common::start(fleet(2, 1, 3)).await;
    let remotes = sim.remotes();
    let nodes: Vec<_> = remotes.iter().flat_map(|r| r.nodes.iter()).collect();
    let addresses: std::collections::BTreeSet<_> = nodes.iter().map(|n| n.address.ip()).collect();
    let fingerprints: std::collections::BTreeSet<_> =
        nodes.iter().map(|n| n.fingerprint.to_string()).collect();
    assert_eq!(nodes.len(), 7);
    assert_eq!(addresses.len(), 7, "every node its own address");
    assert_eq!(fingerprints.len(), 7, "and its own certificate");
    assert!(remotes.iter().all(|r| r.path_prefix.is_empty()));

    let config = client(&Arc::new(OneStoreForAll::default()));
    let (a, b) = (&remotes[0], &remotes[1]);
    let seen_a = exchange(a.nodes[0].address, &config, "", &pve_authorization(a)).await;
    let seen_b = exchange(b.nodes[0].address, &config, "", &pve_authorization(b)).await;

    assert!(seen_a.reply.starts_with("HTTP/1.1 200"), "{}", seen_a.reply);
    assert!(seen_a.reply.contains("pve-1-n1") && !seen_a.reply.contains("pve-2-n1"));
    assert!(seen_b.reply.contains("pve-2-n1"), "{}", seen_b.reply);
    assert_eq!(
        Fingerprint::of_der(&seen_a.certificate),
        a.nodes[0].fingerprint
    );
    assert_eq!(
        Fingerprint::of_der(&seen_b.certificate),
        b.nodes[0].fingerprint
    );
    // The certificates name their own node and address, not the other's.
    let ip = |n: &fleetpoll::sim::SimNodeInfo| match n.address.ip() {
        std::net::IpAddr::V4(v4) => v4.octets(),
        std::net::IpAddr::V6(_) => unreachable!("the simulator listens on IPv4"),
    };
    assert!(
        contains(&seen_a.certificate, "pve-1-n1") && !contains(&seen_a.certificate, "pve-2-n1")
    );
    assert!(contains(&seen_b.certificate, "pve-2-n1"));
    assert!(seen_a.certificate.windows(4).any(|w| w == ip(&a.nodes[0])));
    assert!(!seen_a.certificate.windows(4).any(|w| w == ip(&b.nodes[0])));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_tls_session_from_one_remote_does_not_resume_on_another() {
    let sim = common::start(fleet(2, 0, 1)).await;
    let (a, b) = (sim.remote("pve-1").unwrap(), sim.remote("pve-2").unwrap());
    let (node_a, node_b) = (&a.nodes[0], &b.nodes[0]);
    let store = Arc::new(OneStoreForAll::default());
    let config = client(&store);

    store.recording.store(true, Ordering::SeqCst);
    let first = exchange(node_a.address, &config, "", &pve_authorization(&a)).await;
    store.recording.store(false, Ordering::SeqCst);
    assert_eq!(Fingerprint::of_der(&first.certificate), node_a.fingerprint);
    assert_eq!(first.kind, HandshakeKind::Full);
    assert!(
        store.tickets.lock().unwrap().len() >= 2,
        "remote A issued tickets"
    );

    // A's ticket offered to B: B never issued it, so the handshake is a full one.
    let on_b = exchange(node_b.address, &config, "", &pve_authorization(&b)).await;
    assert_eq!(on_b.kind, HandshakeKind::Full);
    assert_eq!(Fingerprint::of_der(&on_b.certificate), node_b.fingerprint);
    assert!(on_b.reply.starts_with("HTTP/1.1 200"), "{}", on_b.reply);
    // The control: A itself resumes its own ticket.
    let again = exchange(node_a.address, &config, "", &pve_authorization(&a)).await;
    assert_eq!(again.kind, HandshakeKind::Resumed);
    assert_eq!(
        sim.tls_handshakes().resumed,
        1,
        "{:?}",
        sim.tls_handshakes()
    );
    sim.shutdown().await;

    // Behind the shared listener the same ticket does carry from remote to remote.
    let shared = common::start(SimConfig {
        listen: Listen::Shared("127.0.0.1:0".parse().unwrap()),
        ..fleet(2, 0, 1)
    })
    .await;
    let (a, b) = (
        shared.remote("pve-1").unwrap(),
        shared.remote("pve-2").unwrap(),
    );
    store.recording.store(true, Ordering::SeqCst);
    exchange(
        a.nodes[0].address,
        &config,
        &a.path_prefix,
        &pve_authorization(&a),
    )
    .await;
    store.recording.store(false, Ordering::SeqCst);
    let on_b = exchange(
        b.nodes[0].address,
        &config,
        &b.path_prefix,
        &pve_authorization(&b),
    )
    .await;
    assert_eq!(on_b.kind, HandshakeKind::Resumed);
    assert!(on_b.reply.contains("pve-2-n1"), "{}", on_b.reply);
    shared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_costs_three_round_trips_and_a_kept_alive_request_one() {
    let rtt = Duration::from_millis(200);
    let sim = common::start(SimConfig {
        rtt: Rtt::millis(200),
        guests_per_cluster: 2,
        ..fleet(1, 0, 1)
    })
    .await;
    let client = common::pve(&sim, "pve-1");

    let started = Instant::now();
    client.fetch_metrics(Cursor::START).await.unwrap();
    let new_connection = started.elapsed();
    let started = Instant::now();
    client.fetch_metrics(Cursor::START).await.unwrap();
    let kept_alive = started.elapsed();

    assert_eq!(
        sim.connections_accepted(),
        1,
        "the second request reused the connection"
    );
    // TCP + TLS 1.3 + the request; generous upper bounds for a loaded machine.
    assert!(new_connection >= 3 * rtt, "{new_connection:?}");
    assert!(
        new_connection < 3 * rtt + Duration::from_millis(1500),
        "{new_connection:?}"
    );
    // One round trip, and well under what a new connection would cost.
    assert!(kept_alive >= rtt, "{kept_alive:?}");
    assert!(
        kept_alive < 2 * rtt + Duration::from_millis(150),
        "{kept_alive:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_cluster_fails_over_when_a_node_goes_offline_and_returns_to_it() {
    let sim = common::start(fleet(1, 0, 3)).await;
    let info = sim.remote("pve-1").unwrap();
    let mut endpoint = common::endpoint(&info);
    endpoint.nodes.reverse(); // n3 first: the one that goes offline
    let client = PveClient::new(endpoint).unwrap();
    let n3 = info.nodes[2].address;
    let has_n3 = |batch: &fleetpoll_actors::MetricBatch| exports(batch, "node/pve-1-n3");
    assert!(has_n3(&client.fetch_metrics(Cursor::START).await.unwrap()));

    assert!(sim.set_faults("pve-1", &[Fault::NodeOffline(1)]));
    eventually("n3 refuses connections", async || !listening(n3).await).await;
    assert_eq!(sim.node_answers("pve-1", 2), Some(false));

    // The pooled connection to n3 was dropped, a new one refused: n2 answers instead.
    let batch = client.fetch_metrics(Cursor::START).await.unwrap();
    assert!(
        !has_n3(&batch),
        "the metric export leaves the offline node out"
    );
    assert!(exports(&batch, "node/pve-1-n2"));
    let tasks = client
        .list_tasks(&TaskQuery {
            default_since: sim.now() - 3600,
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        tasks.complete_nodes,
        ["pve-1-n1", "pve-1-n2"],
        "/nodes shows n3 offline"
    );

    assert!(sim.set_faults("pve-1", &[]));
    eventually("n3 listens again", async || listening(n3).await).await;
    assert!(has_n3(&client.fetch_metrics(Cursor::START).await.unwrap()));
    sim.shutdown().await;
}

#[tokio::test]
async fn nodes_go_offline_and_come_back_on_the_churn_schedule() {
    let clock = Arc::new(ManualClock(T0.into()));
    let sim = Simulator::start_with_clock(
        SimConfig {
            churn: Churn {
                node_outages: Some(NodeOutages::new(3600, 600).unwrap()),
                ..Churn::default()
            },
            ..fleet(1, 0, 2)
        },
        clock.clone(),
    )
    .await
    .unwrap();
    let info = sim.remote("pve-1").unwrap();
    let n1 = info.nodes[0].address;
    let client = PveClient::new(common::endpoint(&info)).unwrap();

    // Within two hours of simulated time n1 has an outage.
    let mut steps = 0;
    while sim.node_answers("pve-1", 0) == Some(true) {
        clock.advance(30);
        steps += 1;
        assert!(steps < 240, "n1 never went offline");
    }
    eventually("n1 refuses connections", async || !listening(n1).await).await;
    let batch = client.fetch_metrics(Cursor::START).await.unwrap();
    assert!(!exports(&batch, "node/pve-1-n1"));
    assert!(exports(&batch, "node/pve-1-n2"));

    // It comes back within 15 minutes (600 s × at most 1.5).
    let mut steps = 0;
    while sim.node_answers("pve-1", 0) == Some(false) {
        clock.advance(30);
        steps += 1;
        assert!(steps <= 30, "n1 stayed offline");
    }
    eventually("n1 listens again", async || listening(n1).await).await;
    clock.advance(20); // the next generation, measured after the return
    let batch = client.fetch_metrics(Cursor::START).await.unwrap();
    let (_, uptime) = newest(&batch, "node/pve-1-n1", "uptime").expect("n1 exports again");
    assert!(uptime < 120.0, "it came back rebooted: uptime {uptime}");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_outage_refuses_every_listener_during_its_window_and_serves_after() {
    let clock = Arc::new(ManualClock(T0.into()));
    let sim = Simulator::start_with_clock(
        SimConfig {
            faults: vec!["outage=60+120".parse().unwrap()],
            ..fleet(2, 1, 2)
        },
        clock.clone(),
    )
    .await
    .unwrap();
    let addresses: Vec<SocketAddr> = sim
        .remotes()
        .iter()
        .flat_map(|r| r.nodes.iter().map(|n| n.address))
        .collect();
    let client = common::pve(&sim, "pve-1");
    client.fetch_metrics(Cursor::START).await.unwrap();

    clock.advance(90);
    for addr in &addresses {
        eventually("every listener refuses", async || !listening(*addr).await).await;
    }
    let err = client.fetch_metrics(Cursor::START).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Unreachable, "{err}");

    clock.advance(100);
    for addr in &addresses {
        eventually("every listener serves again", async || {
            listening(*addr).await
        })
        .await;
    }
    client.fetch_metrics(Cursor::START).await.unwrap();
    assert!(common::pbs(&sim, "pbs-1")
        .fetch_metrics(Cursor::START)
        .await
        .is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn the_outage_switch_drops_open_connections_and_refuses_new_ones_until_it_is_off() {
    let sim = common::start(fleet(1, 1, 1)).await;
    let client = common::pve(&sim, "pve-1");
    client.fetch_metrics(Cursor::START).await.unwrap();
    let addr = sim.remote("pbs-1").unwrap().nodes[0].address;

    sim.set_outage(true);
    assert!(sim.outage());
    eventually("the listeners refuse", async || !listening(addr).await).await;
    let err = client.fetch_metrics(Cursor::START).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Unreachable, "{err}");

    sim.set_outage(false);
    eventually("the listeners serve", async || listening(addr).await).await;
    client.fetch_metrics(Cursor::START).await.unwrap();
    sim.shutdown().await;
}

/// The guests' status in pve-1's resource list of a simulator with `seed` and guests
/// that may change every 600 s, at each of `times` (seconds after `T0`).
async fn guest_states(seed: u64, times: &[u64]) -> Vec<Vec<(String, String)>> {
    let clock = Arc::new(ManualClock(T0.into()));
    let sim = Simulator::start_with_clock(
        SimConfig {
            seed,
            churn: Churn {
                guest_period_secs: 600,
                ..Churn::default()
            },
            ..fleet(1, 0, 1)
        },
        clock.clone(),
    )
    .await
    .unwrap();
    let client = common::pve(&sim, "pve-1");
    let mut out = Vec::new();
    let mut at = 0;
    for &t in times {
        clock.advance(t - at);
        at = t;
        let mut guests: Vec<(String, String)> = client
            .resources()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.resource_type == "qemu" || r.resource_type == "lxc")
            .map(|r| (r.id, r.status.unwrap_or_default()))
            .collect();
        guests.sort();
        // The metric export follows: cpu_current only for running guests.
        let batch = client.fetch_metrics(Cursor::START).await.unwrap();
        for (id, status) in &guests {
            let cpu = newest(&batch, id, "cpu_current").map(|(ts, _)| ts);
            let now_generation = ((T0 + t) / 10 * 10) as i64;
            assert_eq!(
                cpu == Some(now_generation),
                status == "running",
                "{id} {status} at +{t}"
            );
        }
        out.push(guests);
    }
    sim.shutdown().await;
    out
}

#[tokio::test]
async fn guests_start_and_stop_over_time_the_same_way_for_the_same_seed() {
    let times = [0, 600, 1200, 1800, 2400, 3000];
    let first = guest_states(3, &times).await;
    let again = guest_states(3, &times).await;
    let other = guest_states(4, &times).await;
    assert_eq!(first, again, "deterministic per seed");
    assert_ne!(first, other, "another seed, another history");
    assert!(
        first.windows(2).any(|w| w[0] != w[1]),
        "some guest started or stopped"
    );
}
