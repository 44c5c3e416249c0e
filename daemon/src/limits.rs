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
/// leaves is kept for segments, which hold one each while they are cached.
pub fn default_max_connections(descriptors: u64) -> usize {
    let share = descriptors.saturating_sub(RESERVED) / 4;
    share.clamp(1, MOST_CONNECTIONS) as usize
}

/// The most segments that may exist at once under a limit of `descriptors` open files
/// with `connections` connections (each of those holds two): what the reserve and the
/// connections leave. A cached segment holds a descriptor, so past this many the least
/// recently used unleased chunks are evicted, as past the memory budget.
pub fn segment_limit(descriptors: u64, connections: usize) -> u64 {
    let left = descriptors.saturating_sub(RESERVED + 2 * connections as u64);
    left.max(2)
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

    #[test]
    fn segments_get_what_the_reserve_and_the_connections_leave() {
        assert_eq!(segment_limit(256, 32), 64);
        assert_eq!(segment_limit(256, 100), 2, "never fewer than one chunk's");
    }
}
