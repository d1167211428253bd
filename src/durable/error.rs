//! [`DurableError`]: a file operation of the durable layer that failed, with the file
//! and the step it failed at.

use std::path::PathBuf;

/// Reading, writing, syncing or renaming a file failed. The stores convert it into
/// their own errors, which keep their own wording.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {op} failed: {io}")]
pub struct DurableError {
    /// The file or directory.
    pub path: PathBuf,
    /// The step that failed (`open for append`, `fsync`, `rename temp file over`, …).
    pub op: &'static str,
    /// The operating system's error (part of the message, not a separate cause, so
    /// error chains do not repeat it).
    pub io: std::io::Error,
}

impl DurableError {
    /// A closure that turns an IO error on `path` during `op` into a [`DurableError`].
    pub(crate) fn at(
        path: impl Into<PathBuf>,
        op: &'static str,
    ) -> impl FnOnce(std::io::Error) -> DurableError {
        let path = path.into();
        move |io| DurableError { path, op, io }
    }
}
