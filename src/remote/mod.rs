//! Clients of the real remotes: Proxmox VE and Proxmox Backup Server over HTTPS.
//!
//! - [`upid`]: task ids (UPIDs) of both kinds, parsed and formatted.
//! - [`metrics`]: the metric export reply parsed into a [`fleetpoll_actors::MetricBatch`].
//! - `metrics_scan`: the fast path of that parser for the canonical reply shape.
//! - [`tls`]: certificate trust: system roots, else the pinned fingerprint.
//! - [`endpoint`]: how to reach a remote (nodes, token, timeouts, limits).
//! - `http`: the shared transport (failover, timeouts, body cap, error classes).
//! - `pool`: idle connections kept for reuse, bounded by an [`IdleBudget`] across remotes.
//! - `reply`: node lists, task lists and task status replies.
//! - `resources`: the resource lists (PVE cluster resources, PBS datastore usage).
//! - `task_pages`: a node's task list page by page, as both kinds serve it.
//! - [`pve`]: [`PveClient`], a [`fleetpoll_actors::RemoteSource`] for a PVE cluster.
//! - [`pbs`]: [`PbsClient`], a [`fleetpoll_actors::RemoteSource`] for a PBS.

pub mod endpoint;
pub(crate) mod http;
pub mod metrics;
mod metrics_scan;
pub mod pbs;
mod pool;
pub mod pve;
pub(crate) mod reply;
pub(crate) mod resources;
mod task_pages;
pub mod tls;
pub mod upid;

pub use endpoint::{ApiToken, ClientOptions, NodeAddress, RemoteEndpoint};
pub use metrics::{parse_metric_reply, MAX_FUTURE_SECS};
pub use pbs::PbsClient;
pub use pool::{ClientPools, IdleBudget, IDLE_TIMEOUT};
pub use pve::PveClient;
pub use resources::MAX_RESOURCES;
pub use tls::Fingerprint;
pub use upid::{Upid, UpidError};
