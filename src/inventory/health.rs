//! A remote's health as the reference manager's dashboard shows it: `error` when it
//! cannot be collected (its poller is failing, backing off or given up) or its last
//! resource-list fetch failed; `warning` when its resource list shows a node offline or
//! a datastore more than [`DATASTORE_WARNING_SHARE`] used; else `good`.

use fleetpoll_actors::{PollState, RemoteStatus};
use serde::Serialize;

use super::cache::RemoteResources;

/// A datastore used beyond this share of its size is a warning (the reference
/// manager's 80 %).
pub const DATASTORE_WARNING_SHARE: f64 = 0.8;

/// Good, warning or error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Collected, and nothing in its inventory needs attention.
    Good,
    /// Collected, but a node is offline or a datastore is nearly full.
    Warning,
    /// Not collected: unreachable, refused, or answering what cannot be read.
    Error,
}

impl Health {
    /// The name the API writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Good => "good",
            Health::Warning => "warning",
            Health::Error => "error",
        }
    }
}

/// A health and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// Good, warning or error.
    pub health: Health,
    /// Why it is not good (the root cause of an error, what a warning is about).
    pub reason: Option<String>,
}

/// The health of a remote from its status and its cached resource list (none: the
/// remote has no inventory, or it is off).
pub fn assess(status: &RemoteStatus, resources: Option<&RemoteResources>) -> HealthReport {
    let report = |health, reason: Option<String>| HealthReport { health, reason };
    if matches!(
        status.state,
        PollState::Failing | PollState::Backoff | PollState::Failed
    ) {
        let why = status
            .last_error
            .clone()
            .unwrap_or_else(|| "the remote cannot be collected".into());
        return report(Health::Error, Some(why));
    }
    let Some(inventory) = resources else {
        return report(Health::Good, None);
    };
    if let Some(err) = &inventory.last_error {
        return report(Health::Error, Some(format!("resource list: {err}")));
    }
    let mut warnings = Vec::new();
    for r in inventory.resources.iter() {
        match r.resource_type.as_str() {
            "node" if r.status.as_deref() == Some("offline") => {
                let name = r.node.as_deref().or(r.name.as_deref()).unwrap_or(&r.id);
                warnings.push(format!("node {name} is offline"));
            }
            "datastore" => {
                if let (Some(used), Some(total)) = (r.disk, r.maxdisk) {
                    let share = used as f64 / total as f64;
                    if total > 0 && share > DATASTORE_WARNING_SHARE {
                        let name = r.name.as_deref().unwrap_or(&r.id);
                        warnings.push(format!("datastore {name} is {:.0} % full", share * 100.0));
                    }
                }
            }
            _ => {}
        }
    }
    if warnings.is_empty() {
        report(Health::Good, None)
    } else {
        report(Health::Warning, Some(warnings.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fleetpoll_actors::{RemoteId, RemoteKind, Resource};

    use super::*;

    fn status(state: PollState) -> RemoteStatus {
        let mut s = RemoteStatus::pending(RemoteId::new("r"), RemoteKind::Pve);
        s.state = state;
        s
    }

    fn inventory(resources: Vec<Resource>, error: Option<&str>) -> RemoteResources {
        RemoteResources {
            remote: RemoteId::new("r"),
            resources: Arc::from(resources),
            filled_at: Some(1),
            last_attempt: Some(1),
            last_error: error.map(str::to_string),
            last_error_class: None,
        }
    }

    fn node(name: &str, status: &str) -> Resource {
        let mut r = Resource::new(format!("node/{name}"), "node");
        r.node = Some(name.into());
        r.status = Some(status.into());
        r
    }

    fn datastore(used: u64, total: u64) -> Resource {
        let mut r = Resource::new("datastore/store1", "datastore");
        r.name = Some("store1".into());
        (r.disk, r.maxdisk) = (Some(used), Some(total));
        r
    }

    #[test]
    fn a_remote_that_cannot_be_collected_is_an_error_with_its_cause() {
        for state in [PollState::Failing, PollState::Backoff, PollState::Failed] {
            let mut s = status(state);
            s.last_error = Some("unreachable: no node could be reached".into());
            let h = assess(&s, Some(&inventory(vec![node("n1", "online")], None)));
            assert_eq!(h.health, Health::Error);
            assert_eq!(h.reason.as_deref(), s.last_error.as_deref());
        }
    }

    #[test]
    fn a_failed_resource_fetch_is_an_error() {
        let h = assess(
            &status(PollState::Ok),
            Some(&inventory(Vec::new(), Some("bad_reply: x"))),
        );
        assert_eq!(h.health, Health::Error);
        assert_eq!(h.reason.as_deref(), Some("resource list: bad_reply: x"));
    }

    #[test]
    fn an_offline_node_is_a_warning() {
        let list = vec![node("n1", "online"), node("n2", "offline")];
        let h = assess(&status(PollState::Ok), Some(&inventory(list, None)));
        assert_eq!(h.health, Health::Warning);
        assert_eq!(h.reason.as_deref(), Some("node n2 is offline"));
    }

    #[test]
    fn a_datastore_above_80_percent_is_a_warning_and_at_80_it_is_not() {
        let at = assess(
            &status(PollState::Ok),
            Some(&inventory(vec![datastore(80, 100)], None)),
        );
        assert_eq!(at.health, Health::Good);
        let above = assess(
            &status(PollState::Ok),
            Some(&inventory(vec![datastore(81, 100)], None)),
        );
        assert_eq!(above.health, Health::Warning);
        assert_eq!(
            above.reason.as_deref(),
            Some("datastore store1 is 81 % full")
        );
        let empty = assess(
            &status(PollState::Ok),
            Some(&inventory(vec![datastore(0, 0)], None)),
        );
        assert_eq!(empty.health, Health::Good);
    }

    #[test]
    fn a_collected_remote_with_a_quiet_inventory_or_none_is_good() {
        for state in [
            PollState::Ok,
            PollState::Pending,
            PollState::Disabled,
            PollState::Unused,
        ] {
            assert_eq!(assess(&status(state), None).health, Health::Good);
            let quiet = inventory(vec![node("n1", "online"), datastore(10, 100)], None);
            assert_eq!(
                assess(&status(state), Some(&quiet)),
                HealthReport {
                    health: Health::Good,
                    reason: None
                }
            );
        }
    }
}
