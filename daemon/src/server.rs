//! The listening socket: binding it safely, and accepting connections.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::Mode;

use crate::session::serve_connection;
use crate::state::Daemon;

/// Accepts connections forever, one thread each.
pub fn serve(daemon: &Arc<Daemon>, listener: UnixListener) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let daemon = Arc::clone(daemon);
                let spawned = std::thread::Builder::new()
                    .name("evshmd-conn".into())
                    .spawn(move || serve_connection(&daemon, stream));
                if let Err(e) = spawned {
                    log::warn!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                log::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
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
