//! The PVE and PBS clients against the simulator over real HTTPS: every endpoint they
//! use returns what the API promises, in the engine's vocabulary.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use fleetpoll::remote::{PbsClient, PveClient, Upid};
use fleetpoll::sim::SimConfig;
use fleetpoll_actors::{Cursor, MetricKind, RemoteSource, TaskQuery, TaskState};

fn small_fleet() -> SimConfig {
    SimConfig {
        seed: 42,
        pve_remotes: 2,
        pbs_remotes: 1,
        nodes_per_cluster: 3,
        guests_per_cluster: 12,
        storages_per_node: 2,
        datastores_per_pbs: 2,
        task_interval_secs: 60,
        faults: Vec::new(),
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn pve_metric_history_arrives_as_interned_series() {
    let sim = common::start(small_fleet()).await;
    let client = common::pve(&sim, "pve-1");

    let batch = client.fetch_metrics(Cursor::START).await.unwrap();

    let newest = batch.newest().unwrap();
    assert!(
        (sim.now() - newest) < 20,
        "newest {newest} vs now {}",
        sim.now()
    );
    let timestamps: BTreeSet<i64> = batch.points.iter().map(|p| p.timestamp).collect();
    assert_eq!(timestamps.len(), 180, "30 minutes at 10 s");
    assert_eq!(batch.dropped_future, 0);
    let keys: HashSet<(&str, &str, MetricKind)> = batch
        .series
        .iter()
        .map(|s| (&*s.entity, &*s.metric, s.kind))
        .collect();
    assert_eq!(keys.len(), batch.series.len(), "each series appears once");
    assert!(keys.contains(&("node/pve-1-n1", "cpu_current", MetricKind::Gauge)));
    assert!(keys.contains(&("node/pve-1-n3", "net_in", MetricKind::Derive)));
    assert!(keys.contains(&("storage/pve-1-n2/local", "disk_used", MetricKind::Gauge)));
    assert!(keys
        .iter()
        .any(|(e, m, _)| e.starts_with("qemu/") && *m == "mem_total"));
    assert!(keys
        .iter()
        .any(|(e, m, _)| e.starts_with("lxc/") && *m == "disk_used"));
    assert_eq!(batch.points.len(), 180 * batch.series.len());
    sim.shutdown().await;
}

#[tokio::test]
async fn metrics_after_a_cursor_are_strictly_newer() {
    let sim = common::start(small_fleet()).await;
    let client = common::pve(&sim, "pve-2");
    let full = client.fetch_metrics(Cursor::START).await.unwrap();
    let cursor = full.newest().unwrap() - 30;

    let batch = client.fetch_metrics(Cursor(Some(cursor))).await.unwrap();

    assert!(!batch.is_empty());
    assert!(batch.points.iter().all(|p| p.timestamp > cursor));
    let oldest = batch.points.iter().map(|p| p.timestamp).min().unwrap();
    assert_eq!(oldest, cursor + 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_fleet_started_behind_real_time_catches_up_by_the_whole_lag_of_metrics() {
    let lag = 600;
    let sim = common::start(SimConfig {
        clock_behind: std::time::Duration::from_secs(lag as u64),
        ..small_fleet()
    })
    .await;
    let client = common::pve(&sim, "pve-1");
    let real_now = fleetpoll_actors::system_now_secs();
    let backfill = client.fetch_metrics(Cursor::START).await.unwrap();
    let newest = backfill.newest().unwrap();
    assert!(
        (real_now - lag - 20..=real_now - lag).contains(&newest),
        "newest {newest}, real time {real_now}: {lag} s behind"
    );

    sim.catch_up_clock();
    assert_eq!(sim.clock_behind(), std::time::Duration::ZERO);
    let next = client.fetch_metrics(Cursor(Some(newest))).await.unwrap();
    let real_now = fleetpoll_actors::system_now_secs();
    let timestamps: BTreeSet<i64> = next.points.iter().map(|p| p.timestamp).collect();
    assert!(
        (59..=61).contains(&timestamps.len()),
        "a 600 s lag moves 60 generations at 10 s, got {}",
        timestamps.len()
    );
    assert_eq!(timestamps.first(), Some(&(newest + 10)));
    assert!(
        *timestamps.last().unwrap() <= real_now,
        "nothing in the future"
    );
    assert_eq!(next.dropped_future, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn pve_task_list_covers_every_node_from_its_cutoff() {
    let sim = common::start(small_fleet()).await;
    let client = common::pve(&sim, "pve-1");
    let now = sim.now();
    let query = TaskQuery {
        cutoffs: BTreeMap::from([("pve-1-n2".to_string(), now - 600)]),
        default_since: now - 3 * 3600,
        running_only: false,
        connections: 3,
    };

    let batch = client.list_tasks(&query).await.unwrap();

    assert_eq!(
        batch.complete_nodes,
        vec!["pve-1-n1", "pve-1-n2", "pve-1-n3"]
    );
    for node in ["pve-1-n1", "pve-1-n2", "pve-1-n3"] {
        let tasks: Vec<_> = batch.tasks.iter().filter(|t| t.node == node).collect();
        let since = if node == "pve-1-n2" {
            now - 600
        } else {
            now - 3 * 3600
        };
        let expected = (now - since) / 60;
        assert!(
            (tasks.len() as i64 - expected).abs() <= 2,
            "{node}: {} tasks, expected about {expected}",
            tasks.len()
        );
        assert!(tasks.iter().all(|t| t.start_time >= since));
    }
    for task in &batch.tasks {
        let upid = Upid::parse(&task.upid).unwrap();
        assert_eq!(upid.node, task.node);
        assert_eq!(upid.starttime, task.start_time);
        assert_eq!(upid.worker_type, task.task_type);
        assert_eq!(task.is_running(), task.status.is_none());
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn running_only_lists_just_the_running_tasks() {
    let sim = common::start(small_fleet()).await;
    let client = common::pve(&sim, "pve-1");
    let query = TaskQuery {
        default_since: sim.now() - 86_400,
        running_only: true,
        ..TaskQuery::default()
    };

    let batch = client.list_tasks(&query).await.unwrap();

    assert!(batch.tasks.iter().all(|t| t.is_running()));
    let all = client
        .list_tasks(&TaskQuery {
            running_only: false,
            ..query
        })
        .await
        .unwrap();
    let running_in_all = all.tasks.iter().filter(|t| t.is_running()).count();
    assert!(running_in_all > 0, "a day of tasks has some still running");
    assert!(batch.tasks.len().abs_diff(running_in_all) <= 2);
    sim.shutdown().await;
}

async fn check_task_status<C: RemoteSource>(client: &C, now: i64) {
    let batch = client
        .list_tasks(&TaskQuery {
            default_since: now - 86_400,
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    let finished = batch.tasks.iter().find(|t| !t.is_running()).unwrap();
    assert_eq!(
        client.task_status(&finished.upid).await.unwrap(),
        TaskState::Stopped {
            exit_status: finished.status.clone().unwrap()
        }
    );
    // The simulator's clock stands still, so a task listed as running still runs.
    let running = batch
        .tasks
        .iter()
        .find(|t| t.is_running())
        .expect("a day of tasks has one still running");
    assert_eq!(
        client.task_status(&running.upid).await.unwrap(),
        TaskState::Running,
        "{}",
        running.upid
    );
    let mut unknown = Upid::parse(&finished.upid).unwrap();
    unknown.pid ^= 1;
    let err = client.task_status(&unknown.to_string()).await.unwrap_err();
    // A 404 of the remote: the engine stops tracking a task that does not exist.
    assert_eq!(err.class, fleetpoll_actors::ErrorClass::NotFound, "{err}");
    assert!(err.message.contains("no such task"), "{err}");
}

#[tokio::test]
async fn task_status_by_upid_matches_the_listing() {
    let clock = std::sync::Arc::new(ManualClock(1_750_000_000.into()));
    let sim = fleetpoll::sim::Simulator::start_with_clock(small_fleet(), clock)
        .await
        .unwrap();
    check_task_status(&common::pve(&sim, "pve-1"), sim.now()).await;
    check_task_status(&common::pbs(&sim, "pbs-1"), sim.now()).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn pbs_metrics_have_host_and_datastores() {
    let sim = common::start(small_fleet()).await;
    let client = common::pbs(&sim, "pbs-1");

    let batch = client.fetch_metrics(Cursor::START).await.unwrap();

    let entities: BTreeSet<&str> = batch.series.iter().map(|s| &*s.entity).collect();
    assert_eq!(
        entities,
        BTreeSet::from(["host", "datastore/store1", "datastore/store2"])
    );
    assert!(batch
        .series
        .iter()
        .any(|s| &*s.entity == "datastore/store1" && &*s.metric == "disk_available"));
    assert_eq!(batch.points.len(), 180 * batch.series.len());
    sim.shutdown().await;
}

#[tokio::test]
async fn pbs_task_list_pages_past_5000_tasks_without_loss() {
    let sim = common::start(SimConfig {
        task_interval_secs: 60,
        ..small_fleet()
    })
    .await;
    let client = common::pbs(&sim, "pbs-1");
    let since = sim.now() - 5 * 86_400;

    let batch = client
        .list_tasks(&TaskQuery {
            default_since: since,
            ..TaskQuery::default()
        })
        .await
        .unwrap();

    assert_eq!(batch.complete_nodes, vec!["localhost"]);
    let unique: HashSet<&str> = batch.tasks.iter().map(|t| t.upid.as_str()).collect();
    assert!(unique.len() > 7000, "{} tasks", unique.len());
    assert!(batch.tasks.iter().all(|t| t.start_time >= since));
    assert!(batch
        .tasks
        .iter()
        .all(|t| Upid::parse(&t.upid).unwrap().is_pbs()));
    sim.shutdown().await;
}

#[tokio::test]
async fn task_fetches_use_one_connection_per_node_up_to_five_and_metric_polls_one() {
    let sim = common::start(SimConfig {
        nodes_per_cluster: 7,
        ..small_fleet()
    })
    .await;
    let pve = common::pve(&sim, "pve-1");
    let query = TaskQuery {
        default_since: sim.now() - 600,
        ..TaskQuery::default()
    };
    assert_eq!(
        (pve.metric_connections(), pve.task_connections()),
        (1, 1),
        "before the nodes are known, one connection lists them one after the other"
    );
    pve.list_tasks(&query).await.unwrap();
    assert_eq!(
        pve.task_connections(),
        5,
        "seven nodes, at most five at once"
    );
    let pbs: PbsClient = common::pbs(&sim, "pbs-1");
    assert_eq!((pbs.metric_connections(), pbs.task_connections()), (1, 1));
    sim.shutdown().await;

    let sim = common::start(small_fleet()).await;
    let pve = common::pve(&sim, "pve-2");
    pve.list_tasks(&query).await.unwrap();
    assert_eq!(
        pve.task_connections(),
        3,
        "one per node of a three-node cluster"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_node_list_is_kept_between_task_fetches_until_a_node_fails() {
    let sim = common::start(small_fleet()).await;
    let pve = common::pve(&sim, "pve-1");
    let query = TaskQuery {
        default_since: sim.now() - 600,
        connections: 3,
        ..TaskQuery::default()
    };
    let before = sim.requests("pve-1");
    let first = pve.list_tasks(&query).await.unwrap();
    assert_eq!(
        sim.requests("pve-1") - before,
        4,
        "/nodes and three node lists"
    );
    let again = pve.list_tasks(&query).await.unwrap();
    assert_eq!(
        sim.requests("pve-1") - before,
        7,
        "the second fetch asks the three nodes only"
    );
    assert_eq!(first.complete_nodes, again.complete_nodes);
    assert_eq!(pve.task_connections(), 3);

    // Every node fails: the list is forgotten, and the next fetch starts with `/nodes`.
    sim.shutdown().await;
    let err = pve.list_tasks(&query).await.unwrap_err();
    assert_eq!(
        err.class,
        fleetpoll_actors::ErrorClass::Unreachable,
        "{err}"
    );
    assert_eq!(pve.task_connections(), 1);
}

/// A wall clock the test moves by hand.
#[derive(Debug)]
struct ManualClock(std::sync::atomic::AtomicU64);

impl fleetpoll_actors::Clock for ManualClock {
    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

#[tokio::test]
async fn running_tasks_finish_and_new_ones_appear_as_time_passes() {
    let start = 1_750_000_000;
    let clock = std::sync::Arc::new(ManualClock(start.into()));
    let sim = fleetpoll::sim::Simulator::start_with_clock(small_fleet(), clock.clone())
        .await
        .unwrap();
    let client = common::pve(&sim, "pve-1");
    let query = TaskQuery {
        default_since: start as i64 - 86_400,
        ..TaskQuery::default()
    };
    let before = client.list_tasks(&query).await.unwrap();
    let running = before
        .tasks
        .iter()
        .find(|t| t.is_running())
        .unwrap()
        .clone();
    assert_eq!(
        client.task_status(&running.upid).await.unwrap(),
        TaskState::Running
    );

    clock
        .0
        .fetch_add(4 * 3600, std::sync::atomic::Ordering::SeqCst);

    assert!(matches!(
        client.task_status(&running.upid).await.unwrap(),
        TaskState::Stopped { .. }
    ));
    let after = client.list_tasks(&query).await.unwrap();
    let newest = |b: &fleetpoll_actors::TaskBatch| b.tasks.iter().map(|t| t.start_time).max();
    assert!(newest(&after) > Some(start as i64), "new tasks started");
    let same = after.tasks.iter().find(|t| t.upid == running.upid).unwrap();
    assert!(!same.is_running() && same.end_time.unwrap() > running.start_time);
    sim.shutdown().await;
}

#[tokio::test]
async fn fifty_remotes_polled_at_once_each_get_their_own_data() {
    let sim = common::start(SimConfig {
        pve_remotes: 40,
        pbs_remotes: 10,
        nodes_per_cluster: 1,
        guests_per_cluster: 2,
        ..small_fleet()
    })
    .await;
    let remotes = sim.remotes();

    let fetches = remotes.iter().map(|info| async move {
        let endpoint = common::endpoint(info);
        let batch = match info.kind {
            fleetpoll_actors::RemoteKind::Pbs => {
                PbsClient::new(endpoint)
                    .unwrap()
                    .fetch_metrics(Cursor::START)
                    .await
            }
            _ => {
                PveClient::new(endpoint)
                    .unwrap()
                    .fetch_metrics(Cursor::START)
                    .await
            }
        };
        (info, batch.unwrap())
    });
    let results = futures::future::join_all(fetches).await;

    assert_eq!(results.len(), 50);
    for (info, batch) in results {
        let own = match info.kind {
            fleetpoll_actors::RemoteKind::Pbs => "host".to_string(),
            _ => format!("node/{}", info.nodes[0].name),
        };
        assert!(
            batch.series.iter().any(|s| *s.entity == *own),
            "{}",
            info.id
        );
        assert!(
            batch
                .series
                .iter()
                .all(|s| !s.entity.starts_with("node/") || *s.entity == *own),
            "{} got another remote's nodes",
            info.id
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_pinned_fingerprint_survives_a_restart_of_the_simulator() {
    let pinned =
        |sim: &fleetpoll::sim::Simulator| sim.remote("pbs-1").unwrap().nodes[0].fingerprint;
    let first = common::start(small_fleet()).await;
    let fingerprint = pinned(&first);
    assert_ne!(
        fingerprint,
        first.remote("pbs-1").unwrap().nodes[0].wrong_fingerprint
    );
    first.shutdown().await;

    let again = common::start(small_fleet()).await;
    let other_seed = common::start(SimConfig {
        seed: 43,
        ..small_fleet()
    })
    .await;

    assert_eq!(pinned(&again), fingerprint);
    assert_ne!(pinned(&other_seed), fingerprint);
    let batch = common::pbs(&again, "pbs-1")
        .fetch_metrics(Cursor::START)
        .await
        .unwrap();
    assert!(!batch.is_empty(), "the Ed25519 certificate is accepted");
    again.shutdown().await;
    other_seed.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_kept_within_one_budget_for_all_remotes_newest_first() {
    let sim = common::start(SimConfig {
        pve_remotes: 5,
        ..small_fleet()
    })
    .await;
    let budget = fleetpoll::remote::IdleBudget::new(2);
    let clients: Vec<PveClient> = (1..=5)
        .map(|i| {
            let mut endpoint = common::endpoint(&sim.remote(&format!("pve-{i}")).unwrap());
            endpoint.options.idle = budget.clone();
            PveClient::new(endpoint).unwrap()
        })
        .collect();
    for client in &clients {
        client.fetch_metrics(Cursor(None)).await.unwrap();
    }
    assert_eq!(sim.connections_accepted(), 5);
    assert_eq!(budget.kept(), 2, "five connections went idle, two are kept");

    // The newest idle connection is reused; the oldest was closed and must be replaced.
    clients[4].fetch_metrics(Cursor(None)).await.unwrap();
    assert_eq!(sim.connections_accepted(), 5, "pve-5 reused its connection");
    clients[0].fetch_metrics(Cursor(None)).await.unwrap();
    assert_eq!(
        sim.connections_accepted(),
        6,
        "pve-1's connection was closed"
    );
    assert_eq!(budget.kept(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_its_timeout() {
    let sim = common::start(small_fleet()).await;
    let timeout = std::time::Duration::from_millis(300);
    let budget = fleetpoll::remote::IdleBudget::with_timeout(8, timeout);
    let mut endpoint = common::endpoint(&sim.remote("pbs-1").unwrap());
    endpoint.options.idle = budget.clone();
    let client = PbsClient::new(endpoint).unwrap();
    client.fetch_metrics(Cursor(None)).await.unwrap();
    client.fetch_metrics(Cursor(None)).await.unwrap();
    assert_eq!(
        (budget.kept(), sim.connections_accepted()),
        (1, 1),
        "reused while fresh"
    );
    let deadline = tokio::time::Instant::now() + 10 * timeout;
    while budget.kept() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(timeout / 10).await;
    }
    assert_eq!(budget.kept(), 0, "the connection idled past its timeout");
    client.fetch_metrics(Cursor(None)).await.unwrap();
    assert_eq!(sim.connections_accepted(), 2, "a new connection was opened");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_client_built_again_for_a_node_finds_its_predecessors_connection_in_one_budget() {
    let sim = common::start(small_fleet()).await;
    let budget = fleetpoll::remote::IdleBudget::new(4);
    let sessions = fleetpoll::remote::tls::TlsSessions::new(16);
    let client = || {
        let mut endpoint = common::endpoint(&sim.remote("pbs-1").unwrap());
        endpoint.options.idle = budget.clone();
        endpoint.options.tls_sessions = sessions.clone();
        PbsClient::new(endpoint).unwrap()
    };
    let old = client();
    old.fetch_metrics(Cursor(None)).await.unwrap();
    assert_eq!((budget.kept(), sim.connections_accepted()), (1, 1));
    // A reload builds the new client while the old one still runs, then drops the old.
    let new = client();
    drop(old);
    new.fetch_metrics(Cursor(None)).await.unwrap();
    assert_eq!(
        sim.connections_accepted(),
        1,
        "the new client reused the kept connection"
    );
    assert_eq!(budget.kept(), 1, "counted once, in the same budget");
    // A reload that lowers the bound closes what is kept beyond it.
    budget.set_max(0);
    assert_eq!(budget.kept(), 0);
    new.fetch_metrics(Cursor(None)).await.unwrap();
    assert_eq!(sim.connections_accepted(), 2);
    assert_eq!(budget.kept(), 0, "a bound of 0 keeps nothing");
    sim.shutdown().await;
}
