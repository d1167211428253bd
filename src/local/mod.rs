//! The built-in `local` source: the host fleetpoll runs on, read from /proc.
//!
//! - `host`: one reading through the `procfs` crate, named as the PBS host metrics.
//! - `source`: [`LocalSource`], the reading behind a TTL cache as a remote.

mod host;
mod source;

pub use host::{read_host, CpuTicks, HostReading, COUNTERS};
pub use source::{to_batch, CachedReading, HostReader, LocalSource, LOCAL_ID};
