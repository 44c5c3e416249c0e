//! Decoding a recording file into a published segment.
//!
//! Two passes over the file: the first counts the events (without decoding most of
//! them), which sizes the segment exactly; the second decodes them straight into the
//! segment's columns. The file is read
//! in chunks rather than mapped, so a file truncated by someone else while it is read is
//! an error, not a SIGBUS in the daemon.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use evshm::schema::{META_FORMAT, META_GEOMETRY, META_HEIGHT, META_SOURCE, META_WIDTH};
use evshm_formats::{
    Counter, Decoder, DetectError, Detected, EventSink, GeometryFilter, MAX_HEADER_LEN,
};

use crate::ipc::StreamLayout;
use crate::segment::{Segment, SegmentCreateError, ShmDir};

/// Bytes read from the file at a time.
const CHUNK: usize = 1 << 20;

/// A decoded recording in its segment.
#[derive(Debug)]
pub struct Published {
    /// The segment holding the Arrow IPC stream.
    pub segment: Segment,
    /// Number of events.
    pub rows: u64,
    /// What detection found: format and geometry.
    pub detected: Detected,
    /// What the decoder passed over.
    pub report: DecodeReport,
}

/// What a decode dropped or skipped, besides the events it kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeReport {
    /// Events outside the sensor's geometry, dropped.
    pub outside_geometry: u64,
    /// Decoder counts: words before the first time word, unknown words, trailing bytes.
    pub stats: evshm_formats::DecodeStats,
}

impl DecodeReport {
    /// Whether anything was dropped or skipped that a user should hear about.
    pub fn is_clean(&self) -> bool {
        self.outside_geometry == 0
            && self.stats.unknown == 0
            && self.stats.trailing_bytes == 0
            && self.stats.before_first_time == 0
    }
}

impl std::fmt::Display for DecodeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events outside the sensor dropped, {} words before the first time word \
             dropped, {} words of unknown type skipped, {} trailing bytes of a truncated word",
            self.outside_geometry,
            self.stats.before_first_time,
            self.stats.unknown,
            self.stats.trailing_bytes
        )
    }
}

/// Why a recording could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// Reading the file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The recording.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a recording evshmd reads.
    #[error("{path}: {source}")]
    Unrecognized {
        /// The recording.
        path: PathBuf,
        /// What detection found.
        source: DetectError,
    },
    /// The file changed between the counting and the decoding pass.
    #[error("{path} changed while it was being decoded (had {counted} events, then more); retry")]
    Changed {
        /// The recording.
        path: PathBuf,
        /// Events of the first pass.
        counted: u64,
    },
    /// No segment could be made.
    #[error(transparent)]
    Segment(#[from] SegmentCreateError),
    /// Mapping or laying out the segment failed.
    #[error("cannot lay out the segment for {path}: {detail}")]
    Layout {
        /// The recording.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// Reads the head of a file and recognises its format.
pub fn detect_file(path: &Path) -> Result<Detected, IngestError> {
    let read_error = |source| IngestError::Read { path: path.to_owned(), source };
    let mut head = Vec::with_capacity(4096);
    File::open(path)
        .map_err(read_error)?
        .take(MAX_HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(read_error)?;
    let extension = path.extension().and_then(|e| e.to_str());
    evshm_formats::detect(&head, extension)
        .map_err(|source| IngestError::Unrecognized { path: path.to_owned(), source })
}

/// Decodes the recording at `path` (shown to clients as `source`) into a new segment.
pub fn ingest(path: &Path, source: &str, shm: &Arc<ShmDir>) -> Result<Published, IngestError> {
    let detected = detect_file(path)?;
    let mut counter = Counter::new(detected.format);
    read_data(path, &detected, |bytes| counter.feed(bytes))?;
    counter.finish();
    let rows = counter.events();

    let layout_error = |detail: String| IngestError::Layout { path: path.to_owned(), detail };
    let schema = evshm::schema::event_schema(metadata(&detected, source));
    let layout =
        StreamLayout::new(&schema, rows as usize).map_err(|e| layout_error(e.to_string()))?;
    let segment = shm.create(layout.total_len() as u64)?;
    let mut map = segment.map_mut().map_err(|e| layout_error(e.to_string()))?;
    let columns = layout.write(&mut map).map_err(|e| layout_error(e.to_string()))?;
    let mut sink = GeometryFilter::new(ColumnSink { columns, len: 0 }, detected.geometry);
    let mut decoder = Decoder::new(detected.format);
    read_data(path, &detected, |bytes| decoder.feed(bytes, &mut sink))?;
    decoder.finish(&mut sink);
    let (kept, dropped) = (sink.inner.len, sink.dropped);
    if kept as u64 + dropped != rows {
        return Err(IngestError::Changed { path: path.to_owned(), counted: rows });
    }
    if kept as u64 != rows {
        layout.set_rows(&mut map, kept).map_err(|e| layout_error(e.to_string()))?;
    }
    let report = DecodeReport { outside_geometry: dropped, stats: decoder.stats() };
    Ok(Published { segment, rows: kept as u64, detected, report })
}

fn metadata(detected: &Detected, source: &str) -> HashMap<String, String> {
    HashMap::from([
        (META_WIDTH.to_owned(), detected.geometry.width.to_string()),
        (META_HEIGHT.to_owned(), detected.geometry.height.to_string()),
        (META_FORMAT.to_owned(), detected.format.name().to_owned()),
        (META_SOURCE.to_owned(), source.to_owned()),
        (META_GEOMETRY.to_owned(), detected.geometry_source.name().to_owned()),
    ])
}

/// Reads the event data of the file (everything after the header) in chunks.
fn read_data(
    path: &Path,
    detected: &Detected,
    mut consume: impl FnMut(&[u8]),
) -> Result<(), IngestError> {
    let read_error = |source| IngestError::Read { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(read_error)?;
    std::io::copy(&mut (&mut file).take(detected.data_offset as u64), &mut std::io::sink())
        .map_err(read_error)?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => consume(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
}

/// Writes events into the segment's columns; counts (and drops) any beyond their length,
/// which only happens when the file grew between the two passes.
struct ColumnSink<'a> {
    columns: crate::ipc::EventColumns<'a>,
    len: usize,
}

impl EventSink for ColumnSink<'_> {
    #[inline]
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8) {
        let i = self.len;
        self.len += 1;
        let c = &mut self.columns;
        if let (Some(ct), Some(cx), Some(cy), Some(cp)) =
            (c.t.get_mut(i), c.x.get_mut(i), c.y.get_mut(i), c.p.get_mut(i))
        {
            (*ct, *cx, *cy, *cp) = (t, x as i16, y as i16, p as i8);
        }
    }
}
