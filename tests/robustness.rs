//! Bad input and bad clients: hostile files, malformed or stalled requests, lease
//! limits and misuse, a storm of connections.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

#[test]
fn bad_requests_get_named_errors_and_the_daemon_keeps_serving() {
    let outside = TempDir::new("outside");
    std::fs::write(outside.path().join("x.raw"), b"% evt 3.0\n").unwrap();
    let daemon = Daemon::start(|root| {
        write_evt3(&root.join("good.raw"), 1000);
        std::fs::write(root.join("notes.txt"), b"just some text\n").unwrap();
    });
    let client = daemon.client();
    let outside_file = outside.path().join("x.raw");
    let cases = [
        ("missing.raw", ErrorCode::NotFound, "missing.raw"),
        ("../good.raw", ErrorCode::BadPath, ".."),
        (outside_file.to_str().unwrap(), ErrorCode::OutsideRoots, "outside"),
        ("notes.txt", ErrorCode::UnsupportedFormat, "not an event recording"),
    ];
    for (path, code, says) in cases {
        let error = client.open(path).unwrap_err();
        assert!(error.to_string().contains(says), "{path}: {error}");
        assert_eq!(daemon_code(error), code, "{path}");
        assert_eq!(client.open("good.raw").unwrap().rows(), 1000, "still serving after {path}");
    }

    let mut raw = daemon.raw();
    assert_eq!(raw.request(r#"{"op":"list"}"#)["error"]["code"], "hello_required");
    assert_eq!(
        raw.request(r#"{"op":"hello","version":99}"#)["error"]["code"],
        "unsupported_version"
    );
    assert_eq!(raw.request(r#"{"op":"hello","version":3}"#)["ok"], true);
    for (line, code) in [
        ("{not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        (r#"{"op":"open"}"#, "bad_request"),
        (r#"{"op":"teleport"}"#, "unknown_op"),
        (r#"{"op":"release","lease":12345}"#, "unknown_lease"),
    ] {
        let reply = raw.request(line);
        assert_eq!(reply["ok"], false, "{line}");
        assert_eq!(reply["error"]["code"], code, "{line}");
        assert!(!reply["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(raw.request(r#"{"op":"open","path":"good.raw"}"#)["rows"], 1000);

    let mut huge = vec![b'x'; evshm::MAX_REQUEST_LINE + 100];
    huge.push(b'\n');
    raw.send(&huge);
    assert_eq!(raw.reply().unwrap()["error"]["code"], "frame_too_large");
    assert!(raw.reply().is_none(), "the daemon closes a connection it cannot resync");

    assert_eq!(daemon.client().open("good.raw").unwrap().rows(), 1000);
    assert!(daemon.client().stats().unwrap().errors >= 12);
}

#[test]
fn hostile_files_get_clean_errors_or_counted_drops_and_the_daemon_keeps_serving() {
    // A deterministic byte soup, different on every line of the sensor.
    let garbage: Vec<u8> =
        (0u32..400_000).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let daemon = Daemon::start(|root| {
        write_evt3(&root.join("good.raw"), 50_000);
        let good = std::fs::read(root.join("good.raw")).unwrap();
        std::fs::write(root.join("empty.raw"), b"").unwrap();
        std::fs::write(root.join("header_only.raw"), b"% evt 3.0\n% system_ID 48\n").unwrap();
        let mut soup = b"% format EVT3;width=1280;height=720\n".to_vec();
        soup.extend_from_slice(&garbage);
        std::fs::write(root.join("garbage.raw"), soup).unwrap();
        std::fs::write(root.join("truncated.raw"), &good[..good.len() - 1]).unwrap();
        let stated = b"height=720;width=1280";
        let at = good.windows(stated.len()).position(|w| w == stated).unwrap();
        let mut lying = good[..at].to_vec();
        lying.extend_from_slice(b"height=100;width=200");
        lying.extend_from_slice(&good[at + stated.len()..]);
        std::fs::write(root.join("lying.raw"), lying).unwrap();
        std::fs::write(root.join("bad_size.dat"), b"% Version 2\n\x0c\x10").unwrap();
    });
    let client = daemon.client();
    let error = |path: &str| daemon_code(client.open(path).unwrap_err());
    assert_eq!(error("empty.raw"), ErrorCode::UnsupportedFormat);
    assert_eq!(error("bad_size.dat"), ErrorCode::UnsupportedFormat);
    assert_eq!(client.open("header_only.raw").unwrap().rows(), 0);

    let good = client.open("good.raw").unwrap();
    let truncated = client.open("truncated.raw").unwrap();
    let (all, cut) = (rows(good.batches()), rows(truncated.batches()));
    assert!(cut.len() < all.len() && all.starts_with(&cut), "a truncated word is not an event");

    let lying = client.open("lying.raw").unwrap();
    let kept = rows(lying.batches());
    let inside: Vec<Row> = all.iter().copied().filter(|&(_, x, y, _)| x < 200 && y < 100).collect();
    assert_eq!(kept, inside, "events outside the stated sensor are dropped");
    assert_eq!(lying.info().dropped, (all.len() - inside.len()) as u64);
    assert_zero_copy(&lying);

    let soup = client.open("garbage.raw").unwrap();
    assert!(rows(soup.batches()).iter().all(|&(_, x, y, p)| x < 1280 && y < 720 && p <= 1));
    assert_zero_copy(&soup);
    assert_eq!(client.open("good.raw").unwrap().rows(), 50_000, "still serving");
}

#[test]
fn stalled_and_silent_connections_are_closed_but_idle_ones_kept() {
    let daemon = Daemon::start_with(None, &["--frame-timeout", "0.3"], |root| {
        write_evt3(&root.join("a.raw"), 1000);
    });
    let mut silent = daemon.raw();
    let mut stalled = daemon.raw();
    assert_eq!(stalled.request(r#"{"op":"hello","version":3}"#)["ok"], true);
    stalled.send(br#"{"op":"sta"#);
    let mut idle = daemon.raw();
    assert_eq!(idle.request(r#"{"op":"hello","version":3}"#)["ok"], true);

    let reply = stalled.reply().expect("an error before closing");
    assert_eq!(reply["error"]["code"], "bad_request");
    assert!(reply["error"]["message"].as_str().unwrap().contains("not finished"));
    assert!(stalled.reply().is_none(), "then the connection is closed");
    assert_eq!(silent.reply().expect("an error before closing")["error"]["code"], "hello_required");
    assert!(silent.reply().is_none());

    // A line that trickles in, a byte every half frame timeout: each read is in time,
    // the line is not, and it is cut off while the drip is still going.
    let mut dripping = daemon.raw();
    assert_eq!(dripping.request(r#"{"op":"hello","version":3}"#)["ok"], true);
    let mut tap = dripping.writer();
    let dripped = Arc::new(AtomicBool::new(false));
    let drip = std::thread::spawn({
        let dripped = Arc::clone(&dripped);
        move || {
            let _ = tap.write_all(b"{");
            for _ in 0..40 {
                std::thread::sleep(Duration::from_millis(150));
                if tap.write_all(b" ").is_err() {
                    return;
                }
            }
            dripped.store(true, Ordering::SeqCst);
        }
    });
    let reply = dripping.reply().expect("an error before closing");
    assert!(!dripped.load(Ordering::SeqCst), "cut off only when the drip stopped");
    assert_eq!(reply["error"]["code"], "bad_request");
    drip.join().unwrap();

    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(idle.request(r#"{"op":"stats"}"#)["ok"], true, "idle between requests is fine");
    assert_eq!(daemon.client().open("a.raw").unwrap().rows(), 1000);
}

#[test]
fn a_connection_holds_at_most_max_leases() {
    let daemon = Daemon::start_with(None, &["--max-leases", "2"], |root| {
        write_evt3(&root.join("a.raw"), 100);
    });
    let client = daemon.client();
    let first = client.open("a.raw").unwrap();
    let _second = client.open("a.raw").unwrap();
    assert_eq!(daemon_code(client.open("a.raw").unwrap_err()), ErrorCode::TooManyLeases);
    assert!(daemon.client().open("a.raw").is_ok(), "other connections are not affected");
    drop(first);
    assert!(client.open("a.raw").is_ok(), "released, there is room again");
}

#[test]
fn double_and_foreign_releases_are_refused() {
    let daemon = Daemon::start(|root| write_evt3(&root.join("a.raw"), 100));
    let mut owner = daemon.raw();
    let mut stranger = daemon.raw();
    owner.request(r#"{"op":"hello","version":3}"#);
    stranger.request(r#"{"op":"hello","version":3}"#);
    let lease = owner.request(r#"{"op":"open","path":"a.raw"}"#)["lease"].as_u64().unwrap();
    let release = format!(r#"{{"op":"release","lease":{lease}}}"#);
    assert_eq!(stranger.request(&release)["error"]["code"], "unknown_lease");
    assert_eq!(owner.request(&release)["ok"], true);
    assert_eq!(owner.request(&release)["error"]["code"], "unknown_lease");
    assert_eq!(daemon.client().stats().unwrap().leases, 0);
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn a_storm_of_connections_leaks_no_descriptor_and_no_memory() {
    let daemon = Daemon::start(|root| write_evt3(&root.join("a.raw"), 1000));
    let observer = daemon.client();
    drop(observer.open("a.raw").unwrap());
    let settled = || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while observer.stats().unwrap().connections > 1 {
            assert!(Instant::now() < deadline, "connections were not closed");
            std::thread::sleep(Duration::from_millis(10));
        }
        (open_fds(daemon.pid()), status_bytes(daemon.pid(), "VmRSS:"))
    };
    let (fds, rss) = settled();
    for i in 0..10_000 {
        let mut raw = daemon.raw();
        match i % 4 {
            0 => {}
            1 => raw.send(b"{\"op\":\"hel"),
            2 => raw.send(b"\x00\xff garbage\n"),
            _ => {
                raw.request(r#"{"op":"hello","version":3}"#);
                raw.request(r#"{"op":"open","path":"a.raw"}"#);
            }
        }
    }
    let (fds_after, rss_after) = settled();
    let stats = observer.stats().unwrap();
    assert_eq!((stats.leases, stats.decodes), (0, 1));
    // A connection or two may be between accept and bookkeeping when we look; a leak
    // would show as thousands over 10,000 connections.
    assert!(fds_after <= fds + 2, "descriptors grew from {fds} to {fds_after}");
    let grown = rss_after.saturating_sub(rss);
    assert!(grown < 16 << 20, "RSS grew by {grown} bytes over 10,000 connections");
}

/// Regression: about 510 idle connections after `hello` exhausted a daemon under
/// `ulimit -n 1024`; new clients were reset and opens on live connections failed with
/// `internal: Too many open files`.
#[test]
fn connections_beyond_the_cap_are_refused_and_the_served_keep_working() {
    // 256 open files: --max-connections defaults to (256 - 128) / 4 = 32.
    let daemon = Daemon::start_under(&["prlimit", "--nofile=256:256"], None, &[], |root| {
        write_evt3(&root.join("a.raw"), 1000);
    });
    let client = daemon.client();
    let mut idle: Vec<util::RawConnection> = Vec::new();
    let refused = loop {
        let mut raw = daemon.raw();
        let reply = raw.request(r#"{"op":"hello","version":3}"#);
        if reply["ok"] == true {
            idle.push(raw);
            assert!(idle.len() < 200, "no cap on connections");
            continue;
        }
        break (reply, raw);
    };
    assert_eq!(idle.len() + 1, 32, "the client and the idle ones make the cap");
    assert_eq!(refused.0["error"]["code"], "too_many_connections");
    assert!(refused.0["error"]["message"].as_str().unwrap().contains("--max-connections"));
    let (_, mut refused) = refused;
    assert!(refused.reply().is_none(), "then closed");
    // Those served keep everything they need: descriptors for decodes, opens, releases.
    for _ in 0..100 {
        assert_eq!(client.open("a.raw").unwrap().rows(), 1000);
    }
    idle.truncate(20);
    // The daemon counts a connection out once it sees it closed: soon, not at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.raw().request(r#"{"op":"hello","version":3}"#)["ok"] != true {
        assert!(Instant::now() < deadline, "closed connections make no room");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `events` as a text export without a header, columns in `order` (letters of `txyp`),
/// times in seconds with a decimal point if `seconds`.
fn headerless_csv(events: &[Row], order: &str, seconds: bool) -> String {
    let mut text = String::new();
    for &(t, x, y, p) in events {
        let fields: Vec<String> = (order.chars())
            .map(|c| match c {
                't' if seconds => format!("{:.6}", t as f64 / 1e6),
                't' => t.to_string(),
                'x' => x.to_string(),
                'y' => y.to_string(),
                _ => p.to_string(),
            })
            .collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    text
}

/// Issue 15: a header-less `t x y p` export could be read as `x y t p` and nearly every
/// line skipped, with the client told nothing. Each order below decodes every line.
#[test]
fn headerless_csv_in_any_column_order_decodes_every_line() {
    let events: Vec<Row> =
        synthetic(100_000).map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
    let orders = [("txyp", false), ("xytp", false), ("txyp", true), ("ptxy", false)];
    let daemon = Daemon::start(|root| {
        for (order, seconds) in orders {
            let name = format!("{order}{}.csv", if seconds { "-s" } else { "" });
            std::fs::write(root.join(name), headerless_csv(&events, order, seconds)).unwrap();
        }
    });
    let client = daemon.client();
    for (order, seconds) in orders {
        let name = format!("{order}{}.csv", if seconds { "-s" } else { "" });
        let recording = client.open(&name).unwrap();
        let info = recording.info();
        assert_eq!((info.format.as_str(), info.skipped, info.dropped), ("text", 0, 0), "{name}");
        assert_eq!(rows(recording.batches()), events, "{name}");
    }
}

/// Malformed lines reach the client as `skipped`, and `evshm convert` warns of them; a
/// window reports them all too (a text file is one chunk). The Python client's side is
/// `tests/python/test_text.py`.
#[test]
fn malformed_csv_lines_are_reported_as_skipped() {
    let events: Vec<Row> =
        synthetic(10_000).map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
    let bad = [
        "nope".to_owned(),
        "1,2,3".to_owned(),
        "1,2,3,1,5".to_owned(),
        "1,2,3,7".to_owned(),
        "1,-2,3,1".to_owned(),
        "1,2.5,3,1".to_owned(),
        "9".repeat(300),
    ];
    // Past the lines detection looks at, among the good ones; comments and empty lines
    // are not events and not malformed.
    let good = headerless_csv(&events, "txyp", false);
    let mut text = String::from("# exported by hand\n\n");
    for (i, line) in good.lines().enumerate() {
        text.push_str(line);
        text.push('\n');
        if i >= 100 && i % 1_000 == 0 && i / 1_000 <= bad.len() {
            text.push_str(&bad[i / 1_000 - 1]);
            text.push('\n');
        }
    }
    let daemon = Daemon::start(|root| std::fs::write(root.join("bad.csv"), &text).unwrap());
    let client = daemon.client();
    let recording = client.open("bad.csv").unwrap();
    assert_eq!(rows(recording.batches()), events);
    assert_eq!((recording.info().skipped, recording.info().dropped), (bad.len() as u64, 0));
    let (t0, t1) = (events[1_000].0, events[2_000].0);
    let window = client.open_window("bad.csv", t0, t1).unwrap();
    assert!(window.rows() > 0);
    assert_eq!(window.info().skipped, bad.len() as u64, "the chunk's, for any window");

    let out = TempDir::new("bad-csv");
    let converted = Command::new(evshm_cli())
        .arg("convert")
        .arg(daemon.root().join("bad.csv"))
        .arg(out.path().join("good.csv"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&converted.stderr);
    assert!(converted.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("warning: {} records skipped", bad.len())), "{stderr}");
}
