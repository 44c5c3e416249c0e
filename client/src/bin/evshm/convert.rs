//! `evshm convert`: any recording evshm reads, to any format it writes or to an Arrow
//! IPC file, streamed in chunks (memory stays flat whatever the size).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::{Int8Array, Int16Array, Int64Array, RecordBatch};
use arrow_ipc::writer::FileWriter;
use evshm_formats::{
    Columns, Decoder, Detected, EncodeError, Encoder, EventSink, Format, Geometry, GeometryFilter,
    MAX_HEADER_LEN, WordOrder, detect,
};

/// Options of `evshm convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Recording to read (any format evshm reads).
    input: PathBuf,
    /// File to write.
    output: PathBuf,
    /// Output format [default: from the extension: .dat dat, .csv/.txt text,
    /// .arrow/.ipc/.feather Arrow IPC file, .raw evt3].
    #[arg(long, value_enum)]
    to: Option<Target>,
    /// Sensor width, for an input that states no geometry.
    #[arg(long, requires = "height")]
    width: Option<u32>,
    /// Sensor height, for an input that states no geometry.
    #[arg(long, requires = "width")]
    height: Option<u32>,
}

/// What `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    Evt3,
    Evt21,
    /// EVT 2.1 with the 32-bit halves of each word swapped (`endianness=legacy`).
    Evt21Legacy,
    Evt2,
    Dat,
    Text,
    /// An Arrow IPC file with the event schema (`t`, `x`, `y`, `p`).
    Arrow,
}

impl Target {
    fn from_extension(path: &Path) -> Option<Target> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "raw" => Some(Target::Evt3),
            "dat" => Some(Target::Dat),
            "csv" | "txt" => Some(Target::Text),
            "arrow" | "ipc" | "feather" => Some(Target::Arrow),
            _ => None,
        }
    }

    fn format(self) -> Option<Format> {
        Some(match self {
            Target::Evt3 => Format::Evt3,
            Target::Evt21 => Format::Evt21(WordOrder::Standard),
            Target::Evt21Legacy => Format::Evt21(WordOrder::Legacy),
            Target::Evt2 => Format::Evt2,
            Target::Dat => Format::Dat,
            Target::Text => Format::Text(Columns::TXYP),
            Target::Arrow => return None,
        })
    }
}

/// Bytes read at a time; also the granularity of the progress bar.
const CHUNK: usize = 1 << 20;
/// Inputs at least this large get a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 64 << 20;
/// Rows per record batch of an Arrow output.
const ARROW_BATCH: usize = 1 << 20;

