//! The RateLimiter actor: a global connection cap and a per-remote cap, granted as
//! leases in FIFO order with a priority lane for manual triggers.
//!
//! Scheduled requests share `global_connections − manual_reserve` connections. Manual
//! requests are served first, within `global_connections`, and once that is used up may
//! use the [`Burst`]: `manual_burst` connections beyond the global cap, so a "collect
//! now" does not wait for a scheduled poll to end. The total is therefore at most
//! `global_connections + manual_burst`. While the global cap is used up and no manual
//! request waits here, a poller takes a burst permit itself, without a trip through this
//! actor's mailbox (which a busy cycle fills), and tells the limiter afterwards so that
//! the remote's own cap still counts it; manual requests waiting here are granted from
//! the burst too when it has room.
//!
//! A lease is returned by message (the [`Lease`] guard sends it when dropped, so a
//! poller that panics returns its leases as its state unwinds) and is reclaimed when
//! its deadline passes or its holder is reported gone. A burst permit a poller took
//! itself goes back to the burst the moment its lease is dropped: the poller's fetch
//! task or job holds it, and both end with the poller. A large request at the head of a
//! lane may be passed by smaller ones for `head_wait_limit`; after that the limiter holds
//! capacity back until it fits, so neither large nor small requests starve.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort};
use tokio::time::Instant;

use crate::config::LimitSettings;
use crate::model::RemoteId;

/// Which queue a request waits in. Manual requests are always served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// Caused by a manual trigger ("collect now").
    Manual,
    /// Caused by the scheduler or a retry.
    Scheduled,
}

/// Callback that hands a granted lease to its requester (usually a message send).
pub(crate) type GrantFn = Box<dyn FnOnce(Lease) + Send>;

/// The manual burst of one limiter incarnation: how many permits it has and how many
/// are out. Atomics, so that a poller can take a permit without asking the limiter.
#[derive(Debug, Default)]
pub(crate) struct Burst {
    cap: AtomicU32,
    used: AtomicU32,
    /// Leases pollers took themselves (the limiter's books do not list them).
    direct: AtomicU32,
    /// Whether a poller may take permits itself: the limiter sets it after each message
    /// when the global cap is used up and no manual request waits with it (so that
    /// a trigger stays within the global cap while there is room, and does not pass
    /// triggers queued before it).
    open: AtomicBool,
}

impl Burst {
    /// Takes `permits` if they fit under the cap.
    fn take(&self, permits: u32) -> bool {
        let cap = self.cap.load(Ordering::Acquire);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(permits).filter(|&n| n <= cap)
            })
            .is_ok()
    }

    fn give_back(&self, permits: u32) {
        self.used.fetch_sub(permits, Ordering::AcqRel);
    }

    fn used(&self) -> u32 {
        self.used.load(Ordering::Acquire)
    }

    /// Permits still free.
    fn room(&self) -> u32 {
        self.cap.load(Ordering::Acquire).saturating_sub(self.used())
    }

    /// No more permits, for good: its limiter is gone.
    pub(crate) fn close(&self) {
        self.open.store(false, Ordering::Release);
        self.cap.store(0, Ordering::Release);
    }
}

/// What a poller holds of the limiter: its mailbox, and its burst to take from directly.
#[derive(Debug, Clone)]
pub(crate) struct LimiterRef {
    /// The limiter actor.
    pub(crate) actor: ActorRef<LimiterMsg>,
    /// Its manual burst.
    pub(crate) burst: Arc<Burst>,
}

impl LimiterRef {
    /// Sends `msg` to the limiter; a limiter that is gone (shutdown, restart) is ignored.
    pub(crate) fn send(&self, msg: LimiterMsg) {
        let _ = self.actor.send_message(msg);
    }

