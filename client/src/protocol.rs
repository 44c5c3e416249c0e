//! The control protocol between evshmd and its clients, in one place for both sides.
//!
//! JSON lines over a `SOCK_STREAM` Unix socket: one request, one reply, in turn. Replies
//! carry `"ok": true` and the fields of the request's reply type, or `"ok": false` and an
//! [`ErrorReply`] with a stable [`ErrorCode`]. `docs/PROTOCOL.md` shows every message.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks, agreed in [`Request::Hello`].
pub const PROTOCOL_VERSION: u32 = 2;

/// Longest request line the daemon reads, newline included; longer ones are refused with
/// [`ErrorCode::FrameTooLarge`] and the connection is closed.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// Longest reply line a client reads, newline included (a `list` of a large tree is the
/// longest reply).
pub const MAX_REPLY_LINE: usize = 16 * 1024 * 1024;

/// The socket path every evshm program uses when none is given: `$EVSHM_SOCKET`, else
/// `$XDG_RUNTIME_DIR/evshm.sock`, else `/tmp/evshm-$UID.sock`.
pub fn default_socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os("EVSHM_SOCKET").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join("evshm.sock");
    }
    PathBuf::from(format!("/tmp/evshm-{}.sock", rustix::process::getuid().as_raw()))
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// Agrees on the protocol version; must come first on a connection.
    Hello {
        /// The client's [`PROTOCOL_VERSION`].
        version: u32,
        /// Free text naming the client, for the daemon's log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Lists the recordings under the served roots.
    List,
    /// Opens a recording, decoding it unless a segment already holds it.
    Open {
        /// Path relative to a served root (or absolute, inside one).
        path: String,
        /// Which of the recording's tables.
        #[serde(default)]
        table: Table,
        /// Sensor width to use when the file states no geometry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        width: Option<u32>,
        /// Sensor height to use when the file states no geometry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        height: Option<u32>,
        /// Only the rows of this time window; the whole recording when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<Window>,
    },
    /// Ends a lease taken by `open`.
    Release {
        /// The lease id from [`OpenReply::lease`].
        lease: u64,
    },
    /// Asks for the daemon's counters.
    Stats,
}

/// A time window `[start, end)` in microseconds of sensor time, `[start, end]` on the
/// wire.
///
/// Its rows are those from the first row with `t >= start` up to, not including, the
/// first row with `t >= end`: one contiguous run of rows. For time that never steps
/// back these are exactly the rows with `start <= t < end`; where it steps back slightly
/// (real EVT3 recordings do), a row is in the window of the running maximum of `t` at
/// that row, so back-to-back windows neither lose nor repeat a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "[i64; 2]", into = "[i64; 2]")]
pub struct Window {
    /// First microsecond of the window.
    pub start: i64,
    /// First microsecond after the window.
    pub end: i64,
}

impl From<[i64; 2]> for Window {
    fn from([start, end]: [i64; 2]) -> Self {
        Window { start, end }
    }
}

impl From<Window> for [i64; 2] {
    fn from(window: Window) -> Self {
        [window.start, window.end]
    }
}

/// The tables a recording is decoded into, each its own segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// CD events: `t int64, x int16, y int16, p int8`.
    #[default]
    Events,
    /// External triggers: `t int64, id int16, p int8`.
    Triggers,
}

/// The `op` names of [`Request`], to tell an unknown op from a malformed known one.
const OPS: [&str; 5] = ["hello", "list", "open", "release", "stats"];

