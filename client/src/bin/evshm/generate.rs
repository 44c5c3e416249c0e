//! `evshm generate`: synthetic recordings in any format evshm writes.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::Context;
use evshm_formats::synth::{Synth, SynthConfig};
use evshm_formats::{
    DatEncoder, EncodeError, Event, Evt2Encoder, Evt3Encoder, Evt21Encoder, Geometry, WordOrder,
};

/// Options of `evshm generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Output file.
    out: PathBuf,
    /// Event format to write.
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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Evt3,
    Evt21,
    /// EVT 2.1 with the 32-bit halves of each word swapped (`endianness=legacy`).
    Evt21Legacy,
    Evt2,
    Dat,
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
    let events = Synth::new(config);
    match args.format {
        OutputFormat::Evt3 => {
            encode(Evt3Encoder::new(out, geometry)?, events, Evt3Encoder::push, Evt3Encoder::finish)
        }
        OutputFormat::Evt21 => encode(
            Evt21Encoder::new(out, geometry, WordOrder::Standard)?,
            events,
            Evt21Encoder::push,
            Evt21Encoder::finish,
        ),
        OutputFormat::Evt21Legacy => encode(
            Evt21Encoder::new(out, geometry, WordOrder::Legacy)?,
            events,
            Evt21Encoder::push,
            Evt21Encoder::finish,
        ),
        OutputFormat::Evt2 => {
            encode(Evt2Encoder::new(out, geometry)?, events, Evt2Encoder::push, Evt2Encoder::finish)
        }
        OutputFormat::Dat => {
            encode(DatEncoder::new(out, geometry)?, events, DatEncoder::push, DatEncoder::finish)
        }
    }
    .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("wrote {} events to {}", args.events, args.out.display());
    Ok(())
}

fn encode<E, W>(
    mut encoder: E,
    events: impl Iterator<Item = Event>,
    push: fn(&mut E, &Event) -> Result<(), EncodeError>,
    finish: fn(E) -> Result<W, EncodeError>,
) -> Result<(), EncodeError> {
    for event in events {
        push(&mut encoder, &event)?;
    }
    finish(encoder).map(drop)
}
