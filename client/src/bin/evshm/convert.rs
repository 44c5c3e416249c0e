//! `evshm convert`: any recording evshm reads, to any format it writes or to an Arrow
//! IPC file, streamed in chunks (memory stays flat whatever the size). HDF5 recordings
//! (DSEC, MVSEC, Metavision), which the daemon does not serve yet, are read here by offset.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use evshm::schema::{META_FORMAT, META_GEOMETRY, META_HEIGHT, META_SOURCE, META_WIDTH};
use evshm_formats::{
    Decoder, Detected, EncodeError, EventSink, Geometry, GeometryFilter, GeometrySource,
    HDF5_SIGNATURE, Hdf5Recording, MAX_HEADER_LEN, detect,
};

use crate::output::{Output, OutputError, OutputFormat};

/// Options of `evshm convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Recording to read (any format evshm reads).
    input: PathBuf,
    /// File to write.
    output: PathBuf,
    /// Output format [default: from the extension: .dat dat, .csv/.txt text,
    /// .arrow/.ipc/.feather Arrow IPC file, .raw evt3, .es es, .bin atis-bin].
    #[arg(long, value_enum)]
    to: Option<OutputFormat>,
    /// Sensor width, for an input that states no geometry.
    #[arg(long, requires = "height")]
    width: Option<u32>,
    /// Sensor height, for an input that states no geometry.
    #[arg(long, requires = "width")]
    height: Option<u32>,
}

/// Bytes read at a time; also the granularity of the progress bar.
const CHUNK: usize = 1 << 20;
/// Inputs at least this large get a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 64 << 20;

/// Converts the input to the output the arguments describe.
pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    let target =
        args.to.or_else(|| OutputFormat::from_extension(&args.output)).with_context(|| {
            format!("cannot tell the output format from {}; pass --to", args.output.display())
        })?;
    let mut input =
        File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?;
    let size = input.metadata()?.len();
    let mut head = Vec::new();
    (&mut input).take(MAX_HEADER_LEN as u64).read_to_end(&mut head)?;
    if head.starts_with(HDF5_SIGNATURE) {
        return run_hdf5(args, target);
    }
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
    let input_info = InputInfo {
        format: detected.format.name(),
        geometry: detected.geometry,
        stated: detected.stated_geometry(),
        geometry_source: detected.geometry_source.name(),
    };
    let output = create_output(args, target, &input_info)?;
    let (sink, skipped) = stream(&args.input, &detected, &head, input, size, output)?;
    finish(args, &input_info, sink, skipped)
}

/// What the output's metadata and the warnings say of the input.
struct InputInfo {
    format: &'static str,
    geometry: Geometry,
    stated: Option<Geometry>,
    geometry_source: &'static str,
}

/// Converts an HDF5 recording (DSEC, MVSEC, Metavision), read by offset.
fn run_hdf5(args: &ConvertArgs, target: OutputFormat) -> anyhow::Result<()> {
    let recording =
        Hdf5Recording::open(&args.input).with_context(|| format!("{}", args.input.display()))?;
    let given = args.width.zip(args.height).map(|(width, height)| Geometry { width, height });
    let (geometry, source) = match (recording.stated_geometry(), given) {
        (Some(stated), Some(given)) if stated != given => anyhow::bail!(
            "{} states a {}x{} sensor; drop --width and --height",
            args.input.display(),
            stated.width,
            stated.height
        ),
        (Some(stated), _) => (stated, GeometrySource::Header),
        (None, Some(given)) => (given, GeometrySource::Given),
        (None, None) => (recording.layout().default_geometry(), GeometrySource::Default),
    };
    let input_info = InputInfo {
        format: recording.layout().name(),
        geometry,
        stated: (source != GeometrySource::Default).then_some(geometry),
        geometry_source: source.name(),
    };
    let output = create_output(args, target, &input_info)?;
    let mut sink = GeometryFilter::new(output, input_info.stated);
    recording.decode(&mut sink).with_context(|| format!("{}", args.input.display()))?;
    finish(args, &input_info, sink, 0)
}

fn create_output(
    args: &ConvertArgs,
    target: OutputFormat,
    input: &InputInfo,
) -> anyhow::Result<Output<BufWriter<File>>> {
    let out = File::create(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let out = BufWriter::with_capacity(CHUNK, out);
    let metadata = HashMap::from([
        (META_WIDTH.to_owned(), input.geometry.width.to_string()),
        (META_HEIGHT.to_owned(), input.geometry.height.to_string()),
        (META_FORMAT.to_owned(), input.format.to_owned()),
        (META_SOURCE.to_owned(), args.input.display().to_string()),
        (META_GEOMETRY.to_owned(), input.geometry_source.into()),
    ]);
    Ok(Output::create(target, out, input.geometry, metadata)?)
}

/// Ends the output and says what was dropped or skipped.
fn finish(
    args: &ConvertArgs,
    input: &InputInfo,
    sink: GeometryFilter<Output<BufWriter<File>>>,
    skipped: u64,
) -> anyhow::Result<()> {
    let dropped = sink.dropped;
    let triggers_dropped = sink.inner.finish().map_err(|error| {
        let hint = match (&error, input.stated) {
            (OutputError::Encode(EncodeError::OutOfRange { width, height, .. }), None) => format!(
                " (the input states no geometry and {width}x{height} was assumed; \
                 pass --width and --height)"
            ),
            _ => String::new(),
        };
        anyhow::anyhow!("cannot write {}: {error}{hint}", args.output.display())
    })?;
    let summary = Summary { dropped, skipped, triggers_dropped };
    if summary.dropped > 0 {
        eprintln!(
            "warning: {} events outside the {}x{} sensor were dropped",
            summary.dropped, input.geometry.width, input.geometry.height
        );
    }
    if summary.skipped > 0 {
        eprintln!(
            "warning: {} records skipped: malformed lines, words of unknown type or before \
             the first time word, unreadable packets or a truncated final word",
            summary.skipped
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
    skipped: u64,
    triggers_dropped: u64,
}

/// Decodes the input (whose first bytes are `head`) into `sink`, with a progress bar on
/// large inputs; returns the sink and the records the decoder skipped.
fn stream<S: EventSink>(
    path: &Path,
    detected: &Detected,
    head: &[u8],
    mut input: File,
    size: u64,
    sink: S,
) -> anyhow::Result<(GeometryFilter<S>, u64)> {
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
    Ok((sink, decoder.stats().skipped()))
}
