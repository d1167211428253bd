//! In-memory stores and an instrumented fake remote, for the engine's tests and the
//! `engine` benchmark (compiled with the `test-util` feature only). They implement the
//! same traits as the real parts; nothing here touches the network or the disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::model::{
    Cursor, MetricBatch, MetricKind, MetricPoint, RemoteId, SeriesKey, TaskBatch, TaskQuery,
    TaskRecord, TaskRef, TaskState, UnixTime,
};
use crate::source::{ErrorClass, RemoteSource, SourceError};
use crate::storage::{MetricStore, MetricWrite, StoreError, TaskStore, TaskWrite};

/// Above this many queued storage writes a poll keeps its connection permit until its
/// batch is stored (tests check the bound it gives).
pub const BACKLOG_LIMIT: usize = crate::storage::BACKLOG_LIMIT;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which request a fake source saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `fetch_metrics`.
    Metrics,
    /// `list_tasks`.
    Tasks,
    /// `task_status`.
    TaskStatus,
}

/// One request as a fake source saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The remote asked.
    pub remote: RemoteId,
    /// The request.
    pub kind: CallKind,
    /// Wall-clock time of the start (the engine's clock).
    pub wall: Duration,
    /// Tokio time of the start.
    pub at: Instant,
}

/// Shared instrument of a fleet of fake sources: every call, and the connections in
/// flight globally and per remote (with their maxima), measured on the source side.
#[derive(Debug, Default)]
pub struct Probe {
    calls: Mutex<Vec<Call>>,
    flight: Mutex<Flight>,
}

#[derive(Debug, Default)]
struct Flight {
    global: u32,
    max_global: u32,
    per_remote: HashMap<RemoteId, u32>,
    max_per_remote: HashMap<RemoteId, u32>,
}

impl Probe {
    /// A new probe.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// Calls of one kind to one remote.
    pub fn calls_to(&self, remote: &str, kind: CallKind) -> Vec<Call> {
        lock(&self.calls)
            .iter()
            .filter(|c| c.remote.as_str() == remote && c.kind == kind)
            .cloned()
            .collect()
    }

    /// The most connections that were in flight at once, over all remotes.
    pub fn max_in_flight(&self) -> u32 {
        lock(&self.flight).max_global
    }

    /// Connections in flight now.
    pub fn in_flight(&self) -> u32 {
        lock(&self.flight).global
    }

    /// The most connections one remote had in flight at once.
    pub fn max_in_flight_of(&self, remote: &str) -> u32 {
        lock(&self.flight)
            .max_per_remote
            .get(&RemoteId::new(remote))
            .copied()
            .unwrap_or(0)
    }

    fn enter(&self, remote: &RemoteId, kind: CallKind, connections: u32, wall: Duration) {
        lock(&self.calls).push(Call {
            remote: remote.clone(),
            kind,
            wall,
            at: Instant::now(),
        });
        let mut f = lock(&self.flight);
        f.global += connections;
        f.max_global = f.max_global.max(f.global);
        let now = {
            let n = f.per_remote.entry(remote.clone()).or_default();
            *n += connections;
            *n
        };
        let m = f.max_per_remote.entry(remote.clone()).or_default();
        *m = (*m).max(now);
    }

    fn leave(&self, remote: &RemoteId, connections: u32) {
        let mut f = lock(&self.flight);
        f.global -= connections;
        if let Some(n) = f.per_remote.get_mut(remote) {
            *n -= connections;
        }
    }
}

struct FlightGuard<'a> {
    probe: &'a Probe,
    remote: &'a RemoteId,
    connections: u32,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.probe.leave(self.remote, self.connections);
    }
}

/// A remote that answers after a latency with one point per poll, and can be told to
/// fail, panic or hang.
#[derive(Debug)]
pub struct FakeSource {
    id: RemoteId,
    connections: u32,
    latency_ms: AtomicU64,
    fail_next: AtomicU32,
    fail_class: Mutex<ErrorClass>,
    panic_next: AtomicU32,
    net_in: std::sync::atomic::AtomicBool,
    probe: Arc<Probe>,
    clock: Arc<dyn Clock>,
    tasks: Mutex<Vec<TaskRecord>>,
    task_states: Mutex<HashMap<String, TaskState>>,
}