    /// `permits` connections to `remote` from the burst for a manual request, granted at
    /// once; `None` when the burst has no room or the global cap has (then ask the
    /// limiter). The caller has
    /// checked the remote's own cap against everything it holds or waits for.
    pub(crate) fn take_burst(&self, remote: &RemoteId, permits: u32) -> Option<Lease> {
        if !self.burst.open.load(Ordering::Acquire) || !self.burst.take(permits) {
            return None;
        }
        self.burst.direct.fetch_add(1, Ordering::AcqRel);
        // Counted against the remote's cap before any later request of its poller.
        self.send(LimiterMsg::BurstTaken {
            remote: remote.clone(),
            permits,
        });
        Some(Lease {
            permits,
            back: Back::Burst {
                limiter: self.clone(),
                remote: remote.clone(),
            },
        })
    }
}

/// Permits held by one poller. Dropping the lease returns the permits.
pub(crate) struct Lease {
    permits: u32,
    back: Back,
}

/// Where a lease's permits go back to.
enum Back {
    /// Granted by the limiter: returned by message.
    Limiter {
        id: u64,
        limiter: ActorRef<LimiterMsg>,
    },
    /// Taken from the burst by the poller: back to the burst at once; the limiter is
    /// told so that it counts the remote's connections and serves a waiting trigger.
    Burst {
        limiter: LimiterRef,
        remote: RemoteId,
    },
}

impl Lease {
    /// How many connections this lease allows.
    pub(crate) fn permits(&self) -> u32 {
        self.permits
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Lease");
        match &self.back {
            Back::Limiter { id, .. } => d.field("id", id),
            Back::Burst { .. } => d.field("burst", &true),
        };
        d.field("permits", &self.permits).finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The limiter may already be gone (shutdown); then there is nothing to return.
        match &self.back {
            Back::Limiter { id, limiter } => {
                let _ = limiter.send_message(LimiterMsg::Release { lease: *id });
            }
            Back::Burst { limiter, remote } => {
                limiter.burst.give_back(self.permits);
                limiter.burst.direct.fetch_sub(1, Ordering::AcqRel);
                limiter.send(LimiterMsg::BurstReturned {
                    remote: remote.clone(),
                    permits: self.permits,
                });
            }
        }
    }
}

/// One permit request.
pub(crate) struct Acquire {
    /// Who asks; its death reclaims what it holds and cancels what it waits for.
    pub(crate) holder: ActorCell,
    /// The holder's own number for this request (to cancel or promote it).
    pub(crate) ticket: u64,
    /// The remote the connections go to.
    pub(crate) remote: RemoteId,
    /// The remote's own cap.
    pub(crate) remote_cap: u32,
    /// How many connections are wanted (clamped to both caps).
    pub(crate) permits: u32,
    /// Which queue to wait in.
    pub(crate) lane: Lane,
    /// Wait at the head of that queue (a job continuing one that just ended there).
    pub(crate) first: bool,
    /// Called with the lease once granted.
    pub(crate) grant: GrantFn,
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("holder", &self.holder.get_id())
            .field("ticket", &self.ticket)
            .field("remote", &self.remote)
            .field("permits", &self.permits)
            .field("lane", &self.lane)
            .finish()
    }
}

/// What the limiter holds and queues right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimiterSnapshot {
    /// Permits currently leased.
    pub in_use: u32,
    /// The global cap.
    pub global_cap: u32,
    /// Requests waiting in the manual lane.
    pub queued_manual: usize,
    /// Requests waiting in the scheduled lane.
    pub queued_scheduled: usize,
    /// Leases currently out.
    pub leases: usize,
    /// Leases reclaimed because their deadline passed or their holder died.
    pub reclaimed: u64,
    /// Leases granted since start (a burst permit a poller took itself included).
    pub granted: u64,
    /// Of `in_use`, the permits taken from the manual burst, beyond the global cap.
    pub burst_in_use: u32,
}

