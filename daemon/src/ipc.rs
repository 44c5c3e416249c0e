//! The Arrow IPC stream a table's extent holds, laid out before any event is decoded.
//!
//! A record batch message's metadata depends only on the row count, so the whole stream
//! (schema message, one record batch, end-of-stream marker) can be sized exactly from the
//! count of a first decoding pass; the second pass then writes events straight into the
//! column buffers in the extent, with no intermediate copy. Every message and buffer
//! starts at a multiple of 64 bytes from the stream's start, itself 64-byte aligned in a
//! page-aligned extent, so
//! readers can require alignment and never copy. No compression: it would force a copy
//! on read.

use arrow_ipc::writer::{DictionaryTracker, EncodedData, IpcDataGenerator, IpcWriteOptions};
use arrow_ipc::{
    Buffer as IpcBuffer, FieldNode, MessageBuilder, MessageHeader, MetadataVersion,
    RecordBatchBuilder,
};
use arrow_schema::{ArrowError, Schema};

/// Alignment of every message and buffer, in bytes.
pub const ALIGNMENT: usize = 64;

/// The end-of-stream marker: a continuation marker and a zero length.
const END_OF_STREAM: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];

/// Where everything goes in a stream holding `rows` rows of a schema of non-null,
/// fixed-width primitive columns (the event and trigger tables).
#[derive(Debug, Clone)]
pub struct StreamLayout {
    schema_message: Vec<u8>,
    batch_message: Vec<u8>,
    /// Offset from the start of the body, and bytes per value, of each column.
    columns: Vec<(usize, usize)>,
    body_len: usize,
    /// Rows the columns have room for.
    capacity: usize,
    options: IpcWriteOptions,
}

/// The writable columns of an event table inside a stream.
#[derive(Debug)]
pub struct EventColumns<'a> {
    /// Timestamps in microseconds.
    pub t: &'a mut [i64],
    /// Columns.
    pub x: &'a mut [i16],
    /// Rows.
    pub y: &'a mut [i16],
    /// Polarities.
    pub p: &'a mut [i8],
}

impl<'a> EventColumns<'a> {
    /// Types the byte columns [`StreamLayout::write`] returned for the event schema.
    pub fn new(columns: Vec<&'a mut [u8]>) -> Result<Self, ArrowError> {
        let Ok::<[_; 4], _>([t, x, y, p]) = columns.try_into() else {
            return Err(ArrowError::SchemaError("the event table has four columns".into()));
        };
        Ok(Self { t: cast_mut(t)?, x: cast_mut(x)?, y: cast_mut(y)?, p: cast_mut(p)? })
    }
}

/// The writable columns of a trigger table inside a stream.
#[derive(Debug)]
pub struct TriggerColumns<'a> {
    /// Timestamps in microseconds.
    pub t: &'a mut [i64],
    /// Trigger input.
    pub id: &'a mut [i16],
    /// Edge.
    pub p: &'a mut [i8],
}

impl<'a> TriggerColumns<'a> {
    /// Types the byte columns [`StreamLayout::write`] returned for the trigger schema.
    pub fn new(columns: Vec<&'a mut [u8]>) -> Result<Self, ArrowError> {
        let Ok::<[_; 3], _>([t, id, p]) = columns.try_into() else {
            return Err(ArrowError::SchemaError("the trigger table has three columns".into()));
        };
        Ok(Self { t: cast_mut(t)?, id: cast_mut(id)?, p: cast_mut(p)? })
    }
}

impl StreamLayout {
    /// Lays out a stream of `schema` with room for `rows` rows.
    pub fn new(schema: &Schema, rows: usize) -> Result<Self, ArrowError> {
        let options = IpcWriteOptions::try_new(ALIGNMENT, false, MetadataVersion::V5)?;
        let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
            schema,
            &mut DictionaryTracker::new(false),
            &options,
        );
        let schema_message = frame(encoded.ipc_message, &options)?;

