//! Replies: the body of each successful reply, and how reply lines are written and read.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ErrorReply, ReplyError};
use crate::request::{Table, Window};

impl ErrorReply {
    /// An error reply.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The reply as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Failed<'a> {
            ok: bool,
            error: &'a ErrorReply,
        }
        line(&Failed { ok: false, error: self })
    }
}

/// Encodes a successful reply: `{"ok": true, ...body}` and a newline. `body` serializes
/// as a JSON object (every reply type is a struct); its fields are spliced in after `ok`
/// rather than flattened by serde, which goes through a map serializer: an open reply of
/// hundreds of chunks is written several times faster so.
pub fn reply_line<T: Serialize>(body: &T) -> Vec<u8> {
    let body = serde_json::to_vec(body).expect("replies always serialize");
    let mut line = Vec::with_capacity(body.len() + 12);
    line.extend_from_slice(b"{\"ok\":true");
    match body.strip_prefix(b"{") {
        Some(b"}") | None => line.push(b'}'),
        Some(fields) => {
            line.push(b',');
            line.extend_from_slice(fields);
        }
    }
    line.push(b'\n');
    line
}

fn line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).expect("replies always serialize");
    line.push(b'\n');
    line
}

/// Parses one reply line (without its newline) into the reply type `T`.
pub fn parse_reply<T: DeserializeOwned>(line: &[u8]) -> Result<T, ReplyError> {
    #[derive(Deserialize)]
    struct Envelope {
        ok: bool,
        error: Option<ErrorReply>,
    }
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| ReplyError::Malformed(e.to_string()))?;
    let envelope =
        Envelope::deserialize(&value).map_err(|e| ReplyError::Malformed(e.to_string()))?;
    match (envelope.ok, envelope.error) {
        (true, _) => T::deserialize(value).map_err(|e| ReplyError::Malformed(e.to_string())),
        (false, Some(error)) => Err(ReplyError::Daemon(error)),
        (false, None) => Err(ReplyError::Malformed("\"ok\": false without an error".into())),
    }
}

/// Reply to [`Request::Hello`](crate::Request::Hello).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The protocol version the daemon speaks.
    pub version: u32,
    /// The daemon's name and version.
    pub server: String,
    /// The directories it serves, canonical, in the order it searches them (absent from
    /// the replies of daemons that did not say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roots: Vec<PathBuf>,
}

/// Reply to [`Request::List`](crate::Request::List).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    /// The recordings, sorted by path.
    pub recordings: Vec<RecordingEntry>,
}

/// One recording in a [`ListReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingEntry {
    /// Path to pass to `open`.
    pub path: String,
    /// Event format: `dat`, `evt2`, `evt21`, `evt3`, `aedat4`, `aedat3`, `aedat2`, `es`,
    /// `atis_bin`, `text` (docs/FORMATS.md).
    pub format: String,
    /// File size in bytes.
    pub size: u64,
    /// Whether a decoded chunk of it is resident.
    pub decoded: bool,
}

/// Reply to [`Request::Open`](crate::Request::Open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenReply {
    /// Lease that keeps the chunks' extents from reuse until released or the connection
    /// closes.
    pub lease: u64,
    /// The recording's path, as in `list`.
    pub path: String,
    /// Which table the extents hold.
    #[serde(default)]
    pub table: Table,
    /// The window asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// The arenas the chunks lie in, each once, in the order they are first named; a
    /// chunk's extent names its arena by position in this list.
    #[serde(default)]
    pub arenas: Vec<ArenaInfo>,
    /// The chunks holding the rows asked for, in time order: every chunk of the
    /// recording, or those holding rows of the window (none for an empty window).
    pub chunks: Vec<ChunkInfo>,
    /// Rows asked for: the sum of the chunks' `end - start`.
    pub rows: u64,
    /// Event format of the source file.
    pub format: String,
    /// Sensor width in pixels.
    pub width: u32,
    /// Sensor height in pixels.
    pub height: u32,
    /// Column names and types, in order.
    pub schema: Vec<FieldInfo>,
    /// The schema's metadata (`evshm.width`, …), for building an empty table when no
    /// chunk holds a row.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Whether every chunk was already resident (no decode for this open).
    pub cached: bool,
    /// Events of these chunks dropped because they lie outside the sensor's geometry
    /// (corrupt data, or a header that states the wrong geometry).
    #[serde(default)]
    pub dropped: u64,
    /// Records of these chunks passed over instead of decoded: malformed text lines, words
    /// of unknown type, words before the first time word, unreadable packets, and a
    /// truncated final word as one. Absent from replies of daemons that did not count them.
    #[serde(default)]
    pub skipped: u64,
    /// Arenas named on this connection before that evshmd has dropped since: a client
    /// unmaps them once nothing it reads lies in them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gone: Vec<String>,
}

