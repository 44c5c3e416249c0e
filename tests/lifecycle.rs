//! The daemon's life: clean shutdown, kill -9 and restart, killed readers, one daemon
//! per socket.

use super::*;

#[test]
fn sigterm_removes_every_arena_and_the_socket_while_mappings_stay_valid() {
    let mut daemon = Daemon::start(|root| {
        write_evt3(&root.join("a.raw"), 10_000);
        write_evt3(&root.join("b.raw"), 20_000);
    });
    let client = daemon.client();
    let a = client.open("a.raw").unwrap();
    let b = client.open("b.raw").unwrap();
    let arenas = daemon.arenas();
    assert_eq!(arenas.len(), 1, "both recordings in one arena");
    for arena in &arenas {
        let mode = arena.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o440, "arenas are read-only and not world-readable");
    }
    let before = rows(a.batches());
    let instance = daemon.instance().to_owned();
    assert!(daemon.terminate().success());
    assert!(arenas_of(&instance).is_empty(), "no arena left in /dev/shm");
    assert!(!util::liveness_of(&instance).exists(), "no liveness file left in /dev/shm");
    assert!(!daemon.socket.exists(), "socket removed");
    assert!(!util::lock_of(&daemon.socket).exists(), "and its lock file, last");
    assert_eq!(rows(a.batches()), before, "a reader's mapping outlives the daemon");
    assert_eq!(b.batches()[0].num_rows(), 20_000);
    assert!(client.stats().is_err(), "requests fail once the daemon is gone");
}

#[test]
fn after_a_kill_readers_keep_their_data_and_a_restart_removes_the_leftovers() {
    let socket_dir = TempDir::new("restart");
    let socket = socket_dir.path().join("evshmd.sock");
    // A shared-memory directory of this test's own: in /dev/shm, any daemon another test
    // starts meanwhile would remove the killed one's arenas first.
    let shm = socket_dir.path().join("shm");
    std::fs::create_dir(&shm).unwrap();
    let args = ["--shm-dir", shm.to_str().unwrap()];
    let populate = |root: &Path| write_evt3(&root.join("a.raw"), 20_000);
    let mut first = Daemon::start_with(Some(&socket), &args, populate);
    let client = first.client();
    let recording = client.open("a.raw").unwrap();
    let before = rows(recording.batches());
    let leftovers = first.arenas();
    assert_eq!(leftovers.len(), 1);

    first.kill();
    assert!(leftovers.iter().all(|s| s.exists()), "a killed daemon cannot clean up");
    assert_eq!(rows(recording.batches()), before, "the reader's mapping is still valid");
    let error = client.stats().unwrap_err();
    assert!(matches!(error, ClientError::ConnectionLost(_)), "{error}");

    let second = Daemon::start_with(Some(&socket), &args, populate);
    assert!(leftovers.iter().all(|s| !s.exists()), "the restarted daemon removed them");
    assert!(!first.liveness().exists(), "and the dead one's liveness file");
    assert_ne!(first.instance(), second.instance());
    assert_eq!(rows(recording.batches()), before, "removing a mapped arena unmaps nothing");
    assert_eq!(second.client().open("a.raw").unwrap().rows(), 20_000);
}

/// Not a test on its own (so ignored, and shown as such): run by
/// `killed_readers_lose_their_leases_and_no_one_else_does` as a separate reader process,
/// which opens a recording, says so and waits to be killed.
#[test]
#[ignore = "a reader process of killed_readers_lose_their_leases_and_no_one_else_does"]
fn reader_process() {
    let socket = std::env::var_os("EVSHM_TEST_READER_SOCKET").expect("run by its parent test");
    let client = evshm::Client::connect(socket).unwrap();
    let recording = client.open("a.raw").unwrap();
    assert_eq!(recording.rows(), 20_000);
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}

