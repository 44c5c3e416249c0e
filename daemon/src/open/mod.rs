//! What happens on `open`, in one place: resolve the path, find or build the recording's
//! index, pick the chunks a window needs, make them resident (in parallel, within the
//! budget), find the window's rows in them, and read ahead for a reader moving forward.
//!
//! It knows nothing of sockets or the wire: it returns an [`Opened`] or an [`OpenError`],
//! and the session turns either into a reply.

mod chunk;
mod error;
mod target;

use std::path::PathBuf;
use std::sync::Arc;

use evshm_formats::Geometry;
use evshm_protocol::{Table, Window};

pub use chunk::{ChunkOpenError, open_chunk};
pub use error::OpenError;
pub use target::Target;

use crate::arena::StreamAt;
use crate::cache::{Outcome, Resident};
use crate::file::{FileIdentity, RecordingFile};
use crate::ingest::{IngestError, TableStream};
use crate::recording::RecordingIndex;
use crate::state::Daemon;
use crate::stats::Stats;
use crate::window::{ChunkRows, Selected, candidates, select};

/// What a request asks to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest<'a> {
    /// The path as the client names it.
    pub path: &'a str,
    /// Which of the recording's tables.
    pub table: Table,
    /// The geometry to use if the file states none.
    pub geometry: Option<Geometry>,
    /// Only the rows of this window, or all of them.
    pub window: Option<Window>,
}

/// An opened recording, or window of it: its resident chunks and the rows of each.
#[derive(Debug)]
pub struct Opened {
    /// The recording's version that was opened.
    pub target: Target,
    /// The table opened.
    pub table: Table,
    /// The window asked for, if any.
    pub window: Option<Window>,
    /// The chunks holding the rows, in time order, and which rows of each.
    pub chunks: Vec<Selected<ChunkTable>>,
    /// Whether every chunk was resident already (nothing was decoded for this open).
    pub cached: bool,
}

impl Opened {
    /// The arenas its chunks lie in, each once, in the order of the chunks.
    pub fn arenas(&self) -> Vec<&Arc<crate::arena::Arena>> {
        let mut arenas: Vec<&Arc<crate::arena::Arena>> = Vec::new();
        for s in &self.chunks {
            let arena = s.table.resident.decoded.extent.arena();
            if !arenas.iter().any(|seen| Arc::ptr_eq(seen, arena)) {
                arenas.push(arena);
            }
        }
        arenas
    }
}

/// Where a connection read its last window: a connection whose windows move forward gets
/// the next chunks decoded ahead of it.
#[derive(Debug, Default)]
pub struct ReadPosition {
    last: Option<(PathBuf, usize)>,
}

/// Opens a recording, or a window of it, for a request (see the module's doc).
pub fn open(
    daemon: &Arc<Daemon>,
    request: &OpenRequest<'_>,
    position: &mut ReadPosition,
) -> Result<Opened, OpenError> {
    if let Some(w) = request.window.filter(|w| w.start > w.end) {
        return Err(OpenError::BadWindow(w));
    }
    let opened = open_once(daemon, request, position)?;
    // Arenas changed by someone else are retired (their chunks are decoded anew): once.
    if opened.arenas().iter().all(|arena| arena.check_intact()) {
        return Ok(opened);
    }
    drop(opened);
    open_once(daemon, request, position)
}

