//! One evshmd per socket, and the clean-up of what dead instances left behind.
//!
//! The lock is an exclusive `flock` on `<socket>.lock`, held as long as the process lives
//! (the kernel drops it when the process dies, however it dies). The lock file is never
//! removed: unlinking it would let a second daemon lock a new file while a first still
//! holds the old one.
//!
//! Segments are named `evshm-v1-<pid>-<random>`. At start-up, holding its lock, evshmd
//! removes the segments of this user whose creating process is gone: what a daemon killed
//! with SIGKILL (or a crash) left behind. Segments of live processes, of other users and
//! of unknown names are never touched. Readers that still map a removed segment keep
//! reading it: unlinking a file does not unmap it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

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
    /// The lock file cannot be created or locked.
    #[error("cannot lock {lock}: {source}")]
    Io {
        /// The lock file.
        lock: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The single-instance lock of one socket; released when dropped (or when the process
/// ends).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the lock of `socket`, or says which daemon holds it.
    pub fn acquire(socket: &Path) -> Result<InstanceLock, InstanceError> {
        let mut lock = socket.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        let io = |e: Errno| InstanceError::Io { lock: lock.clone(), source: e.into() };
        let flags = OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = rustix::fs::open(&lock, flags, Mode::from_raw_mode(0o600)).map_err(io)?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(InstanceLock { _file: File::from(fd) }),
            Err(Errno::WOULDBLOCK) => {
                Err(InstanceError::AlreadyRunning { socket: socket.to_owned(), lock })
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// Removes from `dir` the segments of this user that an evshmd process no longer alive
/// created; returns how many.
pub fn remove_stale_segments(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let uid = rustix::process::getuid().as_raw();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(creator_pid) else { continue };
        let ours = entry.metadata().is_ok_and(|m| m.uid() == uid && m.is_file());
        if ours && !alive(pid) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => log::warn!("cannot remove stale segment {}: {e}", entry.path().display()),
            }
        }
    }
    removed
}

/// The pid in a segment name `evshm-v1-<pid>-<32 hex digits>`.
fn creator_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(crate::segment::NAME_PREFIX)?;
    let (pid, random) = rest.split_once('-')?;
    let hex = random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| pid.parse().ok()).flatten().filter(|&pid| pid > 0)
}

/// Whether a process with this pid exists (whoever owns it).
fn alive(pid: i32) -> bool {
    if pid == std::process::id() as i32 {
        return true;
    }
    match rustix::process::Pid::from_raw(pid) {
        Some(pid) => !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_give_their_creator() {
        let random = "0123456789abcdef0123456789abcdef";
        assert_eq!(creator_pid(&format!("evshm-v1-42-{random}")), Some(42));
        assert_eq!(creator_pid("evshm-v1-42-short"), None);
        assert_eq!(creator_pid(&format!("evshm-v2-42-{random}")), None);
        assert_eq!(creator_pid(&format!("other-42-{random}")), None);
        assert_eq!(creator_pid(&format!("evshm-v1--5-{random}")), None);
    }

    #[test]
    fn one_lock_per_socket() {
        let dir = std::env::temp_dir().join(format!("evshm-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("s.sock");
        let first = InstanceLock::acquire(&socket).unwrap();
        assert!(matches!(
            InstanceLock::acquire(&socket),
            Err(InstanceError::AlreadyRunning { .. })
        ));
        drop(first);
        InstanceLock::acquire(&socket).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_segments_of_dead_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("evshm-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let random = "0123456789abcdef0123456789abcdef";
        // A pid above the kernel's maximum is never alive.
        let dead = format!("evshm-v1-2147483000-{random}");
        let live = format!("evshm-v1-{}-{random}", std::process::id());
        for name in [&dead, &live, &"unrelated".to_owned()] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_segments(&dir), 1);
        assert!(!dir.join(&dead).exists());
        assert!(dir.join(&live).exists() && dir.join("unrelated").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
