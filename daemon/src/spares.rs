//! Segments made ahead of need, so that a cold open writes into memory that is already
//! there.
//!
//! Making a segment costs more than filling it: on this project's reference machine, a
//! 436 MB segment takes ~100 ms to allocate (`fallocate`) and ~200 ms of page faults to map
//! and touch, while writing into pages already mapped takes ~20 ms (docs/PAGES.md). So
//! while the daemon is idle, a background thread keeps a few *spares*: segment files
//! sized for a whole chunk, allocated, and mapped with their page tables filled
//! (`MAP_POPULATE`). A decode of a chunk that fits one takes it, trims the file to the
//! chunk's exact size and writes its columns through the mapping: no allocation and no
//! fault on the open's path.
//!
//! Spares are segments like any other (created `O_EXCL`, mode 0440, named after the
//! instance, counted in the budget in bytes and descriptors), but never published until
//! filled. They are made only while the budget has room to spare (at most half of it, and
//! of the segment limit, in use) and no decode took one in the last half second, so that
//! provisioning never competes with the decodes it is meant to speed up. When a decode
//! needs room, spares go before any resident chunk is evicted.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::segment::{Segment, SegmentCreateError, ShmDir};

/// How long after a spare was taken, or after a failure to make one, no new one is made.
const QUIET: Duration = Duration::from_millis(500);

/// Bytes reserved beyond a chunk's columns for its stream's messages and padding.
const STREAM_OVERHEAD: u64 = 1 << 20;

/// A segment made ahead, mapped writable with its pages in place.
pub struct Spare {
    segment: Segment,
    map: memmap2::MmapMut,
}

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spare").field("segment", &self.segment.name()).finish()
    }
}

impl Spare {
    /// Makes one of `capacity` bytes in `shm`.
    fn make(shm: &Arc<ShmDir>, capacity: u64) -> Result<Spare, SegmentCreateError> {
        let segment = shm.create(capacity)?;
        let map = segment.map_populated().map_err(|source| SegmentCreateError::Io {
            path: shm.dir().join(segment.name()),
            source,
        })?;
        Ok(Spare { segment, map })
    }

    /// The segment, trimmed to hold exactly `len` bytes, and its writable mapping (of
    /// which only the first `len` bytes may be used).
    pub fn fit(self, len: u64) -> std::io::Result<(Segment, memmap2::MmapMut)> {
        let Spare { mut segment, map } = self;
        segment.shrink(len)?;
        Ok((segment, map))
    }
}

/// The spares of a daemon, and how many it keeps.
#[derive(Debug)]
pub struct Spares {
    shm: Arc<ShmDir>,
    /// Bytes of each spare: the largest chunk's event table.
    capacity: u64,
    /// Spares kept ready.
    target: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    ready: Vec<Spare>,
    /// When a decode last took a spare, or making one last failed.
    busy: Option<Instant>,
    closed: bool,
}

impl Spares {
    /// Spares of `shm` for chunks of at most `chunk_events` events and one step of
    /// `step` bytes, as many as `provision` bytes hold (none if it holds less than one).
    pub fn new(shm: Arc<ShmDir>, chunk_events: u64, step: u64, provision: u64) -> Spares {
        // The most events one step of input may add to a full chunk: EVT3's 12-event
        // vectors in 2-byte words.
        let events = chunk_events.saturating_add(step.saturating_mul(6));
        let capacity = shm.footprint(events.saturating_mul(13).saturating_add(STREAM_OVERHEAD));
        let target = usize::try_from(provision / capacity).unwrap_or(usize::MAX);
        Spares { shm, capacity, target, state: Mutex::default(), changed: Condvar::new() }
    }

    /// A spare for an event table of `len` bytes, if one is ready and `len` uses at least
    /// half of it (smaller tables are cheap to make, and would waste it).
    pub fn take(&self, len: u64) -> Option<Spare> {
        if len > self.capacity || len < self.capacity / 2 {
            return None;
        }
        let mut state = self.lock();
        let spare = state.ready.pop()?;
        state.busy = Some(Instant::now());
        Some(spare)
    }

