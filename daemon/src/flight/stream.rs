//! A chunk's table as Flight messages, straight from the shared memory.
//!
//! A segment holds one Arrow IPC stream (`crate::ipc`): a schema message, one record
//! batch message and its body, an end-of-stream marker. Flight's `FlightData` carries an
//! IPC message as its `data_header` (the flatbuffer) and `data_body` (the buffers), so a
//! whole chunk goes out as two `FlightData` whose fields are slices of the mapping
//! (`bytes::Bytes` owning the mapping and the chunk): nothing re-encoded, nothing copied by
//! evshmd. Only the part of a chunk that a window cuts is encoded anew, from a slice of
//! the batch (arrow's IPC writer copies just those rows), since its columns' rows are not
//! one contiguous range of the body.
//!
//! [`stream_bytes`] is the one place that knows where a chunk's stream is in memory.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arrow_flight::FlightData;
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_ipc::{MessageHeader, MetadataVersion, root_as_message};
use arrow_schema::{ArrowError, Schema};
use bytes::Bytes;

use crate::cache::Resident;
use crate::ipc::ALIGNMENT;
use crate::open::ChunkTable;

/// The Arrow IPC stream of a chunk's table, read-only, as bytes that keep the chunk
/// resident (and its memory mapped) while any slice of them lives.
///
/// Today this maps the table's published segment, once while it is resident (see
/// [`purge_mappings`]); once segments are extents of one mapped arena it is a slice of
/// that mapping.
pub fn stream_bytes(table: &ChunkTable) -> std::io::Result<Bytes> {
    let segment = &table.segment().segment;
    let mut kept = mappings();
    purge(&mut kept);
    let found = kept.iter().find(|k| k.name == segment.name()).map(|k| Arc::clone(&k.map));
    let map = match found {
        Some(map) => map,
        None => {
            let fd = segment.share()?;
            let len = usize::try_from(segment.len()).map_err(std::io::Error::other)?;
            // SAFETY: a published segment is never written, truncated or shrunk again by
            // evshmd (its contract, `crate::segment`); sealed memfds have the kernel
            // enforce it, and named ones could only be changed by the daemon's own uid or
            // root, which named mode trusts (README). Its pages are allocated, so no
            // access within `len` faults. The map is read-only.
            let map = unsafe { memmap2::MmapOptions::new().len(len).populate().map(&fd)? };
            let map = Arc::new(map);
            let chunk = Arc::downgrade(&table.resident);
            kept.push(Kept { chunk, name: segment.name().to_owned(), map: Arc::clone(&map) });
            map
        }
    };
    Ok(Bytes::from_owner(Mapped { map, _chunk: Arc::clone(&table.resident) }))
}

/// Drops the mappings of chunks no longer resident (evicted, or of an older file
/// version). [`stream_bytes`] does on every call; the Flight runtime also does every
/// second, so an evicted chunk's pages are not held longer than that.
pub fn purge_mappings() {
    purge(&mut mappings());
}

/// A segment mapped for streaming, kept while its chunk is resident: mapping 50 MB with
/// its page tables filled and unmapping it again costs about 15 ms, on every `DoGet`.
struct Kept {
    chunk: Weak<Resident>,
    name: String,
    map: Arc<memmap2::Mmap>,
}

static MAPPINGS: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

fn mappings() -> MutexGuard<'static, Vec<Kept>> {
    // A list of plain entries, never left half-changed by a panic.
    MAPPINGS.lock().unwrap_or_else(|e| e.into_inner())
}

fn purge(kept: &mut Vec<Kept>) {
    kept.retain(|k| k.chunk.strong_count() > 0);
}

