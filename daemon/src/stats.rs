//! Counters for the `stats` request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Event counters since start, and gauges of what is held now.
#[derive(Debug, Default)]
pub struct Stats {
    /// `open` requests served.
    pub opens: AtomicU64,
    /// Chunks decoded.
    pub decodes: AtomicU64,
    /// Opens whose chunks were all resident.
    pub cache_hits: AtomicU64,
    /// Bytes of recordings read by index passes.
    pub bytes_indexed: AtomicU64,
    /// Error replies sent.
    pub errors: AtomicU64,
    /// Unleased chunks evicted to make room within the memory budget.
    pub evictions: AtomicU64,
    /// Bytes those evictions freed.
    pub bytes_evicted: AtomicU64,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Leases held now.
    pub leases: AtomicU64,
}

/// A connected client, as `stats` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientEntry {
    /// Its process id, from the kernel (0 for a client outside the daemon's pid namespace).
    pub pid: i32,
    /// Its user id, from the kernel.
    pub uid: u32,
    /// The name it gave in `hello`.
    pub name: Option<String>,
    /// Leases it holds.
    pub leases: u64,
}

/// The connected clients, for `stats`: who they are and how many leases they hold.
#[derive(Debug, Default)]
pub struct Clients {
    next: AtomicU64,
    clients: Mutex<HashMap<u64, ClientEntry>>,
}

impl Clients {
    /// Registers a client; the returned id updates and removes it.
    pub fn add(&self, pid: i32, uid: u32) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, ClientEntry { pid, uid, ..ClientEntry::default() });
        id
    }

    /// Changes what is known of a client.
    pub fn update(&self, id: u64, change: impl FnOnce(&mut ClientEntry)) {
        if let Some(client) = self.lock().get_mut(&id) {
            change(client);
        }
    }

    /// Forgets a client.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Every client, by pid.
    pub fn list(&self) -> Vec<ClientEntry> {
        let mut clients: Vec<ClientEntry> = self.lock().values().cloned().collect();
        clients.sort_by_key(|c| c.pid);
        clients
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, ClientEntry>> {
        // Plain records replaced field by field: nothing a panic could leave half-done.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Stats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