/// Converts the input to the output the arguments describe.
pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    let target = args.to.or_else(|| Target::from_extension(&args.output)).with_context(|| {
        format!("cannot tell the output format from {}; pass --to", args.output.display())
    })?;
    let mut input =
        File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?;
    let size = input.metadata()?.len();
    let mut head = Vec::new();
    (&mut input).take(MAX_HEADER_LEN as u64).read_to_end(&mut head)?;
    let mut detected = detect(&head, args.input.extension().and_then(|e| e.to_str()))
        .with_context(|| format!("{}", args.input.display()))?;
    if let (Some(width), Some(height)) = (args.width, args.height) {
        detected = detected.with_geometry(Geometry { width, height }).map_err(|stated| {
            anyhow::anyhow!(
                "{} states a {}x{} sensor; drop --width and --height",
                args.input.display(),
                stated.width,
                stated.height
            )
        })?;
    }
    let out = File::create(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let out = BufWriter::with_capacity(CHUNK, out);

    let summary = match target.format() {
        Some(format) => {
            let encoder = Encoder::new(format, out, detected.geometry)?;
            let sink = EncodeSink { encoder, error: None, triggers_dropped: 0 };
            let sink = stream(&args.input, &detected, &head, input, size, sink)?;
            if let Some(error) = sink.inner.error {
                let hint = match (&error, detected.stated_geometry()) {
                    (EncodeError::OutOfRange { width, height, .. }, None) => format!(
                        " (the input states no geometry and {width}x{height} was assumed; \
                         pass --width and --height)"
                    ),
                    _ => String::new(),
                };
                bail!("cannot write {}: {error}{hint}", args.output.display());
            }
            sink.inner.encoder.finish()?.flush()?;
            Summary { dropped: sink.dropped, triggers_dropped: sink.inner.triggers_dropped }
        }
        None => {
            let schema = Arc::new(evshm::schema::event_schema(std::collections::HashMap::from([
                (evshm::schema::META_WIDTH.to_owned(), detected.geometry.width.to_string()),
                (evshm::schema::META_HEIGHT.to_owned(), detected.geometry.height.to_string()),
                (evshm::schema::META_FORMAT.to_owned(), detected.format.name().to_owned()),
                (evshm::schema::META_SOURCE.to_owned(), args.input.display().to_string()),
                (evshm::schema::META_GEOMETRY.to_owned(), detected.geometry_source.name().into()),
            ])));
            let writer = FileWriter::try_new(out, &schema)?;
            let sink = ArrowSink { writer, schema, columns: Columns4::default(), error: None };
            let mut sink = stream(&args.input, &detected, &head, input, size, sink)?;
            sink.inner.write_batch();
            if let Some(error) = sink.inner.error {
                bail!("cannot write {}: {error}", args.output.display());
            }
            sink.inner.writer.finish()?;
            Summary { dropped: sink.dropped, triggers_dropped: 0 }
        }
    };
    if summary.dropped > 0 {
        eprintln!(
            "warning: {} events outside the {}x{} sensor were dropped",
            summary.dropped, detected.geometry.width, detected.geometry.height
        );
    }
    if summary.triggers_dropped > 0 {
        eprintln!(
            "warning: {} triggers dropped: the output format has no place for them",
            summary.triggers_dropped
        );
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

struct Summary {
    dropped: u64,
    triggers_dropped: u64,
}

/// Decodes the input (whose first bytes are `head`) into `sink`, with a progress bar on
/// large inputs.
fn stream<S: EventSink>(
    path: &Path,
    detected: &Detected,
    head: &[u8],
    mut input: File,
    size: u64,
    sink: S,
) -> anyhow::Result<GeometryFilter<S>> {
    let mut sink = GeometryFilter::new(sink, detected.stated_geometry());
    let mut decoder = Decoder::new(detected.format);
    let progress = if size >= PROGRESS_FROM {
        indicatif::ProgressBar::new(size)
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("the template is valid"),
    );
    decoder.feed(&head[detected.data_offset.min(head.len())..], &mut sink);
    progress.inc(head.len() as u64);
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n =
            input.read(&mut buffer).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        decoder.feed(&buffer[..n], &mut sink);
        progress.inc(n as u64);
    }
    decoder.finish(&mut sink);
    progress.finish_and_clear();
    Ok(sink)
}

/// Feeds decoded events to an encoder, keeping its first error.
struct EncodeSink<W: Write> {
    encoder: Encoder<W>,
    error: Option<EncodeError>,
    triggers_dropped: u64,
}

impl<W: Write> EventSink for EncodeSink<W> {
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8) {
        if self.error.is_none()
            && let Err(e) = self.encoder.push(&evshm_formats::Event { t, x, y, p })
        {
            self.error = Some(e);
        }
    }

    fn trigger(&mut self, trigger: evshm_formats::Trigger) {
        match self.encoder.push_trigger(&trigger) {
            Ok(true) => {}
            Ok(false) => self.triggers_dropped += 1,
            Err(e) => self.error = self.error.take().or(Some(e)),
        }
    }
}

#[derive(Default)]
struct Columns4 {
    t: Vec<i64>,
    x: Vec<i16>,
    y: Vec<i16>,
    p: Vec<i8>,
}

/// Gathers events into record batches of an Arrow IPC file.
struct ArrowSink<W: Write> {
    writer: FileWriter<W>,
    schema: arrow_schema::SchemaRef,
    columns: Columns4,
    error: Option<arrow_schema::ArrowError>,
}

impl<W: Write> ArrowSink<W> {
    fn write_batch(&mut self) {
        let c = std::mem::take(&mut self.columns);
        if c.t.is_empty() || self.error.is_some() {
            return;
        }
        let batch = RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(Int64Array::from(c.t)),
                Arc::new(Int16Array::from(c.x)),
                Arc::new(Int16Array::from(c.y)),
                Arc::new(Int8Array::from(c.p)),
            ],
        );
        if let Err(e) = batch.and_then(|batch| self.writer.write(&batch)) {
            self.error = Some(e);
        }
    }
}

impl<W: Write> EventSink for ArrowSink<W> {
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8) {
        let c = &mut self.columns;
        c.t.push(t);
        c.x.push(x as i16);
        c.y.push(y as i16);
        c.p.push(p as i8);
        if c.t.len() == ARROW_BATCH {
            self.write_batch();
        }
    }
}
