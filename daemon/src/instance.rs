//! One evshmd per socket, each running daemon told apart from every other, and the
//! clean-up of what dead instances left behind.
//!
//! The socket's lock is an exclusive `flock` on `<socket>.lock`, held as long as the
//! process lives (the kernel drops it when the process dies, however it dies); the file
//! holds the holder's instance id, for people and tools. It is never removed while its
//! daemon serves: unlinking it would let a second daemon lock a new file while the first
//! still holds the old one. A clean shutdown removes it as its very last act, still
//! holding the lock; a daemon starting meanwhile may have opened the old file and lock it
//! once the first exits, which is the same race, so a starting daemon checks, once it
//! holds a lock, that its file is still the one at the path (same inode, not unlinked)
//! and otherwise lets go and starts over. Every daemon then holds the lock of the file at
//! the path, and only one can. (The liveness files below are made the same way.)
//!
//! Every daemon picks a random [`InstanceId`] at start and names its arenas
//! `evshm-v2-<instance>-<random>`. It holds a second lock, on `evshm-v2-<instance>.lock` in
//! the shared-memory directory, for as long as it lives. Pids cannot name instances: a
//! daemon that is PID 1 of a container shares its pid with every predecessor. At start-up
//! evshmd removes the arenas of this user whose instance holds no lock any more: what a
//! daemon killed with SIGKILL (or a crash) left behind. Segments of live instances, of other
//! users and of unknown names are never touched. Readers that still map a removed arena
//! keep reading it: unlinking a file does not unmap it.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// How the name of everything an instance owns starts: the version of the arena content
/// and naming, so that different versions never mistake each other's files.
const NAME_PREFIX: &str = "evshm-v2-";
/// Hex digits of an instance id.
const ID_DIGITS: usize = 16;
/// Hex digits of the random part of an arena name.
const SEGMENT_DIGITS: usize = 32;
/// Attempts at a fresh instance id whose liveness lock this daemon gets to hold, and at
/// locking the socket's lock file that is at its path.
const ATTEMPTS: usize = 8;

/// Why this daemon cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstanceError {
    /// Another evshmd holds the lock of this socket.
    #[error("another evshmd is already running for {socket} (it holds {lock})")]
    AlreadyRunning {
        /// The socket.
        socket: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A lock file cannot be created, locked or written.
    #[error("cannot lock {lock}: {cause}")]
    Io {
        /// The lock file.
        lock: PathBuf,
        /// The OS error (told in the message, so not a `source`: printed as a chain, it
        /// would be told twice).
        cause: std::io::Error,
    },
}

/// What tells one running daemon from every other, past and present: 64 random bits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InstanceId(String);

impl InstanceId {
    /// A fresh id.
    pub fn random() -> std::io::Result<InstanceId> {
        let mut random = [0u8; 8];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
        Ok(InstanceId(format!("{:016x}", u64::from_le_bytes(random))))
    }

    /// How the names of this instance's arenas start.
    pub fn arena_prefix(&self) -> String {
        format!("{NAME_PREFIX}{}-", self.0)
    }

    /// The name of the file whose lock says this instance is alive.
    fn liveness_name(&self) -> String {
        format!("{NAME_PREFIX}{}.lock", self.0)
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// This daemon as one instance: the lock of its socket and the lock that says it is alive,
/// both released when the process ends.
#[derive(Debug)]
pub struct Instance {
    id: InstanceId,
    socket_lock: File,
    socket_lock_path: PathBuf,
    _liveness: File,
    liveness_path: PathBuf,
}

impl Instance {
    /// Takes the lock of `socket` (or says which daemon holds it), then picks an id whose
    /// liveness lock in `shm_dir` this daemon holds.
    pub fn start(socket: &Path, shm_dir: &Path) -> Result<Instance, InstanceError> {
        let mut lock = socket.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        let fd = lock_socket(socket, &lock)?;
        let (id, liveness, liveness_path) = hold_liveness(shm_dir)?;
        let io = |lock: &Path, e: Errno| InstanceError::Io { lock: lock.into(), cause: e.into() };
        let mut socket_lock = File::from(fd);
        rustix::fs::ftruncate(&socket_lock, 0).map_err(|e| io(&lock, e))?;
        writeln!(socket_lock, "{id}")
            .map_err(|cause| InstanceError::Io { lock: lock.clone(), cause })?;
        Ok(Instance { id, socket_lock, socket_lock_path: lock, _liveness: liveness, liveness_path })
    }

    /// This instance's id.
    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    /// Removes the liveness file, then the socket's lock file if it is still this
    /// daemon's: the last acts of a clean shutdown, after the arenas, with both locks
    /// still held until the process ends. (A daemon that returns from `main` instead does
    /// so when dropping its instance.)
    pub fn close(&self) {
        remove(&self.liveness_path);
        // Anyone may have replaced the file by hand: only this daemon's is removed.
        if is_at(&self.socket_lock, &self.socket_lock_path) == Ok(true) {
            remove(&self.socket_lock_path);
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.close();
    }
}

/// Removes a file of this instance, saying so when that fails.
fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            log::warn!("cannot remove {}: {e}", path.display());
        }
        _ => {}
    }
}

