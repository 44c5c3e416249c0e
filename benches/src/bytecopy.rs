//! The byte-copy baseline: the same Arrow IPC bytes evshm maps, sent over a Unix socket.
//!
//! This is what readers do without shared memory: a server holds the decoded stream and
//! every reader receives its own copy. The server (`evshm-bytecopy`) takes the bytes
//! from evshmd's segment itself, so both paths serve the very same stream.
//!
//! Wire format, one exchange at a time on a connection:
//!
//! - `ping\n` → `pong\n` (the bare round trip of a Unix socket, for reference);
//! - `open PATH\n` → the stream's length as a little-endian `u64`, then that many bytes;
//!   a length of 0 means the server could not open `PATH` (it logs why).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_buffer::{Buffer, MutableBuffer};
use arrow_ipc::reader::{StreamDecoder, StreamReader};

/// A connection to the byte-copy server.
#[derive(Debug)]
pub struct BytecopyClient {
    stream: BufReader<UnixStream>,
}

impl BytecopyClient {
    /// Connects to the server at `socket`.
    pub fn connect(socket: &Path) -> std::io::Result<BytecopyClient> {
        Ok(BytecopyClient { stream: BufReader::new(UnixStream::connect(socket)?) })
    }

    /// One `ping`/`pong` exchange.
    pub fn ping(&mut self) -> std::io::Result<()> {
        self.stream.get_mut().write_all(b"ping\n")?;
        let mut line = Vec::with_capacity(8);
        self.stream.read_until(b'\n', &mut line)?;
        if line != b"pong\n" {
            return Err(std::io::Error::other("bad pong"));
        }
        Ok(())
    }

    fn request(&mut self, path: &str) -> anyhow::Result<u64> {
        self.stream.get_mut().write_all(format!("open {path}\n").as_bytes())?;
        let mut len = [0u8; 8];
        self.stream.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        anyhow::ensure!(len > 0, "the byte-copy server could not open {path}");
        Ok(len)
    }

    /// Receives the stream of `path` and parses it with arrow-rs's [`StreamReader`],
    /// which reads every message body from the socket into a buffer of its own: one
    /// copy of the data, the usual way to read an IPC stream from a pipe or socket.
    pub fn fetch_stream_reader(&mut self, path: &str) -> anyhow::Result<Vec<RecordBatch>> {
        let len = self.request(path)?;
        let body = (&mut self.stream).take(len);
        let reader = StreamReader::try_new(body, None)?;
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        Ok(batches)
    }

    /// Receives the stream of `path` into one buffer of the announced length, then
    /// decodes it in place (no second copy): the best case of a byte copy.
    pub fn fetch_into_buffer(&mut self, path: &str) -> anyhow::Result<Vec<RecordBatch>> {
        let len = usize::try_from(self.request(path)?)?;
        // Zeroed allocations this large come straight from fresh (already zero) pages:
        // no extra pass over the memory.
        let mut buffer = MutableBuffer::from_len_zeroed(len);
        self.stream.read_exact(buffer.as_slice_mut())?;
        decode_buffer(Buffer::from(buffer))
    }
}

/// Decodes a whole IPC stream held in `buffer` without copying it (buffers must be
/// aligned), as evshm's client does with a mapping.
pub fn decode_buffer(buffer: Buffer) -> anyhow::Result<Vec<RecordBatch>> {
    let mut decoder = StreamDecoder::new().with_require_alignment(true);
    let mut rest = buffer;
    let mut batches = Vec::new();
    while !rest.is_empty() {
        if let Some(batch) = decoder.decode(&mut rest)? {
            batches.push(batch);
        }
    }
    decoder.finish()?;
    Ok(batches)
}

/// Number of rows in `batches`.
pub fn rows(batches: &[RecordBatch]) -> u64 {
    batches.iter().map(|b| b.num_rows() as u64).sum()
}
