//! ATIS `.bin`, Event Stream, AEDAT 2.0 and AEDAT 3.1 against what their reference readers
//! (tonic 1.7.0, faery 0.7.1) read from files made by `tests/data/peers/make_fixtures.py`
//! (faery's own writer for Event Stream DVS, the formats' documented layouts otherwise).

#[path = "../../tests/util/real.rs"]
#[expect(dead_code, reason = "a shared module; these tests need only its IPC reader")]
mod real;
#[path = "../../tests/util/skip.rs"]
mod skip;

use std::path::PathBuf;

use evshm_formats::{
    Aedat2Chip, ChunkLimits, Decoder, EsKind, EsLayout, Format, Geometry, GeometrySource, Indexer,
    VecSink, detect,
};
use real::{Row, read_ipc_file, rows};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/peers").join(name)
}

fn expected(name: &str) -> Vec<Row> {
    rows(&read_ipc_file(&fixture(&format!("{name}.expected.arrow"))))
}

/// What evshm reads from a fixture: its detection, its events decoded in pieces of
/// `piece` bytes, and the events of its chunks (each decoded on its own, from chunks of
/// about 100 events) joined.
struct Read {
    format: Format,
    geometry: Geometry,
    source: GeometrySource,
    events: Vec<Row>,
    chunks: usize,
    skipped: u64,
}

fn read(name: &str, piece: usize) -> Read {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let detected = detect(&bytes, None).unwrap();
    let data = &bytes[detected.data_offset..];
    let as_rows = |sink: VecSink| -> Vec<Row> {
        sink.events.iter().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect()
    };
    let mut decoder = Decoder::new(detected.format);
    let mut sink = VecSink::default();
    data.chunks(piece).for_each(|p| decoder.feed(p, &mut sink));
    decoder.finish(&mut sink);
    let events = as_rows(sink);
    let limits = ChunkLimits { events: 100, span: None, step: 64 };
    let mut indexer = Indexer::new(detected.format, limits);
    data.chunks(piece + 7).for_each(|p| indexer.feed(p));
    let chunks = indexer.finish();
    let mut joined = Vec::new();
    for chunk in &chunks {
        let mut decoder = chunk.decoder();
        let mut sink = VecSink::default();
        decoder.feed(&data[chunk.start as usize..chunk.end as usize], &mut sink);
        assert_eq!(chunk.events, sink.events.len() as u64, "{name}");
        assert!(sink.events.iter().all(|e| e.t <= chunk.time_bound), "{name}");
        joined.extend(as_rows(sink));
    }
    assert_eq!(joined, events, "{name}: the chunks decode as the whole");
    Read {
        format: detected.format,
        geometry: detected.geometry,
        source: detected.geometry_source,
        events,
        chunks: chunks.len(),
        skipped: decoder.stats().skipped(),
    }
}

#[test]
fn n_mnist_bin_decodes_as_tonic_reads_it() {
    for piece in [1, 3, 1 << 20] {
        let got = read("n_mnist.bin", piece);
        assert_eq!(got.format, Format::AtisBin);
        assert_eq!(
            (got.geometry, got.source),
            (Geometry { width: 34, height: 34 }, GeometrySource::Default)
        );
        assert_eq!(got.events, expected("n_mnist"));
        assert!(got.chunks > 10);
        assert_eq!(got.skipped, 0);
    }
}

#[test]
fn event_stream_decodes_as_faery_reads_it() {
    let got = read("dvs_faery.es", 5);
    let layout = EsLayout { kind: EsKind::Dvs, height: 480 };
    assert_eq!(got.format, Format::EventStream(layout));
    assert_eq!(
        (got.geometry, got.source),
        (Geometry { width: 640, height: 480 }, GeometrySource::Header)
    );
    assert_eq!(got.events, expected("dvs_faery"));
    assert!(got.chunks > 10);
    let got = read("atis.es", 1 << 20);
    assert_eq!(got.format, Format::EventStream(EsLayout { kind: EsKind::Atis, height: 240 }));
    assert_eq!(got.geometry, Geometry { width: 304, height: 240 });
    assert_eq!(got.events, expected("atis"), "change detections only, y from the top");
}

