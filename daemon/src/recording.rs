//! What the daemon knows of a recording before decoding any of it: its format, geometry
//! and chunk index, built once per version of the file and shared by every request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use evshm_formats::{Chunk, Detected};

use crate::cache::FileIdentity;

/// A recording's chunk index and what detection found.
#[derive(Debug)]
pub struct RecordingIndex {
    /// The version of the file it describes.
    pub identity: FileIdentity,
    /// Format, geometry and where the event data starts.
    pub detected: Detected,
    /// The chunks, in file order: at least one.
    pub chunks: Vec<Chunk>,
}

impl RecordingIndex {
    /// Each chunk's upper bound on time, for choosing the chunks of a window.
    pub fn time_bounds(&self) -> Vec<i64> {
        self.chunks.iter().map(|c| c.time_bound).collect()
    }
}

/// The indexes of the recordings opened so far, one per file, replaced when the file
/// changes.
#[derive(Debug, Default)]
pub struct Indexes {
    entries: Mutex<HashMap<PathBuf, Arc<Slot>>>,
}

/// One file's index, built by the first request that needs it while the others wait.
#[derive(Debug)]
struct Slot {
    identity: FileIdentity,
    index: Mutex<Option<Arc<RecordingIndex>>>,
}

impl Indexes {
    /// The index of `file` at version `identity`, built with `build` unless another
    /// request built it already (or is building it: then this one waits). A failed build
    /// is not kept: the next request tries again.
    pub fn get<E>(
        &self,
        file: &Path,
        identity: FileIdentity,
        build: impl FnOnce() -> Result<RecordingIndex, E>,
    ) -> Result<Arc<RecordingIndex>, E> {
        let slot = {
            let mut entries = lock(&self.entries);
            match entries.get(file) {
                Some(slot) if slot.identity == identity => Arc::clone(slot),
                _ => {
                    let slot = Arc::new(Slot { identity, index: Mutex::new(None) });
                    entries.insert(file.to_owned(), Arc::clone(&slot));
                    slot
                }
            }
        };
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

    fn identity(len: u64) -> FileIdentity {
        let dir = std::env::temp_dir();
        let file = tempfile_with_len(&dir, len);
        FileIdentity::of(&std::fs::metadata(&file).unwrap())
    }

    fn tempfile_with_len(dir: &Path, len: u64) -> PathBuf {
        let path = dir.join(format!("evshmd-index-test-{}-{len}", std::process::id()));
        std::fs::write(&path, vec![0u8; len as usize]).unwrap();
        path
    }

    fn index(identity: FileIdentity) -> RecordingIndex {
        let text = b"1 2 3 1\n";
        let detected = evshm_formats::detect(text, Some("txt")).unwrap();
        RecordingIndex { identity, detected, chunks: Vec::new() }
    }

    #[test]
    fn built_once_per_version_and_failures_are_retried() {
        let indexes = Indexes::default();
        let file = Path::new("/recordings/a.raw");
        let (v1, v2) = (identity(1), identity(2));
        let mut builds = 0;
        let failed: Result<_, &str> = indexes.get(file, v1, || Err("unreadable"));
        assert!(failed.is_err());
        for _ in 0..3 {
            indexes
                .get(file, v1, || {
                    builds += 1;
                    Ok::<_, ()>(index(v1))
                })
                .unwrap();
        }
        assert_eq!(builds, 1, "built again after a failure, then kept");
        let newer = indexes.get(file, v2, || Ok::<_, ()>(index(v2))).unwrap();
        assert_eq!(newer.identity, v2, "a changed file gets a new index");
    }
}
