//! `evshm-window`: time until the rows of a time window are in hand, from Rust.
//!
//! Connects to evshmd (untimed), then times `Client::open_window` (request, decode of
//! whatever chunks are not resident, map, in-place decode, slicing): the first open finds
//! the daemon in whatever state the caller left it (`benches/python/window.py` starts a
//! fresh daemon, or one that has indexed the file already). With `--warm N` it then
//! opens the same window N more times once the chunks are resident. Each recording is
//! dropped (lease released, unmapped) outside the timed region.
//!
//! Prints one JSON object: the first open's time, rows, chunks and the sums of its
//! columns (so that the caller can check the rows against another reader), the daemon's
//! decode count after it, and the warm opens' times.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, Int8Type, Int16Type, Int64Type};
use clap::Parser;
use evshm_benches::Summary;
use serde_json::json;

/// Times the open of a time window of a recording.
#[derive(Debug, Parser)]
struct Args {
    /// evshmd's socket.
    #[arg(long)]
    socket: PathBuf,
    /// The recording, relative to evshmd's root.
    #[arg(long)]
    path: String,
    /// Window start, in microseconds.
    #[arg(long)]
    start: i64,
    /// Window end (excluded), in microseconds.
    #[arg(long)]
    end: i64,
    /// Warm opens of the same window to time after the first.
    #[arg(long, default_value_t = 0)]
    warm: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = evshm::Client::connect(&args.socket)?;
    let started = Instant::now();
    let first = client.open_window(&args.path, args.start, args.end)?;
    let took = started.elapsed();
    let decodes = client.stats()?.decodes;
    let chunks: Vec<_> = first
        .info()
        .chunks
        .iter()
        .map(|c| json!({ "index": c.index, "rows": c.rows, "start": c.start, "end": c.end }))
        .collect();
    let result = json!({
        "first_s": took.as_secs_f64(),
        "request_s": first.timings().request.as_secs_f64(),
        "rows": first.rows(),
        "cached": first.info().cached,
        "chunks": chunks,
        "decodes_after": decodes,
        "sums": sums(first.batches())?,
        "warm": warm(&client, &args, first)?,
    });
    println!("{result}");
    Ok(())
}

/// The warm opens: one untimed (a second open of a window on a connection counts as
/// reading forward, so the daemon may decode the next chunk in the background), a wait
/// until no decode is in progress, then `--warm` timed opens.
fn warm(
    client: &evshm::Client,
    args: &Args,
    first: evshm::Recording,
) -> anyhow::Result<serde_json::Value> {
    drop(first);
    if args.warm == 0 {
        return Ok(serde_json::Value::Null);
    }
    drop(client.open_window(&args.path, args.start, args.end)?);
    settle(client)?;
    let mut samples = Vec::with_capacity(args.warm);
    for _ in 0..args.warm {
        let started = Instant::now();
        let recording = client.open_window(&args.path, args.start, args.end)?;
        samples.push(started.elapsed());
        anyhow::ensure!(recording.info().cached, "a warm open decoded something");
        drop(recording);
    }
    Ok(Summary::json(&samples))
}

/// Waits until the daemon decodes nothing (no bytes held while no lease is).
fn settle(client: &evshm::Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.stats()?.bytes_leased > 0 {
        anyhow::ensure!(Instant::now() < deadline, "evshmd still decoding after 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The sum of every column over `batches`, as the Python bench computes it.
fn sums(batches: &[RecordBatch]) -> anyhow::Result<serde_json::Value> {
    let (mut t, mut x, mut y, mut p) = (0, 0, 0, 0);
    for batch in batches {
        t += total::<Int64Type>(batch, "t")?;
        x += total::<Int16Type>(batch, "x")?;
        y += total::<Int16Type>(batch, "y")?;
        p += total::<Int8Type>(batch, "p")?;
    }
    Ok(json!({ "t": t, "x": x, "y": y, "p": p }))
}

/// The sum of column `name` of `batch`, of Arrow type `T`.
fn total<T: ArrowPrimitiveType>(batch: &RecordBatch, name: &str) -> anyhow::Result<i64>
where
    T::Native: Into<i64>,
{
    let column = batch.column_by_name(name).ok_or_else(|| anyhow::anyhow!("no column {name}"))?;
    let values =
        column.as_primitive_opt::<T>().ok_or_else(|| anyhow::anyhow!("{name}: bad type"))?;
    Ok(values.values().iter().map(|&v| v.into()).sum())
}