/// A read-only mapping of a chunk's segment, and the chunk, kept as long as the bytes.
struct Mapped {
    map: Arc<memmap2::Mmap>,
    _chunk: Arc<Resident>,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

/// A stream's two messages, as slices of it.
#[derive(Debug, Clone)]
pub struct StreamParts {
    /// The schema message's flatbuffer.
    pub schema_header: Bytes,
    /// The record batch message's flatbuffer.
    pub batch_header: Bytes,
    /// The record batch's body: every column's buffers.
    pub body: Bytes,
}

impl StreamParts {
    /// Finds the messages of a stream as `crate::ipc` lays it out.
    pub fn split(stream: &Bytes) -> Result<StreamParts, ArrowError> {
        let (schema_header, next) = message_at(stream, 0)?;
        let (batch_header, body_start) = message_at(stream, next)?;
        let kind = |header: &Bytes| root_as_message(header).map(|m| m.header_type());
        let bad = |what: &str| ArrowError::IpcError(format!("segment stream: {what}"));
        if kind(&schema_header).map_err(|e| bad(&e.to_string()))? != MessageHeader::Schema {
            return Err(bad("first message is not a schema"));
        }
        let batch = root_as_message(&batch_header).map_err(|e| bad(&e.to_string()))?;
        if batch.header_type() != MessageHeader::RecordBatch {
            return Err(bad("second message is not a record batch"));
        }
        let body_len = usize::try_from(batch.bodyLength()).map_err(|_| bad("negative body"))?;
        let body_end = body_start.checked_add(body_len).filter(|&end| end <= stream.len());
        let body_end = body_end.ok_or_else(|| bad("body beyond the segment"))?;
        Ok(StreamParts { schema_header, batch_header, body: stream.slice(body_start..body_end) })
    }

    /// The schema message as Flight sends it first.
    pub fn schema_data(&self) -> FlightData {
        FlightData { data_header: self.schema_header.clone(), ..FlightData::default() }
    }

    /// The whole record batch, as it lies in memory.
    pub fn batch_data(&self) -> FlightData {
        FlightData {
            data_header: self.batch_header.clone(),
            data_body: self.body.clone(),
            ..FlightData::default()
        }
    }

