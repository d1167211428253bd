//! File descriptors: at start the daemon raises its soft `RLIMIT_NOFILE` to the hard
//! limit (a shell's default soft limit of 1,024 is far below what the kernel allows),
//! and the API's connection cap is derived from the result so that API clients can
//! never take the descriptors the pollers and the stores need
//! ([`crate::api::limits::connection_cap`]). Under systemd `LimitNOFILE=` sets both
//! limits, so nothing needs raising — and the unit's system-call filter, which forbids
//! `setrlimit`, is never hit.

/// The soft and hard descriptor limits of this process.
#[allow(unsafe_code)]
fn limits() -> std::io::Result<libc::rlimit> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through the pointer, which points at a
    // live, properly aligned local.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) };
    if rc == 0 {
        Ok(current)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Raises the soft limit to the hard one if it is lower; returns the soft limit in
/// force afterwards. A failure leaves the limit as it was (logged).
#[allow(unsafe_code)]
pub(crate) fn raise_nofile_limit() -> u64 {
    let current = match limits() {
        Ok(current) => current,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the descriptor limit; assuming 1024");
            return 1024;
        }
    };
    if current.rlim_cur >= current.rlim_max {
        return current.rlim_cur;
    }
    let raised = libc::rlimit {
        rlim_cur: current.rlim_max,
        rlim_max: current.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit` through the pointer, which points at a live,
    // properly aligned local; raising the soft limit up to the hard one needs no
    // privilege and affects only this process.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    if rc == 0 {
        tracing::debug!(
            from = current.rlim_cur,
            to = raised.rlim_cur,
            "raised the descriptor limit"
        );
        raised.rlim_cur
    } else {
        let err = std::io::Error::last_os_error();
        tracing::warn!(error = %err, limit = current.rlim_cur,
            "cannot raise the descriptor limit to the hard limit; set LimitNOFILE= in the unit");
        current.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_raising_the_soft_limit_is_the_hard_limit() {
        let raised = raise_nofile_limit();
        let now = limits().unwrap();
        assert_eq!(raised, now.rlim_cur);
        assert_eq!(now.rlim_cur, now.rlim_max);
    }
}
