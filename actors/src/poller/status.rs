//! What the engine reports about each remote: the poller's state, its timestamps, its
//! last error and its backoff, kept by the remote supervisor from the pollers' updates.

use serde::{Deserialize, Serialize};

use std::time::Duration;

use super::outcome::CollectError;
use crate::model::{Cursor, RemoteId, RemoteKind, UnixTime};
use crate::source::ErrorClass;

/// The state of one remote's collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollState {
    /// Not collected yet since the poller started.
    Pending,
    /// The last collection succeeded.
    Ok,
    /// The last collection failed and a retry is running now.
    Failing,
    /// The last collection failed; the next attempt waits for `next_attempt`.
    Backoff,
    /// The poller crashed more often than the restart intensity allows and was given up.
    Failed,
    /// The remote is disabled in the config.
    Disabled,
    /// Nothing uses the remote's metrics (no local store, rule, exporter or hook): they
    /// are not polled; its tasks are.
    Unused,
}

/// Everything the status shows about one remote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteStatus {
    /// The remote.
    pub remote: RemoteId,
    /// Its kind.
    pub kind: RemoteKind,
    /// Where its collection stands.
    pub state: PollState,
    /// When the last successful metric collection finished (Unix seconds).
    pub last_success: Option<UnixTime>,
    /// When the last metric collection started (Unix seconds).
    pub last_attempt: Option<UnixTime>,
    /// The last failure's text (never containing a secret).
    pub last_error: Option<String>,
    /// The last failure's class.
    pub last_error_class: Option<ErrorClass>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// When the next retry is due, while in backoff (Unix seconds).
    pub next_attempt: Option<UnixTime>,
    /// How long the last collection took, from lease to stored, in milliseconds.
    pub last_duration_ms: Option<u64>,
    /// The newest stored data point (the cursor).
    pub newest_datapoint: Option<UnixTime>,
    /// Points stored since the poller started.
    pub points_stored: u64,
    /// Points the remote sent dated more than a minute past the request (dropped, so
    /// that one future point cannot block every later one), since the poller started.
    pub future_points_dropped: u64,
    /// When the last task-list fetch succeeded (Unix seconds).
    pub tasks_last_success: Option<UnixTime>,
    /// The last task-list fetch error.
    pub tasks_last_error: Option<String>,
    /// How often the poller was restarted after a crash.
    pub restarts: u32,
}

impl RemoteStatus {
    /// The status of a remote whose poller has not reported yet.
    pub fn pending(remote: RemoteId, kind: RemoteKind) -> Self {
        Self {
            remote,
            kind,
            state: PollState::Pending,
            last_success: None,
            last_attempt: None,
            last_error: None,
            last_error_class: None,
            consecutive_failures: 0,
            next_attempt: None,
            last_duration_ms: None,
            newest_datapoint: None,
            points_stored: 0,
            future_points_dropped: 0,
            tasks_last_success: None,
            tasks_last_error: None,
            restarts: 0,
        }
    }

    /// A metric batch was stored at `now`: the remote is ok, its failures are over.
    pub(crate) fn record_stored(
        &mut self,
        now: UnixTime,
        cursor: Cursor,
        points: usize,
        took: Option<Duration>,
    ) {
        self.state = PollState::Ok;
        self.last_success = Some(now);
        self.consecutive_failures = 0;
        self.next_attempt = None;
        self.last_error = None;
        self.last_error_class = None;
        self.newest_datapoint = cursor.0;
        self.points_stored += points as u64;
        self.last_duration_ms = took.map(|d| d.as_millis() as u64);
    }

    /// A metric collection failed at `now`; the next attempt waits `delay`.
    pub(crate) fn record_failure(
        &mut self,
        now: UnixTime,
        err: &CollectError,
        class: ErrorClass,
        failures: u32,
        delay: Duration,
        took: Option<Duration>,
    ) {
        self.state = PollState::Backoff;
        self.last_error = Some(err.to_string());
        self.last_error_class = Some(class);
        self.consecutive_failures = failures;
        self.next_attempt = Some(now + delay.as_secs_f64().ceil() as i64);
        self.last_duration_ms = took.map(|d| d.as_millis() as u64);
    }

    /// A task-list fetch ended at `now`, with its error if it failed.
    pub(crate) fn record_tasks(&mut self, now: UnixTime, err: Option<&CollectError>) {
        match err {
            None => {
                self.tasks_last_success = Some(now);
                self.tasks_last_error = None;
            }
            Some(err) => self.tasks_last_error = Some(err.to_string()),
        }
    }
}
