//! The rate limiter inside the engine: caps hold for a large fleet, and leases come back
//! when their poller panics or its remote fails. The limiter's own grant rules are unit
//! tests in `actors/src/limiter/tests.rs`.

mod common;

use std::time::Duration;

use common::{wait_until, Fleet};
use fleetpoll_actors::testing::CallKind;
use fleetpoll_actors::{CollectError, ErrorClass, RemoteId, Target};

#[tokio::test(start_paused = true)]
async fn caps_hold_for_a_thousand_remotes_and_all_capacity_returns() {
    let mut fleet = Fleet::new(0);
    for i in 0..1000 {
        let connections = if i % 4 == 0 { 5 } else { 1 };
        let s = fleet.add_remote(&format!("r{i}"), connections);
        s.set_latency(Duration::from_millis(100 + (i % 7) as u64 * 30));
    }
    fleet.seed_fresh();
    fleet.config.limits.global_connections = 20;
    let engine = fleet.start().await;

    // Metrics and task lists of every remote at once.
    let (metrics, tasks) = tokio::join!(
        engine.trigger(Target::All, true),
        engine.refresh_tasks(Target::All, true)
    );
    let metrics = metrics.unwrap();
    assert_eq!(metrics.results.len(), 1000);
    assert!(metrics.results.iter().all(|(_, r)| r.is_ok()));
    assert!(tasks.unwrap().results.iter().all(|(_, r)| r.is_ok()));

    // Both are manual ("collect now" of every remote): they may use the burst too.
    let burst = fleet.config.limits.manual_burst;
    assert_eq!(burst, 2, "the default burst");
    assert_eq!(
        fleet.probe.max_in_flight(),
        20 + burst,
        "the global cap and the manual burst are used and never exceeded"
    );
    for i in 0..1000 {
        let cap = if i % 4 == 0 { 5 } else { 1 };
        let max = fleet.probe.max_in_flight_of(&format!("r{i}"));
        assert!(max <= cap, "r{i} had {max} connections, cap {cap}");
    }
    let snap = engine.limiter().await.unwrap();
    assert_eq!((snap.in_use, snap.leases), (0, 0), "no capacity leaked");
    assert_eq!(fleet.metrics.total_points(), 1000);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_lease_is_reclaimed_when_its_poller_panics_mid_fetch() {
    let mut fleet = Fleet::new(4);
    fleet.seed_fresh();
    fleet.config.limits.global_connections = 1;
    for s in fleet.sources.values() {
        s.set_latency(Duration::from_millis(500));
    }
    let engine = fleet.start().await;
    fleet.source("r0").panic_next(1);

    let crashed = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    assert_eq!(crashed.results[0].1, Err(CollectError::Stopped));
    let during = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    assert_eq!(during.results[0].1, Err(CollectError::Restarting));
    wait_until(Duration::from_secs(2), "r0's poller is back", || async {
        let tree = engine.tree().await.unwrap();
        tree.child("remote_supervisor").unwrap().children[0].state == "running"
    })
    .await;
    // The only connection comes back: everyone else (and r0's next incarnation) collects.
    let all = engine.trigger(Target::All, true).await.unwrap();
    for (id, r) in &all.results {
        assert!(r.is_ok(), "{id}: {r:?}");
    }
    // Background task fetches hold the connection for a while; then it is free.
    wait_until(Duration::from_secs(10), "every lease is back", || async {
        engine.limiter().await.unwrap().in_use == 0
    })
    .await;
    let r0 = engine.remote_status(&RemoteId::new("r0")).await.unwrap();
    assert_eq!(r0.restarts, 1);
    assert_eq!(fleet.probe.calls_to("r0", CallKind::Metrics).len(), 2);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failing_remotes_do_not_hold_connections_while_backing_off() {
    let mut fleet = Fleet::new(3);
    fleet.seed_fresh();
    fleet.config.limits.global_connections = 1;
    let engine = fleet.start().await;
    fleet.source("r1").fail_next(100, ErrorClass::Timeout);
    let first = engine.trigger(Target::All, true).await.unwrap();
    assert!(first.results.iter().filter(|(_, r)| r.is_ok()).count() == 2);
    // A background task fetch may hold the one connection for a moment; r1, backing
    // off, must not hold it at all.
    wait_until(Duration::from_secs(5), "the connection is free", || async {
        engine.limiter().await.unwrap().in_use == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let snap = engine.limiter().await.unwrap();
    assert_eq!(snap.in_use, 0, "{snap:?}");
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_trigger_takes_a_burst_connection_only_where_its_remotes_cap_has_room() {
    // Two connections per poll, cap 2: while the task fetch holds both, a "collect now"
    // of the metrics must wait for them although the burst has room.
    let mut fleet = Fleet::new(0);
    let big = fleet.add_remote("big", 2);
    fleet.add_remote("small", 1);
    fleet.seed_fresh();
    // The task fetch fills the global cap, so triggers go to the burst; it has room for
    // both jobs, so that only the remote's cap holds the poll back.
    fleet.config.limits.global_connections = 2;
    fleet.config.limits.manual_burst = 4;
    big.set_latency(Duration::from_secs(1));
    let engine = fleet.start().await;
    engine
        .refresh_tasks(Target::Remote(RemoteId::new("big")), false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = tokio::time::Instant::now();
    let report = engine
        .trigger(Target::Remote(RemoteId::new("big")), true)
        .await
        .unwrap();
    assert!(report.results[0].1.is_ok());
    let call = &fleet.probe.calls_to("big", CallKind::Metrics)[0];
    assert!(
        call.at.duration_since(asked) >= Duration::from_millis(800),
        "the poll started before the task fetch gave its connections back"
    );
    assert_eq!(
        fleet.probe.max_in_flight_of("big"),
        2,
        "the remote's cap held"
    );
    // With room under its cap, a trigger starts at once.
    let asked = tokio::time::Instant::now();
    engine
        .trigger(Target::Remote(RemoteId::new("small")), true)
        .await
        .unwrap();
    let call = &fleet.probe.calls_to("small", CallKind::Metrics)[0];
    assert!(call.at.duration_since(asked) < Duration::from_millis(5));
    // The task fetch a request joined during start-up's has its follow-up still running.
    wait_until(
        Duration::from_secs(5),
        "every connection returned",
        || async {
            let snap = engine.limiter().await.unwrap();
            (snap.in_use, snap.leases, snap.burst_in_use) == (0, 0, 0)
        },
    )
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
