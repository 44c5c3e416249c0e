//! Resident chunks of recordings, each decoded once however many clients ask for it at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use evshm_formats::Geometry;

use crate::arena::{Arenas, Extent};
use crate::budget::Budget;
use crate::file::FileIdentity;
use crate::ingest::{DecodedChunk, IngestError};

/// A decoded chunk of a recording and the version of the file it was decoded from.
#[derive(Debug)]
pub struct Resident {
    /// The extent and what it holds.
    pub decoded: DecodedChunk,
    /// The file it came from.
    pub identity: FileIdentity,
    /// When it was last opened, in [`Cache`] ticks: eviction goes least recent first.
    last_used: AtomicU64,
}

impl Resident {
    /// A chunk just decoded from the file at `identity`.
    pub fn new(decoded: DecodedChunk, identity: FileIdentity) -> Self {
        Self { decoded, identity, last_used: AtomicU64::new(0) }
    }

    /// Whether it may be served: its arena was not found changed (see
    /// [`Arena::check_intact`](crate::arena::Arena::check_intact)).
    pub fn is_servable(&self) -> bool {
        self.decoded.extent.arena().is_servable()
    }

    /// Bytes of its extent.
    pub fn bytes(&self) -> u64 {
        self.decoded.extent.len()
    }
}

/// How an open was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This open decoded the recording.
    Decoded,
    /// Another open was decoding it; this one waited for its result.
    Waited,
    /// It was resident already.
    Hit,
}

/// What a decode is cached under: the canonical file, the geometry the request gave for a
/// file that states none (each such geometry is its own decode), and the chunk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The canonical path of the recording.
    pub file: PathBuf,
    /// The geometry given with the request, if any.
    pub geometry: Option<Geometry>,
    /// Position of the chunk in the recording.
    pub chunk: usize,
}

/// The resident chunks.
#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
    /// A clock that advances on every open, for least-recently-used eviction.
    ticks: AtomicU64,
}

#[derive(Debug)]
enum Entry {
    Decoding(Arc<PendingDecode>),
    Ready(Arc<Resident>),
}

/// A decode's outcome, shared by every request that waited for it.
pub type DecodeResult = Result<Arc<Resident>, Arc<IngestError>>;

/// Where waiters find the result of a decode in progress.
#[derive(Debug, Default)]
struct PendingDecode {
    result: Mutex<Option<DecodeResult>>,
    done: Condvar,
}

