//! Quick check of warm open latency against a running evshmd: `cargo run --release -p
//! evshm --example warm_open -- SOCKET PATH [OPENS]`. Opens a recording that is already
//! resident again and again (dropping each before the next, as a training loop would) and
//! prints percentiles of the open alone. `benches/run.sh` has the full comparison.

use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: warm_open SOCKET PATH [OPENS]";
    let socket = args.next().ok_or(usage)?;
    let path = args.next().ok_or(usage)?;
    let opens: usize = args.next().map_or(Ok(5000), |n| n.parse())?;
    let client = evshm::Client::connect(&socket)?;
    drop(client.open(&path)?);
    let mut took = Vec::with_capacity(opens);
    let (mut requests, mut attaches) = (Vec::new(), Vec::new());
    for _ in 0..opens {
        let started = Instant::now();
        let recording = client.open(&path).expect("open");
        took.push(started.elapsed());
        let timings = recording.timings();
        requests.push(timings.request);
        attaches.push(timings.attach);
        drop(recording);
    }
    let percentiles = |took: &mut Vec<Duration>| {
        took.sort_unstable();
        let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        format!(
            "min {:.1} µs, p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
            at(0.0),
            at(0.5),
            at(0.9),
            at(0.99)
        )
    };
    println!("{opens} warm opens of {path}: {}", percentiles(&mut took));
    println!("  request (round trip): {}", percentiles(&mut requests));
    println!("  attach (in place):    {}", percentiles(&mut attaches));
    Ok(())
}
