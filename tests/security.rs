//! Who may read and who may write: groups and allow lists with a client running as
//! another user, permission bits, and sealed arenas that no one but evshmd can change.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// `program` run as user `uid`, group `gid` and supplementary `groups` (`setpriv`), or
/// `None` where this process cannot switch users (not root, or no `setpriv`).
fn as_user(uid: u32, gid: u32, groups: &[u32], program: &Path) -> Option<Command> {
    let root = rustix::process::getuid().is_root();
    let setpriv = Path::new("/usr/bin/setpriv");
    if !root || !setpriv.exists() {
        util::skip::skip("needs root and setpriv to run a client as another user");
        return None;
    }
    let mut command = Command::new(setpriv);
    command.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}"));
    match groups {
        [] => command.arg("--clear-groups"),
        _ => command.arg(format!(
            "--groups={}",
            groups.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        )),
    };
    command.arg(program);
    Some(command)
}

/// What a command printed, and whether it succeeded.
fn outcome(command: &mut Command) -> (bool, String) {
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// Runs the `evshm` CLI as `nobody` with no supplementary group, or `None` where this
/// process cannot switch users.
fn cli_as_nobody(socket: &Path, args: &[&str]) -> Option<(bool, String)> {
    let mut cli = as_user(65534, 65534, &[], &evshm_cli())?;
    Some(outcome(cli.arg("--socket").arg(socket).args(args)))
}

#[test]
fn other_users_need_the_group_and_the_allow_list() {
    let populate = |root: &Path| write_evt3(&root.join("a.raw"), 1000);
    let private = Daemon::start(populate);
    let Some((ok, text)) = cli_as_nobody(&private.socket, &["stats"]) else { return };
    assert!(!ok && text.contains("ermission denied"), "without --group: {text}");

    let shared = Daemon::start_with(None, &["--group", "65534"], populate);
    let (ok, text) = cli_as_nobody(&shared.socket, &["open", "a.raw"]).unwrap();
    assert!(ok && text.contains("rows      1000"), "a member of the group opens and maps: {text}");
    for arena in shared.arenas() {
        let meta = arena.metadata().unwrap();
        assert_eq!((meta.gid(), meta.permissions().mode() & 0o777), (65534, 0o440));
    }

    let listed = Daemon::start_with(None, &["--group", "65534", "--allow-uid", "4242"], populate);
    let (ok, text) = cli_as_nobody(&listed.socket, &["stats"]).unwrap();
    assert!(!ok && text.contains("may not use this evshmd"), "not on the allow list: {text}");
    let own = listed.client();
    assert!(own.stats().is_ok(), "the daemon's own user is always served");
    // Regression: members of --group who were not allowed could map every segment file (now arenas).
    let opened = own.open("a.raw").unwrap();
    assert!(opened.info().arenas[0].path.is_none(), "an allow list implies --sealed");
    assert!(listed.arenas().is_empty(), "no arena file anyone could open");
    drop(opened);
    let by_group =
        Daemon::start_with(None, &["--group", "65534", "--allow-gid", "nogroup"], populate);
    assert!(cli_as_nobody(&by_group.socket, &["stats"]).unwrap().0, "allowed by group");
}

#[test]
fn a_reader_in_the_group_can_neither_write_grow_shrink_nor_open_up_an_arena() {
    let daemon = Daemon::start_with(None, &["--group", "65534"], |root| {
        write_evt3(&root.join("a.raw"), 5000);
    });
    let client = daemon.client();
    let recording = client.open("a.raw").unwrap();
    let before = rows(recording.batches());
    let arena = recording.info().arenas[0].path.as_ref().unwrap().to_str().unwrap().to_owned();
    let attempts = [
        format!("printf x >> {arena}"),
        format!("printf x | dd of={arena} conv=notrunc status=none"),
        format!("truncate -s 0 {arena}"),
        format!("truncate -s +1M {arena}"),
        format!("chmod 666 {arena}"),
        format!("rm -f {arena}"),
    ];
    if !rustix::process::getuid().is_root() {
        util::skip::skip("needs root to run the attempts as another user");
        return;
    }
    for attempt in attempts {
        let status = Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c"])
            .arg(&attempt)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "`{attempt}` succeeded as a group member");
    }
    let meta = std::fs::metadata(&arena).unwrap();
    assert_eq!(
        (meta.len(), meta.permissions().mode() & 0o777),
        (recording.info().arenas[0].size, 0o440)
    );
    assert_eq!(rows(recording.batches()), before, "readers see what the daemon wrote");
}

