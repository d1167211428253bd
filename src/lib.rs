//! fleetpoll: the real parts behind the engine's seams and its front doors.
//!
//! # Layout
//!
//! - [`engine`]: the supervised collection engine (the `fleetpoll-actors` crate).
//! - [`demo`]: `fleetpoll demo`, the engine on an embedded default fleet.

pub mod demo;

pub use fleetpoll_actors as engine;
