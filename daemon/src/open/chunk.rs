//! One chunk of one version of a recording, opened on its own: what a Flight `DoGet`
//! needs (a ticket names a chunk of a version that an earlier open found).
//!
//! The same path as [`open`](super::open): the recording resolved under the roots, its
//! index, the chunk made resident through the cache within the budget. Only the choice of
//! chunks differs: the caller names one, and the version it expects.

use std::sync::Arc;

use evshm_formats::Geometry;
use evshm_protocol::Table;

use super::{ChunkTable, OpenError, target};
use crate::state::Daemon;

/// Why a chunk could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkOpenError {
    /// As for any open.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The file is not the version the chunk was asked of.
    #[error("{name} changed since it was opened (version {expected}, now {found}); open it again")]
    Changed {
        /// The recording's name.
        name: String,
        /// The version expected.
        expected: String,
        /// The version there now.
        found: String,
    },
    /// The recording has fewer chunks.
    #[error("{name} has no chunk {chunk}")]
    NoChunk {
        /// The recording's name.
        name: String,
        /// The chunk asked for (from 0).
        chunk: usize,
    },
}

/// Chunk `chunk` of table `table` of the recording at `path` (with `geometry` for a file
/// that states none), made resident unless it is, provided the file is still at version
/// `version` ([`FileIdentity::token`](crate::file::FileIdentity::token)).
pub fn open_chunk(
    daemon: &Arc<Daemon>,
    path: &str,
    table: Table,
    geometry: Option<Geometry>,
    chunk: usize,
    version: &str,
) -> Result<ChunkTable, ChunkOpenError> {
    let target = target(daemon, path, geometry)?;
    let found = target.identity.token();
    if found != version {
        let name = target.name.clone();
        return Err(ChunkOpenError::Changed { name, expected: version.to_owned(), found });
    }
    if target.bound(chunk)?.is_none() {
        return Err(ChunkOpenError::NoChunk { name: target.name.clone(), chunk });
    }
    let (resident, outcome) = target.fetch(chunk, daemon.budget.wait());
    let resident = resident.map_err(|e| OpenError::ingest(&target.name, e))?;
    if resident.identity != target.identity {
        // Decoded by another request from a newer version meanwhile.
        let found = resident.identity.token();
        return Err(ChunkOpenError::Changed {
            name: target.name.clone(),
            expected: version.to_owned(),
            found,
        });
    }
    Ok(ChunkTable { resident, table, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open::{OpenRequest, ReadPosition, open};
    use crate::testing::{TempDir, daemon, write_evt3};

    #[test]
    fn a_chunk_of_the_version_opened_and_nothing_else() {
        let dir = TempDir::new("open-chunk");
        let daemon = daemon(&dir, 20_000, u64::MAX);
        let path = dir.0.join("root/a.raw");
        write_evt3(&path, 50_000);
        let request =
            OpenRequest { path: "a.raw", table: Table::Events, geometry: None, window: None };
        let opened = open(&daemon, &request, &mut ReadPosition::default()).unwrap();
        let version = opened.target.identity.token();
        let last = opened.chunks.len() - 1;
        let one = open_chunk(&daemon, "a.raw", Table::Events, None, last, &version).unwrap();
        assert_eq!(one.stream().rows, opened.chunks[last].table.stream().rows);
        assert!(Arc::ptr_eq(&one.resident, &opened.chunks[last].table.resident));
        let beyond = open_chunk(&daemon, "a.raw", Table::Events, None, last + 1, &version);
        assert!(matches!(beyond, Err(ChunkOpenError::NoChunk { .. })), "{beyond:?}");
        let missing = open_chunk(&daemon, "b.raw", Table::Events, None, 0, &version);
        assert!(matches!(missing, Err(ChunkOpenError::Open(_))), "{missing:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
        write_evt3(&path, 40_000);
        let stale = open_chunk(&daemon, "a.raw", Table::Events, None, 0, &version);
        assert!(matches!(stale, Err(ChunkOpenError::Changed { .. })), "{stale:?}");
    }
}