impl OpenReply {
    /// Checks what the types cannot: the chunks are in recording order, each asks for
    /// rows within its batch, together they are one run of rows (every row of every
    /// chunk when no window was asked for), and `rows` is their sum. The Python client
    /// makes the same checks (`protocol/fixtures/protocol.json` holds replies both must
    /// refuse).
    pub fn check(&self) -> Result<(), String> {
        for pair in self.chunks.windows(2) {
            if pair[1].index <= pair[0].index {
                let (before, after) = (pair[0].index, pair[1].index);
                return Err(format!("open reply lists chunk {after} after chunk {before}"));
            }
        }
        for (position, arena) in self.arenas.iter().enumerate() {
            if self.arenas[..position].iter().any(|a| a.name == arena.name) {
                return Err(format!("open reply lists arena {} twice", arena.name));
            }
        }
        let whole = self.window.is_none();
        let last = self.chunks.len().saturating_sub(1);
        for (position, chunk) in self.chunks.iter().enumerate() {
            let extent = &chunk.extent;
            if extent.size == 0 {
                return Err(format!("chunk {} has an empty extent", chunk.index));
            }
            let Some(arena) = self.arenas.get(extent.arena as usize) else {
                return Err(format!(
                    "chunk {} lies in arena {} of a reply that lists {}",
                    chunk.index,
                    extent.arena,
                    self.arenas.len()
                ));
            };
            if extent.offset.checked_add(extent.size).is_none_or(|end| end > arena.size) {
                return Err(format!(
                    "chunk {} lies at bytes {}..+{} of arena {}, which holds {} bytes",
                    chunk.index, extent.offset, extent.size, arena.name, arena.size
                ));
            }
            if !(chunk.start <= chunk.end && chunk.end <= chunk.rows) {
                return Err(format!(
                    "chunk {} asks for rows {}..{} of a batch of {}",
                    chunk.index, chunk.start, chunk.end, chunk.rows
                ));
            }
            // One run of rows: only the first chunk may begin after its first row, and
            // only the last may end before its last.
            let cut_start = chunk.start != 0 && (whole || position > 0);
            let cut_end = chunk.end != chunk.rows && (whole || position < last);
            if cut_start || cut_end {
                return Err(format!(
                    "open reply asks for rows {}..{} of chunk {} ({} rows), position {position} \
                     of {}: not one run of rows",
                    chunk.start,
                    chunk.end,
                    chunk.index,
                    chunk.rows,
                    self.chunks.len()
                ));
            }
        }
        if let Some(window) = self.window.filter(|w| w.start > w.end) {
            return Err(format!("open reply has window [{}, {}]", window.start, window.end));
        }
        let asked: u64 = self.chunks.iter().map(|c| c.end - c.start).sum();
        if asked != self.rows {
            let rows = self.rows;
            return Err(format!("open reply announces {rows} rows but its chunks hold {asked}"));
        }
        Ok(())
    }
}

/// One chunk of a recording in an [`OpenReply`]: its extent, and which of its rows
/// were asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInfo {
    /// Position of the chunk in the recording, from 0.
    pub index: u64,
    /// Where the chunk's table lies.
    pub extent: ExtentInfo,
    /// Rows of the extent's record batch.
    pub rows: u64,
    /// First row asked for.
    pub start: u64,
    /// One past the last row asked for.
    pub end: u64,
}

/// An arena: one shared-memory file that clients map whole, once per process, and in
/// which chunks' tables lie as extents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArenaInfo {
    /// Arena name (its file name in the shared-memory directory), unique for the life of
    /// the machine's boot: a client may keep its mapping under this name.
    pub name: String,
    /// Full path to map read-only; absent when the daemon runs sealed, and the arena's
    /// descriptor comes with the reply instead (`SCM_RIGHTS`) the first time the
    /// connection hears of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Size in bytes; it never changes.
    pub size: u64,
    /// Whether the arena's descriptor comes with this reply (sealed mode), in the order
    /// of the arenas that have one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passed: bool,
}

