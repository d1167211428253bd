//! The Proxmox VE cluster client: metrics from `/cluster/metrics/export`, tasks from
//! every node's `/nodes/{node}/tasks` (up to 5 nodes at once, the node list kept between
//! fetches), task status by UPID, the resource list from `/cluster/resources`.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use fleetpoll_actors::{
    Cursor, ErrorClass, MetricBatch, RemoteSource, Resource, SourceError, TaskBatch, TaskQuery,
    TaskRecord, TaskState,
};
use futures::stream::{self, StreamExt};
use tokio::time::Instant;

use super::endpoint::RemoteEndpoint;
use super::http::{encode_segment, HttpClient};
use super::metrics::parse_dated_metric_reply;
use super::reply::{parse_data, NodeItem, TaskStatusItem};
use super::resources::parse_cluster_resources;
use super::task_pages::list_node_tasks;
use super::upid::Upid;

/// Nodes asked for their tasks at the same time (the reference manager's per-remote cap).
pub const MAX_PARALLEL_NODES: usize = 5;

/// How long a cluster's node list is used before it is listed again. A node that fails
/// its task list makes the next fetch list the nodes again at once.
pub const NODE_LIST_TTL: Duration = Duration::from_secs(600);

/// A Proxmox VE cluster reached through any of its nodes.
pub struct PveClient {
    http: HttpClient,
    /// The cluster's online nodes as last listed, and when: a task fetch needs one
    /// round trip per node, not one more for `/nodes` every time.
    members: Mutex<Option<(Arc<[String]>, Instant)>>,
}

impl fmt::Debug for PveClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PveClient")
            .field("http", &self.http)
            .finish()
    }
}

impl PveClient {
    /// A client for the cluster `endpoint` describes; fails only on a bad configuration.
    pub fn new(endpoint: RemoteEndpoint) -> Result<Self, SourceError> {
        let authorization = endpoint.token.pve_header();
        Ok(Self {
            http: HttpClient::new(endpoint, authorization)?,
            members: Mutex::new(None),
        })
    }

    fn members(&self) -> MutexGuard<'_, Option<(Arc<[String]>, Instant)>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The online nodes: the cached list while it is fresh, else `/nodes`.
    async fn online_nodes(&self) -> Result<Arc<[String]>, SourceError> {
        if let Some((nodes, listed)) = self.members().as_ref() {
            if listed.elapsed() < NODE_LIST_TTL {
                return Ok(nodes.clone());
            }
        }
        let listed: Vec<NodeItem> =
            parse_data(self.http.remote(), &self.http.get("/nodes").await?)?;
        let online: Arc<[String]> = listed
            .into_iter()
            .filter(|n| n.status.as_deref() != Some("offline"))
            .map(|n| n.node)
            .collect();
        *self.members() = Some((online.clone(), Instant::now()));
        Ok(online)
    }

    /// The tasks of one node that started at or after `since` (or those running now).
    async fn node_tasks(
        &self,
        node: &str,
        since: i64,
        running_only: bool,
    ) -> Result<Vec<TaskRecord>, SourceError> {
        let remote = self.http.remote();
        let filter = if running_only {
            "source=active".to_string()
        } else {
            format!("source=all&since={since}")
        };
        let whose = || format!("remote {remote} node {node}");
        list_node_tasks(remote, node, &filter, whose, |path| async move {
            self.http.get(&path).await
        })
        .await
    }
}

#[async_trait]
impl RemoteSource for PveClient {
    fn metric_connections(&self) -> u32 {
        // One request; the cluster gathers its members' metrics itself.
        1
    }

    /// One per online node, up to five; one before the nodes are known (the first fetch
    /// then lists them one after the other).
    fn task_connections(&self) -> u32 {
        self.members()
            .as_ref()
            .map_or(1, |(nodes, _)| nodes.len().clamp(1, MAX_PARALLEL_NODES)) as u32
    }

    async fn fetch_metrics(&self, since: Cursor) -> Result<MetricBatch, SourceError> {
        let request_time = self.http.options().clock.now_secs();
        let path = match since.0 {
            Some(start) => format!("/cluster/metrics/export?history=1&start-time={start}"),
            None => "/cluster/metrics/export?history=1".to_string(),
        };
        let (body, date) = self.http.get_dated(&path).await?;
        parse_dated_metric_reply(self.http.remote(), &body, request_time, date)
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskBatch, SourceError> {
        let remote = self.http.remote();
        let online = self.online_nodes().await?;
        let parallel = (query.connections.max(1) as usize).min(MAX_PARALLEL_NODES);
        let results: Vec<(String, Result<Vec<TaskRecord>, SourceError>)> =
            stream::iter(online.iter().cloned())
                .map(|node| async move {
                    let since = query
                        .cutoffs
                        .get(&node)
                        .copied()
                        .unwrap_or(query.default_since);
                    let result = self.node_tasks(&node, since, query.running_only).await;
                    (node, result)
                })
                .buffer_unordered(parallel)
                .collect()
                .await;
        let mut batch = TaskBatch::default();
        let mut first_error = None;
        let attempted = results.len();
        for (node, result) in results {
            match result {
                Ok(tasks) => {
                    batch.tasks.extend(tasks);
                    batch.complete_nodes.push(node);
                }
                Err(err) => {
                    tracing::warn!(remote = %remote, node = %node, error = %err, "task list of a node failed");
                    // The node may have left the cluster or gone offline: list again.
                    *self.members() = None;
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) if batch.complete_nodes.is_empty() && attempted > 0 => Err(err),
            _ => {
                batch.complete_nodes.sort();
                Ok(batch)
            }
        }
    }

    async fn task_status(&self, upid: &str) -> Result<TaskState, SourceError> {
        let remote = self.http.remote();
        let parsed = Upid::parse(upid)
            .map_err(|e| SourceError::new(ErrorClass::Other, format!("remote {remote}: {e}")))?;
        let path = format!(
            "/nodes/{}/tasks/{}/status",
            encode_segment(&parsed.node),
            encode_segment(upid)
        );
        let status: TaskStatusItem = parse_data(remote, &self.http.get(&path).await?)?;
        status.into_state(remote)
    }

    fn has_resources(&self) -> bool {
        true
    }

    /// One call for the whole cluster: the node answering gathers its members' entries.
    async fn resources(&self) -> Result<Vec<Resource>, SourceError> {
        let body = self.http.get("/cluster/resources").await?;
        parse_cluster_resources(self.http.remote(), &body)
    }
}
