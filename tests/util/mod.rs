//! Harness of the cross-process tests: a real `evshmd` child on a temporary root and
//! socket, with a watchdog, and checks of what it leaves behind.

pub mod aedat4;
pub mod real;
pub mod skip;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use evshm_formats::synth::{Synth, SynthConfig};

/// The shared-memory directory the daemon uses by default.
pub const SHM_DIR: &str = "/dev/shm";

/// How long any test may keep a daemon before the watchdog kills it, so that a hang
/// fails the test instead of blocking the suite.
const WATCHDOG: Duration = Duration::from_secs(180);

/// A directory removed when dropped; unique per test and process.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory named after `tag`.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("evshm-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running evshmd.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// Its control socket.
    pub socket: PathBuf,
    dir: TempDir,
    /// Its instance id, which names its arenas.
    instance: String,
    /// Where its arenas are (`--shm-dir`, else [`SHM_DIR`]).
    shm_dir: PathBuf,
    /// Killed with SIGKILL by the test, which then checks the clean-up itself.
    killed: bool,
}

impl Daemon {
    /// Starts evshmd on a new root that `populate` fills.
    pub fn start(populate: impl FnOnce(&Path)) -> Daemon {
        Daemon::start_at(None, populate)
    }

    /// Starts evshmd with its socket at `socket` (default: in its temporary directory).
    pub fn start_at(socket: Option<&Path>, populate: impl FnOnce(&Path)) -> Daemon {
        Daemon::start_with(socket, &[], populate)
    }

    /// Starts evshmd with extra command-line arguments.
    pub fn start_with(
        socket: Option<&Path>,
        args: &[&str],
        populate: impl FnOnce(&Path),
    ) -> Daemon {
        Daemon::start_under(&[], socket, args, populate)
    }