impl FakeSource {
    /// A fake remote reporting to `probe`, stamping points with `clock`.
    pub fn new(id: &str, probe: Arc<Probe>, clock: Arc<dyn Clock>) -> Self {
        Self {
            id: RemoteId::new(id),
            connections: 1,
            latency_ms: AtomicU64::new(0),
            fail_next: AtomicU32::new(0),
            fail_class: Mutex::new(ErrorClass::Unreachable),
            panic_next: AtomicU32::new(0),
            net_in: Default::default(),
            probe,
            clock,
            tasks: Mutex::new(Vec::new()),
            task_states: Mutex::new(HashMap::new()),
        }
    }

    /// Uses `n` connections per poll.
    pub fn with_connections(mut self, n: u32) -> Self {
        self.connections = n;
        self
    }

    /// Answers after `latency`.
    pub fn with_latency(self, latency: Duration) -> Self {
        self.set_latency(latency);
        self
    }

    /// Changes the latency of later requests.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// The next `n` requests fail with `class`.
    pub fn fail_next(&self, n: u32, class: ErrorClass) {
        *lock(&self.fail_class) = class;
        self.fail_next.store(n, Ordering::Relaxed);
    }

    /// The next `n` requests panic after their latency (crashing the poller).
    pub fn panic_next(&self, n: u32) {
        self.panic_next.store(n, Ordering::Relaxed);
    }

    /// Every poll also reports a derive `net_in` growing by 1000 per second (its value is
    /// the point's timestamp × 1000).
    pub fn emit_net_in(&self) {
        self.net_in.store(true, Ordering::Relaxed);
    }

    /// Sets the task list the remote reports.
    pub fn set_tasks(&self, tasks: Vec<TaskRecord>) {
        *lock(&self.tasks) = tasks;
    }

    /// Sets the state `task_status` reports for a UPID.
    pub fn set_task_state(&self, upid: &str, state: TaskState) {
        lock(&self.task_states).insert(upid.to_string(), state);
    }

