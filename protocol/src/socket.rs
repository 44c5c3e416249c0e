//! Where the control socket is when no path is given (one chain for every program:
//! `protocol/tests/fixtures.rs` checks it against the chain the Python client follows),
//! who is at the other end of it, and whom a client takes for evshmd.
//!
//! A client trusts its own user, root, and the user named by `$EVSHM_DAEMON_UID` (a daemon
//! run by a service account): both the socket file and the process listening on it must
//! belong to one of them. Otherwise another user could listen first where a client looks,
//! answer in evshmd's place and hand it files to map that it then truncates under it.

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

/// The variable naming the uid of a daemon run by another user, which clients then trust
/// besides their own user and root.
pub const DAEMON_UID_VARIABLE: &str = "EVSHM_DAEMON_UID";

/// The socket path every evshm program uses when none is given: `$EVSHM_SOCKET`, else
/// `$XDG_RUNTIME_DIR/evshm.sock`, else `evshm.sock` in [`fallback_socket_dir`].
pub fn default_socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os("EVSHM_SOCKET").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join("evshm.sock");
    }
    fallback_socket_dir().join("evshm.sock")
}

/// The directory of the last resort socket, `/tmp/evshm-$UID`: made by evshmd with mode
/// 0700, and used by evshmd and its clients only if it is this user's and closed to others
/// (anyone can make a directory of that name first).
pub fn fallback_socket_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/evshm-{}", rustix::process::getuid().as_raw()))
}

/// Checks that `dir` is a directory (not a link to one) of this user that no one else may
/// enter or write; the error says what it is instead.
pub fn check_private_dir(dir: &Path) -> Result<(), String> {
    let stat = rustix::fs::lstat(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let uid = rustix::process::geteuid().as_raw();
    let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
    let mode = stat.st_mode & 0o7777;
    if kind != rustix::fs::FileType::Directory {
        Err(format!("{} is not a directory", dir.display()))
    } else if stat.st_uid != uid {
        Err(format!("{} belongs to uid {}, not to uid {uid}", dir.display(), stat.st_uid))
    } else if mode & 0o077 != 0 {
        Err(format!("{} is open to other users (mode {mode:o}, not 700)", dir.display()))
    } else {
        Ok(())
    }
}

/// The users a client takes for evshmd: its own, root, and `$EVSHM_DAEMON_UID` if set (an
/// error names a value that is not a uid).
pub fn trusted_daemon_uids() -> Result<Vec<u32>, String> {
    let mut uids = vec![rustix::process::geteuid().as_raw(), 0];
    if let Some(value) = std::env::var_os(DAEMON_UID_VARIABLE).filter(|v| !v.is_empty()) {
        let text = value.to_string_lossy();
        let uid = text
            .trim()
            .parse()
            .map_err(|_| format!("{DAEMON_UID_VARIABLE}={text:?} is not a numeric user id"))?;
        uids.push(uid);
    }
    Ok(uids)
}

/// The credentials of the process at the other end of a Unix socket, which the kernel
/// vouches for (`SO_PEERCRED`, taken when it connected or listened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its process id, 0 when it runs outside this process's pid namespace (a daemon in a
    /// container, a client on the host).
    pub pid: i32,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

impl Peer {
    /// The credentials of the process at the other end of `socket`.
    pub fn of(socket: impl AsFd) -> std::io::Result<Peer> {
        // Not rustix's `socket_peercred`: its `UCred` holds the pid as a non-zero `Pid`,
        // and the kernel reports 0 for a peer outside this pid namespace, who is to be
        // dealt with all the same (uid and gid still say who it is).
        let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
        let mut len = size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `socket` keeps the descriptor open for the call, and the kernel writes at
        // most `len` bytes into `cred`, a plain C struct of exactly that size.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Peer { pid: cred.pid, uid: cred.uid, gid: cred.gid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_directories() {
        let dir = std::env::temp_dir().join(format!("evshm-private-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let mode = |m| std::os::unix::fs::PermissionsExt::from_mode(m);
        std::fs::set_permissions(&dir, mode(0o700)).unwrap();
        assert_eq!(check_private_dir(&dir), Ok(()));
        std::fs::set_permissions(&dir, mode(0o755)).unwrap();
        let open = check_private_dir(&dir).unwrap_err();
        assert!(open.ends_with("is open to other users (mode 755, not 700)"), "{open}");
        let link = dir.with_extension("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(check_private_dir(&link).unwrap_err().ends_with("is not a directory"));
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_socket_pair_is_this_process() {
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = Peer::of(&ours).unwrap();
        assert_eq!(peer.pid, std::process::id() as i32);
        assert_eq!(peer.uid, rustix::process::getuid().as_raw());
        assert_eq!(peer.gid, rustix::process::getgid().as_raw());
    }
}
