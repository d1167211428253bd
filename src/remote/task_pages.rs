//! Paging through a node's task list, `GET /nodes/{node}/tasks?…&limit=&start=`, as
//! both Proxmox VE and Proxmox Backup Server serve it: pages of [`TASK_PAGE_LIMIT`]
//! until a short one, at most [`MAX_TASK_PAGES`] of them.

use std::future::Future;

use fleetpoll_actors::{ErrorClass, RemoteId, SourceError, TaskRecord};

use super::http::encode_segment;
use super::reply::{parse_data, TaskItem};

/// Tasks asked for per request (the API's default is only 50).
pub(crate) const TASK_PAGE_LIMIT: usize = 5000;
/// Pages fetched per node and fetch at most, so a misbehaving remote cannot loop us.
pub(crate) const MAX_TASK_PAGES: usize = 100;

/// The tasks of `node` that match `filter` (e.g. `since=…`), page after page: `get`
/// fetches one path and returns the reply's body. A page shorter than the limit is the
/// last; more than [`MAX_TASK_PAGES`] full pages is a `BadReply` error that `whose`
/// names (e.g. `remote lab node pve1`).
pub(crate) async fn list_node_tasks<F, Fut, B>(
    remote: &RemoteId,
    node: &str,
    filter: &str,
    whose: impl FnOnce() -> String,
    mut get: F,
) -> Result<Vec<TaskRecord>, SourceError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<B, SourceError>>,
    B: AsRef<[u8]>,
{
    let node = encode_segment(node);
    let mut tasks = Vec::new();
    for page in 0..MAX_TASK_PAGES {
        let start = page * TASK_PAGE_LIMIT;
        let path = format!("/nodes/{node}/tasks?{filter}&limit={TASK_PAGE_LIMIT}&start={start}");
        let items: Vec<TaskItem> = parse_data(remote, get(path).await?.as_ref())?;
        let count = items.len();
        tasks.extend(items.into_iter().map(TaskRecord::from));
        if count < TASK_PAGE_LIMIT {
            return Ok(tasks);
        }
    }
    Err(SourceError::new(
        ErrorClass::BadReply,
        format!(
            "{}: more than {} tasks listed",
            whose(),
            MAX_TASK_PAGES * TASK_PAGE_LIMIT
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A page of `n` tasks of node `n1` as a remote's reply.
    fn page(n: usize) -> String {
        let task = r#"{"upid":"U","node":"n1","starttime":10,"type":"qmstart","user":"root@pam"}"#;
        format!(r#"{{"data":[{}]}}"#, vec![task; n].join(","))
    }

    /// Lists the tasks of node `n 1` with replies of the given page sizes, the last
    /// repeated; returns the result and the paths asked for.
    fn list(sizes: &[usize]) -> (Result<Vec<TaskRecord>, SourceError>, Vec<String>) {
        let pages: Vec<String> = sizes.iter().map(|&n| page(n)).collect();
        let asked = Mutex::new(Vec::new());
        let get = |path: String| {
            let mut asked = asked.lock().unwrap();
            asked.push(path);
            let reply = &pages[(asked.len() - 1).min(pages.len() - 1)];
            std::future::ready(Ok::<_, SourceError>(reply.as_bytes()))
        };
        let remote = RemoteId::new("lab");
        let result = futures::executor::block_on(list_node_tasks(
            &remote,
            "n 1",
            "since=5",
            || "remote lab node n 1".to_string(),
            get,
        ));
        (result, asked.into_inner().unwrap())
    }

    #[test]
    fn pages_are_fetched_until_a_short_one() {
        let (result, asked) = list(&[TASK_PAGE_LIMIT, 3]);
        assert_eq!(result.unwrap().len(), TASK_PAGE_LIMIT + 3);
        assert_eq!(
            asked,
            [
                "/nodes/n%201/tasks?since=5&limit=5000&start=0",
                "/nodes/n%201/tasks?since=5&limit=5000&start=5000"
            ]
        );
    }

    #[test]
    fn a_remote_that_never_ends_its_list_is_a_bad_reply_after_the_page_cap() {
        let (result, asked) = list(&[TASK_PAGE_LIMIT]);
        let err = result.unwrap_err();
        assert_eq!(err.class, ErrorClass::BadReply);
        assert_eq!(
            err.message,
            "remote lab node n 1: more than 500000 tasks listed"
        );
        assert_eq!(asked.len(), MAX_TASK_PAGES);
    }
}
