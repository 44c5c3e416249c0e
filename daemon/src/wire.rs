//! The protocol edge: the daemon's results and errors as protocol replies. Every
//! `ErrorCode` the daemon sends for a failed open is chosen here, in one place.

use std::path::Path;

use evshm_formats::{DetectError, Geometry};
use evshm_protocol::schema::{EVENT_COLUMNS, TRIGGER_COLUMNS};
use evshm_protocol::{
    ArenaInfo, ChunkInfo, ClientStats, ErrorCode, ErrorReply, EvictReply, ExtentInfo, FieldInfo,
    OpenReply, RecordingEntry, StatsReply, Table,
};

use crate::access::AccessDenied;
use crate::arena::{Arena, ArenaError};
use crate::ingest::{IngestError, metadata};
use crate::listing::Listed;
use crate::open::{OpenError, Opened};
use crate::roots::PathError;
use crate::state::{Daemon, Evicted};
use crate::stats::{ClientEntry, Stats};

/// Largest sensor side a request may give (DAT's 14-bit coordinates).
const MAX_SIDE: u32 = 1 << 14;

/// The geometry an `open` request gives: both sides or neither.
pub fn requested_geometry(
    width: Option<u32>,
    height: Option<u32>,
) -> Result<Option<Geometry>, ErrorReply> {
    match (width, height) {
        (None, None) => Ok(None),
        (Some(width), Some(height))
            if (1..=MAX_SIDE).contains(&width) && (1..=MAX_SIDE).contains(&height) =>
        {
            Ok(Some(Geometry { width, height }))
        }
        _ => Err(ErrorReply::new(
            ErrorCode::BadRequest,
            format!("width and height go together, each from 1 to {MAX_SIDE}"),
        )),
    }
}

/// The reply to an open that failed: a stable code, and a message naming the recording
/// by the path the client used.
pub fn open_error(error: &OpenError) -> ErrorReply {
    let code = match error {
        OpenError::Path(PathError::Malformed { .. }) => ErrorCode::BadPath,
        OpenError::Path(PathError::OutsideRoots { .. }) => ErrorCode::OutsideRoots,
        OpenError::Path(PathError::NotFound { .. }) => ErrorCode::NotFound,
        OpenError::BadWindow(_) => ErrorCode::BadRequest,
        OpenError::OverBudget { .. } => ErrorCode::OverBudget,
        OpenError::Ingest { error, .. } => ingest_code(error),
        OpenError::ReadArena { .. } => ErrorCode::Internal,
    };
    let message = match error {
        // Detection's message names the file by its canonical path: name it as asked.
        OpenError::Ingest { name, error } => match &**error {
            IngestError::Unrecognized { source, .. } => format!("{name}: {source}"),
            other => format!("{name}: {other}"),
        },
        other => other.to_string(),
    };
    ErrorReply::new(code, message)
}

fn ingest_code(error: &IngestError) -> ErrorCode {
    match error {
        IngestError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ErrorCode::NotFound
        }
        IngestError::NotRegular { .. } => ErrorCode::NotFound,
        IngestError::LinkInPath { .. } => ErrorCode::OutsideRoots,
        IngestError::GeometryConflict { .. } => ErrorCode::BadRequest,
        IngestError::Unrecognized { source: DetectError::BadGeometry { .. }, .. }
        | IngestError::Changed { .. }
        | IngestError::Replaced { .. } => ErrorCode::CorruptRecording,
        IngestError::Unrecognized { .. } => ErrorCode::UnsupportedFormat,
        IngestError::Arena(ArenaError::Full { .. }) => ErrorCode::ShmFull,
        IngestError::OverBudget { .. } | IngestError::NoRun { .. } => ErrorCode::OverBudget,
        _ => ErrorCode::Internal,
    }
}

/// The reply to a connection beyond `--max-connections`.
pub fn too_many_connections(limit: usize) -> ErrorReply {
    ErrorReply::new(
        ErrorCode::TooManyConnections,
        format!(
            "evshmd serves {limit} connections, the most it allows (--max-connections); close \
             idle clients or raise the limit"
        ),
    )
}

/// The reply to a connection the allow-lists refuse.
pub fn access_denied(denied: &AccessDenied) -> ErrorReply {
    ErrorReply::new(ErrorCode::AccessDenied, denied.to_string())
}

/// The position of `arena` in `arenas` (which holds it).
fn position(arenas: &[&std::sync::Arc<Arena>], arena: &std::sync::Arc<Arena>) -> u32 {
    arenas.iter().position(|a| std::sync::Arc::ptr_eq(a, arena)).unwrap_or(0) as u32
}

