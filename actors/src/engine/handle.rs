//! The [`EngineHandle`]: what an embedder holds of a running engine. Every call is a
//! message to one of the engine's actors; nothing is global, and two engines in one
//! process share nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{ConfigError, EngineConfig};
use crate::hooks::{Hook, HookBus, HookOptions, HookStatus, HooksMsg};
use crate::limiter::{Lane, LimiterMsg, LimiterSnapshot};
use crate::model::{RemoteId, TaskRef, UnixTime};
use crate::poller::{CollectError, PollStats, PollStatsSnapshot, PollerMsg, RemoteStatus, Target};
use crate::storage::{LiveFeed, StorageMsg, StorageStats, Subscription};
use crate::supervisor::{
    FanOut, PollerDirectory, Refs, ReloadReport, RemotesMsg, ShutdownReport, SupervisorMsg,
    TreeNode, TriggerResults,
};
use crate::timers::{SchedulerMsg, SchedulerStats};

/// Why the engine could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The config was rejected as a whole; the running config stays.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// The builder lacks a part.
    #[error("engine builder: {0}")]
    Incomplete(&'static str),
    /// The named remote is not configured.
    #[error("no remote named {0:?} is configured")]
    UnknownRemote(RemoteId),
    /// The engine is shutting down and accepts no new work.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The engine stopped (shut down, or its supervisor escalated a failure).
    #[error("the engine is not running: {0}")]
    NotRunning(String),
    /// A bound was reached (too many tracked tasks, say); the message names the key.
    #[error("{0}")]
    LimitReached(String),
    /// A hook of that name is registered already, or none is.
    #[error("{0}")]
    Hook(String),
    /// An actor did not answer in time.
    #[error("the engine did not answer within {0:?}")]
    Timeout(Duration),
}

/// The answer to a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerReport {
    /// Per remote, the collection's outcome. Without `wait`, only the remotes that could
    /// not be asked at all (failed, stopping) appear.
    pub results: TriggerResults,
}

/// What every clone of a handle shares.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) supervisor: ActorRef<SupervisorMsg>,
    pub(super) refs: watch::Receiver<Refs>,
    pub(super) live: Arc<LiveFeed>,
    pub(super) hooks: Arc<HookBus>,
    pub(super) pollers: Arc<PollerDirectory>,
    pub(super) stats: Arc<PollStats>,
    pub(super) accepting: AtomicBool,
    pub(super) join: std::sync::Mutex<Option<JoinHandle<()>>>,
    pub(super) ask_timeout: Duration,
}

/// A running engine. Cheap to clone; every clone talks to the same tree.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    pub(super) inner: Arc<Inner>,
}

impl EngineHandle {
    fn refs(&self) -> Result<Refs, EngineError> {
        if !self.is_running() {
            return Err(EngineError::NotRunning("the supervisor has stopped".into()));
        }
        Ok(self.inner.refs.borrow().clone())
    }

    /// The running incarnation of one child, or why there is none.
    fn child<M>(
        &self,
        pick: impl FnOnce(Refs) -> Option<ActorRef<M>>,
        name: &str,
    ) -> Result<ActorRef<M>, EngineError> {
        pick(self.refs()?).ok_or_else(|| EngineError::NotRunning(format!("{name} is restarting")))
    }

    fn remotes(&self) -> Result<ActorRef<RemotesMsg>, EngineError> {
        self.child(|r| r.remotes, "the remote supervisor")
    }

    fn scheduler_ref(&self) -> Result<ActorRef<SchedulerMsg>, EngineError> {
        self.child(|r| r.scheduler, "the scheduler")
    }

