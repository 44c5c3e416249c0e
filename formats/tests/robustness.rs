//! Bounded randomized robustness: arbitrary bytes, behind every kind of header and split
//! anywhere, never make detection or a decoder panic, loop or disagree with the counts of
//! the index pass, and every event a decoder keeps lies inside the sensor. (The fuzz targets in `fuzz/`
//! run the same checks without a bound.)

use evshm_formats::{
    ChunkLimits, Columns, Decoder, Format, GeometryFilter, Indexer, VecSink, detect,
};
use proptest::prelude::*;

/// The events and triggers of `data` as the index pass counts them, fed in pieces of
/// `piece` bytes.
fn count(format: Format, data: &[u8], piece: usize) -> (u64, u64) {
    let mut indexer = Indexer::new(format, ChunkLimits::events(u64::MAX));
    data.chunks(piece).for_each(|bytes| indexer.feed(bytes));
    let chunks = indexer.finish();
    (chunks.iter().map(|c| c.events).sum(), chunks.iter().map(|c| c.triggers).sum())
}

const HEADERS: [&[u8]; 14] = [
    b"Event Stream\x02\x00\x00\x01\x80\x02\xe0\x01",
    b"Event Stream\x02\x01\x00\x02\x30\x01\xf0\x00",
    b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n",
    b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n",
    b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS346B\r\n",
    b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n",
    b"% format EVT3;height=720;width=1280\n% end\n",
    b"% evt 3.0\n% system_ID 48\n",
    b"% format EVT2;height=480;width=640\n",
    b"% evt 2.0\n% system_ID 21\n",
    b"% format EVT21;height=720;width=1280;endianness=legacy\n",
    b"% format EVT21;height=100;width=100\n",
    b"% Width 304\n% Height 240\n\x0c\x08",
    b"% Version 2\n\x00\x08",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn detection_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = detect(&bytes, Some("raw"));
        let mut with_header = b"% ".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = detect(&with_header, None);
    }

    #[test]
    fn arbitrary_data_behind_any_header_decodes_consistently(
        header in prop::sample::select(HEADERS.to_vec()),
        body in prop::collection::vec(any::<u8>(), 0..6000),
        count_chunk in 1usize..300,
        decode_chunk in 1usize..300,
    ) {
        let mut file = header.to_vec();
        file.extend_from_slice(&body);
        let detected = detect(&file, None).unwrap();
        let data = &file[detected.data_offset..];

        let (events, triggers) = count(detected.format, data, count_chunk);
        let mut decoder = Decoder::new(detected.format);
        let mut sink = GeometryFilter::new(VecSink::default(), detected.stated_geometry());
        data.chunks(decode_chunk).for_each(|piece| decoder.feed(piece, &mut sink));
        decoder.finish(&mut sink);

        prop_assert_eq!(events, sink.inner.events.len() as u64 + sink.dropped);
        prop_assert_eq!(triggers, sink.inner.triggers.len() as u64);
        prop_assert!(sink.inner.events.iter().all(|e| e.p <= 1));
        if let Some(g) = detected.stated_geometry() {
            prop_assert!(sink.inner.events.iter().all(|e| u32::from(e.x) < g.width && u32::from(e.y) < g.height));
        }
        let stats = decoder.stats();
        // A word, a record, or an AEDAT 3.1 packet header cut short.
        prop_assert!(stats.trailing_bytes < 28);
    }
}

/// Text-like noise: digits, separators, signs, newlines and now and then anything.
fn text_noise() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        8 => prop::sample::select(b"0123456789 ,.\n-#te".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..4000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// ATIS `.bin` has no header to put in front: its bytes are taken as its data.
    #[test]
    fn arbitrary_atis_bin_decodes_consistently(
        body in prop::collection::vec(any::<u8>(), 0..6000),
        count_chunk in 1usize..300,
        decode_chunk in 1usize..300,
    ) {
        let (events, _) = count(Format::AtisBin, &body, count_chunk);
        let mut decoder = Decoder::new(Format::AtisBin);
        let mut sink = VecSink::default();
        body.chunks(decode_chunk).for_each(|piece| decoder.feed(piece, &mut sink));
        prop_assert_eq!(events, sink.events.len() as u64);
        prop_assert!(sink.events.iter().all(|e| e.p <= 1 && e.y != 240), "y 240 marks an overflow");
        prop_assert_eq!(decoder.stats().trailing_bytes, body.len() % 5);
    }

    #[test]
    fn arbitrary_text_decodes_identically_in_any_split(
        body in text_noise(),
        chunk in 1usize..100,
        xytp in any::<bool>(),
    ) {
        let format = Format::Text(if xytp { Columns::XYTP } else { Columns::TXYP });
        let whole = {
            let mut decoder = Decoder::new(format);
            let mut sink = VecSink::default();
            decoder.feed(&body, &mut sink);
            decoder.finish(&mut sink);
            sink
        };
        let mut decoder = Decoder::new(format);
        let mut sink = VecSink::default();
        body.chunks(chunk).for_each(|piece| decoder.feed(piece, &mut sink));
        decoder.finish(&mut sink);
        prop_assert_eq!(count(format, &body, chunk + 3).0, whole.events.len() as u64);
        prop_assert_eq!(sink, whole);
    }
}

/// The header of a real AEDAT 4.0 file with zstd packets, and one with LZ4 packets.
fn aedat4_header(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/aedat4/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(path).unwrap();
    let offset = detect(&bytes, None).unwrap().data_offset;
    bytes[..offset].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Packets of arbitrary bytes, or real packets with bytes flipped, behind a real AEDAT4
    /// header: no panic, and the index pass counts what the decoder decodes.
    #[test]
    fn arbitrary_aedat4_packets_decode_consistently(
        name in prop::sample::select(vec!["events_zstd.aedat4", "events_lz4.aedat4", "events_none.aedat4"]),
        noise in prop::collection::vec(any::<u8>(), 0..3000),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        chunk in 1usize..5000,
    ) {
        let path = format!("{}/tests/data/aedat4/{name}", env!("CARGO_MANIFEST_DIR"));
        let mut file = std::fs::read(path).unwrap();
        let header = aedat4_header(name).len();
        for (at, byte) in flips {
            let at = header + at.index(file.len() - header);
            file[at] ^= byte;
        }
        file.extend_from_slice(&noise);
        let detected = detect(&file, None).unwrap();
        let data = &file[detected.data_offset..];
        let (events, _) = count(detected.format, data, chunk);
        let mut decoder = Decoder::new(detected.format);
        let mut sink = VecSink::default();
        data.chunks(chunk + 13).for_each(|piece| decoder.feed(piece, &mut sink));
        decoder.finish(&mut sink);
        prop_assert_eq!(events, sink.events.len() as u64);
    }
}
