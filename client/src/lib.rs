//! Zero-copy access to event-camera recordings decoded by `evshmd`.
//!
//! The daemon decodes each recording once into Arrow IPC streams inside POSIX shared
//! memory (a few large *arenas*); this crate asks it for a recording over a Unix socket,
//! maps each arena read-only once per process and hands out Arrow
//! [`RecordBatch`](arrow_array::RecordBatch)es whose buffers point into those mappings.
//! Opening costs the same microseconds whatever the recording's size, and every process
//! reading it shares one copy in RAM.
//!
//! With `evshmd --root /data --socket /tmp/evshm.sock` running in another process:
//!
//! ```no_run
//! use arrow_array::cast::AsArray;
//! use arrow_array::types::Int64Type;
//!
//! let client = evshm::Client::connect("/tmp/evshm.sock")?;
//! let recording = client.open("day1/cam0.raw")?;
//! for batch in recording.batches() {
//!     let t = batch.column_by_name("t").unwrap().as_primitive::<Int64Type>();
//!     println!("{} events from t = {} us", batch.num_rows(), t.value(0));
//! }
//! // The lease ends when `recording` and every batch taken from it are dropped.
//! # Ok::<(), evshm::ClientError>(())
//! ```
//!
//! With the `remote` feature, `RemoteClient` reads the same recordings from another
//! machine's evshmd through its Arrow Flight service (`evshmd --flight ADDR`).
//!
//! The messages on the socket are the `evshm-protocol` crate's, shared with the daemon;
//! `docs/PROTOCOL.md` in the repository shows them on the wire.

mod client;
mod connection;
mod error;
mod mapping;
mod recording;
#[cfg(feature = "remote")]
mod remote;
mod stream;
mod trust;

pub use client::{Client, OpenOptions};
pub use error::ClientError;
pub use evshm_protocol::schema;
pub use evshm_protocol::{
    ArenaInfo, ChunkInfo, ClientStats, ErrorCode, EvictReply, ExtentInfo, MAX_REQUEST_LINE,
    PROTOCOL_VERSION, RecordingEntry, StatsReply, Table, Window, default_socket_path,
};
pub use mapping::{ArenaMap, MapError, mapped_arenas};
pub use recording::{OpenTimings, Recording, RecordingInfo};
#[cfg(feature = "remote")]
pub use remote::{DEFAULT_PARALLEL, RemoteClient, RemoteError, RemoteOptions, RemoteRecording};