/// Messages of the RateLimiter.
#[derive(Debug)]
pub(crate) enum LimiterMsg {
    /// A poller asks for permits; the grant arrives through its callback.
    Acquire(Acquire),
    /// The poller no longer wants the request `ticket` (stopped, superseded).
    Cancel {
        /// The requester.
        holder: ActorId,
        /// Its request number.
        ticket: u64,
    },
    /// A manual trigger arrived for a request already waiting in the scheduled lane.
    Promote {
        /// The requester.
        holder: ActorId,
        /// Its request number.
        ticket: u64,
    },
    /// Sent by a dropped [`Lease`]: the permits are free again.
    Release {
        /// The lease's id.
        lease: u64,
    },
    /// A poller took burst permits itself ([`LimiterRef::take_burst`]).
    BurstTaken {
        /// The remote the connections go to.
        remote: RemoteId,
        /// How many.
        permits: u32,
    },
    /// Those permits went back to the burst.
    BurstReturned {
        /// The remote.
        remote: RemoteId,
        /// How many.
        permits: u32,
    },
    /// The remote supervisor saw this actor die: reclaim its leases and requests now.
    HolderGone(ActorId),
    /// Self-sent on a cadence: reclaim overdue leases and leases of dead holders.
    Sweep,
    /// A config reload changed the caps or deadlines.
    Reconfigure(LimitSettings),
    /// Reply with a snapshot of the limiter's books.
    Snapshot(RpcReplyPort<LimiterSnapshot>),
}

struct Pending {
    req: Acquire,
    enqueued: Instant,
}

struct Active {
    remote: RemoteId,
    permits: u32,
    /// How many of the permits came from the burst, not from the global cap.
    burst: u32,
    holder: ActorCell,
    deadline: Instant,
}

/// Start arguments of the RateLimiter.
#[derive(Debug)]
pub(crate) struct LimiterArgs {
    /// Caps and deadlines.
    pub(crate) settings: LimitSettings,
    /// This incarnation's burst, shared with the pollers.
    pub(crate) burst: Arc<Burst>,
}

/// State of the RateLimiter.
pub(crate) struct LimiterState {
    settings: LimitSettings,
    burst: Arc<Burst>,
    manual: VecDeque<Pending>,
    scheduled: VecDeque<Pending>,
    active: HashMap<u64, Active>,
    per_remote: HashMap<RemoteId, u32>,
    in_use: u32,
    next_lease: u64,
    reclaimed: u64,
    granted: u64,
}

impl fmt::Debug for LimiterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterState")
            .field("in_use", &self.in_use)
            .field("global_cap", &self.settings.global_connections)
            .field("queued_manual", &self.manual.len())
            .field("queued_scheduled", &self.scheduled.len())
            .finish()
    }
}

/// The RateLimiter actor.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter;

