//! The listening socket: binding it safely, and accepting connections.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustix::fs::Mode;

use crate::session::serve_connection;
use crate::state::Daemon;
use crate::wire;

/// Accepts connections forever, one thread each, and refuses those beyond
/// `--max-connections` with `too_many_connections` (answered on a short-lived thread of
/// their own, so that the accept loop never waits on a client).
pub fn serve(daemon: &Arc<Daemon>, listener: UnixListener) {
    let live = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                log::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let limit = daemon.settings.max_connections;
        let counted = Connection::count(&live, limit);
        let refusal = counted.is_none().then(|| wire::too_many_connections(limit));
        let daemon = Arc::clone(daemon);
        let spawned = std::thread::Builder::new().name("evshmd-conn".into()).spawn(move || {
            let _counted = counted;
            serve_connection(&daemon, stream, refusal);
        });
        if let Err(e) = spawned {
            log::warn!("cannot start a connection thread: {e}");
        }
    }
}

/// One of the `live` connections that count against `--max-connections`, while it lasts.
struct Connection(Arc<AtomicUsize>);

impl Connection {
    /// Counts a connection in, unless `limit` are live already.
    fn count(live: &Arc<AtomicUsize>, limit: usize) -> Option<Connection> {
        let admitted = live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1));
        admitted.is_ok().then(|| Connection(Arc::clone(live)))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Makes `dir`, the fallback socket's directory, with mode 0700, or checks that the one
/// there is this user's and closed to others: anyone can make a directory of that name in
/// `/tmp` first, to catch this user's connections.
pub fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => {
            let why = format!("cannot make {}: {e}", dir.display());
            return Err(std::io::Error::new(std::io::Error::from(e).kind(), why));
        }
    }
    evshm_protocol::check_private_dir(dir).map_err(|why| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{why}: another user may have made it to catch this user's connections; \
                 remove it, or give --socket, $EVSHM_SOCKET or $XDG_RUNTIME_DIR"
            ),
        )
    })
}

/// Binds the control socket with mode 0660 (and group `group`, if given), replacing a
/// stale socket file left by a dead daemon but refusing to take over from a live one.
pub fn bind_socket(path: &Path, group: Option<u32>) -> std::io::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another evshmd is already listening at {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
        log::info!("replaced stale socket file {}", path.display());
    }
    // The umask decides the mode bind() gives the socket file; set it so that the file
    // is never, even briefly, accessible to others. Called before any thread starts.
    let previous = rustix::process::umask(Mode::from_raw_mode(0o117));
    let bound = UnixListener::bind(path);
    rustix::process::umask(previous);
    let listener = bound.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display()))
    })?;
    if let Some(gid) = group {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid))).map_err(|e| {
            std::io::Error::new(
                std::io::Error::from(e).kind(),
                format!("cannot give {} to group {gid}: {e}", path.display()),
            )
        })?;
    }
    Ok(listener)
}
