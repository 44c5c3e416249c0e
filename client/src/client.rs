//! The connection to evshmd and the recordings opened through it.

use std::io::{IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_schema::{ArrowError, SchemaRef};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use serde::de::DeserializeOwned;

use crate::mapping::{MapError, map_sealed_segment, map_segment};
use crate::protocol::{
    ChunkInfo, ErrorCode, HelloReply, ListReply, MAX_REPLY_LINE, OpenReply, PROTOCOL_VERSION,
    RecordingEntry, ReleaseReply, ReplyError, Request, StatsReply, Table, Window,
    default_socket_path,
};

/// What can go wrong talking to evshmd or reading what it published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to evshmd at {path}: {source} (is evshmd running?)")]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection failed mid-request, or the daemon closed it.
    #[error("connection to evshmd lost: {0}")]
    ConnectionLost(std::io::Error),
    /// The daemon answered with an error.
    #[error("evshmd: {message}")]
    Daemon {
        /// Stable code to branch on.
        code: ErrorCode,
        /// What failed.
        message: String,
    },
    /// The daemon's reply broke the protocol.
    #[error("{0}")]
    Protocol(String),
    /// The segment could not be mapped.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The segment's content is not the Arrow IPC stream it should be.
    #[error("segment is not a valid zero-copy Arrow IPC stream: {0}")]
    Arrow(#[from] ArrowError),
}

impl From<ReplyError> for ClientError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Daemon(e) => ClientError::Daemon { code: e.code, message: e.message },
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

/// How long a client polls for a reply before it sleeps until one comes.
const REPLY_SPIN: Duration = Duration::from_micros(50);

/// One request/reply stream. Any failure mid-request leaves it out of step with the
/// daemon, so it is then marked broken and refuses further requests.
#[derive(Debug)]
struct Connection {
    stream: UnixStream,
    /// Bytes received beyond the last reply line.
    pending: Vec<u8>,
    /// Where `recvmsg` writes, kept so that no request allocates one.
    chunk: Vec<u8>,
    broken: bool,
}

/// Bytes read from the socket at a time.
const RECV_CHUNK: usize = 64 * 1024;

impl Connection {
    /// Sends a request and parses its reply; descriptors that came with the reply (a
    /// sealed segment) are returned beside it.
    fn request<T: DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<(T, Vec<OwnedFd>), ClientError> {
        if self.broken {
            return Err(ClientError::ConnectionLost(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "an earlier request on this connection failed",
            )));
        }
        let result = self.exchange(request);
        if let Err(ClientError::ConnectionLost(_) | ClientError::Protocol(_)) = &result {
            self.broken = true;
        }
        let (line, fds) = result?;
        Ok((crate::protocol::parse_reply(&line)?, fds))
    }

    fn exchange(&mut self, request: &Request) -> Result<(Vec<u8>, Vec<OwnedFd>), ClientError> {
        (&self.stream).write_all(&request.to_line()).map_err(ClientError::ConnectionLost)?;
        let spin_deadline = Instant::now().checked_add(REPLY_SPIN);
        let mut fds = Vec::new();
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                return Ok((line, fds));
            }
            if self.pending.len() >= MAX_REPLY_LINE {
                return Err(ClientError::Protocol(format!(
                    "reply longer than {MAX_REPLY_LINE} bytes"
                )));
            }
            // Room for the most descriptors one message can carry (the daemon sends at most
            // 250 per message, one message per byte at worst).
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            // The daemon answers in microseconds: polling for the reply a little while
            // before sleeping spares the wake-up of this thread, which on a busy machine
            // costs more than the whole request.
            let spinning = spin_deadline.is_some_and(|deadline| Instant::now() < deadline);
            let flags = if spinning {
                RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT
            } else {
                RecvFlags::CMSG_CLOEXEC
            };
            let received = rustix::net::recvmsg(
                &self.stream,
                &mut [IoSliceMut::new(&mut self.chunk)],
                &mut control,
                flags,
            );
            let bytes = match received {
                Ok(message) => message.bytes,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) if spinning => {
                    std::hint::spin_loop();
                    continue;
                }
                Err(e) => return Err(ClientError::ConnectionLost(e.into())),
            };
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = message {
                    fds.extend(received);
                }
            }
            if bytes == 0 {
                return Err(ClientError::ConnectionLost(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.pending.extend_from_slice(&self.chunk[..bytes]);
        }
    }
}

