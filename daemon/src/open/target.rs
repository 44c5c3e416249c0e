//! One version of one recording as a request sees it, and getting its chunks resident:
//! decoding them into the cache, several at once when a request needs several, and ahead
//! of a reader that moves forward.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evshm_formats::{Chunk, Detected, Geometry};

use super::OpenError;
use crate::cache::{DecodeResult, Key, Outcome, Resident};
use crate::file::FileIdentity;
use crate::ingest::{IngestError, chunk_extent, chunk_layouts, ingest_chunk};
use crate::recording::RecordingIndex;
use crate::state::Daemon;
use crate::stats::Stats;

/// A fetched chunk, or why it could not be had, and how it was served.
pub type Fetched = (DecodeResult, Outcome);

/// One version of one recording, as a request sees it: everything needed to decode any
/// of its chunks, owned, so that a read-ahead thread can take a copy.
#[derive(Debug, Clone)]
pub struct Target {
    /// The daemon.
    pub daemon: Arc<Daemon>,
    /// The canonical path.
    pub file: PathBuf,
    /// The recording's name, as clients give it.
    pub name: String,
    /// The geometry the request gave, if any.
    pub geometry: Option<Geometry>,
    /// The file's version.
    pub identity: FileIdentity,
    /// Its chunk index.
    pub recording: Arc<RecordingIndex>,
    /// Format and geometry, with the request's geometry applied.
    pub detected: Detected,
}

impl Target {
    fn key(&self, chunk: usize) -> Key {
        Key { file: self.file.clone(), geometry: self.geometry, chunk }
    }

    /// Whether chunk `chunk` is resident.
    pub fn is_resident(&self, chunk: usize) -> bool {
        self.daemon.cache.is_resident(&self.key(chunk), self.identity)
    }

    /// The upper bound on time of chunk `chunk`, or `None` past the last chunk; indexes
    /// further into the file as needed.
    pub fn bound(&self, chunk: usize) -> Result<Option<i64>, OpenError> {
        let indexed = |bytes| self.count_indexed(bytes);
        (self.recording.bound(chunk, indexed)).map_err(|e| OpenError::ingest(&self.name, e))
    }

    /// Chunk `chunk` of the index, which the caller knows to exist.
    fn chunk(&self, chunk: usize) -> Result<Chunk, IngestError> {
        match self.recording.chunk(chunk, |bytes| self.count_indexed(bytes))? {
            Some(found) => Ok(found),
            None => Err(IngestError::NoChunk { path: self.file.clone(), chunk }),
        }
    }