impl PendingDecode {
    fn wait(&self) -> DecodeResult {
        let mut result = self.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(result) = result.as_ref() {
                return result.clone();
            }
            result = self.done.wait(result).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Cache {
    /// Returns the resident chunk `key` of the file at version `identity`, decoding it with
    /// `decode` unless it is resident or being decoded by another open, whose result
    /// (success or failure) is then shared.
    pub fn open(
        &self,
        key: &Key,
        identity: FileIdentity,
        decode: impl FnOnce() -> Result<Resident, IngestError>,
    ) -> (DecodeResult, Outcome) {
        let slot = loop {
            let mut entries = self.lock();
            match entries.get(key) {
                Some(Entry::Ready(resident)) if resident.identity == identity => {
                    if resident.is_servable() {
                        self.touch(resident);
                        return (Ok(Arc::clone(resident)), Outcome::Hit);
                    }
                    // Its arena was changed by a process of the daemon's uid: never
                    // served again (leases keep it until released), decoded anew below.
                    let slot = Arc::new(PendingDecode::default());
                    entries.insert(key.clone(), Entry::Decoding(Arc::clone(&slot)));
                    break slot;
                }
                Some(Entry::Decoding(slot)) => {
                    let slot = Arc::clone(slot);
                    drop(entries);
                    match slot.wait() {
                        Ok(resident) if resident.identity != identity => continue,
                        result => return (result, Outcome::Waited),
                    }
                }
                // Absent, or an older generation: leases keep that one alive until released.
                _ => {
                    let slot = Arc::new(PendingDecode::default());
                    entries.insert(key.clone(), Entry::Decoding(Arc::clone(&slot)));
                    break slot;
                }
            }
        };
        let mut pending = Pending { cache: self, key, slot, finished: false };
        let result = decode().map(Arc::new).map_err(Arc::new);
        if let Ok(resident) = &result {
            self.touch(resident);
        }
        pending.finish(result.clone());
        (result, Outcome::Decoded)
    }

    fn touch(&self, resident: &Resident) {
        let now = self.ticks.fetch_add(1, Ordering::Relaxed);
        resident.last_used.store(now, Ordering::Relaxed);
    }

    /// Bytes of the resident chunks no client holds.
    pub fn evictable_bytes(&self) -> u64 {
        let entries = self.lock();
        (entries.values())
            .filter_map(|entry| match entry {
                Entry::Ready(r) if Arc::strong_count(r) == 1 => Some(r.bytes()),
                _ => None,
            })
            .sum()
    }

    /// Evicts the least recently used chunk no client holds; its size, or `None` if
    /// every resident chunk is leased.
    pub fn evict_lru(&self) -> Option<u64> {
        let evicted = {
            let mut entries = self.lock();
            // Only the cache holds an unleased recording's `Arc`; a new lease could only
            // clone it under this lock.
            let key = (entries.iter())
                .filter_map(|(key, entry)| match entry {
                    Entry::Ready(r) if Arc::strong_count(r) == 1 => Some((key, r)),
                    _ => None,
                })
                .min_by_key(|(_, r)| r.last_used.load(Ordering::Relaxed))
                .map(|(key, _)| key.clone())?;
            entries.remove(&key)
        };
        // Dropping the last `Arc` frees the extent, outside the lock.
        match evicted {
            Some(Entry::Ready(resident)) => Some(resident.bytes()),
            _ => None,
        }
    }

    /// Evicts every resident chunk no client holds, at once (the `evict` request); the
    /// size of each.
    pub fn evict_unleased(&self) -> Vec<u64> {
        let evicted: Vec<Entry> = {
            let mut entries = self.lock();
            // As in `evict_lru`: a chunk only the cache holds cannot gain a lease while
            // the lock is held.
            let unleased = |_: &Key, entry: &mut Entry| matches!(entry, Entry::Ready(r) if Arc::strong_count(r) == 1);
            entries.extract_if(unleased).map(|(_, entry)| entry).collect()
        };
        // Dropping the last `Arc`s frees the extents, outside the lock.
        (evicted.iter())
            .filter_map(|entry| match entry {
                Entry::Ready(resident) => Some(resident.bytes()),
                Entry::Decoding(_) => None,
            })
            .collect()
    }

    /// An extent of `len` bytes in `arenas`, its pages allocated, within `budget`:
    /// provisioned pages elsewhere go back to the system first when the budget has no
    /// room for the extent's new pages, then unleased chunks are evicted (least recently
    /// used first, each passed to `evicted`), then the open waits up to `wait` for
    /// releases.
    pub fn place(
        &self,
        len: u64,
        arenas: &Arc<Arenas>,
        budget: &Budget,
        wait: std::time::Duration,
        mut evicted: impl FnMut(u64),
    ) -> Result<Extent, IngestError> {
        let started = Instant::now();
        let deadline = started + wait;
        loop {
            let mut over = None;
            if let Some(extent) = arenas.reserve(len)? {
                let extra = extent.unbacked();
                loop {
                    let in_use = arenas.usage().bytes_backed;
                    if let Some(_reservation) = budget.try_reserve(extra, in_use) {
                        // Once allocated, the pages count themselves.
                        extent.back()?;
                        return Ok(extent);
                    }
                    // Provisioned pages outside the extent (which holds its own).
                    let excess = (in_use + extra).saturating_sub(budget.limit());
                    if extra > budget.limit() || arenas.give_back(excess, 0) == 0 {
                        over = Some((extra, in_use));
                        break;
                    }
                }
            }
            if let Some(bytes) = self.evict_lru() {
                evicted(bytes);
                continue;
            }
            if !budget.wait_for_room(deadline) {
                let waited = started.elapsed();
                return Err(match over {
                    Some((needed, in_use)) => {
                        IngestError::OverBudget { needed, limit: budget.limit(), in_use, waited }
                    }
                    None => IngestError::NoRun { needed: len, waited },
                });
            }
        }
    }

    /// Whether chunk `key` of the file at version `identity` is resident.
    pub fn is_resident(&self, key: &Key, identity: FileIdentity) -> bool {
        matches!(self.lock().get(key), Some(Entry::Ready(r)) if r.identity == identity)
    }

    /// Whether chunk `key` is resident at version `identity` or being decoded (of some
    /// version: the decode finds out).
    pub fn is_resident_or_decoding(&self, key: &Key, identity: FileIdentity) -> bool {
        match self.lock().get(key) {
            Some(Entry::Ready(r)) => r.identity == identity,
            Some(Entry::Decoding(_)) => true,
            None => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // Entries are replaced whole, so a panic cannot leave one half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A decode in progress: publishes its result to the cache and the waiters, and if the
/// decode panics, tells the waiters so instead of leaving them blocked.
struct Pending<'c> {
    cache: &'c Cache,
    key: &'c Key,
    slot: Arc<PendingDecode>,
    finished: bool,
}

impl Pending<'_> {
    fn finish(&mut self, result: DecodeResult) {
        self.finished = true;
        let mut entries = self.cache.lock();
        match &result {
            Ok(resident) => entries.insert(self.key.clone(), Entry::Ready(Arc::clone(resident))),
            Err(_) => entries.remove(self.key),
        };
        drop(entries);
        *self.slot.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        self.slot.done.notify_all();
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let path = self.key.file.clone();
            self.finish(Err(Arc::new(IngestError::Aborted { path })));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::instance::InstanceId;
    use crate::testing::{TempDir, decoded_chunk};

    fn key(chunk: usize) -> Key {
        Key { file: "/recordings/a.raw".into(), geometry: None, chunk }
    }

    fn identity(dir: &TempDir, len: usize) -> FileIdentity {
        let file = dir.0.join(format!("version-{len}"));
        std::fs::write(&file, vec![0; len]).unwrap();
        FileIdentity::of(&std::fs::metadata(&file).unwrap())
    }

    fn arenas(dir: &TempDir) -> Arc<Arenas> {
        Arenas::new(&dir.0, &InstanceId::random().unwrap(), None, false, 1 << 26, u64::MAX)
    }

    /// Chunk `chunk` of the file at `version` from `cache`, decoded (100 events) unless
    /// resident.
    fn resident(
        cache: &Cache,
        dir: &TempDir,
        arenas: &Arc<Arenas>,
        chunk: usize,
        version: FileIdentity,
    ) -> Arc<Resident> {
        let decode = || Ok(Resident::new(decoded_chunk(dir, arenas, 100), version));
        cache.open(&key(chunk), version, decode).0.unwrap()
    }

    #[test]
    fn provisioned_pages_go_back_before_any_resident_chunk_is_evicted() {
        let dir = TempDir::new("cache-provisioned");
        let arenas = arenas(&dir);
        let (cache, v1) = (Cache::default(), identity(&dir, 1));
        let resident =
            cache.open(&key(0), v1, || Ok(Resident::new(decoded_chunk(&dir, &arenas, 100), v1)));
        let chunk = resident.0.as_ref().unwrap().bytes();
        drop(resident);
        let page = rustix::param::page_size() as u64;
        arenas.provision(64 * page).unwrap();
        let first = arenas.reserve(16 * page).unwrap().unwrap();
        let second = arenas.reserve(16 * page).unwrap().unwrap();
        drop(first);
        // Allocated: the chunk and 64 pages, 16 of them in use, which is the budget. An
        // extent of 40 pages goes where 32 are provisioned and needs 8 more: 8 of the 16
        // provisioned pages elsewhere go back, and nothing is evicted.
        let budget = Budget::new(chunk + 64 * page, Duration::ZERO);
        let mut evictions = 0;
        let extent = cache.place(40 * page, &arenas, &budget, Duration::ZERO, |_| evictions += 1);
        let extent = extent.unwrap();
        assert_eq!((extent.offset(), evictions), (second.offset() + 16 * page, 0));
        assert!(cache.is_resident(&key(0), v1), "provisioned pages went first");
        assert_eq!(arenas.usage().bytes_provisioned, 8 * page);
        drop(second);
        assert!(arenas.usage().bytes_backed <= budget.limit());
    }

    #[test]
    fn concurrent_opens_decode_once_and_share_a_failure() {
        let dir = TempDir::new("cache");
        let arenas = arenas(&dir);
        let (cache, v1) = (Cache::default(), identity(&dir, 1));
        let decodes = AtomicUsize::new(0);
        let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
            let open = || {
                cache
                    .open(&key(0), v1, || {
                        decodes.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50));
                        Ok(Resident::new(decoded_chunk(&dir, &arenas, 100), v1))
                    })
                    .1
            };
            let threads: Vec<_> = (0..4).map(|_| scope.spawn(open)).collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(decodes.load(Ordering::Relaxed), 1, "decoded once for four opens");
        assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Decoded).count(), 1);
        assert!(cache.is_resident(&key(0), v1));
        assert_eq!(cache.open(&key(0), v1, || unreachable!()).1, Outcome::Hit);

        let failed = cache.open(&key(1), v1, || Err(IngestError::Aborted { path: "x".into() }));
        assert!(matches!(failed.0.as_ref().map_err(|e| &**e), Err(IngestError::Aborted { .. })));
        assert!(!cache.is_resident_or_decoding(&key(1), v1), "a failure is not kept");

        let v2 = identity(&dir, 2);
        let newer =
            cache.open(&key(0), v2, || Ok(Resident::new(decoded_chunk(&dir, &arenas, 10), v2)));
        assert_eq!(newer.1, Outcome::Decoded, "a new file version is decoded anew");
    }

