//! One client connection: framing, the hello handshake, requests and the leases they hold.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use evshm::protocol::{
    ChunkInfo, ErrorCode, ErrorReply, FieldInfo, HelloReply, ListReply, MAX_REQUEST_LINE,
    OpenReply, PROTOCOL_VERSION, RecordingEntry, ReleaseReply, Request, SegmentInfo, StatsReply,
    Table, Window, reply_line,
};
use evshm::schema::{EVENT_COLUMNS, TRIGGER_COLUMNS};
use evshm_formats::Geometry;

use crate::access::Peer;
use crate::cache::{FileIdentity, Key, Outcome, Resident};
use crate::chunks::{Target, over_budget};
use crate::framing::{FrameError, await_request, discard_line, read_request_line, write_reply};
use crate::ingest::{IngestError, TableSegment, detect_file, metadata};
use crate::recording::RecordingIndex;
use crate::server::Daemon;
use crate::stats::Stats;
use crate::window::{ChunkRows, candidates, select};

/// Serves one connection until the client closes it or breaks the framing.
pub fn serve_connection(daemon: &Arc<Daemon>, stream: UnixStream) {
    // Declared first, so dropped last: the connection stops counting once its socket is
    // closed, not before.
    let mut session = Session::new(daemon);
    let frame_timeout = daemon.settings.frame_timeout;
    let timeouts = stream
        .set_read_timeout(Some(frame_timeout))
        .and_then(|()| stream.set_write_timeout(Some(frame_timeout)));
    let Ok(read_half) = timeouts.and_then(|()| stream.try_clone()) else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let admitted = Peer::of(&writer)
        .map_err(|e| ErrorReply::new(ErrorCode::Internal, format!("no peer credentials: {e}")))
        .and_then(|peer| daemon.access.check(&peer).map(|()| peer));
    match admitted {
        Ok(peer) => session.admit(peer),
        Err(refusal) => {
            log::warn!("refused a connection: {}", refusal.message);
            // Answer the first request, so the refusal is read rather than lost.
            let _ = read_request_line(&mut reader, false);
            let _ = writer.write_all(&session.error(refusal));
            return;
        }
    }
    loop {
        if session.greeted {
            await_request(&reader);
        }
        let (reply, keep_going) = match read_request_line(&mut reader, session.greeted) {
            Ok(Some(line)) => (session.handle(&line), true),
            Ok(None) => return,
            Err(FrameError::TooLarge) => {
                let message = format!("request line longer than {MAX_REQUEST_LINE} bytes");
                (session.error(ErrorReply::new(ErrorCode::FrameTooLarge, message)), false)
            }
            Err(FrameError::Stalled) => {
                let message =
                    format!("request line not finished within {frame_timeout:?}; closing");
                (session.error(ErrorReply::new(ErrorCode::BadRequest, message)), false)
            }
            Err(FrameError::NoHello) => {
                let message = format!("no hello within {frame_timeout:?}; closing");
                (session.error(ErrorReply::new(ErrorCode::HelloRequired, message)), false)
            }
            Err(FrameError::Io(e)) => {
                log::debug!("connection read failed: {e}");
                return;
            }
        };
        if let Err(e) = write_reply(&writer, &reply, std::mem::take(&mut session.passing)) {
            log::debug!("connection write failed: {e}");
            return;
        }
        if !keep_going {
            // Closing with unread input would reset the connection and could destroy the
            // error reply before the client reads it: consume the rest of the line first.
            let _ = writer.shutdown(std::net::Shutdown::Write);
            discard_line(&mut reader);
            return;
        }
    }
}

/// The protocol state of one connection.
struct Session<'d> {
    daemon: &'d Arc<Daemon>,
    /// Who is at the other end, once admitted.
    peer: Option<Peer>,
    /// Its entry in the daemon's list of clients, once admitted.
    client_id: Option<u64>,
    /// Segments' descriptors to pass with the next reply (sealed mode).
    passing: Vec<OwnedFd>,
    greeted: bool,
    /// The chunks each lease holds.
    leases: HashMap<u64, Vec<Arc<Resident>>>,
    /// The file and last chunk of the previous window request, to tell a reader moving
    /// forward (worth reading ahead for).
    last_window: Option<(PathBuf, usize)>,
}

