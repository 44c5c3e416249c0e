//! What can go wrong talking to evshmd or reading what it published.

use std::path::PathBuf;

use arrow_schema::ArrowError;
use evshm_protocol::{ErrorCode, ReplyError};

use crate::mapping::MapError;

/// What can go wrong talking to evshmd or reading what it published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to evshmd at {path}: {cause} (is evshmd running?)")]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// The OS error (in the message, so not a `source` that error chains would print
        /// again).
        cause: std::io::Error,
    },
    /// The socket, or the process listening on it, is not one this client takes for
    /// evshmd (another user's: see [`evshm_protocol::DAEMON_UID_VARIABLE`]).
    #[error("refusing evshmd at {path}: {reason}")]
    Untrusted {
        /// The socket path.
        path: PathBuf,
        /// Who it belongs to, and whom this client trusts.
        reason: String,
    },
    /// The connection failed mid-request, or the daemon closed it.
    #[error("connection to evshmd lost: {0}")]
    ConnectionLost(std::io::Error),
    /// The daemon answered with an error.
    #[error("evshmd: {message}")]
    Daemon {
        /// Stable code to branch on.
        code: ErrorCode,
        /// What failed.
        message: String,
    },
    /// The daemon's reply broke the protocol.
    #[error("{0}")]
    Protocol(String),
    /// An arena could not be mapped.
    #[error(transparent)]
    Map(#[from] MapError),
    /// An extent's content is not the Arrow IPC stream it should be.
    #[error("extent is not a valid zero-copy Arrow IPC stream: {0}")]
    Arrow(#[from] ArrowError),
}

impl From<ReplyError> for ClientError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Daemon(e) => ClientError::Daemon { code: e.code, message: e.message },
            other => ClientError::Protocol(other.to_string()),
        }
    }
}