    /// Drops one spare, to make room for a decode; its bytes, or `None` if there was none.
    pub fn release_one(&self) -> Option<u64> {
        let spare = self.lock().ready.pop()?;
        let bytes = self.shm.footprint(spare.segment.len());
        drop(spare);
        Some(bytes)
    }

    /// Spares ready, and their bytes.
    pub fn provisioned(&self) -> (usize, u64) {
        let ready = self.lock().ready.len();
        (ready, ready as u64 * self.shm.footprint(self.capacity))
    }

    /// Drops every spare and makes no more: part of a shutdown.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.ready.clear();
        self.changed.notify_all();
    }

    /// Keeps spares ready while `room` says the budget has room for one more (and while
    /// the owner lives): the provisioning thread's loop.
    pub fn provision(this: Weak<Spares>, room: impl Fn(u64) -> bool) {
        loop {
            let Some(spares) = this.upgrade() else { return };
            let Some(capacity) = spares.next_to_make(&room) else { return };
            match Spare::make(&spares.shm, capacity) {
                Ok(spare) => {
                    let mut state = spares.lock();
                    if state.closed {
                        return;
                    }
                    state.ready.push(spare);
                    log::debug!("{} spare segments ready", state.ready.len());
                }
                Err(e) => {
                    log::info!("cannot make a spare segment now: {e}");
                    spares.lock().busy = Some(Instant::now());
                }
            }
        }
    }

    /// Waits until a spare should be made, and returns its size; `None` once closed.
    fn next_to_make(&self, room: impl Fn(u64) -> bool) -> Option<u64> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            let quiet = state.busy.is_none_or(|at| at.elapsed() >= QUIET);
            if state.ready.len() < self.target && quiet && room(self.capacity) {
                return Some(self.capacity);
            }
            // Woken by takes and closing; the budget's room is looked at again each time.
            state = self
                .changed
                .wait_timeout(state, QUIET)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A list of spares and an instant: no panic leaves them half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::InstanceId;
    use crate::testing::TempDir;

    fn spares(dir: &TempDir, provision: u64) -> Arc<Spares> {
        let shm = ShmDir::new(&dir.0, &InstanceId::random().unwrap(), None, false);
        Arc::new(Spares::new(shm, 10_000, 8 << 10, provision))
    }

    fn provision_until(spares: &Arc<Spares>, ready: usize) {
        let weak = Arc::downgrade(spares);
        std::thread::spawn(move || Spares::provision(weak, |_| true));
        let deadline = Instant::now() + Duration::from_secs(10);
        while spares.provisioned().0 < ready {
            assert!(Instant::now() < deadline, "spares were not made");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn spares_are_made_ahead_taken_for_tables_that_fit_and_trimmed() {
        let dir = TempDir::new("spares");
        let capacity = spares(&dir, 0).capacity;
        let spares = spares(&dir, 2 * capacity + capacity / 2);
        assert_eq!(spares.target, 2, "as many whole spares as the provision holds");
        provision_until(&spares, 2);
        assert_eq!(spares.provisioned(), (2, 2 * capacity));
        assert!(spares.take(capacity / 2 - 1).is_none(), "too small to use one");
        assert!(spares.take(capacity + 1).is_none(), "too large");
        let len = capacity - 4096;
        let (segment, mut map) = spares.take(len).unwrap().fit(len).unwrap();
        assert_eq!(segment.len(), len);
        let file = dir.0.join(segment.name());
        assert_eq!(std::fs::metadata(&file).unwrap().len(), len, "the file is trimmed");
        map[..len as usize].fill(7);
        drop(map);
        assert!(std::fs::read(&file).unwrap().iter().all(|&b| b == 7));
        assert_eq!(spares.provisioned().0, 1);
        assert_eq!(spares.release_one(), Some(capacity));
        assert_eq!(spares.release_one(), None);
        spares.close();
        drop(segment);
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0, "every file unlinked");
    }

    #[test]
    fn none_are_made_without_room_in_the_budget() {
        let dir = TempDir::new("spares-full");
        let spares = spares(&dir, 1 << 30);
        let weak = Arc::downgrade(&spares);
        let provisioner = std::thread::spawn(move || Spares::provision(weak, |_| false));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(spares.provisioned().0, 0);
        spares.close();
        provisioner.join().unwrap();
    }
}
