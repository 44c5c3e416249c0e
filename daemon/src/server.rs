//! The listening socket and the state shared by every connection.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rustix::fs::Mode;

use evshm_formats::ChunkLimits;

use crate::access::AccessPolicy;
use crate::budget::Budget;
use crate::cache::Cache;
use crate::recording::Indexes;
use crate::roots::Roots;
use crate::segment::ShmDir;
use crate::session::serve_connection;
use crate::stats::{Clients, Stats};

/// Everything the connections share.
#[derive(Debug)]
pub struct Daemon {
    /// The served directories.
    pub roots: Roots,
    /// Where segments are created.
    pub shm: Arc<ShmDir>,
    /// The chunk indexes of the recordings opened so far.
    pub indexes: Indexes,
    /// The resident chunks.
    pub cache: Cache,
    /// How many bytes of segments may exist.
    pub budget: Budget,
    /// Which users are served.
    pub access: AccessPolicy,
    /// Tunables.
    pub settings: Settings,
    /// Counters.
    pub stats: Stats,
    /// The connected clients.
    pub clients: Clients,
    /// The next lease id (unique across connections).
    pub next_lease: AtomicU64,
}

/// The daemon's tunables.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most leases one connection may hold at once.
    pub max_leases: usize,
    /// How long a request line may take once begun, a new connection may wait before its
    /// hello, and a reply may take to be written.
    pub frame_timeout: Duration,
    /// How recordings are cut into chunks.
    pub chunk_limits: ChunkLimits,
    /// Chunks decoded ahead of a connection that reads windows forward.
    pub read_ahead: usize,
    /// Threads that decode the chunks of one request.
    pub decode_threads: usize,
}

impl Daemon {
    /// A daemon serving `roots`, with segments in `shm`.
    pub fn new(
        roots: Roots,
        shm: Arc<ShmDir>,
        budget: Budget,
        access: AccessPolicy,
        settings: Settings,
    ) -> Arc<Daemon> {
        Arc::new(Daemon {
            roots,
            shm,
            indexes: Indexes::default(),
            cache: Cache::default(),
            budget,
            access,
            settings,
            stats: Stats::default(),
            clients: Clients::default(),
            next_lease: AtomicU64::new(1),
        })
    }

    /// Accepts connections forever, one thread each.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    let daemon = Arc::clone(self);
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