/// Opens and locks `lock`, the lock file of `socket`, or says which daemon holds it. A
/// file locked after its daemon unlinked it (see the module's doc) is let go for the one
/// at the path.
fn lock_socket(socket: &Path, lock: &Path) -> Result<OwnedFd, InstanceError> {
    let io = |e: Errno| InstanceError::Io { lock: lock.into(), cause: e.into() };
    let flags = OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    for _ in 0..ATTEMPTS {
        let fd = rustix::fs::open(lock, flags, Mode::from_raw_mode(0o600)).map_err(io)?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                return Err(InstanceError::AlreadyRunning {
                    socket: socket.to_owned(),
                    lock: lock.to_owned(),
                });
            }
            Err(e) => return Err(io(e)),
        }
        if is_at(&fd, lock).map_err(io)? {
            return Ok(fd);
        }
    }
    // Only a file replaced again and again while this daemon starts gets here.
    Err(io(Errno::AGAIN))
}

/// Whether the file open as `fd` is the one at `path` (not unlinked, nor replaced).
fn is_at(fd: impl AsFd, path: &Path) -> Result<bool, Errno> {
    let held = rustix::fs::fstat(fd)?;
    match rustix::fs::lstat(path) {
        Ok(there) => {
            Ok(held.st_nlink > 0 && (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino))
        }
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates and locks the liveness file of a fresh id. A daemon sweeping at the same moment
/// may lock the new file first (it then looks dead to it, and is unlinked): that id is
/// given up for another.
fn hold_liveness(dir: &Path) -> Result<(InstanceId, File, PathBuf), InstanceError> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let id = InstanceId::random()
            .map_err(|cause| InstanceError::Io { lock: dir.to_owned(), cause })?;
        let path = dir.join(id.liveness_name());
        let io = |e: Errno| InstanceError::Io { lock: path.clone(), cause: e.into() };
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = match rustix::fs::open(&path, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => fd,
            Err(e @ Errno::EXIST) => {
                last = Some(io(e));
                continue;
            }
            Err(e) => return Err(io(e)),
        };
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e @ Errno::WOULDBLOCK) => {
                last = Some(io(e));
                continue;
            }
            Err(e) => return Err(io(e)),
        }
        // Locked, but perhaps after a sweeper locked, unlinked and let go of it.
        if !is_at(&fd, &path).map_err(io)? {
            last = Some(io(Errno::NOENT));
            continue;
        }
        return Ok((id, File::from(fd), path));
    }
    Err(last.expect("at least one attempt"))
}

/// Removes from `dir` the arenas of this user whose instance is gone, and the liveness
/// files of dead instances; returns how many arenas.
pub fn remove_stale_arenas(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let uid = rustix::process::getuid().as_raw();
    let mut arenas = Vec::new();
    let mut instances = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(owner) else { continue };
        if !entry.metadata().is_ok_and(|m| m.uid() == uid && m.is_file()) {
            continue;
        }
        instances.insert(owner.id.clone());
        if owner.arena {
            arenas.push((owner.id, entry.path()));
        }
    }
    let mut removed = 0;
    for id in instances {
        // The lock file is opened by its path, not taken from the listing: a directory
        // read while files are created may list a new arena but not its lock, made
        // before it.
        let Some(dead) = DeadInstance::find(dir, &id) else { continue };
        for (_, path) in arenas.iter().filter(|(of, _)| *of == id) {
            match std::fs::remove_file(path) {
                Ok(()) => removed += 1,
                Err(e) => log::warn!("cannot remove stale arena {}: {e}", path.display()),
            }
        }
        dead.forget();
    }
    removed
}

/// The instance that named a file, and whether the file is an arena (or its lock).
struct Owner {
    id: InstanceId,
    arena: bool,
}

/// `evshm-v2-<16 hex digits>-<32 hex digits>` (an arena) or `evshm-v2-<16 hex>.lock`.
fn owner(name: &str) -> Option<Owner> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let hex = |s: &str, digits| s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit());
    let id = rest.get(..ID_DIGITS).filter(|id| hex(id, ID_DIGITS))?;
    let arena = match &rest[ID_DIGITS..] {
        ".lock" => false,
        tail if tail.strip_prefix('-').is_some_and(|r| hex(r, SEGMENT_DIGITS)) => true,
        _ => return None,
    };
    Some(Owner { id: InstanceId(id.to_owned()), arena })
}

/// An instance found dead: its liveness lock, held by this daemon until forgotten, or none
/// (the file is gone).
struct DeadInstance {
    liveness: Option<(File, PathBuf)>,
}

impl DeadInstance {
    /// The instance `id`, if no process holds its lock.
    fn find(dir: &Path, id: &InstanceId) -> Option<DeadInstance> {
        let path = dir.join(id.liveness_name());
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let fd = match rustix::fs::open(&path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Some(DeadInstance { liveness: None }),
            Err(e) => {
                log::warn!("cannot tell whether instance {id} is alive ({}: {e})", path.display());
                return None;
            }
        };
        match rustix::fs::flock(fd.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Some(DeadInstance { liveness: Some((File::from(fd), path)) }),
            Err(Errno::WOULDBLOCK) => None,
            Err(e) => {
                log::warn!("cannot tell whether instance {id} is alive ({}: {e})", path.display());
                None
            }
        }
    }

