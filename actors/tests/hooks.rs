//! The hook seam: a hook sees every stored batch with counter rates beside the raw
//! values, and every status change; a slow hook delays nothing but itself and drops its
//! oldest events, counted; a panicking hook is restarted on the same queue and counted;
//! hooks come and go at runtime and are flushed when they go.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{wait_until, Fleet};
use fleetpoll_actors::{
    EngineError, ErrorClass, Hook, HookBatch, HookError, HookOptions, PollState, RemoteId,
    StatusChange, Target,
};

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    metric: String,
    timestamp: i64,
    value: f64,
    rate: Option<f64>,
}

#[derive(Default)]
struct Log {
    batches: Mutex<Vec<Vec<Seen>>>,
    status: Mutex<Vec<(Option<PollState>, Option<PollState>)>>,
    stopped: AtomicBool,
}

struct Recorder {
    log: Arc<Log>,
    sleep: Duration,
    panic_on_batches: Arc<AtomicU32>,
}

impl Recorder {
    fn new(log: &Arc<Log>) -> Self {
        Self {
            log: log.clone(),
            sleep: Duration::ZERO,
            panic_on_batches: Arc::default(),
        }
    }
}

#[async_trait]
impl Hook for Recorder {
    async fn on_batch(&mut self, batch: &HookBatch) -> Result<(), HookError> {
        if !self.sleep.is_zero() {
            tokio::time::sleep(self.sleep).await;
        }
        if self
            .panic_on_batches
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("the recorder was told to panic");
        }
        let seen = batch
            .samples()
            .map(|s| Seen {
                metric: s.metric.to_string(),
                timestamp: s.timestamp,
                value: s.value,
                rate: s.rate,
            })
            .collect();
        self.log.batches.lock().unwrap().push(seen);
        Ok(())
    }

    async fn on_status(&mut self, change: &StatusChange) -> Result<(), HookError> {
        self.log
            .status
            .lock()
            .unwrap()
            .push((change.previous, change.state()));
        Ok(())
    }

    async fn on_stop(&mut self) {
        self.log.stopped.store(true, Ordering::SeqCst);
    }
}

fn r0() -> Target {
    Target::Remote(RemoteId::new("r0"))
}

