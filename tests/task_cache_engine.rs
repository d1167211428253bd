//! The task cache as the engine's `TaskStore`: a task refresh through the real engine
//! lands in the files, the cutoffs follow, and tracked tasks survive a restart.

use std::sync::Arc;
use std::time::Duration;

use fleetpoll::engine::{
    Clock, Engine, EngineConfig, RemoteConfig, RemoteId, RemoteKind, Target, TaskRecord, TaskRef,
    TaskStore, TokioClock,
};
use fleetpoll::tasks::{TaskCache, TaskFilter};
use fleetpoll_actors::testing::{FakeSource, MemoryMetricStore, Probe};

fn task(pid: u32, start: i64, end: Option<i64>) -> TaskRecord {
    TaskRecord {
        upid: format!("UPID:pve1:{pid:08X}:0000ABCD:{start:08X}:vzdump:100:root@pam:"),
        node: "pve1".into(),
        task_type: "vzdump".into(),
        task_id: Some("100".into()),
        user: "root@pam".into(),
        start_time: start,
        end_time: end,
        status: end.map(|_| "OK".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_refresh_through_the_engine_is_stored_durably_with_its_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TokioClock::system());
    let now = clock.now().as_secs() as i64;
    let cache = Arc::new(TaskCache::open(dir.path(), now).unwrap());
    let source = Arc::new(FakeSource::new(
        "lab",
        Probe::new(),
        clock.clone() as Arc<dyn Clock>,
    ));
    source.set_tasks(vec![
        task(1, now - 300, Some(now - 200)),
        task(2, now - 100, None),
        task(3, now - 50, Some(now - 10)),
    ]);
    let mut config = EngineConfig::default();
    config
        .remotes
        .push(RemoteConfig::new("lab", RemoteKind::Pve, source.clone()));
    let engine = Engine::builder(config)
        .metric_store(MemoryMetricStore::new())
        .task_store(cache.clone())
        .clock(clock)
        .start()
        .await
        .unwrap();
    let lab = RemoteId::new("lab");
    engine
        .refresh_tasks(Target::Remote(lab.clone()), true)
        .await
        .unwrap();
    let tracked = TaskRef {
        remote: lab.clone(),
        upid: task(2, now - 100, None).upid,
    };
    engine.track_task(tracked.clone()).await.unwrap();
    engine.shutdown(Duration::from_secs(5)).await.unwrap();

    assert_eq!(cache.query(&TaskFilter::default()).total, 3);
    assert!(cache.has_running(&lab));
    assert_eq!(
        cache.task_query(&lab, now).cutoffs.get("pve1"),
        Some(&(now - 100))
    );
    drop(engine);
    drop(cache);

    let reopened = TaskCache::open(dir.path(), now).unwrap();
    assert!(reopened.problems().is_empty(), "{:?}", reopened.problems());
    assert_eq!(reopened.query(&TaskFilter::default()).total, 3);
    assert_eq!(
        reopened.task_query(&lab, now).cutoffs.get("pve1"),
        Some(&(now - 100))
    );
    assert_eq!(reopened.load_tracked(), vec![tracked]);
}
