//! Read-only mappings of evshmd's arenas, one per arena per process, and the streams of
//! chunks as slices of them.
//!
//! Contract: an arena is a shared-memory file of fixed size that evshmd never grows or
//! shrinks (in sealed mode the kernel enforces that for everyone, and a passed arena
//! without the seals is refused). A client maps each arena whole and read-only the first
//! time a reply names it, keeps the mapping in a process-wide table under the arena's
//! name (unique for the machine's boot), and unmaps it once evshmd says it is gone, or
//! the connection that named it is closed, and no buffer of it is left: a warm open maps
//! nothing. The mappings survive `fork` (a child
//! inherits them; it opens its own connection and leases).
//!
//! An extent of an arena holds one chunk's Arrow IPC stream; evshmd allocates its pages
//! before filling it (so a full shared-memory filesystem fails in the daemon, never as a
//! SIGBUS here) and never writes it while a lease holds it. Every buffer handed out
//! carries the lease (a mapping's `keep`), so that the daemon keeps the extent until the
//! last buffer sliced from it is dropped: after that it may reuse the bytes.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_buffer::Buffer;
use evshm_protocol::{ArenaInfo, ExtentInfo};
use rustix::fs::SealFlags;

/// Why an arena could not be mapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// Opening, inspecting or mapping the file failed.
    #[error("cannot map arena {path}: {cause}")]
    Io {
        /// The arena file.
        path: PathBuf,
        /// The OS error (in the message, so not a `source` that error chains would print
        /// again).
        cause: std::io::Error,
    },
    /// An arena passed as a descriptor lacks the seals that keep anyone but evshmd from
    /// writing or resizing it.
    #[error("arena {name} was passed without the seals against growing, shrinking and writing")]
    NotSealed {
        /// The arena's name.
        name: String,
    },
    /// The file's size is not what the daemon said: it is not the arena that was
    /// published (or it was tampered with), so it is not mapped.
    #[error("arena {path} is {actual} bytes long, not the {expected} evshmd published")]
    SizeMismatch {
        /// The arena file.
        path: PathBuf,
        /// Size in the daemon's reply.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// A reply names an arena that is neither mapped, nor given by path, nor passed.
    #[error("the reply names arena {name}, which has no path and whose descriptor was not passed")]
    Unreachable {
        /// The arena's name.
        name: String,
    },
}

/// A read-only mapping of a whole arena.
#[derive(Debug)]
pub struct ArenaMap {
    map: memmap2::Mmap,
}

impl ArenaMap {
    /// The arena's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// The process's mappings, by arena name.
static MAPPED: Mutex<Option<HashMap<String, Arc<ArenaMap>>>> = Mutex::new(None);

fn mapped() -> MutexGuard<'static, Option<HashMap<String, Arc<ArenaMap>>>> {
    // A table of `Arc`s, each insert whole: no panic leaves it half-updated.
    MAPPED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The mapping of `arena`, from the process's table, or made now: from its path, or from
/// `fd` when the reply passed it (which is then checked for its seals). A passed
/// descriptor of an arena mapped already is closed.
pub(crate) fn arena(info: &ArenaInfo, fd: Option<OwnedFd>) -> Result<Arc<ArenaMap>, MapError> {
    if let Some(found) = mapped().get_or_insert_default().get(&info.name) {
        return Ok(Arc::clone(found));
    }
    let map = match (&info.path, fd) {
        (_, Some(fd)) => map_sealed(fd, &info.name, info.size)?,
        (Some(path), None) => {
            // std opens with O_CLOEXEC; read-only, so the mapping cannot be writable either.
            let file =
                File::open(path).map_err(|cause| MapError::Io { path: path.clone(), cause })?;
            map_file(&file, path, info.size)?
        }
        (None, None) => return Err(MapError::Unreachable { name: info.name.clone() }),
    };
    let map = Arc::new(map);
    let mut table = mapped();
    // Another thread may have mapped it meanwhile: keep one.
    let kept = table.get_or_insert_default().entry(info.name.clone()).or_insert(map);
    Ok(Arc::clone(kept))
}

/// Forgets the mappings of arenas evshmd dropped: each is unmapped once no buffer of it
/// is left.
pub(crate) fn forget(gone: &[String]) {
    if let Some(table) = mapped().as_mut() {
        for name in gone {
            table.remove(name);
        }
    }
}

/// How many arenas this process has mapped now.
pub fn mapped_arenas() -> usize {
    mapped().as_ref().map_or(0, HashMap::len)
}

/// The stream `extent` of `arena` as an Arrow buffer, with `keep` dropped only when the
/// last buffer sliced from it is.
pub(crate) fn extent_buffer<K: Send + Sync + 'static>(
    arena: &Arc<ArenaMap>,
    extent: &ExtentInfo,
    keep: K,
) -> Result<Buffer, MapError> {
    let len = arena.map.len() as u64;
    let (start, end) = (extent.offset, extent.offset.saturating_add(extent.size));
    if end > len || extent.size == 0 {
        return Err(MapError::SizeMismatch {
            path: PathBuf::from(format!("arena {} of the reply", extent.arena)),
            expected: end,
            actual: len,
        });
    }
    let owner =
        Extent { arena: Arc::clone(arena), range: start as usize..end as usize, _keep: keep };
    Ok(Buffer::from(bytes::Bytes::from_owner(owner)))
}