    fn count_indexed(&self, bytes: u64) {
        self.daemon.stats.bytes_indexed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes of the extents of the chunks in `range`, when all are decoded.
    pub fn bytes_needed(&self, range: Range<usize>) -> Result<u64, OpenError> {
        let mut needed = 0;
        for chunk in range {
            let chunk = self.chunk(chunk).map_err(|e| OpenError::ingest(&self.name, e))?;
            needed += self.extent_bytes(&chunk);
        }
        Ok(needed)
    }

    /// Bytes of the extent `chunk` takes once decoded (0 if its tables cannot be laid
    /// out: the decode reports that).
    fn extent_bytes(&self, chunk: &Chunk) -> u64 {
        match chunk_layouts(&self.detected, &self.name, chunk) {
            Ok((events, triggers)) => {
                self.daemon.arenas.footprint(chunk_extent(&events, &triggers).0)
            }
            Err(_) => 0,
        }
    }

    /// Chunk `chunk`, decoding it unless it is resident (or being decoded: then this
    /// waits for that decode), waiting up to `wait` for room in the memory budget.
    pub fn fetch(&self, chunk: usize, wait: Duration) -> Fetched {
        let daemon = &self.daemon;
        let decode = || {
            let started = Instant::now();
            let place = |len: u64| {
                let evicted = |bytes| {
                    Stats::bump(&daemon.stats.evictions);
                    daemon.stats.bytes_evicted.fetch_add(bytes, Ordering::Relaxed);
                    log::info!("evicted an unleased chunk ({bytes} bytes) to make room");
                };
                let extent =
                    daemon.cache.place(len, &daemon.arenas, &daemon.budget, wait, evicted)?;
                Ok((extent, ()))
            };
            let index = self.chunk(chunk)?;
            let decoded =
                ingest_chunk(self.recording.file(), &self.name, &self.detected, &index, place)?;
            daemon.provisioner.used();
            log::info!(
                "decoded {} chunk {} ({}, {} events, {} triggers) into arena {} at {} ({} bytes) \
                 in {:.1} ms",
                self.name,
                chunk + 1,
                self.detected.format,
                decoded.events.rows,
                decoded.triggers.rows,
                decoded.extent.arena().name(),
                decoded.extent.offset(),
                decoded.extent.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
            if !decoded.report.is_clean() {
                log::warn!("{} chunk {}: {}", self.name, chunk + 1, decoded.report);
            }
            Ok(Resident::new(decoded, self.identity))
        };
        let fetched = daemon.cache.open(&self.key(chunk), self.identity, decode);
        if fetched.1 == Outcome::Decoded && fetched.0.is_ok() {
            Stats::bump(&daemon.stats.decodes);
        }
        fetched
    }

    /// Fetches the chunks of `range` in parallel, decoding those not resident on up to
    /// `threads` threads, when more than one needs decoding (otherwise it fetches nothing:
    /// the caller's own walk costs the same); stops starting new decodes after the first
    /// failure. Entry `i` holds chunk `range.start + i`, or `None` if it was not fetched.
    pub fn fetch_all(&self, range: Range<usize>, threads: usize) -> Vec<Option<Fetched>> {
        let wait = self.daemon.budget.wait();
        let cold = range.clone().filter(|&chunk| !self.is_resident(chunk)).count();
        if cold <= 1 || threads <= 1 {
            return Vec::new();
        }
        let results = Mutex::new((0..range.len()).map(|_| None).collect::<Vec<_>>());
        let next = AtomicUsize::new(range.start);
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..threads.min(cold) {
                scope.spawn(|| {
                    loop {
                        let chunk = next.fetch_add(1, Ordering::Relaxed);
                        if chunk >= range.end || failed.load(Ordering::Relaxed) {
                            return;
                        }
                        let fetched = self.fetch(chunk, wait);
                        failed.fetch_or(fetched.0.is_err(), Ordering::Relaxed);
                        let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                        results[chunk - range.start] = Some(fetched);
                    }
                });
            }
        });
        results.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Every chunk of the recording, resident or decoded now, on `threads` threads that
    /// start decoding as soon as the index pass (run by whichever needs the next chunk)
    /// has found the first chunk: the pass and the decodes overlap. Fails with
    /// `OverBudget` as soon as the chunks indexed so far need more than the budget, before
    /// the pass ends; stops starting new decodes after the first failure (whose chunk's
    /// entry holds it). Entry `i` holds chunk `i`.
    pub fn fetch_whole(&self, threads: usize) -> Result<Vec<Fetched>, OpenError> {
        let daemon = &self.daemon;
        let (wait, limit) = (daemon.budget.wait(), daemon.budget.limit());
        let results = Mutex::new(Vec::<Option<Fetched>>::new());
        let (next, end) = (AtomicUsize::new(0), AtomicUsize::new(usize::MAX));
        let (needed, stop) = (AtomicU64::new(0), AtomicBool::new(false));
        let worker = || -> Result<(), OpenError> {
            loop {
                let chunk = next.fetch_add(1, Ordering::Relaxed);
                if chunk >= end.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let indexed = |bytes| self.count_indexed(bytes);
                let found = self.recording.chunk(chunk, indexed);
                let Some(index) = found.map_err(|e| OpenError::ingest(&self.name, e))? else {
                    end.fetch_min(chunk, Ordering::Relaxed);
                    return Ok(());
                };
                let bytes = self.extent_bytes(&index);
                if needed.fetch_add(bytes, Ordering::Relaxed) + bytes > limit {
                    stop.store(true, Ordering::Relaxed);
                    return Err(self.over_budget(limit));
                }
                let fetched = self.fetch(chunk, wait);
                stop.fetch_or(fetched.0.is_err(), Ordering::Relaxed);
                let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                if results.len() <= chunk {
                    results.resize_with(chunk + 1, || None);
                }
                results[chunk] = Some(fetched);
            }
        };
        let outcomes: Vec<Result<(), OpenError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1)).map(|_| scope.spawn(worker)).collect();
            workers.into_iter().map(|w| w.join().expect("a decode thread panicked")).collect()
        });
        outcomes.into_iter().collect::<Result<(), _>>()?;
        let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        let end = end.load(Ordering::Relaxed).min(results.len());
        // A failed decode stops the others: its entry holds the failure; chunks after it
        // that no thread reached are fetched by the caller's walk (and fail alike).
        let mut fetched = Vec::with_capacity(end);
        for (chunk, entry) in results.into_iter().take(end).enumerate() {
            fetched.push(entry.unwrap_or_else(|| self.fetch(chunk, wait)));
        }
        Ok(fetched)
    }

    /// The error of a whole-file open that needs more than the budget `limit`, with the
    /// bytes it needs (the index pass taken to the end for it).
    fn over_budget(&self, limit: u64) -> OpenError {
        let chunks = self.recording.chunks_if_complete().unwrap_or(0);
        let all = match self.bound(usize::MAX) {
            Ok(_) => self.recording.chunks_if_complete().unwrap_or(chunks),
            Err(e) => return e,
        };
        match self.bytes_needed(0..all) {
            Ok(needed) => OpenError::OverBudget {
                name: self.name.clone(),
                window: None,
                chunks: 0..all,
                needed,
                limit,
            },
            Err(e) => e,
        }
    }

    /// Decodes the chunks of `range` that are not resident, in the background, with
    /// whatever room the budget has now: a read-ahead never waits and never fails a
    /// request.
    pub fn read_ahead(&self, range: Range<usize>) {
        let cache = &self.daemon.cache;
        let end = self.recording.chunks_if_complete().unwrap_or(usize::MAX);
        let range = range.start..range.end.min(end);
        // A reader asking for several windows of one chunk must not start a thread each.
        if range.clone().all(|chunk| cache.is_resident_or_decoding(&self.key(chunk), self.identity))
        {
            return;
        }
        let target = self.clone();
        let spawned = std::thread::Builder::new().name("evshmd-ahead".into()).spawn(move || {
            for chunk in range {
                if !matches!(target.bound(chunk), Ok(Some(_))) {
                    return;
                }
                if let (Err(e), _) = target.fetch(chunk, Duration::ZERO) {
                    log::debug!("read-ahead of {} chunk {} stopped: {e}", target.name, chunk + 1);
                    return;
                }
            }
        });
        if let Err(e) = spawned {
            log::debug!("cannot start a read-ahead thread: {e}");
        }
    }
}
