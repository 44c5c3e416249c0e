//! Shared-memory segments: creation, filling, ownership and removal.
//!
//! Contract with readers (see also `evshm::map_segment`):
//! - a segment is created `O_EXCL` under an unpredictable name with mode 0440, so no
//!   client of another uid can squat its name beforehand or open it for writing
//!   afterwards (the daemon's own uid and root could chmod it: named mode trusts them);
//! - its pages are allocated (`fallocate`) before it is filled, so a full filesystem is
//!   an error here and never a SIGBUS in a reader;
//! - it is published only once complete, and never written, truncated or shrunk after;
//! - this process unlinks every segment it created, when the last reference to it goes
//!   and at shutdown. Readers' mappings stay valid after the unlink.
//!
//! In sealed mode (`--sealed`) a segment is instead an anonymous memfd, sealed against
//! writing, growing, shrinking and further sealing once it is filled, and handed to each
//! client as a file descriptor with the `open` reply: no process, whatever its user (root
//! included), can then change what readers see, and there is no file to leak.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{FallocateFlags, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;

use crate::instance::InstanceId;

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
    /// Whether segments are sealed memfds rather than files in `dir`.
    sealed: bool,
    /// Files are sized in whole units of this many bytes: the huge-page size on a
    /// hugetlbfs mount (which refuses other sizes), else 1.
    unit: u64,
    state: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    /// Live segments by name, with their sizes.
    live: HashMap<String, u64>,
    closed: bool,
}

