//! One evshmd per socket, each running daemon told apart from every other, and the
//! clean-up of what dead instances left behind.
//!
//! The socket's lock is an exclusive `flock` on `<socket>.lock`, held as long as the
//! process lives (the kernel drops it when the process dies, however it dies); the file
//! holds the holder's instance id, for people and tools. It is never removed: unlinking it
//! would let a second daemon lock a new file while a first still holds the old one.
//!
//! Every daemon picks a random [`InstanceId`] at start and names its segments
//! `evshm-v2-<instance>-<random>`. It holds a second lock, on `evshm-v2-<instance>.lock` in
//! the shared-memory directory, for as long as it lives. Pids cannot name instances: a
//! daemon that is PID 1 of a container shares its pid with every predecessor. At start-up
//! evshmd removes the segments of this user whose instance holds no lock any more: what a
//! daemon killed with SIGKILL (or a crash) left behind. Segments of live instances, of other
//! users and of unknown names are never touched. Readers that still map a removed segment
//! keep reading it: unlinking a file does not unmap it.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// How the name of everything an instance owns starts: the version of the segment content
/// and naming, so that different versions never mistake each other's files.
const NAME_PREFIX: &str = "evshm-v2-";
/// Hex digits of an instance id.
const ID_DIGITS: usize = 16;
/// Hex digits of the random part of a segment name.
const SEGMENT_DIGITS: usize = 32;
/// Attempts at a fresh instance id whose liveness lock this daemon gets to hold.
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

    /// How the names of this instance's segments start.
    pub fn segment_prefix(&self) -> String {
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
    _socket_lock: File,
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
        let io = |lock: &Path, e: Errno| InstanceError::Io { lock: lock.into(), cause: e.into() };
        let flags = OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd =
            rustix::fs::open(&lock, flags, Mode::from_raw_mode(0o600)).map_err(|e| io(&lock, e))?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                return Err(InstanceError::AlreadyRunning { socket: socket.to_owned(), lock });
            }
            Err(e) => return Err(io(&lock, e)),
        }
        let (id, liveness, liveness_path) = hold_liveness(shm_dir)?;
        let mut socket_lock = File::from(fd);
        rustix::fs::ftruncate(&socket_lock, 0).map_err(|e| io(&lock, e))?;
        writeln!(socket_lock, "{id}")
            .map_err(|cause| InstanceError::Io { lock: lock.clone(), cause })?;
        Ok(Instance { id, _socket_lock: socket_lock, _liveness: liveness, liveness_path })
    }

    /// This instance's id.
    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    /// Removes the liveness file: the last act of a clean shutdown, after the segments.
    /// (A daemon that returns from `main` instead does so when dropping its instance.)
    pub fn close(&self) {
        match std::fs::remove_file(&self.liveness_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                log::warn!("cannot remove {}: {e}", self.liveness_path.display());
            }
            _ => {}
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.close();
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
        if rustix::fs::fstat(&fd).map_err(io)?.st_nlink == 0 {
            last = Some(io(Errno::NOENT));
            continue;
        }
        return Ok((id, File::from(fd), path));
    }
    Err(last.expect("at least one attempt"))
}

/// Removes from `dir` the segments of this user whose instance is gone, and the liveness
/// files of dead instances; returns how many segments.
pub fn remove_stale_segments(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let uid = rustix::process::getuid().as_raw();
    let mut segments = Vec::new();
    let mut instances = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(owner) else { continue };
        if !entry.metadata().is_ok_and(|m| m.uid() == uid && m.is_file()) {
            continue;
        }
        instances.insert(owner.id.clone());
        if owner.segment {
            segments.push((owner.id, entry.path()));
        }
    }
    let mut removed = 0;
    for id in instances {
        // The lock file is opened by its path, not taken from the listing: a directory
        // read while files are created may list a new segment but not its lock, made
        // before it.
        let Some(dead) = DeadInstance::find(dir, &id) else { continue };
        for (_, path) in segments.iter().filter(|(of, _)| *of == id) {
            match std::fs::remove_file(path) {
                Ok(()) => removed += 1,
                Err(e) => log::warn!("cannot remove stale segment {}: {e}", path.display()),
            }
        }
        dead.forget();
    }
    removed
}

/// The instance that named a file, and whether the file is a segment (or its lock).
struct Owner {
    id: InstanceId,
    segment: bool,
}

/// `evshm-v2-<16 hex digits>-<32 hex digits>` (a segment) or `evshm-v2-<16 hex>.lock`.
fn owner(name: &str) -> Option<Owner> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let hex = |s: &str, digits| s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit());
    let id = rest.get(..ID_DIGITS).filter(|id| hex(id, ID_DIGITS))?;
    let segment = match &rest[ID_DIGITS..] {
        ".lock" => false,
        tail if tail.strip_prefix('-').is_some_and(|r| hex(r, SEGMENT_DIGITS)) => true,
        _ => return None,
    };
    Some(Owner { id: InstanceId(id.to_owned()), segment })
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
        let segment = owner(&format!("evshm-v2-{id}-{RANDOM}")).unwrap();
        assert_eq!((segment.id.0.as_str(), segment.segment), (id, true));
        let lock = owner(&format!("evshm-v2-{id}.lock")).unwrap();
        assert_eq!((lock.id.0.as_str(), lock.segment), (id, false));
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
        let named = format!("{}{RANDOM}", fresh.segment_prefix());
        assert_eq!(owner(&named).unwrap().id, fresh);
    }

    #[test]
    fn one_lock_per_socket_holding_the_instance_id() {
        let dir = temp_dir("lock");
        let socket = dir.join("s.sock");
        let first = Instance::start(&socket, &dir).unwrap();
        let held = std::fs::read_to_string(dir.join("s.sock.lock")).unwrap();
        assert_eq!(held, format!("{}\n", first.id()));
        assert!(matches!(
            Instance::start(&socket, &dir),
            Err(InstanceError::AlreadyRunning { .. })
        ));
        drop(first);
        drop(Instance::start(&socket, &dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_segments_of_dead_instances_are_removed() {
        let dir = temp_dir("sweep");
        let live = Instance::start(&dir.join("live.sock"), &dir).unwrap();
        // What a killed instance leaves: its liveness file, which no process locks.
        let dead = InstanceId("00000000000000ee".into());
        std::fs::write(dir.join(dead.liveness_name()), b"").unwrap();
        let lockless = InstanceId("00000000000000ff".into());
        let names = [
            format!("{}{RANDOM}", live.id().segment_prefix()),
            format!("{}{RANDOM}", dead.segment_prefix()),
            format!("{}{RANDOM}", lockless.segment_prefix()),
            "unrelated".to_owned(),
        ];
        for name in &names {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_segments(&dir), 2);
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
