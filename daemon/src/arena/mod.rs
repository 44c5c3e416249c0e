//! Arenas: the daemon's shared memory, a few large files each mapped once by evshmd and
//! once per client process, in which every chunk's tables lie as an [`Extent`].
//!
//! Contract with readers (see also `evshm::ArenaMap` and the Python `_arena` module):
//! - an arena is created `O_EXCL` under an unpredictable name with mode 0440 and sized
//!   once; it never grows or shrinks, so a client maps it whole once and keeps the
//!   mapping (a sealed arena is a memfd sealed against growing and shrinking, and against
//!   any new writable mapping: only evshmd's own mapping, made before sealing, writes it);
//! - an extent's pages are allocated (`fallocate`) before it is filled, so a full
//!   filesystem is an error here and never a SIGBUS; it is published only once complete
//!   and never written while any lease holds it;
//! - once no lease holds an extent and its chunk is evicted, its bytes may be reused for
//!   another chunk: clients read an extent only under a lease (both clients tie the lease
//!   to the buffers they hand out);
//! - free pages stay allocated and mapped in evshmd (provisioned), so the next decode
//!   writes into memory that costs no allocation and no page fault; they go back to the
//!   system (holes punched, or a whole free arena dropped) when the budget needs room for
//!   something else or the daemon has been idle (`--idle-release`);
//! - this process unlinks every arena it created when it is dropped and at shutdown.
//!   Readers' mappings stay valid after the unlink.

mod runs;

use std::fs::File;
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fs::{FallocateFlags, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;

use crate::instance::InstanceId;
use runs::Runs;

/// The size of an arena unless a table needs a larger one.
pub const ARENA_SIZE: u64 = 1 << 30;

/// Why memory could not be had in an arena.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArenaError {
    /// The filesystem has no room for the pages.
    #[error("no room for {len} bytes in {dir}; free memory there or make it larger")]
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
    #[error("cannot {what} arena {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The arena's path, or its memfd name.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The arenas of one daemon, in one shared-memory directory (a tmpfs such as `/dev/shm`,
/// or hugetlbfs), or memfds in sealed mode.
#[derive(Debug)]
pub struct Arenas {
    dir: PathBuf,
    prefix: String,
    /// The group arenas are given, so that its members can read them.
    group: Option<u32>,
    /// Whether arenas are sealed memfds rather than files in `dir`.
    sealed: bool,
    /// Extents are whole units of this many bytes: the page size, or the huge-page size
    /// on hugetlbfs (which refuses smaller).
    unit: u64,
    /// The size of a new arena (larger when one table needs more).
    arena_size: u64,
    /// Most bytes of arenas at once (address space, not memory: only pages in use or
    /// provisioned take memory, and the budget bounds those).
    most: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    arenas: Vec<Arc<Arena>>,
    closed: bool,
}

/// What the arenas hold, for `stats` and the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArenaUsage {
    /// Number of arenas.
    pub arenas: u64,
    /// Their total size.
    pub bytes_arenas: u64,
    /// Extents in use.
    pub extents: u64,
    /// Bytes of extents in use.
    pub bytes_in_use: u64,
    /// Free bytes.
    pub bytes_free: u64,
    /// Free bytes whose pages are allocated: ready for the next decodes.
    pub bytes_provisioned: u64,
    /// Bytes whose pages are allocated, in use or provisioned: the memory the arenas
    /// take, which the budget counts.
    pub bytes_backed: u64,
    /// The longest free run in one arena.
    pub largest_free: u64,
}

