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
    decode_bytes(&std::fs::read(fixture(name)).unwrap(), chunk)
}

fn decode_bytes(
    bytes: &[u8],
    chunk: usize,
) -> (Vec<Row>, Geometry, evshm_formats::DecodeStats, u64) {
    let detected = detect(bytes, None).unwrap();
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

const MAGIC: &[u8] = b"#!AER-DAT4.0\r\n";

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// An `IOHeader` flatbuffer: compression, data table position and the stream description.
fn io_header(compression: i32, table: i64, xml: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&24u32.to_le_bytes()); // the root table, at 24
    b.extend_from_slice(b"IOHE");
    // The vtable, at 8: its size, the table's size, the three fields' offsets.
    for half in [10u16, 20, 4, 8, 16] {
        b.extend_from_slice(&half.to_le_bytes());
    }
    b.resize(24, 0);
    b.extend_from_slice(&16i32.to_le_bytes()); // back to the vtable
    b.extend_from_slice(&compression.to_le_bytes());
    b.extend_from_slice(&table.to_le_bytes()); // at 32: aligned
    b.extend_from_slice(&4u32.to_le_bytes()); // the string, 4 bytes on
    b.extend_from_slice(&(xml.len() as u32).to_le_bytes());
    b.extend_from_slice(xml.as_bytes());
    b.push(0);
    b
}

/// Regression (issue 16): files written by DV's recorder were refused with "no event
/// stream": their stream description is the `<dv version="2.0">` form under
/// `/mainloop/Recorder/outInfo/`, with frames, IMU and trigger streams around the events
/// and an `info` node holding `source` and `tsOffset`. The packets of a dv-processing file
/// under such a header decode to the same events.
#[test]
fn a_header_written_by_dvs_recorder_is_read() {
    let original = std::fs::read(fixture("events_lz4.aedat4")).unwrap();
    let header_len = u32_at(&original, MAGIC.len());
    let header = &original[MAGIC.len() + 4..MAGIC.len() + 4 + header_len];
    let data_offset = MAGIC.len() + 4 + header_len;
    // Where dv-processing put the data table: the header's second field.
    let root = u32_at(header, 0);
    let vtable = root - i32::from_le_bytes(header[root..root + 4].try_into().unwrap()) as usize;
    let field = u16::from_le_bytes(header[vtable + 6..vtable + 8].try_into().unwrap()) as usize;
    let table = i64::from_le_bytes(header[root + field..root + field + 8].try_into().unwrap());
    let (expected, ..) = decode("events_lz4.aedat4", 1 << 20);
    let stream = |id: u32, kind: &str, output: &str| {
        let at = format!("/mainloop/Recorder/outInfo/{id}/");
        format!(
            "        <node name=\"{id}\" path=\"{at}\">\n            <attr key=\"compression\" \
             type=\"string\">LZ4</attr>\n            <attr key=\"originalOutputName\" \
             type=\"string\">{output}</attr>\n            <attr key=\"typeIdentifier\" \
             type=\"string\">{kind}</attr>\n            <node name=\"info\" path=\"{at}info/\">\n\
             <attr key=\"sizeX\" type=\"int\">346</attr>\n<attr key=\"sizeY\" \
             type=\"int\">260</attr>\n<attr key=\"source\" type=\"string\">DAVIS346_00000499\
             </attr>\n<attr key=\"tsOffset\" type=\"long\">1633954080938520</attr>\n\
             </node>\n        </node>\n"
        )
    };
    // The fixture's events are stream 0; here they follow a frame stream in the listing.
    let xml = format!(
        "<dv version=\"2.0\">\n    <node name=\"outInfo\" path=\"/mainloop/Recorder/outInfo/\">\n\
         {}{}{}    </node>\n</dv>\n",
        stream(1, "FRME", "frames"),
        stream(0, "EVTS", "events"),
        stream(2, "IMUS", "imu"),
    );
    let mut rewritten = MAGIC.to_vec();
    let new_len = io_header(1, 0, &xml).len();
    let shift = (MAGIC.len() + 4 + new_len) as i64 - data_offset as i64;
    let new_header = io_header(1, table + shift, &xml);
    rewritten.extend_from_slice(&(new_header.len() as u32).to_le_bytes());
    rewritten.extend_from_slice(&new_header);
    rewritten.extend_from_slice(&original[data_offset..]);
    let (got, geometry, stats, counted) = decode_bytes(&rewritten, 1 << 16);
    assert_eq!(geometry, Geometry { width: 346, height: 260 });
    assert_eq!(got, expected);
    assert_eq!(counted, expected.len() as u64);
    assert_eq!((stats.unknown, stats.trailing_bytes), (0, 0), "the data table is still found");
}
