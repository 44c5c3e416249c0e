//! Failed replies: stable error codes, and why a reply line could not be read.

use serde::{Deserialize, Serialize};

/// Stable error codes: clients branch on these, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The line is not a JSON object, or a field is missing or mistyped.
    BadRequest,
    /// The request line is longer than [`MAX_REQUEST_LINE`](crate::MAX_REQUEST_LINE).
    FrameTooLarge,
    /// The first request was not `hello`.
    HelloRequired,
    /// `hello` named a protocol version the daemon does not speak.
    UnsupportedVersion,
    /// `op` names no request of this protocol.
    UnknownOp,
    /// The path is empty, contains `..` or a NUL byte.
    BadPath,
    /// The path resolves outside every served root.
    OutsideRoots,
    /// No root holds a file at that path.
    NotFound,
    /// The file is not an event recording evshmd reads.
    UnsupportedFormat,
    /// The recording could not be decoded.
    CorruptRecording,
    /// The shared-memory filesystem has no room for the decoded tables.
    ShmFull,
    /// The memory budget has no room, even after evicting what no client holds and
    /// waiting for releases.
    OverBudget,
    /// `release` named a lease the connection does not hold.
    UnknownLease,
    /// The client's user may not use this daemon (`--allow-uid`, `--allow-gid`).
    AccessDenied,
    /// The connection holds as many leases as a connection may (`--max-leases`).
    TooManyLeases,
    /// The daemon serves as many connections as it may (`--max-connections`); the
    /// connection is closed after this reply.
    TooManyConnections,
    /// Anything else.
    Internal,
    /// A code from a newer daemon that this client does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code a daemon of this protocol version sends.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::BadRequest,
        ErrorCode::FrameTooLarge,
        ErrorCode::HelloRequired,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownOp,
        ErrorCode::BadPath,
        ErrorCode::OutsideRoots,
        ErrorCode::NotFound,
        ErrorCode::UnsupportedFormat,
        ErrorCode::CorruptRecording,
        ErrorCode::ShmFull,
        ErrorCode::OverBudget,
        ErrorCode::UnknownLease,
        ErrorCode::AccessDenied,
        ErrorCode::TooManyLeases,
        ErrorCode::TooManyConnections,
        ErrorCode::Internal,
    ];

    /// The code as it is written on the wire (`not_found`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::BadPath => "bad_path",
            ErrorCode::OutsideRoots => "outside_roots",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnsupportedFormat => "unsupported_format",
            ErrorCode::CorruptRecording => "corrupt_recording",
            ErrorCode::ShmFull => "shm_full",
            ErrorCode::OverBudget => "over_budget",
            ErrorCode::UnknownLease => "unknown_lease",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::TooManyLeases => "too_many_leases",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

/// The body of a failed reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct ErrorReply {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What failed, for humans.
    pub message: String,
}

/// Why a reply line could not be turned into its reply type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The daemon answered with an error.
    #[error(transparent)]
    Daemon(#[from] ErrorReply),
    /// The line is not a reply of this protocol.
    #[error("malformed reply from evshmd: {0}")]
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_written_as_serde_writes_it() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
