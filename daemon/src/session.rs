//! One client connection: framing, the hello handshake, requests and the leases they hold.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use evshm_protocol::{
    ErrorCode, ErrorReply, HelloReply, ListReply, MAX_REQUEST_LINE, PROTOCOL_VERSION, ReleaseReply,
    Request, reply_line,
};

use crate::access::Peer;
use crate::arena::Arena;
use crate::cache::Resident;
use crate::framing::{FrameError, await_request, discard_line, read_request_line, write_reply};
use crate::open::{OpenRequest, ReadPosition, open};
use crate::state::Daemon;
use crate::stats::{ClientEntry, Stats};
use crate::wire;

/// How long a refused connection is given to send its first request, which is then
/// answered with the refusal (so that the client reads why, rather than a reset).
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Serves one connection until the client closes it or breaks the framing; or, given a
/// `refusal`, answers its first request with it and closes it.
pub fn serve_connection(daemon: &Arc<Daemon>, stream: UnixStream, refusal: Option<ErrorReply>) {
    // Declared first, so dropped last: the connection stops counting once its socket is
    // closed, not before.
    let mut session = Session::new(daemon);
    let frame_timeout = daemon.settings.frame_timeout;
    let timeouts = stream
        .set_read_timeout(Some(frame_timeout))
        .and_then(|()| stream.set_write_timeout(Some(frame_timeout)));
    let Ok(read_half) = timeouts.and_then(|()| stream.try_clone()) else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let admitted = match refusal {
        Some(refusal) => Err(refusal),
        None => Peer::of(&writer)
            .map_err(|e| ErrorReply::new(ErrorCode::Internal, format!("no peer credentials: {e}")))
            .and_then(|peer| {
                let checked = daemon.access.check(&peer);
                checked.map(|()| peer).map_err(|denied| wire::access_denied(&denied))
            }),
    };
    match admitted {
        Ok(peer) => session.admit(peer),
        Err(refusal) => {
            log::warn!("refused a connection: {}", refusal.message);
            // Answer the first request, so the refusal is read rather than lost; a
            // refused connection holds its descriptors briefly.
            let wait = REFUSAL_WAIT.min(frame_timeout);
            if reader.get_ref().set_read_timeout(Some(wait)).is_ok() {
                let _ = read_request_line(&mut reader, false, wait);
            }
            let _ = writer.write_all(&session.error(refusal));
            return;
        }
    }
    loop {
        if session.greeted {
            await_request(&reader);
        }
        let (reply, keep_going) =
            match read_request_line(&mut reader, session.greeted, frame_timeout) {
                Ok(Some(line)) => (session.handle(&line), true),
                Ok(None) => return,
                Err(FrameError::TooLarge) => {
                    let message = format!("request line longer than {MAX_REQUEST_LINE} bytes");
                    (session.error(ErrorReply::new(ErrorCode::FrameTooLarge, message)), false)
                }
                Err(FrameError::Stalled) => {
                    let message =
                        format!("request line not finished within {frame_timeout:?}; closing");
                    (session.error(ErrorReply::new(ErrorCode::BadRequest, message)), false)
                }
                Err(FrameError::NoHello) => {
                    let message = format!("no hello within {frame_timeout:?}; closing");
                    (session.error(ErrorReply::new(ErrorCode::HelloRequired, message)), false)
                }
                Err(FrameError::Io(e)) => {
                    log::debug!("connection read failed: {e}");
                    return;
                }
            };
        if let Err(e) = write_reply(&writer, &reply, std::mem::take(&mut session.passing)) {
            log::debug!("connection write failed: {e}");
            return;
        }
        if !keep_going {
            // Closing with unread input would reset the connection and could destroy the
            // error reply before the client reads it: consume the rest of the line first.
            let _ = writer.shutdown(std::net::Shutdown::Write);
            discard_line(&mut reader);
            return;
        }
    }
}

