//! `evshm generate`: synthetic recordings in any format evshm writes.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::Context;
use evshm_formats::synth::{Synth, SynthConfig};
use evshm_formats::{Columns, EncodeError, Encoder, Format, Geometry, WordOrder};

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
    /// One `t,x,y,p` line per event, with a header stating the geometry.
    Text,
}

impl OutputFormat {
    fn format(self) -> Format {
        match self {
            OutputFormat::Evt3 => Format::Evt3,
            OutputFormat::Evt21 => Format::Evt21(WordOrder::Standard),
            OutputFormat::Evt21Legacy => Format::Evt21(WordOrder::Legacy),
            OutputFormat::Evt2 => Format::Evt2,
            OutputFormat::Dat => Format::Dat,
            OutputFormat::Text => Format::Text(Columns::TXYP),
        }
    }
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
    let write = || -> Result<(), EncodeError> {
        let mut encoder = Encoder::new(args.format.format(), out, geometry)?;
        for event in Synth::new(config) {
            encoder.push(&event)?;
        }
        encoder.finish().map(drop)
    };
    write().with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("wrote {} events to {}", args.events, args.out.display());
    Ok(())
}