/// A connection to evshmd.
///
/// Cheap to share between threads (requests are serialised on the one connection).
/// Leases taken through it end when their [`Recording`] is dropped, or all at once when
/// the last handle to the connection goes.
#[derive(Debug, Clone)]
pub struct Client {
    connection: Arc<Mutex<Connection>>,
    server: String,
}

impl Client {
    /// Connects to the daemon listening at `socket` and agrees on the protocol version.
    pub fn connect(socket: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = socket.as_ref();
        let stream = UnixStream::connect(path)
            .map_err(|source| ClientError::Connect { path: path.to_owned(), source })?;
        let chunk = vec![0; RECV_CHUNK];
        let mut connection = Connection { stream, pending: Vec::new(), chunk, broken: false };
        let client = format!("evshm-rust/{}", env!("CARGO_PKG_VERSION"));
        let (hello, _): (HelloReply, _) = connection
            .request(&Request::Hello { version: PROTOCOL_VERSION, client: Some(client) })?;
        Ok(Client { connection: Arc::new(Mutex::new(connection)), server: hello.server })
    }

    /// Connects to the daemon at [`default_socket_path`].
    pub fn connect_default() -> Result<Client, ClientError> {
        Client::connect(default_socket_path())
    }

    /// The daemon's name and version, from its hello.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Lists the recordings under the daemon's roots.
    pub fn list(&self) -> Result<Vec<RecordingEntry>, ClientError> {
        Ok(self.request::<ListReply>(&Request::List)?.recordings)
    }

    /// The daemon's counters.
    pub fn stats(&self) -> Result<StatsReply, ClientError> {
        self.request(&Request::Stats)
    }

    /// Opens a recording's CD events (a path relative to a served root), decoding what no
    /// segment holds yet, and maps its segments read-only. The returned [`Recording`]
    /// holds a lease until dropped; its batches point into the mappings.
    pub fn open(&self, path: &str) -> Result<Recording, ClientError> {
        self.open_table(path, Table::Events)
    }

    /// Opens the CD events of the time window `[t_start, t_end)` (microseconds) of a
    /// recording: the rows from the first with `t >= t_start` to the first with
    /// `t >= t_end` (see [`Window`]). Only the chunks holding them are decoded and mapped.
    pub fn open_window(
        &self,
        path: &str,
        t_start: i64,
        t_end: i64,
    ) -> Result<Recording, ClientError> {
        let window = Some(Window { start: t_start, end: t_end });
        self.open_with(path, OpenOptions { window, ..OpenOptions::default() })
    }

    /// Like [`Client::open`], for either of the recording's tables: CD events or
    /// external triggers.
    pub fn open_table(&self, path: &str, table: Table) -> Result<Recording, ClientError> {
        self.open_with(path, OpenOptions { table, ..OpenOptions::default() })
    }

    /// Like [`Client::open`], with every option of the request.
    pub fn open_with(&self, path: &str, options: OpenOptions) -> Result<Recording, ClientError> {
        let started = Instant::now();
        let (width, height) = options.geometry.unzip();
        let request = Request::Open {
            path: path.to_owned(),
            table: options.table,
            width,
            height,
            window: options.window,
        };
        let (reply, fds): (OpenReply, _) = self.lock().request(&request)?;
        let lease = Lease { id: reply.lease, connection: Arc::clone(&self.connection) };
        let requested = Instant::now();
        let sealed = reply.chunks.iter().filter(|c| c.segment.path.is_none()).count();
        if fds.len() != sealed {
            return Err(ClientError::Protocol(format!(
                "the open reply names {sealed} segments without a path but passed {} descriptors",
                fds.len()
            )));
        }
        let mut fds = fds.into_iter();
        let mut mappings = Vec::with_capacity(reply.chunks.len());
        let mut batches = Vec::with_capacity(reply.chunks.len());
        let mut schema = None;
        for chunk in &reply.chunks {
            let segment = &chunk.segment;
            let mapping = match (&segment.path, fds.next()) {
                (Some(path), _) => map_segment(path, segment.size)?,
                (None, Some(fd)) => map_sealed_segment(fd, &segment.name, segment.size)?,
                (None, None) => unreachable!("descriptors counted above"),
            };
            let (chunk_schema, batch) = decode_in_place(&mapping, chunk)?;
            schema.get_or_insert(chunk_schema);
            batches.push(batch);
            mappings.push(mapping);
        }
        let schema = schema.unwrap_or_else(|| {
            let metadata = reply.metadata.clone().into_iter().collect();
            Arc::new(match reply.table {
                Table::Events => crate::schema::event_schema(metadata),
                Table::Triggers => crate::schema::trigger_schema(metadata),
            })
        });
        let timings = OpenTimings { request: requested - started, attach: requested.elapsed() };
        Ok(Recording { reply, mappings, schema, batches, timings, _lease: lease })
    }

