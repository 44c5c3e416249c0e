//! A chunk's table as Flight messages, straight from the shared memory.
//!
//! A chunk's table is one Arrow IPC stream in its extent of an arena (`crate::ipc`): a
//! schema message, one record batch message and its body, an end-of-stream marker.
//! Flight's `FlightData` carries an IPC message as its `data_header` (the flatbuffer) and
//! `data_body` (the buffers), so a whole chunk goes out as two `FlightData` whose fields
//! are slices of evshmd's own mapping of the arena (`bytes::Bytes` owning the chunk):
//! nothing re-encoded, nothing copied by evshmd. Only the part of a chunk that a window
//! cuts is encoded anew, from a slice of the batch (arrow's IPC writer copies just those
//! rows), since its columns' rows are not one contiguous range of the body.
//!
//! [`stream_bytes`] is the one place that knows where a chunk's stream is in memory.

use std::sync::Arc;

use arrow_flight::FlightData;
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_ipc::{MessageHeader, MetadataVersion, root_as_message};
use arrow_schema::{ArrowError, Schema};
use bytes::Bytes;

use crate::cache::Resident;
use crate::ipc::ALIGNMENT;
use crate::open::ChunkTable;

/// The Arrow IPC stream of a chunk's table, read-only, as bytes of evshmd's mapping of
/// its arena that keep the chunk resident (and so its extent from reuse) while any slice
/// of them lives.
pub fn stream_bytes(table: &ChunkTable) -> Bytes {
    Bytes::from_owner(Held { chunk: Arc::clone(&table.resident), table: table.table })
}

/// A chunk, held while its table's bytes are sent.
struct Held {
    chunk: Arc<Resident>,
    table: evshm_protocol::Table,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        let stream = self.chunk.decoded.table(self.table);
        let start = stream.offset as usize;
        &self.chunk.decoded.extent.bytes()[start..start + stream.len as usize]
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
        let bad = |what: &str| ArrowError::IpcError(format!("chunk stream: {what}"));
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
    fn a_chunks_stream_is_its_extent_in_the_arena_and_holds_the_chunk() {
        use crate::open::{OpenRequest, ReadPosition, open, open_chunk};
        use crate::testing::{TempDir, daemon, write_evt3};
        use evshm_protocol::Table;

        let dir = TempDir::new("flight-stream");
        let daemon = daemon(&dir, 1 << 20, u64::MAX);
        write_evt3(&dir.0.join("root/m.raw"), 20_000);
        let request =
            OpenRequest { path: "m.raw", table: Table::Events, geometry: None, window: None };
        let version =
            open(&daemon, &request, &mut ReadPosition::default()).unwrap().target.identity.token();
        let chunk = || open_chunk(&daemon, "m.raw", Table::Events, None, 0, &version).unwrap();
        let (first, second) = (stream_bytes(&chunk()), stream_bytes(&chunk()));
        assert_eq!(first.as_ptr(), second.as_ptr(), "the same bytes: the arena's");
        let extent = chunk().resident.decoded.extent.bytes().as_ptr_range();
        assert!(extent.contains(&first.as_ptr()), "in the chunk's extent");
        let parts = StreamParts::split(&first).unwrap();
        assert!(parts.body.len() >= 20_000 * 13);
        assert!(daemon.evict_unleased().chunks == 0, "the bytes hold the chunk");
        drop((first, second, parts));
        assert_eq!(daemon.evict_unleased().chunks, 1, "evictable once they are gone");
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
