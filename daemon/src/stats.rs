//! Counters for the `stats` request.

use std::sync::atomic::{AtomicU64, Ordering};

/// Event counters since start, and gauges of what is held now.
#[derive(Debug, Default)]
pub struct Stats {
    /// `open` requests served.
    pub opens: AtomicU64,
    /// Recordings decoded.
    pub decodes: AtomicU64,
    /// Opens served without a decode of their own.
    pub cache_hits: AtomicU64,
    /// Error replies sent.
    pub errors: AtomicU64,
    /// Unleased recordings evicted to make room within the memory budget.
    pub evictions: AtomicU64,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Leases held now.
    pub leases: AtomicU64,
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
