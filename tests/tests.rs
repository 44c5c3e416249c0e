//! Cross-process tests: a real `evshmd` child per test, real clients (this process, the
//! `evshm` CLI, the Python client), real recordings where `../shared/data/real` exists.

mod util;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use evshm::ClientError;
use evshm::protocol::ErrorCode;
use util::real::{Row, read_ipc_file, real_data, rows};
use util::{Daemon, TempDir, evshm_cli, python, segments_of, synthetic, write_evt3};

/// The real recordings: file name, format, width, height.
const REAL: [(&str, &str, u32, u32); 4] = [
    ("evt2_sample.raw", "evt2", 640, 480),
    ("evt3_sample.raw", "evt3", 1280, 720),
    ("evt3_test_pedestrians.raw", "evt3", 1280, 720),
    ("NCARS_obj_004397_td.dat", "dat", 304, 240),
];

/// Asserts that every buffer of every column lies inside the recording's mapping.
fn assert_zero_copy(recording: &evshm::Recording) {
    let mapping = recording.mapping().as_ptr_range();
    let (start, end) = (mapping.start as usize, mapping.end as usize);
    for batch in recording.batches() {
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let data = column.to_data();
            assert!(!data.buffers().is_empty());
            for buffer in data.buffers() {
                let at = buffer.as_ptr() as usize;
                assert!(
                    start <= at && at + buffer.len() <= end,
                    "column {} buffer at {at:#x} is outside the mapping {start:#x}..{end:#x}",
                    field.name()
                );
            }
        }
    }
}

fn daemon_code(error: ClientError) -> ErrorCode {
    match error {
        ClientError::Daemon { code, .. } => code,
        other => panic!("expected an error reply, got {other}"),
    }
}

#[test]
fn real_recordings_are_read_in_place_by_rust_and_python_event_for_event() {
    let Some(real) = real_data() else { return };
    let daemon = Daemon::start(|root| {
        for (name, ..) in REAL {
            std::fs::copy(real.join(name), root.join(name)).unwrap();
        }
    });
    let client = daemon.client();
    let out = TempDir::new("py");
    for (name, format, width, height) in REAL {
        let recording = client.open(name).unwrap();
        let expected = rows(&read_ipc_file(&real.join(format!("{name}.expected.arrow"))));
        assert_eq!(recording.rows(), expected.len() as u64, "{name}");
        assert_eq!(recording.batches().len(), 1, "{name}: one record batch per segment");
        assert_zero_copy(&recording);
        let got = rows(recording.batches());
        if let Some(i) = (0..expected.len()).find(|&i| got[i] != expected[i]) {
            panic!("{name}: event {i} is {:?}, expected {:?}", got[i], expected[i]);
        }
        let info = recording.info();
        assert_eq!((info.format.as_str(), info.width, info.height), (format, width, height));
        let metadata = recording.schema().metadata();
        assert_eq!(metadata["evshm.width"], width.to_string());
        assert_eq!(metadata["evshm.height"], height.to_string());
        assert_eq!(metadata["evshm.format"], format);
        assert_eq!(metadata["evshm.source"], name);

        let Some(python) = python() else { continue };
        let dump = out.path().join(format!("{name}.arrow"));
        let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/py_reader.py");
        let output = Command::new(python)
            .arg(support)
            .arg(&daemon.socket)
            .arg(name)
            .arg(&dump)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let segment = String::from_utf8(output.stdout).unwrap();
        assert_eq!(segment.trim(), info.segment.name, "both readers attach the same segment");
        assert_eq!(rows(&read_ipc_file(&dump)), got, "{name}: Python and Rust readers agree");
    }
    let stats = client.stats().unwrap();
    assert_eq!(stats.decodes, 4, "Python's opens were served from the resident segments");
}

#[test]
fn every_format_written_by_evshm_comes_back_identical_through_the_daemon() {
    let formats = ["evt3", "evt2", "evt21", "evt21-legacy", "dat", "text"];
    let daemon = Daemon::start(|root| {
        for format in formats {
            let out = root.join(format!("sample.{format}"));
            let output = Command::new(evshm_cli())
                .args(["generate", "--events", "30000", "--format", format])
                .arg(&out)
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        }
    });
    let expected: Vec<Row> =
        synthetic(30_000).map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
    let client = daemon.client();
    for format in formats {
        let recording = client.open(&format!("sample.{format}")).unwrap();
        assert_eq!(recording.info().format, format.trim_end_matches("-legacy"));
        assert_eq!(rows(recording.batches()), expected, "{format}");
    }
}