    #[test]
    fn eviction_takes_the_least_recently_used_unleased_chunk() {
        let dir = TempDir::new("cache-evict");
        let arenas = arenas(&dir);
        let (cache, v1) = (Cache::default(), identity(&dir, 1));
        let open = |chunk| resident(&cache, &dir, &arenas, chunk, v1);
        let leased = open(0);
        drop(open(1));
        drop(open(2));
        drop(open(1));
        assert_eq!(cache.evictable_bytes(), 2 * leased.bytes());
        assert_eq!(cache.evict_lru(), Some(leased.bytes()));
        assert!(!cache.is_resident(&key(2), v1), "chunk 2 was used least recently");
        assert!(cache.evict_lru().is_some());
        assert_eq!(cache.evict_lru(), None, "the leased chunk stays");
        assert!(cache.is_resident(&key(0), v1));
    }

    #[test]
    fn evicting_everything_unleased_keeps_the_leased_chunks() {
        let dir = TempDir::new("cache-evict-all");
        let arenas = arenas(&dir);
        let (cache, v1) = (Cache::default(), identity(&dir, 1));
        let open = |chunk| resident(&cache, &dir, &arenas, chunk, v1);
        let leased = open(0);
        let unleased = open(1);
        let offsets = [&leased, &unleased].map(|r| r.decoded.extent.offset());
        drop(unleased);
        drop(open(2));
        assert_eq!(cache.evict_unleased(), vec![leased.bytes(); 2], "chunks 1 and 2");
        assert!(cache.is_resident(&key(0), v1) && !cache.is_resident(&key(1), v1));
        let reused = open(1);
        assert_eq!(reused.decoded.extent.offset(), offsets[1], "the evicted extent is reused");
        drop(reused);
        assert_eq!(cache.evict_unleased().len(), 1);
        assert_eq!(cache.evict_unleased(), Vec::<u64>::new());
    }
}
