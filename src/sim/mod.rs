//! The fleet simulator: many Proxmox VE clusters, Proxmox Backup Servers and Prometheus
//! exposition targets on loopback, each node on its own address with its own
//! certificate (or all behind one shared listener), with seeded metrics and tasks, a
//! round-trip time paid by every connection, a fleet that changes over time, and
//! injectable faults. Used in-process by the tests and as `fleetpoll sim`;
//! `docs/simulator.md` describes it for users.
//!
//! - [`fleet`]: the simulated remotes and the layout, derived from [`SimConfig`].
//! - [`churn`]: nodes going offline, guests starting and stopping, long tasks.
//! - [`faults`]: the faults and their `KIND[=VALUE][@TARGET]` syntax.
//! - [`link`]: the round-trip time, injected on the server's side of each connection.
//! - [`metrics`]: metric values as a function of the time, rendered as the API's reply.
//! - `tasks`: tasks that start and finish over time.
//! - `resources`: the resource lists (PVE cluster resources, PBS datastore usage).
//! - `exposition`: Prometheus exposition targets (node_exporter-shaped), rendered.
//! - `routes`: the API paths, token checks and fault injection; `query` its query strings.
//! - `certs`: the per-node (or shared) certificates, derived from the seed.
//! - `clock`: the simulator's clock, optionally behind real time until it catches up.
//! - `listeners`: the listeners of both layouts and each connection's TLS and HTTP.
//! - [`server`]: [`Simulator`], the handle to a running fleet, and the clockwork that
//!   opens and closes listeners.
//! - `info`: [`SimRemoteInfo`], how a client reaches a remote.
//! - [`cli`]: the `fleetpoll sim` command.
//! - `embed`: [`SimRemoteInfo::engine_remote`], a simulated remote as an embedder's
//!   engine config.
//! - [`write_config`]: `--write-config`, the fleet as a fleetpoll config.

mod certs;
pub mod churn;
pub mod cli;
mod clock;
mod embed;
mod exposition;
pub mod faults;
pub mod fleet;
mod info;
pub mod link;
mod listeners;
pub mod metrics;
mod query;
mod resources;
mod routes;
pub mod server;
mod tasks;
pub mod write_config;

pub use churn::{Churn, NodeOutages};
pub use faults::{Fault, FaultRule, FaultTarget, Faults, OutageWindow};
pub use fleet::{Listen, SimConfig};
pub use info::{SimNodeInfo, SimRemoteInfo};
pub use link::Rtt;
pub use server::{SimError, Simulator, TlsHandshakes};
