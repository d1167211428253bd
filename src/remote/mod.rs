//! Clients of the real remotes: Proxmox VE and Proxmox Backup Server over HTTPS.
//!
//! - [`upid`]: task ids (UPIDs) of both kinds, parsed and formatted.
//! - [`metrics`]: the metric export reply parsed into a [`fleetpoll_actors::MetricBatch`].
//! - [`tls`]: certificate trust: system roots, else the pinned fingerprint.

pub mod metrics;
pub mod upid;

pub use metrics::{parse_metric_reply, MAX_FUTURE_SECS};
pub use upid::{Upid, UpidError};
pub mod tls;

pub use tls::Fingerprint;