/// The protocol state of one connection.
struct Session<'d> {
    daemon: &'d Arc<Daemon>,
    /// Who is at the other end, once admitted.
    peer: Option<Peer>,
    /// Its entry in the daemon's list of clients, once admitted.
    client_id: Option<u64>,
    /// Arenas' descriptors to pass with the next reply (sealed mode).
    passing: Vec<OwnedFd>,
    /// The arenas named to this connection so far, by name: each is described (and in
    /// sealed mode passed) once, and said to be gone once evshmd drops it.
    told: HashMap<String, Weak<Arena>>,
    greeted: bool,
    /// The chunks each lease holds.
    leases: HashMap<u64, Vec<Arc<Resident>>>,
    /// Where its last window was, to tell a reader moving forward (worth reading ahead
    /// for).
    position: ReadPosition,
}

impl<'d> Session<'d> {
    fn new(daemon: &'d Arc<Daemon>) -> Self {
        daemon.stats.connections.fetch_add(1, Ordering::Relaxed);
        Self {
            daemon,
            peer: None,
            client_id: None,
            passing: Vec::new(),
            told: HashMap::new(),
            greeted: false,
            leases: HashMap::new(),
            position: ReadPosition::default(),
        }
    }

    fn admit(&mut self, peer: Peer) {
        self.peer = Some(peer);
        self.client_id = Some(self.daemon.clients.add(peer.pid, peer.uid));
    }

    /// Keeps the daemon's list of clients in step with this session.
    fn update_client(&self, change: impl FnOnce(&mut ClientEntry)) {
        if let Some(id) = self.client_id {
            self.daemon.clients.update(id, change);
        }
    }

    /// Answers one request line with one reply line.
    fn handle(&mut self, line: &[u8]) -> Vec<u8> {
        match self.dispatch(line) {
            Ok(reply) => reply,
            Err(error) => {
                // Descriptors gathered for a reply that is not sent are closed.
                self.passing.clear();
                self.error(error)
            }
        }
    }

    fn error(&self, error: ErrorReply) -> Vec<u8> {
        Stats::bump(&self.daemon.stats.errors);
        log::debug!("error reply: {error}");
        error.to_line()
    }

    fn dispatch(&mut self, line: &[u8]) -> Result<Vec<u8>, ErrorReply> {
        let request = Request::parse(line)?;
        if !self.greeted && !matches!(request, Request::Hello { .. }) {
            return Err(ErrorReply::new(
                ErrorCode::HelloRequired,
                "the first request on a connection must be hello",
            ));
        }
        Ok(match request {
            Request::Hello { version, client } => {
                if version != PROTOCOL_VERSION {
                    return Err(ErrorReply::new(
                        ErrorCode::UnsupportedVersion,
                        format!(
                            "client speaks protocol version {version}; this daemon speaks \
                             version {PROTOCOL_VERSION}"
                        ),
                    ));
                }
                self.greeted = true;
                self.update_client(|c| c.name.clone_from(&client));
                let who = client.as_deref().unwrap_or("an unnamed client");
                match self.peer {
                    Some(p) => log::debug!("hello from {who} (pid {}, uid {})", p.pid, p.uid),
                    None => log::debug!("hello from {who}"),
                }
                let server = format!("evshmd/{}", env!("CARGO_PKG_VERSION"));
                let roots = self.daemon.roots.dirs().to_vec();
                reply_line(&HelloReply { version: PROTOCOL_VERSION, server, roots })
            }
            Request::List => {
                let listed = crate::listing::list(self.daemon);
                reply_line(&ListReply {
                    recordings: listed.into_iter().map(wire::recording_entry).collect(),
                })
            }
            Request::Open { path, table, width, height, window } => {
                let geometry = wire::requested_geometry(width, height)?;
                self.open(&OpenRequest { path: &path, table, geometry, window })?
            }
            Request::Release { lease } => {
                if self.leases.remove(&lease).is_none() {
                    return Err(ErrorReply::new(
                        ErrorCode::UnknownLease,
                        format!("lease {lease} is not held by this connection"),
                    ));
                }
                self.daemon.stats.leases.fetch_sub(1, Ordering::Relaxed);
                self.update_client(|c| c.leases -= 1);
                self.daemon.budget.notify_released();
                reply_line(&ReleaseReply {})
            }
            Request::Stats => reply_line(&wire::stats_reply(self.daemon)),
            Request::Evict => {
                let evicted = self.daemon.evict_unleased();
                log::info!(
                    "evict request: {} unleased chunks evicted ({} bytes)",
                    evicted.chunks,
                    evicted.bytes
                );
                reply_line(&wire::evict_reply(evicted))
            }
            _ => {
                return Err(ErrorReply::new(ErrorCode::UnknownOp, "request not supported"));
            }
        })
    }