/// The reply to a successful open, under `lease`. `passed(arena)` says whether the
/// arena's descriptor goes with it (sealed mode, first time on the connection), in the
/// order of the arenas listed; `gone` names arenas told before that evshmd dropped.
pub fn open_reply(
    opened: &Opened,
    lease: u64,
    passed: impl Fn(&Arena) -> bool,
    gone: Vec<String>,
) -> OpenReply {
    let Opened { target, table, window, chunks, cached } = opened;
    let columns = match table {
        Table::Events => &EVENT_COLUMNS[..],
        Table::Triggers => &TRIGGER_COLUMNS[..],
    };
    let arenas_of = opened.arenas();
    let arenas = (arenas_of.iter())
        .map(|arena| ArenaInfo {
            name: arena.name().to_owned(),
            path: arena.path().map(Path::to_owned),
            size: arena.size(),
            passed: passed(arena),
        })
        .collect();
    OpenReply {
        lease,
        path: target.name.clone(),
        table: *table,
        window: *window,
        rows: chunks.iter().map(|s| s.end - s.start).sum(),
        arenas,
        chunks: (chunks.iter())
            .map(|s| {
                let extent = &s.table.resident.decoded.extent;
                let stream = s.table.stream();
                ChunkInfo {
                    index: s.chunk as u64,
                    extent: ExtentInfo {
                        arena: position(&arenas_of, extent.arena()),
                        offset: extent.offset() + stream.offset,
                        size: stream.len,
                    },
                    rows: stream.rows,
                    start: s.start,
                    end: s.end,
                }
            })
            .collect(),
        format: target.detected.format.name().to_owned(),
        width: target.detected.geometry.width,
        height: target.detected.geometry.height,
        schema: (columns.iter())
            .map(|(name, ty)| FieldInfo {
                name: (*name).to_owned(),
                data_type: ty.to_string().to_lowercase(),
            })
            .collect(),
        metadata: metadata(&target.detected, &target.name).into_iter().collect(),
        cached: *cached,
        dropped: chunks.iter().map(|s| s.table.resident.decoded.report.outside_geometry).sum(),
        skipped: chunks.iter().map(|s| s.table.resident.decoded.report.stats.skipped()).sum(),
        gone,
    }
}

/// The reply to `evict`.
pub fn evict_reply(evicted: Evicted) -> EvictReply {
    EvictReply { evicted: evicted.chunks, bytes_evicted: evicted.bytes }
}

/// A recording of `list`.
pub fn recording_entry(listed: Listed) -> RecordingEntry {
    let Listed { name, format, size, decoded } = listed;
    RecordingEntry { path: name, format: format.to_owned(), size, decoded }
}

/// The reply to `stats`.
pub fn stats_reply(daemon: &Daemon) -> StatsReply {
    let stats = &daemon.stats;
    let arenas = daemon.arenas.usage();
    let bytes_resident = arenas.bytes_in_use;
    let bytes_evictable = daemon.cache.evictable_bytes().min(bytes_resident);
    let shm_free = rustix::fs::statvfs(daemon.arenas.dir())
        .map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize));
    StatsReply {
        extents: arenas.extents,
        bytes_resident,
        leases: Stats::get(&stats.leases),
        connections: Stats::get(&stats.connections),
        opens: Stats::get(&stats.opens),
        decodes: Stats::get(&stats.decodes),
        cache_hits: Stats::get(&stats.cache_hits),
        errors: Stats::get(&stats.errors),
        evictions: Stats::get(&stats.evictions),
        memory_budget: daemon.budget.limit(),
        bytes_evictable,
        bytes_leased: bytes_resident - bytes_evictable,
        bytes_evicted: Stats::get(&stats.bytes_evicted),
        bytes_indexed: Stats::get(&stats.bytes_indexed),
        shm_free,
        arenas: arenas.arenas,
        bytes_arenas: arenas.bytes_arenas,
        bytes_free: arenas.bytes_free,
        bytes_provisioned: arenas.bytes_provisioned,
        largest_free: arenas.largest_free,
        clients: daemon.clients.list().into_iter().map(client_stats).collect(),
    }
}

