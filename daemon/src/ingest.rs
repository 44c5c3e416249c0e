//! Decoding recording files into published extents, one chunk at a time.
//!
//! A pass over the file builds its chunk index (evshmd's `recording` module): where each
//! chunk starts, the decoder state there and how many events it holds, counted without
//! decoding. A chunk is then decoded ([`ingest_chunk`]) straight into the columns of an
//! extent of an arena sized exactly from those counts. The file is read (through the one
//! descriptor of a [`RecordingFile`]) rather than mapped, so a file truncated by someone
//! else while it is read is an error, not a SIGBUS in the daemon.

use std::collections::HashMap;

use evshm_formats::{Chunk, Detected, EventSink, GeometryFilter, Slots, Trigger};
use evshm_protocol::schema::{META_FORMAT, META_GEOMETRY, META_HEIGHT, META_SOURCE, META_WIDTH};

pub use crate::ingest_error::IngestError;

use crate::arena::Extent;
use crate::file::RecordingFile;
use crate::ipc::{EventColumns, StreamLayout, TriggerColumns};
use crate::times::TimeColumn;

/// A decoded chunk of a recording in its extent: two tables, events and triggers, each
/// one Arrow IPC stream.
#[derive(Debug)]
pub struct DecodedChunk {
    /// The run of an arena both tables lie in.
    pub extent: Extent,
    /// The CD events.
    pub events: TableStream,
    /// The external triggers.
    pub triggers: TableStream,
    /// What the decoder passed over.
    pub report: DecodeReport,
}

impl DecodedChunk {
    /// The stream of `table`.
    pub fn table(&self, table: evshm_protocol::Table) -> &TableStream {
        match table {
            evshm_protocol::Table::Events => &self.events,
            evshm_protocol::Table::Triggers => &self.triggers,
        }
    }
}

/// One table of a chunk: an Arrow IPC stream at an offset of the chunk's extent.
#[derive(Debug)]
pub struct TableStream {
    /// Its offset in the extent, a multiple of 64.
    pub offset: u64,
    /// Its exact length.
    pub len: u64,
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

/// The bytes a chunk's extent needs, and where each table's stream lies in it: events
/// first, triggers at the next multiple of 64.
pub(crate) fn chunk_extent(events: &StreamLayout, triggers: &StreamLayout) -> (u64, u64) {
    let trigger_offset = (events.total_len() as u64).div_ceil(64) * 64;
    (trigger_offset + triggers.total_len() as u64, trigger_offset)
}

/// Decodes one chunk of the recording open as `file` (named `name` by clients) into an
/// extent. `place` is asked for an extent of the bytes the decode needs, with its pages
/// allocated, and what it returns besides is held until the decode is done.
pub fn ingest_chunk<R>(
    file: &RecordingFile,
    name: &str,
    detected: &Detected,
    chunk: &Chunk,
    place: impl FnOnce(u64) -> Result<(Extent, R), IngestError>,
) -> Result<DecodedChunk, IngestError> {
    let (rows, trigger_rows) = (chunk.events, chunk.triggers);
    let layout_error =
        |detail: String| IngestError::Layout { path: file.path().to_owned(), detail };
    let (event_layout, trigger_layout) =
        chunk_layouts(detected, name, chunk).map_err(|e| layout_error(e.to_string()))?;
    let (event_len, trigger_len) =
        (event_layout.total_len() as u64, trigger_layout.total_len() as u64);
    let (needed, trigger_offset) = chunk_extent(&event_layout, &trigger_layout);
    let (mut extent, _room) = place(needed)?;
    let base = extent.bytes_mut().as_ptr() as usize;
    let (event_bytes, rest) = extent.bytes_mut().split_at_mut(trigger_offset as usize);
    let event_bytes = &mut event_bytes[..event_len as usize];
    let trigger_bytes = &mut rest[..trigger_len as usize];
    let events_columns = event_layout.write(event_bytes).and_then(EventColumns::new);
    let trigger_columns = trigger_layout.write(trigger_bytes).and_then(TriggerColumns::new);
    let sink = TableSink {
        events: events_columns.map_err(|e| layout_error(e.to_string()))?,
        triggers: trigger_columns.map_err(|e| layout_error(e.to_string()))?,
        events_len: 0,
        triggers_len: 0,
    };
    // Offsets of the `t` columns in their streams.
    let offsets = (
        (sink.events.t.as_ptr() as usize - base) as u64,
        (sink.triggers.t.as_ptr() as usize - base) as u64 - trigger_offset,
    );
    let mut sink = GeometryFilter::new(sink, detected.stated_geometry());
    let mut decoder = chunk.decoder();
    let start = detected.data_offset as u64 + chunk.start;
    file.read_range(start, chunk.end - chunk.start, |bytes| decoder.feed(bytes, &mut sink))?;
    decoder.finish(&mut sink);
    let (kept, dropped, trigger_kept) =
        (sink.inner.events_len, sink.dropped, sink.inner.triggers_len);
    if kept as u64 + dropped != rows || trigger_kept as u64 != trigger_rows {
        return Err(IngestError::Changed { path: file.path().to_owned(), counted: rows });
    }
    let event_times = TimeColumn::new(&sink.inner.events.t[..kept], offsets.0);
    let trigger_times = TimeColumn::new(&sink.inner.triggers.t[..trigger_kept], offsets.1);
    if kept as u64 != rows {
        let event_bytes = &mut extent.bytes_mut()[..event_len as usize];
        event_layout.set_rows(event_bytes, kept).map_err(|e| layout_error(e.to_string()))?;
    }
    let report = DecodeReport { outside_geometry: dropped, stats: decoder.stats() };
    let events = TableStream { offset: 0, len: event_len, rows: kept as u64, times: event_times };
    let triggers = TableStream {
        offset: trigger_offset,
        len: trigger_len,
        rows: trigger_rows,
        times: trigger_times,
    };
    Ok(DecodedChunk { extent, events, triggers, report })
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
    use crate::arena::Arenas;
    use crate::instance::InstanceId;
    use crate::testing::{TempDir, decoded_chunk, write_evt3};

    #[test]
    fn a_chunk_is_decoded_into_an_exactly_sized_extent() {
        let dir = TempDir::new("ingest");
        let arenas =
            Arenas::new(&dir.0, &InstanceId::random().unwrap(), None, false, 1 << 24, u64::MAX);
        let decoded = decoded_chunk(&dir, &arenas, 5_000);
        assert_eq!(decoded.events.rows, 5_000);
        assert!(decoded.report.is_clean(), "{}", decoded.report);
        let end = decoded.triggers.offset + decoded.triggers.len;
        assert_eq!(decoded.extent.len(), arenas.footprint(end));
        assert_eq!(decoded.triggers.offset % 64, 0);
    }

    #[test]
    fn a_file_that_changed_after_indexing_is_an_error_not_a_wrong_table() {
        let dir = TempDir::new("ingest-changed");
        let arenas =
            Arenas::new(&dir.0, &InstanceId::random().unwrap(), None, false, 1 << 24, u64::MAX);
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
        let place = |len| {
            let extent = arenas.reserve(len).unwrap().unwrap();
            extent.back().unwrap();
            Ok((extent, ()))
        };
        let result = ingest_chunk(&file, "a.raw", &detected, &chunks[0], place);
        assert!(matches!(result, Err(IngestError::Changed { counted: 5_000, .. })), "{result:?}");
        assert_eq!(arenas.usage().extents, 0, "its extent is free again");
    }
}
