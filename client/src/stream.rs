//! Reading the Arrow IPC streams of a recording's chunks in place: one schema for the
//! recording, one record batch per chunk.
//!
//! Every chunk's stream is a schema message, one record batch message and the
//! end-of-stream marker (docs/PROTOCOL.md). The chunks of one reply have the same schema,
//! so its message is decoded once, from the first chunk, and every other chunk's is only
//! compared with it byte for byte; each batch is then decoded by arrow-ipc's
//! `RecordBatchDecoder` with every buffer a slice of the stream (a misaligned buffer is an
//! error rather than a silent copy). That is what `StreamDecoder` does, less a schema
//! decode per chunk: with many chunks, most of an open's time.

use std::collections::HashMap;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::MessageHeader;
use arrow_schema::{ArrowError, SchemaRef};

/// The prefix of every encapsulated message: the continuation marker and the length of
/// the message's flatbuffer.
const PREFIX: usize = 8;

/// The schema shared by the chunks of one reply, and its message's bytes.
#[derive(Debug)]
pub(crate) struct StreamSchema {
    schema: SchemaRef,
    message: Buffer,
}

impl StreamSchema {
    /// The schema of the stream `stream`.
    pub(crate) fn of(stream: &Buffer) -> Result<StreamSchema, ArrowError> {
        let (message, _) = message_at(stream, 0)?;
        let flatbuffer = arrow_ipc::root_as_message(&message[PREFIX..])
            .map_err(|e| ArrowError::IpcError(format!("schema message: {e}")))?;
        let schema = flatbuffer
            .header_as_schema()
            .ok_or_else(|| ArrowError::IpcError("stream does not begin with a schema".into()))?;
        let schema = arrow_ipc::convert::try_fb_to_schema(schema)?;
        Ok(StreamSchema { schema: schema.into(), message })
    }

    /// The schema.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The one record batch of `stream`, whose schema message must be this one's, read in
    /// place.
    pub(crate) fn batch(&self, stream: &Buffer) -> Result<RecordBatch, ArrowError> {
        let (schema, end) = message_at(stream, 0)?;
        if schema.as_slice() != self.message.as_slice() {
            return Err(ArrowError::IpcError("a chunk's schema differs from the first's".into()));
        }
        let (message, body_start) = message_at(stream, end)?;
        let flatbuffer = arrow_ipc::root_as_message(&message[PREFIX..])
            .map_err(|e| ArrowError::IpcError(format!("batch message: {e}")))?;
        if flatbuffer.header_type() != MessageHeader::RecordBatch {
            return Err(ArrowError::IpcError("the schema is not followed by a batch".into()));
        }
        let batch = flatbuffer.header_as_record_batch().expect("a record batch header");
        let body_len = usize::try_from(flatbuffer.bodyLength())
            .map_err(|_| ArrowError::IpcError("negative body length".into()))?;
        let body_end = body_start
            .checked_add(body_len)
            .filter(|&end| end + PREFIX <= stream.len())
            .ok_or_else(|| ArrowError::IpcError("batch body past the stream's end".into()))?;
        let end_marker = &stream.as_slice()[body_end..body_end + PREFIX];
        if end_marker != [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0] {
            return Err(ArrowError::IpcError("more than one batch, or no end marker".into()));
        }
        let body = stream.slice_with_length(body_start, body_len);
        let dictionaries = HashMap::new();
        let version = flatbuffer.version();
        arrow_ipc::reader::RecordBatchDecoder::try_new(
            &body,
            batch,
            self.schema.clone(),
            &dictionaries,
            &version,
        )?
        .with_require_alignment(true)
        .read_record_batch()
    }
}

/// The encapsulated message at `at` of `stream` (prefix included) and where what follows
/// it begins.
fn message_at(stream: &Buffer, at: usize) -> Result<(Buffer, usize), ArrowError> {
    let bytes = stream.as_slice();
    let short = || ArrowError::IpcError(format!("stream ends inside the message at {at}"));
    let prefix = bytes.get(at..at + PREFIX).ok_or_else(short)?;
    if prefix[..4] != [0xff; 4] {
        return Err(ArrowError::IpcError(format!("no continuation marker at {at}")));
    }
    let len = u32::from_le_bytes(prefix[4..].try_into().expect("4 bytes")) as usize;
    let end = at + PREFIX + len;
    if len == 0 || end > bytes.len() {
        return Err(short());
    }
    Ok((stream.slice_with_length(at, PREFIX + len), end))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch};
    use arrow_ipc::writer::StreamWriter;
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn stream(values: &[i64]) -> Buffer {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values.to_vec()))])
                .unwrap();
        let mut writer = StreamWriter::try_new(Vec::new(), &schema).unwrap();
        writer.write(&batch).unwrap();
        Buffer::from(writer.into_inner().unwrap())
    }

    #[test]
    fn batches_are_read_in_place_with_the_first_streams_schema() {
        let (first, second) = (stream(&[1, 2, 3]), stream(&[4, 5]));
        let schema = StreamSchema::of(&first).unwrap();
        let batch = schema.batch(&second).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let data = batch.column(0).to_data();
        let at = data.buffers()[0].as_ptr() as usize;
        let range = second.as_slice().as_ptr_range();
        assert!((range.start as usize..range.end as usize).contains(&at), "in place");
        let other = {
            let schema = Arc::new(Schema::new(vec![Field::new("u", DataType::Int64, false)]));
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1]))])
                    .unwrap();
            let mut writer = StreamWriter::try_new(Vec::new(), &schema).unwrap();
            writer.write(&batch).unwrap();
            Buffer::from(writer.into_inner().unwrap())
        };
        assert!(schema.batch(&other).is_err(), "another schema");
        assert!(schema.batch(&second.slice_with_length(0, second.len() - 8)).is_err(), "cut");
    }
}