/// Where a chunk's table lies: a run of bytes of an arena holding one Arrow IPC stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtentInfo {
    /// The arena's position in the reply's `arenas`.
    pub arena: u32,
    /// Offset of the stream in the arena, a multiple of 64.
    pub offset: u64,
    /// Exact size of the stream in bytes.
    pub size: u64,
}

/// A column of the event schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldInfo {
    /// Column name.
    pub name: String,
    /// Arrow type name (`int64`, `int16`, `int8`).
    #[serde(rename = "type")]
    pub data_type: String,
}

/// Reply to [`Request::Release`](crate::Request::Release): nothing but success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReleaseReply {}

/// Reply to [`Request::Evict`](crate::Request::Evict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EvictReply {
    /// Chunks evicted.
    pub evicted: u64,
    /// Bytes of their tables.
    pub bytes_evicted: u64,
}

/// Reply to [`Request::Stats`](crate::Request::Stats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StatsReply {
    /// Chunks' tables resident now, each an extent of an arena.
    pub extents: u64,
    /// Bytes of those extents.
    pub bytes_resident: u64,
    /// Leases held now.
    pub leases: u64,
    /// Client connections open now.
    pub connections: u64,
    /// `open` requests served since start.
    pub opens: u64,
    /// Chunks decoded since start.
    pub decodes: u64,
    /// Opens whose chunks were all resident.
    pub cache_hits: u64,
    /// Error replies sent.
    pub errors: u64,
    /// Unleased chunks evicted to stay within the memory budget.
    #[serde(default)]
    pub evictions: u64,
    /// The memory budget in bytes.
    #[serde(default)]
    pub memory_budget: u64,
    /// Bytes of resident extents no client holds: what eviction may free.
    #[serde(default)]
    pub bytes_evictable: u64,
    /// Bytes of extents clients hold, or being decoded.
    #[serde(default)]
    pub bytes_leased: u64,
    /// Bytes freed by evictions since start.
    #[serde(default)]
    pub bytes_evicted: u64,
    /// Bytes of recordings read by index passes since start (an index is built as far
    /// into a file as requests need, once per version of the file).
    #[serde(default)]
    pub bytes_indexed: u64,
    /// Free bytes of the shared-memory filesystem.
    #[serde(default)]
    pub shm_free: u64,
    /// Arenas: shared-memory files, each mapped once by evshmd and once per client
    /// process.
    #[serde(default)]
    pub arenas: u64,
    /// Their total size in bytes (address space; only pages in use or provisioned take
    /// memory).
    #[serde(default)]
    pub bytes_arenas: u64,
    /// Bytes of the arenas free for new extents, provisioned or not.
    #[serde(default)]
    pub bytes_free: u64,
    /// Bytes of free extents whose pages are allocated and mapped, ready for the next
    /// cold opens (counted in the budget, not in `bytes_resident`).
    #[serde(default)]
    pub bytes_provisioned: u64,
    /// The largest free run of bytes in one arena: with `bytes_free`, how fragmented the
    /// free space is.
    #[serde(default)]
    pub largest_free: u64,
    /// The connected clients and the leases each holds.
    #[serde(default)]
    pub clients: Vec<ClientStats>,
}

/// One connected client, in a [`StatsReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClientStats {
    /// Its process id, from the kernel (0 for a client outside the daemon's pid namespace).
    pub pid: i32,
    /// Its user id, from the kernel.
    pub uid: u32,
    /// The name it gave in `hello`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Leases it holds.
    pub leases: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip() {
        let stats = StatsReply { opens: 3, ..StatsReply::default() };
        let line = reply_line(&stats);
        assert!(line.starts_with(b"{\"ok\":true,"));
        assert_eq!(reply_line(&ReleaseReply {}), b"{\"ok\":true}\n");
        let parsed: StatsReply = parse_reply(&line[..line.len() - 1]).unwrap();
        assert_eq!(parsed, stats);
        let error = ErrorReply::new(ErrorCode::NotFound, "no such file");
        let line = error.to_line();
        match parse_reply::<StatsReply>(&line) {
            Err(ReplyError::Daemon(e)) => assert_eq!(e, error),
            other => panic!("{other:?}"),
        }
        let future: Result<StatsReply, _> =
            parse_reply(br#"{"ok":false,"error":{"code":"from_the_future","message":"m"}}"#);
        assert!(matches!(
            future,
            Err(ReplyError::Daemon(ErrorReply { code: ErrorCode::Unknown, .. }))
        ));
        assert!(matches!(parse_reply::<StatsReply>(b"{}"), Err(ReplyError::Malformed(_))));
    }
}
