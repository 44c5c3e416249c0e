//! Shared-memory segments: creation, filling, ownership and removal.
//!
//! Contract with readers (see also `evshm::map_segment`):
//! - a segment is created `O_EXCL` under an unpredictable name with mode 0440, so no
//!   client can squat its name beforehand or open it for writing afterwards;
//! - its pages are allocated (`fallocate`) before it is filled, so a full filesystem is
//!   an error here and never a SIGBUS in a reader;
//! - it is published only once complete, and never written, truncated or shrunk after;
//! - this process unlinks every segment it created, when the last reference to it goes
//!   and at shutdown. Readers' mappings stay valid after the unlink.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{FallocateFlags, Mode, OFlags};
use rustix::io::Errno;

/// How every segment name starts: the version of the segment content and naming, so that
/// different versions never mistake each other's segments; then the creator's pid.
pub(crate) const NAME_PREFIX: &str = "evshm-v1-";

/// Why a segment could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentCreateError {
    /// The filesystem has no room for the segment.
    #[error("no room for a {len}-byte segment in {dir}; free memory there or make it larger")]
    Full {
        /// The shared-memory directory.
        dir: PathBuf,
        /// Bytes asked for.
        len: u64,
    },
    /// The daemon is shutting down and creates nothing more.
    #[error("evshmd is shutting down")]
    ShuttingDown,
    /// Any other OS error.
    #[error("cannot create segment {path}: {source}")]
    Io {
        /// The segment path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The directory segments live in (a tmpfs such as `/dev/shm`), and the registry of the
/// segments this process created there.
#[derive(Debug)]
pub struct ShmDir {
    dir: PathBuf,
    prefix: String,
    /// The group segments are given, so that its members can read them.
    group: Option<u32>,
    state: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    /// Live segments by name, with their sizes.
    live: HashMap<String, u64>,
    closed: bool,
}

impl ShmDir {
    /// Segments in `dir`, named `evshm-v1-<pid>-<random>`, owned by `group` if given.
    pub fn new(dir: &Path, group: Option<u32>) -> Arc<ShmDir> {
        let prefix = format!("{NAME_PREFIX}{}-", std::process::id());
        Arc::new(ShmDir { dir: dir.to_owned(), prefix, group, state: Mutex::default() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name prefix of this process's segments.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Number and total bytes of the live segments.
    pub fn usage(&self) -> (u64, u64) {
        let state = self.registry();
        (state.live.len() as u64, state.live.values().sum())
    }

    /// Creates a segment of exactly `len` bytes with all its pages allocated.
    pub fn create(self: &Arc<Self>, len: u64) -> Result<Segment, SegmentCreateError> {
        let mut random = [0u8; 16];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| self.io_error(&self.dir, e))?;
        let name = format!("{}{:032x}", self.prefix, u128::from_le_bytes(random));
        let path = self.dir.join(&name);
        let file = {
            let mut state = self.registry();
            if state.closed {
                return Err(SegmentCreateError::ShuttingDown);
            }
            let flags =
                OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
            let fd = rustix::fs::open(&path, flags, Mode::from_raw_mode(0o440))
                .map_err(|e| self.io_error(&path, e))?;
            state.live.insert(name.clone(), len);
            File::from(fd)
        };
        // From here on, dropping `segment` unlinks the file.
        let segment = Segment { dir: Arc::clone(self), name, path, len, file };
        if let Some(gid) = self.group {
            rustix::fs::fchown(&segment.file, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| self.io_error(&segment.path, e))?;
        }
        segment.allocate()?;
        Ok(segment)
    }

    /// Unlinks every live segment and refuses to create more: the last act of a
    /// shutdown.
    pub fn close(&self) -> usize {
        let mut state = self.registry();
        state.closed = true;
        let names: Vec<String> = state.live.drain().map(|(name, _)| name).collect();
        for name in &names {
            if let Err(e) = std::fs::remove_file(self.dir.join(name)) {
                log::warn!("cannot remove segment {name}: {e}");
            }
        }
        names.len()
    }

    fn remove(&self, name: &str) {
        let mut state = self.registry();
        if state.live.remove(name).is_some()
            && let Err(e) = std::fs::remove_file(self.dir.join(name))
        {
            log::warn!("cannot remove segment {name}: {e}");
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // The registry holds plain data that no panic can leave half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io_error(&self, path: &Path, errno: Errno) -> SegmentCreateError {
        SegmentCreateError::Io { path: path.to_owned(), source: errno.into() }
    }
}

/// A segment this process created. Dropping it unlinks the file.
#[derive(Debug)]
pub struct Segment {
    dir: Arc<ShmDir>,
    name: String,
    path: PathBuf,
    len: u64,
    file: File,
}

impl Segment {
    /// The segment's name (its file name in the directory).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full path readers map.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the segment has no bytes (never true of a published segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maps the segment writable, to fill it before publishing.
    pub fn map_mut(&self) -> std::io::Result<memmap2::MmapMut> {
        // SAFETY: the file was created by this process with O_EXCL and mode 0440, so no
        // other process can open it for writing or truncate it, and its pages are
        // allocated, so no access within `len` faults.
        unsafe { memmap2::MmapOptions::new().len(self.len as usize).map_mut(&self.file) }
    }

    /// Sizes the file and allocates every page of it.
    fn allocate(&self) -> Result<(), SegmentCreateError> {
        let full = || SegmentCreateError::Full { dir: self.dir.dir.clone(), len: self.len };
        let io = |e: Errno| self.dir.io_error(&self.path, e);
        rustix::fs::ftruncate(self.file.as_fd(), self.len).map_err(|e| match e {
            Errno::NOSPC | Errno::FBIG => full(),
            other => io(other),
        })?;
        match rustix::fs::fallocate(self.file.as_fd(), FallocateFlags::empty(), 0, self.len) {
            Ok(()) => Ok(()),
            Err(Errno::NOSPC) => Err(full()),
            // Filesystems without fallocate get their pages by writing zeros, which fails
            // just as cleanly when there is no room.
            Err(Errno::OPNOTSUPP) => self.write_zeros().map_err(|e| match e.raw_os_error() {
                Some(code) if code == Errno::NOSPC.raw_os_error() => full(),
                _ => SegmentCreateError::Io { path: self.path.clone(), source: e },
            }),
            Err(other) => Err(io(other)),
        }
    }

    fn write_zeros(&self) -> std::io::Result<()> {
        let zeros = vec![0u8; 1 << 20];
        let mut file = &self.file;
        let mut left = self.len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        Ok(())
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.dir.remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("evshm-seg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn created_read_only_for_others_and_unlinked_on_drop() {
        let dir = temp_dir("drop");
        let shm = ShmDir::new(&dir, None);
        let segment = shm.create(4096).unwrap();
        let meta = std::fs::metadata(segment.path()).unwrap();
        assert_eq!(meta.len(), 4096);
        assert_eq!(meta.permissions().mode() & 0o777, 0o440);
        assert!(segment.name().starts_with(shm.prefix()));
        segment.map_mut().unwrap()[4095] = 7;
        assert_eq!(shm.usage(), (1, 4096));
        let path = segment.path().to_owned();
        drop(segment);
        assert!(!path.exists());
        assert_eq!(shm.usage(), (0, 0));
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn close_unlinks_everything_and_refuses_more() {
        let dir = temp_dir("close");
        let shm = ShmDir::new(&dir, None);
        let a = shm.create(10).unwrap();
        let b = shm.create(20).unwrap();
        assert_ne!(a.name(), b.name());
        assert_eq!(shm.close(), 2);
        assert!(!a.path().exists() && !b.path().exists());
        assert!(matches!(shm.create(1), Err(SegmentCreateError::ShuttingDown)));
        drop((a, b));
        std::fs::remove_dir(&dir).unwrap();
    }
}