    fn request<T: DeserializeOwned>(&self, request: &Request) -> Result<T, ClientError> {
        Ok(self.lock().request(request)?.0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic elsewhere while holding the lock cannot leave the connection half-used:
        // `Connection::request` marks it broken before any early return.
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What to open of a recording, for [`Client::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// The table: CD events (the default) or external triggers.
    pub table: Table,
    /// Only the rows of this time window (see [`Window`]); the whole table if `None`.
    pub window: Option<Window>,
    /// Sensor width and height to use if the file states none (otherwise the daemon
    /// assumes a per-format default and checks no event against it). A file that states
    /// a different geometry is refused.
    pub geometry: Option<(u32, u32)>,
}

/// Decodes the IPC stream of one chunk in `mapping` without copying (every buffer is a
/// slice of `mapping`, and a misaligned buffer is an error rather than a silent copy), and
/// slices its record batch to the rows asked for.
fn decode_in_place(
    mapping: &Buffer,
    chunk: &ChunkInfo,
) -> Result<(SchemaRef, RecordBatch), ClientError> {
    let mut decoder = StreamDecoder::new().with_require_alignment(true);
    let mut rest = mapping.clone();
    let mut batches = Vec::new();
    while !rest.is_empty() {
        if let Some(batch) = decoder.decode(&mut rest)? {
            batches.push(batch);
        }
    }
    decoder.finish()?;
    let schema = decoder
        .schema()
        .ok_or_else(|| ArrowError::IpcError("segment holds no schema message".into()))?;
    let [batch] = <[RecordBatch; 1]>::try_from(batches).map_err(|batches| {
        ClientError::Protocol(format!("segment holds {} record batches, not one", batches.len()))
    })?;
    let (start, end) = (chunk.start as usize, chunk.end as usize);
    if batch.num_rows() as u64 != chunk.rows || start > end || end > batch.num_rows() {
        return Err(ClientError::Protocol(format!(
            "chunk {} has {} rows, the reply says {} and asks for rows {start}..{end}",
            chunk.index,
            batch.num_rows(),
            chunk.rows
        )));
    }
    Ok((schema, batch.slice(start, end - start)))
}

/// How long the parts of an open took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTimings {
    /// The `open` round trip, including the daemon's decode when the segment was not
    /// resident yet.
    pub request: Duration,
    /// Mapping the segment and decoding the IPC messages in place (no data copied).
    pub attach: Duration,
}

/// A decoded recording, or a time window of it, mapped read-only from the shared-memory
/// segments of its chunks.
///
/// Its batches, and any array or buffer taken from them, keep their mappings alive after
/// the `Recording` is dropped; dropping it ends the lease, after which the daemon may let
/// the segments go (mappings stay valid).
#[derive(Debug)]
pub struct Recording {
    reply: OpenReply,
    mappings: Vec<Buffer>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    timings: OpenTimings,
    _lease: Lease,
}

impl Recording {
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
        self.reply.rows
    }

    /// The daemon's reply to the open: chunks, segments, lease, format, geometry.
    pub fn info(&self) -> &OpenReply {
        &self.reply
    }

    /// The mapped segments, one per chunk (each a whole Arrow IPC stream).
    pub fn mappings(&self) -> impl Iterator<Item = &[u8]> {
        self.mappings.iter().map(Buffer::as_slice)
    }

    /// How long the open took.
    pub fn timings(&self) -> OpenTimings {
        self.timings
    }
}

/// A lease on the segments of one open, released when dropped.
#[derive(Debug)]
struct Lease {
    id: u64,
    connection: Arc<Mutex<Connection>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        // A failure means the connection is gone, and the daemon ended the lease with it.
        let _: Result<(ReleaseReply, _), _> =
            connection.request(&Request::Release { lease: self.id });
    }
}
