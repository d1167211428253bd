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
    /// Creating a file that already exists.
    #[error("{0}: file exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// Reading or writing the file failed.
    #[error("{path}: {io}")]
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
