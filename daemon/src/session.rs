//! One client connection: framing, the hello handshake, requests and the leases they hold.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use evshm::protocol::{
    ErrorCode, ErrorReply, FieldInfo, HelloReply, ListReply, MAX_REQUEST_LINE, OpenReply,
    PROTOCOL_VERSION, RecordingEntry, ReleaseReply, Request, SegmentInfo, StatsReply, Table,
    reply_line,
};
use evshm::schema::{EVENT_COLUMNS, TRIGGER_COLUMNS};
use evshm_formats::Geometry;

use crate::access::Peer;
use crate::cache::{FileIdentity, Key, Outcome, Resident};
use crate::framing::{FrameError, discard_line, read_request_line, write_reply};
use crate::ingest::{IngestError, detect_file, ingest};
use crate::server::Daemon;
use crate::stats::Stats;

/// Serves one connection until the client closes it or breaks the framing.
pub fn serve_connection(daemon: &Daemon, stream: UnixStream) {
    // Declared first, so dropped last: the connection stops counting once its socket is
    // closed, not before.
    let mut session = Session::new(daemon);
    let timeouts = stream
        .set_read_timeout(Some(daemon.frame_timeout))
        .and_then(|()| stream.set_write_timeout(Some(daemon.frame_timeout)));
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
        let (reply, keep_going) = match read_request_line(&mut reader, session.greeted) {
            Ok(Some(line)) => (session.handle(&line), true),
            Ok(None) => return,
            Err(FrameError::TooLarge) => {
                let message = format!("request line longer than {MAX_REQUEST_LINE} bytes");
                (session.error(ErrorReply::new(ErrorCode::FrameTooLarge, message)), false)
            }
            Err(FrameError::Stalled) => {
                let message =
                    format!("request line not finished within {:?}; closing", daemon.frame_timeout);
                (session.error(ErrorReply::new(ErrorCode::BadRequest, message)), false)
            }
            Err(FrameError::NoHello) => {
                let message = format!("no hello within {:?}; closing", daemon.frame_timeout);
                (session.error(ErrorReply::new(ErrorCode::HelloRequired, message)), false)
            }
            Err(FrameError::Io(e)) => {
                log::debug!("connection read failed: {e}");
                return;
            }
        };
        if let Err(e) = write_reply(&writer, &reply, session.passing.take()) {
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
    daemon: &'d Daemon,
    /// Who is at the other end, once admitted.
    peer: Option<Peer>,
    /// Its entry in the daemon's list of clients, once admitted.
    client_id: Option<u64>,
    /// A segment's descriptor to pass with the next reply (sealed mode).
    passing: Option<OwnedFd>,
    greeted: bool,
    leases: HashMap<u64, Arc<Resident>>,
}

impl<'d> Session<'d> {
    fn new(daemon: &'d Daemon) -> Self {
        daemon.stats.connections.fetch_add(1, Ordering::Relaxed);
        let leases = HashMap::new();
        Self { daemon, peer: None, client_id: None, passing: None, greeted: false, leases }
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
            Request::Open { path, table, width, height } => {
                let geometry = requested_geometry(width, height)?;
                reply_line(&self.open(&path, table, geometry)?)
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
                let decoded = cache.is_resident(&file, FileIdentity::of(&metadata));
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
    ) -> Result<OpenReply, ErrorReply> {
        let daemon = self.daemon;
        Stats::bump(&daemon.stats.opens);
        if self.leases.len() >= daemon.max_leases {
            return Err(ErrorReply::new(
                ErrorCode::TooManyLeases,
                format!(
                    "this connection holds {} leases, the most evshmd allows (--max-leases); \
                     release some first",
                    self.leases.len()
                ),
            ));
        }
        let resolved = daemon.roots.resolve(path)?;
        let metadata = std::fs::metadata(&resolved.file).map_err(|e| {
            ErrorReply::new(ErrorCode::NotFound, format!("cannot open {path}: {e}"))
        })?;
        let key = Key { file: resolved.file.clone(), geometry };
        let (result, outcome) = daemon.cache.open(&key, FileIdentity::of(&metadata), || {
            let started = Instant::now();
            let make_room = |needed| {
                let in_use = || daemon.shm.usage().1;
                daemon.cache.make_room(needed, &daemon.budget, in_use, |bytes| {
                    Stats::bump(&daemon.stats.evictions);
                    daemon.stats.bytes_evicted.fetch_add(bytes, Ordering::Relaxed);
                    log::info!("evicted an unleased recording ({bytes} bytes) to make room");
                })
            };
            let published =
                ingest(&resolved.file, &resolved.relative, geometry, &daemon.shm, make_room)
                    .map_err(|e| ingest_error_reply(&resolved.relative, e))?;
            log::info!(
                "decoded {} ({}, {} events, {} triggers) into {} ({} bytes) in {:.1} ms",
                resolved.relative,
                published.detected.format,
                published.events.rows,
                published.triggers.rows,
                published.events.segment.name(),
                published.events.segment.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
            if !published.report.is_clean() {
                log::warn!("{}: {}", resolved.relative, published.report);
            }
            Ok(Resident::new(published, FileIdentity::of(&metadata)))
        });
        match outcome {
            Outcome::Decoded if result.is_ok() => Stats::bump(&daemon.stats.decodes),
            Outcome::Decoded => {}
            Outcome::Hit | Outcome::Waited => Stats::bump(&daemon.stats.cache_hits),
        }
        let resident = result?;
        let lease = daemon.next_lease.fetch_add(1, Ordering::Relaxed);
        let published = &resident.published;
        let (chosen, columns) = match table {
            Table::Events => (&published.events, &EVENT_COLUMNS[..]),
            Table::Triggers => (&published.triggers, &TRIGGER_COLUMNS[..]),
        };
        let reply = OpenReply {
            lease,
            path: resolved.relative,
            table,
            segment: SegmentInfo {
                name: chosen.segment.name().to_owned(),
                path: chosen.segment.path().map(Path::to_owned),
                size: chosen.segment.len(),
            },
            rows: chosen.rows,
            format: published.detected.format.name().to_owned(),
            width: published.detected.geometry.width,
            height: published.detected.geometry.height,
            schema: columns
                .iter()
                .map(|(name, ty)| FieldInfo {
                    name: (*name).to_owned(),
                    data_type: ty.to_string().to_lowercase(),
                })
                .collect(),
            cached: outcome != Outcome::Decoded,
            dropped: published.report.outside_geometry,
        };
        if chosen.segment.path().is_none() {
            let fd = chosen.segment.share().map_err(|e| {
                ErrorReply::new(ErrorCode::Internal, format!("cannot pass the segment: {e}"))
            })?;
            self.passing = Some(fd);
        }
        self.leases.insert(lease, resident);
        daemon.stats.leases.fetch_add(1, Ordering::Relaxed);
        self.update_client(|c| c.leases += 1);
        Ok(reply)
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

/// The protocol's view of a failed decode: a stable code and a message naming the
/// recording by the path the client used.
fn ingest_error_reply(path: &str, error: IngestError) -> ErrorReply {
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