fn map_sealed(fd: OwnedFd, name: &str, size: u64) -> Result<ArenaMap, MapError> {
    let sealed = rustix::fs::fcntl_get_seals(&fd).is_ok_and(|seals| {
        seals.contains(SealFlags::GROW | SealFlags::SHRINK)
            && seals.intersects(SealFlags::WRITE | SealFlags::FUTURE_WRITE)
    });
    if !sealed {
        return Err(MapError::NotSealed { name: name.to_owned() });
    }
    map_file(&File::from(fd), Path::new(name), size)
}

fn map_file(file: &File, path: &Path, expected: u64) -> Result<ArenaMap, MapError> {
    let io = |cause| MapError::Io { path: path.to_owned(), cause };
    let actual = file.metadata().map_err(io)?.len();
    // Arenas are made at their size and never resized: another size is another file.
    if actual != expected || expected == 0 {
        return Err(MapError::SizeMismatch { path: path.to_owned(), expected, actual });
    }
    // SAFETY: the map is read-only and exactly the file's length (checked above). evshmd
    // never resizes an arena (module contract; seals enforce it for a passed memfd) and
    // writes an extent only while no lease holds it, and clients read an extent only
    // under a lease (every buffer carries it): the bytes do not change under the `&[u8]`
    // views Arrow takes of them.
    // No reservation (hugetlbfs would reserve every huge page of the arena): only
    // extents whose pages evshmd allocated are read.
    let map =
        unsafe { memmap2::MmapOptions::new().len(actual as usize).no_reserve_swap().map(file) }
            .map_err(io)?;
    Ok(ArenaMap { map })
}

/// A run of an arena's mapping and what must live as long as it.
struct Extent<K> {
    arena: Arc<ArenaMap>,
    range: std::ops::Range<usize>,
    _keep: K,
}

impl<K> AsRef<[u8]> for Extent<K> {
    fn as_ref(&self) -> &[u8] {
        &self.arena.map[self.range.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, path: &Path, size: u64) -> ArenaInfo {
        ArenaInfo { name: name.into(), path: Some(path.into()), size, passed: false }
    }

    #[test]
    fn an_arena_is_mapped_once_and_refused_at_another_size() {
        let path = std::env::temp_dir().join(format!("evshm-arena-test-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        let name = format!("test-{}", std::process::id());
        let wrong = arena(&info(&name, &path, 11), None);
        assert!(matches!(wrong, Err(MapError::SizeMismatch { actual: 10, .. })));
        let first = arena(&info(&name, &path, 10), None).unwrap();
        std::fs::remove_file(&path).unwrap();
        let again = arena(&info(&name, &path, 10), None).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "mapped once, kept by name");
        let extent = ExtentInfo { arena: 0, offset: 2, size: 3 };
        assert_eq!(extent_buffer(&first, &extent, ()).unwrap().as_slice(), b"234");
        let past = ExtentInfo { arena: 0, offset: 8, size: 3 };
        assert!(extent_buffer(&first, &past, ()).is_err());
        forget(std::slice::from_ref(&name));
        assert!(matches!(arena(&info(&name, &path, 10), None), Err(MapError::Io { .. })));
        assert_eq!(extent_buffer(&first, &extent, ()).unwrap().as_slice(), b"234", "still mapped");
    }
}
