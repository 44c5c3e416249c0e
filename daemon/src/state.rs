//! The state every connection shares: roots, shared memory, indexes, cache, budget,
//! access policy, settings and counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use evshm_formats::ChunkLimits;

use crate::access::AccessPolicy;
use crate::budget::{Budget, Usage};
use crate::cache::Cache;
use crate::recording::IndexCache;
use crate::roots::Roots;
use crate::segment::ShmDir;
use crate::spares::Spares;
use crate::stats::{Clients, Stats};

/// Everything the connections share.
#[derive(Debug)]
pub struct Daemon {
    /// The served directories.
    pub(crate) roots: Roots,
    /// Where segments are created.
    pub(crate) shm: Arc<ShmDir>,
    /// Segments made ahead of need.
    pub(crate) spares: Arc<Spares>,
    /// The chunk indexes of the recordings opened so far.
    pub(crate) indexes: IndexCache,
    /// The resident chunks.
    pub(crate) cache: Cache,
    /// How many bytes of segments may exist.
    pub(crate) budget: Budget,
    /// Which users are served.
    pub(crate) access: AccessPolicy,
    /// Tunables.
    pub(crate) settings: Settings,
    /// Counters.
    pub(crate) stats: Stats,
    /// The connected clients.
    pub(crate) clients: Clients,
    /// The next lease id (unique across connections).
    pub(crate) next_lease: AtomicU64,
}

/// The daemon's tunables.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most leases one connection may hold at once.
    pub max_leases: usize,
    /// Most connections served at once; more are refused.
    pub max_connections: usize,
    /// How long a request line may take once begun, a new connection may wait before its
    /// hello, and a reply may take to be written.
    pub frame_timeout: Duration,
    /// How recordings are cut into chunks.
    pub chunk_limits: ChunkLimits,
    /// Chunks decoded ahead of a connection that reads windows forward.
    pub read_ahead: usize,
    /// Threads that decode the chunks of one request.
    pub decode_threads: usize,
    /// Bytes of spare segments kept ready for cold opens (made by
    /// [`Daemon::start_provisioning`]).
    pub provision: u64,
}

/// What an `evict` request freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// Chunks evicted.
    pub chunks: u64,
    /// Bytes of their segments.
    pub bytes: u64,
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
        let limits = settings.chunk_limits;
        let spares =
            Arc::new(Spares::new(Arc::clone(&shm), limits.events, limits.step, settings.provision));
        Arc::new(Daemon {
            roots,
            shm,
            spares,
            indexes: IndexCache::default(),
            cache: Cache::default(),
            budget,
            access,
            settings,
            stats: Stats::default(),
            clients: Clients::default(),
            next_lease: AtomicU64::new(1),
        })
    }

    /// Starts the thread that keeps spare segments ready while the budget has room
    /// (`src/spares.rs`); it ends with the daemon.
    pub fn start_provisioning(self: &Arc<Self>) -> std::io::Result<()> {
        let daemon = Arc::downgrade(self);
        let spares = Arc::downgrade(&self.spares);
        let room = move |capacity: u64| {
            let Some(daemon) = daemon.upgrade() else { return false };
            let (segments, bytes) = daemon.shm.usage();
            let extra = Usage { bytes: daemon.shm.footprint(capacity), segments: 1 };
            daemon.budget.has_half_free_for(extra, Usage { bytes, segments })
        };
        std::thread::Builder::new()
            .name("evshmd-provision".into())
            .spawn(move || Spares::provision(spares, room))
            .map(drop)
    }

    /// Evicts every resident chunk no client holds, counted like evictions for room, and
    /// tells opens waiting for room.
    pub(crate) fn evict_unleased(&self) -> Evicted {
        let sizes = self.cache.evict_unleased();
        let evicted = Evicted { chunks: sizes.len() as u64, bytes: sizes.iter().sum() };
        self.stats.evictions.fetch_add(evicted.chunks, Ordering::Relaxed);
        self.stats.bytes_evicted.fetch_add(evicted.bytes, Ordering::Relaxed);
        self.budget.notify_released();
        evicted
    }
}
