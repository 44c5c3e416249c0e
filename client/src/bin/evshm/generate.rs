//! `evshm generate`: synthetic recordings in any format evshm writes, or as Arrow.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::Context;
use evshm::schema::{META_FORMAT, META_GEOMETRY, META_HEIGHT, META_WIDTH};
use evshm_formats::synth::{Synth, SynthConfig};
use evshm_formats::{EventSink, Geometry};

use crate::output::{Output, OutputError, OutputFormat};

/// Options of `evshm generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Output file.
    out: PathBuf,
    /// Format to write (an event format, or an Arrow IPC file).
    #[arg(long, value_enum, default_value_t = OutputFormat::Evt3)]
    format: OutputFormat,
    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Sensor width.
    #[arg(long, default_value_t = 1280)]
    width: u32,
    /// Sensor height.
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Mean event rate, in events per second.
    #[arg(long, default_value_t = 20e6)]
    rate: f64,
    /// Timestamp of the first event, in microseconds.
    #[arg(long, default_value_t = 0)]
    t0: i64,
    /// Seed of the generator (the same seed gives the same file).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Writes the recording the arguments describe.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let geometry = Geometry { width: args.width, height: args.height };
    let config = SynthConfig {
        geometry,
        events: args.events,
        rate: args.rate,
        t0: args.t0,
        seed: args.seed,
    };
    let file =
        File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let out = BufWriter::with_capacity(1 << 20, file);
    let metadata = HashMap::from([
        (META_WIDTH.to_owned(), geometry.width.to_string()),
        (META_HEIGHT.to_owned(), geometry.height.to_string()),
        (META_FORMAT.to_owned(), "synthetic".to_owned()),
        (META_GEOMETRY.to_owned(), "given".to_owned()),
    ]);
    let write = || -> Result<(), OutputError> {
        let mut output = Output::create(args.format, out, geometry, metadata)?;
        for e in Synth::new(config) {
            output.event(e.t, e.x, e.y, e.p);
        }
        output.finish().map(drop)
    };
    write().with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("wrote {} events to {}", args.events, args.out.display());
    Ok(())
}
