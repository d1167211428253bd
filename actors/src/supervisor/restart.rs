//! OTP restart bookkeeping shared by both supervisors (ractor 0.16 has none built in;
//! the strategies themselves — one_for_one in `remote_supervisor.rs`, rest_for_one in
//! `top.rs` — live with the supervisors): restart types, restart intensity within a
//! period, restart delay with backoff, and the record that recognises events from an
//! old incarnation of a child.

use std::collections::VecDeque;
use std::time::Duration;

use ractor::{ActorCell, ActorId, SupervisionEvent};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::SupervisionSettings;
use crate::poller::doubled_up_to;

/// When a child that exited is started again (OTP's restart types). Every child the
/// engine starts today is permanent; the other two are kept for children that may end
/// (and are covered by the unit tests below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum Restart {
    /// Always restarted.
    Permanent,
    /// Restarted only after an abnormal exit (panic or error).
    Transient,
    /// Never restarted.
    Temporary,
}

/// How a child ended, as read from a supervision event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Stopped on request or returned normally.
    Normal(Option<String>),
    /// Panicked or returned an error; the text is kept for the status.
    Abnormal(String),
}

impl Exit {
    /// Reads the exit of a terminated or failed child; `None` for other events.
    pub(crate) fn from_event(event: &SupervisionEvent) -> Option<(ActorCell, Exit)> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                Some((cell.clone(), Exit::Normal(reason.clone())))
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                Some((cell.clone(), Exit::Abnormal(format!("{err:#}"))))
            }
            _ => None,
        }
    }

    /// Whether the exit was a failure.
    pub(crate) fn is_abnormal(&self) -> bool {
        matches!(self, Exit::Abnormal(_))
    }
}

/// What the supervisor does about an exited child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Start it again after the delay.
    Restart(Duration),
    /// Leave it stopped (temporary child, or a transient one that ended normally).
    Leave,
    /// It restarted too often within the period: give up on it (and escalate if the
    /// supervisor's policy says so).
    Exhausted,
}

/// The restart history of one child slot across its incarnations.
#[derive(Debug, Clone)]
pub(crate) struct ChildRecord {
    /// The restart type of the slot.
    pub(crate) restart: Restart,
    /// The id of the running incarnation; events from other ids are stale.
    pub(crate) current: Option<ActorId>,
    /// Restarts since the slot was created.
    pub(crate) restarts: u32,
    /// The last abnormal exit's text.
    pub(crate) last_error: Option<String>,
    /// Increases with every start; delayed restart messages carry it so a superseded
    /// one is ignored.
    pub(crate) generation: u64,
    recent: VecDeque<Instant>,
}

impl ChildRecord {
    /// A new slot of the given restart type.
    pub(crate) fn new(restart: Restart) -> Self {
        Self {
            restart,
            current: None,
            restarts: 0,
            last_error: None,
            generation: 0,
            recent: VecDeque::new(),
        }
    }

    /// Whether an event about `id` concerns the running incarnation.
    pub(crate) fn is_current(&self, id: ActorId) -> bool {
        self.current == Some(id)
    }

    /// Records a (re)start of the slot with the new incarnation's id.
    pub(crate) fn started(&mut self, id: ActorId) {
        self.current = Some(id);
        self.generation += 1;
    }

    /// Decides about an exit of the current incarnation and updates the history.
    pub(crate) fn on_exit(
        &mut self,
        exit: &Exit,
        settings: &SupervisionSettings,
        now: Instant,
    ) -> Decision {
        self.current = None;
        if let Exit::Abnormal(text) = exit {
            self.last_error = Some(text.clone());
        }
        let restart = match self.restart {
            Restart::Permanent => true,
            Restart::Transient => exit.is_abnormal(),
            Restart::Temporary => false,
        };
        if !restart {
            return Decision::Leave;
        }
        while let Some(first) = self.recent.front() {
            if now.duration_since(*first) > settings.period {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= settings.max_restarts as usize {
            return Decision::Exhausted;
        }
        self.recent.push_back(now);
        self.restarts += 1;
        let delay = doubled_up_to(
            settings.restart_delay_base,
            self.recent.len() as u32 - 1,
            settings.restart_delay_cap,
        );
        Decision::Restart(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SupervisionSettings {
        SupervisionSettings {
            max_restarts: 3,
            period: Duration::from_secs(30),
            restart_delay_base: Duration::from_millis(100),
            restart_delay_cap: Duration::from_millis(300),
            stop_timeout: Duration::from_secs(1),
            ..SupervisionSettings::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn intensity_is_counted_within_the_period_with_growing_delays() {
        let s = settings();
        let mut rec = ChildRecord::new(Restart::Permanent);
        let crash = Exit::Abnormal("boom".into());
        let now = Instant::now();
        assert_eq!(
            rec.on_exit(&crash, &s, now),
            Decision::Restart(Duration::from_millis(100))
        );
        assert_eq!(
            rec.on_exit(&crash, &s, now),
            Decision::Restart(Duration::from_millis(200))
        );
        assert_eq!(
            rec.on_exit(&crash, &s, now),
            Decision::Restart(Duration::from_millis(300))
        );
        assert_eq!(rec.on_exit(&crash, &s, now), Decision::Exhausted);
        assert_eq!(rec.last_error.as_deref(), Some("boom"));
        // Once the period has passed, the slate is clean again.
        let later = now + Duration::from_secs(31);
        assert_eq!(
            rec.on_exit(&crash, &s, later),
            Decision::Restart(Duration::from_millis(100))
        );
        assert_eq!(rec.restarts, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn restart_types_follow_otp() {
        let s = settings();
        let now = Instant::now();
        let normal = Exit::Normal(None);
        let crash = Exit::Abnormal("x".into());
        let mut t = ChildRecord::new(Restart::Transient);
        assert_eq!(t.on_exit(&normal, &s, now), Decision::Leave);
        assert!(matches!(t.on_exit(&crash, &s, now), Decision::Restart(_)));
        let mut tmp = ChildRecord::new(Restart::Temporary);
        assert_eq!(tmp.on_exit(&crash, &s, now), Decision::Leave);
        let mut p = ChildRecord::new(Restart::Permanent);
        assert!(matches!(p.on_exit(&normal, &s, now), Decision::Restart(_)));
    }
}