/// Opens `path` on a raw connection and returns the reply with the descriptor that came
/// with it.
fn open_receiving_fd(socket: &Path, path: &str) -> (serde_json::Value, std::os::fd::OwnedFd) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::io::{IoSliceMut, Write};
    use std::mem::MaybeUninit;
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let mut exchange = |line: String| {
        stream.write_all(line.as_bytes()).unwrap();
        let mut reply = Vec::new();
        let mut fds = Vec::new();
        while !reply.ends_with(b"\n") {
            let mut chunk = [0u8; 4096];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let got = rustix::net::recvmsg(
                &stream,
                &mut [IoSliceMut::new(&mut chunk)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )
            .unwrap();
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = message {
                    fds.extend(received);
                }
            }
            assert!(got.bytes > 0);
            reply.extend_from_slice(&chunk[..got.bytes]);
        }
        (serde_json::from_slice::<serde_json::Value>(&reply).unwrap(), fds)
    };
    exchange("{\"op\":\"hello\",\"version\":3}\n".into());
    let (reply, mut fds) = exchange(format!("{{\"op\":\"open\",\"path\":\"{path}\"}}\n"));
    (reply, fds.pop().expect("a descriptor with the reply"))
}

#[test]
fn in_sealed_mode_nobody_can_change_an_arena_not_even_root() {
    use rustix::io::Errno;
    let daemon =
        Daemon::start_with(None, &["--sealed"], |root| write_evt3(&root.join("a.raw"), 5000));
    let client = daemon.client();
    let recording = client.open("a.raw").unwrap();
    let before = rows(recording.batches());
    assert_eq!(before.len(), 5000);
    assert!(recording.info().arenas[0].path.is_none(), "no path: the descriptor is passed");
    assert_zero_copy(&recording);
    assert!(daemon.arenas().is_empty(), "no file in /dev/shm, so nothing can leak");

    let (reply, fd) = open_receiving_fd(&daemon.socket, "a.raw");
    assert_eq!(reply["rows"], 5000);
    assert_eq!(rustix::io::write(&fd, b"x"), Err(Errno::PERM));
    assert_eq!(rustix::io::pwrite(&fd, b"x", 100), Err(Errno::PERM));
    assert_eq!(rustix::fs::ftruncate(&fd, 0), Err(Errno::PERM));
    assert_eq!(rustix::fs::ftruncate(&fd, 1 << 20), Err(Errno::PERM));
    let file = std::fs::File::from(fd);
    // SAFETY: a test of the kernel refusing a writable shared map; nothing is written.
    assert!(unsafe { memmap2::MmapMut::map_mut(&file) }.is_err());
    let reopened = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file)));
    if let Ok(mut again) = reopened {
        assert!(std::io::Write::write_all(&mut again, b"x").is_err(), "reopened, still sealed");
    }
    assert_eq!(rows(recording.batches()), before, "readers see what the daemon wrote");
    assert_eq!(client.open("a.raw").unwrap().rows(), 5000);
}

