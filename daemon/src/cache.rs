//! Resident recordings, each decoded once however many clients ask for it at once.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use evshm::protocol::{ErrorCode, ErrorReply};
use evshm_formats::Geometry;

use crate::ingest::Published;

/// What identifies one version of a file: when any of it changes, the file is decoded
/// anew (a new generation) on its next open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileIdentity {
    /// The identity of the file `metadata` describes.
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        }
    }
}

/// A decoded recording and the version of the file it was decoded from.
#[derive(Debug)]
pub struct Resident {
    /// The segment and what it holds.
    pub published: Published,
    /// The file it came from.
    pub identity: FileIdentity,
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

/// What a decode is cached under: the canonical file, and the geometry the request gave
/// for a file that states none (each such geometry is its own decode).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The canonical path of the recording.
    pub file: PathBuf,
    /// The geometry given with the request, if any.
    pub geometry: Option<Geometry>,
}

/// The resident recordings.
#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
}

#[derive(Debug)]
enum Entry {
    Decoding(Arc<Slot>),
    Ready(Arc<Resident>),
}

type DecodeResult = Result<Arc<Resident>, ErrorReply>;

/// Where waiters find the result of a decode in progress.
#[derive(Debug, Default)]
struct Slot {
    result: Mutex<Option<DecodeResult>>,
    done: Condvar,
}

impl Slot {
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
    /// Returns the resident recording of `file` at version `identity`, decoding it with
    /// `decode` unless it is resident or being decoded by another open, whose result
    /// (success or failure) is then shared.
    pub fn open(
        &self,
        key: &Key,
        identity: FileIdentity,
        decode: impl FnOnce() -> Result<Resident, ErrorReply>,
    ) -> (DecodeResult, Outcome) {
        let slot = loop {
            let mut entries = self.lock();
            match entries.get(key) {
                Some(Entry::Ready(resident)) if resident.identity == identity => {
                    return (Ok(Arc::clone(resident)), Outcome::Hit);
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
                    let slot = Arc::new(Slot::default());
                    entries.insert(key.clone(), Entry::Decoding(Arc::clone(&slot)));
                    break slot;
                }
            }
        };
        let mut pending = Pending { cache: self, key, slot, finished: false };
        let result = decode().map(Arc::new);
        pending.finish(result.clone());
        (result, Outcome::Decoded)
    }

    /// Whether `file` at version `identity`, as its header describes it, is resident.
    pub fn is_resident(&self, file: &Path, identity: FileIdentity) -> bool {
        let key = Key { file: file.to_owned(), geometry: None };
        matches!(self.lock().get(&key), Some(Entry::Ready(r)) if r.identity == identity)
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
    slot: Arc<Slot>,
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
            let message = format!("decoding {} failed unexpectedly", self.key.file.display());
            self.finish(Err(ErrorReply::new(ErrorCode::Internal, message)));
        }
    }
}
