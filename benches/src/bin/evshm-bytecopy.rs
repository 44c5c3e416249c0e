//! `evshm-bytecopy`: the byte-copy baseline server (see `evshm_benches::bytecopy`).
//!
//! Opens recordings through evshmd (so it serves exactly the bytes of evshm's segments)
//! and writes the whole Arrow IPC stream to every client that asks, one copy each.
//!
//! It serves from a private copy of the last recording asked for, not from evshm's
//! segment: a server that mapped the segment would share its pages with evshm's readers
//! and make their proportional set size (PSS) look smaller than it is.
//! Stop it with SIGTERM or SIGINT.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;

/// Serves the Arrow IPC bytes of evshm's segments over a Unix socket, a copy per reader.
#[derive(Debug, Parser)]
struct Args {
    /// Socket to listen on (replaced if it exists).
    #[arg(long)]
    socket: PathBuf,
    /// evshmd's socket.
    #[arg(long)]
    evshm_socket: PathBuf,
}

/// The recording served last: its path and a private copy of its segment's bytes.
type Opened = Arc<Mutex<Option<(String, Arc<Vec<u8>>)>>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = evshm::Client::connect(&args.evshm_socket)?;
    let _ = std::fs::remove_file(&args.socket);
    let listener = UnixListener::bind(&args.socket)
        .with_context(|| format!("cannot bind {}", args.socket.display()))?;
    let opened: Opened = Arc::default();
    for stream in listener.incoming() {
        let stream = stream.context("accept failed")?;
        let (client, opened) = (client.clone(), Arc::clone(&opened));
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &client, &opened) {
                eprintln!("evshm-bytecopy: connection: {e:#}");
            }
        });
    }
    Ok(())
}

fn serve(stream: UnixStream, client: &evshm::Client, opened: &Opened) -> anyhow::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request = line.trim_end();
        if request == "ping" {
            writer.write_all(b"pong\n")?;
        } else if let Some(path) = request.strip_prefix("open ") {
            match recording(client, opened, path) {
                Ok(bytes) => {
                    writer.write_all(&(bytes.len() as u64).to_le_bytes())?;
                    writer.write_all(&bytes)?;
                }
                Err(e) => {
                    eprintln!("evshm-bytecopy: cannot open {path}: {e:#}");
                    writer.write_all(&0u64.to_le_bytes())?;
                }
            }
        } else {
            anyhow::bail!("unknown request {request:?}");
        }
    }
}

fn recording(client: &evshm::Client, opened: &Opened, path: &str) -> anyhow::Result<Arc<Vec<u8>>> {
    let mut opened = opened.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((last, bytes)) = opened.as_ref()
        && last == path
    {
        return Ok(Arc::clone(bytes));
    }
    // Drop the previous copy first: only one is held at a time.
    *opened = None;
    let recording = client.open(path)?;
    let [stream] = recording.streams().collect::<Vec<_>>()[..] else {
        anyhow::bail!("{path} is in several chunks: start evshmd with a larger --chunk-events");
    };
    let bytes = Arc::new(stream.to_vec());
    *opened = Some((path.to_owned(), Arc::clone(&bytes)));
    Ok(bytes)
}
