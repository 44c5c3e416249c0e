//! `evshm-load`: opens per second with 1 to 64 concurrent clients on a cached recording.
//!
//! Each client is a thread with its own connection (its own `evshm::Client`), looping
//! `open` (request, map, decode in place) then drop (release round trip, unmap) for a
//! fixed time after a warm-up. Prints, and writes to `--out`, one JSON object per level:
//! opens per second over all clients and the percentiles of the `open` latency.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use evshm_benches::Summary;
use serde_json::json;

/// Opens per second and latency under N concurrent clients.
#[derive(Debug, Parser)]
struct Args {
    /// evshmd's socket.
    #[arg(long)]
    socket: PathBuf,
    /// The recording to open (warmed up first, so it is cached).
    #[arg(long)]
    path: String,
    /// Numbers of concurrent clients.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    clients: Vec<usize>,
    /// Measured seconds per level.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Unmeasured seconds before each level.
    #[arg(long, default_value_t = 0.5)]
    warm_up: f64,
    /// JSON output file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What one client thread measured.
struct ClientRun {
    latencies: Vec<Duration>,
    cycles: Vec<Duration>,
    finished: Instant,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Make sure the recording is resident before any level starts.
    drop(evshm::Client::connect(&args.socket)?.open(&args.path)?);
    let mut levels = Vec::new();
    for &n in &args.clients {
        let level = run_level(&args, n)?;
        println!("{level}");
        levels.push(level);
    }
    let result = json!({
        "path": args.path,
        "seconds": args.seconds,
        "warm_up": args.warm_up,
        "levels": levels,
    });
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&result)?)?;
    }
    Ok(())
}

fn run_level(args: &Args, n: usize) -> anyhow::Result<serde_json::Value> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let warm_up = Duration::from_secs_f64(args.warm_up);
    let measure = Duration::from_secs_f64(args.seconds);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (socket, path, barrier) =
                (args.socket.clone(), args.path.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || -> anyhow::Result<ClientRun> {
                let client = evshm::Client::connect(&socket)?;
                barrier.wait();
                let start = Instant::now();
                while start.elapsed() < warm_up {
                    drop(client.open(&path)?);
                }
                barrier.wait();
                let start = Instant::now();
                let (mut latencies, mut cycles) = (Vec::new(), Vec::new());
                while start.elapsed() < measure {
                    let t0 = Instant::now();
                    let recording = client.open(&path)?;
                    latencies.push(t0.elapsed());
                    drop(recording);
                    cycles.push(t0.elapsed());
                }
                Ok(ClientRun { latencies, cycles, finished: Instant::now() })
            })
        })
        .collect();
    barrier.wait(); // connected: warm up
    barrier.wait(); // warmed up: measure
    let start = Instant::now();
    let mut runs = Vec::new();
    for thread in threads {
        let run = thread.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        runs.push(run);
    }
    let elapsed = runs.iter().map(|r| r.finished.duration_since(start)).max().unwrap_or_default();
    let latencies: Vec<Duration> = runs.iter().flat_map(|r| r.latencies.clone()).collect();
    let cycles: Vec<Duration> = runs.iter().flat_map(|r| r.cycles.clone()).collect();
    Ok(json!({
        "clients": n,
        "opens": latencies.len(),
        "elapsed_s": elapsed.as_secs_f64(),
        "opens_per_s": latencies.len() as f64 / elapsed.as_secs_f64(),
        "open": Summary::json(&latencies),
        "open_release": Summary::json(&cycles),
    }))
}
