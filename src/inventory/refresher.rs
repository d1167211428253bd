//! The background job that fills the resource cache: a loop that selects its timer
//! (every `resources_interval_secs`, the first fetch at once) and its control channel
//! (refresh now, a new remote list, a new interval, stop). Fetches run as tasks beside
//! the loop, at most [`MAX_PARALLEL_FETCHES`] at once across all of them, so a slow
//! remote holds one permit and never the channel.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::{Clock, RemoteConfig, RemoteId, RemoteSource, Target};
use futures::future::join_all;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::cache::{RemoteResources, ResourceCache};

/// Resource-list fetches in flight at once, over every remote (each is one request).
pub const MAX_PARALLEL_FETCHES: usize = 8;

/// A remote whose resource list is kept.
#[derive(Clone, Debug)]
pub struct InventoryRemote {
    /// The remote.
    pub id: RemoteId,
    /// Its client (the engine's: one connection pool per remote).
    pub source: Arc<dyn RemoteSource>,
}

impl InventoryRemote {
    /// The enabled remotes of an engine config whose sources have a resource list.
    pub fn from_engine(remotes: &[RemoteConfig]) -> Vec<InventoryRemote> {
        remotes
            .iter()
            .filter(|r| r.enabled && r.source.has_resources())
            .map(|r| InventoryRemote {
                id: r.id.clone(),
                source: r.source.clone(),
            })
            .collect()
    }
}

/// What the loop is asked to do.
enum Command {
    /// Sent by collect-now: fetch these remotes (or all) now; `done` is answered when
    /// their lists are stored or their errors recorded.
    Refresh {
        target: Target,
        done: Option<oneshot::Sender<()>>,
    },
    /// Sent by a reload: these are the remotes from now on (new ones are fetched at once).
    SetRemotes(Vec<InventoryRemote>),
    /// Sent by a reload: the new refresh interval, counted from now.
    SetInterval(Duration),
    /// Sent by the daemon's shutdown: stop, abandoning fetches in flight.
    Stop(oneshot::Sender<()>),
}

/// The handle to the inventory: its cache and its background job.
#[derive(Clone)]
pub struct Inventory {
    cache: Arc<ResourceCache>,
    control: mpsc::Sender<Command>,
}

impl fmt::Debug for Inventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inventory")
            .field("remotes", &self.cache.all().len())
            .finish()
    }
}

