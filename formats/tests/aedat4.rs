//! AEDAT 4.0 against files written by dv-processing, iniVation's reference implementation
//! (`tests/data/aedat4/make_fixtures.py`), each with the events dv-processing reads back.

#[path = "../../tests/util/real.rs"]
#[expect(dead_code, reason = "a shared module; these tests need only its IPC reader")]
mod real;
#[path = "../../tests/util/skip.rs"]
mod skip;

use std::path::PathBuf;

use evshm_formats::{
    ChunkLimits, Decoder, Format, Geometry, GeometrySource, Indexer, VecSink, detect,
};
use real::{Row, read_ipc_file, rows};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/aedat4").join(name)
}

fn decode(name: &str, chunk: usize) -> (Vec<Row>, Geometry, evshm_formats::DecodeStats, u64) {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let detected = detect(&bytes, None).unwrap();
    assert!(matches!(detected.format, Format::Aedat4(_)));
    assert_eq!(detected.geometry_source, GeometrySource::Header);
    let data = &bytes[detected.data_offset..];
    let mut decoder = Decoder::new(detected.format);
    let mut sink = VecSink::default();
    data.chunks(chunk).for_each(|piece| decoder.feed(piece, &mut sink));
    decoder.finish(&mut sink);
    let mut indexer = Indexer::new(detected.format, ChunkLimits::events(u64::MAX));
    data.chunks(chunk + 1).for_each(|piece| indexer.feed(piece));
    let counted = indexer.finish().iter().map(|c| c.events).sum();
    let got = sink.events.iter().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
    (got, detected.geometry, decoder.stats(), counted)
}

#[test]
fn every_compression_decodes_as_dv_processing_reads_it() {
    let expected = rows(&read_ipc_file(&fixture("events.expected.arrow")));
    for name in ["events_none", "events_lz4", "events_lz4_high", "events_zstd", "events_zstd_high"]
    {
        let (got, geometry, stats, counted) = decode(&format!("{name}.aedat4"), 1 << 20);
        assert_eq!(geometry, Geometry { width: 346, height: 260 }, "{name}");
        assert_eq!(got, expected, "{name}");
        assert_eq!(counted, expected.len() as u64, "{name}");
        assert_eq!(
            (stats.unknown, stats.trailing_bytes),
            (0, 0),
            "{name}: the data table is not a packet"
        );
    }
}

#[test]
fn the_first_event_stream_is_read_and_other_streams_skipped() {
    let (got, geometry, ..) = decode("two_streams_zstd.aedat4", 1 << 20);
    assert_eq!(got, rows(&read_ipc_file(&fixture("two_streams_zstd.expected.arrow"))));
    assert_eq!(geometry, Geometry { width: 346, height: 260 });
    let (got, ..) = decode("imu_events_lz4.aedat4", 1 << 20);
    assert_eq!(got, rows(&read_ipc_file(&fixture("imu_events_lz4.expected.arrow"))));
}

#[test]
fn a_packet_cut_short_is_not_decoded() {
    let (got, _, stats, counted) = decode("events_lz4_truncated.aedat4", 1 << 20);
    assert_eq!(got, rows(&read_ipc_file(&fixture("events_lz4_truncated.expected.arrow"))));
    assert_eq!(counted, got.len() as u64);
    assert!(stats.trailing_bytes > 0);
}

#[test]
fn any_split_decodes_identically() {
    let whole = decode("events_lz4.aedat4", 1 << 20).0;
    for chunk in [1, 7, 8, 9, 4096] {
        assert_eq!(decode("events_lz4.aedat4", chunk).0, whole, "chunks of {chunk}");
    }
}

#[test]
fn corrupt_packets_are_skipped_and_counted() {
    let mut bytes = std::fs::read(fixture("events_zstd.aedat4")).unwrap();
    let detected = detect(&bytes, None).unwrap();
    // Flip bytes inside the first packet's payload: that packet is lost, not the rest.
    let first = detected.data_offset + 8;
    for b in &mut bytes[first + 20..first + 40] {
        *b ^= 0x5A;
    }
    let mut decoder = Decoder::new(detected.format);
    let mut sink = VecSink::default();
    decoder.feed(&bytes[detected.data_offset..], &mut sink);
    let expected = rows(&read_ipc_file(&fixture("events.expected.arrow")));
    assert_eq!(decoder.stats().unknown, 1);
    assert_eq!(sink.events.len(), expected.len() - 1000, "only the first packet is lost");
}