    /// Starts evshmd under `wrapper` (a command that execs the rest of its arguments,
    /// like `prlimit --nofile=256:256`, so that the daemon keeps its pid).
    pub fn start_under(
        wrapper: &[&str],
        socket: Option<&Path>,
        args: &[&str],
        populate: impl FnOnce(&Path),
    ) -> Daemon {
        let dir = TempDir::new("daemon");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        populate(&root);
        let socket = socket.map_or_else(|| dir.path().join("evshmd.sock"), Path::to_owned);
        let evshmd = env!("CARGO_BIN_EXE_evshmd");
        let (program, wrapped) = match wrapper {
            [program, rest @ ..] => (*program, [rest, &[evshmd]].concat()),
            [] => (evshmd, Vec::new()),
        };
        let child = Command::new(program)
            .args(wrapped)
            .arg("--root")
            .arg(&root)
            .arg("--socket")
            .arg(&socket)
            .arg("--log-level")
            .arg("warn")
            // Nothing provisioned unless a test asks: it would be memory held by every
            // daemon of the suite, and pages in the arenas the tests count.
            .args(if args.contains(&"--provision") { &[][..] } else { &["--provision", "0"] })
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("evshmd starts");
        // The watchdog holds a pidfd, opened before anything can reap the child: it names
        // this very process, so a kill after the test reaped it fails (ESRCH) instead of
        // hitting whatever process reused the pid.
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .expect("pidfd_open (Linux 5.3 or later)");
        std::thread::spawn(move || {
            std::thread::sleep(WATCHDOG);
            let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "evshmd did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
        let instance = instance_at(&socket);
        let shm_dir = args.iter().position(|a| *a == "--shm-dir").map_or(SHM_DIR, |i| args[i + 1]);
        Daemon { child, socket, dir, instance, shm_dir: PathBuf::from(shm_dir), killed: false }
    }

    /// The directory it serves.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's instance id, which names its arenas.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// A connected client.
    pub fn client(&self) -> evshm::Client {
        evshm::Client::connect(&self.socket).expect("client connects")
    }

    /// A raw connection for sending arbitrary bytes.
    pub fn raw(&self) -> RawConnection {
        let stream = UnixStream::connect(&self.socket).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        RawConnection { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream }
    }

    /// The arena files this daemon has in the shared-memory directory.
    pub fn arenas(&self) -> Vec<PathBuf> {
        arenas_in(&self.shm_dir, &self.instance)
    }

    /// The file whose lock says that it is alive.
    pub fn liveness(&self) -> PathBuf {
        liveness_in(&self.shm_dir, &self.instance)
    }

    /// Sends SIGTERM and waits for the exit, with a deadline.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "evshmd did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        self.signal(rustix::process::Signal::KILL);
        self.child.wait().unwrap();
        self.killed = true;
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.is_running() {
            let status = self.terminate();
            if !std::thread::panicking() {
                assert!(status.success(), "evshmd exited with {status}");
            }
        }
        if self.killed {
            return;
        }
        let leaked = self.arenas();
        for path in &leaked {
            let _ = std::fs::remove_file(path);
        }
        let liveness = self.liveness();
        let _ = std::fs::remove_file(&liveness);
        if !std::thread::panicking() {
            assert!(leaked.is_empty(), "evshmd left arenas behind: {leaked:?}");
            assert!(!self.socket.exists(), "evshmd left its socket behind");
            assert!(!liveness.exists(), "evshmd left {} behind", liveness.display());
            let lock = lock_of(&self.socket);
            assert!(!lock.exists(), "evshmd left {} behind", lock.display());
        }
    }
}

/// The instance id of the evshmd holding the lock of `socket`, from the lock file: read it
/// while the daemon runs (a clean shutdown removes the file).
pub fn instance_at(socket: &Path) -> String {
    let lock = lock_of(socket);
    let id = std::fs::read_to_string(&lock).unwrap_or_else(|e| panic!("{}: {e}", lock.display()));
    id.trim_end().to_owned()
}

/// The lock file of `socket`.
pub fn lock_of(socket: &Path) -> PathBuf {
    let mut lock = socket.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// The file whose lock says that this instance is alive, in [`SHM_DIR`].
pub fn liveness_of(instance: &str) -> PathBuf {
    liveness_in(Path::new(SHM_DIR), instance)
}

/// The file whose lock says that this instance is alive, in `shm_dir`.
pub fn liveness_in(shm_dir: &Path, instance: &str) -> PathBuf {
    shm_dir.join(format!("evshm-v2-{instance}.lock"))
}

/// Arena files of the evshmd instance with this id, in [`SHM_DIR`].
pub fn arenas_of(instance: &str) -> Vec<PathBuf> {
    arenas_in(Path::new(SHM_DIR), instance)
}

/// Arena files of the evshmd instance with this id, in `shm_dir`.
pub fn arenas_in(shm_dir: &Path, instance: &str) -> Vec<PathBuf> {
    let prefix = format!("evshm-v2-{instance}-");
    std::fs::read_dir(shm_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// A connection speaking raw lines.
#[derive(Debug)]
pub struct RawConnection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl RawConnection {
    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Reads one reply line as JSON; `None` if the daemon closed the connection.
    pub fn reply(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).unwrap() {
            0 => None,
            _ => Some(serde_json::from_str(&line).expect("reply is JSON")),
        }
    }

    /// Sends a request line and reads the reply.
    pub fn request(&mut self, json: &str) -> serde_json::Value {
        self.send(format!("{json}\n").as_bytes());
        self.reply().expect("a reply")
    }

    /// Another handle to write on the connection, for a thread of its own.
    pub fn writer(&self) -> UnixStream {
        self.writer.try_clone().unwrap()
    }
}

/// A Python interpreter with the evshm package and pyarrow: `$EVSHM_PYTHON` (the test
/// script sets it, and then it must work), else none and the caller skips, saying so.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("EVSHM_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None => {
            skip::skip("Python reader (set EVSHM_PYTHON to a python with evshm and pyarrow)");
            None
        }
    }
}

/// The `evshm` command-line tool, built beside evshmd by `cargo test --workspace`.
pub fn evshm_cli() -> PathBuf {
    let cli = Path::new(env!("CARGO_BIN_EXE_evshmd")).with_file_name("evshm");
    assert!(cli.is_file(), "{} is missing: run `cargo build --workspace` first", cli.display());
    cli
}

/// The synthetic events the recordings of these tests hold.
pub fn synthetic(events: u64) -> Synth {
    Synth::new(SynthConfig::events(events))
}

/// Writes a synthetic EVT3 recording of `events` events.
pub fn write_evt3(path: &Path, events: u64) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    evshm_formats::synth::write_evt3(SynthConfig::events(events), file).unwrap();
}

/// Waits until `done` says so, at most 10 s: for what another connection or process does
/// meanwhile (a release sent without waiting for its reply, a connection closed).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
