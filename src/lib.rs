//! fleetpoll: the real parts behind the engine's seams and its front doors.
//!
//! # Layout
//!
//! - `fleetpoll_actors` (re-exported as [`engine`]): the supervised collection engine.
//! - [`remote`]: HTTPS clients of Proxmox VE and Proxmox Backup Server remotes.
//! - [`sim`]: the fleet simulator (`fleetpoll sim`) the tests and benchmarks run against.

pub use fleetpoll_actors as engine;

pub mod remote;
pub mod sim;