impl Arenas {
    /// Arenas in `dir`, named after the daemon's `instance` (`evshm-v2-<instance>-<random>`),
    /// owned by `group` if given, of `arena_size` bytes each (rounded to whole pages) and
    /// at most `most` bytes in all; or, `sealed`, memfds of those names (whose pages still
    /// count against `dir`'s tmpfs when it is `/dev/shm`).
    pub fn new(
        dir: &Path,
        instance: &InstanceId,
        group: Option<u32>,
        sealed: bool,
        arena_size: u64,
        most: u64,
    ) -> Arc<Arenas> {
        let unit = allocation_unit(dir, sealed);
        let arena_size = arena_size.max(unit).div_ceil(unit) * unit;
        Arc::new(Arenas {
            dir: dir.to_owned(),
            prefix: instance.arena_prefix(),
            group,
            sealed,
            unit,
            arena_size,
            most: most.max(arena_size),
            state: Mutex::default(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name prefix of this process's arenas.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether arenas are sealed memfds.
    pub fn sealed(&self) -> bool {
        self.sealed
    }

    /// Memory `len` bytes take in an extent: whole allocation units.
    pub fn footprint(&self, len: u64) -> u64 {
        len.max(1).div_ceil(self.unit) * self.unit
    }

    /// What the arenas hold now.
    pub fn usage(&self) -> ArenaUsage {
        let state = self.lock();
        let mut usage = ArenaUsage { arenas: state.arenas.len() as u64, ..ArenaUsage::default() };
        for arena in &state.arenas {
            let space = arena.space();
            usage.bytes_arenas += arena.size;
            usage.extents += space.extents;
            usage.bytes_in_use += arena.size - space.free.total();
            usage.bytes_free += space.free.total();
            usage.bytes_provisioned += space.provisioned();
            usage.bytes_backed += space.backed.total();
            usage.largest_free = usage.largest_free.max(space.free.longest());
        }
        usage
    }

    /// Takes `len` bytes (rounded up to whole units) of free space for a new extent,
    /// preferring space whose pages are allocated already, then the smallest run that
    /// fits; makes a new arena when none has room and the arenas may grow. `None` when
    /// no run fits: evicting chunks frees some. The extent's pages are not yet
    /// allocated: see [`Extent::unbacked`] and [`Extent::back`].
    pub fn reserve(self: &Arc<Self>, len: u64) -> Result<Option<Extent>, ArenaError> {
        let len = self.footprint(len);
        let mut state = self.lock();
        if state.closed {
            return Err(ArenaError::ShuttingDown);
        }
        // (unbacked bytes, run length, arena, start) of the best run.
        let mut best: Option<(u64, u64, usize, u64)> = None;
        for (i, arena) in state.arenas.iter().enumerate() {
            if arena.retired.load(Ordering::Relaxed) {
                continue;
            }
            let space = arena.space();
            for run in space.free.iter().filter(|run| run.end - run.start >= len) {
                let unbacked = len - space.backed.bytes_within(run.start..run.start + len);
                let candidate = (unbacked, run.end - run.start, i, run.start);
                if best.is_none_or(|b| (candidate.0, candidate.1) < (b.0, b.1)) {
                    best = Some(candidate);
                }
            }
        }
        let (arena, start) = match best {
            Some((_, _, i, start)) => (Arc::clone(&state.arenas[i]), start),
            None => match self.grow(&mut state, self.arena_size.max(len))? {
                Some(arena) => (arena, 0),
                None => return Ok(None),
            },
        };
        Ok(Some(Extent::take(arena, start..start + len)))
    }

    /// A new arena of `size` bytes, added to `state`; `None` when the arenas may not grow
    /// by that much (the first arena is always made).
    fn grow(&self, state: &mut State, size: u64) -> Result<Option<Arc<Arena>>, ArenaError> {
        let total: u64 = state.arenas.iter().map(|a| a.size).sum();
        if total + size > self.most && !state.arenas.is_empty() {
            return Ok(None);
        }
        let arena = Arc::new(self.create(size)?);
        state.arenas.push(Arc::clone(&arena));
        Ok(Some(arena))
    }

    /// Gives `want` bytes of free, allocated pages back to the system, beyond `keep`
    /// bytes left provisioned: holes punched in free runs (largest first), or in sealed
    /// mode (where seals forbid punching) whole arenas that hold no extent dropped. The
    /// bytes given back.
    pub fn give_back(&self, want: u64, keep: u64) -> u64 {
        let mut given = 0;
        let mut state = self.lock();
        let provisioned: u64 = state.arenas.iter().map(|a| a.space().provisioned()).sum();
        let mut spare = provisioned.saturating_sub(keep).min(want);
        if self.sealed {
            // Whole arenas that hold no extent, the last made first.
            let mut i = state.arenas.len();
            while i > 0 && spare > 0 {
                i -= 1;
                let (empty, held) = {
                    let space = state.arenas[i].space();
                    (space.extents == 0, space.provisioned())
                };
                if empty && held > 0 && held <= spare {
                    state.arenas.remove(i).dropped.store(true, Ordering::Relaxed);
                    given += held;
                    spare -= held;
                }
            }
            return given;
        }
        while spare > 0 {
            // The largest free allocated run in any arena.
            let Some((arena, run)) = (state.arenas.iter())
                .flat_map(|arena| {
                    let space = arena.space();
                    let runs: Vec<Range<u64>> =
                        space.free.iter().flat_map(|free| space.backed.within(free)).collect();
                    runs.into_iter().map(move |run| (Arc::clone(arena), run))
                })
                .max_by_key(|(_, run)| run.end - run.start)
            else {
                break;
            };
            let len = (run.end - run.start).min(spare.div_ceil(self.unit) * self.unit);
            let hole = run.end - len..run.end;
            if let Err(e) = arena.punch(hole.clone()) {
                log::warn!("cannot give back memory of arena {}: {e}", arena.name);
                break;
            }
            given += len;
            spare = spare.saturating_sub(len);
        }
        // Arenas beyond the first that hold nothing and no pages are dropped too: their
        // names go from clients' mappings.
        let empty = |a: &Arc<Arena>| a.space().extents == 0 && a.space().backed.is_empty();
        let mut first = true;
        state.arenas.retain(|arena| {
            let keep = std::mem::take(&mut first) || !empty(arena);
            if !keep {
                arena.dropped.store(true, Ordering::Relaxed);
            }
            keep
        });
        given
    }

    /// Allocates and maps up to `len` bytes of free pages that are not allocated yet, so
    /// that the next decodes write into them without allocating or faulting: the lowest
    /// free space first (a new arena if none is left and the arenas may grow). The bytes
    /// provisioned (0 when no space is left).
    pub fn provision(self: &Arc<Self>, len: u64) -> Result<u64, ArenaError> {
        let len = self.footprint(len);
        // Taken out of the free space while its pages are made, so no decode writes them
        // meanwhile, under the lock that `reserve` takes; given back free, and allocated.
        let extent = {
            let mut state = self.lock();
            if state.closed {
                return Err(ArenaError::ShuttingDown);
            }
            let found = state.arenas.iter().find_map(|arena| {
                if arena.retired.load(Ordering::Relaxed) {
                    return None;
                }
                let space = arena.space();
                let gap = space.free.iter().flat_map(|free| space.backed.gaps(free)).next()?;
                Some((Arc::clone(arena), gap.start..gap.end.min(gap.start + len)))
            });
            let (arena, range) = match found {
                Some(found) => found,
                None => match self.grow(&mut state, self.arena_size)? {
                    Some(arena) => (arena, 0..len.min(self.arena_size)),
                    None => return Ok(0),
                },
            };
            Extent::take(arena, range)
        };
        extent.back()?;
        extent.arena.populate(extent.range.clone());
        Ok(extent.range.end - extent.range.start)
    }

    /// Unlinks every arena and refuses to create more: the last act of a shutdown. The
    /// number of arenas.
    pub fn close(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        let arenas = std::mem::take(&mut state.arenas);
        for arena in &arenas {
            arena.dropped.store(true, Ordering::Relaxed);
            arena.unlink();
        }
        arenas.len()
    }

    /// Creates an arena of `size` bytes: a file of that size (no page allocated yet),
    /// mapped writable by this process; in sealed mode a memfd, sealed once mapped.
    fn create(&self, size: u64) -> Result<Arena, ArenaError> {
        let mut random = [0u8; 16];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| io_error("name", &self.dir, e))?;
        let name = format!("{}{:032x}", self.prefix, u128::from_le_bytes(random));
        let path = (!self.sealed).then(|| self.dir.join(&name));
        let shown = path.clone().unwrap_or_else(|| PathBuf::from(&name));
        let fd: OwnedFd = match &path {
            Some(path) => {
                let flags = OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::RDWR
                    | OFlags::CLOEXEC
                    | OFlags::NOFOLLOW;
                rustix::fs::open(path, flags, Mode::from_raw_mode(0o440))
                    .map_err(|e| io_error("create", path, e))?
            }
            None => {
                rustix::fs::memfd_create(&name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                    .map_err(|e| io_error("create", &shown, e))?
            }
        };
        let file = File::from(fd);
        // From here on a failure unlinks the file.
        let unlink = UnlinkOnFailure(path.as_deref());
        if let (Some(gid), Some(path)) = (self.group, &path) {
            rustix::fs::fchown(&file, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| io_error("give its group to", path, e))?;
        }
        rustix::fs::ftruncate(&file, size).map_err(|e| match e {
            Errno::NOSPC | Errno::FBIG => ArenaError::Full { dir: self.dir.clone(), len: size },
            other => io_error("size", &shown, other),
        })?;
        // A raw mapping: it is read and written only through `Extent`s, disjoint runs of
        // it, where pages are allocated (`Extent::back`), of a file this process just
        // created that never shrinks (no one else can open it for writing: mode 0440, or
        // a memfd sealed below before anyone else has it). No reservation for the whole
        // size (hugetlbfs would reserve every huge page of it): pages are allocated per
        // extent, by `fallocate`.
        let map = memmap2::MmapOptions::new()
            .len(size as usize)
            .no_reserve_swap()
            .map_raw(&file)
            .map_err(|e| ArenaError::Io { what: "map", path: shown.clone(), source: e })?;
        if self.sealed {
            let seals =
                SealFlags::GROW | SealFlags::SHRINK | SealFlags::FUTURE_WRITE | SealFlags::SEAL;
            rustix::fs::fcntl_add_seals(&file, seals).map_err(|e| io_error("seal", &shown, e))?;
        }
        let made = rustix::fs::fstat(&file).map_err(|e| io_error("inspect", &shown, e))?;
        std::mem::forget(unlink);
        let space = Space { free: Runs::of(0..size), backed: Runs::default(), extents: 0 };
        Ok(Arena {
            name,
            path,
            file,
            size,
            map,
            made: (made.st_dev, made.st_ino, made.st_mode & 0o7777),
            unit: self.unit,
            dir: self.dir.clone(),
            space: Mutex::new(space),
            retired: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A list of arenas and a flag: no panic leaves them half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes a file whose arena could not be made.
struct UnlinkOnFailure<'p>(Option<&'p Path>);

impl Drop for UnlinkOnFailure<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn io_error(what: &'static str, path: &Path, errno: Errno) -> ArenaError {
    ArenaError::Io { what, path: path.to_owned(), source: errno.into() }
}

/// The size unit of extents in `dir`: the huge-page size on hugetlbfs, else the page size.
fn allocation_unit(dir: &Path, sealed: bool) -> u64 {
    const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
    let page = rustix::param::page_size() as u64;
    match rustix::fs::statfs(dir) {
        Ok(fs) if !sealed && fs.f_type == HUGETLBFS_MAGIC => (fs.f_bsize as u64).max(page),
        _ => page,
    }
}

/// One arena: a shared-memory file of fixed size, mapped writable once by this process.
#[derive(Debug)]
pub struct Arena {
    name: String,
    /// The file readers map; `None` for a sealed memfd.
    path: Option<PathBuf>,
    file: File,
    size: u64,
    map: memmap2::MmapRaw,
    /// Device, inode and permission bits (0440 less the umask) as made, to tell the file
    /// at its path from a replaced or `chmod`ed one.
    made: (u64, u64, u32),
    unit: u64,
    dir: PathBuf,
    space: Mutex<Space>,
    /// Found changed by someone else: nothing new goes in, and nothing in it is served
    /// again.
    retired: AtomicBool,
    /// No longer one of the daemon's arenas (it goes when its last extent does).
    dropped: AtomicBool,
}

#[derive(Debug)]
struct Space {
    /// Runs no extent holds.
    free: Runs,
    /// Runs whose pages are allocated.
    backed: Runs,
    /// Extents in it.
    extents: u64,
}

impl Space {
    /// Free bytes whose pages are allocated.
    fn provisioned(&self) -> u64 {
        self.free.iter().map(|run| self.backed.bytes_within(run)).sum()
    }
}

impl Arena {
    /// The arena's name (its file name in the directory, or its memfd's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path readers map; `None` for a sealed memfd, which is passed instead.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Its size in bytes, which never changes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A new descriptor of the arena, to pass to a client.
    pub fn share(&self) -> std::io::Result<OwnedFd> {
        Ok(rustix::io::fcntl_dupfd_cloexec(&self.file, 0)?)
    }

    /// Whether it is still one of the daemon's arenas.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether what it holds may be served: it was not found changed.
    pub fn is_servable(&self) -> bool {
        !self.retired.load(Ordering::Relaxed)
    }

    /// Whether readers mapping it by its path get what was published: the path still
    /// names this file, with the mode and the size it was made with. Only a process of
    /// the daemon's own uid (or root) can break that, by `chmod`, truncating or replacing
    /// the file; an arena found so is retired: nothing in it is served again, and
    /// nothing new goes in. Sealed memfds have no path and cannot be resized: always
    /// intact.
    pub fn check_intact(&self) -> bool {
        let Some(path) = &self.path else { return true };
        let intact = rustix::fs::stat(path).is_ok_and(|named| {
            (named.st_dev, named.st_ino, named.st_mode & 0o7777) == self.made
                && named.st_size as u64 == self.size
        });
        if !intact && !self.retired.swap(true, Ordering::Relaxed) {
            log::warn!(
                "arena {} was changed (mode, size or file): what it holds is decoded anew",
                path.display()
            );
        }
        intact
    }

    fn space(&self) -> MutexGuard<'_, Space> {
        // Runs and a counter, each update whole: no panic leaves them half-updated.
        self.space.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shown(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| PathBuf::from(&self.name))
    }

    /// Gives the pages of `range`, free, back to the system.
    fn punch(&self, range: Range<u64>) -> Result<(), ArenaError> {
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        let len = range.end - range.start;
        rustix::fs::fallocate(self.file.as_fd(), flags, range.start, len)
            .map_err(|e| io_error("give back memory of", &self.shown(), e))?;
        self.space().backed.remove(range);
        Ok(())
    }

    /// Fills the page tables of this process's mapping for `range`, whose pages are
    /// allocated, so that writing it faults nothing. Best effort: without it, writes
    /// fault the pages in as they come.
    fn populate(&self, range: Range<u64>) {
        // SAFETY: `range` lies within the mapping (an extent's run), and the advice only
        // makes the kernel fault in pages that are allocated already.
        let done = unsafe {
            rustix::mm::madvise(
                self.map.as_mut_ptr().add(range.start as usize).cast(),
                (range.end - range.start) as usize,
                rustix::mm::Advice::LinuxPopulateWrite,
            )
        };
        if let Err(e) = done {
            log::debug!("cannot populate arena {}: {e}", self.name);
        }
    }

    fn unlink(&self) {
        if let Some(path) = &self.path
            && let Err(e) = std::fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("cannot remove arena {}: {e}", path.display());
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        self.unlink();
    }
}

/// A run of an arena held by one chunk: whole units, page-aligned. Dropping it frees the
/// run (its pages stay allocated, provisioned for the next extent).
#[derive(Debug)]
pub struct Extent {
    arena: Arc<Arena>,
    range: Range<u64>,
}

impl Extent {
    /// Takes `range`, free, out of `arena`'s free space as a new extent.
    fn take(arena: Arc<Arena>, range: Range<u64>) -> Extent {
        let mut space = arena.space();
        space.free.remove(range.clone());
        space.extents += 1;
        drop(space);
        Extent { arena, range }
    }

    /// The arena it lies in.
    pub fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    /// Its offset in the arena.
    pub fn offset(&self) -> u64 {
        self.range.start
    }

    /// Its length (whole units).
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Whether it has no bytes (never: extents are whole units).
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Bytes of it whose pages are not allocated yet: what backing it adds to the memory
    /// in use.
    pub fn unbacked(&self) -> u64 {
        self.len() - self.arena.space().backed.bytes_within(self.range.clone())
    }

    /// Allocates every page of it not allocated yet (`fallocate`), so that writing or
    /// reading it never faults with SIGBUS, even with the filesystem full.
    pub fn back(&self) -> Result<(), ArenaError> {
        let arena = &self.arena;
        let gaps = arena.space().backed.gaps(self.range.clone());
        for gap in gaps {
            let len = gap.end - gap.start;
            let full = || ArenaError::Full { dir: arena.dir.clone(), len };
            match rustix::fs::fallocate(arena.file.as_fd(), FallocateFlags::empty(), gap.start, len)
            {
                Ok(()) => {}
                Err(Errno::NOSPC) => return Err(full()),
                // Filesystems without fallocate get their pages by writing zeros, which
                // fails as cleanly when there is no room.
                Err(Errno::OPNOTSUPP) => {
                    write_zeros(&arena.file, gap.clone()).map_err(|e| match e.raw_os_error() {
                        Some(code) if code == Errno::NOSPC.raw_os_error() => full(),
                        _ => ArenaError::Io { what: "fill", path: arena.shown(), source: e },
                    })?
                }
                Err(other) => return Err(io_error("allocate memory in", &arena.shown(), other)),
            }
            arena.space().backed.insert(gap);
        }
        debug_assert!(arena.unit > 0);
        Ok(())
    }

    /// Its bytes, to fill before it is published. Needs [`Extent::back`] first.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the run lies within the mapping, no other extent overlaps it, and the
        // `&mut self` borrow makes this the only view of it in this process; clients read
        // it only once published, after this borrow ends.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.arena.map.as_mut_ptr().add(self.range.start as usize),
                self.len() as usize,
            )
        }
    }

    /// Its bytes, published: the daemon's own look at what it decoded.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: as for `bytes_mut`; nothing writes a published extent, and no
        // `bytes_mut` borrow can coexist with this one.
        unsafe {
            std::slice::from_raw_parts(
                self.arena.map.as_ptr().add(self.range.start as usize),
                self.len() as usize,
            )
        }
    }
}

/// A table's stream at `offset` of an extent, read with `pread` from the arena's file.
#[derive(Debug, Clone, Copy)]
pub struct StreamAt<'e> {
    /// The extent.
    pub extent: &'e Extent,
    /// Offset of the stream in the extent.
    pub offset: u64,
}

impl crate::times::ReadAt for StreamAt<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let at = self.extent.range.start + self.offset + offset;
        std::os::unix::fs::FileExt::read_exact_at(&self.extent.arena.file, buf, at)
    }
}

impl Drop for Extent {
    fn drop(&mut self) {
        let mut space = self.arena.space();
        space.free.insert(self.range.clone());
        space.extents -= 1;
    }
}

fn write_zeros(file: &File, range: Range<u64>) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; 1 << 20];
    let mut at = range.start;
    while at < range.end {
        let n = (range.end - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