    /// Unlinks the lock file (still holding its lock, so that no one else takes it for a
    /// live instance's meanwhile).
    fn forget(self) {
        if let Some((_lock, path)) = self.liveness
            && let Err(e) = std::fs::remove_file(&path)
        {
            log::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANDOM: &str = "0123456789abcdef0123456789abcdef";

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("evshm-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn names_give_their_instance() {
        let id = "0011223344556677";
        let arena = owner(&format!("evshm-v2-{id}-{RANDOM}")).unwrap();
        assert_eq!((arena.id.0.as_str(), arena.arena), (id, true));
        let lock = owner(&format!("evshm-v2-{id}.lock")).unwrap();
        assert_eq!((lock.id.0.as_str(), lock.arena), (id, false));
        for other in [
            format!("evshm-v2-{id}-short"),
            format!("evshm-v2-{id}.lockx"),
            format!("evshm-v2-{id}"),
            format!("evshm-v1-42-{RANDOM}"),
            format!("evshm-v2-00112233445566-{RANDOM}"),
            format!("other-{id}-{RANDOM}"),
        ] {
            assert!(owner(&other).is_none(), "{other}");
        }
        let fresh = InstanceId::random().unwrap();
        let named = format!("{}{RANDOM}", fresh.arena_prefix());
        assert_eq!(owner(&named).unwrap().id, fresh);
    }

    #[test]
    fn one_lock_per_socket_holding_the_instance_id_removed_at_the_end() {
        let dir = temp_dir("lock");
        let socket = dir.join("s.sock");
        let lock = dir.join("s.sock.lock");
        let first = Instance::start(&socket, &dir).unwrap();
        let held = std::fs::read_to_string(&lock).unwrap();
        assert_eq!(held, format!("{}\n", first.id()));
        assert!(matches!(
            Instance::start(&socket, &dir),
            Err(InstanceError::AlreadyRunning { .. })
        ));
        drop(first);
        assert!(!lock.exists(), "a stopped instance removes its lock file");
        drop(Instance::start(&socket, &dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The race of removing the lock file: a daemon starting while the first stops opens
    /// the first's file, which the first unlinks, still holding its lock, and exits. The
    /// starter then locks a file no longer at the path; it must not keep it, or a third
    /// daemon would lock a new file at the path and both would run.
    #[test]
    fn a_lock_on_a_file_unlinked_by_its_daemon_is_let_go_for_the_one_at_the_path() {
        let dir = temp_dir("lock-race");
        let socket = dir.join("s.sock");
        let lock = dir.join("s.sock.lock");
        let first = Instance::start(&socket, &dir).unwrap();
        // The starter has opened the old file before the first unlinks it.
        let stale = File::open(&lock).unwrap();
        first.close();
        drop(first);
        rustix::fs::flock(&stale, FlockOperation::NonBlockingLockExclusive)
            .expect("the old file's lock is free once the first daemon is gone");
        assert_eq!(is_at(&stale, &lock), Ok(false), "what the starter checks: not at the path");
        let second = Instance::start(&socket, &dir).expect("the second locks the file at the path");
        assert_eq!(is_at(&second.socket_lock, &lock), Ok(true));
        assert!(matches!(
            Instance::start(&socket, &dir),
            Err(InstanceError::AlreadyRunning { .. })
        ));
        // A file replaced by hand is not the second daemon's to remove.
        std::fs::remove_file(&lock).unwrap();
        std::fs::write(&lock, b"someone else's\n").unwrap();
        drop(second);
        assert_eq!(std::fs::read(&lock).unwrap(), b"someone else's\n");
        drop(stale);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_arenas_of_dead_instances_are_removed() {
        let dir = temp_dir("sweep");
        let live = Instance::start(&dir.join("live.sock"), &dir).unwrap();
        // What a killed instance leaves: its liveness file, which no process locks.
        let dead = InstanceId("00000000000000ee".into());
        std::fs::write(dir.join(dead.liveness_name()), b"").unwrap();
        let lockless = InstanceId("00000000000000ff".into());
        let names = [
            format!("{}{RANDOM}", live.id().arena_prefix()),
            format!("{}{RANDOM}", dead.arena_prefix()),
            format!("{}{RANDOM}", lockless.arena_prefix()),
            "unrelated".to_owned(),
        ];
        for name in &names {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_arenas(&dir), 2);
        assert!(dir.join(&names[0]).exists() && dir.join("unrelated").exists());
        assert!(!dir.join(&names[1]).exists() && !dir.join(&names[2]).exists());
        assert!(!dir.join(dead.liveness_name()).exists(), "a dead instance's file goes too");
        assert!(dir.join(live.id().liveness_name()).exists());
        let live_lock = dir.join(live.id().liveness_name());
        drop(live);
        assert!(!live_lock.exists(), "a stopped instance removes its own");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