/// Waits until a child says "ready" on its standard output.
fn wait_ready(child: &mut std::process::Child) {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let ready = std::io::BufReader::new(stdout).lines().any(|l| l.unwrap().contains("ready"));
    assert!(ready, "the reader never got ready");
}

#[test]
fn killed_readers_lose_their_leases_and_no_one_else_does() {
    let daemon = Daemon::start(|root| write_evt3(&root.join("a.raw"), 20_000));
    let observer = daemon.client();
    let mine = observer.open("a.raw").unwrap();
    let mine_rows = rows(mine.batches());

    let mut readers = vec![
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "lifecycle::reader_process", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env("EVSHM_TEST_READER_SOCKET", &daemon.socket)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ];
    if let Some(python) = python() {
        let script = "import sys, time, evshm\n\
                      rec = evshm.Client(sys.argv[1]).open('a.raw')\n\
                      assert rec.table.num_rows == 20000\n\
                      print('ready', flush=True)\n\
                      time.sleep(60)\n";
        readers.push(
            Command::new(python)
                .args(["-c", script])
                .arg(&daemon.socket)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for reader in &mut readers {
        wait_ready(reader);
    }
    assert_eq!(observer.stats().unwrap().leases, 1 + readers.len() as u64);
    for reader in &mut readers {
        reader.kill().unwrap();
        reader.wait().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while observer.stats().unwrap().leases != 1 {
        assert!(Instant::now() < deadline, "a killed reader's lease was not freed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rows(mine.batches()), mine_rows, "the other reader is unaffected");
    assert_eq!(observer.stats().unwrap().extents, 1, "still resident for the others");
}

#[test]
fn a_second_daemon_is_refused_and_a_stale_socket_replaced() {
    let daemon = Daemon::start(|_| {});
    let empty = TempDir::new("second");
    let second = Command::new(env!("CARGO_BIN_EXE_evshmd"))
        .args(["--root", empty.path().to_str().unwrap(), "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(3), "the status of a socket another daemon serves");
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));
    assert!(daemon.client().list().unwrap().is_empty(), "the first daemon still serves");

    // A socket file nobody listens on, as a killed daemon leaves behind.
    let stale = empty.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let replacement = Daemon::start_at(Some(&stale), |_| {});
    assert!(replacement.client().list().unwrap().is_empty());
}

/// Regression: a client outside the daemon's pid namespace (a daemon in a container, a
/// client on the host) was refused with `internal: no peer credentials`, since the kernel
/// reports its pid as 0.
#[test]
fn a_daemon_in_its_own_pid_namespace_serves_clients_outside_it() {
    let dir = TempDir::new("pidns");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    write_evt3(&root.join("a.raw"), 5_000);
    let socket = dir.path().join("evshmd.sock");
    let Some(mut namespace) = PidNamespaceDaemon::start(&root, &socket) else { return };
    let client = evshm::Client::connect(&socket).expect("served across pid namespaces");
    let recording = client.open("a.raw").unwrap();
    assert_eq!(recording.rows(), 5_000);
    let stats = client.stats().unwrap();
    assert_eq!(stats.clients.len(), 1);
    assert_eq!(stats.clients[0].pid, 0, "the kernel reports a pid outside the namespace as 0");
    assert_eq!(stats.clients[0].uid, rustix::process::getuid().as_raw());
    drop((recording, client));
    namespace.stop();
}

/// Regression: a daemon that is PID 1 of its pid namespace (as in a container) never
/// removed what a killed predecessor left, since their file names carried the same pid.
#[test]
fn a_pid_1_daemon_removes_what_a_killed_pid_1_predecessor_left() {
    let dir = TempDir::new("pidns-restart");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    write_evt3(&root.join("a.raw"), 5_000);
    let socket = dir.path().join("evshmd.sock");
    let Some(mut first) = PidNamespaceDaemon::start(&root, &socket) else { return };
    let client = evshm::Client::connect(&socket).unwrap();
    let recording = client.open("a.raw").unwrap();
    let instance = util::instance_at(&socket);
    let shm = first.shm.clone();
    let leftovers = util::arenas_in(&shm, &instance);
    assert_eq!(leftovers.len(), 1, "one arena");
    first.kill();
    assert!(leftovers.iter().all(|s| s.exists()), "a killed daemon cannot clean up");

    let mut second = PidNamespaceDaemon::start(&root, &socket).expect("it started once");
    assert!(leftovers.iter().all(|s| !s.exists()), "the new PID 1 removed them");
    assert!(!util::liveness_in(&shm, &instance).exists());
    assert_eq!(recording.rows(), 5_000, "a reader's mapping outlives the removal");
    let again = evshm::Client::connect(&socket).unwrap().open("a.raw").unwrap();
    assert_eq!(again.rows(), 5_000);
    let serving = util::instance_at(&socket);
    drop(again);
    second.stop();
    assert!(util::arenas_in(&shm, &serving).is_empty());
    assert!(!util::liveness_in(&shm, &serving).exists());
}

/// evshmd as PID 1 of a new pid namespace (`unshare --pid --fork`), as in a container,
/// with a shared-memory directory beside its socket (in /dev/shm, a daemon of another test
/// could remove a killed one's arenas first).
struct PidNamespaceDaemon {
    unshare: KillOnDrop,
    socket: PathBuf,
    shm: PathBuf,
}

impl PidNamespaceDaemon {
    /// Starts it, or skips the test (`None`) where pid namespaces cannot be made.
    fn start(root: &Path, socket: &Path) -> Option<PidNamespaceDaemon> {
        let shm = socket.with_file_name("shm");
        std::fs::create_dir_all(&shm).unwrap();
        // --kill-child: should the test die, the daemon goes with unshare.
        let spawned = Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child"])
            .arg(env!("CARGO_BIN_EXE_evshmd"))
            .arg("--root")
            .arg(root)
            .arg("--socket")
            .arg(socket)
            .arg("--shm-dir")
            .arg(&shm)
            .args(["--log-level", "warn", "--provision", "0"])
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut unshare = match spawned {
            Ok(child) => KillOnDrop(child),
            Err(e) => {
                util::skip::skip(&format!("cannot run unshare: {e}"));
                return None;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            if let Some(status) = unshare.0.try_wait().unwrap() {
                let mut why = String::new();
                let _ = std::io::Read::read_to_string(unshare.0.stderr.as_mut().unwrap(), &mut why);
                util::skip::skip(&format!("no daemon in a new pid namespace ({status}): {why}"));
                return None;
            }
            assert!(Instant::now() < deadline, "evshmd did not start in its pid namespace");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(PidNamespaceDaemon { unshare, socket: socket.to_owned(), shm })
    }

    /// The daemon, seen from here: unshare's only child.
    fn daemon(&self) -> rustix::process::Pid {
        let children = format!("/proc/{0}/task/{0}/children", self.unshare.0.id());
        let pid: i32 = std::fs::read_to_string(children).unwrap().trim().parse().unwrap();
        rustix::process::Pid::from_raw(pid).unwrap()
    }

    /// Stops it with SIGTERM (unshare ignores SIGTERM while it waits, then follows its
    /// child) and checks that it stopped cleanly.
    fn stop(&mut self) {
        rustix::process::kill_process(self.daemon(), rustix::process::Signal::TERM).unwrap();
        assert!(self.unshare.0.wait().unwrap().success(), "evshmd stopped cleanly");
        assert!(!self.socket.exists(), "evshmd removed its socket");
    }

    /// Kills it with SIGKILL, as a crash would; its namespace ends with it.
    fn kill(&mut self) {
        rustix::process::kill_process(self.daemon(), rustix::process::Signal::KILL).unwrap();
        assert!(!self.unshare.0.wait().unwrap().success());
    }
}

/// A child killed if the test fails before it ends (unshare's `--kill-child` then takes
/// the daemon with it): a daemon left behind would hold the test's output open.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
