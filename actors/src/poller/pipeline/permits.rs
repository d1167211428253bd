//! How a job of the pipeline gets its connections: from the limiter, waiting in its
//! lane, or — for a manual job while `global_connections` is used up — from the burst
//! at once, without a trip through the limiter's mailbox.

use ractor::ActorRef;

use super::PollerState;
use crate::limiter::{Acquire, Lane, LimiterMsg};
use crate::poller::actor::PollerMsg;
use crate::poller::jobs::{slot_index, JobKind, Phase, Step};

impl PollerState {
    /// The connections a job of `kind` asks for, as the limiter clamps them.
    pub(super) fn permits_for(&self, kind: JobKind, follow_up: bool) -> u32 {
        let wanted = match kind {
            JobKind::Tracked => 1,
            JobKind::Metrics => self.source.metric_connections(),
            // A follow-up takes over the poll's connections, and no more: its node
            // lists then come one after another over the connection already open.
            JobKind::Tasks if follow_up => self
                .source
                .task_connections()
                .min(self.source.metric_connections()),
            JobKind::Tasks => self.source.task_connections(),
        };
        wanted.clamp(1, self.connection_cap.max(1))
    }

    /// Asks the limiter for the lease of the job of `kind` (waiting for it), or starts
    /// the job at once on burst permits if it is manual and the burst has room.
    pub(super) fn acquire(&mut self, myself: &ActorRef<PollerMsg>, kind: JobKind) {
        if self.start_with_burst(myself, kind) {
            return;
        }
        let Some(follow_up) = self.slots[slot_index(kind)]
            .current
            .as_ref()
            .map(|j| j.follow_up)
        else {
            return;
        };
        let permits = self.permits_for(kind, follow_up);
        let Some(job) = self.slots[slot_index(kind)].current.as_mut() else {
            return;
        };
        job.permits = permits;
        let seq = job.seq;
        let me = myself.clone();
        self.limiter.send(LimiterMsg::Acquire(Acquire {
            holder: myself.get_cell(),
            ticket: seq,
            remote: self.id.clone(),
            remote_cap: self.connection_cap,
            permits,
            lane: job.lane,
            first: job.follow_up,
            grant: Box::new(move |lease| {
                let _ = me.send_message(PollerMsg::Step {
                    kind,
                    seq,
                    step: Step::Granted(lease),
                });
            }),
        }));
    }

    /// Starts the manual job of `kind` that waits for a lease on permits of the burst,
    /// without a trip through the limiter's mailbox (which a running cycle keeps busy):
    /// "collect now" then reaches the remote at once. Only when the remote's own cap has
    /// room for these permits beside every other job's of this poller, fetching or
    /// waiting; false (nothing done) otherwise or when the burst is used up.
    pub(super) fn start_with_burst(&mut self, myself: &ActorRef<PollerMsg>, kind: JobKind) -> bool {
        let idx = slot_index(kind);
        let Some(job) = &self.slots[idx].current else {
            return false;
        };
        if job.lane != Lane::Manual || job.phase != Phase::WaitingLease {
            return false;
        }
        let permits = self.permits_for(kind, job.follow_up);
        let others: u32 = (self.slots.iter().enumerate())
            .filter(|(i, _)| *i != idx)
            .filter_map(|(_, slot)| slot.current.as_ref())
            .filter(|j| j.phase != Phase::Delaying)
            .map(|j| j.permits)
            .sum();
        if others + permits > self.connection_cap.max(1) {
            return false;
        }
        let Some(lease) = self.limiter.take_burst(&self.id, permits) else {
            return false;
        };
        let seq = job.seq;
        if let Some(job) = self.slots[idx].current.as_mut() {
            job.permits = permits;
        }
        self.start_fetch(myself, kind, seq, lease);
        true
    }
}