    async fn answer(&self, kind: CallKind) -> Result<(), SourceError> {
        let connections = if kind == CallKind::TaskStatus {
            1
        } else {
            self.connections
        };
        self.probe
            .enter(&self.id, kind, connections, self.clock.now());
        let _guard = FlightGuard {
            probe: &self.probe,
            remote: &self.id,
            connections,
        };
        let latency = self.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if self
            .panic_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("fake source {} was told to panic", self.id);
        }
        if self
            .fail_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            let class = *lock(&self.fail_class);
            return Err(SourceError::new(
                class,
                format!("{} is told to fail", self.id),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl RemoteSource for FakeSource {
    fn metric_connections(&self) -> u32 {
        self.connections
    }

    fn task_connections(&self) -> u32 {
        self.connections
    }

    async fn fetch_metrics(&self, since: Cursor) -> Result<MetricBatch, SourceError> {
        self.answer(CallKind::Metrics).await?;
        let now = self.clock.now_secs();
        let ts = since.0.map_or(now, |c| now.max(c + 1));
        let mut batch = MetricBatch {
            series: vec![SeriesKey {
                entity: "node/fake".into(),
                metric: "cpu_current".into(),
                kind: MetricKind::Gauge,
            }],
            points: vec![MetricPoint {
                series: 0,
                timestamp: ts,
                value: 0.5,
            }],
            dropped_future: 0,
        };
        if self.net_in.load(Ordering::Relaxed) {
            batch.series.push(SeriesKey {
                entity: "node/fake".into(),
                metric: "net_in".into(),
                kind: MetricKind::Derive,
            });
            batch.points.push(MetricPoint {
                series: 1,
                timestamp: ts,
                value: ts as f64 * 1000.0,
            });
        }
        Ok(batch)
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskBatch, SourceError> {
        self.answer(CallKind::Tasks).await?;
        let tasks: Vec<TaskRecord> = lock(&self.tasks)
            .iter()
            .filter(|t| !query.running_only || t.is_running())
            .cloned()
            .collect();
        let mut nodes: Vec<String> = tasks.iter().map(|t| t.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        Ok(TaskBatch {
            tasks,
            complete_nodes: nodes,
        })
    }

    async fn task_status(&self, upid: &str) -> Result<TaskState, SourceError> {
        self.answer(CallKind::TaskStatus).await?;
        Ok(lock(&self.task_states)
            .get(upid)
            .cloned()
            .unwrap_or(TaskState::Running))
    }
}

/// What the memory metric store holds of one remote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredRemote {
    /// The newest stored timestamp.
    pub cursor: Cursor,
    /// Points stored.
    pub points: u64,
    /// Batches stored.
    pub batches: u64,
}

/// Metric store in memory, with knobs to fail, panic or be slow.
#[derive(Debug, Default)]
pub struct MemoryMetricStore {
    data: Mutex<HashMap<RemoteId, StoredRemote>>,
    fail_next: AtomicU32,
    panic_next: AtomicU32,
    commits: AtomicU64,
    groups: AtomicU64,
    write_delay_ms: AtomicU64,
}

impl MemoryMetricStore {
    /// Each write group takes this long (blocking, as a disk would).
    pub fn set_write_delay(&self, delay: Duration) {
        self.write_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Pretends the remote was collected up to `ts` before the engine started.
    pub fn seed_cursor(&self, remote: &str, ts: UnixTime) {
        lock(&self.data)
            .entry(RemoteId::new(remote))
            .or_default()
            .cursor = Cursor(Some(ts));
    }

    /// What is stored of a remote.
    pub fn stored(&self, remote: &str) -> StoredRemote {
        lock(&self.data)
            .get(&RemoteId::new(remote))
            .cloned()
            .unwrap_or_default()
    }

    /// Total points stored.
    pub fn total_points(&self) -> u64 {
        lock(&self.data).values().map(|r| r.points).sum()
    }

    /// The next `n` writes fail.
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::Relaxed);
    }

    /// The next `n` write groups panic.
    pub fn panic_next(&self, n: u32) {
        self.panic_next.store(n, Ordering::Relaxed);
    }

    /// How often `commit` ran.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// How many write groups arrived.
    pub fn groups(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }
}

impl MetricStore for MemoryMetricStore {
    fn store_metrics(&self, writes: &[MetricWrite]) -> Vec<Result<Cursor, StoreError>> {
        self.groups.fetch_add(1, Ordering::Relaxed);
        if self
            .panic_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("memory store was told to panic");
        }
        let delay = self.write_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            #[allow(clippy::disallowed_methods)]
            // reason: models a blocking disk write inside spawn_blocking
            std::thread::sleep(Duration::from_millis(delay));
        }
        let mut data = lock(&self.data);
        writes
            .iter()
            .map(|w| {
                if self
                    .fail_next
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Err(StoreError(format!(
                        "memory store was told to fail the write of {}",
                        w.remote
                    )));
                }
                let r = data.entry(w.remote.clone()).or_default();
                let newer = w
                    .batch
                    .points
                    .iter()
                    .filter(|p| r.cursor.0.is_none_or(|c| p.timestamp > c))
                    .count();
                r.points += newer as u64;
                r.batches += 1;
                r.cursor = r.cursor.advance(w.batch.newest());
                Ok(r.cursor)
            })
            .collect()
    }

    fn cursor(&self, remote: &RemoteId) -> Cursor {
        lock(&self.data)
            .get(remote)
            .map(|r| r.cursor)
            .unwrap_or_default()
    }