impl Request {
    /// Parses one request line (without its newline), classifying failures the way the
    /// protocol reports them.
    pub fn parse(line: &[u8]) -> Result<Request, ErrorReply> {
        let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
            ErrorReply::new(ErrorCode::BadRequest, format!("request is not valid JSON: {e}"))
        })?;
        let Some(op) = value.get("op").and_then(serde_json::Value::as_str) else {
            return Err(ErrorReply::new(
                ErrorCode::BadRequest,
                "request must be a JSON object with a string field \"op\"",
            ));
        };
        if !OPS.contains(&op) {
            return Err(ErrorReply::new(
                ErrorCode::UnknownOp,
                format!("unknown op {op:?}; this daemon knows {}", OPS.join(", ")),
            ));
        }
        let op = op.to_owned();
        serde_json::from_value(value).map_err(|e| {
            ErrorReply::new(ErrorCode::BadRequest, format!("malformed {op} request: {e}"))
        })
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("requests always serialize");
        line.push(b'\n');
        line
    }
}

/// Stable error codes: clients branch on these, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The line is not a JSON object, or a field is missing or mistyped.
    BadRequest,
    /// The request line is longer than [`MAX_REQUEST_LINE`].
    FrameTooLarge,
    /// The first request was not `hello`.
    HelloRequired,
    /// `hello` named a protocol version the daemon does not speak.
    UnsupportedVersion,
    /// `op` names no request of this protocol.
    UnknownOp,
    /// The path is empty, contains `..` or a NUL byte.
    BadPath,
    /// The path resolves outside every served root.
    OutsideRoots,
    /// No root holds a file at that path.
    NotFound,
    /// The file is not an event recording evshmd reads.
    UnsupportedFormat,
    /// The recording could not be decoded.
    CorruptRecording,
    /// The shared-memory filesystem has no room for the segment.
    ShmFull,
    /// The memory budget has no room, even after evicting what no client holds and
    /// waiting for releases.
    OverBudget,
    /// `release` named a lease the connection does not hold.
    UnknownLease,
    /// The client's user may not use this daemon (`--allow-uid`, `--allow-gid`).
    AccessDenied,
    /// The connection holds as many leases as a connection may (`--max-leases`).
    TooManyLeases,
    /// Anything else.
    Internal,
    /// A code from a newer daemon that this client does not know.
    #[serde(other)]
    Unknown,
}

/// The body of a failed reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct ErrorReply {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What failed, for humans.
    pub message: String,
}

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

/// Encodes a successful reply: `{"ok": true, ...body}` and a newline.
pub fn reply_line<T: Serialize>(body: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct Succeeded<'a, T> {
        ok: bool,
        #[serde(flatten)]
        body: &'a T,
    }
    line(&Succeeded { ok: true, body })
}

fn line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).expect("replies always serialize");
    line.push(b'\n');
    line
}

/// Why a reply line could not be turned into its reply type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The daemon answered with an error.
    #[error(transparent)]
    Daemon(#[from] ErrorReply),
    /// The line is not a reply of this protocol.
    #[error("malformed reply from evshmd: {0}")]
    Malformed(String),
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

/// Reply to [`Request::Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The protocol version the daemon speaks.
    pub version: u32,
    /// The daemon's name and version.
    pub server: String,
}

/// Reply to [`Request::List`].
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
    /// Event format: `dat`, `evt2`, `evt21`, `evt3`, `aedat4`, `text`.
    pub format: String,
    /// File size in bytes.
    pub size: u64,
    /// Whether a decoded segment is resident.
    pub decoded: bool,
}

/// Reply to [`Request::Open`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenReply {
    /// Lease that keeps the chunks' segments alive until released or the connection
    /// closes.
    pub lease: u64,
    /// The recording's path, as in `list`.
    pub path: String,
    /// Which table the segments hold.
    #[serde(default)]
    pub table: Table,
    /// The window asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
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
}

/// One chunk of a recording in an [`OpenReply`]: its segment, and which of its rows
/// were asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInfo {
    /// Position of the chunk in the recording, from 0.
    pub index: u64,
    /// The segment holding the chunk's table.
    pub segment: SegmentInfo,
    /// Rows of the segment's record batch.
    pub rows: u64,
    /// First row asked for.
    pub start: u64,
    /// One past the last row asked for.
    pub end: u64,
}

