//! Why a recording could not be indexed, decoded or published: one error for the
//! modules that read files and fill extents, mapped to protocol codes by `wire`.

use std::path::PathBuf;

use evshm_formats::{DetectError, Geometry};

use crate::arena::ArenaError;

/// Why a recording could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// Reading the file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The recording.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A component of the path became a symbolic link after it was resolved (a path
    /// swapped while it was being opened).
    #[error("{path}: a part of the path became a symbolic link while it was opened; refused")]
    LinkInPath {
        /// The recording, as resolved.
        path: PathBuf,
    },
    /// The path no longer leads to a regular file (a FIFO, a device, a directory).
    #[error("{path} is not a regular file")]
    NotRegular {
        /// The recording.
        path: PathBuf,
    },
    /// The file is not a recording evshmd reads.
    #[error("{path}: {source}")]
    Unrecognized {
        /// The recording.
        path: PathBuf,
        /// What detection found.
        source: DetectError,
    },
    /// The file was replaced between the look at its version and its opening.
    #[error("{path} was replaced while it was being opened; retry")]
    Replaced {
        /// The recording.
        path: PathBuf,
    },
    /// The file changed between indexing and decoding.
    #[error("{path} changed while it was being decoded (had {counted} events, then others); retry")]
    Changed {
        /// The recording.
        path: PathBuf,
        /// Events the index counted in the chunk.
        counted: u64,
    },
    /// The caller gave a geometry that differs from the one the file states.
    #[error("{path} states a {}x{} sensor, not the {}x{} the request gives", stated.width, stated.height, given.width, given.height)]
    GeometryConflict {
        /// The recording.
        path: PathBuf,
        /// What the file states.
        stated: Geometry,
        /// What the caller gave.
        given: Geometry,
    },
    /// The memory budget has no room for the chunk's extent, even after evicting every
    /// recording no client holds and waiting for releases.
    #[error(
        "no room in the memory budget: the recording needs {needed} bytes, the budget is \
         {limit} bytes and {in_use} are allocated, in chunks clients hold or being decoded (waited {waited:?}); \
         release recordings or raise --memory-budget"
    )]
    OverBudget {
        /// Bytes the extent's pages add.
        needed: u64,
        /// The budget.
        limit: u64,
        /// Bytes allocated in the arenas.
        in_use: u64,
        /// How long the open waited.
        waited: std::time::Duration,
    },
    /// The decode stopped without a result (it panicked): a bug, logged by the panic.
    #[error("decoding {path} failed unexpectedly")]
    Aborted {
        /// The recording.
        path: PathBuf,
    },
    /// The index has no such chunk: a bug.
    #[error("{path} has no chunk {}", chunk + 1)]
    NoChunk {
        /// The recording.
        path: PathBuf,
        /// Position of the chunk asked for.
        chunk: usize,
    },
    /// No free run of the arenas is long enough for the chunk, and the arenas may not
    /// grow, even after evicting every chunk no client holds and waiting for releases.
    #[error(
        "no free run of {needed} bytes in evshmd's arenas: what is free lies between leased \
         chunks (waited {waited:?}); release recordings, or raise --memory-budget"
    )]
    NoRun {
        /// Bytes asked for.
        needed: u64,
        /// How long the open waited.
        waited: std::time::Duration,
    },
    /// No memory could be had in an arena.
    #[error(transparent)]
    Arena(#[from] ArenaError),
    /// Laying out the tables failed.
    #[error("cannot lay out the tables of {path}: {detail}")]
    Layout {
        /// The recording.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}
