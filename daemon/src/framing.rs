//! Request framing: newline-terminated lines, bounded in length and in time.
//!
//! A line may be at most [`MAX_REQUEST_LINE`] bytes. Once a line has begun it must end
//! within the frame timeout (the socket's read timeout), and a new connection must send
//! its first line (`hello`) within it too; between requests a greeted connection may stay
//! idle as long as it likes, since clients hold leases for hours.

use std::io::{BufRead, BufReader, ErrorKind, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use evshm::protocol::MAX_REQUEST_LINE;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

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

/// Reads one line without its newline; `None` at end of stream (a final line without
/// newline is dropped: the client left mid-request). `greeted` tells whether the
/// connection may idle when the read times out.
pub(crate) fn read_request_line(
    reader: &mut impl BufRead,
    greeted: bool,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut line = Vec::new();
    loop {
        let room = (MAX_REQUEST_LINE - line.len()) as u64;
        // On an error, read_until keeps what it read so far in `line`.
        match reader.take(room).read_until(b'\n', &mut line) {
            Ok(_) => {
                return match line.pop() {
                    Some(b'\n') => Ok(Some(line)),
                    _ if line.len() + 1 >= MAX_REQUEST_LINE => Err(FrameError::TooLarge),
                    _ => Ok(None),
                };
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !line.is_empty() {
                    return Err(FrameError::Stalled);
                }
                if !greeted {
                    return Err(FrameError::NoHello);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
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
        // segment).
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

/// Most bytes, and longest wait, spent consuming the tail of an oversized request.
const DISCARD_LIMIT: u64 = 16 * 1024 * 1024;
const DISCARD_TIMEOUT: Duration = Duration::from_secs(1);

/// Consumes the rest of the current line, within limits: closing a socket with unread
/// input resets the connection and can destroy the reply sent just before.
pub(crate) fn discard_line(reader: &mut BufReader<UnixStream>) {
    if reader.get_ref().set_read_timeout(Some(DISCARD_TIMEOUT)).is_err() {
        return;
    }
    let mut left = DISCARD_LIMIT;
    while left > 0 {
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

    /// A reader that hands out the given pieces, then times out (`None` pieces too).
    struct Stalling(VecDeque<Option<&'static [u8]>>);

    impl Read for Stalling {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.pop_front() {
                Some(Some(piece)) => {
                    buf[..piece.len()].copy_from_slice(piece);
                    Ok(piece.len())
                }
                _ => Err(ErrorKind::WouldBlock.into()),
            }
        }
    }

    fn stalling(pieces: &[Option<&'static [u8]>]) -> BufReader<Stalling> {
        BufReader::new(Stalling(pieces.iter().copied().collect()))
    }

    #[test]
    fn lines_are_bounded_in_length() {
        let mut input: &[u8] = b"{\"op\":\"list\"}\n{\"op\"";
        assert_eq!(
            read_request_line(&mut input, true).ok().flatten().unwrap(),
            b"{\"op\":\"list\"}"
        );
        assert!(matches!(read_request_line(&mut input, true), Ok(None)));
        let long = vec![b'x'; MAX_REQUEST_LINE + 10];
        assert!(matches!(read_request_line(&mut &long[..], true), Err(FrameError::TooLarge)));
        let mut exact = vec![b'x'; MAX_REQUEST_LINE - 1];
        exact.push(b'\n');
        let line = read_request_line(&mut &exact[..], true).ok().flatten().unwrap();
        assert_eq!(line.len(), MAX_REQUEST_LINE - 1);
    }

    #[test]
    fn lines_are_bounded_in_time() {
        let half: &[u8] = b"{\"op\":";
        let mut reader = stalling(&[Some(half), None]);
        assert!(matches!(read_request_line(&mut reader, true), Err(FrameError::Stalled)));
        assert!(matches!(
            read_request_line(&mut stalling(&[None]), false),
            Err(FrameError::NoHello)
        ));
        // A greeted connection may idle between requests, then finish a line in pieces.
        let mut idle = stalling(&[None, None, Some(b"{\"op\""), Some(b":\"stats\"}\n")]);
        assert_eq!(
            read_request_line(&mut idle, true).ok().flatten().unwrap(),
            b"{\"op\":\"stats\"}"
        );
    }
}