/// Regression: the path was checked once, then reopened by name for detection, indexing
/// and every decode, so a client opening `race.raw` while another process swapped it with
/// a link to a file outside the roots was served the outside file's events (1,409 `ok`
/// replies in 30 s), and a swap with a FIFO blocked connection threads in `open()`.
#[test]
fn a_path_swapped_for_a_link_or_a_fifo_never_serves_anything_else() {
    use rustix::fs::{CWD, FileType, Mode, RenameFlags};
    let outside = TempDir::new("outside");
    let secret = outside.path().join("secret.raw");
    write_evt3(&secret, 2_000);
    let daemon = Daemon::start(|root| {
        write_evt3(&root.join("race.raw"), 1_000);
        std::os::unix::fs::symlink(&secret, root.join("link.raw")).unwrap();
        rustix::fs::mknodat(CWD, root.join("fifo.raw"), FileType::Fifo, Mode::RUSR, 0).unwrap();
    });
    let root = daemon.root();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = std::thread::spawn({
        let (root, stop) = (root.clone(), Arc::clone(&stop));
        move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for other in ["link.raw", "fifo.raw"] {
                    let (race, other) = (root.join("race.raw"), root.join(other));
                    // Swapped and back: race.raw is the link (or the FIFO) in between.
                    for _ in 0..2 {
                        rustix::fs::renameat_with(CWD, &race, CWD, &other, RenameFlags::EXCHANGE)
                            .unwrap();
                        swaps += 1;
                    }
                }
            }
            swaps
        }
    });
    let client = daemon.client();
    let (mut served, mut refused) = (0, 0);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        match client.open("race.raw") {
            Ok(recording) => {
                served += 1;
                assert_eq!(recording.rows(), 1_000, "served another file's events");
            }
            Err(ClientError::Daemon { code, message }) => {
                refused += 1;
                // A link or a FIFO at the path, or the file exchanged between the look
                // at its version and its opening.
                let expected =
                    [ErrorCode::OutsideRoots, ErrorCode::NotFound, ErrorCode::CorruptRecording];
                assert!(expected.contains(&code), "{code:?}: {message}");
            }
            Err(other) => panic!("{other}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(
        swaps > 1000 && served > 0 && refused > 0,
        "{swaps} swaps, {served} ok, {refused} refused"
    );
    assert_eq!(client.open("race.raw").unwrap().rows(), 1_000, "still serving");
}

/// Regression: a process of the daemon's own uid could `chmod` a segment and rewrite it,
/// or truncate it (readers then die of SIGBUS), and the daemon kept serving it to every
/// later open. An arena changed so is now retired: what it holds is decoded anew into
/// another.
#[test]
fn an_arena_changed_by_the_daemons_own_uid_is_not_served_again() {
    let daemon = Daemon::start(|root| {
        write_evt3(&root.join("a.raw"), 3_000);
        write_evt3(&root.join("b.raw"), 3_000);
    });
    let client = daemon.client();
    let path_of = |recording: &evshm::Recording| {
        recording.info().arenas[0].path.clone().expect("a named arena")
    };
    for (name, change) in [("a.raw", "chmod"), ("b.raw", "truncate")] {
        let first = client.open(name).unwrap();
        let arena = path_of(&first);
        drop(first);
        let again = client.open(name).unwrap();
        assert!(again.info().cached && path_of(&again) == arena, "unchanged: served as is");
        drop(again);
        match change {
            "chmod" => std::fs::set_permissions(&arena, PermissionsExt::from_mode(0o666)),
            _ => std::fs::OpenOptions::new().write(true).open(&arena).and_then(|f| f.set_len(0)),
        }
        .unwrap();
        let fresh = client.open(name).unwrap();
        assert!(!fresh.info().cached, "{change}: decoded anew");
        assert_ne!(path_of(&fresh), arena, "{change}: not the changed arena");
        assert_eq!(fresh.rows(), 3_000);
    }
}

/// A user id for a test of its own, unused on this machine, so that its fallback socket
/// directory `/tmp/evshm-<uid>` is the test's alone.
fn unused_uid(offset: u32) -> u32 {
    40_000 + (std::process::id() % 10_000) * 4 + offset
}