impl Inventory {
    /// Starts the job for `remotes`, refreshing every `interval`, stamping lists with
    /// `clock`. The first fetch of every remote starts at once.
    pub fn start(
        remotes: Vec<InventoryRemote>,
        interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> Inventory {
        let cache = Arc::new(ResourceCache::default());
        let (control, commands) = mpsc::channel(16);
        let job = Job {
            cache: cache.clone(),
            clock,
            permits: Arc::new(Semaphore::new(MAX_PARALLEL_FETCHES)),
            remotes: Vec::new(),
            interval,
            fetches: JoinSet::new(),
        };
        tokio::spawn(job.run(commands, remotes));
        Inventory { cache, control }
    }

    /// The cache the job fills.
    pub fn cache(&self) -> &ResourceCache {
        &self.cache
    }

    /// One remote's cached list.
    pub fn get(&self, remote: &RemoteId) -> Option<RemoteResources> {
        self.cache.get(remote)
    }

    /// Fetches the lists of `target` now; with `wait`, returns once they are stored or
    /// their errors recorded. Remotes without a resource list are skipped.
    pub async fn refresh(&self, target: Target, wait: bool) {
        let (done, finished) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if self
            .control
            .send(Command::Refresh { target, done })
            .await
            .is_err()
        {
            return;
        }
        if let Some(finished) = finished {
            let _ = finished.await;
        }
    }

    /// Replaces the remotes (a reload): removed ones leave the cache, new ones are
    /// fetched at once.
    pub async fn set_remotes(&self, remotes: Vec<InventoryRemote>) {
        let _ = self.control.send(Command::SetRemotes(remotes)).await;
    }

    /// Changes the refresh interval; the next refresh is one interval from now.
    pub async fn set_interval(&self, interval: Duration) {
        let _ = self.control.send(Command::SetInterval(interval)).await;
    }

    /// Stops the job; fetches in flight are abandoned, the cache stays readable.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The loop's state.
struct Job {
    cache: Arc<ResourceCache>,
    clock: Arc<dyn Clock>,
    permits: Arc<Semaphore>,
    remotes: Vec<InventoryRemote>,
    interval: Duration,
    /// Rounds of fetches in flight (aborted when the loop ends).
    fetches: JoinSet<()>,
}

impl Job {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, remotes: Vec<InventoryRemote>) {
        self.set_remotes(remotes);
        let mut next = Instant::now() + self.interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    next = Instant::now() + self.interval;
                    let all = self.remotes.clone();
                    self.fetch(all, None);
                }
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Refresh { target, done }) => {
                        let chosen = self.chosen(&target);
                        self.fetch(chosen, done);
                    }
                    Some(Command::SetRemotes(remotes)) => self.set_remotes(remotes),
                    Some(Command::SetInterval(interval)) => {
                        self.interval = interval;
                        next = Instant::now() + interval;
                    }
                    Some(Command::Stop(stopped)) => {
                        self.fetches.abort_all();
                        let _ = stopped.send(());
                        break;
                    }
                },
                Some(_) = self.fetches.join_next(), if !self.fetches.is_empty() => {}
            }
        }
    }

    /// The remotes a refresh of `target` addresses.
    fn chosen(&self, target: &Target) -> Vec<InventoryRemote> {
        match target {
            Target::Remote(id) => self
                .remotes
                .iter()
                .filter(|r| &r.id == id)
                .cloned()
                .collect(),
            Target::All | Target::Interval(_) => self.remotes.clone(),
        }
    }

    /// Takes the new remote list; the remotes new to the cache are fetched at once.
    fn set_remotes(&mut self, remotes: Vec<InventoryRemote>) {
        let ids: Vec<RemoteId> = remotes.iter().map(|r| r.id.clone()).collect();
        let added = self.cache.track(&ids);
        self.remotes = remotes;
        let first = self
            .remotes
            .iter()
            .filter(|r| added.contains(&r.id))
            .cloned()
            .collect();
        self.fetch(first, None);
    }

    /// Starts one round: every remote of `remotes` fetched, a permit each; `done` is
    /// answered when the round is over.
    fn fetch(&mut self, remotes: Vec<InventoryRemote>, done: Option<oneshot::Sender<()>>) {
        let cache = self.cache.clone();
        let clock = self.clock.clone();
        let permits = self.permits.clone();
        self.fetches.spawn(async move {
            join_all(remotes.into_iter().map(|remote| {
                let (cache, clock, permits) = (cache.clone(), clock.clone(), permits.clone());
                async move {
                    let Ok(_permit) = permits.acquire_owned().await else {
                        return;
                    };
                    fetch_one(&cache, clock.as_ref(), &remote).await;
                }
            }))
            .await;
            if let Some(done) = done {
                let _ = done.send(());
            }
        });
    }
}

