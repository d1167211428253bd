//! The API's fixed bounds (request size, body timeout, drain) and the arithmetic of the
//! connection cap. The bounds an operator may set — rows, streams, connections, header
//! and idle timeouts — are `[api]` keys (`max_rows`, `max_streams`, `max_connections`,
//! `header_timeout_secs`, `idle_timeout_secs`); `docs/operations.md` ("Limits") lists
//! every bound with what happens at it.

use std::time::Duration;

/// Explicit history windows lie between the epoch and the end of year 9999, so that no
/// time arithmetic of a query can overflow.
pub const MAX_TIMESTAMP: i64 = crate::rrd::database::MAX_TIME;

/// What a refused stream or connection is told to wait before trying again, in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Descriptors kept for everything but API clients, on top of three per connection
/// the pollers may hold (`limits.global_connections` open and twice that idle): the
/// stores' files, the runtime, logging.
pub const FD_RESERVE_BASE: u64 = 64;

/// A request body must arrive completely within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request body (the API's bodies are a few dozen bytes); larger is 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest request target (path and query); longer is 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most header bytes of a request (names, values and separators); more is 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// What hyper itself accepts before answering a bare 431 and closing: above fleetpoll's
/// own limit, so that every request fleetpoll refuses is refused with a JSON error.
pub(super) const HYPER_MAX_HEADER_BYTES: usize = 4 * MAX_HEADER_BYTES;

/// The most header lines hyper parses: enough for any head under [`MAX_HEADER_BYTES`]
/// (the shortest line is four bytes), so the size limit answers before the count does.
pub(super) const HYPER_MAX_HEADERS: usize = MAX_HEADER_BYTES / 4;

/// How long a stopping server lets open connections finish before it drops them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection cap for a process allowed `nofile` descriptors whose pollers may use
/// `global_connections` connections: `max` (`api.max_connections`), or fewer so that
/// [`FD_RESERVE_BASE`] plus three descriptors per poller connection stay free — API
/// clients can never take the descriptors the pollers need. At least one.
pub fn connection_cap(nofile: u64, global_connections: u32, max: usize) -> usize {
    let reserve = FD_RESERVE_BASE.saturating_add(3 * u64::from(global_connections));
    let room = nofile.saturating_sub(reserve);
    usize::try_from(room)
        .unwrap_or(usize::MAX)
        .clamp(1, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_the_pollers_their_reserve() {
        assert_eq!(connection_cap(65_536, 20, 256), 256);
        // 300 descriptors, 20 poller connections: 64 + 60 kept back.
        assert_eq!(connection_cap(300, 20, 256), 176);
        assert_eq!(connection_cap(100, 20, 256), 1, "never zero");
    }
}
