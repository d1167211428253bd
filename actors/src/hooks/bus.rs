//! The hook bus: the registry of hooks (which outlives the hook actors' restarts), each
//! hook's bounded queue with its counters, and the fan-out of stored batches (with their
//! rates) and status changes into every queue.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ractor::ActorRef;

use super::hook::{Hook, HookBatch, HookOptions, HookStatus, StatusChange};
use super::rates::RateTracker;
use super::runner::RunnerMsg;
use crate::storage::StoredBatch;

/// One event in a hook's queue.
#[derive(Debug)]
pub(crate) enum HookEvent {
    /// A stored batch.
    Batch(HookBatch),
    /// A remote's status changed.
    Status(StatusChange),
}

impl HookEvent {
    /// What the event counts against the queue bound.
    fn weight(&self) -> usize {
        match self {
            HookEvent::Batch(b) => b.len().max(1),
            HookEvent::Status(_) => 1,
        }
    }
}

/// The hook object, shared by its runner's incarnations: a restart after a panic hands
/// the same object to the new runner.
pub(crate) type SharedHook = Arc<tokio::sync::Mutex<Box<dyn Hook>>>;

/// One registered hook: its object, queue and counters.
pub(crate) struct HookSlot {
    /// Unique per registration (a hook removed and added again under the same name is
    /// a new slot).
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) hook: SharedHook,
    pub(crate) tick_every: Option<Duration>,
    options: HookOptions,
    queue: Mutex<Queue>,
    delivered_batches: AtomicU64,
    delivered_points: AtomicU64,
    delivered_status: AtomicU64,
    dropped_batches: AtomicU64,
    dropped_points: AtomicU64,
    errors: AtomicU64,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Arc<HookEvent>>,
    points: usize,
    /// A wake-up is on its way to the runner, or it is draining.
    scheduled: bool,
    runner: Option<ActorRef<RunnerMsg>>,
}

struct Health {
    state: &'static str,
    restarts: u32,
    last_error: Option<String>,
}