    fn commit(&self) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Task cache in memory.
#[derive(Debug, Default)]
pub struct MemoryTaskStore {
    write_delay_ms: AtomicU64,
    tasks: Mutex<HashMap<RemoteId, BTreeMap<String, TaskRecord>>>,
    tracked: Mutex<Vec<TaskRef>>,
    rotations: Mutex<Vec<UnixTime>>,
    journal_applies: AtomicU64,
    backfill_secs: i64,
}

impl MemoryTaskStore {
    /// An empty cache backfilling 7 days.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            backfill_secs: 7 * 24 * 3600,
            ..Self::default()
        })
    }

    /// The tasks cached for a remote.
    pub fn tasks_of(&self, remote: &str) -> Vec<TaskRecord> {
        lock(&self.tasks)
            .get(&RemoteId::new(remote))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Each task write takes this long (blocking, as a disk would).
    pub fn set_write_delay(&self, delay: Duration) {
        self.write_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// How many tasks are cached over all remotes.
    pub fn total_tasks(&self) -> usize {
        lock(&self.tasks).values().map(BTreeMap::len).sum()
    }

    /// The `now` of every rotation check.
    pub fn rotation_checks(&self) -> Vec<UnixTime> {
        lock(&self.rotations).clone()
    }

    /// How often the journal was applied.
    pub fn journal_applies(&self) -> u64 {
        self.journal_applies.load(Ordering::Relaxed)
    }
}

impl TaskStore for MemoryTaskStore {
    fn store_tasks(&self, writes: &[TaskWrite]) -> Vec<Result<(), StoreError>> {
        let delay = self.write_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            #[allow(clippy::disallowed_methods)]
            // reason: models a blocking disk write inside spawn_blocking
            std::thread::sleep(Duration::from_millis(delay));
        }
        let mut tasks = lock(&self.tasks);
        writes
            .iter()
            .map(|w| {
                let m = tasks.entry(w.remote.clone()).or_default();
                for t in &w.batch.tasks {
                    m.insert(t.upid.clone(), t.clone());
                }
                Ok(())
            })
            .collect()
    }

    fn task_query(&self, remote: &RemoteId, now: UnixTime) -> TaskQuery {
        let tasks = lock(&self.tasks);
        let mut cutoffs = BTreeMap::new();
        if let Some(m) = tasks.get(remote) {
            for t in m.values() {
                let c = cutoffs.entry(t.node.clone()).or_insert(t.start_time);
                if t.is_running() {
                    *c = (*c).min(t.start_time);
                }
            }
        }
        TaskQuery {
            cutoffs,
            default_since: now - self.backfill_secs,
            ..TaskQuery::default()
        }
    }

    fn has_running(&self, remote: &RemoteId) -> bool {
        lock(&self.tasks)
            .get(remote)
            .is_some_and(|m| m.values().any(TaskRecord::is_running))
    }

    fn rotate(&self, now: UnixTime) -> Result<bool, StoreError> {
        lock(&self.rotations).push(now);
        Ok(false)
    }

    fn apply_journal(&self) -> Result<(), StoreError> {
        self.journal_applies.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn save_tracked(&self, tracked: &[TaskRef]) -> Result<(), StoreError> {
        *lock(&self.tracked) = tracked.to_vec();
        Ok(())
    }

    fn load_tracked(&self) -> Vec<TaskRef> {
        lock(&self.tracked).clone()
    }
}

/// Waits (in paused time) until `cond` holds, failing the test after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The hook seam without the rest of the engine, for benchmarks of a hook: batches
/// published here go through the same feed, dispatcher, rates, queue and runner as
/// the batches the Storage actor stores.
#[derive(Debug)]
pub struct HookHarness {
    live: Arc<crate::storage::LiveFeed>,
    bus: Arc<crate::hooks::HookBus>,
    supervisor: ractor::ActorRef<crate::hooks::HooksMsg>,
}

impl HookHarness {
    /// Starts the hook supervisor with one hook registered under `name`.
    pub async fn start(
        name: &str,
        hook: Box<dyn crate::hooks::Hook>,
        options: crate::hooks::HookOptions,
        clock: Arc<dyn Clock>,
    ) -> HookHarness {
        let live = crate::storage::LiveFeed::new(4096, 250_000);
        let bus: Arc<crate::hooks::HookBus> = Arc::default();
        bus.register(name, hook, options).expect("one hook");
        let args = crate::hooks::HooksArgs {
            bus: bus.clone(),
            live: live.clone(),
            supervision: crate::config::SupervisionSettings::default(),
            env: crate::env::Env {
                clock,
                rng: Arc::new(crate::clock::ThreadRandomness),
                stats: Arc::default(),
                #[cfg(feature = "fault-injection")]
                panics: None,
            },
        };
        let (supervisor, _) = ractor::Actor::spawn(None, crate::hooks::HookSupervisor, args)
            .await
            .expect("the hook supervisor starts");
        HookHarness {
            live,
            bus,
            supervisor,
        }
    }

    /// Publishes a batch as the Storage actor does once the store acknowledged it.
    pub fn publish(&self, remote: RemoteId, batch: Arc<MetricBatch>) {
        let cursor = crate::model::Cursor(batch.newest());
        self.live.publish(remote, batch, cursor);
    }

    /// The hook's queue and counters.
    pub fn status(&self) -> crate::hooks::HookStatus {
        self.bus.status().remove(0)
    }

    /// Stops the hook (its `on_stop` runs).
    pub async fn stop(self) {
        self.supervisor.stop_and_wait(None, None).await.ok();
    }
}