impl<'d> Session<'d> {
    fn new(daemon: &'d Arc<Daemon>) -> Self {
        daemon.stats.connections.fetch_add(1, Ordering::Relaxed);
        Self {
            daemon,
            peer: None,
            client_id: None,
            passing: Vec::new(),
            greeted: false,
            leases: HashMap::new(),
            last_window: None,
        }
    }

    fn admit(&mut self, peer: Peer) {
        self.peer = Some(peer);
        self.client_id = Some(self.daemon.clients.add(peer.pid, peer.uid));
    }

    /// Keeps the daemon's list of clients in step with this session.
    fn update_client(&self, change: impl FnOnce(&mut evshm::protocol::ClientStats)) {
        if let Some(id) = self.client_id {
            self.daemon.clients.update(id, change);
        }
    }

    /// Answers one request line with one reply line.
    fn handle(&mut self, line: &[u8]) -> Vec<u8> {
        match self.dispatch(line) {
            Ok(reply) => reply,
            Err(error) => self.error(error),
        }
    }

    fn error(&self, error: ErrorReply) -> Vec<u8> {
        Stats::bump(&self.daemon.stats.errors);
        log::debug!("error reply: {error}");
        error.to_line()
    }

    fn dispatch(&mut self, line: &[u8]) -> Result<Vec<u8>, ErrorReply> {
        let request = Request::parse(line)?;
        if !self.greeted && !matches!(request, Request::Hello { .. }) {
            return Err(ErrorReply::new(
                ErrorCode::HelloRequired,
                "the first request on a connection must be hello",
            ));
        }
        Ok(match request {
            Request::Hello { version, client } => {
                if version != PROTOCOL_VERSION {
                    return Err(ErrorReply::new(
                        ErrorCode::UnsupportedVersion,
                        format!(
                            "client speaks protocol version {version}; this daemon speaks \
                             version {PROTOCOL_VERSION}"
                        ),
                    ));
                }
                self.greeted = true;
                self.update_client(|c| c.client.clone_from(&client));
                let who = client.as_deref().unwrap_or("an unnamed client");
                match self.peer {
                    Some(p) => log::debug!("hello from {who} (pid {}, uid {})", p.pid, p.uid),
                    None => log::debug!("hello from {who}"),
                }
                let server = format!("evshmd/{}", env!("CARGO_PKG_VERSION"));
                reply_line(&HelloReply { version: PROTOCOL_VERSION, server })
            }
            Request::List => reply_line(&self.list()),
            Request::Open { path, table, width, height, window } => {
                let geometry = requested_geometry(width, height)?;
                reply_line(&self.open(&path, table, geometry, window)?)
            }
            Request::Release { lease } => {
                if self.leases.remove(&lease).is_none() {
                    return Err(ErrorReply::new(
                        ErrorCode::UnknownLease,
                        format!("lease {lease} is not held by this connection"),
                    ));
                }
                self.daemon.stats.leases.fetch_sub(1, Ordering::Relaxed);
                self.update_client(|c| c.leases -= 1);
                self.daemon.budget.notify_released();
                reply_line(&ReleaseReply {})
            }
            Request::Stats => reply_line(&self.stats()),
            _ => {
                return Err(ErrorReply::new(ErrorCode::UnknownOp, "request not supported"));
            }
        })
    }

    fn list(&self) -> ListReply {
        let cache = &self.daemon.cache;
        let recordings = (self.daemon.roots.files().into_iter())
            .filter_map(|(path, file)| {
                let detected = detect_file(&file).ok()?;
                let metadata = std::fs::metadata(&file).ok()?;
                let key = Key { file: file.clone(), geometry: None, chunk: 0 };
                let decoded = cache.is_resident(&key, FileIdentity::of(&metadata));
                let format = detected.format.name().to_owned();
                Some(RecordingEntry { path, format, size: metadata.len(), decoded })
            })
            .collect();
        ListReply { recordings }
    }