impl fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookSlot")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HookSlot {
    fn push(&self, event: &Arc<HookEvent>) {
        let mut q = locked(&self.queue);
        q.points += event.weight();
        q.events.push_back(event.clone());
        while q.events.len() > 1 && q.points > self.options.queue_max_points {
            let Some(old) = q.events.pop_front() else {
                break;
            };
            q.points -= old.weight();
            if let HookEvent::Batch(b) = &*old {
                self.dropped_batches.fetch_add(1, Ordering::Relaxed);
                self.dropped_points
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        }
        wake(&mut q);
    }

    /// The next event for the runner; `None` ends its drain (the next push wakes it).
    pub(crate) fn pop(&self) -> Option<Arc<HookEvent>> {
        let mut q = locked(&self.queue);
        match q.events.pop_front() {
            Some(event) => {
                q.points -= event.weight();
                Some(event)
            }
            None => {
                q.scheduled = false;
                None
            }
        }
    }

    /// A runner incarnation takes over the queue and is woken if events wait.
    pub(crate) fn attach(&self, runner: ActorRef<RunnerMsg>) {
        let mut q = locked(&self.queue);
        q.runner = Some(runner);
        q.scheduled = false;
        wake(&mut q);
        self.set_state("running");
    }

    /// The runner is gone; events queue up until the next one attaches.
    pub(crate) fn detach(&self) {
        let mut q = locked(&self.queue);
        q.runner = None;
        q.scheduled = false;
    }

    /// Counts an event the hook handled, with its error if it returned one.
    pub(crate) fn handled(&self, event: &HookEvent, error: Option<String>) {
        match event {
            HookEvent::Batch(b) => {
                self.delivered_batches.fetch_add(1, Ordering::Relaxed);
                self.delivered_points
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
            }
            HookEvent::Status(_) => {
                self.delivered_status.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(text) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            locked(&self.health).last_error = Some(text);
        }
    }

    /// Counts a failed tick.
    pub(crate) fn tick_failed(&self, text: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        locked(&self.health).last_error = Some(text);
    }

    pub(crate) fn set_state(&self, state: &'static str) {
        locked(&self.health).state = state;
    }

    /// Records a crash of the runner.
    pub(crate) fn crashed(&self, text: String, restarts: u32) {
        let mut health = locked(&self.health);
        health.last_error = Some(text);
        health.restarts = restarts;
    }

    pub(crate) fn status(&self) -> HookStatus {
        let (queued_events, queued_points) = {
            let q = locked(&self.queue);
            (q.events.len(), q.points)
        };
        let health = locked(&self.health);
        HookStatus {
            name: self.name.clone(),
            state: health.state.to_string(),
            queued_events,
            queued_points,
            delivered_batches: self.delivered_batches.load(Ordering::Relaxed),
            delivered_points: self.delivered_points.load(Ordering::Relaxed),
            delivered_status: self.delivered_status.load(Ordering::Relaxed),
            dropped_batches: self.dropped_batches.load(Ordering::Relaxed),
            dropped_points: self.dropped_points.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            restarts: health.restarts,
            last_error: health.last_error.clone(),
        }
    }
}

fn wake(q: &mut Queue) {
    if q.scheduled || q.events.is_empty() {
        return;
    }
    if let Some(runner) = &q.runner {
        q.scheduled = runner.send_message(RunnerMsg::Wake).is_ok();
    }
}

/// The registry and fan-out of one engine's hooks.
#[derive(Debug, Default)]
pub(crate) struct HookBus {
    slots: Mutex<Vec<Arc<HookSlot>>>,
    next_id: AtomicU64,
    rates: Mutex<RateTracker>,
}

/// A hook of that name is registered already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DuplicateHook(pub(crate) String);

impl HookBus {
    /// Registers a hook; its runner starts when the hook supervisor syncs.
    pub(crate) fn register(
        &self,
        name: &str,
        hook: Box<dyn Hook>,
        options: HookOptions,
    ) -> Result<Arc<HookSlot>, DuplicateHook> {
        let mut slots = locked(&self.slots);
        if slots.iter().any(|s| s.name == name) {
            return Err(DuplicateHook(name.to_string()));
        }
        let slot = Arc::new(HookSlot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            name: name.to_string(),
            tick_every: hook.tick_every(),
            hook: Arc::new(tokio::sync::Mutex::new(hook)),
            options,
            queue: Mutex::new(Queue::default()),
            delivered_batches: AtomicU64::new(0),
            delivered_points: AtomicU64::new(0),
            delivered_status: AtomicU64::new(0),
            dropped_batches: AtomicU64::new(0),
            dropped_points: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            health: Mutex::new(Health {
                state: "starting",
                restarts: 0,
                last_error: None,
            }),
        });
        slots.push(slot.clone());
        Ok(slot)
    }

    /// Unregisters a hook; its runner stops when the hook supervisor syncs. Whether it
    /// was registered.
    pub(crate) fn unregister(&self, name: &str) -> bool {
        let mut slots = locked(&self.slots);
        let before = slots.len();
        slots.retain(|s| s.name != name);
        slots.len() != before
    }

    /// The registered hooks, in registration order.
    pub(crate) fn slots(&self) -> Vec<Arc<HookSlot>> {
        locked(&self.slots).clone()
    }

    /// Every hook's status, in registration order.
    pub(crate) fn status(&self) -> Vec<HookStatus> {
        self.slots().iter().map(|s| s.status()).collect()
    }

    /// Hands a stored batch, with its rates, to every hook.
    pub(crate) fn dispatch_batch(&self, stored: &StoredBatch) {
        let slots = self.slots();
        if slots.is_empty() {
            return;
        }
        let rates = locked(&self.rates).rates(&stored.remote, &stored.batch);
        let event = Arc::new(HookEvent::Batch(HookBatch::new(
            stored.seq,
            stored.remote.clone(),
            stored.batch.clone(),
            stored.stored_at,
            rates,
        )));
        for slot in &slots {
            slot.push(&event);
        }
    }

    /// Hands a status change to every hook.
    pub(crate) fn dispatch_status(&self, change: StatusChange) {
        if change.status.is_none() {
            locked(&self.rates).forget(&change.remote);
        }
        let slots = self.slots();
        if slots.is_empty() {
            return;
        }
        let event = Arc::new(HookEvent::Status(change));
        for slot in &slots {
            slot.push(&event);
        }
    }

    /// The feed moved on faster than the dispatcher read it: `batches` were never seen
    /// by any hook; they count as dropped by each.
    pub(crate) fn lagged(&self, batches: u64) {
        for slot in self.slots() {
            slot.dropped_batches.fetch_add(batches, Ordering::Relaxed);
        }
    }
}