        let mut columns = Vec::new();
        let mut body_len = 0;
        for field in schema.fields() {
            let width = field.data_type().primitive_width().filter(|_| !field.is_nullable());
            let width = width.ok_or_else(|| {
                ArrowError::SchemaError(format!(
                    "column {} is not a non-null fixed-width primitive",
                    field.name()
                ))
            })?;
            columns.push((body_len, width));
            body_len += padded(rows * width);
        }
        let metadata = batch_metadata(rows, &columns, body_len);
        let batch_message = frame(metadata, &options)?;
        Ok(Self { schema_message, batch_message, columns, body_len, capacity: rows, options })
    }

    /// Rewrites the batch message of a stream [`StreamLayout::write`] wrote into
    /// `stream` so that it holds only the first `rows` rows.
    pub fn set_rows(&self, stream: &mut [u8], rows: usize) -> Result<(), ArrowError> {
        if rows > self.capacity {
            return Err(ArrowError::MemoryError(format!(
                "{rows} rows do not fit a layout for {}",
                self.capacity
            )));
        }
        let metadata = batch_metadata(rows, &self.columns, self.body_len);
        let message = frame(metadata, &self.options)?;
        if message.len() != self.batch_message.len() {
            return Err(ArrowError::MemoryError("batch message changed size".into()));
        }
        let start = self.schema_message.len();
        stream[start..start + message.len()].copy_from_slice(&message);
        Ok(())
    }

    /// Exact size of the stream in bytes.
    pub fn total_len(&self) -> usize {
        self.body_start() + self.body_len + END_OF_STREAM.len()
    }

    fn body_start(&self) -> usize {
        self.schema_message.len() + self.batch_message.len()
    }

    /// Writes the messages and the end marker into `stream` (exactly
    /// [`StreamLayout::total_len`] bytes, 64-byte aligned) and returns each column's
    /// values buffer, room for the layout's rows.
    pub fn write<'a>(&self, stream: &'a mut [u8]) -> Result<Vec<&'a mut [u8]>, ArrowError> {
        if stream.len() != self.total_len() || !(stream.as_ptr() as usize).is_multiple_of(ALIGNMENT)
        {
            return Err(ArrowError::MemoryError(format!(
                "stream of {} bytes at {:p} does not fit a stream of {} bytes aligned to {ALIGNMENT}",
                stream.len(),
                stream.as_ptr(),
                self.total_len()
            )));
        }
        let (head, rest) = stream.split_at_mut(self.body_start());
        head[..self.schema_message.len()].copy_from_slice(&self.schema_message);
        head[self.schema_message.len()..].copy_from_slice(&self.batch_message);
        let (body, end) = rest.split_at_mut(self.body_len);
        end.copy_from_slice(&END_OF_STREAM);

        let mut columns = Vec::with_capacity(self.columns.len());
        let mut rest = body;
        for (i, &(offset, width)) in self.columns.iter().enumerate() {
            let next = self.columns.get(i + 1).map_or(self.body_len, |&(next, _)| next);
            let (column, tail) = rest.split_at_mut(next - offset);
            columns.push(&mut column[..self.capacity * width]);
            rest = tail;
        }
        Ok(columns)
    }
}

/// Views `bytes` as a slice of `T`, refusing a misaligned or ragged buffer.
fn cast_mut<T: Primitive>(bytes: &mut [u8]) -> Result<&mut [T], ArrowError> {
    // SAFETY: `T` is a primitive integer, valid for every bit pattern; `align_to_mut`
    // only returns a middle part that is correctly aligned for `T`.
    let (prefix, values, suffix) = unsafe { bytes.align_to_mut::<T>() };
    if !prefix.is_empty() || !suffix.is_empty() {
        return Err(ArrowError::MemoryError("column buffer misaligned or short".into()));
    }
    Ok(values)
}

/// Integers that any bit pattern is a valid value of.
trait Primitive {}
impl Primitive for i64 {}
impl Primitive for i16 {}
impl Primitive for i8 {}

