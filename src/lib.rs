//! fleetpoll: the real parts behind the engine's seams and its front doors.
//!
//! # Layout
//!
//! - `fleetpoll_actors` (re-exported as [`engine`]): the supervised collection engine.

pub use fleetpoll_actors as engine;