    fn open(
        &mut self,
        path: &str,
        table: Table,
        geometry: Option<Geometry>,
        window: Option<Window>,
    ) -> Result<OpenReply, ErrorReply> {
        let daemon = self.daemon;
        Stats::bump(&daemon.stats.opens);
        if self.leases.len() >= daemon.settings.max_leases {
            return Err(ErrorReply::new(
                ErrorCode::TooManyLeases,
                format!(
                    "this connection holds {} leases, the most evshmd allows (--max-leases); \
                     release some first",
                    self.leases.len()
                ),
            ));
        }
        if let Some(w) = window.filter(|w| w.start > w.end) {
            return Err(ErrorReply::new(
                ErrorCode::BadRequest,
                format!("window [{}, {}) ends before it starts", w.start, w.end),
            ));
        }
        let target = self.target(path, geometry)?;
        let likely = candidates(window, |chunk| target.bound(chunk))?;
        let cold = likely.clone().any(|chunk| !target.is_resident(chunk));
        let mut prefetched = Vec::new();
        if cold {
            let needed = target.bytes_needed(likely.clone())?;
            if needed > daemon.budget.limit() {
                return Err(over_budget(&target.source, needed, daemon.budget.limit()));
            }
            prefetched = target.fetch_all(likely.clone(), daemon.settings.decode_threads);
        }
        let selected = select(
            window,
            |chunk| target.bound(chunk),
            |chunk| {
                let early = chunk.checked_sub(likely.start).and_then(|i| prefetched.get_mut(i));
                let (resident, outcome) = early
                    .and_then(Option::take)
                    .unwrap_or_else(|| target.fetch(chunk, daemon.budget.wait()));
                Ok::<_, ErrorReply>(ChunkTable { resident: resident?, table, outcome })
            },
        )?;
        drop(prefetched);
        if let (Some(_), Some(last)) = (window, selected.last()) {
            let forward = (self.last_window.as_ref())
                .is_some_and(|(file, chunk)| *file == target.file && last.chunk >= *chunk);
            if forward {
                target.read_ahead(last.chunk + 1..last.chunk + 1 + daemon.settings.read_ahead);
            }
            self.last_window = Some((target.file.clone(), last.chunk));
        }
        let cached = selected.iter().all(|s| s.table.outcome != Outcome::Decoded);
        if cached {
            Stats::bump(&daemon.stats.cache_hits);
        }
        let mut chunks = Vec::with_capacity(selected.len());
        for s in &selected {
            let segment = &s.table.segment().segment;
            if segment.path().is_none() {
                let fd = segment.share().map_err(|e| {
                    ErrorReply::new(ErrorCode::Internal, format!("cannot pass a segment: {e}"))
                })?;
                self.passing.push(fd);
            }
            chunks.push(ChunkInfo {
                index: s.chunk as u64,
                segment: SegmentInfo {
                    name: segment.name().to_owned(),
                    path: segment.path().map(Path::to_owned),
                    size: segment.len(),
                },
                rows: s.table.rows(),
                start: s.start,
                end: s.end,
            });
        }
        let columns = match table {
            Table::Events => &EVENT_COLUMNS[..],
            Table::Triggers => &TRIGGER_COLUMNS[..],
        };
        let lease = daemon.next_lease.fetch_add(1, Ordering::Relaxed);
        let reply = OpenReply {
            lease,
            path: target.source.clone(),
            table,
            window,
            rows: selected.iter().map(|s| s.end - s.start).sum(),
            chunks,
            format: target.detected.format.name().to_owned(),
            width: target.detected.geometry.width,
            height: target.detected.geometry.height,
            schema: columns
                .iter()
                .map(|(name, ty)| FieldInfo {
                    name: (*name).to_owned(),
                    data_type: ty.to_string().to_lowercase(),
                })
                .collect(),
            metadata: metadata(&target.detected, &target.source).into_iter().collect(),
            cached,
            dropped: selected
                .iter()
                .map(|s| s.table.resident.published.report.outside_geometry)
                .sum(),
        };
        self.leases.insert(lease, selected.into_iter().map(|s| s.table.resident).collect());
        daemon.stats.leases.fetch_add(1, Ordering::Relaxed);
        self.update_client(|c| c.leases += 1);
        Ok(reply)
    }

