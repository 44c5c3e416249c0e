//! The control protocol between evshmd and its clients, in one place for both sides.
//!
//! JSON lines over a `SOCK_STREAM` Unix socket: one request, one reply, in turn. Replies
//! carry `"ok": true` and the fields of the request's reply type, or `"ok": false` and an
//! [`ErrorReply`] with a stable [`ErrorCode`]. `docs/PROTOCOL.md` shows every message;
//! the tests of this crate check its examples against these types and write them, with
//! the constants and codes below, to `protocol/fixtures/protocol.json`, against which the
//! Python client is tested: one source of truth for both languages.
//!
//! - [`request`]: what a client may ask;
//! - [`reply`]: what the daemon answers, and reading and writing reply lines;
//! - [`error`]: the stable error codes;
//! - [`socket`]: where the socket is when no path is given, who is at its other end, and
//!   whom clients trust;
//! - [`schema`]: the Arrow schemas of the tables in the arenas.

pub mod error;
pub mod reply;
pub mod request;
pub mod schema;
pub mod socket;

pub use error::{ErrorCode, ErrorReply, ReplyError};
pub use reply::{
    ArenaInfo, ChunkInfo, ClientStats, EvictReply, ExtentInfo, FieldInfo, HelloReply, ListReply,
    OpenReply, RecordingEntry, ReleaseReply, StatsReply, parse_reply, reply_line,
};
pub use request::{Request, Table, Window};
pub use socket::{
    DAEMON_UID_VARIABLE, Peer, check_private_dir, default_socket_path, fallback_socket_dir,
    trusted_daemon_uids,
};

/// The protocol version this crate speaks, agreed in [`Request::Hello`].
pub const PROTOCOL_VERSION: u32 = 3;

/// Longest request line the daemon reads, newline included; longer ones are refused with
/// [`ErrorCode::FrameTooLarge`] and the connection is closed.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// Longest reply line a client reads, newline included (a `list` of a large tree is the
/// longest reply).
pub const MAX_REPLY_LINE: usize = 16 * 1024 * 1024;
