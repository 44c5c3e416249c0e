//! Memory made ready ahead of need, and given back when it is not needed.
//!
//! Allocating a page costs more than filling it: on this project's reference machine,
//! 436 MB of fresh shared memory take ~100 ms to allocate (`fallocate`) and ~200 ms of page
//! faults to map and touch, while writing into pages already mapped takes ~20 ms
//! (docs/PAGES.md). So while the daemon is idle, a background thread keeps `--provision`
//! bytes of free arena space allocated and mapped in evshmd, page tables filled
//! (`MADV_POPULATE_WRITE`); a cold decode takes that space first (`Arenas::reserve`), and
//! the pages of every evicted chunk stay the same way, for the next one. Provisioning never
//! takes more than half of the budget, and waits until no decode has started for
//! [`QUIET`], so that it never competes with the decodes it is meant to speed up. When a
//! decode needs room, provisioned pages go before any resident chunk is evicted.
//!
//! Once the daemon has been idle (no decode) for `--idle-release`, the free pages beyond
//! the provision go back to the system (holes punched; in sealed mode, whole free arenas
//! dropped).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::arena::Arenas;

/// How long after a decode, or a failure to provision, nothing is provisioned.
pub const QUIET: Duration = Duration::from_millis(500);

/// Bytes provisioned in one step, between looks at whether a decode started.
const STEP: u64 = 64 << 20;

/// The provisioning thread's schedule: when a decode last ran, and whether to stop.
#[derive(Debug)]
pub struct Provisioner {
    /// Free bytes kept allocated.
    target: u64,
    /// Idle time after which free pages beyond `target` go back.
    idle_release: Duration,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    /// When a decode last ran, or provisioning last failed.
    busy: Instant,
    /// Whether free pages beyond the target went back since the last decode.
    released: bool,
    closed: bool,
}

impl Provisioner {
    /// Keeps `target` bytes provisioned; gives back the rest after `idle_release` idle.
    pub fn new(target: u64, idle_release: Duration) -> Provisioner {
        let state = State { busy: Instant::now(), released: false, closed: false };
        Provisioner { target, idle_release, state: Mutex::new(state), changed: Condvar::new() }
    }

    /// Bytes kept provisioned.
    pub fn target(&self) -> u64 {
        self.target
    }

    /// A decode ran: provisioning waits, and refills once it is quiet again.
    pub fn used(&self) {
        let mut state = self.lock();
        state.busy = Instant::now();
        state.released = false;
        drop(state);
        self.changed.notify_all();
    }

    /// Stops the thread.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The thread's body: keeps `target` bytes of `arenas` provisioned while `room(bytes)`
    /// says the budget has room for `bytes` more, and gives back what is beyond after the
    /// idle time. Returns when closed or when the daemon is gone.
    pub fn run(this: Weak<Provisioner>, arenas: Weak<Arenas>, room: impl Fn(u64) -> bool) {
        loop {
            let (Some(provisioner), Some(arenas)) = (this.upgrade(), arenas.upgrade()) else {
                return;
            };
            match provisioner.next(&arenas, &room) {
                Some(Work::Provision(len)) => {
                    if let Err(e) = arenas.provision(len) {
                        log::warn!("cannot provision memory: {e}");
                        provisioner.lock().busy = Instant::now();
                    }
                }
                Some(Work::Release) => {
                    let given = arenas.give_back(u64::MAX, provisioner.target);
                    if given > 0 {
                        log::info!("idle: gave {given} free bytes back to the system");
                    }
                    provisioner.lock().released = true;
                }
                None => return,
            }
        }
    }

    /// Waits for the next thing to do: `None` once closed.
    fn next(&self, arenas: &Arenas, room: &impl Fn(u64) -> bool) -> Option<Work> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            let quiet = state.busy.elapsed();
            if quiet >= QUIET {
                let provisioned = arenas.usage().bytes_provisioned;
                let step = self.target.saturating_sub(provisioned).min(STEP);
                if step > 0 && room(step) {
                    return Some(Work::Provision(step));
                }
                if quiet >= self.idle_release && !state.released && provisioned > self.target {
                    return Some(Work::Release);
                }
            }
            // Woken by decodes and closing; looked at again at least this often.
            let wait =
                if quiet < QUIET { QUIET - quiet } else { QUIET.max(Duration::from_secs(1)) };
            state = self
                .changed
                .wait_timeout(state, wait)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // An instant and two flags: no panic leaves them half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the thread does next.
enum Work {
    /// Provision this many bytes.
    Provision(u64),
    /// Give back free pages beyond the target.
    Release,
}

/// Starts the thread that runs `provisioner` over `arenas`.
pub fn start(
    provisioner: &Arc<Provisioner>,
    arenas: &Arc<Arenas>,
    room: impl Fn(u64) -> bool + Send + 'static,
) -> std::io::Result<()> {
    let (this, arenas) = (Arc::downgrade(provisioner), Arc::downgrade(arenas));
    std::thread::Builder::new()
        .name("evshmd-provision".into())
        .spawn(move || Provisioner::run(this, arenas, room))
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::InstanceId;
    use crate::testing::TempDir;

    fn arenas(dir: &TempDir) -> Arc<Arenas> {
        Arenas::new(&dir.0, &InstanceId::random().unwrap(), None, false, 1 << 26, u64::MAX)
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_provision_is_made_when_quiet_and_the_rest_goes_back_when_idle() {
        let dir = TempDir::new("provision");
        let arenas = arenas(&dir);
        let provisioner = Arc::new(Provisioner::new(4 << 20, Duration::from_millis(800)));
        start(&provisioner, &arenas, |_| true).unwrap();
        wait_until("provisioned", || arenas.usage().bytes_provisioned == 4 << 20);
        // A chunk of 8 MiB comes and goes: its pages stay, until the daemon is idle.
        let extent = arenas.reserve(8 << 20).unwrap().unwrap();
        extent.back().unwrap();
        provisioner.used();
        drop(extent);
        assert_eq!(arenas.usage().bytes_provisioned, 8 << 20);
        wait_until("given back", || arenas.usage().bytes_provisioned == 4 << 20);
        provisioner.close();
    }

    #[test]
    fn nothing_is_made_without_room_in_the_budget() {
        let dir = TempDir::new("provision-full");
        let arenas = arenas(&dir);
        let provisioner = Arc::new(Provisioner::new(4 << 20, Duration::from_secs(60)));
        provisioner.lock().busy = Instant::now() - QUIET;
        start(&provisioner, &arenas, |_| false).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(arenas.usage().bytes_provisioned, 0);
        provisioner.close();
    }
}