fn padded(len: usize) -> usize {
    len.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// Adds the continuation marker, length prefix and padding to a flatbuffer message.
fn frame(metadata: Vec<u8>, options: &IpcWriteOptions) -> Result<Vec<u8>, ArrowError> {
    let mut framed = Vec::new();
    let encoded = EncodedData { ipc_message: metadata, arrow_data: Vec::new() };
    arrow_ipc::writer::write_message(&mut framed, encoded, options)?;
    Ok(framed)
}

/// The flatbuffer `Message` of a record batch of non-null primitive columns.
fn batch_metadata(rows: usize, columns: &[(usize, usize)], body_len: usize) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    // Writing default values too keeps the message's size independent of the numbers.
    fbb.force_defaults(true);
    let nodes: Vec<FieldNode> = columns.iter().map(|_| FieldNode::new(rows as i64, 0)).collect();
    let buffers: Vec<IpcBuffer> = columns
        .iter()
        .flat_map(|&(offset, width)| {
            // An empty validity buffer (no nulls), then the values.
            [IpcBuffer::new(offset as i64, 0), IpcBuffer::new(offset as i64, (rows * width) as i64)]
        })
        .collect();
    let nodes = fbb.create_vector(&nodes);
    let buffers = fbb.create_vector(&buffers);
    let mut batch = RecordBatchBuilder::new(&mut fbb);
    batch.add_length(rows as i64);
    batch.add_nodes(nodes);
    batch.add_buffers(buffers);
    let batch = batch.finish();
    let mut message = MessageBuilder::new(&mut fbb);
    message.add_version(MetadataVersion::V5);
    message.add_header_type(MessageHeader::RecordBatch);
    message.add_bodyLength(body_len as i64);
    message.add_header(batch.as_union_value());
    let message = message.finish();
    fbb.finish(message, None);
    fbb.finished_data().to_vec()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int8Type, Int16Type, Int64Type};
    use arrow_buffer::{Buffer, MutableBuffer};
    use arrow_ipc::reader::StreamDecoder;

    use super::*;

    fn stream_of(rows: usize) -> Buffer {
        let meta = HashMap::from([("evshm.width".to_owned(), "640".to_owned())]);
        let schema = evshm::schema::event_schema(meta);
        let layout = StreamLayout::new(&schema, rows).unwrap();
        let mut memory = MutableBuffer::from_len_zeroed(layout.total_len());
        let columns = EventColumns::new(layout.write(memory.as_slice_mut()).unwrap()).unwrap();
        for i in 0..rows {
            columns.t[i] = 1_000_000 + i as i64;
            columns.x[i] = i as i16;
            columns.y[i] = -(i as i16);
            columns.p[i] = (i % 2) as i8;
        }
        memory.into()
    }

    #[test]
    fn arrow_reads_the_stream_in_place() {
        for rows in [0, 1, 7, 1000] {
            let stream = stream_of(rows);
            let mut rest = stream.clone();
            let mut decoder = StreamDecoder::new().with_require_alignment(true);
            let batch = decoder.decode(&mut rest).unwrap().unwrap();
            assert!(decoder.decode(&mut rest).unwrap().is_none());
            decoder.finish().unwrap();
            assert_eq!(batch.num_rows(), rows);
            assert_eq!(batch.schema().metadata()["evshm.width"], "640");
            let t = batch.column(0).as_primitive::<Int64Type>();
            let x = batch.column(1).as_primitive::<Int16Type>();
            let y = batch.column(2).as_primitive::<Int16Type>();
            let p = batch.column(3).as_primitive::<Int8Type>();
            for i in 0..rows {
                assert_eq!(
                    (t.value(i), x.value(i), y.value(i), p.value(i)),
                    (1_000_000 + i as i64, i as i16, -(i as i16), (i % 2) as i8)
                );
            }
            let range = stream.as_ptr() as usize..stream.as_ptr() as usize + stream.len();
            let inside = |b: &Buffer| range.contains(&(b.as_ptr() as usize));
            assert!(t.values().inner().is_empty() || inside(t.values().inner()));
        }
    }

    #[test]
    fn fewer_rows_than_laid_out() {
        let schema = evshm::schema::event_schema(HashMap::new());
        for (capacity, rows) in [(10, 7), (1000, 0), (5, 5)] {
            let layout = StreamLayout::new(&schema, capacity).unwrap();
            let mut memory = MutableBuffer::from_len_zeroed(layout.total_len());
            let columns = EventColumns::new(layout.write(memory.as_slice_mut()).unwrap()).unwrap();
            for (i, t) in columns.t.iter_mut().enumerate() {
                *t = i as i64;
            }
            layout.set_rows(memory.as_slice_mut(), rows).unwrap();
            assert!(layout.set_rows(memory.as_slice_mut(), capacity + 1).is_err());
            let mut rest: Buffer = memory.into();
            let mut decoder = StreamDecoder::new().with_require_alignment(true);
            let batch = decoder.decode(&mut rest).unwrap().unwrap();
            assert_eq!(batch.num_rows(), rows);
            let t = batch.column(0).as_primitive::<Int64Type>();
            assert_eq!(t.values().to_vec(), (0..rows as i64).collect::<Vec<_>>());
        }
    }

    #[test]
    fn refuses_a_misaligned_or_wrongly_sized_stream() {
        let schema = evshm::schema::event_schema(HashMap::new());
        let layout = StreamLayout::new(&schema, 3).unwrap();
        let mut memory = MutableBuffer::from_len_zeroed(layout.total_len() + 1);
        assert!(layout.write(&mut memory.as_slice_mut()[1..]).is_err());
        assert!(layout.write(&mut memory.as_slice_mut()[..layout.total_len() - 1]).is_err());
    }
}
