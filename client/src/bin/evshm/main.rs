//! `evshm`: the command-line client of evshmd, and a generator of sample recordings.

mod convert;
mod generate;
mod output;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use clap::{Parser, Subcommand};
use evshm::{Client, OpenOptions};
use evshm::{Table, Window};

/// Talks to evshmd: lists, opens (zero-copy) and inspects decoded event recordings.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// evshmd's socket [default: $EVSHM_SOCKET, else $XDG_RUNTIME_DIR/evshm.sock, else
    /// /tmp/evshm-$UID/evshm.sock].
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists the recordings under the daemon's roots.
    Ls,
    /// Opens a recording and prints its size, schema, time range and attach time.
    Open {
        /// Path relative to a served root.
        path: String,
        /// Open the table of external triggers instead of the CD events.
        #[arg(long)]
        triggers: bool,
        /// Only the rows of the time window [START, END), in microseconds.
        #[arg(long, num_args = 2, value_names = ["START", "END"], allow_negative_numbers = true)]
        window: Option<Vec<i64>>,
    },
    /// Prints the daemon's counters.
    Stats,
    /// Drops every decoded chunk no client holds from shared memory, now.
    Evict,
    /// Writes a synthetic recording that looks like a real camera's output.
    Generate(generate::GenerateArgs),
    /// Converts a recording to another format, or to an Arrow IPC file.
    Convert(convert::ConvertArgs),
}

/// Exit status when stdout's reader went away (`| head`), as for a command SIGPIPE ends.
const BROKEN_PIPE: i32 = 128 + 13;

fn main() {
    let mut out = std::io::stdout().lock();
    let result = run(Cli::parse(), &mut out).and_then(|()| Ok(out.flush()?));
    if let Err(error) = result {
        let closed = error.downcast_ref::<std::io::Error>();
        if closed.is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
            std::process::exit(BROKEN_PIPE);
        }
        eprintln!("evshm: {error:#}");
        std::process::exit(1);
    }
}

/// Runs a command, printing its output to `out` (whose errors end it, not a panic as
/// `println!` would).
fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<()> {
    let connect = || -> anyhow::Result<Client> {
        Ok(match &cli.socket {
            Some(path) => Client::connect(path)?,
            None => Client::connect_default()?,
        })
    };
    match &cli.command {
        Command::Ls => {
            let recordings = connect()?.list()?;
            let width = recordings.iter().map(|r| r.path.len()).max().unwrap_or(4).max(4);
            writeln!(out, "{:width$}  {:8}  {:>12}  DECODED", "PATH", "FORMAT", "SIZE")?;
            for r in recordings {
                let decoded = if r.decoded { "yes" } else { "no" };
                writeln!(out, "{:width$}  {:8}  {:>12}  {decoded}", r.path, r.format, r.size)?;
            }
        }
        Command::Open { path, triggers, window } => {
            let table = if *triggers { Table::Triggers } else { Table::Events };
            let window = window.as_deref().map(|w| Window { start: w[0], end: w[1] });
            let options = OpenOptions { table, window, ..OpenOptions::default() };
            open(&connect()?, path, options, out)?
        }
        Command::Stats => {
            let stats = connect()?.stats()?;
            let value = serde_json::to_value(&stats)?;
            for (key, value) in value.as_object().context("stats reply is an object")? {
                if key != "clients" {
                    writeln!(out, "{key:15} {value}")?;
                }
            }
            writeln!(out, "clients")?;
            for c in &stats.clients {
                let name = c.client.as_deref().unwrap_or("-");
                writeln!(out, "  pid {:<8} uid {:<6} leases {:<6} {name}", c.pid, c.uid, c.leases)?;
            }
        }
        Command::Evict => {
            let evicted = connect()?.evict()?;
            let (chunks, bytes) = (evicted.evicted, evicted.bytes_evicted);
            writeln!(out, "evicted {chunks} unleased chunks ({bytes} bytes)")?;
        }
        Command::Generate(args) => generate::run(args)?,
        Command::Convert(args) => convert::run(args)?,
    }
    Ok(())
}

fn open(
    client: &Client,
    path: &str,
    options: OpenOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let recording = client.open_with(path, options)?;
    let info = recording.info();
    let mut range: Option<(i64, i64)> = None;
    for batch in recording.batches() {
        let t = batch.column_by_name("t").context("no column t")?.as_primitive::<Int64Type>();
        for &v in t.values().iter() {
            range = Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
        }
    }
    let schema: Vec<String> = recording
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), type_name(f)))
        .collect();
    let timings = recording.timings();
    let cached = if info.cached { "cached" } else { "decoded now" };
    writeln!(out, "path      {}", info.path)?;
    writeln!(out, "format    {} {}x{}", info.format, info.width, info.height)?;
    writeln!(out, "rows      {}", recording.rows())?;
    writeln!(out, "chunks    {} ({cached})", info.chunks.len())?;
    for chunk in &info.chunks {
        let extent = &chunk.extent;
        let arena = info.arenas.get(extent.arena as usize).map_or("?", |a| a.name.as_str());
        writeln!(
            out,
            "  #{:<5} rows {}..{} of {}  arena {arena} at {} ({} bytes)",
            chunk.index, chunk.start, chunk.end, chunk.rows, extent.offset, extent.size
        )?;
    }
    writeln!(out, "schema    {}", schema.join(", "))?;
    match range {
        Some((lo, hi)) => writeln!(out, "time      {lo} .. {hi} us"),
        None => writeln!(out, "time      (no events)"),
    }?;
    writeln!(
        out,
        "request   {:.3} ms (round trip, includes the decode when not cached)",
        timings.request.as_secs_f64() * 1e3
    )?;
    writeln!(
        out,
        "attach    {:.3} ms (map + Arrow IPC open, no copy)",
        timings.attach.as_secs_f64() * 1e3
    )?;
    Ok(())
}

/// Arrow's type names as pyarrow prints them (`int64`), so both CLIs read alike.
fn type_name(field: &arrow_schema::Field) -> String {
    field.data_type().to_string().to_lowercase()
}