    /// Rows `rows` of the batch of `schema` (all of them: as it lies in memory; fewer:
    /// those rows encoded anew).
    pub fn rows_data(
        &self,
        schema: Arc<Schema>,
        rows: std::ops::Range<usize>,
        total: usize,
    ) -> Result<FlightData, ArrowError> {
        if rows == (0..total) {
            return Ok(self.batch_data());
        }
        // Read in place (the body is a slice of the mapping, 64-byte aligned): only the
        // rows kept are copied, by the writer below.
        let message = root_as_message(&self.batch_header)
            .map_err(|e| ArrowError::IpcError(format!("segment stream: {e}")))?;
        let header = message
            .header_as_record_batch()
            .ok_or_else(|| ArrowError::IpcError("segment stream: no record batch header".into()))?;
        let body = arrow_buffer::Buffer::from(self.body.clone());
        let batch = arrow_ipc::reader::read_record_batch(
            &body,
            header,
            schema,
            &Default::default(),
            None,
            &message.version(),
        )?;
        if rows.end > batch.num_rows() {
            return Err(ArrowError::InvalidArgumentError(format!(
                "rows {}..{} of a chunk of {}",
                rows.start,
                rows.end,
                batch.num_rows()
            )));
        }
        let part = batch.slice(rows.start, rows.len());
        let options = IpcWriteOptions::try_new(ALIGNMENT, false, MetadataVersion::V5)?;
        let (_, encoded) = IpcDataGenerator::default().encode(
            &part,
            &mut DictionaryTracker::new(false),
            &options,
            &mut IpcWriteContext::default(),
        )?;
        Ok(encoded.into())
    }
}

/// The flatbuffer of the encapsulated message at `at` (continuation marker, length,
/// flatbuffer), and where what follows it begins.
fn message_at(stream: &Bytes, at: usize) -> Result<(Bytes, usize), ArrowError> {
    let bad = || ArrowError::IpcError(format!("segment stream: no message at byte {at}"));
    let prefix = stream.get(at..at + 8).ok_or_else(bad)?;
    if prefix[..4] != [0xFF; 4] {
        return Err(bad());
    }
    let len = i32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    let len = usize::try_from(len).map_err(|_| bad())?;
    let end = (at + 8).checked_add(len).filter(|&end| end <= stream.len()).ok_or_else(bad)?;
    Ok((stream.slice(at + 8..end), end))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_buffer::MutableBuffer;
    use arrow_flight::utils::flight_data_to_arrow_batch;

    use super::*;
    use crate::ipc::{EventColumns, StreamLayout};

    fn stream_of(rows: usize) -> (Bytes, Arc<Schema>) {
        let schema = Arc::new(evshm::schema::event_schema(HashMap::new()));
        let layout = StreamLayout::new(&schema, rows).unwrap();
        let mut memory = MutableBuffer::from_len_zeroed(layout.total_len());
        let columns = EventColumns::new(layout.write(memory.as_slice_mut()).unwrap()).unwrap();
        for (i, t) in columns.t.iter_mut().enumerate() {
            *t = 10 * i as i64;
        }
        (Bytes::from(memory.as_slice().to_vec()), schema)
    }

    fn times(data: &FlightData, schema: Arc<Schema>) -> Vec<i64> {
        let batch = flight_data_to_arrow_batch(data, schema, &HashMap::new()).unwrap();
        batch.column(0).as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn whole_batches_are_slices_of_the_stream_and_parts_are_reencoded() {
        let (stream, schema) = stream_of(1000);
        let parts = StreamParts::split(&stream).unwrap();
        let whole = parts.rows_data(Arc::clone(&schema), 0..1000, 1000).unwrap();
        let inside = |b: &Bytes| {
            let range = stream.as_ptr() as usize..stream.as_ptr() as usize + stream.len();
            range.contains(&(b.as_ptr() as usize))
        };
        assert!(inside(&whole.data_header) && inside(&whole.data_body), "no copy");
        assert!(inside(&parts.schema_data().data_header));
        assert_eq!(
            times(&whole, Arc::clone(&schema)),
            (0..1000).map(|i| 10 * i).collect::<Vec<_>>()
        );
        let part = parts.rows_data(Arc::clone(&schema), 100..250, 1000).unwrap();
        assert!(!inside(&part.data_body));
        assert_eq!(
            times(&part, Arc::clone(&schema)),
            (100..250).map(|i| 10 * i).collect::<Vec<_>>()
        );
        assert!(parts.rows_data(schema, 900..1001, 1000).is_err());
    }

    #[test]
    fn a_chunk_is_mapped_once_while_resident() {
        use crate::open::{OpenRequest, ReadPosition, open, open_chunk};
        use crate::testing::{TempDir, daemon, write_evt3};
        use evshm_protocol::Table;

        let dir = TempDir::new("flight-mappings");
        let daemon = daemon(&dir, 1 << 20, u64::MAX);
        write_evt3(&dir.0.join("root/m.raw"), 20_000);
        let request =
            OpenRequest { path: "m.raw", table: Table::Events, geometry: None, window: None };
        let version =
            open(&daemon, &request, &mut ReadPosition::default()).unwrap().target.identity.token();
        let chunk = || open_chunk(&daemon, "m.raw", Table::Events, None, 0, &version).unwrap();
        let (first, second) = (stream_bytes(&chunk()).unwrap(), stream_bytes(&chunk()).unwrap());
        assert_eq!(first.as_ptr(), second.as_ptr(), "mapped once");
        let parts = StreamParts::split(&first).unwrap();
        assert!(parts.body.len() >= 20_000 * 13);
        let name = chunk().segment().segment.name().to_owned();
        let kept = || mappings().iter().any(|k| k.name == name);
        assert!(kept());
        drop((first, second, parts));
        daemon.evict_unleased();
        purge_mappings();
        assert!(!kept(), "gone with the chunk");
    }

    #[test]
    fn a_stream_that_is_not_evshms_is_an_error() {
        let (stream, _) = stream_of(10);
        for cut in [0, 4, 8, 100, stream.len() - 20] {
            assert!(StreamParts::split(&stream.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert!(StreamParts::split(&Bytes::from(vec![0u8; 256])).is_err());
    }
}