/// A shared-memory segment holding one Arrow IPC stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// Segment name (the file name in the shared-memory directory).
    pub name: String,
    /// Full path to map read-only; absent when the daemon runs sealed, and the segment's
    /// file descriptor comes with the reply instead (`SCM_RIGHTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Exact size in bytes.
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

/// Reply to [`Request::Release`]: nothing but success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReleaseReply {}

/// Reply to [`Request::Stats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StatsReply {
    /// Segments resident now.
    pub segments: u64,
    /// Bytes of those segments.
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
    /// Bytes of resident segments no client holds: what eviction may free.
    #[serde(default)]
    pub bytes_evictable: u64,
    /// Bytes of segments clients hold, or being decoded.
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
    /// The connected clients and the leases each holds.
    #[serde(default)]
    pub clients: Vec<ClientStats>,
}

/// One connected client, in a [`StatsReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClientStats {
    /// Its process id, from the kernel.
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
    fn requests_round_trip_and_errors_are_classified() {
        let open = Request::Open {
            path: "a/b.raw".into(),
            table: Table::Events,
            width: None,
            height: None,
            window: None,
        };
        let line = open.to_line();
        assert_eq!(line, b"{\"op\":\"open\",\"path\":\"a/b.raw\",\"table\":\"events\"}\n");
        let minimal = Request::parse(b"{\"op\":\"open\",\"path\":\"a/b.raw\"}").unwrap();
        assert_eq!(minimal, open, "the table defaults to events");
        assert_eq!(Request::parse(&line[..line.len() - 1]).unwrap(), open);
        let code = |line: &[u8]| Request::parse(line).unwrap_err().code;
        assert_eq!(code(b"{nope"), ErrorCode::BadRequest);
        assert_eq!(code(b"[1]"), ErrorCode::BadRequest);
        assert_eq!(code(b"{\"op\":\"fly\"}"), ErrorCode::UnknownOp);
        assert_eq!(code(b"{\"op\":\"open\"}"), ErrorCode::BadRequest);
        assert_eq!(code(b"{\"op\":\"release\",\"lease\":\"x\"}"), ErrorCode::BadRequest);
        assert_eq!(
            code(b"{\"op\":\"open\",\"path\":\"a\",\"table\":\"x\"}"),
            ErrorCode::BadRequest
        );
        assert_eq!(code(br#"{"op":"open","path":"a","window":[1]}"#), ErrorCode::BadRequest);
        let windowed = Request::parse(br#"{"op":"open","path":"a","window":[-5,7]}"#).unwrap();
        let Request::Open { window: Some(window), .. } = &windowed else { panic!("{windowed:?}") };
        assert_eq!(*window, Window { start: -5, end: 7 });
        assert!(String::from_utf8(windowed.to_line()).unwrap().contains(r#""window":[-5,7]"#));
    }

    #[test]
    fn replies_round_trip() {
        let stats = StatsReply { opens: 3, ..StatsReply::default() };
        let line = reply_line(&stats);
        assert!(line.starts_with(b"{\"ok\":true,"));
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

    #[test]
    fn default_socket_path_chain() {
        // One test touches these variables, so no other test races with it.
        // SAFETY: no other thread of this test binary reads or writes the environment.
        unsafe {
            std::env::set_var("EVSHM_SOCKET", "/x/s.sock");
            assert_eq!(default_socket_path(), PathBuf::from("/x/s.sock"));
            std::env::remove_var("EVSHM_SOCKET");
            std::env::set_var("XDG_RUNTIME_DIR", "/run/user/7");
            assert_eq!(default_socket_path(), PathBuf::from("/run/user/7/evshm.sock"));
            std::env::remove_var("XDG_RUNTIME_DIR");
        }
        let uid = rustix::process::getuid().as_raw();
        assert_eq!(default_socket_path(), PathBuf::from(format!("/tmp/evshm-{uid}.sock")));
    }
}
