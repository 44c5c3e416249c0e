//! One request/reply stream to evshmd: writing request lines, reading reply lines and the
//! descriptors that come with them.

use std::io::{IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use evshm_protocol::{MAX_REPLY_LINE, Request};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use serde::de::DeserializeOwned;

use crate::error::ClientError;

/// How long a client polls for a reply before it sleeps until one comes.
const REPLY_SPIN: Duration = Duration::from_micros(50);

/// One request/reply stream. Any failure mid-request leaves it out of step with the
/// daemon, so it is then marked broken and refuses further requests.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: UnixStream,
    /// Bytes received beyond the last reply line.
    pending: Vec<u8>,
    /// Where `recvmsg` writes, kept so that no request allocates one.
    chunk: Vec<u8>,
    broken: bool,
    /// The arenas the daemon named on this connection: the process forgets their
    /// mappings when the connection goes (the daemon may be gone, and its arenas with it).
    arenas: Vec<String>,
    /// Replies owed for releases sent without waiting: read, in order, before the next
    /// request's reply.
    owed: usize,
}

/// Bytes read from the socket at a time.
const RECV_CHUNK: usize = 64 * 1024;

impl Connection {
    /// A connection over `stream`, before any request.
    pub(crate) fn new(stream: UnixStream) -> Self {
        let (pending, chunk, arenas) = (Vec::new(), vec![0; RECV_CHUNK], Vec::new());
        Connection { stream, pending, chunk, broken: false, arenas, owed: 0 }
    }

    /// Notes that the daemon named `arena` on this connection.
    pub(crate) fn named(&mut self, arena: &str) {
        if !self.arenas.iter().any(|known| known == arena) {
            self.arenas.push(arena.to_owned());
        }
    }

    /// Sends `release` for `lease` without waiting for its reply (read with the next
    /// request's): a drop costs no round trip, and the daemon reads the release before
    /// anything this connection asks next. A failure leaves the connection broken, and
    /// the daemon ends its leases with it.
    pub(crate) fn release(&mut self, lease: u64) {
        if self.broken {
            return;
        }
        match (&self.stream).write_all(&Request::Release { lease }.to_line()) {
            Ok(()) => self.owed += 1,
            Err(_) => self.broken = true,
        }
    }

    /// Sends a request and parses its reply; descriptors that came with the reply (a
    /// sealed arena) are returned beside it.
    pub(crate) fn request<T: DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<(T, Vec<OwnedFd>), ClientError> {
        if self.broken {
            return Err(ClientError::ConnectionLost(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "an earlier request on this connection failed",
            )));
        }
        let result = self.exchange(request);
        if let Err(ClientError::ConnectionLost(_) | ClientError::Protocol(_)) = &result {
            self.broken = true;
        }
        let (line, fds) = result?;
        Ok((evshm_protocol::parse_reply(&line)?, fds))
    }

    fn exchange(&mut self, request: &Request) -> Result<(Vec<u8>, Vec<OwnedFd>), ClientError> {
        (&self.stream).write_all(&request.to_line()).map_err(ClientError::ConnectionLost)?;
        let spin_deadline = Instant::now().checked_add(REPLY_SPIN);
        let mut fds = Vec::new();
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                if self.owed > 0 {
                    // A release's reply: an error means the lease had ended already.
                    self.owed -= 1;
                    evshm_protocol::parse_reply::<evshm_protocol::ReleaseReply>(&line).or_else(
                        |e| match e {
                            evshm_protocol::ReplyError::Daemon(_) => Ok(Default::default()),
                            other => Err(other),
                        },
                    )?;
                    continue;
                }
                return Ok((line, fds));
            }
            if self.pending.len() >= MAX_REPLY_LINE {
                return Err(ClientError::Protocol(format!(
                    "reply longer than {MAX_REPLY_LINE} bytes"
                )));
            }
            // Room for the most descriptors one message can carry (the daemon sends at most
            // 250 per message, one message per byte at worst).
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            // The daemon answers in microseconds: polling for the reply a little while
            // before sleeping spares the wake-up of this thread, which on a busy machine
            // costs more than the whole request.
            let spinning = spin_deadline.is_some_and(|deadline| Instant::now() < deadline);
            let flags = if spinning {
                RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT
            } else {
                RecvFlags::CMSG_CLOEXEC
            };
            let received = rustix::net::recvmsg(
                &self.stream,
                &mut [IoSliceMut::new(&mut self.chunk)],
                &mut control,
                flags,
            );
            let bytes = match received {
                Ok(message) => message.bytes,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) if spinning => {
                    std::hint::spin_loop();
                    continue;
                }
                Err(e) => return Err(ClientError::ConnectionLost(e.into())),
            };
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = message {
                    fds.extend(received);
                }
            }
            if bytes == 0 {
                return Err(ClientError::ConnectionLost(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.pending.extend_from_slice(&self.chunk[..bytes]);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        crate::mapping::forget(&self.arenas);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};

    use evshm_protocol::StatsReply;

    use super::*;

    /// A daemon stand-in on the other end of a socket pair: answers each request line
    /// with the next of `replies`, written five bytes at a time.
    fn daemon(replies: Vec<&'static str>) -> Connection {
        let (ours, theirs) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(theirs.try_clone().unwrap());
            for reply in replies {
                let mut request = String::new();
                if reader.read_line(&mut request).unwrap() == 0 {
                    return;
                }
                for piece in reply.as_bytes().chunks(5) {
                    (&theirs).write_all(piece).unwrap();
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        });
        Connection::new(ours)
    }

    #[test]
    fn replies_in_pieces_are_read_whole_and_a_broken_stream_stays_broken() {
        let mut connection = daemon(vec![
            "{\"ok\":true,\"extents\":3,\"bytes_resident\":1,\"leases\":0,\"connections\":1,\
             \"opens\":0,\"decodes\":0,\"cache_hits\":0,\"errors\":0}\n",
            "{\"ok\":false,\"error\":{\"code\":\"not_found\",\"message\":\"m\"}}\n",
            "not json\n",
        ]);
        let (stats, fds): (StatsReply, _) = connection.request(&Request::Stats).unwrap();
        assert_eq!((stats.extents, fds.len()), (3, 0));
        let refused = connection.request::<StatsReply>(&Request::Stats).unwrap_err();
        assert!(matches!(refused, ClientError::Daemon { .. }), "an error reply: {refused}");
        let garbage = connection.request::<StatsReply>(&Request::Stats).unwrap_err();
        assert!(matches!(garbage, ClientError::Protocol(_)), "{garbage}");
        let after = connection.request::<StatsReply>(&Request::Stats).unwrap_err();
        assert!(matches!(after, ClientError::ConnectionLost(_)), "out of step: {after}");
    }
}