/// The sweep cadence: often enough that a dead holder's permits return quickly.
fn sweep_period(settings: &LimitSettings) -> Duration {
    (settings.lease_deadline / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

impl Actor for RateLimiter {
    type Msg = LimiterMsg;
    type State = LimiterState;
    type Arguments = LimiterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        LimiterArgs { settings, burst }: LimiterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(sweep_period(&settings), || LimiterMsg::Sweep);
        burst.cap.store(settings.manual_burst, Ordering::Release);
        Ok(LimiterState {
            settings,
            burst,
            manual: VecDeque::new(),
            scheduled: VecDeque::new(),
            active: HashMap::new(),
            per_remote: HashMap::new(),
            in_use: 0,
            next_lease: 1,
            reclaimed: 0,
            granted: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LimiterMsg::Acquire(mut req) => {
                req.permits = req
                    .permits
                    .clamp(1, req.remote_cap.max(1))
                    .min(state.settings.global_connections);
                let pending = Pending {
                    req,
                    enqueued: Instant::now(),
                };
                let queue = match pending.req.lane {
                    Lane::Manual => &mut state.manual,
                    Lane::Scheduled => &mut state.scheduled,
                };
                if pending.req.first {
                    queue.push_front(pending);
                } else {
                    queue.push_back(pending);
                }
            }
            LimiterMsg::Cancel { holder, ticket } => {
                let matches =
                    |p: &Pending| p.req.holder.get_id() == holder && p.req.ticket == ticket;
                state.manual.retain(|p| !matches(p));
                state.scheduled.retain(|p| !matches(p));
            }
            LimiterMsg::Promote { holder, ticket } => {
                if let Some(pos) = state
                    .scheduled
                    .iter()
                    .position(|p| p.req.holder.get_id() == holder && p.req.ticket == ticket)
                {
                    if let Some(mut p) = state.scheduled.remove(pos) {
                        p.req.lane = Lane::Manual;
                        state.manual.push_back(p);
                    }
                }
            }
            LimiterMsg::Release { lease } => {
                state.release(lease);
            }
            LimiterMsg::BurstTaken { remote, permits } => {
                // Frees nothing: no pump.
                *state.per_remote.entry(remote).or_default() += permits;
                state.granted += 1;
                return Ok(());
            }
            LimiterMsg::BurstReturned { remote, permits } => state.unheld(&remote, permits),
            LimiterMsg::HolderGone(holder) => {
                state.reclaim_holder(holder);
            }
            LimiterMsg::Sweep => state.sweep(),
            LimiterMsg::Reconfigure(settings) => {
                state
                    .burst
                    .cap
                    .store(settings.manual_burst, Ordering::Release);
                state.settings = settings;
            }
            LimiterMsg::Snapshot(reply) => {
                let _ = reply.send(state.snapshot());
                return Ok(());
            }
        }
        state.pump(&myself);
        let full = state.in_use >= state.lane_cap(Lane::Manual);
        (state.burst.open).store(full && state.manual.is_empty(), Ordering::Release);
        Ok(())
    }
}

impl LimiterState {
    fn snapshot(&self) -> LimiterSnapshot {
        let burst = self.burst.used();
        LimiterSnapshot {
            in_use: self.in_use + burst,
            global_cap: self.settings.global_connections,
            queued_manual: self.manual.len(),
            queued_scheduled: self.scheduled.len(),
            leases: self.active.len() + self.burst.direct.load(Ordering::Acquire) as usize,
            reclaimed: self.reclaimed,
            granted: self.granted,
            burst_in_use: burst,
        }
    }

    fn release(&mut self, lease: u64) -> bool {
        let Some(a) = self.active.remove(&lease) else {
            // Already reclaimed (deadline or holder death): nothing to return twice.
            return false;
        };
        self.burst.give_back(a.burst);
        self.in_use -= a.permits - a.burst;
        self.unheld(&a.remote, a.permits);
        true
    }

    /// `remote` holds `permits` fewer connections.
    fn unheld(&mut self, remote: &RemoteId, permits: u32) {
        if let Some(held) = self.per_remote.get_mut(remote) {
            *held = held.saturating_sub(permits);
            if *held == 0 {
                self.per_remote.remove(remote);
            }
        }
    }

    fn reclaim_holder(&mut self, holder: ActorId) {
        let leases: Vec<u64> = self
            .active
            .iter()
            .filter(|(_, a)| a.holder.get_id() == holder)
            .map(|(id, _)| *id)
            .collect();
        for id in leases {
            if self.release(id) {
                self.reclaimed += 1;
                tracing::warn!(lease = id, holder = %holder, "lease reclaimed: its holder is gone");
            }
        }
        self.manual.retain(|p| p.req.holder.get_id() != holder);
        self.scheduled.retain(|p| p.req.holder.get_id() != holder);
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let overdue: Vec<(u64, bool)> = self
            .active
            .iter()
            .filter_map(|(id, a)| {
                let dead = matches!(
                    a.holder.get_status(),
                    ActorStatus::Stopped | ActorStatus::Stopping
                );
                (dead || a.deadline <= now).then_some((*id, dead))
            })
            .collect();
        for (id, dead) in overdue {
            if self.release(id) {
                self.reclaimed += 1;
                if dead {
                    tracing::warn!(lease = id, "lease reclaimed: its holder stopped");
                } else {
                    tracing::warn!(lease = id, "lease reclaimed: its deadline passed");
                }
            }
        }
        let alive = |p: &Pending| {
            !matches!(
                p.req.holder.get_status(),
                ActorStatus::Stopped | ActorStatus::Stopping
            )
        };
        self.manual.retain(alive);
        self.scheduled.retain(alive);
    }

    /// Grants whatever fits, manual lane first, each lane in arrival order; a manual
    /// request takes what the global cap has no room for from the burst. A
    /// request blocked only by its own remote's cap never holds up others; one blocked
    /// by the cap of its lane is passed by smaller requests until it has waited
    /// `head_wait_limit`, then capacity is held back for it.
    fn pump(&mut self, myself: &ActorRef<LimiterMsg>) {
        let now = Instant::now();
        for lane in [Lane::Manual, Lane::Scheduled] {
            let mut i = 0;
            let cap = self.lane_cap(lane);
            loop {
                let free = cap.saturating_sub(self.in_use);
                let room = match lane {
                    Lane::Manual => self.burst.room(),
                    Lane::Scheduled => 0,
                };
                if free == 0 && room == 0 {
                    return;
                }
                let queue = match lane {
                    Lane::Manual => &self.manual,
                    Lane::Scheduled => &self.scheduled,
                };
                let Some(p) = queue.get(i) else { break };
                let held = self.per_remote.get(&p.req.remote).copied().unwrap_or(0);
                if held + p.req.permits > p.req.remote_cap.max(1) {
                    i += 1;
                    continue;
                }
                // What the global cap has no room for comes from the burst.
                let from_burst = p.req.permits.saturating_sub(free);
                if from_burst > 0 && (from_burst > room || !self.burst.take(from_burst)) {
                    if now.duration_since(p.enqueued) >= self.settings.head_wait_limit {
                        // Hold back what frees up until this request fits.
                        return;
                    }
                    i += 1;
                    continue;
                }
                let queue = match lane {
                    Lane::Manual => &mut self.manual,
                    Lane::Scheduled => &mut self.scheduled,
                };
                let Some(p) = queue.remove(i) else { break };
                self.grant(myself, p.req, from_burst, now);
            }
        }
    }

    /// The most connections of the global cap in use after a grant in `lane`.
    fn lane_cap(&self, lane: Lane) -> u32 {
        let s = &self.settings;
        match lane {
            Lane::Manual => s.global_connections,
            Lane::Scheduled => s.global_connections.saturating_sub(s.manual_reserve),
        }
    }

    /// Grants `req`, `burst` of its permits taken from the burst already.
    fn grant(&mut self, myself: &ActorRef<LimiterMsg>, req: Acquire, burst: u32, now: Instant) {
        let id = self.next_lease;
        self.next_lease += 1;
        self.in_use += req.permits - burst;
        *self.per_remote.entry(req.remote.clone()).or_default() += req.permits;
        // A reload may have lowered the cap below what is in use: then all from the burst.
        debug_assert!(burst == req.permits || self.in_use <= self.lane_cap(Lane::Manual));
        self.granted += 1;
        self.active.insert(
            id,
            Active {
                remote: req.remote,
                permits: req.permits,
                burst,
                holder: req.holder,
                deadline: now + self.settings.lease_deadline,
            },
        );
        let lease = Lease {
            permits: req.permits,
            back: Back::Limiter {
                id,
                limiter: myself.clone(),
            },
        };
        // If the holder is gone the lease is dropped with the failed message and
        // returns itself through `Release`.
        (req.grant)(lease);
    }
}

#[cfg(test)]
mod tests;
