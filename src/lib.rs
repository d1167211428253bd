//! fleetpoll: the real parts behind the engine's seams and its front doors.
//!
//! # Layout
//!
//! - [`engine`]: the supervised collection engine (the `fleetpoll-actors` crate).
//! - [`config`]: the TOML configuration file: schema, validation, building the engine's config.
//! - [`cluster`]: sharding: which instance of a deployment polls which remote.
//! - [`remote`]: HTTPS clients of Proxmox VE and Proxmox Backup Server remotes.
//! - [`local`]: the built-in `local` source, the host itself read from /proc.
//! - [`prom`]: Prometheus exposition targets as remotes: the text-format and OpenMetrics
//!   parser, the mapping into the stores, the scraping client.
//! - [`rrd`]: round-robin databases with rrdtool's semantics, the crash-safe journal and
//!   the engine's metric store on them (`fleetpoll rrd …`).
//! - [`sim`]: the fleet simulator (`fleetpoll sim`) the tests and benchmarks run against.
//! - [`tasks`]: the rotating task cache behind the engine's `TaskStore`.
//! - [`inventory`]: the remotes' resource lists (names, status, use), fetched in the
//!   background, and each remote's health.
//! - [`durable`]: what both stores write files with: the framed, checksummed journal,
//!   atomic replacement and directory syncs.
//! - `fuzzing` (with the `fuzzing` feature, on by default): the bodies of the fuzz
//!   targets in `fuzz/`, replayed over their corpora by `tests/fuzz_corpora.rs`.
//! - [`demo`]: `fleetpoll demo`, the engine on an embedded default fleet.
//! - [`daemon`]: `fleetpoll run`: signals, systemd notification, the API server.
//! - [`web`]: the web status page at `/` on the API's listener (HTML, SVG charts, one
//!   script), embedded in the binary.
//! - [`api`]: the HTTP API; [`api_client`]: `fleetpoll status|trigger|tasks|query`,
//!   the command-line client of it.

pub use fleetpoll_actors as engine;

pub mod api;
pub mod api_client;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod durable;
pub mod export;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod inventory;
pub mod local;
pub mod prom;
pub mod remote;
pub mod rrd;
pub mod rules;
pub mod sim;
pub mod tasks;
#[cfg(test)]
mod test_batches;
pub mod web;
