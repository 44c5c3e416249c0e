//! Where the CLI writes events: any format evshm encodes, or an Arrow IPC file.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Int8Array, Int16Array, Int64Array, RecordBatch};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{ArrowError, SchemaRef};
use evshm_formats::{
    Aedat2Chip, Columns, EncodeError, Encoder, EsKind, EsLayout, Event, EventSink, Format,
    Geometry, Trigger, WordOrder,
};

/// Rows per record batch of an Arrow output.
const ARROW_BATCH: usize = 1 << 20;

/// What the CLI can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Evt3,
    Evt21,
    /// EVT 2.1 with the 32-bit halves of each word swapped (`endianness=legacy`).
    Evt21Legacy,
    Evt2,
    Dat,
    /// One `t,x,y,p` line per event, with a header stating the geometry.
    Text,
    /// libcaer AEDAT 3.1 polarity packets (DVS128 Gesture's format).
    Aedat3,
    /// jAER AEDAT 2.0, for the camera of the geometry (DVS128 128x128, DAVIS240 240x180,
    /// DAVIS346 346x260, DAVIS640 640x480).
    Aedat2,
    /// Event Stream 2.0 DVS events (.es).
    Es,
    /// Event Stream 2.0 ATIS events (change detections).
    EsAtis,
    /// ATIS 40-bit .bin records (N-MNIST; at most 256x240, the geometry is not stored).
    AtisBin,
    /// An Arrow IPC file with the event schema (`t`, `x`, `y`, `p`).
    Arrow,
}

impl OutputFormat {
    /// The format a file name suggests: .dat, .csv/.txt, .arrow/.ipc/.feather, .raw (EVT3),
    /// .es (Event Stream DVS), .bin (ATIS). `.aedat` names AEDAT 2.0 and 3.1 alike: none.
    pub fn from_extension(path: &Path) -> Option<OutputFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "raw" => Some(OutputFormat::Evt3),
            "es" => Some(OutputFormat::Es),
            "bin" => Some(OutputFormat::AtisBin),
            "dat" => Some(OutputFormat::Dat),
            "csv" | "txt" => Some(OutputFormat::Text),
            "arrow" | "ipc" | "feather" => Some(OutputFormat::Arrow),
            _ => None,
        }
    }

    /// The event format, or `None` for Arrow.
    fn format(self) -> Option<Format> {
        Some(match self {
            OutputFormat::Evt3 => Format::Evt3,
            OutputFormat::Evt21 => Format::Evt21(WordOrder::Standard),
            OutputFormat::Evt21Legacy => Format::Evt21(WordOrder::Legacy),
            OutputFormat::Evt2 => Format::Evt2,
            OutputFormat::Dat => Format::Dat,
            OutputFormat::Text => Format::Text(Columns::TXYP),
            OutputFormat::Aedat3 => Format::Aedat3,
            // The encoder takes the camera from the geometry.
            OutputFormat::Aedat2 => Format::Aedat2(Aedat2Chip::Dvs128),
            OutputFormat::Es => Format::EventStream(EsLayout { kind: EsKind::Dvs, height: 0 }),
            OutputFormat::EsAtis => Format::EventStream(EsLayout { kind: EsKind::Atis, height: 0 }),
            OutputFormat::AtisBin => Format::AtisBin,
            OutputFormat::Arrow => return None,
        })
    }
}

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The event format cannot hold an event.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The Arrow file could not be written.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// Flushing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An open output that takes events as an [`EventSink`] and keeps the first error until
/// [`Output::finish`].
pub enum Output<W: Write> {
    /// An event format.
    Encoded { encoder: Encoder<W>, error: Option<EncodeError>, triggers_dropped: u64 },
    /// An Arrow IPC file, written a batch at a time.
    Arrow {
        writer: Box<FileWriter<W>>,
        schema: SchemaRef,
        columns: Columns4,
        error: Option<ArrowError>,
    },
}

impl<W: Write> Output<W> {
    /// Starts writing `format` to `out`; `metadata` goes into an Arrow file's schema.
    pub fn create(
        format: OutputFormat,
        out: W,
        geometry: Geometry,
        metadata: HashMap<String, String>,
    ) -> Result<Self, OutputError> {
        Ok(match format.format() {
            Some(format) => {
                let encoder = Encoder::new(format, out, geometry)?;
                Output::Encoded { encoder, error: None, triggers_dropped: 0 }
            }
            None => {
                let schema = Arc::new(evshm::schema::event_schema(metadata));
                let writer = Box::new(FileWriter::try_new(out, &schema)?);
                Output::Arrow { writer, schema, columns: Columns4::default(), error: None }
            }
        })
    }

    /// Writes what is pending; returns how many triggers the format had no place for.
    pub fn finish(mut self) -> Result<u64, OutputError> {
        self.write_batch();
        match self {
            Output::Encoded { error: Some(error), .. } => Err(error.into()),
            Output::Encoded { encoder, triggers_dropped, .. } => {
                encoder.finish()?.flush()?;
                Ok(triggers_dropped)
            }
            Output::Arrow { error: Some(error), .. } => Err(error.into()),
            Output::Arrow { mut writer, .. } => {
                writer.finish()?;
                Ok(0)
            }
        }
    }

    fn write_batch(&mut self) {
        let Output::Arrow { writer, schema, columns, error } = self else { return };
        let c = std::mem::take(columns);
        if c.t.is_empty() || error.is_some() {
            return;
        }
        let batch = RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                Arc::new(Int64Array::from(c.t)),
                Arc::new(Int16Array::from(c.x)),
                Arc::new(Int16Array::from(c.y)),
                Arc::new(Int8Array::from(c.p)),
            ],
        );
        if let Err(e) = batch.and_then(|batch| writer.write(&batch)) {
            *error = Some(e);
        }
    }
}

impl<W: Write> EventSink for Output<W> {
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8) {
        match self {
            Output::Encoded { encoder, error: error @ None, .. } => {
                if let Err(e) = encoder.push(&Event { t, x, y, p }) {
                    *error = Some(e);
                }
            }
            Output::Encoded { .. } => {}
            Output::Arrow { columns: c, .. } => {
                c.t.push(t);
                c.x.push(x as i16);
                c.y.push(y as i16);
                c.p.push(p as i8);
                if c.t.len() == ARROW_BATCH {
                    self.write_batch();
                }
            }
        }
    }

    fn trigger(&mut self, trigger: Trigger) {
        if let Output::Encoded { encoder, error, triggers_dropped } = self {
            match encoder.push_trigger(&trigger) {
                Ok(true) => {}
                Ok(false) => *triggers_dropped += 1,
                Err(e) => *error = error.take().or(Some(e)),
            }
        }
    }
}

/// The columns of the Arrow batch being filled.
#[derive(Default)]
pub struct Columns4 {
    t: Vec<i64>,
    x: Vec<i16>,
    y: Vec<i16>,
    p: Vec<i8>,
}
