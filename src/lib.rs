//! fleetpoll: the real parts behind the engine's seams and its front doors.
//!
//! # Layout
//!
//! - [`engine`]: the supervised collection engine (the `fleetpoll-actors` crate).
//! - [`config`]: the TOML configuration file: schema, validation, building the engine's config.
//! - [`remote`]: HTTPS clients of Proxmox VE and Proxmox Backup Server remotes.
//! - [`sim`]: the fleet simulator (`fleetpoll sim`) the tests and benchmarks run against.
//! - [`demo`]: `fleetpoll demo`, the engine on an embedded default fleet.
//! - [`daemon`]: `fleetpoll run`: signals, systemd notification, the API server.
//! - [`api`]: the HTTP API; [`client`]: the command-line clients of it.

pub use fleetpoll_actors as engine;

pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod remote;
pub mod sim;
