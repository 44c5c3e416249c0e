//! What the daemon knows of a recording before decoding any of it: its format, geometry
//! and chunk index, built once per version of the file and shared by every request.
//!
//! The index is built lazily, as far into the file as requests need: a window near the
//! start of a long recording is served after indexing only that far, and the index grows
//! as later windows are asked for (a whole-file open takes it to the end).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use evshm_formats::{Chunk, ChunkLimits, Detected, Indexer};

use crate::file::{FileIdentity, RecordingFile};
use crate::ingest::IngestError;

/// Bytes of event data indexed at a time, when a request needs more of the index.
const INDEX_STEP: u64 = 8 << 20;

/// A recording's chunk index, as far as it is built, and what detection found.
#[derive(Debug)]
pub struct RecordingIndex {
    /// Format, geometry and where the event data starts.
    pub detected: Detected,
    /// The file, open: every read of this version goes through it.
    file: Arc<RecordingFile>,
    /// The recording's name, as clients give it (for the log).
    name: String,
    progress: Mutex<Progress>,
    /// Told when a step of the index pass is done (or failed).
    stepped: Condvar,
}

/// How far the index is built.
#[derive(Debug)]
struct Progress {
    /// The chunks known so far, in file order.
    chunks: Vec<Chunk>,
    /// The index pass, until it reaches the end of the file; taken out while a request
    /// reads the next step (without the lock, so that others meanwhile look at the chunks
    /// known: a whole-file open decodes chunks while its index pass goes on).
    indexer: Option<Indexer>,
    /// Whether a request is reading the next step.
    stepping: bool,
    /// Bytes of event data fed to the pass.
    fed: u64,
}

impl RecordingIndex {
    /// The index of `file` (named `name` by clients), nothing of it built yet.
    pub fn new(
        detected: Detected,
        file: Arc<RecordingFile>,
        name: String,
        limits: ChunkLimits,
    ) -> Self {
        let indexer = Some(Indexer::new(detected.format, limits));
        let progress = Progress { chunks: Vec::new(), indexer, stepping: false, fed: 0 };
        let (progress, stepped) = (Mutex::new(progress), Condvar::new());
        Self { detected, file, name, progress, stepped }
    }

    /// Chunk `chunk`, or `None` past the last one, indexing further into the file as
    /// needed; `indexed` is told how many bytes that read.
    pub fn chunk(
        &self,
        chunk: usize,
        indexed: impl FnMut(u64),
    ) -> Result<Option<Chunk>, IngestError> {
        let progress = self.reach(chunk, indexed)?;
        Ok(progress.chunks.get(chunk).cloned())
    }

    /// The upper bound on time of chunk `chunk` (see [`Chunk::time_bound`]), or `None`
    /// past the last chunk, indexing further as needed.
    pub fn bound(
        &self,
        chunk: usize,
        indexed: impl FnMut(u64),
    ) -> Result<Option<i64>, IngestError> {
        let progress = self.reach(chunk, indexed)?;
        Ok(progress.chunks.get(chunk).map(|c| c.time_bound))
    }

    /// The file, open: what every decode of this version reads.
    pub fn file(&self) -> &RecordingFile {
        &self.file
    }

    /// How many chunks the recording has, if the index reached the end of the file.
    pub fn chunks_if_complete(&self) -> Option<usize> {
        let progress = lock(&self.progress);
        (progress.indexer.is_none() && !progress.stepping).then_some(progress.chunks.len())
    }

    /// Indexes until chunk `chunk` is known or the file ends. One request at a time reads
    /// the next step of the pass, without holding the lock; the others wait for it only if
    /// they need a chunk it has not reached.
    fn reach(
        &self,
        chunk: usize,
        mut indexed: impl FnMut(u64),
    ) -> Result<MutexGuard<'_, Progress>, IngestError> {
        let mut progress = lock(&self.progress);
        let started = Instant::now();
        let before = progress.fed;
        loop {
            if progress.chunks.len() > chunk {
                break;
            }
            if progress.stepping {
                progress = self.stepped.wait(progress).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let Some(mut pass) = progress.indexer.take() else { break };
            progress.stepping = true;
            let offset = self.detected.data_offset as u64 + progress.fed;
            drop(progress);
            let mut read = 0;
            let stepped = self.file.read_range(offset, INDEX_STEP, |bytes| {
                read += bytes.len() as u64;
                pass.feed(bytes);
            });
            progress = lock(&self.progress);
            progress.stepping = false;
            self.stepped.notify_all();
            progress.fed += read;
            indexed(read);
            if let Err(e) = stepped {
                // The pass keeps what it was fed before the failure: a later request goes
                // on from there.
                progress.indexer = Some(pass);
                return Err(e);
            }
            if read < INDEX_STEP {
                progress.chunks.extend(pass.finish());
            } else {
                progress.chunks.extend(pass.take_completed());
                progress.indexer = Some(pass);
            }
        }
        if progress.fed > before {
            let complete = if progress.indexer.is_none() { ", complete" } else { "" };
            log::info!(
                "indexed {} ({}, {} events in {} chunks) in {:.1} ms: bytes {}..{} of its events{complete}",
                self.name,
                self.detected.format,
                progress.chunks.iter().map(|c| c.events).sum::<u64>(),
                progress.chunks.len(),
                started.elapsed().as_secs_f64() * 1e3,
                before,
                progress.fed,
            );
        }
        Ok(progress)
    }
}

