//! The fleet simulator: many Proxmox VE clusters and Proxmox Backup Servers behind one
//! HTTPS listener (and Prometheus exposition targets behind a plain-http one), with seeded metrics and tasks and injectable faults. Used in-process
//! by the tests and as `fleetpoll sim`.
//!
//! - [`fleet`]: the simulated remotes, derived from [`SimConfig`].
//! - [`faults`]: the faults and their `KIND[=VALUE][@TARGET]` syntax.
//! - [`metrics`]: metric values as a function of the time, rendered as the API's reply.
//! - `tasks`: tasks that start and finish over time.
//! - `resources`: the resource lists (PVE cluster resources, PBS datastore usage).
//! - `exposition`: Prometheus exposition targets (node_exporter-shaped), rendered.
//! - `routes`: the API paths, token checks and fault injection.
//! - [`server`]: the TLS listeners and [`Simulator`], the handle to a running fleet.
//! - [`cli`]: the `fleetpoll sim` command.
//! - `embed`: [`SimRemoteInfo::engine_remote`], a simulated remote as an embedder's
//!   engine config.

pub mod cli;
mod embed;
mod exposition;
pub mod faults;
pub mod fleet;
pub mod metrics;
mod resources;
mod routes;
pub mod server;
mod tasks;
pub mod write_config;

pub use faults::{Fault, FaultRule, FaultTarget, Faults};
pub use fleet::SimConfig;
pub use server::{SimError, SimRemoteInfo, Simulator};
