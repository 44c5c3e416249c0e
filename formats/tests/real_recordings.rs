//! Decoders against real recordings: event for event equal to the expected decodes in
//! `../shared/data/real` (made with evlib and faery, checked against OpenEB semantics),
//! and identical for any split of the input bytes; each both event by event and into
//! columns (where the decoders' fast loops write, as evshmd's segments take events).

#[path = "../../tests/util/real.rs"]
mod real;
#[path = "../../tests/util/skip.rs"]
mod skip;

use evshm_formats::{
    ChunkLimits, ColumnSink, Decoder, Format, Geometry, GeometrySource, Indexer, Trigger, VecSink,
    detect,
};
use proptest::prelude::*;
use real::{Row, read_ipc_file, real_data, rows};

fn decode_file(bytes: &[u8], chunk: usize) -> (Format, Geometry, GeometrySource, VecSink) {
    let detected = detect(bytes, None).expect("recognised");
    let mut decoder = Decoder::new(detected.format);
    let mut sink = VecSink::default();
    for piece in bytes[detected.data_offset..].chunks(chunk) {
        decoder.feed(piece, &mut sink);
    }
    (detected.format, detected.geometry, detected.geometry_source, sink)
}

/// The events and triggers of a file decoded into columns, fed in pieces of `chunk` bytes.
fn decode_columns(bytes: &[u8], chunk: usize) -> (Vec<Row>, Vec<Trigger>) {
    let detected = detect(bytes, None).expect("recognised");
    let mut decoder = Decoder::new(detected.format);
    let mut sink = ColumnSink::default();
    for piece in bytes[detected.data_offset..].chunks(chunk) {
        decoder.feed(piece, &mut sink);
    }
    let rows = sink.events().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
    (rows, sink.triggers)
}

fn check(name: &str, format: Format, geometry: Geometry, source: GeometrySource) {
    let Some(dir) = real_data() else { return };
    let bytes = std::fs::read(dir.join(name)).unwrap();
    let expected = rows(&read_ipc_file(&dir.join(format!("{name}.expected.arrow"))));
    let (found_format, found_geometry, found_source, sink) = decode_file(&bytes, 1 << 20);
    assert_eq!((found_format, found_geometry, found_source), (format, geometry, source));
    let got: Vec<Row> =
        sink.events.iter().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
    assert_eq!(got.len(), expected.len(), "{name}: event count");
    if let Some(i) = (0..expected.len()).find(|&i| got[i] != expected[i]) {
        panic!("{name}: event {i} is {:?}, expected {:?}", got[i], expected[i]);
    }
    let (columns, triggers) = decode_columns(&bytes, 1 << 20);
    assert!(columns == got && triggers == sink.triggers, "{name}: columns differ");
}

#[test]
fn evt2_sample_matches_expected_decode() {
    let gen3 = Geometry { width: 640, height: 480 };
    check("evt2_sample.raw", Format::Evt2, gen3, GeometrySource::SystemId);
}

#[test]
fn evt3_sample_matches_expected_decode() {
    let hd = Geometry { width: 1280, height: 720 };
    check("evt3_sample.raw", Format::Evt3, hd, GeometrySource::SystemId);
}

#[test]
fn evt3_pedestrians_matches_expected_decode() {
    let hd = Geometry { width: 1280, height: 720 };
    check("evt3_test_pedestrians.raw", Format::Evt3, hd, GeometrySource::SystemId);
}

#[test]
fn ncars_dat_matches_expected_decode() {
    let atis = Geometry { width: 304, height: 240 };
    check("NCARS_obj_004397_td.dat", Format::Dat, atis, GeometrySource::Default);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any chunking of a real file, down to single bytes and splits inside words and
    /// vector groups, decodes to the same events.
    #[test]
    fn any_split_of_real_files_decodes_identically(
        file in prop::sample::select(vec!["evt3_test_pedestrians.raw", "evt3_sample.raw",
                                          "evt2_sample.raw", "NCARS_obj_004397_td.dat"]),
        chunk in 1usize..40,
    ) {
        let Some(dir) = real_data() else { return Ok(()) };
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let bytes = &bytes[..bytes.len().min(120_000)];
        let whole = decode_file(bytes, bytes.len()).3;
        let pieces = decode_file(bytes, chunk).3;
        prop_assert_eq!(&whole, &pieces);
        let rows: Vec<Row> =
            whole.events.iter().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
        prop_assert!(decode_columns(bytes, chunk) == (rows, whole.triggers));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Real files cut into chunks by the indexer (which keeps the decoder state without
    /// decoding) decode, chunk by chunk from each chunk's own decoder, to the same events
    /// as the whole file, with the counts the index states and times within its bounds;
    /// into columns of exactly the counted size too.
    #[test]
    fn real_files_decode_chunk_by_chunk_as_the_whole(
        file in prop::sample::select(vec!["evt3_test_pedestrians.raw", "evt3_sample.raw",
                                          "evt2_sample.raw", "NCARS_obj_004397_td.dat"]),
        events in 1u64..1000,
        steps in 1u64..64,
        feed in 1usize..100_000,
    ) {
        let Some(dir) = real_data() else { return Ok(()) };
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let detected = detect(&bytes, None).unwrap();
        let data = &bytes[detected.data_offset..];
        let mut indexer = Indexer::new(detected.format, ChunkLimits { events, span: None, step: steps * 8 });
        data.chunks(feed).for_each(|piece| indexer.feed(piece));
        let chunks = indexer.finish();
        let mut joined = VecSink::default();
        for chunk in &chunks {
            let bytes = &data[chunk.start as usize..chunk.end as usize];
            let mut sink = VecSink::default();
            chunk.decoder().feed(bytes, &mut sink);
            prop_assert_eq!(chunk.events, sink.events.len() as u64);
            // Into columns, as evshmd decodes a chunk into its segment.
            let mut columns = ColumnSink::with_capacity(chunk.events as usize);
            chunk.decoder().feed(bytes, &mut columns);
            prop_assert!(columns.events().eq(sink.events.iter().copied()));
            prop_assert!(sink.events.iter().all(|e| e.t <= chunk.time_bound));
            joined.events.extend(sink.events);
            joined.triggers.extend(sink.triggers);
        }
        prop_assert!(chunks.len() > 1, "{} is cut into chunks", file);
        prop_assert_eq!(joined, decode_file(&bytes, bytes.len()).3);
    }
}