impl ShmDir {
    /// Segments in `dir`, named after the daemon's `instance` (`evshm-v2-<instance>-<random>`),
    /// owned by `group` if given; or, `sealed`, memfds of those names (whose pages still
    /// count against `dir`'s tmpfs when it is `/dev/shm`).
    pub fn new(dir: &Path, instance: &InstanceId, group: Option<u32>, sealed: bool) -> Arc<ShmDir> {
        let prefix = instance.segment_prefix();
        let state = Mutex::default();
        let unit = allocation_unit(dir, sealed);
        Arc::new(ShmDir { dir: dir.to_owned(), prefix, group, sealed, unit, state })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name prefix of this process's segments.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Number and total bytes (of memory, so whole huge pages on hugetlbfs) of the live
    /// segments.
    pub fn usage(&self) -> (u64, u64) {
        let state = self.registry();
        (state.live.len() as u64, state.live.values().sum())
    }

    /// Memory a segment of `len` bytes takes: whole allocation units.
    pub fn footprint(&self, len: u64) -> u64 {
        len.div_ceil(self.unit) * self.unit
    }

    /// Creates a segment of exactly `len` bytes with all its pages allocated.
    pub fn create(self: &Arc<Self>, len: u64) -> Result<Segment, SegmentCreateError> {
        let mut random = [0u8; 16];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| self.io_error(&self.dir, e))?;
        let name = format!("{}{:032x}", self.prefix, u128::from_le_bytes(random));
        let path = (!self.sealed).then(|| self.dir.join(&name));
        let file = {
            let mut state = self.registry();
            if state.closed {
                return Err(SegmentCreateError::ShuttingDown);
            }
            let fd = match &path {
                Some(path) => {
                    let flags = OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::RDWR
                        | OFlags::CLOEXEC
                        | OFlags::NOFOLLOW;
                    rustix::fs::open(path, flags, Mode::from_raw_mode(0o440))
                        .map_err(|e| self.io_error(path, e))?
                }
                None => {
                    rustix::fs::memfd_create(&name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                        .map_err(|e| self.io_error(Path::new(&name), e))?
                }
            };
            state.live.insert(name.clone(), self.footprint(len));
            File::from(fd)
        };
        // From here on, dropping `segment` unlinks the file.
        let segment = Segment { dir: Arc::clone(self), name, path, len, file, made: (0, 0, 0) };
        if let (Some(gid), Some(path)) = (self.group, &segment.path) {
            rustix::fs::fchown(&segment.file, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| self.io_error(path, e))?;
        }
        segment.allocate()?;
        let mut segment = segment;
        let made =
            rustix::fs::fstat(&segment.file).map_err(|e| self.io_error(segment.shown(), e))?;
        segment.made = (made.st_dev, made.st_ino, made.st_mode & 0o7777);
        Ok(segment)
    }

    /// Unlinks every live segment and refuses to create more: the last act of a
    /// shutdown.
    pub fn close(&self) -> usize {
        let mut state = self.registry();
        state.closed = true;
        let names: Vec<String> = state.live.drain().map(|(name, _)| name).collect();
        for name in names.iter().filter(|_| !self.sealed) {
            if let Err(e) = std::fs::remove_file(self.dir.join(name)) {
                log::warn!("cannot remove segment {name}: {e}");
            }
        }
        names.len()
    }

    fn remove(&self, name: &str) {
        let mut state = self.registry();
        if state.live.remove(name).is_some()
            && !self.sealed
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

/// The size unit of files in `dir`: the huge-page size on hugetlbfs, else 1 byte.
fn allocation_unit(dir: &Path, sealed: bool) -> u64 {
    const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
    match rustix::fs::statfs(dir) {
        Ok(fs) if !sealed && fs.f_type == HUGETLBFS_MAGIC => (fs.f_bsize as u64).max(1),
        _ => 1,
    }
}

/// A segment this process created. Dropping it unlinks the file (a memfd goes when the
/// last descriptor or mapping of it does).
#[derive(Debug)]
pub struct Segment {
    dir: Arc<ShmDir>,
    name: String,
    /// The file readers map; `None` for a sealed memfd.
    path: Option<PathBuf>,
    len: u64,
    file: File,
    /// Device, inode and permission bits (0440 less the umask) as made, to tell the file
    /// at its path from a replaced or `chmod`ed one.
    made: (u64, u64, u32),
}

impl Segment {
    /// The segment's name (its file name in the directory).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full path readers map; `None` for a sealed memfd, which is passed instead.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Seals a filled memfd against writing, growing, shrinking and further sealing; a
    /// no-op for a file segment. Needs every writable mapping of it gone.
    pub fn seal(&self) -> std::io::Result<()> {
        if self.path.is_none() {
            let seals = SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL;
            rustix::fs::fcntl_add_seals(&self.file, seals)?;
        }
        Ok(())
    }

    /// Whether readers mapping it by its path get what was published: the path still
    /// names this file, with the mode and at least the length it was made with. Only a process
    /// of the daemon's own uid (or root) can break that, by `chmod`, truncating or
    /// replacing the file; a segment found so is not served again. Sealed memfds cannot
    /// change and have no path: always intact.
    pub fn is_intact(&self) -> bool {
        let Some(path) = &self.path else { return true };
        // One call: the path's file must be the one made, with its mode and length.
        rustix::fs::stat(path).is_ok_and(|named| {
            (named.st_dev, named.st_ino, named.st_mode & 0o7777) == self.made
                && named.st_size as u64 >= self.len
        })
    }

    /// A new descriptor of the segment, to pass to a client.
    pub fn share(&self) -> std::io::Result<OwnedFd> {
        Ok(rustix::io::fcntl_dupfd_cloexec(&self.file, 0)?)
    }

    /// The path, or the memfd's name, for messages.
    fn shown(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(&self.name))
    }

    /// Size in bytes of the stream it holds (the file may be longer on hugetlbfs).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the segment has no bytes (never true of a published segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maps the segment writable, to fill it before publishing.
    pub fn map_mut(&self) -> std::io::Result<memmap2::MmapMut> {
        // SAFETY: the mapping is only written through, never read as `&[u8]` by anyone
        // else while it exists, and its pages are allocated, so no access within `len`
        // faults. What another process could do: a named segment was created by this
        // process with O_EXCL and mode 0440, so only the daemon's own uid or root could
        // chmod it and truncate it meanwhile (named mode trusts them: README); a memfd
        // (sealed mode) is anonymous and not shared with anyone until it is sealed.
        unsafe { memmap2::MmapOptions::new().len(self.len as usize).map_mut(&self.file) }
    }

    /// Maps the segment writable with every page table entry filled in now
    /// (`MAP_POPULATE`), so that writing it later faults nothing: a spare's mapping.
    pub fn map_populated(&self) -> std::io::Result<memmap2::MmapMut> {
        // SAFETY: as for `map_mut`: only this process writes the mapping, and every page
        // of `len` is allocated.
        unsafe { memmap2::MmapOptions::new().len(self.len as usize).populate().map_mut(&self.file) }
    }

    /// Trims an unpublished segment to hold `len` bytes (no more than it holds): a spare
    /// made for the largest chunk, fitted to the one it is taken for. Its pages beyond
    /// go back to the system.
    pub fn shrink(&mut self, len: u64) -> std::io::Result<()> {
        assert!(len <= self.len, "a segment only shrinks");
        let file_len = self.dir.footprint(len);
        rustix::fs::ftruncate(self.file.as_fd(), file_len)?;
        self.len = len;
        if let Some(size) = self.dir.registry().live.get_mut(&self.name) {
            *size = file_len;
        }
        Ok(())
    }

    /// Sizes the file (to whole allocation units: readers map only the first `len`
    /// bytes) and allocates every page of it.
    fn allocate(&self) -> Result<(), SegmentCreateError> {
        let full = || SegmentCreateError::Full { dir: self.dir.dir.clone(), len: self.len };
        let io = |e: Errno| self.dir.io_error(self.shown(), e);
        let file_len = self.dir.footprint(self.len);
        rustix::fs::ftruncate(self.file.as_fd(), file_len).map_err(|e| match e {
            Errno::NOSPC | Errno::FBIG => full(),
            other => io(other),
        })?;
        match rustix::fs::fallocate(self.file.as_fd(), FallocateFlags::empty(), 0, file_len) {
            Ok(()) => Ok(()),
            Err(Errno::NOSPC) => Err(full()),
            // Filesystems without fallocate get their pages by writing zeros, which fails
            // just as cleanly when there is no room.
            Err(Errno::OPNOTSUPP) => self.write_zeros().map_err(|e| match e.raw_os_error() {
                Some(code) if code == Errno::NOSPC.raw_os_error() => full(),
                _ => SegmentCreateError::Io { path: self.shown().to_owned(), source: e },
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

/// Reads of a published segment, for the daemon's own look at its columns.
impl crate::times::ReadAt for Segment {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
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
        let shm = ShmDir::new(&dir, &InstanceId::random().unwrap(), None, false);
        let segment = shm.create(4096).unwrap();
        let meta = std::fs::metadata(segment.path().unwrap()).unwrap();
        assert_eq!(meta.len(), 4096);
        assert_eq!(meta.permissions().mode() & 0o777, 0o440);
        assert!(segment.name().starts_with(shm.prefix()));
        segment.map_mut().unwrap()[4095] = 7;
        assert_eq!(shm.usage(), (1, 4096));
        let path = segment.path().unwrap().to_owned();
        drop(segment);
        assert!(!path.exists());
        assert_eq!(shm.usage(), (0, 0));
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn close_unlinks_everything_and_refuses_more() {
        let dir = temp_dir("close");
        let shm = ShmDir::new(&dir, &InstanceId::random().unwrap(), None, false);
        let a = shm.create(10).unwrap();
        let b = shm.create(20).unwrap();
        assert_ne!(a.name(), b.name());
        assert_eq!(shm.close(), 2);
        assert!(!a.path().unwrap().exists() && !b.path().unwrap().exists());
        assert!(matches!(shm.create(1), Err(SegmentCreateError::ShuttingDown)));
        drop((a, b));
        std::fs::remove_dir(&dir).unwrap();
    }
}

#[cfg(test)]
mod sealed_tests {
    use super::*;

    #[test]
    fn a_sealed_segment_refuses_every_change() {
        let shm = ShmDir::new(Path::new("/dev/shm"), &InstanceId::random().unwrap(), None, true);
        let segment = shm.create(8192).unwrap();
        assert!(segment.path().is_none());
        segment.map_mut().unwrap()[0] = 42;
        segment.seal().unwrap();
        let fd = segment.share().unwrap();
        assert_eq!(rustix::io::write(&fd, b"x"), Err(Errno::PERM));
        assert_eq!(rustix::fs::ftruncate(&fd, 0), Err(Errno::PERM));
        assert_eq!(rustix::fs::ftruncate(&fd, 1 << 20), Err(Errno::PERM));
        assert!(segment.map_mut().is_err(), "no writable shared mapping");
        assert!(rustix::fs::fcntl_add_seals(&fd, SealFlags::FUTURE_WRITE).is_err());
        let file = File::from(fd);
        // SAFETY: a read-only map of a sealed memfd that nobody can shrink.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        assert_eq!((map.len(), map[0]), (8192, 42));
    }
}
