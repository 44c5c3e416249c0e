//! What `list` shows: every recording under the roots, its format and whether its first
//! chunk is resident.

use crate::cache::Key;
use crate::file::RecordingFile;
use crate::state::Daemon;

/// A recording under the roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its name: its path relative to its root, as clients give it.
    pub name: String,
    /// Its format's name.
    pub format: &'static str,
    /// The file's size in bytes.
    pub size: u64,
    /// Whether its first chunk is resident.
    pub decoded: bool,
}

/// The recordings under the daemon's roots (files whose content is recognised), sorted by
/// name.
pub fn list(daemon: &Daemon) -> Vec<Listed> {
    (daemon.roots.files().into_iter())
        .filter_map(|(name, file)| {
            let opened = RecordingFile::open(&file).ok()?;
            let format = opened.detect().ok()?.format.name();
            let key = Key { file, geometry: None, chunk: 0 };
            let decoded = daemon.cache.is_resident(&key, opened.identity());
            Some(Listed { name, format, size: opened.size(), decoded })
        })
        .collect()
}