/// Decodes a whole file in this process, dropping nothing: what `evshm convert` wrote.
fn decode_file(path: &Path) -> Vec<Row> {
    let bytes = std::fs::read(path).unwrap();
    let detected = evshm_formats::detect(&bytes, None).unwrap();
    let mut decoder = evshm_formats::Decoder::new(detected.format);
    let mut sink = evshm_formats::VecSink::default();
    decoder.feed(&bytes[detected.data_offset..], &mut sink);
    decoder.finish(&mut sink);
    sink.events.iter().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect()
}

#[test]
fn the_cli_converts_between_every_format_and_to_arrow() {
    let dir = TempDir::new("convert");
    let source = dir.path().join("source.raw");
    write_evt3(&source, 20_000);
    let mut cases = vec![(source, decode_file(&dir.path().join("source.raw")))];
    if let Some(real) = real_data() {
        let expected = rows(&read_ipc_file(&real.join("evt3_sample.raw.expected.arrow")));
        cases.push((real.join("evt3_sample.raw"), expected));
    }
    for (input, expected) in cases {
        for (to, name) in [
            ("evt3", "out.raw"),
            ("evt2", "out.evt2.raw"),
            ("evt21", "out.evt21.raw"),
            ("evt21-legacy", "out.legacy.raw"),
            ("dat", "out.dat"),
            ("text", "out.csv"),
            ("arrow", "out.arrow"),
        ] {
            let output = dir.path().join(name);
            let run = Command::new(evshm_cli())
                .arg("convert")
                .arg(&input)
                .arg(&output)
                .args(["--to", to])
                .output()
                .unwrap();
            assert!(run.status.success(), "{to}: {}", String::from_utf8_lossy(&run.stderr));
            let got =
                if to == "arrow" { rows(&read_ipc_file(&output)) } else { decode_file(&output) };
            assert_eq!(got.len(), expected.len(), "{} to {to}", input.display());
            assert!(got == expected, "{} to {to}: events differ", input.display());
        }
    }
    let refused = Command::new(evshm_cli())
        .args(["convert", "missing.raw"])
        .arg(dir.path().join("x.unknown"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--to"));
}

/// A process's peak resident set, from `/proc/PID/status`.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn decoding_holds_no_copy_of_the_events_besides_the_segment() {
    let daemon = Daemon::start(|root| write_evt3(&root.join("big.raw"), 4_000_000));
    let input = std::fs::metadata(daemon.root().join("big.raw")).unwrap().len();
    let before = peak_rss_bytes(daemon.pid());
    let recording = daemon.client().open("big.raw").unwrap();
    let output = recording.info().segment.size;
    let peak = peak_rss_bytes(daemon.pid());
    // The small constant: the daemon's own start-up footprint plus read buffers.
    let allowance = before + 16 * 1024 * 1024;
    assert!(
        peak <= input + output * 11 / 10 + allowance,
        "peak RSS {peak} for a {input}-byte input and a {output}-byte segment (start {before})"
    );
}

#[test]
fn triggers_are_a_table_of_their_own() {
    use evshm::protocol::Table;
    use evshm_formats::{Encoder, Format, Geometry, Trigger, WordOrder};
    let formats = [
        ("a.evt3", Format::Evt3),
        ("a.evt2", Format::Evt2),
        ("a.evt21", Format::Evt21(WordOrder::Legacy)),
    ];
    let triggers: Vec<Trigger> = (0..300)
        .map(|i| Trigger { t: 1000 + i * 997, id: (i % 7) as u8, p: (i % 2) as u8 })
        .collect();
    let events: Vec<evshm_formats::Event> = synthetic(5000).collect();
    let daemon = Daemon::start(|root| {
        for (name, format) in formats {
            let geometry = Geometry { width: 1280, height: 720 };
            let mut encoder = Encoder::new(format, Vec::new(), geometry).unwrap();
            let (mut e, mut t) = (events.iter().peekable(), triggers.iter().peekable());
            // Interleave in time order, as a camera does.
            while e.peek().is_some() || t.peek().is_some() {
                match (e.peek(), t.peek()) {
                    (Some(ev), Some(tr)) if tr.t < ev.t => {
                        assert!(encoder.push_trigger(t.next().unwrap()).unwrap())
                    }
                    (Some(_), _) => encoder.push(e.next().unwrap()).unwrap(),
                    (None, _) => assert!(encoder.push_trigger(t.next().unwrap()).unwrap()),
                }
            }
            std::fs::write(root.join(name), encoder.finish().unwrap()).unwrap();
        }
    });
    let client = daemon.client();
    for (name, _) in formats {
        let table = client.open_table(name, Table::Triggers).unwrap();
        assert_eq!(table.info().table, Table::Triggers);
        let names: Vec<&str> = table.info().schema.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["t", "id", "p"]);
        assert_zero_copy(&table);
        let batch = &table.batches()[0];
        let t = batch.column(0).as_primitive::<arrow_array::types::Int64Type>();
        let id = batch.column(1).as_primitive::<arrow_array::types::Int16Type>();
        let p = batch.column(2).as_primitive::<arrow_array::types::Int8Type>();
        let got: Vec<(i64, i16, i8)> =
            (0..batch.num_rows()).map(|i| (t.value(i), id.value(i), p.value(i))).collect();
        let want: Vec<(i64, i16, i8)> =
            triggers.iter().map(|tr| (tr.t, i16::from(tr.id), tr.p as i8)).collect();
        assert_eq!(got, want, "{name}");
        let events_table = client.open(name).unwrap();
        assert_eq!(events_table.rows(), 5000, "{name}");
        assert!(events_table.info().cached, "both tables come from one decode");
    }
}