    fn accepting(&self) -> Result<(), EngineError> {
        if self.inner.accepting.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(EngineError::ShuttingDown)
        }
    }

    /// Tells the hook supervisor to start or stop runners; waits until it did (when it
    /// is restarting, it reads the registry itself when it starts).
    async fn sync_hooks(&self) -> Result<(), EngineError> {
        let Some(hooks) = self.refs()?.hooks else {
            return Ok(());
        };
        ractor::call_t!(
            hooks,
            |reply| HooksMsg::Sync(Some(reply)),
            self.inner.ask_timeout.as_millis() as u64
        )
        .map_err(|e| EngineError::NotRunning(format!("the hook supervisor did not answer: {e}")))
    }

    /// Registers a hook on the running engine: it sees every batch stored from now on.
    pub async fn add_hook(
        &self,
        name: &str,
        hook: Box<dyn Hook>,
        options: HookOptions,
    ) -> Result<(), EngineError> {
        self.inner
            .hooks
            .register(name, hook, options)
            .map_err(|d| {
                EngineError::Hook(format!("a hook named {:?} is registered already", d.0))
            })?;
        self.sync_hooks().await
    }

    /// Removes a hook: its runner stops (the hook's `on_stop` runs) before this returns.
    pub async fn remove_hook(&self, name: &str) -> Result<(), EngineError> {
        if !self.inner.hooks.unregister(name) {
            return Err(EngineError::Hook(format!(
                "no hook named {name:?} is registered"
            )));
        }
        self.sync_hooks().await
    }

    /// Every hook's queue, counters and state, in registration order.
    pub fn hooks(&self) -> Vec<HookStatus> {
        self.inner.hooks.status()
    }

    /// Whether the supervision tree is up.
    pub fn is_running(&self) -> bool {
        !matches!(
            self.inner.supervisor.get_status(),
            ractor::ActorStatus::Stopped | ractor::ActorStatus::Stopping
        )
    }

    async fn run(
        &self,
        target: Target,
        job: FanOut,
        wait: bool,
    ) -> Result<TriggerReport, EngineError> {
        let job = match (&target, job) {
            (Target::Remote(id), FanOut::Metrics { .. } | FanOut::Freshen) => {
                match self.run_direct(id, job, wait).await? {
                    Ok(report) => return Ok(report),
                    Err(job) => job,
                }
            }
            _ => job,
        };
        self.run_in(target, job, Lane::Manual, wait).await
    }

    async fn run_in(
        &self,
        target: Target,
        job: FanOut,
        lane: Lane,
        wait: bool,
    ) -> Result<TriggerReport, EngineError> {
        let rx = self.send_run(target, job, lane, wait)?;
        Self::report(rx).await
    }

    /// Hands a fan-out to the remote supervisor; its answer arrives on the receiver.
    fn send_run(
        &self,
        target: Target,
        job: FanOut,
        lane: Lane,
        wait: bool,
    ) -> Result<oneshot::Receiver<Result<TriggerResults, CollectError>>, EngineError> {
        self.accepting()?;
        let remotes = self.remotes()?;
        let (tx, rx) = oneshot::channel();
        remotes
            .send_message(RemotesMsg::Run {
                target,
                job,
                lane,
                wait,
                reply: Some(tx),
            })
            .map_err(|_| EngineError::NotRunning("the remote supervisor stopped".into()))?;
        Ok(rx)
    }

    async fn report(
        rx: oneshot::Receiver<Result<TriggerResults, CollectError>>,
    ) -> Result<TriggerReport, EngineError> {
        match rx.await {
            Ok(Ok(results)) => Ok(TriggerReport { results }),
            Ok(Err(CollectError::UnknownRemote(id))) => Err(EngineError::UnknownRemote(id)),
            Ok(Err(other)) => Err(EngineError::NotRunning(other.to_string())),
            Err(_) => Err(EngineError::NotRunning(
                "the remote supervisor stopped before answering".into(),
            )),
        }
    }

    /// Collect metrics of one remote or all now, in the priority lane. With `wait`, returns
    /// once each addressed remote's batch is stored (or why not). A trigger of one remote
    /// bypasses its backoff.
    pub async fn trigger(&self, target: Target, wait: bool) -> Result<TriggerReport, EngineError> {
        let bypass_backoff = matches!(target, Target::Remote(_));
        self.run(target, FanOut::Metrics { bypass_backoff }, wait)
            .await
    }

    /// A manual job of one remote handed straight to its running poller, past the
    /// remote supervisor's mailbox (busy with every poll's status while a cycle runs):
    /// the answer, or the job back when the remote has no running poller listed, for
    /// the supervisor to run or explain.
    async fn run_direct(
        &self,
        remote: &RemoteId,
        job: FanOut,
        wait: bool,
    ) -> Result<Result<TriggerReport, FanOut>, EngineError> {
        self.accepting()?;
        let Some(poller) = self.inner.pollers.get(remote) else {
            return Ok(Err(job));
        };
        let (tx, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let msg = match job {
            FanOut::Metrics { bypass_backoff } => PollerMsg::Collect {
                lane: Lane::Manual,
                bypass_backoff,
                waiter: tx,
            },
            FanOut::Freshen => PollerMsg::Freshen { waiter: tx },
            tasks @ FanOut::Tasks { .. } => return Ok(Err(tasks)),
        };
        if poller.send_message(msg).is_err() {
            // Stopped just now: the supervisor knows what became of it.
            return Ok(Err(job));
        }
        let results = match rx {
            Some(rx) => vec![(
                remote.clone(),
                rx.await.unwrap_or(Err(CollectError::Stopped)),
            )],
            None => Vec::new(),
        };
        Ok(Ok(TriggerReport { results }))
    }

    /// Fresh data for a reader (the API's hour view of a stale remote): collect `remote`
    /// in the priority lane unless it is backing off or was freshened within the last
    /// interval; unlike [`trigger`](Self::trigger), never bypasses the backoff. With
    /// `wait`, returns once stored (or why not).
    pub async fn freshen(
        &self,
        remote: RemoteId,
        wait: bool,
    ) -> Result<TriggerReport, EngineError> {
        self.run(Target::Remote(remote), FanOut::Freshen, wait)
            .await
    }

    /// Start a regular collection cycle of every remote now, exactly as the scheduler's
    /// tick would: scheduled lane, per-connection delay, skip window and backoff apply.
    /// With `wait`, returns once every remote answered.
    pub async fn cycle(&self, wait: bool) -> Result<TriggerReport, EngineError> {
        let job = FanOut::Metrics {
            bypass_backoff: false,
        };
        self.run_in(Target::All, job, Lane::Scheduled, wait).await
    }

    /// Start a regular cycle of every remote now in which the task lists fall due, as
    /// the scheduler's tick does then: scheduled lane, per-connection delay, skip window
    /// and backoff apply, and each remote's task lists are fetched right after its
    /// metric poll, over the connection the poll kept alive. With `wait`, returns once
    /// every remote's metrics and task lists are stored: the metrics' report, then the
    /// task lists'.
    pub async fn cycle_with_tasks(
        &self,
        wait: bool,
    ) -> Result<(TriggerReport, TriggerReport), EngineError> {
        let metrics = self.send_run(
            Target::All,
            FanOut::Metrics {
                bypass_backoff: false,
            },
            Lane::Scheduled,
            wait,
        )?;
        // Sent after the metric fan-out, so every poller has its poll under way and
        // stashes the task fetch until the poll hands the connection over.
        let tasks = self.send_run(
            Target::All,
            FanOut::Tasks {
                running_only: false,
                after_metrics: true,
            },
            Lane::Scheduled,
            wait,
        )?;
        Ok((Self::report(metrics).await?, Self::report(tasks).await?))
    }

    /// Fetch the task lists of one remote or all now; with `wait`, returns once merged.
    pub async fn refresh_tasks(
        &self,
        target: Target,
        wait: bool,
    ) -> Result<TriggerReport, EngineError> {
        self.run(
            target,
            FanOut::Tasks {
                running_only: false,
                after_metrics: false,
            },
            wait,
        )
        .await
    }

    /// Track a task the manager started: polled every task tick until it finishes, then
    /// its remote's task list is fetched. Persisted across restarts.
    pub async fn track_task(&self, task: TaskRef) -> Result<(), EngineError> {
        self.accepting()?;
        self.remote_status(&task.remote).await?;
        let scheduler = self.scheduler_ref()?;
        self.ask(async move { ractor::call!(scheduler, |reply| SchedulerMsg::Track(task, reply)) })
            .await?
            .map_err(EngineError::LimitReached)
    }

    /// Stop tracking a task; returns whether it was tracked.
    pub async fn untrack_task(&self, task: TaskRef) -> Result<bool, EngineError> {
        let scheduler = self.scheduler_ref()?;
        self.ask(
            async move { ractor::call!(scheduler, |reply| SchedulerMsg::Untrack(task, reply)) },
        )
        .await
    }

    /// The tasks currently tracked.
    pub async fn tracked_tasks(&self) -> Result<Vec<TaskRef>, EngineError> {
        let scheduler = self.scheduler_ref()?;
        self.ask(async move { ractor::call!(scheduler, SchedulerMsg::Tracked) })
            .await
    }

    /// Follow stored metric batches live: first those already stored with a point newer
    /// than `since` (from a short replay buffer), then each new one as it is stored.
    pub fn subscribe(&self, since: Option<UnixTime>) -> Subscription {
        self.inner.live.subscribe(since)
    }

    /// Poll counters: successes, failures by class, the duration histogram.
    pub fn poll_stats(&self) -> PollStatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Every remote's status, in config order.
    pub async fn status(&self) -> Result<Vec<RemoteStatus>, EngineError> {
        let remotes = self.remotes()?;
        self.ask(async move { ractor::call!(remotes, RemotesMsg::Status) })
            .await
    }

    /// One remote's status.
    pub async fn remote_status(&self, id: &RemoteId) -> Result<RemoteStatus, EngineError> {
        let remotes = self.remotes()?;
        let wanted = id.clone();
        self.ask(
            async move { ractor::call!(remotes, |reply| RemotesMsg::RemoteStatus(wanted, reply)) },
        )
        .await?
        .ok_or_else(|| EngineError::UnknownRemote(id.clone()))
    }

    /// The supervision tree with each actor's state and restart count.
    pub async fn tree(&self) -> Result<TreeNode, EngineError> {
        let sup = self.inner.supervisor.clone();
        self.ask(async move { ractor::call!(sup, SupervisorMsg::Tree) })
            .await
    }

    /// The rate limiter's books (permits in use, queue depths).
    pub async fn limiter(&self) -> Result<LimiterSnapshot, EngineError> {
        let limiter = self.child(|r| r.limiter.map(|l| l.actor), "the rate limiter")?;
        self.ask(async move { ractor::call!(limiter, LimiterMsg::Snapshot) })
            .await
    }

    /// The storage writer's counters.
    pub async fn storage(&self) -> Result<StorageStats, EngineError> {
        let storage = self.child(|r| r.storage, "storage")?;
        self.ask(async move { ractor::call!(storage, StorageMsg::Stats) })
            .await
    }

    /// The scheduler's counters.
    pub async fn scheduler(&self) -> Result<SchedulerStats, EngineError> {
        let scheduler = self.scheduler_ref()?;
        self.ask(async move { ractor::call!(scheduler, SchedulerMsg::Stats) })
            .await
    }

    /// Apply a new config as a diff: added remotes start and collect at once, removed
    /// ones stop (their data stays), changed ones restart, timers reset when intervals
    /// change. An invalid config is rejected whole and the running one stays.
    pub async fn reload(&self, config: EngineConfig) -> Result<ReloadReport, EngineError> {
        self.accepting()?;
        config.validate()?;
        let sup = self.inner.supervisor.clone();
        self.ask(async move {
            ractor::call!(sup, |reply| SupervisorMsg::Reload(Box::new(config), reply))
        })
        .await
    }

    /// Stop accepting work, let in-flight polls finish within `grace`, flush the stores
    /// and stop the tree. Returns what was cut short.
    pub async fn shutdown(&self, grace: Duration) -> Result<ShutdownReport, EngineError> {
        self.inner.accepting.store(false, Ordering::Release);
        let sup = self.inner.supervisor.clone();
        let report = tokio::time::timeout(grace + Duration::from_secs(60), async move {
            ractor::call!(sup, |reply| SupervisorMsg::Shutdown(grace, reply))
        })
        .await
        .map_err(|_| EngineError::Timeout(grace))?
        .map_err(|e| EngineError::NotRunning(e.to_string()))?;
        let join = self.inner.join.lock().ok().and_then(|mut j| j.take());
        if let Some(join) = join {
            let _ = join.await;
        }
        Ok(report)
    }

    /// Waits until the supervision tree has stopped (after `shutdown`, or an escalation).
    pub async fn stopped(&self) {
        let join = self.inner.join.lock().ok().and_then(|mut j| j.take());
        match join {
            Some(join) => {
                let _ = join.await;
            }
            None => {
                while self.is_running() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn ask<T, E: std::fmt::Display>(
        &self,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, EngineError> {
        match tokio::time::timeout(self.inner.ask_timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(EngineError::NotRunning(e.to_string())),
            Err(_) => Err(EngineError::Timeout(self.inner.ask_timeout)),
        }
    }
}
