//! The errors of the RRD engine: bad definitions, bad updates and unusable files.

use std::path::PathBuf;

use crate::durable::DurableError;

/// Something the RRD engine could not do. Messages name the offending argument or file
/// and, for files, what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum RrdError {
    /// A `DS:`/`RRA:` definition, step or other creation parameter is not valid.
    #[error("invalid definition {spec:?}: {reason}")]
    Definition {
        /// The text as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An update line or value could not be understood.
    #[error("invalid update {text:?}: {reason}")]
    Update {
        /// The update as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A fetch asked for something the file cannot answer.
    #[error("cannot fetch: {0}")]
    Fetch(String),
    /// The file is not an RRD of ours, has an unknown version, or failed its checksum.
    #[error(
        "{path}: {reason}; the file was left untouched — restore it from a backup or move \
         it aside so a new one is created"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the check found.
        reason: String,
    },
    /// The store found an entity's file damaged (it failed a check: bad magic, a
    /// checksum, a length) and set it aside: its history is in `set_aside`, and new
    /// points start a fresh file. Server-side damage, not a bad request.
    #[error(
        "{path} is damaged ({reason}); it was moved to {set_aside} and new points start a \
         fresh file — the history before is in the moved file (restore {path} from a \
         backup to get it back)"
    )]
    Damaged {
        /// The damaged file, where the entity's metrics are stored.
        path: PathBuf,
        /// What the check found.
        reason: String,
        /// Where the damaged file was moved (never overwritten, never deleted).
        set_aside: PathBuf,
    },
    /// Another process holds the store's directory.
    #[error(
        "metric store {dir} is in use by another process (it holds the lock {lock}); stop \
         the other fleetpoll, or give this one another storage.state_dir"
    )]
    Locked {
        /// The store's directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Creating a file that already exists.
    #[error("{0}: file exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// Reading or writing the file failed.
    #[error(
        "{path}: {io}; check that the disk is healthy and not full and that fleetpoll may \
         read and write this file"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error (part of the message, not a separate cause,
        /// so error chains do not repeat it).
        io: std::io::Error,
    },
}

impl From<DurableError> for RrdError {
    /// Keeps the message of [`RrdError::Io`]: the file, then the system's error.
    fn from(e: DurableError) -> Self {
        RrdError::Io {
            path: e.path,
            io: e.io,
        }
    }
}

impl RrdError {
    /// Whether the fault lies with the server's files or disk ([`RrdError::Damaged`],
    /// [`RrdError::Corrupt`], [`RrdError::Io`], [`RrdError::Locked`]) rather than with
    /// the request: an API answers these with a 5xx status.
    pub fn is_server_side(&self) -> bool {
        matches!(
            self,
            RrdError::Damaged { .. }
                | RrdError::Corrupt { .. }
                | RrdError::Io { .. }
                | RrdError::Locked { .. }
                | RrdError::Exists(_)
        )
    }

    /// Whether the failure is one entity's own — its file or path cannot be written (a
    /// directory or a plain file in the way, a name too long for the file system, no
    /// permission), the file is damaged, or its points do not fit it — rather than the
    /// store's: a full disk, a quota, a read-only or failing file system, another
    /// process holding the lock, which every entity meets and which may pass. A commit
    /// sets an entity's points aside on the first kind (see [`super::quarantine`]) and
    /// keeps them pending on the second.
    pub fn is_entity_fault(&self) -> bool {
        match self {
            RrdError::Io { io, .. } => matches!(
                io.raw_os_error(),
                Some(
                    libc::EACCES
                        | libc::EPERM
                        | libc::EISDIR
                        | libc::ENOTDIR
                        | libc::ENAMETOOLONG
                        | libc::ELOOP
                        | libc::EEXIST
                )
            ),
            RrdError::Locked { .. } => false,
            _ => true,
        }
    }

    /// Shorthand for a [`RrdError::Definition`].
    pub(crate) fn definition(spec: impl Into<String>, reason: impl Into<String>) -> Self {
        RrdError::Definition {
            spec: spec.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for a [`RrdError::Update`].
    pub(crate) fn update(text: impl Into<String>, reason: impl Into<String>) -> Self {
        RrdError::Update {
            text: text.into(),
            reason: reason.into(),
        }
    }
}
