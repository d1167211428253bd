//! Recovery after a local outage. When every remote fails at once, the likely cause is
//! on our side (the manager's own network, a firewall, DNS), not in a thousand remotes,
//! and the per-remote backoff — sensible for one broken remote — would leave the whole
//! fleet waiting up to the backoff cap after the network returns. So while every remote
//! is failing, and at least one of them as unreachable or timed out, the supervisor
//! probes one "canary" remote at a time on a short fixed period, without backoff; the
//! first remote that answers ends the outage, and every poller's backoff is reset so the
//! fleet is collected again at once.
//!
//! [`OutageWatch`] is the bookkeeping: it classifies each remote from its reported
//! status and keeps counts, so each status update costs O(1) whatever the fleet size.

use std::collections::HashMap;

use crate::model::RemoteId;
use crate::poller::{PollState, RemoteStatus};
use crate::source::ErrorClass;

/// How one remote counts towards an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Collected, or not tried yet: the fleet is not known to be down.
    Healthy,
    /// Its last collection failed; `network` when unreachable or timed out.
    Failing { network: bool },
    /// Disabled, unused or given up: it says nothing about the network.
    Excluded,
}

impl Health {
    fn of(status: &RemoteStatus) -> Health {
        match status.state {
            PollState::Ok | PollState::Pending => Health::Healthy,
            PollState::Failing | PollState::Backoff => Health::Failing {
                network: matches!(
                    status.last_error_class,
                    Some(ErrorClass::Unreachable | ErrorClass::Timeout)
                ),
            },
            PollState::Failed | PollState::Disabled | PollState::Unused => Health::Excluded,
        }
    }
}

/// What an observation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Nothing the supervisor acts on.
    None,
    /// Every remote is failing now: start probing canaries.
    Began,
    /// A remote answered during an outage: reset every backoff.
    Ended,
}

/// The outage bookkeeping of one remote supervisor.
#[derive(Debug, Default)]
pub(crate) struct OutageWatch {
    health: HashMap<RemoteId, Health>,
    healthy: usize,
    failing: usize,
    network: usize,
    active: bool,
    /// Where the canary rotation continues in the supervisor's remote order.
    next_canary: usize,
    /// Numbers the probe timers; a timer of an ended outage is ignored.
    generation: u64,
}

impl OutageWatch {
    /// Whether an outage is in progress.
    pub(crate) fn active(&self) -> bool {
        self.active
    }

    /// The number of the current outage's probe timers.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes a remote's new status into account.
    pub(crate) fn observe(&mut self, status: &RemoteStatus) -> Transition {
        let now = Health::of(status);
        let before = self.health.insert(status.remote.clone(), now);
        if let Some(before) = before {
            self.count(before, false);
        }
        self.count(now, true);
        self.evaluate()
    }

    /// A remote left the config.
    pub(crate) fn forget(&mut self, id: &RemoteId) -> Transition {
        if let Some(before) = self.health.remove(id) {
            self.count(before, false);
        }
        self.evaluate()
    }

    /// The next remote to probe: the next one in `order`, after the last canary, that
    /// is failing as unreachable or timed out (those a local outage explains).
    pub(crate) fn next_canary(&mut self, order: &[RemoteId]) -> Option<RemoteId> {
        let n = order.len();
        for step in 0..n {
            let at = (self.next_canary + step) % n;
            let id = &order[at];
            if self.health.get(id) == Some(&Health::Failing { network: true }) {
                self.next_canary = at + 1;
                return Some(id.clone());
            }
        }
        None
    }

    fn count(&mut self, health: Health, add: bool) {
        let counter = match health {
            Health::Healthy => &mut self.healthy,
            Health::Failing { .. } => &mut self.failing,
            Health::Excluded => return,
        };
        if add {
            *counter += 1;
        } else {
            *counter -= 1;
        }
        if health == (Health::Failing { network: true }) {
            if add {
                self.network += 1;
            } else {
                self.network -= 1;
            }
        }
    }

    fn evaluate(&mut self) -> Transition {
        // One remote failing alone is that remote's problem, however it fails.
        let down = self.healthy == 0 && self.failing >= 2 && self.network >= 1;
        match (self.active, down) {
            (false, true) => {
                self.active = true;
                self.generation += 1;
                Transition::Began
            }
            (true, false) => {
                self.active = false;
                self.generation += 1;
                if self.healthy > 0 {
                    Transition::Ended
                } else {
                    // The failing remotes left the config or were given up: nothing
                    // answered, so no backoff is reset.
                    Transition::None
                }
            }
            _ => Transition::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RemoteKind;

    fn status(id: &str, state: PollState, class: Option<ErrorClass>) -> RemoteStatus {
        let mut s = RemoteStatus::pending(id.into(), RemoteKind::Pve);
        s.state = state;
        s.last_error_class = class;
        s
    }

    fn down(id: &str) -> RemoteStatus {
        status(id, PollState::Backoff, Some(ErrorClass::Unreachable))
    }

    #[test]
    fn an_outage_begins_when_the_last_remote_fails_and_ends_when_one_answers() {
        let mut w = OutageWatch::default();
        for id in ["a", "b", "c"] {
            assert_eq!(
                w.observe(&status(id, PollState::Pending, None)),
                Transition::None
            );
        }
        assert_eq!(w.observe(&down("a")), Transition::None);
        assert_eq!(w.observe(&down("b")), Transition::None);
        assert!(!w.active());
        assert_eq!(w.observe(&down("c")), Transition::Began);
        assert!(w.active());
        // Retrying, still failing: no new transition.
        assert_eq!(
            w.observe(&status("b", PollState::Failing, Some(ErrorClass::Timeout))),
            Transition::None
        );
        let generation = w.generation();
        assert_eq!(
            w.observe(&status("b", PollState::Ok, None)),
            Transition::Ended
        );
        assert!(!w.active());
        assert_ne!(w.generation(), generation, "the probe timers must stop");
    }

    #[test]
    fn failures_that_a_network_outage_does_not_explain_start_no_probing() {
        let mut w = OutageWatch::default();
        for id in ["a", "b"] {
            let s = status(id, PollState::Backoff, Some(ErrorClass::Auth));
            assert_eq!(w.observe(&s), Transition::None);
        }
        assert!(!w.active());
        // One remote alone is never an outage.
        let mut single = OutageWatch::default();
        assert_eq!(single.observe(&down("a")), Transition::None);
        assert!(!single.active());
    }

    #[test]
    fn excluded_remotes_do_not_count_and_removal_without_an_answer_resets_nothing() {
        let mut w = OutageWatch::default();
        w.observe(&status("off", PollState::Disabled, None));
        w.observe(&status("gone", PollState::Failed, None));
        w.observe(&down("a"));
        assert_eq!(w.observe(&down("b")), Transition::Began);
        assert_eq!(w.forget(&"a".into()), Transition::None);
        assert!(!w.active(), "one failing remote left is not an outage");
    }

    #[test]
    fn canaries_rotate_over_the_unreachable_remotes() {
        let mut w = OutageWatch::default();
        let order: Vec<RemoteId> = ["a", "b", "c", "d"].map(RemoteId::from).to_vec();
        w.observe(&down("a"));
        w.observe(&status("b", PollState::Backoff, Some(ErrorClass::Auth)));
        w.observe(&down("c"));
        w.observe(&down("d"));
        let picked: Vec<String> = (0..5)
            .map(|_| w.next_canary(&order).unwrap().to_string())
            .collect();
        assert_eq!(picked, ["a", "c", "d", "a", "c"]);
    }
}
