//! Decoding recording files into published segments, one chunk at a time.
//!
//! A pass over the file builds its chunk index (evshmd's `recording` module): where each
//! chunk starts, the decoder state there and how many events it holds, counted without
//! decoding. A chunk is then decoded ([`ingest_chunk`]) straight into the columns of
//! segments sized exactly from those counts. The file is read (through the one descriptor
//! of a [`RecordingFile`]) rather than mapped, so a file truncated by someone else while it
//! is read is an error, not a SIGBUS in the daemon.

use std::collections::HashMap;
use std::sync::Arc;

use evshm_formats::{Chunk, Detected, EventSink, GeometryFilter, Slots, Trigger};
use evshm_protocol::schema::{META_FORMAT, META_GEOMETRY, META_HEIGHT, META_SOURCE, META_WIDTH};

pub use crate::ingest_error::IngestError;

use crate::budget::Usage;
use crate::file::RecordingFile;
use crate::ipc::{EventColumns, StreamLayout, TriggerColumns};
use crate::segment::{Segment, ShmDir};
use crate::spares::Spares;
use crate::times::TimeColumn;

/// Segments a decoded chunk is made of: its events and its triggers.
pub const SEGMENTS_PER_CHUNK: u64 = 2;

/// A decoded chunk of a recording in its segments.
#[derive(Debug)]
pub struct DecodedChunk {
    /// The CD events.
    pub events: TableSegment,
    /// The external triggers.
    pub triggers: TableSegment,
    /// What the decoder passed over.
    pub report: DecodeReport,
}

/// One table of a chunk: a segment holding an Arrow IPC stream.
#[derive(Debug)]
pub struct TableSegment {
    /// The segment.
    pub segment: Segment,
    /// Rows of its record batch.
    pub rows: u64,
    /// Its `t` column, to find the rows of a time window.
    pub times: TimeColumn,
}

/// What a decode dropped or skipped, besides the events it kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeReport {
    /// Events outside the sensor's geometry, dropped.
    pub outside_geometry: u64,
    /// Decoder counts: words before the first time word, unknown words, trailing bytes.
    /// Each chunk's decoder starts with fresh counts, so the chunks of a recording add up
    /// to what decoding it whole counts.
    pub stats: evshm_formats::DecodeStats,
}

