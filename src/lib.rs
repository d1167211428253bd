//! fleetpoll: the real parts behind the engine's seams and its front doors.
//!
//! # Layout
//!
//! - [`engine`]: the supervised collection engine (the `fleetpoll-actors` crate).
//! - [`remote`]: HTTPS clients of Proxmox VE and Proxmox Backup Server remotes.
//! - [`sim`]: the fleet simulator (`fleetpoll sim`) the tests and benchmarks run against.
//! - [`tasks`]: the rotating task cache behind the engine's `TaskStore`.
//! - [`demo`]: `fleetpoll demo`, the engine on an embedded default fleet.

pub use fleetpoll_actors as engine;

pub mod demo;
pub mod remote;
pub mod sim;
pub mod tasks;
