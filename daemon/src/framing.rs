//! Request framing: newline-terminated lines, bounded in length and in time.
//!
//! A line may be at most [`MAX_REQUEST_LINE`] bytes. Once a line has begun it must end
//! within the frame timeout, counted from its first byte however the rest trickles in (a
//! client sending a byte now and then cannot hold a connection thread), and a new
//! connection must send its first line (`hello`) within it too; between requests a
//! greeted connection may stay idle as long as it likes, since clients hold leases for
//! hours.

use std::io::{BufRead, BufReader, ErrorKind, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use evshm_protocol::MAX_REQUEST_LINE;
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

/// Why no request line could be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The line is longer than [`MAX_REQUEST_LINE`].
    TooLarge,
    /// The line began but did not end within the frame timeout.
    Stalled,
    /// A new connection sent nothing within the frame timeout.
    NoHello,
    /// The connection failed.
    Io(std::io::Error),
}

/// A stream whose reads can be given a time limit.
pub(crate) trait ReadTimeout: Read {
    /// Limits each later read to `timeout` (`None`: no limit).
    fn set_read_limit(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

impl ReadTimeout for UnixStream {
    fn set_read_limit(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(timeout)
    }
}

/// Reads one line without its newline; `None` at end of stream (a final line without
/// newline is dropped: the client left mid-request). `greeted` tells whether the
/// connection may idle when a read times out. Once the line's first byte is in, the rest
/// must come within `limit`; the stream's read timeout (`limit` too, set when the
/// connection is accepted) is shortened to what is left, and restored after.
pub(crate) fn read_request_line<R: ReadTimeout>(
    reader: &mut BufReader<R>,
    greeted: bool,
    limit: Duration,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut line = Vec::new();
    let mut deadline: Option<Instant> = None;
    let result = loop {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(FrameError::Stalled);
            }
            if let Err(e) = reader.get_ref().set_read_limit(Some(left)) {
                break Err(FrameError::Io(e));
            }
        }
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !line.is_empty() {
                    break Err(FrameError::Stalled);
                }
                if !greeted {
                    break Err(FrameError::NoHello);
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => break Err(FrameError::Io(e)),
        };
        if available.is_empty() {
            break Ok(None);
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.map_or(available.len(), |at| at + 1);
        if line.len() + take > MAX_REQUEST_LINE {
            break Err(FrameError::TooLarge);
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if newline.is_some() {
            line.pop();
            break Ok(Some(line));
        }
        deadline.get_or_insert_with(|| Instant::now() + limit);
    };
    // Only a line that came in pieces shortened the timeout: the common one costs nothing.
    if deadline.is_some() {
        reader.get_ref().set_read_limit(Some(limit)).map_err(FrameError::Io)?;
    }
    result
}

/// How long a connection thread polls for the next request before it sleeps in `read`.
const REQUEST_SPIN: Duration = Duration::from_micros(50);

/// Polls briefly for the next request on a connection whose buffer is empty. Clients
/// often send their next request right after a reply (release, then the next open); on
/// a virtual machine, a CPU that went idle takes tens of microseconds to wake, more than
/// serving the request: staying awake a little spares that.
pub(crate) fn await_request(reader: &BufReader<UnixStream>) {
    if !reader.buffer().is_empty() {
        return;
    }
    // Spinning threads take CPUs from the ones with work: leave one CPU to those.
    static LIMIT: OnceLock<usize> = OnceLock::new();
    let limit = *LIMIT.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
    });
    let _spinning = match Spinner::enter(limit) {
        Some(spinner) => spinner,
        None => return,
    };
    let started = Instant::now();
    let mut probe = [MaybeUninit::uninit()];
    let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
    while started.elapsed() < REQUEST_SPIN {
        match rustix::net::recv(reader.get_ref(), &mut probe, flags) {
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => std::hint::spin_loop(),
            // Data, end of stream or an error: the blocking read that follows sees it.
            _ => return,
        }
    }
}

/// Connection threads polling in [`await_request`] now.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// One of the [`SPINNING`] threads, while it lasts.
struct Spinner;

impl Spinner {
    /// Counts this thread in, unless `limit` threads spin already.
    fn enter(limit: usize) -> Option<Spinner> {
        let admitted = SPINNING
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limit).then(|| n + 1))
            .is_ok();
        // Built only when admitted: dropping a Spinner counts it out.
        admitted.then(|| Spinner)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        SPINNING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Most descriptors passed with one `sendmsg` (the kernel takes at most 253).
const FDS_PER_MESSAGE: usize = 250;

