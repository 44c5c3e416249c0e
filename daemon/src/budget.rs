//! The memory budget: how many bytes of the arenas' pages may be allocated at once, in
//! extents in use or provisioned for the next decodes.
//!
//! A decode reserves the bytes its extent adds (its pages not yet allocated) before
//! allocating them. When what is allocated plus what decodes reserve would exceed the
//! budget, provisioned pages go back to the system first, then the cache evicts resident
//! chunks no client holds, least recently used first; if that is not enough, the open
//! waits (a bounded time) for clients to release leases, then fails with `over_budget`.
//! Leased extents are never evicted.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fs::StatVfs;

/// Share of the shared-memory filesystem's free space used when no budget is given.
const DEFAULT_SHARE: f64 = 0.75;
/// Below this size a shared-memory filesystem is too small for real recordings.
const SMALL_SHM: u64 = 256 << 20;

/// The budget, and the bytes reserved by decodes in progress.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    wait: Duration,
    reserved: Mutex<u64>,
    released: Condvar,
}

impl Budget {
    /// A budget of `limit` bytes; opens wait at most `wait` for room.
    pub fn new(limit: u64, wait: Duration) -> Budget {
        Budget { limit, wait, reserved: Mutex::new(0), released: Condvar::new() }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How long an open waits for room.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Reserves `needed` bytes if `in_use` (allocated bytes) plus what is reserved leaves
    /// room for them.
    pub fn try_reserve(&self, needed: u64, in_use: u64) -> Option<Reservation<'_>> {
        let mut reserved = self.lock();
        if in_use.saturating_add(*reserved).saturating_add(needed) > self.limit {
            return None;
        }
        *reserved += needed;
        Some(Reservation { budget: self, bytes: needed })
    }

    /// Whether `extra` bytes fit in the half of the budget that `in_use` (allocated
    /// bytes) and what is reserved leave: room for something made ahead of need
    /// (provisioned pages), which may not crowd out decodes.
    pub fn has_half_free_for(&self, extra: u64, in_use: u64) -> bool {
        let reserved = *self.lock();
        in_use.saturating_add(reserved).saturating_add(extra) <= self.limit / 2
    }

    /// Waits until something may have freed room, or until `deadline`; `false` when the
    /// deadline has passed.
    pub fn wait_for_room(&self, deadline: Instant) -> bool {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
        let reserved = self.lock();
        // Woken by releases; spurious wake-ups only cost a look at the budget.
        drop(self.released.wait_timeout(reserved, left.min(Duration::from_millis(100))));
        true
    }

    /// Tells waiting opens that leases ended or extents were freed.
    pub fn notify_released(&self) {
        self.released.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        // A plain counter: no panic can leave it half-updated.
        self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Bytes set aside for a decode until its pages are allocated (then they count
/// themselves).
#[derive(Debug)]
pub struct Reservation<'b> {
    budget: &'b Budget,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        *self.budget.lock() -= self.bytes;
        self.budget.notify_released();
    }
}

/// The default budget for a shared-memory directory, and a warning when the filesystem
/// is too small to be useful. A filesystem that reports no size (hugetlbfs without a
/// `size=` option) gets no budget of its own: its `ENOSPC` still ends a decode cleanly.
pub fn default_limit(stat: &StatVfs) -> (u64, Option<String>) {
    if stat.f_blocks == 0 {
        return (u64::MAX, None);
    }
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let total = stat.f_blocks.saturating_mul(stat.f_frsize);
    let warning = (total < SMALL_SHM).then(|| {
        format!(
            "the shared-memory filesystem holds only {} MiB; decoded recordings take 13 bytes \
             per event. In Docker, start the container with --shm-size=8g (the default is \
             64 MB); in Kubernetes, mount an emptyDir with medium: Memory at /dev/shm; or \
             point --shm-dir at a larger tmpfs",
            total >> 20
        )
    });
    ((free as f64 * DEFAULT_SHARE) as u64, warning)
}

/// Parses a size such as `512M`, `8G`, `1.5GiB` or `1000000` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit.to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("unknown unit in {text:?}; use K, M, G or T")),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("not a size: {text:?}"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("not a positive size: {text:?}"));
    }
    Ok((value * scale as f64) as u64)
}

/// A size as [`parse_size`] reads it, or `0` for none.
pub fn parse_size_or_zero(text: &str) -> Result<u64, String> {
    if text.trim() == "0" { Ok(0) } else { parse_size(text) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2 KB"), Ok(2048));
        assert!(parse_size("3X").is_err() && parse_size("-1").is_err() && parse_size("").is_err());
    }

    #[test]
    fn reservations_count_until_dropped() {
        let budget = Budget::new(100, Duration::ZERO);
        let first = budget.try_reserve(60, 20).unwrap();
        assert!(budget.try_reserve(30, 20).is_none(), "20 in use + 60 reserved + 30 > 100");
        drop(first);
        assert!(budget.try_reserve(80, 20).is_some());
    }

    #[test]
    fn zero_is_a_size_only_where_none_is_allowed() {
        assert_eq!(parse_size_or_zero("0"), Ok(0));
        assert_eq!(parse_size_or_zero("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn provisioning_gets_only_the_half_of_the_budget_decodes_leave() {
        let budget = Budget::new(1000, Duration::ZERO);
        assert!(budget.has_half_free_for(400, 100));
        assert!(!budget.has_half_free_for(401, 100));
        let _decoding = budget.try_reserve(300, 0).unwrap();
        assert!(!budget.has_half_free_for(400, 100), "reservations count");
    }

    #[test]
    fn the_small_shm_warning_is_one_line_of_words() {
        let stat = rustix::fs::statvfs("/dev/shm").unwrap();
        let small = StatVfs { f_blocks: 1, f_frsize: 64 << 20, ..stat };
        let warning = default_limit(&small).1.expect("a 64 MiB filesystem is small");
        assert!(warning.starts_with("the shared-memory filesystem holds only 64 MiB;"));
        assert!(!warning.contains('\\') && !warning.contains('\n') && !warning.contains("  "));
    }
}
