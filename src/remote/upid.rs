//! UPIDs, the unique task ids of Proxmox VE and Proxmox Backup Server: parsing,
//! validation and formatting back to exactly the text the remote wrote.

use std::fmt;
use std::str::FromStr;

use fleetpoll_actors::UnixTime;

/// A parsed UPID.
///
/// PVE form: `UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type}:{id}:{user}:`.
/// PBS form: the same with the task id (8–16 hex digits) before `starttime`.
/// Formatting a parsed UPID gives back the exact input text, because the parser accepts
/// only the canonical spelling (upper-case hex, no superfluous leading zeros).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Upid {
    /// The node that runs the task.
    pub node: String,
    /// Process id of the worker.
    pub pid: u32,
    /// Start time of the worker process in clock ticks since boot (may exceed 32 bits).
    pub pstart: u64,
    /// The PBS task counter; `None` for a PVE UPID.
    pub task_id: Option<u64>,
    /// When the task started.
    pub starttime: UnixTime,
    /// The task type (`vzdump`, `qmstart`, `garbage_collection`, …); never empty.
    pub worker_type: String,
    /// The object the task works on; may be empty.
    pub worker_id: String,
    /// Who started the task (`root@pam`, `user@realm!token`).
    pub user: String,
}

/// Why a text is not a valid UPID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid UPID {text:?}: {problem}")]
pub struct UpidError {
    /// The rejected text (UPIDs carry no secrets).
    pub text: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Upid {
    /// Whether this is the PBS form (with a task id).
    pub fn is_pbs(&self) -> bool {
        self.task_id.is_some()
    }

    /// Parses a UPID in either form.
    pub fn parse(text: &str) -> Result<Upid, UpidError> {
        let fail = |problem: String| UpidError {
            text: text.to_string(),
            problem,
        };
        let body = text
            .strip_prefix("UPID:")
            .ok_or_else(|| fail("does not start with 'UPID:'".into()))?;
        let body = body
            .strip_suffix(':')
            .ok_or_else(|| fail("does not end with ':'".into()))?;
        let fields: Vec<&str> = body.split(':').collect();
        let (node, pid, pstart, task_id, starttime, worker_type, worker_id, user) =
            match fields.as_slice() {
                [n, p, ps, st, ty, id, u] => (*n, *p, *ps, None, *st, *ty, *id, *u),
                [n, p, ps, tid, st, ty, id, u] => (*n, *p, *ps, Some(*tid), *st, *ty, *id, *u),
                _ => {
                    return Err(fail(format!(
                    "has {} fields between 'UPID:' and the final ':'; expected 7 (PVE) or 8 (PBS)",
                    fields.len()
                )))
                }
            };
        if node.is_empty()
            || !node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(fail(format!(
                "node name {node:?} is empty or has characters other than letters, digits, '-', '.', '_'"
            )));
        }
        let pid = hex_field("pid", pid, 8, 8).map_err(&fail)? as u32;
        let pstart = hex_field("pstart", pstart, 8, 9).map_err(&fail)?;
        let task_id = match task_id {
            Some(t) => Some(hex_field("task id", t, 8, 16).map_err(&fail)?),
            None => None,
        };
        let starttime = hex_field("starttime", starttime, 8, 8).map_err(&fail)? as UnixTime;
        if worker_type.is_empty() {
            return Err(fail("task type is empty".into()));
        }
        for (name, value) in [
            ("task type", worker_type),
            ("task id", worker_id),
            ("user", user),
        ] {
            if value.chars().any(char::is_whitespace) {
                return Err(fail(format!("{name} {value:?} contains whitespace")));
            }
        }
        if user.is_empty() {
            return Err(fail("user is empty".into()));
        }
        Ok(Upid {
            node: node.to_string(),
            pid,
            pstart,
            task_id,
            starttime,
            worker_type: worker_type.to_string(),
            worker_id: worker_id.to_string(),
            user: user.to_string(),
        })
    }
}

/// Parses an upper-case hex field of `min..=max` digits written without superfluous
/// leading zeros beyond `min` (so that formatting with `{:0min$X}` gives it back).
fn hex_field(name: &str, text: &str, min: usize, max: usize) -> Result<u64, String> {
    if text.len() < min || text.len() > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(format!(
            "{name} {text:?} has {} hex digits; expected {want}",
            text.len()
        ));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return Err(format!(
            "{name} {text:?} is not upper-case hexadecimal as PVE and PBS write it"
        ));
    }
    if text.len() > min && text.starts_with('0') {
        return Err(format!(
            "{name} {text:?} has a leading zero beyond the {min} digits PVE and PBS write"
        ));
    }
    u64::from_str_radix(text, 16).map_err(|e| format!("{name} {text:?}: {e}"))
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:",
            self.node, self.pid, self.pstart
        )?;
        if let Some(task_id) = self.task_id {
            write!(f, "{task_id:08X}:")?;
        }
        write!(
            f,
            "{:08X}:{}:{}:{}:",
            self.starttime, self.worker_type, self.worker_id, self.user
        )
    }
}