/// tonic's `read_dvs_128` takes bits 8-14 for x and bits 1-7 for y, and bit 0 for the
/// polarity; jAER (the writer's own reader, and evshm) mirrors bits 1-7 into x, takes bits
/// 8-14 for y counted from the bottom, and bit 0 set for OFF. evshm counts y from the top.
#[test]
fn aedat2_dvs128_is_tonics_events_in_jaers_orientation() {
    let got = read("dvs128.aedat", 13);
    assert_eq!(got.format, Format::Aedat2(Aedat2Chip::Dvs128));
    assert_eq!(
        (got.geometry, got.source),
        (Geometry { width: 128, height: 128 }, GeometrySource::Header)
    );
    let tonic: Vec<Row> =
        expected("dvs128").into_iter().map(|(t, x, y, p)| (t, 127 - y, 127 - x, 1 - p)).collect();
    assert_eq!(got.events, tonic);
}

#[test]
fn aedat2_davis346_decodes_as_tonic_reads_it_and_skips_aps_imu_and_external_words() {
    let got = read("davis346.aedat", 1 << 20);
    assert_eq!(got.format, Format::Aedat2(Aedat2Chip::Davis346));
    assert_eq!(got.geometry, Geometry { width: 346, height: 260 });
    assert_eq!(got.events, expected("davis346"));
    let mixed = read("davis346_aps_imu.aedat", 9);
    assert_eq!(mixed.events, expected("davis346"));
    assert_eq!(mixed.skipped, 0, "APS, IMU and external words are known, not unknown");
}

/// v2e writes no AEChip line: the camera is the smallest DAVIS that holds the head's
/// events, marked a guess.
#[test]
fn aedat2_as_v2e_writes_it_decodes_to_the_events_it_was_given() {
    let got = read("davis240_v2e.aedat", 64);
    assert_eq!(got.format, Format::Aedat2(Aedat2Chip::Davis240));
    assert_eq!(
        (got.geometry, got.source),
        (Geometry { width: 240, height: 180 }, GeometrySource::Default)
    );
    assert_eq!(got.events, expected("davis240_v2e"));
}

#[test]
fn aedat3_decodes_as_tonic_reads_it_and_skips_other_packets_and_invalid_events() {
    let got = read("gesture.aedat", 1 << 20);
    assert_eq!(got.format, Format::Aedat3);
    assert_eq!(
        (got.geometry, got.source),
        (Geometry { width: 128, height: 128 }, GeometrySource::Header)
    );
    assert_eq!(got.events, expected("gesture"));
    assert!(got.chunks > 10);
    for piece in [1, 29, 4096] {
        let mixed = read("gesture_mixed.aedat", piece);
        assert_eq!(mixed.events, expected("gesture"), "piece {piece}");
        assert_eq!(mixed.skipped, 0);
    }
}

/// A file cut anywhere decodes to a prefix of the whole file's events, and reports the
/// bytes of a record cut short; the index counts what the decoder decodes.
#[test]
fn truncated_files_decode_a_prefix() {
    let names = [
        "n_mnist.bin",
        "dvs_faery.es",
        "atis.es",
        "dvs128.aedat",
        "davis346_aps_imu.aedat",
        "gesture_mixed.aedat",
    ];
    for name in names {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let detected = detect(&bytes, None).unwrap();
        let whole = read(name, 1 << 20).events;
        for cut in (detected.data_offset..bytes.len()).step_by(997) {
            let data = &bytes[detected.data_offset..cut];
            let mut decoder = Decoder::new(detected.format);
            let mut sink = VecSink::default();
            decoder.feed(data, &mut sink);
            decoder.finish(&mut sink);
            let n = sink.events.len();
            let got: Vec<Row> =
                sink.events.iter().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
            assert_eq!(got, whole[..n], "{name} cut at {cut}");
            let mut indexer = Indexer::new(detected.format, ChunkLimits::events(u64::MAX));
            indexer.feed(data);
            assert_eq!(indexer.finish()[0].events, n as u64, "{name} cut at {cut}");
        }
    }
}
