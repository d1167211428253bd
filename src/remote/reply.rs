//! The JSON replies the clients read besides metrics: node lists, task lists and task
//! status, with their conversion into the engine's task vocabulary.

use fleetpoll_actors::{ErrorClass, RemoteId, SourceError, TaskRecord, TaskState, UnixTime};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::metrics::bad_json;

/// The API's envelope: the payload is under `data`.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<T> {
    pub(crate) data: T,
}

/// Parses `{"data": T}`, or fails with a `BadReply` error quoting the reply.
pub(crate) fn parse_data<T: DeserializeOwned>(
    remote: &RemoteId,
    body: &[u8],
) -> Result<T, SourceError> {
    serde_json::from_slice::<Envelope<T>>(body)
        .map(|e| e.data)
        .map_err(|err| bad_json(remote, body, &err))
}

/// One entry of `GET /nodes`.
#[derive(Debug, Deserialize)]
pub(crate) struct NodeItem {
    pub(crate) node: String,
    #[serde(default)]
    pub(crate) status: Option<String>,
}

/// One entry of a task list, PVE (`type`, `id`) or PBS (`worker_type`, `worker_id`).
#[derive(Debug, Deserialize)]
pub(crate) struct TaskItem {
    upid: String,
    node: String,
    starttime: UnixTime,
    #[serde(default)]
    endtime: Option<UnixTime>,
    #[serde(rename = "type", alias = "worker_type")]
    task_type: String,
    #[serde(default, alias = "worker_id")]
    id: Option<String>,
    user: String,
    #[serde(default)]
    status: Option<String>,
}

impl From<TaskItem> for TaskRecord {
    fn from(item: TaskItem) -> Self {
        TaskRecord {
            upid: item.upid,
            node: item.node,
            task_type: item.task_type,
            task_id: item.id.filter(|id| !id.is_empty()),
            user: item.user,
            start_time: item.starttime,
            end_time: item.endtime,
            status: item.status,
        }
    }
}

/// The reply of `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Deserialize)]
pub(crate) struct TaskStatusItem {
    status: String,
    #[serde(default)]
    exitstatus: Option<String>,
}

impl TaskStatusItem {
    /// The engine's view of the status.
    pub(crate) fn into_state(self, remote: &RemoteId) -> Result<TaskState, SourceError> {
        match (self.status.as_str(), self.exitstatus) {
            ("running", _) => Ok(TaskState::Running),
            ("stopped", Some(exit_status)) => Ok(TaskState::Stopped { exit_status }),
            ("stopped", None) => Ok(TaskState::Stopped {
                exit_status: "unknown".into(),
            }),
            (other, _) => Err(SourceError::new(
                ErrorClass::BadReply,
                format!("remote {remote}: task status {other:?} is neither running nor stopped"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pve_and_pbs_task_items_become_the_same_record() {
        let remote = RemoteId::new("r");
        let pve: Vec<TaskItem> = parse_data(
            &remote,
            br#"{"data":[{"upid":"U","node":"n","pid":1,"pstart":2,"starttime":10,"type":"qmstart","id":"100","user":"root@pam","endtime":12,"status":"OK"}]}"#,
        )
        .unwrap();
        let pbs: Vec<TaskItem> = parse_data(
            &remote,
            br#"{"data":[{"upid":"U","node":"n","pid":1,"pstart":2,"starttime":10,"worker_type":"qmstart","worker_id":"100","user":"root@pam","endtime":12,"status":"OK"}]}"#,
        )
        .unwrap();
        let a: TaskRecord = pve.into_iter().next().unwrap().into();
        let b: TaskRecord = pbs.into_iter().next().unwrap().into();
        assert_eq!(a, b);
        assert_eq!(a.task_id.as_deref(), Some("100"));
        assert!(!a.is_running());
    }

    #[test]
    fn running_task_has_no_end_and_empty_id_is_none() {
        let remote = RemoteId::new("r");
        let items: Vec<TaskItem> = parse_data(
            &remote,
            br#"{"data":[{"upid":"U","node":"n","starttime":10,"type":"stopall","id":"","user":"root@pam"}]}"#,
        )
        .unwrap();
        let record: TaskRecord = items.into_iter().next().unwrap().into();
        assert!(record.is_running());
        assert_eq!(record.task_id, None);
    }

    #[test]
    fn task_status_maps_to_running_or_stopped() {
        let remote = RemoteId::new("r");
        let running: TaskStatusItem =
            parse_data(&remote, br#"{"data":{"status":"running"}}"#).unwrap();
        assert_eq!(running.into_state(&remote).unwrap(), TaskState::Running);
        let stopped: TaskStatusItem = parse_data(
            &remote,
            br#"{"data":{"status":"stopped","exitstatus":"OK"}}"#,
        )
        .unwrap();
        assert_eq!(
            stopped.into_state(&remote).unwrap(),
            TaskState::Stopped {
                exit_status: "OK".into()
            }
        );
        let odd: TaskStatusItem = parse_data(&remote, br#"{"data":{"status":"paused"}}"#).unwrap();
        assert_eq!(
            odd.into_state(&remote).unwrap_err().class,
            ErrorClass::BadReply
        );
        let err = parse_data::<TaskStatusItem>(&remote, br#"{"data":"#).unwrap_err();
        assert_eq!(err.class, ErrorClass::BadReply);
    }
}
