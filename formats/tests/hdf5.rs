//! HDF5 recordings in the layouts of DSEC (Blosc-compressed columns), MVSEC (gzip) and
//! Metavision (uncompressed and ECF-compressed), written by h5py with hdf5plugin
//! (`tests/data/hdf5/make_fixtures.py`), decode to what h5py reads from them.
#![cfg(feature = "hdf5")]

#[path = "../../tests/util/real.rs"]
#[expect(dead_code, reason = "a shared module; these tests need only its IPC reader")]
mod real;
#[path = "../../tests/util/skip.rs"]
mod skip;

use std::path::PathBuf;

use evshm_formats::{Geometry, HDF5_SIGNATURE, Hdf5Layout, Hdf5Recording, VecSink, detect};
use proptest::prelude::*;
use real::{Row, read_ipc_file, rows};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/hdf5").join(name)
}

fn read(name: &str) -> (Hdf5Recording, Vec<Row>) {
    let recording = Hdf5Recording::open(&fixture(name)).unwrap();
    let mut sink = VecSink::default();
    recording.decode(&mut sink).unwrap();
    let got = sink.events.iter().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
    (recording, got)
}

fn expected(name: &str) -> Vec<Row> {
    rows(&read_ipc_file(&fixture(&format!("{name}.expected.arrow"))))
}

#[test]
fn each_layout_decodes_as_h5py_reads_it() {
    for (file, layout, want) in [
        ("dsec.h5", Hdf5Layout::Dsec, "dsec"),
        ("mvsec.h5", Hdf5Layout::Mvsec, "mvsec"),
        ("metavision.h5", Hdf5Layout::Metavision, "metavision"),
        ("metavision_ecf.h5", Hdf5Layout::Metavision, "metavision"),
    ] {
        let (recording, got) = read(file);
        let want = expected(want);
        assert_eq!(recording.layout(), layout, "{file}");
        assert_eq!(recording.events(), want.len() as u64, "{file}");
        assert_eq!(recording.stated_geometry(), None, "{file}");
        assert_eq!(got.len(), want.len(), "{file}");
        assert!(got == want, "{file}: events differ");
    }
    assert_eq!(Hdf5Layout::Dsec.default_geometry(), Geometry { width: 640, height: 480 });
}

/// The chunks of each file, each decoded from its rows on its own, join to the whole,
/// every event within its chunk's bound; DSEC's come from its `ms_to_idx` and end at
/// millisecond boundaries.
#[test]
fn chunks_decode_as_the_whole_within_their_bounds() {
    for file in ["dsec.h5", "mvsec.h5", "metavision.h5", "metavision_ecf.h5"] {
        let (recording, whole) = read(file);
        let chunks = recording.chunks(1500).unwrap();
        assert!(chunks.len() > 2, "{file}");
        let mut joined = Vec::new();
        let mut next = 0;
        for chunk in &chunks {
            assert_eq!(chunk.rows.start, next, "{file}");
            next = chunk.rows.end;
            let mut sink = VecSink::default();
            recording.decode_rows(chunk.rows.clone(), &mut sink).unwrap();
            assert_eq!(sink.events.len() as u64, chunk.rows.end - chunk.rows.start, "{file}");
            assert!(sink.events.iter().all(|e| e.t <= chunk.time_bound), "{file}: past the bound");
            joined.extend(sink.events.iter().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)));
        }
        assert_eq!(next, recording.events(), "{file}");
        assert!(joined == whole, "{file}: the chunks do not join to the whole");
        if file == "dsec.h5" {
            let offset = 1_600_000_000_000_000;
            for chunk in &chunks[..chunks.len() - 1] {
                assert_eq!((chunk.time_bound - offset + 1) % 1000, 0, "a millisecond boundary");
                assert!(chunk.rows.end - chunk.rows.start >= 1500);
            }
        }
    }
}

#[test]
fn the_byte_decoders_refuse_hdf5_and_say_where_it_is_read() {
    let head = std::fs::read(fixture("dsec.h5")).unwrap();
    assert!(head.starts_with(HDF5_SIGNATURE));
    let message = detect(&head, Some("h5")).unwrap_err().to_string();
    assert!(message.contains("evshm convert"), "{message}");
}

#[test]
fn an_hdf5_file_of_another_layout_is_refused() {
    let error = Hdf5Recording::open(&fixture("other.h5")).unwrap_err().to_string();
    assert!(error.contains("none of the event layouts"), "{error}");
    assert!(Hdf5Recording::open(&fixture("make_fixtures.py")).is_err(), "not HDF5");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Real files with bytes flipped (in the container's metadata or in compressed chunks)
    /// give an error or events, never a panic.
    #[test]
    fn damaged_files_are_refused_or_decoded(
        which in prop::sample::select(vec!["dsec.h5", "mvsec.h5", "metavision_ecf.h5"]),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = std::fs::read(fixture(which)).unwrap();
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= byte;
        }
        let dir = std::env::temp_dir().join(format!("evshm-hdf5-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(which);
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(recording) = Hdf5Recording::open(&path) {
            let _ = recording.decode(&mut VecSink::default());
        }
    }
}