impl DecodeReport {
    /// Whether anything was dropped or skipped that a user should hear about.
    pub fn is_clean(&self) -> bool {
        self.outside_geometry == 0 && self.stats.skipped() == 0
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

/// Where a chunk's segments come from: `shm`, or for its event table a spare made ahead
/// (`spares`) when one fits.
#[derive(Debug, Clone, Copy)]
pub struct SegmentSource<'a> {
    /// The shared-memory directory.
    pub shm: &'a Arc<ShmDir>,
    /// The spares made ahead, if any are kept.
    pub spares: Option<&'a Spares>,
}

/// Decodes one chunk of the recording open as `file` (named `name` by clients) into new
/// segments. `make_room` is asked for the bytes and segments the decode adds (a spare
/// taken is counted already) before they are made, and what it returns is held until they
/// exist.
pub fn ingest_chunk<R>(
    file: &RecordingFile,
    name: &str,
    detected: &Detected,
    chunk: &Chunk,
    source: SegmentSource<'_>,
    make_room: impl FnOnce(Usage) -> Result<R, IngestError>,
) -> Result<DecodedChunk, IngestError> {
    let (rows, trigger_rows) = (chunk.events, chunk.triggers);
    let shm = source.shm;
    let layout_error =
        |detail: String| IngestError::Layout { path: file.path().to_owned(), detail };
    let (event_layout, trigger_layout) =
        chunk_layouts(detected, name, chunk).map_err(|e| layout_error(e.to_string()))?;
    let (event_len, trigger_len) =
        (event_layout.total_len() as u64, trigger_layout.total_len() as u64);
    let spare = source.spares.and_then(|spares| spares.take(event_len));
    let needed = match spare {
        Some(_) => Usage { bytes: shm.footprint(trigger_len), segments: 1 },
        None => Usage {
            bytes: shm.footprint(event_len) + shm.footprint(trigger_len),
            segments: SEGMENTS_PER_CHUNK,
        },
    };
    let _room = make_room(needed)?;
    let (events, mut event_map) = match spare {
        Some(spare) => spare.fit(event_len).map_err(|e| layout_error(e.to_string()))?,
        None => {
            let segment = shm.create(event_len)?;
            let map = segment.map_mut().map_err(|e| layout_error(e.to_string()))?;
            (segment, map)
        }
    };
    let triggers = shm.create(trigger_len)?;
    let mut trigger_map = triggers.map_mut().map_err(|e| layout_error(e.to_string()))?;
    let bases = (event_map.as_ptr() as usize, trigger_map.as_ptr() as usize);
    let event_bytes = &mut event_map[..event_len as usize];
    let events_columns = event_layout.write(event_bytes).and_then(EventColumns::new);
    let trigger_columns = trigger_layout.write(&mut trigger_map).and_then(TriggerColumns::new);
    let sink = TableSink {
        events: events_columns.map_err(|e| layout_error(e.to_string()))?,
        triggers: trigger_columns.map_err(|e| layout_error(e.to_string()))?,
        events_len: 0,
        triggers_len: 0,
    };
    let offsets = (
        (sink.events.t.as_ptr() as usize - bases.0) as u64,
        (sink.triggers.t.as_ptr() as usize - bases.1) as u64,
    );
    let mut sink = GeometryFilter::new(sink, detected.stated_geometry());
    let mut decoder = chunk.decoder();
    let start = detected.data_offset as u64 + chunk.start;
    file.read_range(start, chunk.end - chunk.start, |bytes| decoder.feed(bytes, &mut sink))?;
    decoder.finish(&mut sink);
    let (kept, dropped, trigger_len) =
        (sink.inner.events_len, sink.dropped, sink.inner.triggers_len);
    if kept as u64 + dropped != rows || trigger_len as u64 != trigger_rows {
        return Err(IngestError::Changed { path: file.path().to_owned(), counted: rows });
    }
    let event_times = TimeColumn::new(&sink.inner.events.t[..kept], offsets.0);
    let trigger_times = TimeColumn::new(&sink.inner.triggers.t[..trigger_len], offsets.1);
    if kept as u64 != rows {
        let event_bytes = &mut event_map[..event_len as usize];
        event_layout.set_rows(event_bytes, kept).map_err(|e| layout_error(e.to_string()))?;
    }
    // Sealing a memfd needs its writable mappings gone; both are complete now.
    drop((event_map, trigger_map));
    for segment in [&events, &triggers] {
        segment.seal().map_err(|e| layout_error(format!("cannot seal the segment: {e}")))?;
    }
    let report = DecodeReport { outside_geometry: dropped, stats: decoder.stats() };
    Ok(DecodedChunk {
        events: TableSegment { segment: events, rows: kept as u64, times: event_times },
        triggers: TableSegment { segment: triggers, rows: trigger_rows, times: trigger_times },
        report,
    })
}

/// The layouts of a chunk's two tables, sized for the events its index entry counts.
pub(crate) fn chunk_layouts(
    detected: &Detected,
    name: &str,
    chunk: &Chunk,
) -> Result<(StreamLayout, StreamLayout), arrow_schema::ArrowError> {
    let meta = metadata(detected, name);
    let events = StreamLayout::new(
        &evshm_protocol::schema::event_schema(meta.clone()),
        chunk.events as usize,
    )?;
    let triggers =
        StreamLayout::new(&evshm_protocol::schema::trigger_schema(meta), chunk.triggers as usize)?;
    Ok((events, triggers))
}

/// The metadata of a chunk's schema: geometry, format, the recording's name (as
/// `evshm.source`) and where the geometry came from.
pub(crate) fn metadata(detected: &Detected, name: &str) -> HashMap<String, String> {
    HashMap::from([
        (META_WIDTH.to_owned(), detected.geometry.width.to_string()),
        (META_HEIGHT.to_owned(), detected.geometry.height.to_string()),
        (META_FORMAT.to_owned(), detected.format.name().to_owned()),
        (META_SOURCE.to_owned(), name.to_owned()),
        (META_GEOMETRY.to_owned(), detected.geometry_source.name().to_owned()),
    ])
}

/// Writes events and triggers into their tables' columns; counts (and drops) any beyond
/// their lengths, which only happens when the file changed between indexing and decoding.
struct TableSink<'a> {
    events: EventColumns<'a>,
    triggers: TriggerColumns<'a>,
    events_len: usize,
    triggers_len: usize,
}