#[test]
fn aedat4_recordings_are_served_like_the_others() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../formats/tests/data/aedat4");
    let daemon = Daemon::start(|root| {
        for name in ["events_zstd.aedat4", "events_lz4.aedat4", "imu_events_lz4.aedat4"] {
            std::fs::copy(fixtures.join(name), root.join(name)).unwrap();
        }
    });
    let expected = rows(&read_ipc_file(&fixtures.join("events.expected.arrow")));
    let client = daemon.client();
    for name in ["events_zstd.aedat4", "events_lz4.aedat4", "imu_events_lz4.aedat4"] {
        let recording = client.open(name).unwrap();
        assert_eq!(recording.info().format, "aedat4");
        assert_eq!((recording.info().width, recording.info().height), (346, 260));
        assert_zero_copy(&recording);
        assert_eq!(rows(recording.batches()), expected, "{name}");
    }
    let listed: Vec<String> = client.list().unwrap().into_iter().map(|r| r.format).collect();
    assert_eq!(listed, ["aedat4", "aedat4", "aedat4"]);
}

#[test]
fn concurrent_opens_of_one_recording_decode_it_once() {
    let daemon = Daemon::start(|root| write_evt3(&root.join("big.raw"), 3_000_000));
    let readers = 4;
    let barrier = Arc::new(Barrier::new(readers));
    let handles: Vec<_> = (0..readers)
        .map(|_| {
            let (client, barrier) = (daemon.client(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let recording = client.open("big.raw").unwrap();
                (recording.info().segment.name.clone(), recording.rows(), recording.info().cached)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|r| r.0 == results[0].0 && r.1 == 3_000_000));
    assert_eq!(results.iter().filter(|r| !r.2).count(), 1, "exactly one open decoded");
    let stats = daemon.client().stats().unwrap();
    assert_eq!((stats.decodes, stats.cache_hits, stats.segments), (1, 3, 2));
}

#[test]
fn sigterm_removes_every_segment_and_the_socket_while_mappings_stay_valid() {
    let mut daemon = Daemon::start(|root| {
        write_evt3(&root.join("a.raw"), 10_000);
        write_evt3(&root.join("b.raw"), 20_000);
    });
    let client = daemon.client();
    let a = client.open("a.raw").unwrap();
    let b = client.open("b.raw").unwrap();
    let segments = daemon.segments();
    assert_eq!(segments.len(), 4, "an event and a trigger table per recording");
    for segment in &segments {
        let mode = segment.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o440, "segments are read-only and not world-readable");
    }
    let before = rows(a.batches());
    let pid = daemon.pid();
    assert!(daemon.terminate().success());
    assert!(segments_of(pid).is_empty(), "no segment left in /dev/shm");
    assert!(!daemon.socket.exists(), "socket removed");
    assert_eq!(rows(a.batches()), before, "a reader's mapping outlives the daemon");
    assert_eq!(b.batches()[0].num_rows(), 20_000);
    assert!(client.stats().is_err(), "requests fail once the daemon is gone");
}

#[test]
fn after_a_kill_readers_keep_their_data_and_a_restart_removes_the_leftovers() {
    let socket_dir = TempDir::new("restart");
    let socket = socket_dir.path().join("evshmd.sock");
    let mut first = Daemon::start_at(Some(&socket), |root| write_evt3(&root.join("a.raw"), 20_000));
    let client = first.client();
    let recording = client.open("a.raw").unwrap();
    let before = rows(recording.batches());
    let leftovers = first.segments();
    assert_eq!(leftovers.len(), 2);

    first.kill();
    assert!(leftovers.iter().all(|s| s.exists()), "a killed daemon cannot clean up");
    assert_eq!(rows(recording.batches()), before, "the reader's mapping is still valid");
    let error = client.stats().unwrap_err();
    assert!(matches!(error, ClientError::ConnectionLost(_)), "{error}");

    let second = Daemon::start_at(Some(&socket), |root| write_evt3(&root.join("a.raw"), 20_000));
    assert!(leftovers.iter().all(|s| !s.exists()), "the restarted daemon removed them");
    assert_eq!(rows(recording.batches()), before, "removing a mapped segment unmaps nothing");
    assert_eq!(second.client().open("a.raw").unwrap().rows(), 20_000);
}

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
    assert_eq!(raw.request(r#"{"op":"hello","version":1}"#)["ok"], true);
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

    let mut huge = vec![b'x'; evshm::protocol::MAX_REQUEST_LINE + 100];
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
fn a_file_without_geometry_loses_nothing_and_takes_one_from_the_request() {
    use evshm::OpenOptions;
    use evshm_formats::{Encoder, Format, Geometry};
    // A DAT file from a 640x480 sensor that does not say so.
    let events: Vec<evshm_formats::Event> =
        synthetic(3000).map(|e| evshm_formats::Event { x: e.x % 640, y: e.y % 480, ..e }).collect();
    let daemon = Daemon::start(|root| {
        let mut encoder =
            Encoder::new(Format::Dat, Vec::new(), Geometry { width: 640, height: 480 }).unwrap();
        events.iter().for_each(|e| encoder.push(e).unwrap());
        let file = encoder.finish().unwrap();
        let header_end = file.windows(2).position(|w| w == [12, 8]).unwrap();
        let mut unstated = b"% Version 2\n".to_vec();
        unstated.extend_from_slice(&file[header_end..]);
        std::fs::write(root.join("unstated.dat"), unstated).unwrap();
        std::fs::write(root.join("stated.dat"), file).unwrap();
    });
    let client = daemon.client();
    let expected: Vec<Row> =
        events.iter().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
    let guessed = client.open("unstated.dat").unwrap();
    assert_eq!((guessed.info().width, guessed.info().height), (304, 240));
    assert_eq!(guessed.schema().metadata()["evshm.geometry"], "default");
    assert_eq!(rows(guessed.batches()), expected, "a guessed geometry drops nothing");

    let given = client
        .open_with(
            "unstated.dat",
            OpenOptions { geometry: Some((640, 480)), ..OpenOptions::default() },
        )
        .unwrap();
    assert_eq!((given.info().width, given.info().height), (640, 480));
    assert_eq!(given.schema().metadata()["evshm.geometry"], "given");
    assert_eq!(rows(given.batches()), expected);
    assert!(!given.info().cached, "another geometry is another decode");

    let small = OpenOptions { geometry: Some((100, 100)), ..OpenOptions::default() };
    let cropped = client.open_with("unstated.dat", small).unwrap();
    let inside = expected.iter().filter(|r| r.1 < 100 && r.2 < 100).count();
    assert_eq!(cropped.rows(), inside as u64);
    assert_eq!(cropped.info().dropped, (expected.len() - inside) as u64);

    assert_eq!(
        daemon_code(client.open_with("stated.dat", small).unwrap_err()),
        ErrorCode::BadRequest
    );
    let mut raw = daemon.raw();
    raw.request(r#"{"op":"hello","version":1}"#);
    let reply = raw.request(r#"{"op":"open","path":"stated.dat","width":640}"#);
    assert_eq!(reply["error"]["code"], "bad_request");
}

#[test]
fn stalled_and_silent_connections_are_closed_but_idle_ones_kept() {
    let daemon = Daemon::start_with(None, &["--frame-timeout", "0.3"], |root| {
        write_evt3(&root.join("a.raw"), 1000);
    });
    let mut silent = daemon.raw();
    let mut stalled = daemon.raw();
    assert_eq!(stalled.request(r#"{"op":"hello","version":1}"#)["ok"], true);
    stalled.send(br#"{"op":"sta"#);
    let mut idle = daemon.raw();
    assert_eq!(idle.request(r#"{"op":"hello","version":1}"#)["ok"], true);

    let reply = stalled.reply().expect("an error before closing");
    assert_eq!(reply["error"]["code"], "bad_request");
    assert!(reply["error"]["message"].as_str().unwrap().contains("not finished"));
    assert!(stalled.reply().is_none(), "then the connection is closed");
    assert_eq!(silent.reply().expect("an error before closing")["error"]["code"], "hello_required");
    assert!(silent.reply().is_none());

    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(idle.request(r#"{"op":"stats"}"#)["ok"], true, "idle between requests is fine");
    assert_eq!(daemon.client().open("a.raw").unwrap().rows(), 1000);
}

#[test]
fn a_changed_file_is_decoded_anew_while_old_readers_keep_their_data() {
    let daemon = Daemon::start(|root| write_evt3(&root.join("a.raw"), 1000));
    let client = daemon.client();
    let old = client.open("a.raw").unwrap();
    let old_rows = rows(old.batches());
    // A new file under the same name (new inode), as a recorder rewriting it would leave.
    let path = daemon.root().join("a.raw");
    let replacement = daemon.root().join("a.raw.new");
    write_evt3(&replacement, 2500);
    std::fs::rename(&replacement, &path).unwrap();
    let new = client.open("a.raw").unwrap();
    assert_eq!(new.rows(), 2500);
    assert!(!new.info().cached);
    assert_ne!(new.info().segment.name, old.info().segment.name);
    assert_eq!(rows(old.batches()), old_rows, "the old generation is intact");
    let old_segment = old.info().segment.path.clone().unwrap();
    drop(old);
    assert!(!old_segment.exists(), "the old generation goes with its last lease");
    assert_eq!(client.stats().unwrap().decodes, 2);
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
    owner.request(r#"{"op":"hello","version":1}"#);
    stranger.request(r#"{"op":"hello","version":1}"#);
    let lease = owner.request(r#"{"op":"open","path":"a.raw"}"#)["lease"].as_u64().unwrap();
    let release = format!(r#"{{"op":"release","lease":{lease}}}"#);
    assert_eq!(stranger.request(&release)["error"]["code"], "unknown_lease");
    assert_eq!(owner.request(&release)["ok"], true);
    assert_eq!(owner.request(&release)["error"]["code"], "unknown_lease");
    assert_eq!(daemon.client().stats().unwrap().leases, 0);
}

#[test]
fn the_memory_budget_evicts_what_no_one_holds_and_never_what_someone_does() {
    // Each recording's two segments take about 261 KB: the budget holds one, not two.
    let args = ["--memory-budget", "400K", "--budget-wait", "0.3"];
    let daemon = Daemon::start_with(None, &args, |root| {
        write_evt3(&root.join("a.raw"), 20_000);
        write_evt3(&root.join("b.raw"), 20_000);
        write_evt3(&root.join("huge.raw"), 40_000);
    });
    let client = daemon.client();
    let a = client.open("a.raw").unwrap();
    let a_rows = rows(a.batches());
    let a_segment = a.info().segment.path.clone().unwrap();

    // A is leased: B must wait, then fail with an error that says why; A is untouched.
    let error = client.open("b.raw").unwrap_err();
    assert!(error.to_string().contains("memory budget"), "{error}");
    assert_eq!(daemon_code(error), ErrorCode::OverBudget);
    assert!(a_segment.exists());
    assert_eq!(rows(a.batches()), a_rows);

    // Released, A is evicted to make room for B; reopening A decodes it again.
    drop(a);
    let b = client.open("b.raw").unwrap();
    assert_eq!(b.rows(), 20_000);
    assert!(!a_segment.exists(), "A was evicted");
    drop(b);
    assert!(!client.open("a.raw").unwrap().info().cached);
    let stats = client.stats().unwrap();
    assert_eq!((stats.evictions, stats.decodes, stats.memory_budget), (2, 3, 400 << 10));
    assert!(stats.bytes_resident <= 400 << 10);
    assert!(stats.bytes_evicted > 2 * 250_000, "two recordings of ~261 KB evicted");
    assert_eq!(stats.bytes_leased, 0, "the reopened A is released");
    assert_eq!(stats.bytes_evictable, stats.bytes_resident);
    let me = std::process::id() as i32;
    assert!(
        stats.clients.iter().any(|c| c.pid == me && c.uid == rustix::process::getuid().as_raw())
    );

    // Larger than the whole budget: refused at once.
    assert_eq!(daemon_code(client.open("huge.raw").unwrap_err()), ErrorCode::OverBudget);
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// A process's current resident set, from `/proc/PID/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
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
        (open_fds(daemon.pid()), rss_bytes(daemon.pid()))
    };
    let (fds, rss) = settled();
    for i in 0..10_000 {
        let mut raw = daemon.raw();
        match i % 4 {
            0 => {}
            1 => raw.send(b"{\"op\":\"hel"),
            2 => raw.send(b"\x00\xff garbage\n"),
            _ => {
                raw.request(r#"{"op":"hello","version":1}"#);
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

#[test]
fn sixty_four_clients_share_a_working_set_larger_than_the_budget() {
    // Eight recordings of about 131 KB each; the budget holds about three.
    let names: Vec<String> = (0..8).map(|i| format!("r{i}.raw")).collect();
    let args = ["--memory-budget", "400K", "--budget-wait", "20"];
    let daemon = Daemon::start_with(None, &args, |root| {
        for (i, name) in names.iter().enumerate() {
            write_evt3(&root.join(name), 10_000 + i as u64);
        }
    });
    let checksum = |rows: &[Row]| {
        rows.iter().fold(0i64, |acc, r| {
            acc.wrapping_mul(31)
                .wrapping_add(r.0 ^ i64::from(r.1) << 20 ^ i64::from(r.2) << 40 ^ i64::from(r.3))
        })
    };
    let expected: Vec<(u64, i64)> = (0..8u64)
        .map(|i| {
            let rows: Vec<Row> =
                synthetic(10_000 + i).map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
            (rows.len() as u64, checksum(&rows))
        })
        .collect();
    let expected = Arc::new(expected);
    let barrier = Arc::new(Barrier::new(64));
    let workers: Vec<_> = (0..64)
        .map(|w| {
            let (client, barrier, expected) =
                (daemon.client(), Arc::clone(&barrier), Arc::clone(&expected));
            std::thread::spawn(move || {
                barrier.wait();
                for k in 0..12 {
                    let i = (w * 7 + k * 3) % 8;
                    let recording = client.open(&format!("r{i}.raw")).unwrap();
                    let got = rows(recording.batches());
                    assert_eq!((got.len() as u64, checksum(&got)), expected[i], "r{i}.raw");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a reader saw wrong data or an error");
    }
    let stats = daemon.client().stats().unwrap();
    assert!(stats.evictions > 0, "the working set does not fit: evictions must happen");
    assert_eq!(stats.leases, 0);
    assert!(stats.bytes_resident <= 400 << 10);
    assert!(daemon.segments().len() as u64 == stats.segments, "no segment outside the registry");
}

/// Runs the `evshm` CLI as `nobody` with no supplementary group, or `None` where this
/// process cannot switch users (not root, or no `setpriv`).
fn cli_as_nobody(socket: &Path, args: &[&str]) -> Option<(bool, String)> {
    let root = rustix::process::getuid().is_root();
    let setpriv = Path::new("/usr/bin/setpriv");
    if !root || !setpriv.exists() {
        eprintln!("SKIPPED: needs root and setpriv to run a client as another user");
        return None;
    }
    let output = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(evshm_cli())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    Some((output.status.success(), text))
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
    for segment in shared.segments() {
        let meta = segment.metadata().unwrap();
        assert_eq!((meta.gid(), meta.permissions().mode() & 0o777), (65534, 0o440));
    }

    let listed = Daemon::start_with(None, &["--group", "65534", "--allow-uid", "4242"], populate);
    let (ok, text) = cli_as_nobody(&listed.socket, &["stats"]).unwrap();
    assert!(!ok && text.contains("may not use this evshmd"), "not on the allow list: {text}");
    assert!(listed.client().stats().is_ok(), "the daemon's own user is always served");
    let by_group =
        Daemon::start_with(None, &["--group", "65534", "--allow-gid", "nogroup"], populate);
    assert!(cli_as_nobody(&by_group.socket, &["stats"]).unwrap().0, "allowed by group");
}

/// Not a test on its own: run by `killed_readers_lose_their_leases_and_no_one_else_does`
/// as a separate reader process, which opens a recording, says so and waits to be killed.
#[test]
fn reader_process() {
    let Some(socket) = std::env::var_os("EVSHM_TEST_READER_SOCKET") else { return };
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
            .args(["--exact", "reader_process", "--nocapture", "--test-threads", "1"])
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
    assert_eq!(observer.stats().unwrap().segments, 2, "still resident for the others");
}

#[test]
fn a_reader_in_the_group_can_neither_write_grow_shrink_nor_open_up_a_segment() {
    let daemon = Daemon::start_with(None, &["--group", "65534"], |root| {
        write_evt3(&root.join("a.raw"), 5000);
    });
    let client = daemon.client();
    let recording = client.open("a.raw").unwrap();
    let before = rows(recording.batches());
    let segment = recording.info().segment.path.as_ref().unwrap().to_str().unwrap().to_owned();
    let attempts = [
        format!("printf x >> {segment}"),
        format!("printf x | dd of={segment} conv=notrunc status=none"),
        format!("truncate -s 0 {segment}"),
        format!("truncate -s +1M {segment}"),
        format!("chmod 666 {segment}"),
        format!("rm -f {segment}"),
    ];
    if !rustix::process::getuid().is_root() {
        eprintln!("SKIPPED: needs root to run the attempts as another user");
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
    let meta = std::fs::metadata(&segment).unwrap();
    assert_eq!(
        (meta.len(), meta.permissions().mode() & 0o777),
        (recording.info().segment.size, 0o440)
    );
    assert_eq!(rows(recording.batches()), before, "readers see what the daemon wrote");
}

/// A small tmpfs mounted for a test, unmounted when dropped.
struct TinyTmpfs(TempDir);

impl TinyTmpfs {
    /// Mounts one of `size` (e.g. "256k"), or `None` where this process cannot mount.
    fn mount(size: &str) -> Option<TinyTmpfs> {
        let dir = TempDir::new("tmpfs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            Some(TinyTmpfs(dir))
        } else {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here (the memory-budget test covers a full budget)"
            );
            None
        }
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_shm_filesystem_is_a_clean_error_and_nothing_half_written_remains() {
    let Some(tmpfs) = TinyTmpfs::mount("256k") else { return };
    let shm_dir = tmpfs.0.path().to_str().unwrap().to_owned();
    let mut daemon =
        Daemon::start_with(None, &["--shm-dir", &shm_dir, "--memory-budget", "1G"], |root| {
            write_evt3(&root.join("small.raw"), 1000);
            write_evt3(&root.join("large.raw"), 50_000);
        });
    let client = daemon.client();
    let small = client.open("small.raw").unwrap();
    let error = client.open("large.raw").unwrap_err();
    assert!(error.to_string().contains("no room"), "{error}");
    assert_eq!(daemon_code(error), ErrorCode::ShmFull);
    let files = || std::fs::read_dir(tmpfs.0.path()).unwrap().count();
    assert_eq!(files(), 2, "only the small recording's two segments exist");
    assert_eq!(small.rows(), 1000);
    assert_eq!(client.open("small.raw").unwrap().rows(), 1000, "still serving");
    assert!(daemon.terminate().success());
    assert_eq!(files(), 0, "a clean shutdown leaves the filesystem empty");
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
    exchange("{\"op\":\"hello\",\"version\":1}\n".into());
    let (reply, mut fds) = exchange(format!("{{\"op\":\"open\",\"path\":\"{path}\"}}\n"));
    (reply, fds.pop().expect("a descriptor with the reply"))
}

#[test]
fn in_sealed_mode_nobody_can_change_a_segment_not_even_root() {
    use rustix::io::Errno;
    let daemon =
        Daemon::start_with(None, &["--sealed"], |root| write_evt3(&root.join("a.raw"), 5000));
    let client = daemon.client();
    let recording = client.open("a.raw").unwrap();
    let before = rows(recording.batches());
    assert_eq!(before.len(), 5000);
    assert!(recording.info().segment.path.is_none(), "no path: the descriptor is passed");
    assert_zero_copy(&recording);
    assert!(daemon.segments().is_empty(), "no file in /dev/shm, so nothing can leak");

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

/// A hugetlbfs mount with huge pages reserved for a test; everything restored on drop.
struct HugeTlbFs {
    dir: TempDir,
    previous_pages: String,
}

impl HugeTlbFs {
    const PAGES: &str = "/proc/sys/vm/nr_hugepages";

    /// Mounts one with `pages` huge pages available, or `None` where that cannot be done.
    fn mount(pages: u64) -> Option<HugeTlbFs> {
        let previous_pages = std::fs::read_to_string(Self::PAGES).ok()?.trim().to_owned();
        let wanted = previous_pages.parse::<u64>().ok()?.max(pages);
        let dir = TempDir::new("hugetlbfs");
        let reserved = std::fs::write(Self::PAGES, wanted.to_string()).is_ok()
            && std::fs::read_to_string(Self::PAGES).is_ok_and(|n| n.trim().parse() == Ok(wanted));
        let mounted = reserved
            && Command::new("mount")
                .args(["-t", "hugetlbfs", "none"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::write(Self::PAGES, &previous_pages);
            eprintln!("SKIPPED: cannot reserve huge pages and mount a hugetlbfs here");
            return None;
        }
        Some(HugeTlbFs { dir, previous_pages })
    }
}

impl Drop for HugeTlbFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
        let _ = std::fs::write(Self::PAGES, &self.previous_pages);
    }
}

#[test]
fn segments_can_live_on_hugetlbfs() {
    let Some(huge) = HugeTlbFs::mount(16) else { return };
    let dir = huge.dir.path().to_str().unwrap().to_owned();
    let mut daemon = Daemon::start_with(None, &["--shm-dir", &dir], |root| {
        write_evt3(&root.join("a.raw"), 20_000);
    });
    let client = daemon.client();
    let recording = client.open("a.raw").unwrap();
    let expected: Vec<Row> =
        synthetic(20_000).map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
    assert_eq!(rows(recording.batches()), expected);
    assert_zero_copy(&recording);
    let path = recording.info().segment.path.clone().unwrap();
    assert!(path.starts_with(huge.dir.path()));
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert!(
        file_len > recording.info().segment.size && file_len.is_multiple_of(2 << 20),
        "{file_len}"
    );
    assert_eq!(client.open_table("a.raw", evshm::protocol::Table::Triggers).unwrap().rows(), 0);
    assert!(daemon.terminate().success());
    assert_eq!(std::fs::read_dir(huge.dir.path()).unwrap().count(), 0);
    drop(recording);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let left = maps.lines().filter(|l| l.contains(huge.dir.path().to_str().unwrap())).count();
    assert_eq!(left, 0, "every hugetlbfs mapping was unmapped (whole huge pages)");
}

#[test]
fn leases_end_on_drop_and_when_the_connection_closes() {
    let daemon = Daemon::start(|root| write_evt3(&root.join("a.raw"), 5000));
    let observer = daemon.client();
    let client = daemon.client();
    let recording = client.open("a.raw").unwrap();
    let batch = recording.batches()[0].clone();
    assert_eq!(observer.stats().unwrap().leases, 1);
    drop(recording);
    assert_eq!(observer.stats().unwrap().leases, 0, "dropping the recording releases");
    assert_eq!(batch.num_rows(), 5000, "batches outlive the lease");

    let _held = client.open("a.raw").unwrap();
    let _also = client.open("a.raw").unwrap();
    assert_eq!(observer.stats().unwrap().leases, 2);
    let mut raw = daemon.raw();
    raw.request(r#"{"op":"hello","version":1}"#);
    raw.request(r#"{"op":"open","path":"a.raw"}"#);
    assert_eq!(observer.stats().unwrap().leases, 3);
    drop(raw);
    let deadline = Instant::now() + Duration::from_secs(10);
    while observer.stats().unwrap().leases != 2 {
        assert!(Instant::now() < deadline, "a closed connection's lease was not freed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_cli_lists_opens_and_reports() {
    let daemon = Daemon::start(|root| {
        std::fs::create_dir(root.join("day1")).unwrap();
        write_evt3(&root.join("day1/cam0.raw"), 12_345);
        std::fs::write(root.join("readme.txt"), b"not a recording").unwrap();
    });
    let cli = |args: &[&str]| {
        let output = Command::new(evshm_cli())
            .arg("--socket")
            .arg(&daemon.socket)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        (output.status.success(), text, String::from_utf8(output.stderr).unwrap())
    };
    let (ok, listing, _) = cli(&["ls"]);
    assert!(ok);
    assert!(listing.contains("day1/cam0.raw") && listing.contains("evt3"), "{listing}");
    assert!(!listing.contains("readme.txt"), "non-recordings are not listed");

    let (ok, opened, _) = cli(&["open", "day1/cam0.raw"]);
    assert!(ok);
    let fields: HashMap<&str, &str> =
        opened.lines().filter_map(|l| l.split_once(' ')).map(|(k, v)| (k, v.trim())).collect();
    assert_eq!(fields["rows"], "12345");
    assert_eq!(fields["format"], "evt3 1280x720");
    assert_eq!(fields["schema"], "t: int64, x: int16, y: int16, p: int8");
    assert!(fields["attach"].ends_with("(map + Arrow IPC open, no copy)"));
    assert!(fields["segment"].contains("decoded now"));
    assert!(cli(&["open", "day1/cam0.raw"]).1.contains("cached"));

    let (ok, stats, _) = cli(&["stats"]);
    assert!(ok && stats.contains("decodes") && stats.contains("cache_hits"), "{stats}");
    assert!(stats.contains("bytes_evictable") && stats.contains("shm_free"), "{stats}");
    assert!(stats.contains("evshm-rust/"), "each client is listed with its name: {stats}");
    let (ok, _, error) = cli(&["open", "nope.raw"]);
    assert!(!ok && error.contains("no file nope.raw"), "{error}");
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
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));
    assert!(daemon.client().list().unwrap().is_empty(), "the first daemon still serves");

    // A socket file nobody listens on, as a killed daemon leaves behind.
    let stale = empty.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let replacement = Daemon::start_at(Some(&stale), |_| {});
    assert!(replacement.client().list().unwrap().is_empty());
}
