//! The memory budget: how many bytes of segments may exist at once, and how many
//! segments (each holds a descriptor while it is cached, and descriptors are limited).
//!
//! A decode reserves its segments' exact size before creating them. When the segments
//! that exist plus those being made would exceed the budget, the cache evicts resident
//! recordings no client holds, least recently used first; if that is not enough, the
//! open waits (a bounded time) for clients to release leases, then fails with
//! `over_budget`. Leased segments are never evicted.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fs::StatVfs;

/// Share of the shared-memory filesystem's free space used when no budget is given.
const DEFAULT_SHARE: f64 = 0.75;
/// Below this size a shared-memory filesystem is too small for real recordings.
const SMALL_SHM: u64 = 256 << 20;

/// The budget, and the bytes and segments reserved by decodes in progress.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    segment_limit: u64,
    wait: Duration,
    reserved: Mutex<Usage>,
    released: Condvar,
}

/// Bytes and segments, existing or reserved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of segments.
    pub bytes: u64,
    /// Segments.
    pub segments: u64,
}

impl Budget {
    /// A budget of `limit` bytes and `segment_limit` segments; opens wait at most `wait`
    /// for room.
    pub fn new(limit: u64, segment_limit: u64, wait: Duration) -> Budget {
        let reserved = Mutex::new(Usage::default());
        Budget { limit, segment_limit, wait, reserved, released: Condvar::new() }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The most segments that may exist at once.
    pub fn segment_limit(&self) -> u64 {
        self.segment_limit
    }

    /// How long an open waits for room.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Reserves `needed` if `in_use` (existing segments) plus what is reserved leaves
    /// room for it, in bytes and in segments.
    pub fn try_reserve(&self, needed: Usage, in_use: Usage) -> Option<Reservation<'_>> {
        let mut reserved = self.lock();
        let bytes = in_use.bytes.saturating_add(reserved.bytes).saturating_add(needed.bytes);
        let segments = in_use.segments + reserved.segments + needed.segments;
        if bytes > self.limit || segments > self.segment_limit {
            return None;
        }
        reserved.bytes += needed.bytes;
        reserved.segments += needed.segments;
        Some(Reservation { budget: self, usage: needed })
    }

    /// Whether `extra` fits in the half of the budget, in bytes and in segments, that
    /// `in_use` (existing segments) and what is reserved leave: room for something made
    /// ahead of need (a spare), which may not crowd out decodes.
    pub fn has_half_free_for(&self, extra: Usage, in_use: Usage) -> bool {
        let reserved = *self.lock();
        let bytes = in_use.bytes.saturating_add(reserved.bytes).saturating_add(extra.bytes);
        let segments = in_use.segments + reserved.segments + extra.segments;
        bytes <= self.limit / 2 && segments <= self.segment_limit / 2
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

    /// Tells waiting opens that leases ended or segments went.
    pub fn notify_released(&self) {
        self.released.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Usage> {
        // Plain counters: no panic can leave them half-updated.
        self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Bytes and segments set aside for a decode until its segments exist (then they count
/// themselves).
#[derive(Debug)]
pub struct Reservation<'b> {
    budget: &'b Budget,
    usage: Usage,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut reserved = self.budget.lock();
        reserved.bytes -= self.usage.bytes;
        reserved.segments -= self.usage.segments;
        drop(reserved);
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

    fn usage(bytes: u64, segments: u64) -> Usage {
        Usage { bytes, segments }
    }

    #[test]
    fn reservations_count_until_dropped() {
        let budget = Budget::new(100, 10, Duration::ZERO);
        let first = budget.try_reserve(usage(60, 2), usage(20, 2)).unwrap();
        let more = budget.try_reserve(usage(30, 2), usage(20, 2));
        assert!(more.is_none(), "20 in use + 60 reserved + 30 > 100");
        drop(first);
        assert!(budget.try_reserve(usage(80, 2), usage(20, 2)).is_some());
    }

    #[test]
    fn zero_is_a_size_only_where_none_is_allowed() {
        assert_eq!(parse_size_or_zero("0"), Ok(0));
        assert_eq!(parse_size_or_zero("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn spares_get_only_the_half_of_the_budget_decodes_leave() {
        let budget = Budget::new(1000, 10, Duration::ZERO);
        assert!(budget.has_half_free_for(usage(400, 1), usage(100, 4)));
        assert!(!budget.has_half_free_for(usage(401, 1), usage(100, 4)), "bytes");
        assert!(!budget.has_half_free_for(usage(1, 2), usage(100, 4)), "segments");
        let _decoding = budget.try_reserve(usage(300, 0), usage(0, 0)).unwrap();
        assert!(!budget.has_half_free_for(usage(400, 1), usage(100, 4)), "reservations count");
    }

    #[test]
    fn segments_are_counted_like_bytes() {
        let budget = Budget::new(u64::MAX, 6, Duration::ZERO);
        let first = budget.try_reserve(usage(1, 2), usage(0, 2)).unwrap();
        assert!(budget.try_reserve(usage(1, 2), usage(0, 3)).is_none(), "3 + 2 + 2 > 6");
        drop(first);
        assert!(budget.try_reserve(usage(1, 2), usage(0, 4)).is_some(), "4 + 2 = 6");
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