/// One attempt at [`open`].
fn open_once(
    daemon: &Arc<Daemon>,
    request: &OpenRequest<'_>,
    position: &mut ReadPosition,
) -> Result<Opened, OpenError> {
    let OpenRequest { path, table, geometry, window } = *request;
    let target = target(daemon, path, geometry)?;
    let threads = daemon.settings.decode_threads;
    // A whole-file open of a recording not indexed to its end decodes while indexing.
    let pipelined = window.is_none() && target.recording.chunks_if_complete().is_none();
    let mut prefetched = Vec::new();
    if pipelined {
        prefetched = target.fetch_whole(threads)?.into_iter().map(Some).collect();
    }
    let likely = candidates(window, |chunk| target.bound(chunk))?;
    let cold = !pipelined && likely.clone().any(|chunk| !target.is_resident(chunk));
    if cold {
        let needed = target.bytes_needed(likely.clone())?;
        let limit = daemon.budget.limit();
        if needed > limit {
            let name = target.name.clone();
            return Err(OpenError::OverBudget { name, window, chunks: likely, needed, limit });
        }
        prefetched = target.fetch_all(likely.clone(), threads);
    }
    let chunks = select(
        window,
        |chunk| target.bound(chunk),
        |chunk| {
            let early = chunk.checked_sub(likely.start).and_then(|i| prefetched.get_mut(i));
            let (resident, outcome) = early
                .and_then(Option::take)
                .unwrap_or_else(|| target.fetch(chunk, daemon.budget.wait()));
            let resident = resident.map_err(|e| OpenError::ingest(&target.name, e))?;
            Ok::<_, OpenError>(ChunkTable { resident, table, outcome })
        },
    )?;
    drop(prefetched);
    if let (Some(_), Some(last)) = (window, chunks.last()) {
        let forward = (position.last.as_ref())
            .is_some_and(|(file, chunk)| *file == target.file && last.chunk >= *chunk);
        if forward {
            target.read_ahead(last.chunk + 1..last.chunk + 1 + daemon.settings.read_ahead);
        }
        position.last = Some((target.file.clone(), last.chunk));
    }
    let cached = chunks.iter().all(|s| s.table.outcome != Outcome::Decoded);
    if cached {
        Stats::bump(&daemon.stats.cache_hits);
    }
    Ok(Opened { target, table, window, chunks, cached })
}

/// The recording at `path` as a request sees it, its chunk index built on first use.
fn target(
    daemon: &Arc<Daemon>,
    path: &str,
    geometry: Option<Geometry>,
) -> Result<Target, OpenError> {
    let resolved = daemon.roots.resolve(path)?;
    let name = resolved.name;
    // Which version is there now, without following a link: a warm open costs this one
    // call. Whatever this says, bytes are only ever read through the descriptor of an
    // index, opened safely once per version, whose identity is this one.
    let identity = FileIdentity::look(&resolved.file).map_err(|e| OpenError::ingest(&name, e))?;
    let recording = (daemon.indexes)
        .get(&resolved.file, identity, || {
            let file = RecordingFile::open(&resolved.file)?;
            if file.identity() != identity {
                // Replaced between the look and the open: this version is gone already.
                return Err(IngestError::Replaced { path: resolved.file.clone() });
            }
            let detected = file.detect()?;
            let limits = daemon.settings.chunk_limits;
            Ok(RecordingIndex::new(detected, Arc::new(file), name.clone(), limits))
        })
        .map_err(|e: IngestError| OpenError::ingest(&name, e))?;
    let detected = match geometry {
        None => recording.detected.clone(),
        Some(given) => recording.detected.clone().with_geometry(given).map_err(|stated| {
            let conflict =
                IngestError::GeometryConflict { path: resolved.file.clone(), stated, given };
            OpenError::ingest(&name, conflict)
        })?,
    };
    let daemon = Arc::clone(daemon);
    Ok(Target { daemon, file: resolved.file, name, geometry, identity, recording, detected })
}

/// One table of a resident chunk, held for a reply (and then by its lease).
#[derive(Debug)]
pub struct ChunkTable {
    /// The chunk.
    pub resident: Arc<Resident>,
    /// Which of its tables.
    pub table: Table,
    /// How this open got it.
    pub outcome: Outcome,
}

impl ChunkTable {
    /// The table's stream.
    pub fn stream(&self) -> &TableStream {
        self.resident.decoded.table(self.table)
    }