    /// The recording at `path` as a request sees it, its chunk index built on first use.
    fn target(&self, path: &str, geometry: Option<Geometry>) -> Result<Target, ErrorReply> {
        let daemon = self.daemon;
        let resolved = daemon.roots.resolve(path)?;
        let source = resolved.relative;
        let metadata = std::fs::metadata(&resolved.file).map_err(|e| {
            ErrorReply::new(ErrorCode::NotFound, format!("cannot open {path}: {e}"))
        })?;
        let identity = FileIdentity::of(&metadata);
        let recording = (daemon.indexes)
            .get(&resolved.file, identity, || {
                let detected = detect_file(&resolved.file)?;
                let limits = daemon.settings.chunk_limits;
                let file = resolved.file.clone();
                Ok(RecordingIndex::new(identity, detected, file, source.clone(), limits))
            })
            .map_err(|e| ingest_error_reply(&source, e))?;
        let detected = match geometry {
            None => recording.detected.clone(),
            Some(given) => recording.detected.clone().with_geometry(given).map_err(|stated| {
                let conflict =
                    IngestError::GeometryConflict { path: resolved.file.clone(), stated, given };
                ingest_error_reply(&source, conflict)
            })?,
        };
        let daemon = Arc::clone(daemon);
        Ok(Target { daemon, file: resolved.file, source, geometry, identity, recording, detected })
    }

    fn stats(&self) -> StatsReply {
        let daemon = self.daemon;
        let stats = &daemon.stats;
        let (segments, bytes_resident) = daemon.shm.usage();
        let bytes_evictable = daemon.cache.evictable_bytes().min(bytes_resident);
        let shm_free = rustix::fs::statvfs(daemon.shm.dir())
            .map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize));
        StatsReply {
            segments,
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
            clients: daemon.clients.list(),
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let stats = &self.daemon.stats;
        stats.leases.fetch_sub(self.leases.len() as u64, Ordering::Relaxed);
        stats.connections.fetch_sub(1, Ordering::Relaxed);
        self.leases.clear();
        if let Some(id) = self.client_id {
            self.daemon.clients.remove(id);
        }
        self.daemon.budget.notify_released();
    }
}

/// Largest sensor side a request may give (DAT's 14-bit coordinates).
const MAX_SIDE: u32 = 1 << 14;

/// The geometry an `open` request gives: both sides or neither.
fn requested_geometry(
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

/// One chunk's table, held for a reply.
struct ChunkTable {
    resident: Arc<Resident>,
    table: Table,
    outcome: Outcome,
}

impl ChunkTable {
    fn segment(&self) -> &TableSegment {
        match self.table {
            Table::Events => &self.resident.published.events,
            Table::Triggers => &self.resident.published.triggers,
        }
    }
}

impl ChunkRows for ChunkTable {
    type Error = ErrorReply;

    fn rows(&self) -> u64 {
        self.segment().rows
    }

    fn first_at_or_after(&self, time: i64, from: u64) -> Result<u64, ErrorReply> {
        let table = self.segment();
        let found = table.times.first_at_or_after(&table.segment, time, from as usize);
        found.map(|row| row as u64).map_err(|e| {
            let name = table.segment.name();
            ErrorReply::new(ErrorCode::Internal, format!("cannot read segment {name}: {e}"))
        })
    }
}

/// The protocol's view of a failed decode: a stable code and a message naming the
/// recording by the path the client used.
pub(crate) fn ingest_error_reply(path: &str, error: IngestError) -> ErrorReply {
    use evshm_formats::DetectError;
    let code = match &error {
        IngestError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ErrorCode::NotFound
        }
        IngestError::GeometryConflict { .. } => ErrorCode::BadRequest,
        IngestError::Unrecognized { source: DetectError::BadGeometry { .. }, .. }
        | IngestError::Changed { .. } => ErrorCode::CorruptRecording,
        IngestError::Unrecognized { .. } => ErrorCode::UnsupportedFormat,
        IngestError::Segment(crate::segment::SegmentCreateError::Full { .. }) => ErrorCode::ShmFull,
        IngestError::OverBudget { .. } => ErrorCode::OverBudget,
        _ => ErrorCode::Internal,
    };
    let message = match error {
        IngestError::Unrecognized { source, .. } => format!("{path}: {source}"),
        other => format!("{path}: {other}"),
    };
    ErrorReply::new(code, message)
}
