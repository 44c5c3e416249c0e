//! Descriptors: the daemon raises its own limit at start and caps its connections, so
//! that idle clients can never take the descriptors a decode needs.

use rustix::process::{Resource, Rlimit};

/// Descriptors kept out of the connections' share: the files being read, listings, the
/// listening socket, logging and the like.
const RESERVED: u64 = 128;

/// More connections than this are not worth a thread each, whatever the limit.
const MOST_CONNECTIONS: u64 = 4096;

/// Raises the soft limit on open descriptors to the hard one (what an unprivileged
/// process may), and returns the limit now in force.
pub fn raise_descriptor_limit() -> u64 {
    let Rlimit { current, maximum } = rustix::process::getrlimit(Resource::Nofile);
    if current != maximum {
        let raised = Rlimit { current: maximum, maximum };
        if let Err(e) = rustix::process::setrlimit(Resource::Nofile, raised) {
            log::warn!("cannot raise the limit on open files from {current:?} to {maximum:?}: {e}");
        }
    }
    rustix::process::getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The default `--max-connections` under a limit of `descriptors` open files: a
/// connection holds two (the socket and its reading half), and half of what the reserve
/// leaves is kept for whatever else grows with the load (recording files held open by
/// their indexes, arenas).
pub fn default_max_connections(descriptors: u64) -> usize {
    let share = descriptors.saturating_sub(RESERVED) / 4;
    share.clamp(1, MOST_CONNECTIONS) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_get_a_quarter_of_what_the_reserve_leaves() {
        assert_eq!(default_max_connections(256), 32);
        assert_eq!(default_max_connections(1024), 224);
        assert_eq!(default_max_connections(64), 1, "always at least one");
        assert_eq!(default_max_connections(1 << 20), 4096, "a thread each: capped");
    }
}
