//! The state every connection shares: roots, shared memory, indexes, cache, budget,
//! access policy, settings and counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use evshm_formats::ChunkLimits;

use crate::access::AccessPolicy;
use crate::arena::Arenas;
use crate::budget::Budget;
use crate::cache::Cache;
use crate::provision::Provisioner;
use crate::recording::IndexCache;
use crate::roots::Roots;
use crate::stats::{Clients, Stats};

/// Everything the connections share.
#[derive(Debug)]
pub struct Daemon {
    /// The served directories.
    pub(crate) roots: Roots,
    /// The shared memory chunks are decoded into.
    pub(crate) arenas: Arc<Arenas>,
    /// When memory is made ready ahead of need, and given back.
    pub(crate) provisioner: Arc<Provisioner>,
    /// The chunk indexes of the recordings opened so far.
    pub(crate) indexes: IndexCache,
    /// The resident chunks.
    pub(crate) cache: Cache,
    /// How many bytes of the arenas may be allocated.
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
    /// Bytes of free arena space kept allocated and mapped for cold opens (made by
    /// [`Daemon::start_provisioning`]).
    pub provision: u64,
    /// Idle time after which free pages beyond `provision` go back to the system.
    pub idle_release: Duration,
}

/// What an `evict` request freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// Chunks evicted.
    pub chunks: u64,
    /// Bytes of their extents.
    pub bytes: u64,
}

impl Daemon {
    /// A daemon serving `roots`, decoding into `arenas`.
    pub fn new(
        roots: Roots,
        arenas: Arc<Arenas>,
        budget: Budget,
        access: AccessPolicy,
        settings: Settings,
    ) -> Arc<Daemon> {
        let provisioner = Arc::new(Provisioner::new(settings.provision, settings.idle_release));
        Arc::new(Daemon {
            roots,
            arenas,
            provisioner,
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

    /// Starts the thread that keeps memory provisioned while the budget has room, and
    /// gives back what is beyond when idle (`src/provision.rs`); it ends with the daemon.
    pub fn start_provisioning(self: &Arc<Self>) -> std::io::Result<()> {
        let daemon = Arc::downgrade(self);
        let room = move |bytes: u64| {
            let Some(daemon) = daemon.upgrade() else { return false };
            let backed = daemon.arenas.usage().bytes_backed;
            daemon.budget.has_half_free_for(bytes, backed)
        };
        crate::provision::start(&self.provisioner, &self.arenas, room)
    }

    /// Stops provisioning and unlinks every arena: the last act of a shutdown. The
    /// number of arenas.
    pub fn close(&self) -> usize {
        self.provisioner.close();
        self.arenas.close()
    }

    /// Evicts every resident chunk no client holds, counted like evictions for room, and
    /// tells opens waiting for room.
    pub(crate) fn evict_unleased(&self) -> Evicted {
        let sizes = self.cache.evict_unleased();
        let evicted = Evicted { chunks: sizes.len() as u64, bytes: sizes.iter().sum() };
        self.stats.evictions.fetch_add(evicted.chunks, Ordering::Relaxed);
        self.stats.bytes_evicted.fetch_add(evicted.bytes, Ordering::Relaxed);
        // What eviction freed beyond the provision goes back to the system now.
        self.arenas.give_back(u64::MAX, self.provisioner.target());
        self.budget.notify_released();
        evicted
    }
}