    /// Opens what `request` asks for and takes a lease on its chunks: the reply line (the
    /// descriptors of sealed arenas new to the connection go to `passing`, to be sent
    /// with it).
    fn open(&mut self, request: &OpenRequest<'_>) -> Result<Vec<u8>, ErrorReply> {
        let daemon = self.daemon;
        Stats::bump(&daemon.stats.opens);
        if self.leases.len() >= daemon.settings.max_leases {
            return Err(ErrorReply::new(
                ErrorCode::TooManyLeases,
                format!(
                    "this connection holds {} leases, the most evshmd allows (--max-leases); \
                     release some first",
                    self.leases.len()
                ),
            ));
        }
        let opened = open(daemon, request, &mut self.position).map_err(|e| wire::open_error(&e))?;
        // Arenas new to this connection: a sealed one's descriptor goes with the reply.
        let mut new = Vec::new();
        for arena in opened.arenas() {
            if self.told.contains_key(arena.name()) {
                continue;
            }
            if arena.path().is_none() {
                let fd = arena.share().map_err(|e| {
                    ErrorReply::new(ErrorCode::Internal, format!("cannot pass an arena: {e}"))
                })?;
                self.passing.push(fd);
            }
            new.push(Arc::clone(arena));
        }
        let gone: Vec<String> = (self.told.iter())
            .filter(|(_, arena)| arena.upgrade().is_none_or(|arena| arena.is_dropped()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            self.told.remove(name);
        }
        for arena in &new {
            self.told.insert(arena.name().to_owned(), Arc::downgrade(arena));
        }
        let lease = daemon.next_lease.fetch_add(1, Ordering::Relaxed);
        let passed =
            |arena: &Arena| arena.path().is_none() && new.iter().any(|a| a.name() == arena.name());
        let reply = reply_line(&wire::open_reply(&opened, lease, passed, gone));
        let held: Vec<Arc<Resident>> =
            opened.chunks.into_iter().map(|s| s.table.resident).collect();
        self.leases.insert(lease, held);
        daemon.stats.leases.fetch_add(1, Ordering::Relaxed);
        self.update_client(|c| c.leases += 1);
        Ok(reply)
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let stats = &self.daemon.stats;
        stats.leases.fetch_sub(self.leases.len() as u64, Ordering::Relaxed);
        stats.connections.fetch_sub(1, Ordering::Relaxed);
        self.leases.clear();
        if let Some(id) = self.client_id {
            self.daemon.clients.remove(id);
        }
        self.daemon.budget.notify_released();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::testing::{TempDir, daemon};

    #[test]
    fn hello_first_then_requests_and_errors_keep_the_connection() {
        let dir = TempDir::new("session");
        let daemon = daemon(&dir, 1 << 20, u64::MAX);
        let (client, server) = UnixStream::pair().unwrap();
        let serving = std::thread::spawn(move || serve_connection(&daemon, server, None));
        let mut lines = BufReader::new(client.try_clone().unwrap()).lines();
        let ask = |lines: &mut std::io::Lines<_>, request: &str| {
            (&client).write_all(format!("{request}\n").as_bytes()).unwrap();
            let reply: serde_json::Value =
                serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
            reply
        };
        assert_eq!(ask(&mut lines, r#"{"op":"stats"}"#)["error"]["code"], "hello_required");
        assert_eq!(ask(&mut lines, r#"{"op":"hello","version":3}"#)["ok"], true);
        assert_eq!(ask(&mut lines, r#"{"op":"list"}"#)["recordings"], serde_json::json!([]));
        assert_eq!(
            ask(&mut lines, r#"{"op":"open","path":"none.raw"}"#)["error"]["code"],
            "not_found"
        );
        assert_eq!(
            ask(&mut lines, r#"{"op":"release","lease":9}"#)["error"]["code"],
            "unknown_lease"
        );
        assert_eq!(ask(&mut lines, r#"{"op":"stats"}"#)["errors"], 3, "each error counted");
        // Both descriptors of the client's end closed: the session ends.
        drop((lines, client));
        serving.join().unwrap();
    }
}