impl FromStr for Upid {
    type Err = UpidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Upid::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PVE_EXAMPLE: &str = "UPID:pve:00039E4D:002638B8:67B4A9D1:stopall::root@pam:";
    const PBS_EXAMPLE: &str = "UPID:pbs:000002B2:00000158:00000000:674D828C:logrotate::root@pam:";

    #[test]
    fn pve_example_from_the_reference_parses_into_its_fields() {
        let u = Upid::parse(PVE_EXAMPLE).unwrap();
        assert_eq!(u.node, "pve");
        assert_eq!(u.pid, 237_133);
        assert_eq!(u.pstart, 2_504_888);
        assert_eq!(u.starttime, 1_739_893_201);
        assert_eq!(u.worker_type, "stopall");
        assert_eq!(u.worker_id, "");
        assert_eq!(u.user, "root@pam");
        assert_eq!(u.task_id, None);
        assert!(!u.is_pbs());
    }

    #[test]
    fn pbs_example_from_the_reference_parses_with_its_task_id() {
        let u = Upid::parse(PBS_EXAMPLE).unwrap();
        assert_eq!(u.node, "pbs");
        assert_eq!(u.pid, 0x2B2);
        assert_eq!(u.pstart, 0x158);
        assert_eq!(u.task_id, Some(0));
        assert_eq!(u.starttime, 0x674D_828C);
        assert_eq!(u.worker_type, "logrotate");
        assert!(u.is_pbs());
    }

    #[test]
    fn formatting_a_parsed_upid_gives_back_the_same_text() {
        for text in [
            PVE_EXAMPLE,
            PBS_EXAMPLE,
            "UPID:node-2:0000A1B2:1002638B8:67B4A9D1:qmstart:100:root@pam:",
            "UPID:pve1:00001234:00ABCDEF:67B4A9D1:vzdump:100:backup@pbs!tok:",
            "UPID:pbs:000002B2:00000158:1234567890ABCDEF:674D828C:verify:store1\\x3asnap:root@pam:",
            "UPID:pbs:000002B2:00000158:123456789:674D828C:gc:store1:root@pam:",
        ] {
            let parsed: Upid = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn constructed_upid_formats_with_zero_padding() {
        let u = Upid {
            node: "n1".into(),
            pid: 1,
            pstart: 2,
            task_id: None,
            starttime: 3,
            worker_type: "t".into(),
            worker_id: String::new(),
            user: "root@pam".into(),
        };
        assert_eq!(
            u.to_string(),
            "UPID:n1:00000001:00000002:00000003:t::root@pam:"
        );
        assert_eq!(Upid::parse(&u.to_string()).unwrap(), u);
    }

    fn problem(text: &str) -> String {
        let err = Upid::parse(text).unwrap_err();
        assert_eq!(err.text, text);
        err.problem
    }

    #[test]
    fn malformed_upids_are_rejected_naming_the_problem() {
        assert!(
            problem("PID:pve:00039E4D:002638B8:67B4A9D1:stopall::root@pam:")
                .contains("start with 'UPID:'")
        );
        assert!(
            problem("UPID:pve:00039E4D:002638B8:67B4A9D1:stopall::root@pam")
                .contains("end with ':'")
        );
        assert!(problem("UPID:pve:00039E4D:002638B8:stopall::root@pam:").contains("6 fields"));
        assert!(problem("UPID:pve:0039E4D:002638B8:67B4A9D1:stopall::root@pam:").contains("pid"));
        assert!(
            problem("UPID:pve:00039E4D:002638B8:67b4a9d1:stopall::root@pam:")
                .contains("upper-case")
        );
        assert!(
            problem("UPID:pve:00039E4D:0002638B8:67B4A9D1:stopall::root@pam:")
                .contains("leading zero")
        );
        assert!(
            problem("UPID:pve:00039E4D:00002638B8:67B4A9D1:stopall::root@pam:").contains("pstart")
        );
        assert!(problem("UPID:pve:00039E4D:002638B8:67B4A9D1:::root@pam:").contains("type"));
        assert!(problem("UPID:pve:00039E4D:002638B8:67B4A9D1:stopall:::").contains("user"));
        assert!(problem("UPID::00039E4D:002638B8:67B4A9D1:stopall::root@pam:").contains("node"));
        assert!(
            problem("UPID:pbs:000002B2:00000158:0000000:674D828C:logrotate::root@pam:")
                .contains("task id")
        );
        assert!(
            problem("UPID:pve:00039E4D:002638B8:67B4A9D1:stop all::root@pam:")
                .contains("whitespace")
        );
    }

    #[test]
    fn error_message_names_the_text_and_the_problem() {
        let err = Upid::parse("UPID:x").unwrap_err().to_string();
        assert!(err.contains("\"UPID:x\""), "{err}");
        assert!(err.contains("end with ':'"), "{err}");
    }
}
