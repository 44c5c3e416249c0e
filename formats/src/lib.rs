//! Push decoders and encoders for event-camera recordings: Prophesee EVT 2.0, EVT 2.1,
//! EVT 3.0 and DAT, iniVation AEDAT 4.0 (decoding), libcaer AEDAT 3.1, jAER AEDAT 2.0,
//! Event Stream 2.x (`.es`), ATIS 40-bit `.bin` (N-MNIST), and text exports.
//!
//! Every decoder here is a state machine fed byte slices of any size ("sans-IO"): the same
//! code serves a file read in chunks, a mapped file, a fuzzer or a unit test, and any split
//! of the input decodes to the same events. Decoded events go to an [`EventSink`], so the
//! caller decides where they land (evshmd writes them straight into the columns of a
//! shared-memory segment; an [`Indexer`] pass, which counts without decoding, cuts the
//! stream into chunks and sizes each chunk's segment exactly).
//!
//! Semantics follow OpenEB, Prophesee's reference implementation: timestamps are absolute
//! sensor time in microseconds (no shifting), words before the first time-high word are
//! dropped, a truncated final word is not an event.
//!
//! ```
//! use evshm_formats::{detect, Decoder, Event, Evt3Encoder, Geometry, VecSink};
//!
//! let events = [Event { t: 5, x: 3, y: 4, p: 1 }, Event { t: 9, x: 4, y: 4, p: 0 }];
//! let mut file = Vec::new();
//! let mut encoder = Evt3Encoder::new(&mut file, Geometry { width: 640, height: 480 })?;
//! for event in &events {
//!     encoder.push(event)?;
//! }
//! encoder.finish()?;
//!
//! let recording = detect(&file, None)?;
//! let mut decoder = Decoder::new(recording.format);
//! let mut sink = VecSink::default();
//! for piece in file[recording.data_offset..].chunks(3) {
//!     decoder.feed(piece, &mut sink);
//! }
//! assert_eq!(sink.events, events);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// What the per-format modules share lives in modules of its own (`carry`, `stats`,
// `encode`, `geometry`, `header`, `sink`), which import nothing of the modules that pick a
// format (`decoder`, `encoder`, `format`, `detect`, `index`): dependencies run one way, and
// the test below fails on any cycle.
mod aedat2;
mod aedat3;
mod aedat4;
mod atis_bin;
mod blosc;
mod carry;
mod clock34;
mod dat;
mod decoder;
mod detect;
mod ecf;
mod encode;
mod encoder;
mod error;
mod event_stream;
mod evt2;
mod evt21;
mod evt3;
mod format;
mod geometry;
mod hash_header;
#[cfg(feature = "hdf5")]
mod hdf5;
mod header;
mod index;
mod sink;
mod stats;
pub mod synth;
#[cfg(test)]
mod testing;
mod text;

pub use aedat2::{Aedat2Chip, Aedat2Decoder, Aedat2Encoder};
pub use aedat3::{Aedat3Decoder, Aedat3Encoder};
pub use aedat4::{Aedat4Decoder, Aedat4Layout, Compression};
pub use atis_bin::{AtisBinDecoder, AtisBinEncoder};
pub use blosc::{BloscError, blosc_decompress};
pub use dat::{DatDecoder, DatEncoder};
pub use decoder::Decoder;
pub use detect::{Detected, GeometrySource, HDF5_SIGNATURE, detect};
pub use ecf::{ECF_FILTER_ID, EcfError, EcfLayout, ecf_decode, ecf_encode};
pub use encode::EncodeError;
pub use encoder::Encoder;
pub use error::DetectError;
pub use event_stream::{EsKind, EsLayout, EventStreamDecoder, EventStreamEncoder};
pub use evt2::{Evt2Decoder, Evt2Encoder};
pub use evt3::{Evt3Decoder, Evt3Encoder};
pub use evt21::{Evt21Decoder, Evt21Encoder, WordOrder};
pub use format::Format;
pub use geometry::Geometry;
#[cfg(feature = "hdf5")]
pub use hdf5::{Hdf5Chunk, Hdf5Error, Hdf5Layout, Hdf5Recording};
pub use header::{HeaderLines, MAX_HEADER_LEN};
pub use index::{Chunk, ChunkLimits, Indexer};
pub use sink::{
    ColumnSink, CountingSink, Event, EventSink, GeometryFilter, Slots, Trigger, VecSink,
};
pub use stats::DecodeStats;
pub use text::{Columns, TextDecoder, TextEncoder};
