//! The Proxmox Backup Server client: metrics from `/status/metrics`, tasks from
//! `/nodes/localhost/tasks`, task status by UPID, datastores from
//! `/status/datastore-usage`.

use std::fmt;

use async_trait::async_trait;
use fleetpoll_actors::{
    Cursor, ErrorClass, MetricBatch, RemoteSource, Resource, SourceError, TaskBatch, TaskQuery,
    TaskState,
};

use super::endpoint::RemoteEndpoint;
use super::http::{encode_segment, HttpClient};
use super::metrics::parse_dated_metric_reply;
use super::reply::{parse_data, TaskStatusItem};
use super::resources::parse_datastore_usage;
use super::task_pages::list_node_tasks;
use super::upid::Upid;

/// The node name a PBS answers to in its API paths, and the key of its task cutoff.
pub const PBS_NODE: &str = "localhost";

/// A Proxmox Backup Server.
pub struct PbsClient {
    http: HttpClient,
}

impl fmt::Debug for PbsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PbsClient")
            .field("http", &self.http)
            .finish()
    }
}

impl PbsClient {
    /// A client for the server `endpoint` describes; fails only on a bad configuration.
    pub fn new(endpoint: RemoteEndpoint) -> Result<Self, SourceError> {
        let authorization = endpoint.token.pbs_header();
        Ok(Self {
            http: HttpClient::new(endpoint, authorization)?,
        })
    }
}

#[async_trait]
impl RemoteSource for PbsClient {
    async fn fetch_metrics(&self, since: Cursor) -> Result<MetricBatch, SourceError> {
        let request_time = self.http.options().clock.now_secs();
        let path = match since.0 {
            Some(start) => format!("/status/metrics?history=1&start-time={start}"),
            None => "/status/metrics?history=1".to_string(),
        };
        let (body, date) = self.http.get_dated(&path).await?;
        parse_dated_metric_reply(self.http.remote(), &body, request_time, date)
    }

    /// Lists the server's tasks; the cutoff is looked up and reported under
    /// [`PBS_NODE`], whatever host name the tasks carry.
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskBatch, SourceError> {
        let remote = self.http.remote();
        let since = query
            .cutoffs
            .get(PBS_NODE)
            .copied()
            .unwrap_or(query.default_since);
        let filter = if query.running_only {
            "running=1".to_string()
        } else {
            format!("since={since}")
        };
        let whose = || format!("remote {remote}");
        let tasks = list_node_tasks(remote, PBS_NODE, &filter, whose, |path| async move {
            self.http.get(&path).await
        })
        .await?;
        Ok(TaskBatch {
            tasks,
            complete_nodes: vec![PBS_NODE.to_string()],
        })
    }

    async fn task_status(&self, upid: &str) -> Result<TaskState, SourceError> {
        let remote = self.http.remote();
        Upid::parse(upid)
            .map_err(|e| SourceError::new(ErrorClass::Other, format!("remote {remote}: {e}")))?;
        let path = format!("/nodes/{PBS_NODE}/tasks/{}/status", encode_segment(upid));
        let status: TaskStatusItem = parse_data(remote, &self.http.get(&path).await?)?;
        status.into_state(remote)
    }

    fn has_resources(&self) -> bool {
        true
    }

    async fn resources(&self) -> Result<Vec<Resource>, SourceError> {
        let body = self.http.get("/status/datastore-usage").await?;
        parse_datastore_usage(self.http.remote(), &body)
    }
}