#[tokio::test(start_paused = true)]
async fn a_hook_sees_every_stored_batch_with_rates_and_every_status_change() {
    let fleet = Fleet::new(1);
    fleet.seed_fresh();
    fleet.source("r0").emit_net_in();
    let log = Arc::new(Log::default());
    let engine = fleet
        .builder()
        .hook("recorder", Recorder::new(&log))
        .start()
        .await
        .unwrap();
    engine.trigger(r0(), true).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    engine.trigger(r0(), true).await.unwrap();
    wait_until(Duration::from_secs(2), "two batches", || async {
        log.batches.lock().unwrap().len() == 2
    })
    .await;
    let batches = log.batches.lock().unwrap().clone();
    let net_in: Vec<&Seen> = batches
        .iter()
        .flatten()
        .filter(|s| s.metric == "net_in")
        .collect();
    assert_eq!(net_in.len(), 2);
    assert_eq!(net_in[0].rate, None, "a series' first point has no rate");
    let dt = (net_in[1].timestamp - net_in[0].timestamp) as f64;
    assert!(dt >= 9.0, "the second poll came {dt} s after the first");
    assert_eq!(net_in[1].rate, Some(1000.0), "per second, over {dt} s");
    assert_eq!(
        net_in[1].value,
        net_in[1].timestamp as f64 * 1000.0,
        "raw too"
    );
    let cpu: Vec<&Seen> = batches
        .iter()
        .flatten()
        .filter(|s| s.metric == "cpu_current")
        .collect();
    assert!(cpu.iter().all(|s| s.rate.is_none() && s.value == 0.5));

    fleet.source("r0").fail_next(1, ErrorClass::Unreachable);
    engine.trigger(r0(), true).await.unwrap();
    wait_until(
        Duration::from_secs(2),
        "the failure's status change",
        || async {
            log.status
                .lock()
                .unwrap()
                .contains(&(Some(PollState::Ok), Some(PollState::Backoff)))
        },
    )
    .await;
    let status = log.status.lock().unwrap().clone();
    assert_eq!(
        status[0],
        (None, Some(PollState::Pending)),
        "the remote's addition comes first"
    );
    assert!(status.contains(&(Some(PollState::Pending), Some(PollState::Ok))));
    let hooks = engine.hooks();
    assert_eq!(hooks[0].delivered_batches, 2);
    assert_eq!(hooks[0].dropped_batches, 0);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
    assert!(
        log.stopped.load(Ordering::SeqCst),
        "on_stop ran at shutdown"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_sleeps_ten_seconds_per_batch_delays_no_poll_and_drops_its_oldest() {
    let fleet = Fleet::new(1);
    fleet.seed_fresh();
    let log = Arc::new(Log::default());
    let slow = Recorder {
        sleep: Duration::from_secs(10),
        ..Recorder::new(&log)
    };
    let engine = fleet
        .builder()
        .hook_with(
            "slow",
            Box::new(slow),
            HookOptions {
                queue_max_points: 3,
            },
        )
        .start()
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    for _ in 0..10 {
        engine.trigger(r0(), true).await.unwrap();
    }
    // Paused time moves only when every task waits on a timer: had any trigger waited
    // for the hook, ten seconds would have passed.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "ten collections took {:?} beside a hook sleeping 10 s per batch",
        started.elapsed()
    );
    assert_eq!(fleet.metrics.stored("r0").batches, 10);
    let status = &engine.hooks()[0];
    assert!(status.queued_points <= 3, "{status:?}");
    assert!(status.dropped_batches >= 6, "{status:?}");
    assert_eq!(
        status.dropped_points, status.dropped_batches,
        "one point per batch"
    );
    // What was not dropped reaches the hook.
    wait_until(
        Duration::from_secs(120),
        "every batch handed or dropped",
        || async {
            let s = &engine.hooks()[0];
            s.delivered_batches + s.dropped_batches == 10
        },
    )
    .await;
    let status = &engine.hooks()[0];
    assert_eq!(status.queued_events, 0);
    assert_eq!(
        log.batches.lock().unwrap().len() as u64,
        status.delivered_batches
    );
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_panics_is_restarted_on_its_queue_and_counted() {
    let fleet = Fleet::new(1);
    fleet.seed_fresh();
    let log = Arc::new(Log::default());
    let crashing = Recorder::new(&log);
    crashing.panic_on_batches.store(1, Ordering::SeqCst);
    let engine = fleet
        .builder()
        .hook("crashing", crashing)
        .start()
        .await
        .unwrap();
    for _ in 0..3 {
        engine.trigger(r0(), true).await.unwrap();
    }
    wait_until(Duration::from_secs(10), "the later batches", || async {
        log.batches.lock().unwrap().len() == 2
    })
    .await;
    let status = &engine.hooks()[0];
    assert_eq!(status.restarts, 1, "{status:?}");
    assert_eq!(status.state, "running");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("told to panic")),
        "{status:?}"
    );
    let tree = engine.tree().await.unwrap();
    let hook = tree
        .child("hooks")
        .and_then(|h| h.child("hook:crashing"))
        .expect("the hook in the tree");
    assert_eq!((hook.restarts, hook.state.as_str()), (1, "running"));
    // The poller never noticed.
    let remote = engine.remote_status(&RemoteId::new("r0")).await.unwrap();
    assert_eq!((remote.state, remote.restarts), (PollState::Ok, 0));
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn hooks_are_added_and_removed_at_runtime_and_flushed_when_removed() {
    let fleet = Fleet::new(1);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    engine.trigger(r0(), true).await.unwrap();
    let log = Arc::new(Log::default());
    engine
        .add_hook(
            "late",
            Box::new(Recorder::new(&log)),
            HookOptions::default(),
        )
        .await
        .unwrap();
    assert!(matches!(
        engine
            .add_hook(
                "late",
                Box::new(Recorder::new(&log)),
                HookOptions::default()
            )
            .await,
        Err(EngineError::Hook(_))
    ));
    engine.trigger(r0(), true).await.unwrap();
    wait_until(
        Duration::from_secs(2),
        "the batch after the hook came",
        || async { log.batches.lock().unwrap().len() == 1 },
    )
    .await;
    engine.remove_hook("late").await.unwrap();
    assert!(
        log.stopped.load(Ordering::SeqCst),
        "flushed before remove_hook returned"
    );
    assert!(engine.hooks().is_empty());
    engine.trigger(r0(), true).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        log.batches.lock().unwrap().len(),
        1,
        "a removed hook sees nothing"
    );
    assert!(matches!(
        engine.remove_hook("late").await,
        Err(EngineError::Hook(_))
    ));
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