/// Writes a reply line; `fds` travel with its first bytes (`SCM_RIGHTS`), at most
/// [`FDS_PER_MESSAGE`] with each byte sent, so the client finds them all before the end
/// of the reply that names them.
pub(crate) fn write_reply(
    mut writer: &UnixStream,
    line: &[u8],
    fds: Vec<OwnedFd>,
) -> std::io::Result<()> {
    let mut sent = 0;
    let groups = fds.len().div_ceil(FDS_PER_MESSAGE);
    for (i, group) in fds.chunks(FDS_PER_MESSAGE).enumerate() {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let borrowed: Vec<_> = group.iter().map(|fd| fd.as_fd()).collect();
        control.push(SendAncillaryMessage::ScmRights(&borrowed));
        // One byte per message, so that every group gets a message of its own while
        // bytes remain; a reply with descriptors always has bytes enough (about 100 per
        // arena).
        let piece = if i + 1 == groups { &line[sent..] } else { &line[sent..sent + 1] };
        sent += rustix::net::sendmsg(
            writer,
            &[IoSlice::new(piece)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
    }
    writer.write_all(&line[sent..])
}

/// Most bytes, and longest wait in all, spent consuming the tail of a refused request.
const DISCARD_LIMIT: u64 = 16 * 1024 * 1024;
const DISCARD_TIMEOUT: Duration = Duration::from_secs(1);

/// Consumes the rest of the current line, within limits: closing a socket with unread
/// input resets the connection and can destroy the reply sent just before.
pub(crate) fn discard_line(reader: &mut BufReader<UnixStream>) {
    // A deadline for the whole discard, not each read: a client that drips bytes cannot
    // hold the thread.
    let deadline = Instant::now() + DISCARD_TIMEOUT;
    let mut left = DISCARD_LIMIT;
    while left > 0 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || reader.get_ref().set_read_timeout(Some(remaining)).is_err() {
            return;
        }
        let Ok(buffer) = reader.fill_buf() else { return };
        if buffer.is_empty() {
            return;
        }
        let newline = buffer.iter().position(|&b| b == b'\n');
        let used = newline.map_or(buffer.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return;
        }
        left = left.saturating_sub(used as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A reader that hands out the given pieces, then times out (`None` pieces too),
    /// waiting `pause` before each.
    struct Stalling(VecDeque<Option<&'static [u8]>>, Duration);

    impl Read for Stalling {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.1);
            match self.0.pop_front() {
                Some(Some(piece)) => {
                    buf[..piece.len()].copy_from_slice(piece);
                    Ok(piece.len())
                }
                _ => Err(ErrorKind::WouldBlock.into()),
            }
        }
    }

    impl ReadTimeout for Stalling {
        fn set_read_limit(&self, _: Option<Duration>) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl ReadTimeout for &[u8] {
        fn set_read_limit(&self, _: Option<Duration>) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn stalling(pieces: &[Option<&'static [u8]>]) -> BufReader<Stalling> {
        BufReader::new(Stalling(pieces.iter().copied().collect(), Duration::ZERO))
    }

    const LIMIT: Duration = Duration::from_secs(10);

    #[test]
    fn at_most_limit_threads_spin_and_a_refused_one_counts_nothing() {
        let first = Spinner::enter(1).expect("room for one");
        for _ in 0..3 {
            assert!(Spinner::enter(1).is_none());
        }
        drop(first);
        let again = Spinner::enter(1);
        assert!(again.is_some(), "refusals left the count alone");
    }

    #[test]
    fn lines_are_bounded_in_length() {
        let mut input = BufReader::new(&b"{\"op\":\"list\"}\n{\"op\""[..]);
        assert_eq!(
            read_request_line(&mut input, true, LIMIT).ok().flatten().unwrap(),
            b"{\"op\":\"list\"}"
        );
        assert!(matches!(read_request_line(&mut input, true, LIMIT), Ok(None)));
        let long = vec![b'x'; MAX_REQUEST_LINE + 10];
        let mut long = BufReader::new(&long[..]);
        assert!(matches!(read_request_line(&mut long, true, LIMIT), Err(FrameError::TooLarge)));
        let mut exact = vec![b'x'; MAX_REQUEST_LINE - 1];
        exact.push(b'\n');
        let mut exact = BufReader::new(&exact[..]);
        let line = read_request_line(&mut exact, true, LIMIT).ok().flatten().unwrap();
        assert_eq!(line.len(), MAX_REQUEST_LINE - 1);
    }

    #[test]
    fn lines_are_bounded_in_time() {
        let half: &[u8] = b"{\"op\":";
        let mut reader = stalling(&[Some(half), None]);
        assert!(matches!(read_request_line(&mut reader, true, LIMIT), Err(FrameError::Stalled)));
        assert!(matches!(
            read_request_line(&mut stalling(&[None]), false, LIMIT),
            Err(FrameError::NoHello)
        ));
        // A greeted connection may idle between requests, then finish a line in pieces.
        let mut idle = stalling(&[None, None, Some(b"{\"op\""), Some(b":\"stats\"}\n")]);
        assert_eq!(
            read_request_line(&mut idle, true, LIMIT).ok().flatten().unwrap(),
            b"{\"op\":\"stats\"}"
        );
    }

    #[test]
    fn a_line_that_trickles_in_is_cut_off_at_the_limit_however_often_bytes_come() {
        let drip = [Some(&b"{"[..])].into_iter().chain([Some(&b" "[..]); 100]);
        let mut reader = BufReader::new(Stalling(drip.collect(), Duration::from_millis(10)));
        let started = Instant::now();
        let limit = Duration::from_millis(100);
        assert!(matches!(read_request_line(&mut reader, true, limit), Err(FrameError::Stalled)));
        let took = started.elapsed();
        assert!(took >= limit, "cut off at {took:?}, before the limit");
        assert!(reader.get_ref().0.len() > 50, "not after reading the whole drip");
    }
}
