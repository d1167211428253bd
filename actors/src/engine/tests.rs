//! The poller directory as the engine handle sees it: it lists exactly the pollers that
//! run, so a trigger that goes straight to one never reaches a poller that is gone.

use std::sync::Arc;
use std::time::Duration;

use super::{Engine, EngineHandle};
use crate::clock::{Clock, SeededRandomness, TokioClock};
use crate::config::{EngineConfig, RemoteConfig};
use crate::model::{RemoteId, RemoteKind};
use crate::poller::{CollectError, PollerMsg, Target};
use crate::testing::{wait_until, FakeSource, MemoryMetricStore, MemoryTaskStore, Probe};

fn listed(engine: &EngineHandle, remote: &str) -> Option<ractor::ActorId> {
    (engine.inner.pollers.get(&RemoteId::new(remote))).map(|p| p.get_id())
}

#[tokio::test(start_paused = true)]
async fn the_poller_directory_lists_exactly_the_running_pollers() {
    let probe = Probe::new();
    let clock = Arc::new(TokioClock::starting_at(Duration::from_secs(1_700_000_000)));
    let mut config = EngineConfig::default();
    let mut sources = Vec::new();
    for id in ["r0", "r1"] {
        let source = Arc::new(FakeSource::new(
            id,
            probe.clone(),
            clock.clone() as Arc<dyn Clock>,
        ));
        sources.push(source.clone());
        config
            .remotes
            .push(RemoteConfig::new(id, RemoteKind::Pbs, source));
    }
    let engine = Engine::builder(config.clone())
        .metric_store(MemoryMetricStore::new())
        .task_store(MemoryTaskStore::new())
        .clock(clock.clone())
        .randomness(Arc::new(SeededRandomness::new(7)))
        .start()
        .await
        .unwrap();
    let first = listed(&engine, "r0").expect("a running poller is listed");
    assert!(listed(&engine, "r1").is_some());

    // A poller that dies is unlisted; its next incarnation is listed.
    sources[0].panic_next(1);
    let crashed = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    assert_eq!(crashed.results[0].1, Err(CollectError::Stopped));
    let during = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    assert_eq!(
        during.results[0].1,
        Err(CollectError::Restarting),
        "a trigger of a restarting remote hears so from the supervisor"
    );
    assert_eq!(listed(&engine, "r0"), None);
    wait_until(Duration::from_secs(5), "r0's poller is back", || async {
        listed(&engine, "r0").is_some()
    })
    .await;
    assert_ne!(listed(&engine, "r0"), Some(first), "the new incarnation");
    let back = engine
        .trigger(Target::Remote(RemoteId::new("r0")), true)
        .await
        .unwrap();
    assert!(back.results[0].1.is_ok(), "{:?}", back.results);

    // A remote removed by a reload is unlisted.
    config.remotes.retain(|r| r.id.as_str() == "r0");
    engine.reload(config).await.unwrap();
    assert_eq!(listed(&engine, "r1"), None);
    assert!(listed(&engine, "r0").is_some());

    // Shutdown unlists everyone.
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(listed(&engine, "r0"), None);
}

/// The next message the stand-in reports (failing after a second without one).
async fn next(seen: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(1), seen.recv())
        .await
        .expect("the listed poller got no message")
        .unwrap()
}

/// Stands in for a poller: reports each message it gets.
struct Recorder;

impl ractor::Actor for Recorder {
    type Msg = PollerMsg;
    type State = tokio::sync::mpsc::UnboundedSender<String>;
    type Arguments = tokio::sync::mpsc::UnboundedSender<String>;

    async fn pre_start(
        &self,
        _: ractor::ActorRef<PollerMsg>,
        seen: Self::Arguments,
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        Ok(seen)
    }

    async fn handle(
        &self,
        _: ractor::ActorRef<PollerMsg>,
        msg: PollerMsg,
        seen: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        let _ = seen.send(format!("{msg:?}"));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_trigger_of_one_remote_goes_to_the_poller_the_directory_lists() {
    let probe = Probe::new();
    let clock = Arc::new(TokioClock::starting_at(Duration::from_secs(1_700_000_000)));
    let mut config = EngineConfig::default();
    let source = Arc::new(FakeSource::new(
        "r0",
        probe.clone(),
        clock.clone() as Arc<dyn Clock>,
    ));
    config
        .remotes
        .push(RemoteConfig::new("r0", RemoteKind::Pbs, source));
    let engine = Engine::builder(config)
        .metric_store(MemoryMetricStore::new())
        .task_store(MemoryTaskStore::new())
        .clock(clock)
        .randomness(Arc::new(SeededRandomness::new(7)))
        .start()
        .await
        .unwrap();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (recorder, _) = ractor::Actor::spawn(None, Recorder, tx).await.unwrap();
    let r0 = RemoteId::new("r0");
    engine.inner.pollers.insert(r0.clone(), recorder.clone());
    engine
        .trigger(Target::Remote(r0.clone()), false)
        .await
        .unwrap();
    engine.freshen(r0.clone(), false).await.unwrap();
    assert_eq!(next(&mut seen).await, "Collect(Manual)");
    assert_eq!(next(&mut seen).await, "Freshen");
    // A listed poller that is gone: the supervisor's path, which reaches the real one.
    recorder.stop(None);
    wait_until(Duration::from_secs(1), "the stand-in stopped", || async {
        recorder.get_status() == ractor::ActorStatus::Stopped
    })
    .await;
    let report = engine
        .trigger(Target::Remote(r0.clone()), true)
        .await
        .unwrap();
    assert!(report.results[0].1.is_ok(), "{:?}", report.results);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
