//! `evshm-flightget`: the Rust readers of the Flight bench (`benches/python/flight.py`).
//!
//! Reads a recording whole, round after round, the readers taking turns: through evshmd's
//! Flight service with `evshm::RemoteClient` (one chunk at a time, then four at once), and
//! its bytes over plain TCP from `evshm-tcpsend` into one buffer allocated for each read
//! (as the Flight client allocates what it receives). Prints one JSON object: each
//! reader's seconds per round, and the bytes each read.

use std::io::Read;
use std::net::TcpStream;
use std::time::Instant;

use clap::Parser;
use evshm::{RemoteClient, RemoteOptions};

/// Times Rust reads of one recording over Flight and over TCP.
#[derive(Debug, Parser)]
struct Args {
    /// The Flight service, grpc://HOST:PORT.
    #[arg(long)]
    address: String,
    /// The recording.
    #[arg(long)]
    path: String,
    /// evshm-tcpsend's port on 127.0.0.1.
    #[arg(long)]
    tcp_port: u16,
    /// Rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn flight(address: &str, path: &str, parallel: usize) -> anyhow::Result<usize> {
    let options = RemoteOptions { parallel, ..RemoteOptions::default() };
    let recording = RemoteClient::connect(address, options)?.open(path)?;
    Ok(recording.batches().iter().map(|b| b.get_array_memory_size()).sum())
}

fn tcp(port: u16) -> anyhow::Result<usize> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let mut head = [0u8; 8];
    stream.read_exact(&mut head)?;
    let mut buffer = vec![0u8; usize::try_from(u64::from_le_bytes(head))?];
    stream.read_exact(&mut buffer)?;
    Ok(buffer.len())
}

/// One way of reading the recording: the bytes it read.
type Reader<'a> = Box<dyn Fn() -> anyhow::Result<usize> + 'a>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let readers: [(&str, Reader<'_>); 3] = [
        ("rust: tcp", Box::new(|| tcp(args.tcp_port))),
        ("rust: evshmd, 1 stream", Box::new(|| flight(&args.address, &args.path, 1))),
        ("rust: evshmd, 4 streams", Box::new(|| flight(&args.address, &args.path, 4))),
    ];
    let mut seconds = vec![Vec::new(); readers.len()];
    let mut bytes = vec![0; readers.len()];
    for (i, (_, read)) in readers.iter().enumerate() {
        bytes[i] = read()?; // a first read of each, untimed
    }
    for _ in 0..args.rounds {
        for (i, (_, read)) in readers.iter().enumerate() {
            let start = Instant::now();
            read()?;
            seconds[i].push(start.elapsed().as_secs_f64());
        }
    }
    let out: serde_json::Map<String, serde_json::Value> = (readers.iter().enumerate())
        .map(|(i, (name, _))| {
            let value = serde_json::json!({ "seconds": seconds[i], "bytes": bytes[i] });
            ((*name).to_owned(), value)
        })
        .collect();
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
