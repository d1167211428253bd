//! The engine handle's contracts: a waited trigger returns only once the batch is
//! stored; backoff grows, is bounded, resets, and is bypassed by an explicit trigger;
//! reloads apply as a diff or are rejected whole; shutdown lets in-flight polls finish
//! within the grace period; two engines in one process share nothing.

mod common;

use std::time::Duration;

use common::{wait_until, Fleet, T0};
use fleetpoll_actors::testing::CallKind;
use fleetpoll_actors::{
    CollectOutcome, Cursor, EngineError, ErrorClass, PollState, RemoteId, Skipped, Target,
};

#[tokio::test(start_paused = true)]
async fn a_waited_trigger_returns_only_after_the_store_has_the_batch() {
    let fleet = Fleet::new(2);
    fleet.seed_fresh();
    fleet.source("r0").set_latency(Duration::from_millis(300));
    let engine = fleet.start().await;
    // The store takes real time, as a disk would.
    fleet.metrics.set_write_delay(Duration::from_millis(150));
    let report = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    let stored = fleet.metrics.stored("r0");
    assert_eq!(
        stored.batches, 1,
        "the batch is in the store when trigger returns"
    );
    match &report.results[0].1 {
        Ok(CollectOutcome::Stored { points, cursor }) => {
            assert_eq!(*points, 1);
            assert_eq!(*cursor, stored.cursor);
            assert!(cursor.0.unwrap() > T0 as i64);
        }
        other => panic!("unexpected outcome {other:?}"),
    }
    let status = engine.remote_status(&RemoteId::new("r0")).await.unwrap();
    assert_eq!(status.state, PollState::Ok);
    assert_eq!(status.newest_datapoint, stored.cursor.0);
    // From lease to stored; the paused clock does not see the store's real-time sleep.
    assert!(status.last_duration_ms.is_some_and(|ms| ms >= 300));

    // Without wait the call returns at once, before anything is stored.
    let queued = engine
        .trigger(Target::Remote(RemoteId::new("r1")), false)
        .await
        .unwrap();
    assert!(queued.results.is_empty());
    assert_eq!(fleet.metrics.stored("r1").batches, 0);
    wait_until(Duration::from_secs(2), "r1 is stored", || async {
        fleet.metrics.stored("r1").batches == 1
    })
    .await;
    assert!(matches!(
        engine
            .trigger(Target::Remote(RemoteId::new("nope")), true)
            .await,
        Err(EngineError::UnknownRemote(_))
    ));
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_store_leaves_the_cursor_where_it_was() {
    let fleet = Fleet::new(1);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    fleet.metrics.fail_next(1);
    let r = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    assert!(matches!(
        r.results[0].1,
        Err(fleetpoll_actors::CollectError::Store(_))
    ));
    assert_eq!(fleet.metrics.stored("r0").cursor, Cursor(Some(T0 as i64)));
    let status = engine.remote_status(&RemoteId::new("r0")).await.unwrap();
    assert_eq!(status.state, PollState::Backoff);
    assert_eq!(status.newest_datapoint, Some(T0 as i64));
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_store_shows_as_a_storage_error_until_writing_works_again() {
    let fleet = Fleet::new(1);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    let r0 = Target::Remote(RemoteId::new("r0"));
    fleet.metrics.fail_next(1);
    engine.trigger(r0.clone(), true).await.unwrap();

    let status = engine.remote_status(&RemoteId::new("r0")).await.unwrap();
    assert_eq!(status.last_error_class, Some(ErrorClass::Storage));
    let storage = engine.storage().await.unwrap();
    let shown = storage
        .last_error
        .expect("the daemon's storage error is set");
    assert!(shown.contains("r0"), "{shown}");

    // The explicit trigger bypasses the backoff; this store works, and both clear.
    engine.trigger(r0, true).await.unwrap();
    let status = engine.remote_status(&RemoteId::new("r0")).await.unwrap();
    assert_eq!(
        (status.state, status.last_error_class),
        (PollState::Ok, None)
    );
    assert_eq!(engine.storage().await.unwrap().last_error, None);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_within_its_bounds_resets_on_success_and_yields_to_a_trigger() {
    let fleet = Fleet::new(2);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    let src = fleet.source("r0");
    src.fail_next(6, ErrorClass::Unreachable);
    engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    // Retries follow by themselves: base 10 s doubling to the 180 s cap, full jitter.
    wait_until(
        Duration::from_secs(2000),
        "six failures and a success",
        || async { fleet.probe.calls_to("r0", CallKind::Metrics).len() >= 7 },
    )
    .await;
    let calls = fleet.probe.calls_to("r0", CallKind::Metrics);
    for (n, pair) in calls.windows(2).take(6).enumerate() {
        let gap = pair[1].at.duration_since(pair[0].at);
        let ceiling = Duration::from_secs((10u64 << n).min(180));
        assert!(
            gap <= ceiling,
            "retry {} came after {gap:?} > {ceiling:?}",
            n + 1
        );
    }
    wait_until(Duration::from_secs(5), "r0 is ok again", || async {
        engine
            .remote_status(&RemoteId::new("r0"))
            .await
            .unwrap()
            .state
            == PollState::Ok
    })
    .await;
    let ok = engine.remote_status(&RemoteId::new("r0")).await.unwrap();
    assert_eq!(ok.consecutive_failures, 0);
    assert_eq!(ok.next_attempt, None);

    // Fail again: the status shows the failure count and the next attempt; a cycle
    // skips the remote, an explicit trigger of it goes ahead at once.
    src.fail_next(1, ErrorClass::Auth);
    let failed = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    assert!(failed.results[0].1.is_err());
    let st = engine.remote_status(&RemoteId::new("r0")).await.unwrap();
    assert_eq!(st.state, PollState::Backoff);
    assert_eq!(st.consecutive_failures, 1);
    assert_eq!(st.last_error_class, Some(ErrorClass::Auth));
    let next = st.next_attempt.expect("next attempt is shown");
    assert!(next >= fleet.now() as i64);
    let all = engine.trigger(Target::All, true).await.unwrap();
    let r0 = all
        .results
        .iter()
        .find(|(id, _)| id.as_str() == "r0")
        .unwrap();
    assert!(matches!(
        r0.1,
        Ok(CollectOutcome::Skipped(Skipped::InBackoff { .. }))
    ));
    let before = fleet.probe.calls_to("r0", CallKind::Metrics).len();
    let bypass = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    assert!(matches!(
        bypass.results[0].1,
        Ok(CollectOutcome::Stored { .. })
    ));
    assert_eq!(
        fleet.probe.calls_to("r0", CallKind::Metrics).len(),
        before + 1
    );
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reload_applies_a_diff_and_rejects_an_invalid_config_whole() {
    let fleet = Fleet::new(3);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    engine.trigger(Target::All, true).await.unwrap();
    let r2_before = engine.remote_status(&RemoteId::new("r2")).await.unwrap();

    // r0 removed, r1 changed, r2 unchanged, r3 added.
    let mut config = fleet.config.clone();
    let mut extra = Fleet::new(0);
    extra.probe = fleet.probe.clone();
    extra.clock = fleet.clock.clone();
    extra.add_remote("r3", 1);
    config.remotes.remove(0);
    config.remotes[0].revision = 7;
    config.remotes.push(extra.config.remotes[0].clone());
    let report = engine.reload(config.clone()).await.unwrap();
    assert_eq!(report.added, vec![RemoteId::new("r3")]);
    assert_eq!(report.removed, vec![RemoteId::new("r0")]);
    assert_eq!(report.changed, vec![RemoteId::new("r1")]);
    assert!(!report.timers_reset);

    // The added remote is collected at once; the removed one's data stays.
    wait_until(Duration::from_secs(2), "r3 is collected", || async {
        fleet.metrics.stored("r3").batches == 1
    })
    .await;
    assert_eq!(fleet.metrics.stored("r0").batches, 1);
    let ids: Vec<String> = engine
        .status()
        .await
        .unwrap()
        .iter()
        .map(|s| s.remote.to_string())
        .collect();
    assert_eq!(ids, vec!["r1", "r2", "r3"]);
    // The unchanged remote kept its poller and its status.
    let r2_after = engine.remote_status(&RemoteId::new("r2")).await.unwrap();
    assert_eq!(r2_after.last_success, r2_before.last_success);
    assert_eq!(fleet.probe.calls_to("r2", CallKind::Metrics).len(), 1);

    // Invalid: rejected whole, naming the key; the running config stays.
    let mut bad = config.clone();
    bad.remotes.push(bad.remotes[0].clone());
    bad.remotes.remove(1);
    match engine.reload(bad).await {
        Err(EngineError::InvalidConfig(e)) => {
            assert_eq!(e.key, "remotes[2].id");
            assert!(e.message.contains("used twice"));
        }
        other => panic!("expected a rejected config, got {other:?}"),
    }
    let mut bad_timing = config.clone();
    bad_timing.collection.start_offset_max = Duration::from_secs(900);
    assert!(matches!(
        engine.reload(bad_timing).await,
        Err(EngineError::InvalidConfig(e)) if e.key == "collection.start_offset_max_secs"
    ));
    let still: Vec<String> = engine
        .status()
        .await
        .unwrap()
        .iter()
        .map(|s| s.remote.to_string())
        .collect();
    assert_eq!(still, vec!["r1", "r2", "r3"]);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_in_flight_polls_finish_within_the_grace_period() {
    let fleet = Fleet::new(5);
    fleet.seed_fresh();
    for s in fleet.sources.values() {
        s.set_latency(Duration::from_secs(2));
    }
    let engine = fleet.start().await;
    engine.trigger(Target::All, false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let commits_before = fleet.metrics.commits();
    let started = tokio::time::Instant::now();
    let report = engine.shutdown(Duration::from_secs(5)).await.unwrap();
    let took = started.elapsed();
    assert!(report.cut_short.is_empty(), "{report:?}");
    assert!(report.flush_error.is_none());
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(
        took >= Duration::from_millis(1400),
        "it waited for the polls: {took:?}"
    );
    for i in 0..5 {
        assert_eq!(fleet.metrics.stored(&format!("r{i}")).batches, 1);
    }
    assert!(
        fleet.metrics.commits() > commits_before,
        "the stores were flushed"
    );
    assert!(!engine.is_running());
    assert!(matches!(
        engine.trigger(Target::All, true).await,
        Err(EngineError::ShuttingDown)
    ));
}

#[tokio::test(start_paused = true)]
async fn shutdown_cuts_polls_short_at_the_end_of_the_grace_period() {
    let fleet = Fleet::new(3);
    fleet.seed_fresh();
    fleet.source("r1").set_latency(Duration::from_secs(60));
    let engine = fleet.start().await;
    engine.trigger(Target::All, false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    let report = engine.shutdown(Duration::from_secs(2)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(report.cut_short, vec![RemoteId::new("r1")]);
    assert!(took < Duration::from_secs(10), "bounded: {took:?}");
    assert_eq!(fleet.metrics.stored("r0").batches, 1);
    assert_eq!(fleet.metrics.stored("r1").batches, 0);
}

#[tokio::test(start_paused = true)]
async fn two_engines_in_one_process_share_nothing() {
    let a = Fleet::new(2);
    a.seed_fresh();
    let b = Fleet::new(2);
    b.seed_fresh();
    let ea = a.start().await;
    let eb = b.start().await;
    ea.trigger(Target::All, true).await.unwrap();
    assert_eq!(a.metrics.total_points(), 2);
    assert_eq!(
        b.metrics.total_points(),
        0,
        "b's store saw nothing of a's trigger"
    );
    assert!(b.probe.calls().iter().all(|c| c.kind != CallKind::Metrics));
    ea.shutdown(Duration::from_secs(1)).await.unwrap();
    // b keeps running after a is gone.
    eb.trigger(Target::All, true).await.unwrap();
    assert_eq!(b.metrics.total_points(), 2);
    assert!(eb.is_running() && !ea.is_running());
    eb.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn a_slow_task_merge_does_not_hold_up_metric_writes() {
    let fleet = Fleet::new(2);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    fleet.tasks.set_write_delay(Duration::from_millis(1500));
    engine.refresh_tasks(Target::All, false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The task lane is busy for 1.5 s (twice); the metric lane is free.
    let started = tokio::time::Instant::now();
    let report = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    assert!(matches!(
        report.results[0].1,
        Ok(CollectOutcome::Stored { .. })
    ));
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(700),
        "the metric write waited {took:?}"
    );
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn when_storage_falls_behind_polls_wait_for_it_instead_of_piling_up_batches() {
    let mut fleet = Fleet::new(300);
    fleet.seed_fresh();
    fleet.config.limits.global_connections = 10;
    let engine = fleet.start().await;
    fleet.metrics.set_write_delay(Duration::from_millis(40));
    let report = engine.trigger(Target::All, true).await.unwrap();
    assert!(report.results.iter().all(|(_, r)| r.is_ok()));
    let peak = engine.storage().await.unwrap().peak_queue_depth;
    // Fetches that end together can each see the backlog just under the limit.
    let bound = fleetpoll_actors::testing::BACKLOG_LIMIT + 2 * 10 + 2;
    assert!(
        peak <= bound,
        "{peak} writes queued at once; holding permits while storage is behind bounds it by {bound}"
    );
    assert!(
        peak > 10,
        "the store was slow enough to build a backlog ({peak})"
    );
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_read_freshens_a_remote_at_most_once_per_interval_and_never_in_backoff() {
    let fleet = Fleet::new(1);
    fleet.seed_fresh();
    let interval = fleet.config.collection.interval;
    let engine = fleet.start().await;
    let r0 = RemoteId::new("r0");
    let outcome = |r: fleetpoll_actors::TriggerReport| r.results[0].1.clone();

    let first = outcome(engine.freshen(r0.clone(), true).await.unwrap());
    assert!(
        matches!(first, Ok(CollectOutcome::Stored { .. })),
        "{first:?}"
    );
    let again = outcome(engine.freshen(r0.clone(), true).await.unwrap());
    assert_eq!(
        again,
        Ok(CollectOutcome::Skipped(Skipped::RecentlyCollected))
    );

    // A failing remote: reads do not add to its failures while it backs off.
    tokio::time::sleep(interval).await;
    fleet.source("r0").fail_next(1, ErrorClass::Timeout);
    let failed = outcome(engine.freshen(r0.clone(), true).await.unwrap());
    assert!(failed.is_err(), "{failed:?}");
    let fetches = fleet.probe.calls_to("r0", CallKind::Metrics).len();
    for _ in 0..5 {
        let read = outcome(engine.freshen(r0.clone(), true).await.unwrap());
        assert!(
            matches!(read, Ok(CollectOutcome::Skipped(Skipped::InBackoff { .. }))),
            "{read:?}"
        );
    }
    let status = engine.remote_status(&r0).await.unwrap();
    assert_eq!(status.consecutive_failures, 1, "{status:?}");
    assert_eq!(fleet.probe.calls_to("r0", CallKind::Metrics).len(), fetches);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_remote_whose_metrics_nothing_uses_is_not_polled_for_them_but_for_its_tasks() {
    let mut fleet = Fleet::new(2);
    fleet.config.remotes[0].metrics_used = false;
    let engine = fleet.start().await;
    let r0 = RemoteId::new("r0");
    let report = engine
        .trigger(Target::Remote(r0.clone()), true)
        .await
        .unwrap();
    assert_eq!(
        report.results[0].1,
        Ok(CollectOutcome::Skipped(Skipped::Unused)),
        "even a \"collect now\" fetches nothing nobody uses"
    );
    engine
        .refresh_tasks(Target::Remote(r0.clone()), true)
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "r1 is collected at start",
        || async { fleet.metrics.stored("r1").batches >= 1 },
    )
    .await;
    assert!(fleet.probe.calls_to("r0", CallKind::Metrics).is_empty());
    assert!(
        !fleet.probe.calls_to("r0", CallKind::Tasks).is_empty(),
        "tasks are"
    );
    let status = engine.remote_status(&r0).await.unwrap();
    assert_eq!(status.state, PollState::Unused);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn after_every_remote_failed_a_canary_is_probed_and_its_answer_resets_every_backoff() {
    let mut fleet = Fleet::new(5);
    fleet.config.collection.backoff_cap = Duration::from_secs(3600);
    let engine = fleet.start().await;
    // The local network is down: every remote is unreachable, and stays so for 40 min.
    for i in 0..5 {
        fleet
            .source(&format!("r{i}"))
            .fail_next(u32::MAX, ErrorClass::Unreachable);
    }
    engine.trigger(Target::All, true).await.unwrap();
    let outage_start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2400)).await;
    let stats = engine.poll_stats();
    assert_eq!(stats.outages, 1, "one outage began");
    // One canary every 10 s (the backoff base), rotating over the remotes.
    assert!(
        (200..=260).contains(&stats.canary_probes),
        "{} probes in 2,400 s",
        stats.canary_probes
    );
    for i in 0..5 {
        let id = format!("r{i}");
        let calls = fleet.probe.calls_to(&id, CallKind::Metrics);
        assert!(calls.len() >= 40, "{id} probed {} times", calls.len());
        let gaps = calls
            .windows(2)
            .map(|w| w[1].at.duration_since(w[0].at))
            .max()
            .unwrap();
        assert!(gaps <= Duration::from_secs(60), "{id}: a gap of {gaps:?}");
    }
    let waiting = engine.status().await.unwrap();
    assert!(
        waiting.iter().all(|s| s.consecutive_failures >= 40),
        "{waiting:?}"
    );

    // The network returns: within one canary period every remote is collected again,
    // although their own backoff would have waited up to the 1 h cap.
    for i in 0..5 {
        fleet
            .source(&format!("r{i}"))
            .fail_next(0, ErrorClass::Unreachable);
    }
    let back = tokio::time::Instant::now();
    wait_until(Duration::from_secs(60), "every remote is ok", || async {
        let all = engine.status().await.unwrap();
        all.iter().all(|s| s.state == PollState::Ok)
    })
    .await;
    let recovered = back.elapsed();
    assert!(
        recovered <= Duration::from_secs(11),
        "recovered after {recovered:?} (outage began {:?} before)",
        back.duration_since(outage_start)
    );
    let all = engine.status().await.unwrap();
    assert!(all.iter().all(|s| s.consecutive_failures == 0));
    // The outage is over: no more canaries.
    let probes = engine.poll_stats().canary_probes;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(engine.poll_stats().canary_probes, probes);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_remote_failing_among_healthy_ones_keeps_its_backoff() {
    let fleet = Fleet::new(3);
    let engine = fleet.start().await;
    engine.trigger(Target::All, true).await.unwrap();
    fleet
        .source("r0")
        .fail_next(u32::MAX, ErrorClass::Unreachable);
    engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1200)).await;
    assert_eq!(engine.poll_stats().canary_probes, 0);
    let calls = fleet.probe.calls_to("r0", CallKind::Metrics).len();
    // Backoff with base 10 s doubling to 180 s: far fewer than one try per 10 s.
    assert!(calls < 40, "r0 was tried {calls} times in 1,200 s");
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