impl EventSink for TableSink<'_> {
    #[inline]
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8) {
        let i = self.events_len;
        self.events_len += 1;
        let c = &mut self.events;
        if let (Some(ct), Some(cx), Some(cy), Some(cp)) =
            (c.t.get_mut(i), c.x.get_mut(i), c.y.get_mut(i), c.p.get_mut(i))
        {
            (*ct, *cx, *cy, *cp) = (t, x as i16, y as i16, p as i8);
        }
    }

    #[inline]
    fn slots(&mut self) -> Option<Slots<'_>> {
        let (n, c) = (self.events_len, &mut self.events);
        let t = c.t.get_mut(n..)?;
        Some(Slots::new(t, &mut c.x[n..], &mut c.y[n..], &mut c.p[n..]))
    }

    #[inline]
    fn commit(&mut self, n: usize) {
        self.events_len += n;
    }

    fn trigger(&mut self, trigger: Trigger) {
        let i = self.triggers_len;
        self.triggers_len += 1;
        let c = &mut self.triggers;
        if let (Some(ct), Some(cid), Some(cp)) = (c.t.get_mut(i), c.id.get_mut(i), c.p.get_mut(i)) {
            (*ct, *cid, *cp) = (trigger.t, i16::from(trigger.id), trigger.p as i8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::InstanceId;
    use crate::testing::{TempDir, decoded_chunk, write_evt3};

    #[test]
    fn a_chunk_is_decoded_into_exactly_sized_segments() {
        let dir = TempDir::new("ingest");
        let shm = ShmDir::new(&dir.0, &InstanceId::random().unwrap(), None, false);
        let decoded = decoded_chunk(&dir, &shm, 5_000);
        assert_eq!(decoded.events.rows, 5_000);
        assert!(decoded.report.is_clean(), "{}", decoded.report);
        let file_len = std::fs::metadata(decoded.events.segment.path().unwrap()).unwrap().len();
        assert_eq!(file_len, shm.footprint(decoded.events.segment.len()));
    }

    #[test]
    fn a_file_that_changed_after_indexing_is_an_error_not_a_wrong_table() {
        let dir = TempDir::new("ingest-changed");
        let shm = ShmDir::new(&dir.0, &InstanceId::random().unwrap(), None, false);
        let path = dir.0.join("a.raw");
        write_evt3(&path, 5_000);
        let file = RecordingFile::open(&path).unwrap();
        let detected = file.detect().unwrap();
        let limits = evshm_formats::ChunkLimits::events(u64::MAX);
        let mut indexer = evshm_formats::Indexer::new(detected.format, limits);
        file.read_range(detected.data_offset as u64, u64::MAX, |b| indexer.feed(b)).unwrap();
        let chunks = indexer.finish();
        // Rewritten in place: the open descriptor reads the new content.
        write_evt3(&path, 4_000);
        let source = SegmentSource { shm: &shm, spares: None };
        let result = ingest_chunk(&file, "a.raw", &detected, &chunks[0], source, |_| Ok(()));
        assert!(matches!(result, Err(IngestError::Changed { counted: 5_000, .. })), "{result:?}");
        assert_eq!(shm.usage(), (0, 0), "nothing of it is left");
    }
}