    /// The stream's bytes, in the daemon's mapping of the arena.
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        let stream = self.stream();
        let start = stream.offset as usize;
        &self.resident.decoded.extent.bytes()[start..start + stream.len as usize]
    }
}

impl ChunkRows for ChunkTable {
    type Error = OpenError;

    fn rows(&self) -> u64 {
        self.stream().rows
    }

    fn first_at_or_after(&self, time: i64, from: u64) -> Result<u64, OpenError> {
        let extent = &self.resident.decoded.extent;
        let stream = StreamAt { extent, offset: self.stream().offset };
        let found = self.stream().times.first_at_or_after(&stream, time, from as usize);
        found.map(|row| row as u64).map_err(|source| OpenError::ReadArena {
            arena: extent.arena().name().to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;

    use super::*;
    use crate::roots::PathError;
    use crate::testing::{TempDir, daemon, synthetic, write_evt3};

    fn request(path: &str, window: Option<Window>) -> OpenRequest<'_> {
        OpenRequest { path, table: Table::Events, geometry: None, window }
    }

    /// The times of the rows an open selected, read back from the arenas.
    fn times(opened: &Opened) -> Vec<i64> {
        let mut times = Vec::new();
        for s in &opened.chunks {
            let stream = std::io::Cursor::new(s.table.bytes());
            for batch in arrow_ipc::reader::StreamReader::try_new(stream, None).unwrap() {
                let batch = batch.unwrap();
                let column = batch.column(0).as_primitive::<Int64Type>().values();
                times.extend_from_slice(&column[s.start as usize..s.end as usize]);
            }
        }
        times
    }

    #[test]
    fn whole_recordings_and_windows_without_a_socket() {
        let dir = TempDir::new("open");
        let daemon = daemon(&dir, 20_000, u64::MAX);
        write_evt3(&dir.0.join("root/a.raw"), 100_000);
        let expected: Vec<i64> = synthetic(100_000).map(|e| e.t).collect();
        let mut position = ReadPosition::default();

        let whole = open(&daemon, &request("a.raw", None), &mut position).unwrap();
        assert!(whole.chunks.len() > 1, "in chunks");
        assert!(!whole.cached);
        assert_eq!(times(&whole), expected);
        let again = open(&daemon, &request("a.raw", None), &mut position).unwrap();
        assert!(again.cached, "every chunk resident: no decode");

        let (t0, t1) = (expected[30_000], expected[70_000]);
        let window = Window { start: t0, end: t1 };
        let windowed = open(&daemon, &request("a.raw", Some(window)), &mut position).unwrap();
        let within: Vec<i64> = expected.iter().copied().filter(|t| (t0..t1).contains(t)).collect();
        assert_eq!(times(&windowed), within);
    }

    #[test]
    fn failures_are_domain_errors() {
        let dir = TempDir::new("open-errors");
        let daemon = daemon(&dir, 20_000, 1 << 16);
        write_evt3(&dir.0.join("root/a.raw"), 100_000);
        std::fs::write(dir.0.join("root/notes.txt"), b"not events\n").unwrap();
        let mut position = ReadPosition::default();
        let mut fail = |path: &str, window| open(&daemon, &request(path, window), &mut position);
        assert!(matches!(
            fail("missing.raw", None),
            Err(OpenError::Path(PathError::NotFound { .. }))
        ));
        assert!(matches!(
            fail("../a.raw", None),
            Err(OpenError::Path(PathError::Malformed { .. }))
        ));
        let backwards = Window { start: 5, end: 4 };
        assert!(matches!(fail("a.raw", Some(backwards)), Err(OpenError::BadWindow(_))));
        match fail("a.raw", None) {
            Err(OpenError::OverBudget { needed, limit, .. }) => assert!(needed > limit),
            other => panic!("{other:?}"),
        }
        assert!(matches!(fail("notes.txt", None), Err(OpenError::Ingest { .. })));
    }
}
