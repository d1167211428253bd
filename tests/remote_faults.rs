//! The clients against a simulated fleet that misbehaves: every fault ends in its error
//! class within the timeout, the healthy remotes keep answering, credentials and
//! certificates are checked, and a dead node is skipped for the next one.

mod common;

use std::time::Duration;

use fleetpoll::remote::{ApiToken, Fingerprint, NodeAddress, PbsClient, PveClient};
use fleetpoll::sim::{FaultRule, SimConfig, Simulator};
use fleetpoll_actors::{Cursor, ErrorClass, RemoteSource, SourceError};
use tokio::time::Instant;

/// pve-1 is healthy; every other PVE remote has one fault; pbs-1 runs an hour ahead.
fn faulty_fleet() -> SimConfig {
    let faults = [
        "hang@pve-2",
        "trickle@pve-3",
        "malformed@pve-4",
        "oversize=8000000@pve-5",
        "reset@pve-6",
        "wrong-cert@pve-7",
        "error-rate=1@pve-8",
        "latency=3000@pve-9",
        "latency=100+100@pve-10",
        "skew=3600@pbs-1",
    ];
    SimConfig {
        seed: 7,
        pve_remotes: 10,
        pbs_remotes: 1,
        nodes_per_cluster: 2,
        guests_per_cluster: 5,
        faults: faults
            .iter()
            .map(|f| f.parse::<FaultRule>().unwrap())
            .collect(),
        ..SimConfig::default()
    }
}

/// The request timeout of the fault tests.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Fetches metrics of `id` with a [`TIMEOUT`], returning the outcome and how long it took.
async fn timed_fetch(sim: &Simulator, id: &str) -> (Result<usize, SourceError>, Duration) {
    let mut endpoint = common::endpoint(&sim.remote(id).unwrap());
    endpoint.options.request_timeout = TIMEOUT;
    let client = PveClient::new(endpoint).unwrap();
    let started = Instant::now();
    let result = client.fetch_metrics(Cursor::START).await.map(|b| b.len());
    (result, started.elapsed())
}

