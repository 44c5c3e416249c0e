//! Zero-copy access to event-camera recordings decoded by `evshmd`.
//!
//! The daemon decodes each recording once into an Arrow IPC stream inside a POSIX
//! shared-memory segment; this crate asks it for a recording over a Unix socket, maps the
//! segment read-only and hands out Arrow [`RecordBatch`](arrow_array::RecordBatch)es whose
//! buffers point into that mapping. Opening costs the same tens of microseconds whatever
//! the recording's size, and every process reading it shares one copy in RAM.
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
//! // Dropping `recording` ends the lease; the batches stay valid as long as they live.
//! # Ok::<(), evshm::ClientError>(())
//! ```
//!
//! [`protocol`] defines the messages, shared with the daemon; `docs/PROTOCOL.md` in the
//! repository shows them on the wire.

mod client;
mod mapping;
pub mod protocol;
pub mod schema;

pub use client::{Client, ClientError, OpenOptions, OpenTimings, Recording};
pub use mapping::{MapError, map_sealed_segment, map_segment};
