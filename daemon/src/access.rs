//! Who may use the daemon.
//!
//! Three layers: the socket file is mode 0660, owned by the daemon's user and by
//! `--group` when given, so only those can connect at all; each connection's peer is
//! identified by `SO_PEERCRED` (pid, uid, gid, which the kernel vouches for); and when
//! `--allow-uid` or `--allow-gid` are given, only those users and members of those groups
//! (primary or supplementary), besides the daemon's own user, are served. Segments are
//! mode 0440 and carry the same group, so whoever may connect may read them, and nobody
//! else.

pub use evshm_protocol::Peer;

/// The supplementary groups of `peer`, read from `/proc`; empty if the process is gone or
/// outside the daemon's pid namespace (then only its primary group counts).
fn supplementary_groups(peer: &Peer) -> Vec<u32> {
    if peer.pid == 0 {
        return Vec::new();
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", peer.pid)).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:")).unwrap_or("");
    line.split_whitespace().filter_map(|g| g.parse().ok()).collect()
}

/// Which users and groups are served, beyond who can open the socket.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// Users served (empty with `allow_gids` empty: everyone who can connect).
    pub allow_uids: Vec<u32>,
    /// Groups whose members are served.
    pub allow_gids: Vec<u32>,
}

impl AccessPolicy {
    /// Whether `peer` is served; the error names the uid and the flags to change.
    pub fn check(&self, peer: &Peer) -> Result<(), AccessDenied> {
        if self.allow_uids.is_empty() && self.allow_gids.is_empty() {
            return Ok(());
        }
        let own = rustix::process::getuid().as_raw();
        if peer.uid == own || self.allow_uids.contains(&peer.uid) {
            return Ok(());
        }
        let mut groups = supplementary_groups(peer);
        groups.push(peer.gid);
        if groups.iter().any(|g| self.allow_gids.contains(g)) {
            return Ok(());
        }
        Err(AccessDenied { uid: peer.uid, pid: peer.pid })
    }
}

/// A peer the allow-lists do not name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "uid {uid} (pid {pid}) may not use this evshmd; it serves the users of --allow-uid and \
     the members of --allow-gid"
)]
pub struct AccessDenied {
    /// The peer's user id.
    pub uid: u32,
    /// The peer's process id.
    pub pid: i32,
}

/// A group given by number or by name (looked up in `/etc/group`).
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").map_err(|e| format!("/etc/group: {e}"))?;
    groups
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some(group)).then(|| fields.nth(1)?.parse().ok())?
        })
        .ok_or_else(|| format!("no group named {group:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_number_or_name() {
        assert_eq!(resolve_group("65534"), Ok(65534));
        assert_eq!(resolve_group("root"), Ok(0));
        assert!(resolve_group("no-such-group-here").is_err());
    }

    #[test]
    fn allow_lists() {
        let stranger = Peer { pid: i32::MAX, uid: 4242, gid: 4242 };
        assert!(AccessPolicy::default().check(&stranger).is_ok(), "no list: the socket decides");
        let by_uid = AccessPolicy { allow_uids: vec![4242], allow_gids: vec![] };
        assert!(by_uid.check(&stranger).is_ok());
        let by_gid = AccessPolicy { allow_uids: vec![], allow_gids: vec![4242] };
        assert!(by_gid.check(&stranger).is_ok());
        let other = AccessPolicy { allow_uids: vec![1], allow_gids: vec![2] };
        let error = other.check(&stranger).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "uid 4242 (pid {}) may not use this evshmd; it serves the users of --allow-uid \
                 and the members of --allow-gid",
                i32::MAX
            ),
            "one line, no stray backslash or run of spaces"
        );
        let own = Peer { uid: rustix::process::getuid().as_raw(), ..stranger };
        assert!(other.check(&own).is_ok(), "the daemon's own user is always served");
    }
}
