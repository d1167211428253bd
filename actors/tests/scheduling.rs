//! Timing rules under a paused clock: aligned ticks with per-cycle offsets, the
//! per-connection delay, start-up collection of overdue remotes, the skip window,
//! priority for triggers during a running cycle, task cadences and housekeeping.

mod common;

use std::time::Duration;

use common::{wait_until, Fleet, T0};
use fleetpoll_actors::testing::CallKind;
use fleetpoll_actors::{
    CollectOutcome, RemoteId, Target, TaskRecord, TaskRef, TaskState, TaskStore,
};

fn secs_past_boundary(wall: Duration, interval: u64) -> f64 {
    wall.as_secs_f64() % interval as f64
}

#[tokio::test(start_paused = true)]
async fn cycles_start_on_aligned_ticks_plus_an_offset_drawn_per_cycle() {
    let mut fleet = Fleet::new(3);
    fleet.seed_fresh();
    fleet.config.collection.start_offset_min = Duration::from_secs(5);
    fleet.config.collection.start_offset_max = Duration::from_secs(20);
    let engine = fleet.start().await;

    // 300 s to the first boundary, then 5 more cycles.
    tokio::time::sleep(Duration::from_secs(300 + 5 * 600 + 30)).await;

    let calls = fleet.probe.calls_to("r0", CallKind::Metrics);
    assert_eq!(calls.len(), 6, "one collection per aligned tick");
    let mut offsets = Vec::new();
    for c in &calls {
        let past = secs_past_boundary(c.wall, 600);
        assert!(
            (5.0..=20.0).contains(&past),
            "collection at {:.3} s past the boundary, outside the offset range",
            past
        );
        offsets.push(past);
    }
    // Every remote of one cycle shares the cycle's offset.
    for r in ["r1", "r2"] {
        let other = fleet.probe.calls_to(r, CallKind::Metrics);
        for (a, b) in calls.iter().zip(&other) {
            assert!((a.wall.as_secs_f64() - b.wall.as_secs_f64()).abs() < 0.001);
        }
    }
    offsets.dedup_by(|a, b| (*a - *b).abs() < 0.001);
    assert!(offsets.len() > 1, "the offset must be drawn anew per cycle");
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_are_skipped_not_caught_up() {
    let fleet = Fleet::new(1);
    fleet.seed_fresh();
    let clock = std::sync::Arc::new(common::JumpClock::new(fleet.clock.clone()));
    let engine = fleet.start_with_clock(clock.clone()).await;
    tokio::time::sleep(Duration::from_secs(310)).await;
    assert_eq!(fleet.probe.calls_to("r0", CallKind::Metrics).len(), 1);
    // The machine sleeps through three intervals (the wall clock jumps).
    clock.jump(Duration::from_secs(1800));
    tokio::time::sleep(Duration::from_secs(600)).await;
    let calls = fleet.probe.calls_to("r0", CallKind::Metrics);
    assert_eq!(
        calls.len(),
        2,
        "one cycle after the jump, not one per missed tick"
    );
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn interval_changes_reset_the_timer() {
    let fleet = Fleet::new(1);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    tokio::time::sleep(Duration::from_secs(310)).await;
    assert_eq!(fleet.probe.calls_to("r0", CallKind::Metrics).len(), 1);

    // Shorter interval: the next tick comes on a 60 s boundary, not the old 600 s one.
    let mut config = fleet.config.clone();
    config.collection.interval = Duration::from_secs(60);
    let report = engine.reload(config).await.unwrap();
    assert!(report.timers_reset);
    tokio::time::sleep(Duration::from_secs(125)).await;
    let calls = fleet.probe.calls_to("r0", CallKind::Metrics);
    assert_eq!(calls.len(), 3, "two more ticks on 60 s boundaries");
    for c in &calls[1..] {
        assert!(secs_past_boundary(c.wall, 60) < 0.001);
    }
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_remote_with_its_own_interval_runs_on_its_own_aligned_timer_with_scaled_offsets() {
    let mut fleet = Fleet::new(2);
    fleet.seed_fresh();
    fleet.config.collection.start_offset_min = Duration::from_secs(6);
    fleet.config.collection.start_offset_max = Duration::from_secs(12);
    fleet.config.remotes[1].interval = Some(Duration::from_secs(30));
    let engine = fleet.start().await;

    // T0 lies on a 30 s boundary and 300 s before a 600 s one.
    tokio::time::sleep(Duration::from_secs(300 + 30 + 15)).await;

    let slow = fleet.probe.calls_to("r0", CallKind::Metrics);
    assert_eq!(slow.len(), 1, "r0 follows the 600 s collection interval");
    let past = secs_past_boundary(slow[0].wall, 600);
    assert!((6.0..=12.0).contains(&past), "r0 at {past:.3} s past");

    let fast = fleet.probe.calls_to("r1", CallKind::Metrics);
    assert_eq!(fast.len(), 11, "one collection per 30 s tick over 345 s");
    for c in &fast {
        // The 6..12 s offsets of a 600 s interval, scaled to 30 s: 0.3..0.6 s.
        let past = secs_past_boundary(c.wall, 30);
        assert!(
            (0.3 - 1e-6..=0.6 + 1e-6).contains(&past),
            "r1 at {past:.3} s past its 30 s boundary"
        );
    }
    let stats = engine.scheduler().await.unwrap();
    assert_eq!(stats.cycles_by_interval.get(&30), Some(&11));
    assert_eq!(stats.cycles_by_interval.get(&600), Some(&1));
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn remotes_sharing_an_interval_share_one_timer_and_missed_ticks_are_skipped() {
    let mut fleet = Fleet::new(3);
    fleet.seed_fresh();
    fleet.config.remotes[1].interval = Some(Duration::from_secs(20));
    fleet.config.remotes[2].interval = Some(Duration::from_secs(20));
    let clock = std::sync::Arc::new(common::JumpClock::new(fleet.clock.clone()));
    let engine = fleet.start_with_clock(clock.clone()).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    let one = fleet.probe.calls_to("r1", CallKind::Metrics);
    let two = fleet.probe.calls_to("r2", CallKind::Metrics);
    assert_eq!((one.len(), two.len()), (3, 3));
    for (a, b) in one.iter().zip(&two) {
        assert!((a.wall.as_secs_f64() - b.wall.as_secs_f64()).abs() < 0.001);
    }
    // The wall clock jumps by ten intervals: one cycle follows, not ten.
    clock.jump(Duration::from_secs(200));
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(fleet.probe.calls_to("r1", CallKind::Metrics).len(), 4);
    assert_eq!(fleet.probe.calls_to("r0", CallKind::Metrics).len(), 0);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_gives_a_remote_its_own_interval_adds_a_timer() {
    let fleet = Fleet::new(2);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut config = fleet.config.clone();
    config.remotes[0].interval = Some(Duration::from_secs(15));
    let report = engine.reload(config).await.unwrap();
    assert!(report.timers_reset);
    assert_eq!(report.changed.len(), 1, "the remote's poller restarts");
    tokio::time::sleep(Duration::from_secs(100)).await;
    let calls = fleet.probe.calls_to("r0", CallKind::Metrics);
    // A changed remote's poller collects once at once (as after every reload), then
    // on the new timer's 15 s boundaries.
    assert!((secs_past_boundary(calls[0].wall, 15) - 5.0).abs() < 0.001);
    assert_eq!(calls.len(), 1 + 6, "15 s ticks over 100 s");
    for c in &calls[1..] {
        assert!(secs_past_boundary(c.wall, 15) < 0.001);
    }
    assert_eq!(fleet.probe.calls_to("r1", CallKind::Metrics).len(), 0);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn each_poll_waits_a_per_connection_delay_within_its_range() {
    let mut fleet = Fleet::new(60);
    fleet.seed_fresh();
    fleet.config.collection.connection_delay_min = Duration::from_secs(1);
    fleet.config.collection.connection_delay_max = Duration::from_secs(3);
    fleet.config.limits.global_connections = 100;
    let engine = fleet.start().await;
    tokio::time::sleep(Duration::from_secs(300 + 10)).await;

    let calls: Vec<_> = fleet
        .probe
        .calls()
        .into_iter()
        .filter(|c| c.kind == CallKind::Metrics)
        .collect();
    assert_eq!(calls.len(), 60);
    let delays: Vec<f64> = calls
        .iter()
        .map(|c| secs_past_boundary(c.wall, 600))
        .collect();
    for d in &delays {
        assert!((1.0..=3.0).contains(d), "delay {d:.3} s outside [1, 3]");
    }
    let min = delays.iter().cloned().fold(f64::MAX, f64::min);
    let max = delays.iter().cloned().fold(0.0, f64::max);
    assert!(max - min > 1.0, "delays are not spread: {min:.3}..{max:.3}");
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn overdue_remotes_are_collected_once_at_start_and_fresh_ones_wait() {
    let fleet = Fleet::new(2);
    fleet.metrics.seed_cursor("r1", T0 as i64 - 5); // fresh
    fleet.metrics.seed_cursor("r0", T0 as i64 - 3600); // an hour old
    let engine = fleet.start().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fleet.probe.calls_to("r0", CallKind::Metrics).len(), 1);
    assert_eq!(fleet.probe.calls_to("r1", CallKind::Metrics).len(), 0);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_remote_collected_within_the_skip_window_is_skipped_by_a_cycle() {
    let mut fleet = Fleet::new(2);
    fleet.seed_fresh();
    fleet.config.collection.start_offset_min = Duration::from_secs(2);
    fleet.config.collection.start_offset_max = Duration::from_secs(2);
    let engine = fleet.start().await;
    // Collect r0 manually 5 s before the cycle starts.
    tokio::time::sleep(Duration::from_secs(297)).await;
    engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(fleet.probe.calls_to("r0", CallKind::Metrics).len(), 1);
    assert_eq!(fleet.probe.calls_to("r1", CallKind::Metrics).len(), 1);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_trigger_during_a_running_cycle_goes_ahead_of_the_queue() {
    // Without a manual burst the trigger takes the next connection that frees up.
    trigger_during_a_cycle(0, Duration::from_millis(600)).await;
}

#[tokio::test(start_paused = true)]
async fn a_trigger_during_a_running_cycle_opens_a_burst_connection_at_once() {
    // With the default burst it does not wait for a scheduled poll to end.
    trigger_during_a_cycle(2, Duration::from_millis(5)).await;
}

async fn trigger_during_a_cycle(burst: u32, at_most: Duration) {
    let mut fleet = Fleet::new(20);
    fleet.seed_fresh();
    fleet.config.limits.global_connections = 2;
    fleet.config.limits.manual_burst = burst;
    for s in fleet.sources.values() {
        s.set_latency(Duration::from_secs(1));
    }
    let engine = fleet.start().await;
    // The cycle starts at +300 s; 20 remotes through 2 connections take 10 s.
    tokio::time::sleep(Duration::from_millis(300_500)).await;
    let asked = tokio::time::Instant::now();
    let report = engine
        .trigger(Target::Remote(RemoteId::new("r19")), true)
        .await
        .unwrap();
    assert!(report.results[0].1.is_ok());
    let call = &fleet.probe.calls_to("r19", CallKind::Metrics)[0];
    let waited = call.at.duration_since(asked);
    assert!(
        waited <= at_most,
        "the trigger waited {waited:?} for a connection (burst {burst}); at most {at_most:?}"
    );
    // The trigger joined r19's queued scheduled poll (lifting it into the priority
    // lane) instead of adding a second one.
    assert_eq!(fleet.probe.calls_to("r19", CallKind::Metrics).len(), 1);
    // The cycle still completes for everyone, within the cap; the one trigger took
    // one burst connection, if there is a burst.
    wait_until(Duration::from_secs(30), "the cycle finished", || async {
        fleet.metrics.total_points() >= 20
    })
    .await;
    assert_eq!(fleet.probe.max_in_flight(), 2 + burst.min(1));
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

fn task(upid: &str, node: &str, start: i64, end: Option<i64>) -> TaskRecord {
    TaskRecord {
        upid: upid.into(),
        node: node.into(),
        task_type: "vzdump".into(),
        task_id: Some("100".into()),
        user: "root@pam".into(),
        start_time: start,
        end_time: end,
        status: end.map(|_| "OK".into()),
    }
}

#[tokio::test(start_paused = true)]
async fn a_tracked_task_that_finishes_is_seen_within_one_tick_and_refetches_the_list() {
    let fleet = Fleet::new(2);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    let upid = "UPID:pve:00039E4D:002638B8:67B4A9D1:vzdump:100:root@pam:";
    let src = fleet.source("r1");
    src.set_tasks(vec![task(upid, "pve", T0 as i64, None)]);
    engine
        .track_task(TaskRef::parse(&format!("pve:r1!{upid}")).unwrap())
        .await
        .unwrap();
    assert_eq!(engine.tracked_tasks().await.unwrap().len(), 1);
    // It keeps running for a while: polled every tick.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let polls = fleet.probe.calls_to("r1", CallKind::TaskStatus).len();
    assert!(
        (3..=4).contains(&polls),
        "{polls} polls in 35 s at a 10 s tick"
    );

    // It finishes; within one tick the engine notices and fetches r1's task list.
    src.set_task_state(
        upid,
        TaskState::Stopped {
            exit_status: "OK".into(),
        },
    );
    src.set_tasks(vec![task(upid, "pve", T0 as i64, Some(T0 as i64 + 40))]);
    let lists_before = fleet.probe.calls_to("r1", CallKind::Tasks).len();
    let finished_at = tokio::time::Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the tracked task is untracked",
        || async { engine.tracked_tasks().await.unwrap().is_empty() },
    )
    .await;
    assert!(finished_at.elapsed() <= Duration::from_secs(10));
    wait_until(
        Duration::from_secs(2),
        "the task list is fetched again",
        || async { fleet.probe.calls_to("r1", CallKind::Tasks).len() > lists_before },
    )
    .await;
    wait_until(
        Duration::from_secs(2),
        "the cache shows it finished",
        || async { fleet.tasks.tasks_of("r1")[0].end_time.is_some() },
    )
    .await;
    // The other remote saw no status polls.
    assert!(fleet.probe.calls_to("r0", CallKind::TaskStatus).is_empty());
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn task_lists_are_fetched_fully_every_600s_and_running_ones_every_30s() {
    let fleet = Fleet::new(2);
    fleet.seed_fresh();
    fleet
        .source("r0")
        .set_tasks(vec![task("UPID:a", "n1", T0 as i64, None)]);
    let engine = fleet.start().await;
    // 1,205 s: full fetches at the first tick, +600, +1200.
    tokio::time::sleep(Duration::from_secs(1205)).await;
    let r1 = fleet.probe.calls_to("r1", CallKind::Tasks).len();
    assert_eq!(r1, 3, "r1 has nothing running: only the full fetches");
    let r0 = fleet.probe.calls_to("r0", CallKind::Tasks).len();
    // r0 has a running task: 3 full fetches plus a check every 30 s in between.
    assert!(
        (3 + 36..=3 + 40).contains(&r0),
        "r0 was asked {r0} times; expected ~3 full + ~38 running checks"
    );
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn housekeeping_runs_on_its_cadences() {
    let mut fleet = Fleet::new(1);
    fleet.seed_fresh();
    fleet.config.storage.metric_commit_interval = Duration::from_secs(1800);
    let engine = fleet.start().await;
    tokio::time::sleep(Duration::from_secs(2 * 3600 + 10)).await;
    let checks = fleet.tasks.rotation_checks();
    assert_eq!(checks.len(), 3, "one at start, then on each hour");
    for c in &checks[1..] {
        assert_eq!(c % 3600, 0, "rotation checks fall on the hour");
    }
    assert_eq!(fleet.metrics.commits(), 4, "a commit every 30 min");
    assert_eq!(fleet.tasks.journal_applies(), 2);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cycle_fetches_each_remotes_task_list_right_after_its_metric_poll() {
    let mut fleet = Fleet::new(6);
    fleet.config.limits.global_connections = 2;
    fleet.config.limits.manual_reserve = 0;
    // Each poll waits a drawn delay before asking for its connection, as in production.
    fleet.config.collection.connection_delay_max = Duration::from_secs(1);
    let latency = Duration::from_millis(200);
    for s in fleet.sources.values() {
        s.set_latency(latency);
    }
    let engine = fleet.start().await;
    // Start-up collects and fetches everything; the first cycle comes 300 s later.
    tokio::time::sleep(Duration::from_secs(290)).await;
    let cycle_start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let stats = engine.scheduler().await.unwrap();
    assert_eq!(stats.task_fetches_with_cycle, 1);
    // Next in line for the connection the poll just gave back, though two connections
    // serve six remotes and the other polls were queued first.
    assert_each_task_list_follows_its_poll(&fleet, 6, cycle_start, latency);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cycle_with_tasks_started_by_hand_follows_each_poll_with_its_task_list() {
    let mut fleet = Fleet::new(6);
    fleet.config.limits.global_connections = 2;
    fleet.config.limits.manual_reserve = 0;
    // As in production, each poll waits a drawn delay before asking for its connection;
    // a task fetch that did not wait for its poll would go first, on a connection of
    // its own.
    fleet.config.collection.connection_delay_max = Duration::from_secs(1);
    let latency = Duration::from_millis(200);
    for s in fleet.sources.values() {
        s.set_latency(latency);
    }
    let engine = fleet.start().await;
    // Past the start-up collection and its skip window, before the first tick.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let start = tokio::time::Instant::now();
    let (metrics, tasks) = engine.cycle_with_tasks(true).await.unwrap();
    assert_eq!((metrics.results.len(), tasks.results.len()), (6, 6));
    assert!(
        metrics
            .results
            .iter()
            .chain(&tasks.results)
            .all(|(_, r)| matches!(r, Ok(CollectOutcome::Stored { .. }))),
        "every poll and task fetch ran: {metrics:?} {tasks:?}"
    );
    assert_each_task_list_follows_its_poll(&fleet, 6, start, latency);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// Each of the first `remotes` remotes had one metric poll and one task fetch from
/// `since` on, the fetch exactly one `latency` after the poll: it took the connection
/// the poll gave back.
fn assert_each_task_list_follows_its_poll(
    fleet: &Fleet,
    remotes: usize,
    since: tokio::time::Instant,
    latency: Duration,
) {
    for i in 0..remotes {
        let id = format!("r{i}");
        let after = |kind| {
            fleet
                .probe
                .calls_to(&id, kind)
                .into_iter()
                .filter(|c| c.at >= since)
                .collect::<Vec<_>>()
        };
        let (metrics, tasks) = (after(CallKind::Metrics), after(CallKind::Tasks));
        assert_eq!((metrics.len(), tasks.len()), (1, 1), "{id}");
        assert_eq!(
            tasks[0].at.duration_since(metrics[0].at),
            latency,
            "{id}'s task list did not follow its poll"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn saved_tracked_tasks_beyond_the_bounds_are_dropped_at_start() {
    let mut fleet = Fleet::new(2);
    fleet.seed_fresh();
    fleet.config.tasks.max_tracked = 3;
    fleet.config.tasks.max_tracked_per_remote = 2;
    let saved: Vec<TaskRef> = (0..3)
        .flat_map(|i| {
            ["r0", "r1"].map(|r| {
                TaskRef::parse(&format!(
                    "pve:{r}!UPID:pve:00039E4D:002638B8:67B4A9D{i}:vzdump:10{i}:root@pam:"
                ))
                .unwrap()
            })
        })
        .collect();
    fleet.tasks.save_tracked(&saved).unwrap();
    let engine = fleet.start().await;
    let tracked = engine.tracked_tasks().await.unwrap();
    assert_eq!(
        tracked.len(),
        3,
        "max_tracked holds for saved tasks: {tracked:?}"
    );
    for r in ["r0", "r1"] {
        let of = tracked.iter().filter(|t| t.remote.as_str() == r).count();
        assert!(of <= 2, "{of} tasks of {r} tracked: {tracked:?}");
    }
    wait_until(
        Duration::from_secs(2),
        "the saved list says what is tracked",
        || async { fleet.tasks.load_tracked().len() == 3 },
    )
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
