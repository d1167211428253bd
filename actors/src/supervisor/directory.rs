//! The poller directory: which poller runs for each remote right now, kept by the
//! remote supervisor and read by the engine handle. A "collect now" of one remote goes
//! straight to its poller with it, instead of queueing in the supervisor's mailbox
//! behind the status updates of every poll of a running cycle.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use ractor::ActorRef;

use crate::model::RemoteId;
use crate::poller::PollerMsg;

/// The running poller of each remote. Only the remote supervisor writes it: a remote
/// whose poller is restarting, has failed, or is draining is not listed, so that a
/// trigger of it takes the supervisor's path and hears why not.
#[derive(Debug, Default)]
pub(crate) struct PollerDirectory {
    pollers: RwLock<HashMap<RemoteId, ActorRef<PollerMsg>>>,
}

impl PollerDirectory {
    /// The running poller of `remote`, if it is listed.
    pub(crate) fn get(&self, remote: &RemoteId) -> Option<ActorRef<PollerMsg>> {
        let pollers = self.pollers.read().unwrap_or_else(PoisonError::into_inner);
        pollers.get(remote).cloned()
    }

    pub(crate) fn insert(&self, remote: RemoteId, poller: ActorRef<PollerMsg>) {
        let mut pollers = self.pollers.write().unwrap_or_else(PoisonError::into_inner);
        pollers.insert(remote, poller);
    }

    pub(super) fn remove(&self, remote: &RemoteId) {
        let mut pollers = self.pollers.write().unwrap_or_else(PoisonError::into_inner);
        pollers.remove(remote);
    }

    pub(super) fn clear(&self) {
        let mut pollers = self.pollers.write().unwrap_or_else(PoisonError::into_inner);
        pollers.clear();
    }
}