/// Fetches one remote's list into the cache, stamped with the time the reply arrived.
async fn fetch_one(cache: &ResourceCache, clock: &dyn Clock, remote: &InventoryRemote) {
    cache.started(&remote.id, clock.now_secs());
    let started = Instant::now();
    match remote.source.resources().await {
        Ok(list) => {
            tracing::debug!(remote = %remote.id, resources = list.len(),
                elapsed_ms = started.elapsed().as_millis() as u64, "resource list fetched");
            cache.fill(&remote.id, list, clock.now_secs());
        }
        Err(err) => {
            tracing::warn!(remote = %remote.id, error = %err, "resource list fetch failed; the previous list stays");
            cache.fail(&remote.id, &err);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use fleetpoll_actors::{
        Cursor, ErrorClass, MetricBatch, Resource, SourceError, TaskBatch, TaskQuery, TaskState,
        TokioClock,
    };

    use super::*;

    /// A remote whose resource list takes `delay` to arrive; fails while `failing`.
    #[derive(Debug, Default)]
    struct Slow {
        delay: Duration,
        calls: AtomicU32,
        failing: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl RemoteSource for Slow {
        async fn fetch_metrics(&self, _: Cursor) -> Result<MetricBatch, SourceError> {
            unreachable!("the inventory fetches no metrics")
        }
        async fn list_tasks(&self, _: &TaskQuery) -> Result<TaskBatch, SourceError> {
            unreachable!("the inventory lists no tasks")
        }
        async fn task_status(&self, _: &str) -> Result<TaskState, SourceError> {
            unreachable!("the inventory polls no task")
        }
        fn has_resources(&self) -> bool {
            true
        }
        async fn resources(&self) -> Result<Vec<Resource>, SourceError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(SourceError::new(ErrorClass::BadReply, "remote r: broken"));
            }
            Ok(vec![Resource::new(format!("qemu/{n}"), "qemu")])
        }
    }

    const T0: u64 = 1_800_000_000;

    fn start(sources: &[Arc<Slow>], interval: Duration) -> Inventory {
        let remotes = sources
            .iter()
            .enumerate()
            .map(|(i, s)| InventoryRemote {
                id: RemoteId::new(format!("r{i}")),
                source: s.clone(),
            })
            .collect();
        let clock = Arc::new(TokioClock::starting_at(Duration::from_secs(T0)));
        Inventory::start(remotes, interval, clock)
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_is_stamped_when_it_arrives_not_when_it_was_asked_for() {
        let slow = Arc::new(Slow {
            delay: Duration::from_secs(7),
            ..Slow::default()
        });
        let inventory = start(std::slice::from_ref(&slow), Duration::from_secs(900));
        settle().await;
        let r0 = RemoteId::new("r0");
        let asked = inventory.get(&r0).unwrap();
        assert_eq!(
            (asked.last_attempt, asked.filled_at),
            (Some(T0 as i64), None)
        );
        tokio::time::sleep(Duration::from_secs(8)).await;
        let filled = inventory.get(&r0).unwrap();
        assert_eq!(filled.filled_at, Some(T0 as i64 + 7));
        assert_eq!(filled.resources[0].id, "qemu/1");
    }

    #[tokio::test(start_paused = true)]
    async fn lists_refresh_every_interval_and_on_request_and_a_failure_keeps_the_list() {
        let slow = Arc::new(Slow::default());
        let inventory = start(std::slice::from_ref(&slow), Duration::from_secs(900));
        let r0 = RemoteId::new("r0");
        settle().await;
        assert_eq!(slow.calls.load(Ordering::SeqCst), 1, "fetched at start");
        tokio::time::sleep(Duration::from_secs(899)).await;
        assert_eq!(
            slow.calls.load(Ordering::SeqCst),
            1,
            "not before the interval"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(
            slow.calls.load(Ordering::SeqCst),
            2,
            "again after the interval"
        );
        inventory.refresh(Target::Remote(r0.clone()), true).await;
        assert_eq!(slow.calls.load(Ordering::SeqCst), 3, "and when asked");
        assert_eq!(inventory.get(&r0).unwrap().resources[0].id, "qemu/3");
        slow.failing.store(true, Ordering::SeqCst);
        inventory.refresh(Target::All, true).await;
        let kept = inventory.get(&r0).unwrap();
        assert_eq!(kept.resources[0].id, "qemu/3", "the old list stays");
        assert_eq!(
            kept.last_error.as_deref(),
            Some("bad_reply: remote r: broken")
        );
        inventory.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn fetches_are_bounded_and_removed_remotes_leave_the_cache() {
        let sources: Vec<Arc<Slow>> = (0..20)
            .map(|_| {
                Arc::new(Slow {
                    delay: Duration::from_secs(1),
                    ..Slow::default()
                })
            })
            .collect();
        let inventory = start(&sources, Duration::from_secs(900));
        let filled = || {
            inventory
                .cache()
                .all()
                .iter()
                .filter(|e| e.filled_at.is_some())
                .count()
        };
        // Each fetch takes a second: the first second fills as many as run at once.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(filled(), MAX_PARALLEL_FETCHES);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(filled(), 20);
        assert!(sources.iter().all(|s| s.calls.load(Ordering::SeqCst) == 1));
        assert_eq!(inventory.cache().all().len(), 20);
        inventory
            .set_remotes(vec![InventoryRemote {
                id: RemoteId::new("r3"),
                source: sources[3].clone(),
            }])
            .await;
        settle().await;
        let left: Vec<String> = inventory
            .cache()
            .all()
            .iter()
            .map(|e| e.remote.to_string())
            .collect();
        assert_eq!(left, ["r3"]);
    }
}