/// Most indexes kept at once. Each holds its file open (a descriptor, part of the
/// reserve `limits` keeps out of the connections' share); past this many
/// the least recently used is dropped, and built again, lazily, when next needed (its
/// chunks come out the same, so resident chunks stay valid).
const MOST_INDEXES: usize = 64;

/// The indexes of the recordings opened lately, one per file, replaced when the file
/// changes.
#[derive(Debug, Default)]
pub struct IndexCache {
    entries: Mutex<HashMap<PathBuf, Arc<IndexEntry>>>,
    /// A clock that advances on every use, for least-recently-used dropping.
    ticks: AtomicU64,
}

/// One file's index, built by the first request that needs it while the others wait.
#[derive(Debug)]
struct IndexEntry {
    identity: FileIdentity,
    index: Mutex<Option<Arc<RecordingIndex>>>,
    last_used: AtomicU64,
}

impl IndexCache {
    /// The index of `file` at version `identity`, built with `build` unless another
    /// request built it already (or is building it: then this one waits). A failed build
    /// is not kept: the next request tries again.
    pub fn get<E>(
        &self,
        file: &Path,
        identity: FileIdentity,
        build: impl FnOnce() -> Result<RecordingIndex, E>,
    ) -> Result<Arc<RecordingIndex>, E> {
        let now = self.ticks.fetch_add(1, Ordering::Relaxed);
        let slot = {
            let mut entries = lock(&self.entries);
            match entries.get(file) {
                Some(slot) if slot.identity == identity => Arc::clone(slot),
                _ => {
                    if entries.len() >= MOST_INDEXES && !entries.contains_key(file) {
                        let oldest = (entries.iter())
                            .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                            .map(|(path, _)| path.clone());
                        // Requests using it keep their `Arc`; its file closes after them.
                        oldest.map(|path| entries.remove(&path));
                    }
                    let index = Mutex::new(None);
                    let slot = Arc::new(IndexEntry { identity, index, last_used: 0.into() });
                    entries.insert(file.to_owned(), Arc::clone(&slot));
                    slot
                }
            }
        };
        slot.last_used.store(now, Ordering::Relaxed);
        let mut index = lock(&slot.index);
        if let Some(index) = index.as_ref() {
            return Ok(Arc::clone(index));
        }
        let built = Arc::new(build()?);
        *index = Some(Arc::clone(&built));
        Ok(built)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Values are replaced whole, so a panic cannot leave one half-written.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    /// A file of `len` bytes, open.
    fn open_file(dir: &TempDir, len: usize) -> Arc<RecordingFile> {
        let path = dir.0.join(format!("{len}.txt"));
        std::fs::write(&path, vec![b'0'; len]).unwrap();
        Arc::new(RecordingFile::open(&path).unwrap())
    }

    fn index(file: &Arc<RecordingFile>) -> RecordingIndex {
        let text = b"1 2 3 1\n";
        let detected = evshm_formats::detect(text, Some("txt")).unwrap();
        RecordingIndex::new(detected, Arc::clone(file), "nowhere".into(), ChunkLimits::events(10))
    }

    #[test]
    fn built_once_per_version_and_failures_are_retried() {
        let indexes = IndexCache::default();
        let file = Path::new("/recordings/a.raw");
        let dir = TempDir::new("index");
        let (f1, f2) = (open_file(&dir, 1), open_file(&dir, 2));
        let (v1, v2) = (f1.identity(), f2.identity());
        let mut builds = 0;
        let failed: Result<_, &str> = indexes.get(file, v1, || Err("unreadable"));
        assert!(failed.is_err());
        for _ in 0..3 {
            indexes
                .get(file, v1, || {
                    builds += 1;
                    Ok::<_, ()>(index(&f1))
                })
                .unwrap();
        }
        assert_eq!(builds, 1, "built again after a failure, then kept");
        let older = indexes.get(file, v1, || Ok::<_, ()>(index(&f1))).unwrap();
        let newer = indexes.get(file, v2, || Ok::<_, ()>(index(&f2))).unwrap();
        assert!(!Arc::ptr_eq(&older, &newer), "a changed file gets a new index");
    }

    #[test]
    fn at_most_so_many_indexes_hold_their_files_open() {
        let dir = TempDir::new("index-cap");
        let indexes = IndexCache::default();
        let f = open_file(&dir, 1);
        let first = Path::new("/recordings/first.raw");
        indexes.get(first, f.identity(), || Ok::<_, ()>(index(&f))).unwrap();
        for i in 0..MOST_INDEXES {
            let path = PathBuf::from(format!("/recordings/{i}.raw"));
            indexes.get(&path, f.identity(), || Ok::<_, ()>(index(&f))).unwrap();
        }
        assert_eq!(lock(&indexes.entries).len(), MOST_INDEXES);
        let mut rebuilt = false;
        indexes
            .get(first, f.identity(), || {
                rebuilt = true;
                Ok::<_, ()>(index(&f))
            })
            .unwrap();
        assert!(rebuilt, "the least recently used index was dropped, and is built again");
        assert_eq!(Arc::strong_count(&f), 1 + MOST_INDEXES, "the dropped ones let go of it");
    }
}