fn client_stats(entry: ClientEntry) -> ClientStats {
    let ClientEntry { pid, uid, name, leases } = entry;
    ClientStats { pid, uid, client: name, leases }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn code_and_message(error: OpenError) -> (ErrorCode, String) {
        let reply = open_error(&error);
        (reply.code, reply.message)
    }

    #[test]
    fn each_open_error_has_its_code_and_names_the_path_as_asked() {
        let path = |why: &str| PathError::NotFound { path: "a.raw".into(), why: why.into() };
        assert_eq!(code_and_message(OpenError::Path(path("no file a.raw"))).0, ErrorCode::NotFound);
        let malformed = PathError::Malformed { path: "..".into(), why: "contains `..`" };
        assert_eq!(code_and_message(OpenError::Path(malformed)).0, ErrorCode::BadPath);
        let outside = PathError::OutsideRoots { path: "/etc".into(), why: "lies outside".into() };
        assert_eq!(code_and_message(OpenError::Path(outside)).0, ErrorCode::OutsideRoots);
        let window = evshm_protocol::Window { start: 2, end: 1 };
        assert_eq!(code_and_message(OpenError::BadWindow(window)).0, ErrorCode::BadRequest);
        let over = OpenError::OverBudget {
            name: "a.raw".into(),
            window: None,
            chunks: 0..1,
            needed: 2,
            limit: 1,
        };
        assert_eq!(code_and_message(over).0, ErrorCode::OverBudget);

        let unrecognized = IngestError::Unrecognized {
            path: "/srv/root/notes.txt".into(),
            source: DetectError::Unrecognized { reason: "no header".into() },
        };
        let (code, message) = code_and_message(OpenError::ingest("notes.txt", unrecognized));
        assert_eq!(code, ErrorCode::UnsupportedFormat);
        assert!(message.starts_with("notes.txt: "), "named as asked: {message}");
        assert!(!message.contains("/srv/root"), "not by the daemon's path: {message}");
        let aborted = Arc::new(IngestError::Aborted { path: "/srv/root/a.raw".into() });
        let (code, _) =
            code_and_message(OpenError::Ingest { name: "a.raw".into(), error: aborted });
        assert_eq!(code, ErrorCode::Internal);
    }

    /// The chunks of a whole-file open add up to what one decode of the file counts:
    /// words before the first time word only in the first chunk, a truncated word only in
    /// the last, unknown words once each wherever they fall.
    #[test]
    fn skipped_adds_up_over_the_chunks_to_a_whole_decode() {
        use crate::open::{OpenRequest, ReadPosition, open};
        use crate::testing::{TempDir, daemon, write_evt3};

        let dir = TempDir::new("wire-skipped");
        let daemon = daemon(&dir, 20_000, u64::MAX);
        let path = dir.0.join("root/a.raw");
        write_evt3(&path, 100_000);
        let clean = std::fs::read(&path).unwrap();
        let data_offset = evshm_formats::detect(&clean, None).unwrap().data_offset;
        // Three ADDR_X words before the first TIME_HIGH, a word of the undefined type 1
        // every 9,973 words, and half a word at the end.
        let mut file = clean[..data_offset].to_vec();
        file.extend([0x2005u16, 0x2006, 0x2007].iter().flat_map(|w| w.to_le_bytes()));
        let mut unknown = 0;
        for (i, word) in clean[data_offset..].chunks(2).enumerate() {
            if i % 9_973 == 9_972 {
                file.extend(0x1000u16.to_le_bytes());
                unknown += 1;
            }
            file.extend(word);
        }
        file.push(0x80);
        std::fs::write(&path, &file).unwrap();

        let mut whole = evshm_formats::Decoder::new(evshm_formats::Format::Evt3);
        whole.feed(&file[data_offset..], &mut evshm_formats::CountingSink::default());
        assert_eq!(whole.stats().skipped(), 3 + unknown + 1);

        let request =
            OpenRequest { path: "a.raw", table: Table::Events, geometry: None, window: None };
        let opened = open(&daemon, &request, &mut ReadPosition::default()).unwrap();
        assert!(opened.chunks.len() > 3, "in chunks: {}", opened.chunks.len());
        let reply = open_reply(&opened, 1, |_| false, Vec::new());
        assert_eq!(reply.skipped, whole.stats().skipped());
        assert_eq!(reply.rows, 100_000, "the injected words change no event");
    }

    #[test]
    fn geometry_comes_whole_and_bounded() {
        assert_eq!(requested_geometry(None, None), Ok(None));
        let given = requested_geometry(Some(640), Some(480)).unwrap();
        assert_eq!(given, Some(Geometry { width: 640, height: 480 }));
        for (w, h) in [(Some(640), None), (Some(0), Some(1)), (Some(1), Some(MAX_SIDE + 1))] {
            assert_eq!(requested_geometry(w, h).unwrap_err().code, ErrorCode::BadRequest);
        }
    }
}