/// The fallback directory of `uid`, gone when dropped.
struct FallbackDir(PathBuf);

impl FallbackDir {
    fn of(uid: u32) -> FallbackDir {
        let dir = PathBuf::from(format!("/tmp/evshm-{uid}"));
        let _ = std::fs::remove_dir_all(&dir);
        FallbackDir(dir)
    }
}

impl Drop for FallbackDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An evshmd started by a test as another user; stopped with SIGTERM when dropped.
struct Served {
    child: std::process::Child,
    socket: PathBuf,
}

impl Served {
    /// evshmd, as `command` says (a `setpriv` wrapper), listening at `socket` once started.
    fn start(command: &mut Command, socket: &Path) -> Served {
        let child = command.args(["--log-level", "warn", "--provision", "0"]).spawn().unwrap();
        let mut served = Served { child, socket: socket.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            let exited = served.child.try_wait().unwrap();
            assert!(exited.is_none(), "evshmd exited at start with {exited:?}");
            assert!(Instant::now() < deadline, "evshmd did not start at {}", socket.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        served
    }

    /// Stops it and checks it stopped cleanly, leaving nothing behind.
    fn stop(mut self) {
        // Read while it runs: a clean shutdown removes the lock file that holds it.
        let instance = util::instance_at(&self.socket);
        assert!(self.terminate().success(), "evshmd stopped cleanly");
        assert!(!self.socket.exists(), "evshmd removed its socket");
        assert!(arenas_of(&instance).is_empty() && !util::liveness_of(&instance).exists());
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

/// Regression: another user could listen first on the victim's fallback socket: the
/// victim's evshmd would not start, and the victim's clients took the impostor's replies
/// and mapped its files (dying of SIGBUS when it truncated them).
#[test]
fn a_squatted_fallback_socket_is_refused_by_clients_and_by_evshmd() {
    let evshmd = Path::new(env!("CARGO_BIN_EXE_evshmd"));
    let victim = unused_uid(0);
    let fallback = FallbackDir::of(victim);
    let socket = fallback.0.join("evshm.sock");
    let files = TempDir::new("squat");
    write_evt3(&files.path().join("a.raw"), 1000);
    // The squatter (nobody) makes the victim's directory first and listens in it: a real
    // evshmd, which would answer with arenas of its own.
    std::fs::create_dir(&fallback.0).unwrap();
    std::fs::set_permissions(&fallback.0, PermissionsExt::from_mode(0o755)).unwrap();
    rustix::fs::chown(&fallback.0, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
    let Some(mut impostor) = as_user(65534, 65534, &[], evshmd) else { return };
    let squatted = Served::start(
        impostor.arg("--root").arg(files.path()).arg("--socket").arg(&socket),
        &socket,
    );
    let as_victim = |program: &Path| {
        let mut command = as_user(victim, victim, &[], program).unwrap();
        command.env_remove("EVSHM_SOCKET").env_remove("XDG_RUNTIME_DIR");
        command.env_remove("EVSHM_DAEMON_UID");
        command
    };
    let not_private = format!(
        "/tmp/evshm-{victim} belongs to uid 65534, not to uid {victim}: another user may have \
         made it to catch this user's connections"
    );
    let (ok, text) = outcome(as_victim(&evshm_cli()).args(["open", "a.raw"]));
    let refused = format!("refusing evshmd at {}: {not_private}", socket.display());
    assert!(!ok && text.contains(&refused), "the victim's client: {text}");
    let (ok, text) = outcome(as_victim(evshmd).arg("--root").arg(files.path()));
    let advice = "; remove it, or give --socket, $EVSHM_SOCKET or $XDG_RUNTIME_DIR";
    assert!(!ok && text.contains(&format!("{not_private}{advice}")), "victim's evshmd: {text}");
    squatted.stop();

    // Given a squatter's socket by path, the victim's client still looks at who listens:
    // besides itself and root, only a daemon user named in EVSHM_DAEMON_UID.
    let public = TempDir::new("squat-public");
    std::fs::set_permissions(public.path(), PermissionsExt::from_mode(0o1777)).unwrap();
    let squat = public.path().join("squat.sock");
    // Open to the victim, as a squatter would make it.
    let Some(mut impostor) = as_user(65534, 65534, &[victim], evshmd) else { return };
    let impostor = impostor.arg("--root").arg(files.path()).arg("--socket").arg(&squat);
    let squatted = Served::start(impostor.args(["--group", &victim.to_string()]), &squat);
    let mut stats = as_victim(&evshm_cli());
    let (ok, text) = outcome(stats.arg("--socket").arg(&squat).arg("stats"));
    let owner = "the socket file belongs to uid 65534, not one this client trusts";
    assert!(!ok && text.contains(owner), "{text}");
    let mut stats = as_victim(&evshm_cli());
    let trusting = stats.env("EVSHM_DAEMON_UID", "65534").arg("--socket").arg(&squat);
    let (ok, text) = outcome(trusting.arg("stats"));
    assert!(ok, "a daemon user the client names is trusted: {text}");
    squatted.stop();

    // With the squatter's directory gone, the victim's evshmd makes its own, private.
    std::fs::remove_dir_all(&fallback.0).unwrap();
    let own = Served::start(as_victim(evshmd).arg("--root").arg(files.path()), &socket);
    let meta = std::fs::symlink_metadata(&fallback.0).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o7777), (victim, 0o700));
    let (ok, text) = outcome(as_victim(&evshm_cli()).args(["open", "a.raw"]));
    assert!(ok && text.contains("rows      1000"), "the victim's own daemon: {text}");
    own.stop();
}

/// A daemon run by a service account (neither root nor the reader) with a group of its
/// own: a member of the group reads once it names the daemon's user; a reader outside the
/// group cannot connect; a reader who does not name the daemon's user refuses it.
#[test]
fn a_service_account_daemon_serves_its_group_to_readers_who_trust_it() {
    let evshmd = Path::new(env!("CARGO_BIN_EXE_evshmd"));
    let (service, member, stranger) = (unused_uid(1), unused_uid(2), unused_uid(3));
    let group = service;
    let files = TempDir::new("service");
    write_evt3(&files.path().join("a.raw"), 1000);
    // The service's socket directory, as a service manager would make it.
    let run = TempDir::new("service-run");
    rustix::fs::chown(run.path(), Some(rustix::fs::Uid::from_raw(service)), None).unwrap();
    std::fs::set_permissions(run.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let socket = run.path().join("evshm.sock");
    let Some(mut daemon) = as_user(service, service, &[], evshmd) else { return };
    let daemon = daemon.arg("--root").arg(files.path()).arg("--socket").arg(&socket);
    let served = Served::start(daemon.args(["--group", &group.to_string()]), &socket);
    let open = |uid: u32, groups: &[u32], trust: bool| {
        let mut command = as_user(uid, uid, groups, &evshm_cli()).unwrap();
        command.env_remove("EVSHM_DAEMON_UID");
        if trust {
            command.env("EVSHM_DAEMON_UID", service.to_string());
        }
        outcome(command.arg("--socket").arg(&socket).args(["open", "a.raw"]))
    };
    let (ok, text) = open(member, &[group], true);
    assert!(ok && text.contains("rows      1000"), "a member who trusts the service: {text}");
    let (ok, text) = open(member, &[group], false);
    let owner = format!("the socket file belongs to uid {service}, not one this client trusts");
    assert!(!ok && text.contains(&owner), "a member who does not: {text}");
    let (ok, text) = open(stranger, &[], true);
    assert!(!ok && text.contains("ermission denied"), "not in the group: {text}");
    served.stop();
}
