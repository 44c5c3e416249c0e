//! Whom a client takes for evshmd: before it sends a request or maps anything, the socket
//! file and the process listening on it must belong to this user, root, or
//! `$EVSHM_DAEMON_UID`; and the fallback socket's directory must be this user's private
//! one. Otherwise another user, listening first where this client looks, could answer in
//! evshmd's place and hand out files that it truncates under the reader (SIGBUS).

use std::os::unix::net::UnixStream;
use std::path::Path;

use evshm_protocol::{DAEMON_UID_VARIABLE, Peer};

use crate::ClientError;

/// Checks what can be checked before connecting to `path`: where it is, and who owns it.
pub(crate) fn check_socket(path: &Path) -> Result<(), ClientError> {
    let untrusted = |reason| ClientError::Untrusted { path: path.to_owned(), reason };
    let fallback = evshm_protocol::fallback_socket_dir();
    if path.parent() == Some(fallback.as_path()) {
        evshm_protocol::check_private_dir(&fallback).map_err(|why| {
            untrusted(format!(
                "{why}: another user may have made it to catch this user's connections"
            ))
        })?;
    }
    let trusted = evshm_protocol::trusted_daemon_uids().map_err(untrusted)?;
    match rustix::fs::lstat(path) {
        Ok(stat) if !trusted.contains(&stat.st_uid) => Err(untrusted(format!(
            "the socket file belongs to uid {}, {}",
            stat.st_uid,
            whom(&trusted)
        ))),
        // A missing socket is for connect() to report.
        _ => Ok(()),
    }
}

/// Checks the process at the other end of `stream`, which the kernel vouches for.
pub(crate) fn check_peer(path: &Path, stream: &UnixStream) -> Result<(), ClientError> {
    let untrusted = |reason| ClientError::Untrusted { path: path.to_owned(), reason };
    let trusted = evshm_protocol::trusted_daemon_uids().map_err(untrusted)?;
    let peer = Peer::of(stream).map_err(|e| untrusted(format!("no peer credentials: {e}")))?;
    if trusted.contains(&peer.uid) {
        Ok(())
    } else {
        Err(untrusted(format!("it runs as uid {}, {}", peer.uid, whom(&trusted))))
    }
}

/// Whom this client trusts, and how to trust another daemon user.
fn whom(trusted: &[u32]) -> String {
    let list: Vec<String> = trusted.iter().map(u32::to_string).collect();
    format!(
        "not one this client trusts ({}); for a daemon of another user, set \
         {DAEMON_UID_VARIABLE} to its uid",
        list.join(", ")
    )
}
