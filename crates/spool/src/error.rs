//! The one error type of the spool.

use crate::MessageId;

/// Everything that can go wrong while spooling or reading a message.
///
/// Every variant except [`SpoolError::InvalidId`] is the server's fault (disk,
/// permissions, a corrupted entry): the SMTP layer answers `451` and the
/// client retries. `InvalidId` is the caller's fault (a bad id on the CLI).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A filesystem operation failed; `context` names the operation and path.
    #[error("spool I/O error: {context}: {source}")]
    Io {
        /// What was being done, e.g. `"fsync /var/spool/portcullis/tmp/….eml"`.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The metadata JSON could not be written or parsed.
    #[error("spool metadata JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// No complete entry with this id is in the queue.
    #[error("no spooled message with id {0}")]
    NotFound(MessageId),
    /// A string is not a well-formed message id.
    #[error("invalid message id {0:?}")]
    InvalidId(String),
    /// Another process (a running server) holds the spool.
    #[error("the spool at {0} is in use by another process")]
    Locked(String),
    /// The spool was attached read-only (beside a running server) and
    /// cannot take new messages.
    #[error("the spool is attached read-only")]
    ReadOnly,
    /// The journal writer has stopped (the server is shutting down).
    #[error("the spool writer has stopped")]
    WriterGone,
}

impl SpoolError {
    /// The same error again, for each of the jobs one failed batch answers.
    pub(crate) fn again(&self) -> SpoolError {
        match self {
            SpoolError::Io { context, source } => SpoolError::Io {
                context: context.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            other => SpoolError::Io {
                context: "journal".to_owned(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }

    /// Builds an [`SpoolError::Io`] from an operation name and the path it touched.
    pub(crate) fn io(op: &str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let context = format!("{op} {}", path.display());
        move |source| SpoolError::Io { context, source }
    }
}
