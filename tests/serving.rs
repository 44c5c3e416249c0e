//! Serving recordings: real ones read in place by Rust and Python, every format, both
//! tables, decode-once, geometry, new generations, leases and the CLI.

use super::*;

/// The real recordings: file name, format, width, height.
const REAL: [(&str, &str, u32, u32); 4] = [
    ("evt2_sample.raw", "evt2", 640, 480),
    ("evt3_sample.raw", "evt3", 1280, 720),
    ("evt3_test_pedestrians.raw", "evt3", 1280, 720),
    ("NCARS_obj_004397_td.dat", "dat", 304, 240),
];

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
        assert_eq!(recording.batches().len(), 1, "{name}: one record batch per chunk");
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
        let printed = String::from_utf8(output.stdout).unwrap();
        let extent = &info.chunks[0].extent;
        let arena = &info.arenas[extent.arena as usize].name;
        let expected = format!("{arena} {} {}", extent.offset, extent.size);
        assert_eq!(printed.trim(), expected, "both readers read the same extent");
        assert_eq!(rows(&read_ipc_file(&dump)), got, "{name}: Python and Rust readers agree");
    }
    let stats = client.stats().unwrap();
    assert_eq!(stats.decodes, 4, "Python's opens were served from the resident chunks");
}

#[test]
fn every_format_written_by_evshm_comes_back_identical_through_the_daemon() {
    let formats = ["evt3", "evt2", "evt21", "evt21-legacy", "dat", "text"];
    // A chunk per 64 KiB of input: the binary formats come in several.
    let daemon = Daemon::start_with(None, &["--chunk-events", "1"], |root| {
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
    let times: Vec<i64> = expected.iter().map(|r| r.0).collect();
    let (first, last) = (times[0], times[times.len() - 1]);
    for format in formats {
        let path = format!("sample.{format}");
        let recording = client.open(&path).unwrap();
        assert_eq!(recording.info().format, format.trim_end_matches("-legacy"));
        assert_eq!(rows(recording.batches()), expected, "{format}");
        if format != "text" {
            assert!(recording.info().chunks.len() > 1, "{format} is in chunks");
        }
        for (start, end) in [(first, first + 300), ((first + last) / 2, last), (last, last + 1)] {
            let window = client.open_window(&path, start, end).unwrap();
            let from = times.partition_point(|&t| t < start);
            let to = times.partition_point(|&t| t < end);
            assert_eq!(rows(window.batches()), expected[from..to], "{format} [{start}, {end})");
        }
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
            convert(&input, &output, to);
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

#[test]
fn triggers_are_a_table_of_their_own() {
    use evshm::Table;
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
        let names: Vec<String> = table.schema().fields().iter().map(|f| f.name().clone()).collect();
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

/// A fixture of `formats/tests/data/peers`: the file, its format's name, and the events
/// its reference reader reads (DVS128's in jAER's orientation, see
/// `formats/tests/peers.rs`).
type Fixture = (&'static str, &'static str, Vec<Row>);

/// The folder of the peers' fixtures, and each of them.
fn dataset_fixtures() -> (PathBuf, Vec<Fixture>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../formats/tests/data/peers");
    let expected = |name: &str| rows(&read_ipc_file(&dir.join(format!("{name}.expected.arrow"))));
    let dvs128 = expected("dvs128").into_iter().map(|(t, x, y, p)| (t, 127 - y, 127 - x, 1 - p));
    let cases = vec![
        ("n_mnist.bin", "atis_bin", expected("n_mnist")),
        ("dvs_faery.es", "es", expected("dvs_faery")),
        ("atis.es", "es", expected("atis")),
        ("dvs128.aedat", "aedat2", dvs128.collect()),
        ("davis346_aps_imu.aedat", "aedat2", expected("davis346")),
        ("gesture_mixed.aedat", "aedat3", expected("gesture")),
    ];
    (dir, cases)
}

#[test]
fn the_formats_of_datasets_are_served_in_chunks_and_windows() {
    let (dir, cases) = dataset_fixtures();
    let daemon = Daemon::start_with(None, &["--chunk-events", "100"], |root| {
        for (name, ..) in &cases {
            std::fs::copy(dir.join(name), root.join(name)).unwrap();
        }
    });
    let client = daemon.client();
    for (name, format, expected) in &cases {
        let recording = client.open(name).unwrap();
        assert_eq!(recording.info().format, *format);
        assert_zero_copy(&recording);
        assert_eq!(&rows(recording.batches()), expected, "{name}");
        let times: Vec<i64> = expected.iter().map(|r| r.0).collect();
        let (first, last) = (times[0], times[times.len() - 1]);
        for (start, end) in [(first, first + 300), ((first + last) / 2, last), (last, last + 1)] {
            let window = client.open_window(name, start, end).unwrap();
            let from = times.partition_point(|&t| t < start);
            let to = times.partition_point(|&t| t < end);
            assert_eq!(rows(window.batches()), expected[from..to], "{name} [{start}, {end})");
        }
    }
    let mut listed: Vec<(String, String)> =
        client.list().unwrap().into_iter().map(|r| (r.path, r.format)).collect();
    listed.sort();
    let mut want: Vec<(String, String)> =
        cases.iter().map(|(name, format, _)| (name.to_string(), format.to_string())).collect();
    want.sort();
    assert_eq!(listed, want);
}

/// Files larger than a chunk step (64 KiB) of each new format, written by evshm's
/// encoders, come in several chunks, each decoded on its own.
#[test]
fn the_formats_of_datasets_come_in_chunks() {
    use evshm_formats::synth::{Synth, SynthConfig};
    use evshm_formats::{Aedat2Chip, Encoder, EsKind, EsLayout, Format, Geometry};
    let davis240 = Geometry { width: 240, height: 180 };
    let hd = Geometry { width: 1280, height: 720 };
    let cases = [
        ("a.aedat", Format::Aedat3, hd),
        ("a.es", Format::EventStream(EsLayout { kind: EsKind::Dvs, height: 0 }), hd),
        ("atis.es", Format::EventStream(EsLayout { kind: EsKind::Atis, height: 0 }), hd),
        ("b.aedat", Format::Aedat2(Aedat2Chip::Davis240), davis240),
        ("a.bin", Format::AtisBin, davis240),
    ];
    let events =
        |geometry| Synth::new(SynthConfig { geometry, events: 40_000, ..SynthConfig::default() });
    let daemon = Daemon::start_with(None, &["--chunk-events", "1000"], |root| {
        for (name, format, geometry) in cases {
            let mut encoder = Encoder::new(format, Vec::new(), geometry).unwrap();
            events(geometry).for_each(|e| encoder.push(&e).unwrap());
            std::fs::write(root.join(name), encoder.finish().unwrap()).unwrap();
        }
    });
    let client = daemon.client();
    for (name, _, geometry) in cases {
        let expected: Vec<Row> =
            events(geometry).map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
        let recording = client.open(name).unwrap();
        assert!(recording.info().chunks.len() > 1, "{name} is in chunks");
        assert_eq!(rows(recording.batches()), expected, "{name}");
    }
}

#[test]
fn the_cli_writes_the_formats_of_datasets() {
    let dir = TempDir::new("convert-datasets");
    let source = dir.path().join("source.raw");
    write_evt3(&source, 20_000);
    let synthetic = decode_file(&source);
    let (fixtures, _) = dataset_fixtures();
    let cases = [
        (source.clone(), "aedat3", "out.aedat"),
        (source.clone(), "es", "out.es"),
        (source, "es-atis", "out.atis.es"),
        (fixtures.join("n_mnist.bin"), "atis-bin", "out.bin"),
        (fixtures.join("davis346_aps_imu.aedat"), "aedat2", "out2.aedat"),
    ];
    for (input, to, name) in cases {
        let output = dir.path().join(name);
        convert(&input, &output, to);
        let expected = if to.starts_with("aedat3") || to.starts_with("es") {
            synthetic.clone()
        } else {
            decode_file(&input)
        };
        let got = decode_file(&output);
        assert_eq!(got.len(), expected.len(), "{to}");
        assert!(got == expected, "{} to {to}: events differ", input.display());
    }
}

/// HDF5 recordings (read by `evshm convert` only, for now) convert to Arrow with what h5py
/// reads from them, and to another format; their metadata names the layout and geometry.
#[test]
fn the_cli_converts_hdf5_recordings() {
    let dir = TempDir::new("convert-hdf5");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../formats/tests/data/hdf5");
    for (name, format, geometry) in [
        ("dsec", "hdf5_dsec", "640"),
        ("mvsec", "hdf5_mvsec", "346"),
        ("metavision_ecf", "hdf5_metavision", "1280"),
    ] {
        let output = dir.path().join(format!("{name}.arrow"));
        let run = Command::new(evshm_cli())
            .arg("convert")
            .arg(fixtures.join(format!("{name}.h5")))
            .arg(&output)
            .output()
            .unwrap();
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        let batches = read_ipc_file(&output);
        let expected = name.trim_end_matches("_ecf");
        let want = rows(&read_ipc_file(&fixtures.join(format!("{expected}.expected.arrow"))));
        assert!(rows(&batches) == want, "{name}: events differ");
        let metadata = batches[0].schema().metadata().clone();
        assert_eq!(metadata["evshm.format"], format);
        assert_eq!(metadata["evshm.width"], geometry);
        assert_eq!(metadata["evshm.geometry"], "default");
    }
    let convert = |input: &str, output: &Path| {
        let run = Command::new(evshm_cli())
            .arg("convert")
            .arg(fixtures.join(input))
            .arg(output)
            .output()
            .unwrap();
        (run.status.success(), String::from_utf8_lossy(&run.stderr).into_owned())
    };
    let es = dir.path().join("metavision.es");
    let (ok, stderr) = convert("metavision_ecf.h5", &es);
    assert!(ok, "{stderr}");
    assert_eq!(decode_file(&es), rows(&read_ipc_file(&fixtures.join("metavision.expected.arrow"))));
    // DSEC's absolute times (t_offset added) would take terabytes of Event Stream overflow
    // bytes: refused, saying why.
    let (ok, stderr) = convert("dsec.h5", &dir.path().join("dsec.es"));
    assert!(!ok && stderr.contains("shift the times to start near 0"), "{stderr}");
}

#[test]
fn hello_names_the_daemon_and_its_roots_in_search_order() {
    let other = TempDir::new("second-root");
    let link = other.path().join("via-link");
    std::os::unix::fs::symlink(other.path(), &link).unwrap();
    let daemon = Daemon::start_with(None, &["--root", link.to_str().unwrap()], |_| {});
    let client = daemon.client();
    assert_eq!(client.server(), format!("evshmd/{}", env!("CARGO_PKG_VERSION")));
    let canonical = |path: &Path| path.canonicalize().unwrap();
    assert_eq!(client.roots(), [canonical(&daemon.root()), canonical(other.path())]);
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
                (
                    recording.info().chunks[0].extent.clone(),
                    recording.rows(),
                    recording.info().cached,
                )
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|r| r.0 == results[0].0 && r.1 == 3_000_000));
    assert_eq!(results.iter().filter(|r| !r.2).count(), 1, "exactly one open decoded");
    let stats = daemon.client().stats().unwrap();
    assert_eq!((stats.decodes, stats.cache_hits, stats.extents), (1, 3, 1));
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
    raw.request(r#"{"op":"hello","version":3}"#);
    let reply = raw.request(r#"{"op":"open","path":"stated.dat","width":640}"#);
    assert_eq!(reply["error"]["code"], "bad_request");
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
    assert_ne!(new.info().chunks[0].extent, old.info().chunks[0].extent);
    assert_eq!(rows(old.batches()), old_rows, "the old generation is intact");
    assert_eq!(client.stats().unwrap().extents, 2);
    drop(old);
    assert_eq!(client.stats().unwrap().extents, 1, "the old generation goes with its last lease");
    assert_eq!(client.stats().unwrap().decodes, 2);
}

#[test]
fn leases_follow_the_buffers_and_end_when_the_connection_closes() {
    let daemon = Daemon::start(|root| write_evt3(&root.join("a.raw"), 5000));
    let observer = daemon.client();
    let client = daemon.client();
    let recording = client.open("a.raw").unwrap();
    let batch = recording.batches()[0].clone();
    assert_eq!(observer.stats().unwrap().leases, 1);
    drop(recording);
    assert_eq!(observer.stats().unwrap().leases, 1, "a batch still reads the extent: leased");
    assert_eq!(batch.num_rows(), 5000, "batches outlive the recording");
    let column = batch.column(0).clone();
    drop(batch);
    assert_eq!(observer.stats().unwrap().leases, 1, "so does an array taken from it");
    drop(column);
    // The last buffer's drop sends the release (its reply is read with the client's next
    // request): another connection sees it once the daemon has read it.
    util::wait_until("the last buffer's drop releases", || observer.stats().unwrap().leases == 0);

    let _held = client.open("a.raw").unwrap();
    let _also = client.open("a.raw").unwrap();
    assert_eq!(observer.stats().unwrap().leases, 2);
    let mut raw = daemon.raw();
    raw.request(r#"{"op":"hello","version":3}"#);
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
    assert!(fields["chunks"].contains("decoded now"));
    assert!(cli(&["open", "day1/cam0.raw"]).1.contains("cached"));

    let (ok, stats, _) = cli(&["stats"]);
    assert!(ok && stats.contains("decodes") && stats.contains("cache_hits"), "{stats}");
    assert!(stats.contains("bytes_evictable") && stats.contains("shm_free"), "{stats}");
    assert!(stats.contains("evshm-rust/"), "each client is listed with its name: {stats}");
    let (ok, _, error) = cli(&["open", "nope.raw"]);
    assert!(!ok && error.contains("no file nope.raw"), "{error}");

    // `evshm stats | head -1`: the reader is gone before the output is written. The
    // command stops quietly, as one that SIGPIPE ends, not with a panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(evshm_cli())
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("stats")
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    assert_eq!(output.status.code(), Some(141));
}

/// Runs `evshm convert INPUT OUTPUT --to TO`, which must succeed.
fn convert(input: &Path, output: &Path, to: &str) {
    let run = Command::new(evshm_cli())
        .arg("convert")
        .arg(input)
        .arg(output)
        .args(["--to", to])
        .output()
        .unwrap();
    assert!(run.status.success(), "{to}: {}", String::from_utf8_lossy(&run.stderr));
}
