//! A recording, or a window of it, as a client holds it: its chunks' streams in the
//! mappings of their arenas, their record batches, and the lease that keeps the daemon
//! from reusing them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_schema::SchemaRef;
use evshm_protocol::{ArenaInfo, ChunkInfo, OpenReply, Table, Window};

use crate::connection::Connection;
use crate::error::ClientError;
use crate::mapping::ArenaMap;
use crate::stream::StreamSchema;

/// How long the parts of an open took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTimings {
    /// The `open` round trip, including the daemon's decode when a chunk was not
    /// resident yet.
    pub request: Duration,
    /// Mapping new arenas (none once the process has them) and decoding the IPC messages
    /// in place (no data copied).
    pub attach: Duration,
}

/// What the daemon said of an opened recording: where its rows are and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordingInfo {
    /// The recording's path, as in `list`.
    pub path: String,
    /// Which table the batches hold.
    pub table: Table,
    /// The window asked for, if any.
    pub window: Option<Window>,
    /// The arenas the chunks lie in (as the reply named them: `path` is `None` for a
    /// sealed arena, passed as a descriptor).
    pub arenas: Vec<ArenaInfo>,
    /// The chunks holding the rows, in time order: their extents and which rows of each
    /// were asked for.
    pub chunks: Vec<ChunkInfo>,
    /// Event format of the source file (`evt3`, `dat`, ...).
    pub format: String,
    /// Sensor width in pixels.
    pub width: u32,
    /// Sensor height in pixels.
    pub height: u32,
    /// Whether every chunk was already resident (no decode for this open).
    pub cached: bool,
    /// Events of these chunks dropped because they lie outside the sensor's geometry.
    pub dropped: u64,
    /// Records of these chunks passed over instead of decoded: malformed text lines, words
    /// of unknown type or before the first time word, unreadable packets, a truncated
    /// final word (0 from a daemon that does not count them).
    pub skipped: u64,
}

/// A decoded recording, or a time window of it, read in place from the extents of its
/// chunks in evshmd's arenas, mapped read-only.
///
/// Its batches, and any array or buffer taken from them, keep the lease after the
/// `Recording` is dropped: the daemon counts the extents as read, and never reuses their
/// memory, until the last of them is gone.
#[derive(Debug)]
pub struct Recording {
    info: RecordingInfo,
    rows: u64,
    /// Each chunk's stream, a slice of its arena's mapping carrying the lease.
    streams: Vec<Buffer>,
    /// The mappings of the arenas the chunks lie in.
    arenas: Vec<Arc<ArenaMap>>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    timings: OpenTimings,
}

impl Recording {
    /// Attaches the chunks of an `open` reply: maps the arenas this process has not
    /// mapped yet (from their paths, or the descriptors passed with the reply, `fds`, in
    /// the order of the arenas marked passed) and decodes each chunk's stream in place.
    /// `lease` is released when the last buffer of the recording is dropped.
    pub(crate) fn attach(
        reply: OpenReply,
        fds: Vec<std::os::fd::OwnedFd>,
        lease: Lease,
        request: Duration,
    ) -> Result<Recording, ClientError> {
        let started = std::time::Instant::now();
        reply.check().map_err(ClientError::Protocol)?;
        let passed = reply.arenas.iter().filter(|a| a.passed).count();
        if fds.len() != passed {
            return Err(ClientError::Protocol(format!(
                "the open reply marks {passed} arenas passed but came with {} descriptors",
                fds.len()
            )));
        }
        crate::mapping::forget(&reply.gone);
        let mut fds = fds.into_iter();
        let mut arenas = Vec::with_capacity(reply.arenas.len());
        for info in &reply.arenas {
            let fd = if info.passed { fds.next() } else { None };
            arenas.push(crate::mapping::arena(info, fd)?);
        }
        let lease = Arc::new(lease);
        let mut streams = Vec::with_capacity(reply.chunks.len());
        let mut batches = Vec::with_capacity(reply.chunks.len());
        let mut schema: Option<StreamSchema> = None;
        for chunk in &reply.chunks {
            let extent = &chunk.extent;
            // `check` made sure every chunk's arena is listed.
            let arena = &arenas[extent.arena as usize];
            let stream = crate::mapping::extent_buffer(arena, extent, Arc::clone(&lease))?;
            let schema = match &schema {
                Some(schema) => schema,
                None => schema.insert(StreamSchema::of(&stream)?),
            };
            batches.push(rows_asked(schema.batch(&stream)?, chunk)?);
            streams.push(stream);
        }
        let schema = schema.map(|s| s.schema().clone()).unwrap_or_else(|| {
            let metadata = reply.metadata.clone().into_iter().collect();
            Arc::new(match reply.table {
                Table::Events => evshm_protocol::schema::event_schema(metadata),
                Table::Triggers => evshm_protocol::schema::trigger_schema(metadata),
            })
        });
        let timings = OpenTimings { request, attach: started.elapsed() };
        let rows = reply.rows;
        let info = RecordingInfo {
            path: reply.path,
            table: reply.table,
            window: reply.window,
            arenas: reply.arenas,
            chunks: reply.chunks,
            format: reply.format,
            width: reply.width,
            height: reply.height,
            cached: reply.cached,
            dropped: reply.dropped,
            skipped: reply.skipped,
        };
        // An open with no chunk holds nothing: the lease ends here, as nothing can be read.
        Ok(Recording { info, rows, streams, arenas, schema, batches, timings })
    }

    /// The rows asked for, one record batch per chunk, in time order: zero-copy slices
    /// of the mappings.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// The table's schema, with geometry, format and source in its metadata.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Number of rows asked for (events, or triggers).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// What the daemon said of the recording: chunks, extents, format, geometry.
    pub fn info(&self) -> &RecordingInfo {
        &self.info
    }

    /// Each chunk's Arrow IPC stream, in place in its arena's mapping.
    pub fn streams(&self) -> impl Iterator<Item = &[u8]> {
        self.streams.iter().map(Buffer::as_slice)
    }

    /// The whole mappings of the arenas the chunks lie in: every buffer of the batches
    /// points into one of them.
    pub fn arenas(&self) -> impl Iterator<Item = &[u8]> {
        self.arenas.iter().map(|arena| arena.bytes())
    }

    /// How long the open took.
    pub fn timings(&self) -> OpenTimings {
        self.timings
    }
}

/// The rows of `chunk` asked for, sliced from its `batch` (no copy), once checked
/// against what the reply said of it.
fn rows_asked(batch: RecordBatch, chunk: &ChunkInfo) -> Result<RecordBatch, ClientError> {
    let (start, end) = (chunk.start as usize, chunk.end as usize);
    if batch.num_rows() as u64 != chunk.rows || start > end || end > batch.num_rows() {
        return Err(ClientError::Protocol(format!(
            "chunk {} has {} rows, the reply says {} and asks for rows {start}..{end}",
            chunk.index,
            batch.num_rows(),
            chunk.rows
        )));
    }
    Ok(batch.slice(start, end - start))
}

/// A lease on the extents of one open, released when dropped: when the last buffer that
/// carries it is.
#[derive(Debug)]
pub(crate) struct Lease {
    id: u64,
    connection: Arc<Mutex<Connection>>,
}

impl Lease {
    /// Lease `id`, taken on `connection`.
    pub(crate) fn new(id: u64, connection: Arc<Mutex<Connection>>) -> Self {
        Lease { id, connection }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        connection.release(self.id);
    }
}
