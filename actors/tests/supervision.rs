//! OTP supervision: crashed pollers restart one-for-one within the intensity and are
//! then given up (their remote shows `failed`, the rest keep running); a crashing core
//! actor restarts rest-for-one and escalates past its intensity; exits of old
//! incarnations change nothing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, Fleet};
use fleetpoll_actors::testing::CallKind;
use fleetpoll_actors::{CollectError, EngineError, PollState, RemoteId, Target};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

/// Stands in for the embedding application's supervisor: records what reaches it.
struct Parent;

impl Actor for Parent {
    type Msg = ();
    type State = Arc<Mutex<Vec<String>>>;
    type Arguments = Arc<Mutex<Vec<String>>>;

    async fn pre_start(
        &self,
        _: ActorRef<()>,
        seen: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(seen)
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        event: SupervisionEvent,
        seen: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(_, err) = event {
            seen.lock().unwrap().push(format!("{err}"));
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_poller_past_its_restart_intensity_is_failed_and_the_rest_keep_running() {
    let mut fleet = Fleet::new(3);
    fleet.seed_fresh();
    fleet.config.supervision.max_restarts = 3;
    let engine = fleet.start().await;
    fleet.source("r1").panic_next(1000);

    // Each trigger crashes r1's poller; its restart delay grows: 100, 200, 400 ms.
    for _ in 0..4 {
        let _ = engine
            .trigger(Target::Remote(RemoteId::new("r1")), true)
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let r1 = engine.remote_status(&RemoteId::new("r1")).await.unwrap();
    assert_eq!(r1.state, PollState::Failed);
    assert_eq!(r1.restarts, 3);
    let err = r1.last_error.unwrap();
    assert!(err.contains("told to panic"), "last error: {err}");

    let later = engine
        .trigger(Target::Remote(RemoteId::new("r1")), true)
        .await
        .unwrap();
    assert!(matches!(later.results[0].1, Err(CollectError::Failed(_))));
    assert_eq!(fleet.probe.calls_to("r1", CallKind::Metrics).len(), 4);

    // Everyone else is unaffected.
    let all = engine.trigger(Target::All, true).await.unwrap();
    let ok = all.results.iter().filter(|(_, r)| r.is_ok()).count();
    assert_eq!(ok, 2);
    let tree = engine.tree().await.unwrap();
    let pollers = &tree.child("remote_supervisor").unwrap().children;
    assert_eq!(pollers[1].state, "failed");
    assert_eq!(pollers[0].state, "running");

    // A reload that changes r1 gives it a fresh start.
    fleet.source("r1").panic_next(0);
    let mut config = fleet.config.clone();
    config.remotes[1].revision = 1;
    let report = engine.reload(config).await.unwrap();
    assert_eq!(report.changed, vec![RemoteId::new("r1")]);
    wait_until(Duration::from_secs(5), "r1 collects again", || async {
        engine
            .remote_status(&RemoteId::new("r1"))
            .await
            .unwrap()
            .state
            == PollState::Ok
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_crashing_core_actor_restarts_its_dependents_and_counts_only_itself() {
    let fleet = Fleet::new(2);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    fleet.metrics.panic_next(1);
    let crashed = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    assert_eq!(crashed.results[0].1, Err(CollectError::Stopped));

    wait_until(
        Duration::from_secs(5),
        "the tree is whole again",
        || async {
            engine
                .tree()
                .await
                .is_ok_and(|t| t.children.iter().all(|c| c.state == "running"))
        },
    )
    .await;
    let tree = engine.tree().await.unwrap();
    let restarts: Vec<(String, u32)> = tree
        .children
        .iter()
        .map(|c| (c.name.clone(), c.restarts))
        .collect();
    assert_eq!(
        restarts,
        vec![
            ("rate_limiter".into(), 0),
            ("storage".into(), 1),
            // Stopped on purpose with storage (rest_for_one): their exits are not crashes.
            ("housekeeping".into(), 0),
            ("remote_supervisor".into(), 0),
            ("scheduler".into(), 0),
            ("hooks".into(), 0),
        ]
    );
    assert!(tree.children[1]
        .last_error
        .as_deref()
        .unwrap()
        .contains("panicked"));
    // The new incarnations work together.
    let all = engine.trigger(Target::All, true).await.unwrap();
    assert!(all.results.iter().all(|(_, r)| r.is_ok()), "{all:?}");
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_core_actor_past_its_intensity_escalates_to_the_engines_parent() {
    let mut fleet = Fleet::new(1);
    fleet.seed_fresh();
    fleet.config.supervision.max_restarts = 2;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (parent, _) = Actor::spawn(None, Parent, seen.clone()).await.unwrap();
    let engine = fleet_engine_under(&fleet, parent.get_cell()).await;
    fleet.metrics.panic_next(1000);

    for _ in 0..3 {
        let _ = engine
            .trigger(Target::Remote(RemoteId::new("r0")), true)
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    wait_until(
        Duration::from_secs(5),
        "the parent hears of the failure",
        || async { !seen.lock().unwrap().is_empty() },
    )
    .await;
    let text = seen.lock().unwrap()[0].clone();
    assert!(
        text.contains("storage exceeded its restart intensity"),
        "escalated error: {text}"
    );
    engine.stopped().await;
    assert!(!engine.is_running());
    assert!(matches!(
        engine.status().await,
        Err(EngineError::NotRunning(_))
    ));
}

async fn fleet_engine_under(
    fleet: &Fleet,
    parent: ractor::ActorCell,
) -> fleetpoll_actors::EngineHandle {
    fleetpoll_actors::Engine::builder(fleet.config.clone())
        .metric_store(fleet.metrics.clone())
        .task_store(fleet.tasks.clone())
        .clock(fleet.clock.clone())
        .supervised_by(parent)
        .start()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_exit_of_a_replaced_poller_is_ignored() {
    let fleet = Fleet::new(2);
    fleet.seed_fresh();
    let engine = fleet.start().await;
    // Replace r0's poller several times in a row; each old one's exit arrives late.
    for revision in 1..=4 {
        let mut config = fleet.config.clone();
        config.remotes[0].revision = revision;
        engine.reload(config).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tree = engine.tree().await.unwrap();
    let r0 = &tree.child("remote_supervisor").unwrap().children[0];
    assert_eq!((r0.state.as_str(), r0.restarts), ("running", 0));
    let status = engine.remote_status(&RemoteId::new("r0")).await.unwrap();
    assert_eq!(status.restarts, 0);
    assert_eq!(
        status.state,
        PollState::Ok,
        "a changed remote collects at once"
    );
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
