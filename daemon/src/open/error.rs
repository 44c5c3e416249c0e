//! Why an open failed, in the daemon's own terms: the protocol edge (`wire`) turns each
//! into a stable error code and a message.

use std::sync::Arc;

use evshm_protocol::Window;

use crate::ingest::IngestError;
use crate::roots::PathError;

/// Why a recording, or a window of it, could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The path names no file that may be served.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The window ends before it starts.
    #[error("window [{}, {}) ends before it starts", .0.start, .0.end)]
    BadWindow(Window),
    /// Indexing or decoding the recording failed (shared by every request that waited
    /// for the same decode).
    #[error("{name}: {error}")]
    Ingest {
        /// The recording's name, as the client gave it.
        name: String,
        /// What failed.
        error: Arc<IngestError>,
    },
    /// The chunks asked for need more memory than the whole budget.
    #[error(
        "{name}: the chunks asked for need {needed} bytes decoded, more than the memory \
         budget of {limit} bytes; open it by time windows, or raise --memory-budget"
    )]
    OverBudget {
        /// The recording's name, as the client gave it.
        name: String,
        /// Bytes the chunks' segments need.
        needed: u64,
        /// The budget.
        limit: u64,
    },
    /// A resident chunk's segment could not be read to find a window's rows.
    #[error("cannot read segment {name}: {source}")]
    ReadSegment {
        /// The segment's name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl OpenError {
    /// An indexing or decoding failure of the recording the client calls `name`.
    pub fn ingest(name: &str, error: impl Into<Arc<IngestError>>) -> Self {
        OpenError::Ingest { name: name.to_owned(), error: error.into() }
    }
}