#[tokio::test]
async fn every_fault_ends_in_its_error_class_within_the_timeout() {
    let sim = common::start(faulty_fleet()).await;
    let expected = [
        ("pve-2", ErrorClass::Timeout),
        ("pve-3", ErrorClass::Timeout),
        ("pve-4", ErrorClass::BadReply),
        ("pve-5", ErrorClass::BadReply),
        ("pve-6", ErrorClass::Unreachable),
        ("pve-7", ErrorClass::Tls),
        ("pve-8", ErrorClass::Remote),
        ("pve-9", ErrorClass::Timeout),
    ];

    let outcomes =
        futures::future::join_all(expected.iter().map(|(id, _)| timed_fetch(&sim, id))).await;

    for ((id, class), (result, took)) in expected.iter().zip(outcomes) {
        let err = result.expect_err(id);
        assert_eq!(err.class, *class, "{id}: {err}");
        assert!(
            err.message.contains(id),
            "{id}: error names the remote: {err}"
        );
        // Request timeout 1 s; a timeout does not fail over to the next node.
        assert!(took < Duration::from_secs(3), "{id} took {took:?}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_messages_say_what_went_wrong() {
    let sim = common::start(faulty_fleet()).await;
    let message = |id: &'static str| {
        let sim = &sim;
        async move { timed_fetch(sim, id).await.0.unwrap_err().message }
    };
    assert!(message("pve-5").await.contains("larger than"));
    assert!(message("pve-4").await.contains("malformed reply"));
    assert!(message("pve-8").await.contains("simulated internal error"));
    let wrong_cert = message("pve-7").await;
    let node = &sim.remote("pve-7").unwrap().nodes[0];
    assert!(
        wrong_cert.contains(&node.fingerprint.to_string())
            && wrong_cert.contains(&node.wrong_fingerprint.to_string()),
        "names expected and presented fingerprints: {wrong_cert}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn healthy_remotes_answer_while_others_hang() {
    let sim = common::start(faulty_fleet()).await;
    let info = sim.remote("pve-2").unwrap();
    let mut endpoint = common::endpoint(&info);
    endpoint.options.request_timeout = Duration::from_secs(30);
    let hanging_client = PveClient::new(endpoint).unwrap();
    let hanging = tokio::spawn(async move { hanging_client.fetch_metrics(Cursor::START).await });

    for id in ["pve-1", "pve-10", "pve-1"] {
        let (result, took) = timed_fetch(&sim, id).await;
        assert!(result.unwrap() > 0, "{id}");
        if id == "pve-10" {
            assert!(
                took >= Duration::from_millis(100),
                "latency fault delays: {took:?}"
            );
        }
    }

    assert!(!hanging.is_finished(), "the hung request is still pending");
    hanging.abort();
    sim.shutdown().await;
}

#[tokio::test]
async fn a_remote_whose_clock_is_far_ahead_fails_with_class_clock_and_the_offset() {
    let sim = common::start(faulty_fleet()).await;
    let client = common::pbs(&sim, "pbs-1");

    // Every point lies an hour ahead: not an empty success, but a clock error.
    let err = client.fetch_metrics(Cursor::START).await.unwrap_err();

    assert_eq!(err.class, ErrorClass::Clock, "{err}");
    let offset: i64 = err
        .message
        .split("about ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {err}"));
    assert!(
        (3500..=3700).contains(&offset),
        "offset {offset} s for a 3600 s skew: {err}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_remotes_clock_offset_is_measured_by_the_date_header_of_its_reply() {
    let sim = common::start(faulty_fleet()).await;
    let client = common::pbs(&sim, "pbs-1");

    let err = client.fetch_metrics(Cursor::START).await.unwrap_err();

    assert_eq!(err.class, ErrorClass::Clock, "{err}");
    assert!(err.message.contains("Date header"), "{err}");
    let offset: i64 = err
        .message
        .split("about ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {err}"));
    // To the second, plus the time the request took.
    assert!(
        (3600..=3602).contains(&offset),
        "offset {offset} s for a 3600 s skew: {err}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_token_is_an_auth_error_without_the_secret() {
    let sim = common::start(faulty_fleet()).await;
    for id in ["pve-1", "pbs-1"] {
        let info = sim.remote(id).unwrap();
        let secret = "00000000-dead-beef-0000-000000000000";
        let endpoint = common::endpoint_with_token(&info, ApiToken::new(&info.token_id, secret));
        let client: Box<dyn RemoteSource> = if id == "pbs-1" {
            Box::new(PbsClient::new(endpoint).unwrap())
        } else {
            Box::new(PveClient::new(endpoint).unwrap())
        };

        let err = client.fetch_metrics(Cursor::START).await.unwrap_err();

        assert_eq!(err.class, ErrorClass::Auth, "{id}: {err}");
        assert!(!err.message.contains(secret), "{err}");
        assert!(!format!("{client:?}").contains(secret), "{client:?}");
        assert!(!format!("{client:?}").contains(&info.secret), "{client:?}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_pinned_fingerprint_is_a_tls_error_naming_both() {
    let sim = common::start(faulty_fleet()).await;
    let info = sim.remote("pve-1").unwrap();
    let pinned = Fingerprint([0xAB; 32]);
    let client = PveClient::new(common::endpoint_with(
        &info,
        pinned,
        ApiToken::new(&info.token_id, &info.secret),
    ))
    .unwrap();

    let err = client.fetch_metrics(Cursor::START).await.unwrap_err();

    assert_eq!(err.class, ErrorClass::Tls, "{err}");
    assert!(err.message.contains(&pinned.to_string()), "{err}");
    assert!(
        err.message.contains(&info.nodes[0].fingerprint.to_string()),
        "{err}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_dead_node_is_skipped_for_the_next_one() {
    let sim = common::start(faulty_fleet()).await;
    let info = sim.remote("pve-1").unwrap();
    let mut endpoint = common::endpoint(&info);
    let dead = common::dead_node(info.nodes[0].fingerprint);
    endpoint.nodes.insert(0, dead.clone());
    let client = PveClient::new(endpoint.clone()).unwrap();

    let batch = client.fetch_metrics(Cursor::START).await.unwrap();
    assert!(!batch.is_empty());

    endpoint.nodes = vec![dead.clone(), dead];
    let err = PveClient::new(endpoint)
        .unwrap()
        .fetch_metrics(Cursor::START)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Unreachable, "{err}");
    assert!(err.message.contains("no node could be reached"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn sequential_requests_reuse_one_pooled_connection() {
    let sim = common::start(faulty_fleet()).await;
    let client = common::pve(&sim, "pve-1");
    let before = sim.connections_accepted();

    for _ in 0..3 {
        client.fetch_metrics(Cursor::START).await.unwrap();
    }

    assert_eq!(sim.connections_accepted() - before, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_remote_that_went_away_is_unreachable_despite_pooled_connections() {
    let sim = common::start(faulty_fleet()).await;
    let client = common::pve(&sim, "pve-1");
    client.fetch_metrics(Cursor::START).await.unwrap();
    let info = sim.remote("pve-1").unwrap();
    sim.shutdown().await;

    let err = client.fetch_metrics(Cursor::START).await.unwrap_err();

    assert_eq!(err.class, ErrorClass::Unreachable, "{err}");
    assert!(
        err.message.contains(&info.nodes[0].address.to_string()),
        "{err}"
    );
}

/// A loopback listener that never accepts and whose accept queue is already full, so
/// further connection attempts get no answer: the way a node that is down but not
/// refusing looks. Returns the listener and the connections filling its queue.
async fn silent_listener() -> (tokio::net::TcpListener, u16, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut fillers = Vec::new();
    // Fill the queue; once full, the kernel drops further SYNs.
    for _ in 0..8 {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        match tokio::time::timeout(Duration::from_millis(200), connect).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    (listener, port, fillers)
}

#[tokio::test]
async fn a_node_that_does_not_answer_connects_is_skipped_after_the_connect_timeout() {
    let sim = common::start(faulty_fleet()).await;
    let info = sim.remote("pve-1").unwrap();
    let (_listener, port, _fillers) = silent_listener().await;
    let mut endpoint = common::endpoint(&info);
    let silent = NodeAddress::new("127.0.0.1", port, Some(info.nodes[0].fingerprint));
    endpoint.nodes.insert(0, silent.clone());
    endpoint.options.connect_timeout = Duration::from_millis(300);

    let started = Instant::now();
    let batch = PveClient::new(endpoint.clone())
        .unwrap()
        .fetch_metrics(Cursor::START)
        .await
        .unwrap();
    assert!(!batch.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited for the first node"
    );

    endpoint.nodes = vec![silent];
    let started = Instant::now();
    let err = PveClient::new(endpoint)
        .unwrap()
        .fetch_metrics(Cursor::START)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Unreachable, "{err}");
    assert!(err.message.contains("no connection within"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_reply_announced_longer_than_the_cap_is_refused() {
    let sim = common::start(faulty_fleet()).await;
    let info = sim.remote("pve-1").unwrap();
    let mut endpoint = common::endpoint(&info);
    endpoint.options.max_body_bytes = 1000;
    let client = PveClient::new(endpoint).unwrap();

    let err = client.fetch_metrics(Cursor::START).await.unwrap_err();

    assert_eq!(err.class, ErrorClass::BadReply, "{err}");
    assert!(err.message.contains("larger than the 1000 bytes"), "{err}");
    // Small replies still fit.
    let nodes = client
        .list_tasks(&fleetpoll_actors::TaskQuery {
            default_since: sim.now(),
            ..Default::default()
        })
        .await;
    assert!(nodes.is_ok(), "{nodes:?}");
    sim.shutdown().await;
}
