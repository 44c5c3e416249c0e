//! The Flight service's errors as gRPC statuses: the protocol's stable error code first in
//! the message (`evshm:<code>: <message>`), so that clients raise the same exceptions as
//! for a local open, and a gRPC code chosen to match it.

use evshm_protocol::{ErrorCode, ErrorReply};
use tonic::{Code, Status};

use super::ticket::TicketError;
use crate::open::{ChunkOpenError, OpenError};

/// The prefix of every message of an error this service chose.
pub const PREFIX: &str = "evshm:";

/// An error reply of the control protocol as a status.
pub fn from_reply(reply: &ErrorReply) -> Status {
    let code = match reply.code {
        ErrorCode::BadRequest | ErrorCode::BadPath => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::OutsideRoots | ErrorCode::AccessDenied => Code::PermissionDenied,
        ErrorCode::ShmFull | ErrorCode::OverBudget | ErrorCode::TooManyLeases => {
            Code::ResourceExhausted
        }
        ErrorCode::UnsupportedFormat | ErrorCode::CorruptRecording => Code::FailedPrecondition,
        _ => Code::Internal,
    };
    Status::new(code, format!("{PREFIX}{}: {}", reply.code.as_str(), reply.message))
}

/// A failed open, as the local protocol would report it.
pub fn open_error(error: &OpenError) -> Status {
    from_reply(&crate::wire::open_error(error))
}

/// A failed chunk open: a file changed since its ticket was made is `stale_ticket`.
pub fn chunk_error(error: &ChunkOpenError) -> Status {
    match error {
        ChunkOpenError::Open(open) => open_error(open),
        ChunkOpenError::Changed { .. } => {
            Status::failed_precondition(format!("{PREFIX}stale_ticket: {error}"))
        }
        ChunkOpenError::NoChunk { .. } => {
            Status::invalid_argument(format!("{PREFIX}bad_ticket: {error}"))
        }
    }
}

/// A refused ticket or descriptor.
pub fn ticket_error(error: &TicketError) -> Status {
    Status::invalid_argument(format!("{PREFIX}bad_request: {error}"))
}

/// Anything else that should not happen: the daemon's fault, said so.
pub fn internal(what: impl std::fmt::Display) -> Status {
    Status::internal(format!("{PREFIX}internal: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_lead_the_message() {
        let status = from_reply(&ErrorReply::new(ErrorCode::NotFound, "a.raw: no such file"));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "evshm:not_found: a.raw: no such file");
        let over = from_reply(&ErrorReply::new(ErrorCode::OverBudget, "too big"));
        assert_eq!(over.code(), Code::ResourceExhausted);
        let changed =
            ChunkOpenError::Changed { name: "a".into(), expected: "1".into(), found: "2".into() };
        assert!(chunk_error(&changed).message().starts_with("evshm:stale_ticket: "));
    }
}
