//! fleetpoll: the real parts behind the engine's seams and its front doors.
//!
//! # Layout
//!
//! - `fleetpoll_actors` (re-exported as [`engine`]): the supervised collection engine.
//! - [`rrd`]: the round-robin database engine (rrdtool semantics, own file format) and
//!   its `fleetpoll rrd` command.

pub use fleetpoll_actors as engine;

pub mod rrd;
