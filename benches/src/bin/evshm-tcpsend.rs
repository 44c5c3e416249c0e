//! `evshm-tcpsend`: the plain-TCP baseline of the Flight bench (`benches/python/flight.py`).
//!
//! Opens a recording through evshmd (its chunks' segments mapped, as evshmd's Flight
//! service reads them) and sends every chunk's Arrow IPC stream to each TCP client, straight
//! from the mappings: an 8-byte little-endian length, then the bytes, with no copy in user
//! space. That is the most any sender on this machine can do with the same bytes: the
//! physical limit the Flight service is held to. Stop it with SIGTERM or SIGINT.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Sends the IPC bytes of one recording's segments to every TCP client.
#[derive(Debug, Parser)]
struct Args {
    /// evshmd's socket.
    #[arg(long)]
    evshm_socket: PathBuf,
    /// The recording.
    #[arg(long)]
    path: String,
    /// Address to listen on; the port chosen is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = evshm::Client::connect(&args.evshm_socket)?;
    let recording = client.open(&args.path)?;
    let total: u64 = recording.streams().map(|m| m.len() as u64).sum();
    let listener = TcpListener::bind(&args.listen).context("cannot listen")?;
    println!("{} {total}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let mut stream = stream.context("accept failed")?;
        stream.set_nodelay(true)?;
        let sent = stream
            .write_all(&total.to_le_bytes())
            .and_then(|()| recording.streams().try_for_each(|m| stream.write_all(m)));
        if let Err(e) = sent {
            eprintln!("evshm-tcpsend: {e}");
        }
    }
    Ok(())
}
