//! Any bytes as the event data of any format: no panic, splitting the input changes
//! nothing, decoding into columns (where the decoders' fast loops write) gives what
//! decoding event by event gives, and decoding the chunks of the index, each from its own
//! decoder, gives what decoding the whole gives, with the counts the index gives.
#![no_main]

use evshm_formats::{
    Aedat2Chip, Aedat4Layout, ChunkLimits, ColumnSink, Columns, Compression, Decoder, EsKind,
    EsLayout, Format, Indexer, VecSink, WordOrder,
};
use libfuzzer_sys::fuzz_target;

const fn aedat4(compression: Compression) -> Format {
    Format::Aedat4(Aedat4Layout { compression, stream: 0, packets_len: None })
}

const FORMATS: [Format; 16] = [
    Format::Aedat3,
    Format::Aedat2(Aedat2Chip::Dvs128),
    Format::Aedat2(Aedat2Chip::Davis346),
    Format::EventStream(EsLayout { kind: EsKind::Dvs, height: 480 }),
    Format::EventStream(EsLayout { kind: EsKind::Atis, height: 1 }),
    Format::AtisBin,
    aedat4(Compression::None),
    aedat4(Compression::Lz4),
    aedat4(Compression::Zstd),
    Format::Dat,
    Format::Evt2,
    Format::Evt21(WordOrder::Standard),
    Format::Evt21(WordOrder::Legacy),
    Format::Evt3,
    Format::Text(Columns::TXYP),
    Format::Text(Columns::XYTP),
];

fn decode(format: Format, data: &[u8], chunk: usize) -> VecSink {
    let mut decoder = Decoder::new(format);
    let mut sink = VecSink::default();
    data.chunks(chunk).for_each(|piece| decoder.feed(piece, &mut sink));
    decoder.finish(&mut sink);
    sink
}

/// [`decode`] into columns.
fn decode_columns(format: Format, data: &[u8], chunk: usize) -> VecSink {
    let mut decoder = Decoder::new(format);
    let mut sink = ColumnSink::default();
    data.chunks(chunk).for_each(|piece| decoder.feed(piece, &mut sink));
    decoder.finish(&mut sink);
    let events = sink.events().collect();
    VecSink { events, triggers: sink.triggers }
}

fuzz_target!(|input: &[u8]| {
    let [selector, split, data @ ..] = input else { return };
    let format = FORMATS[usize::from(*selector) % FORMATS.len()];
    let chunk = usize::from(*split).max(1);
    let whole = decode(format, data, data.len().max(1));
    assert_eq!(decode(format, data, chunk), whole);
    assert_eq!(decode_columns(format, data, chunk), whole);
    // Small chunks and steps, so that short inputs are cut many times.
    let limits = ChunkLimits { events: u64::from(*split % 16) + 1, span: None, step: 16 };
    let mut indexer = Indexer::new(format, limits);
    data.chunks(chunk).for_each(|piece| indexer.feed(piece));
    let mut joined = VecSink::default();
    for part in indexer.finish() {
        let mut decoder = part.decoder();
        let mut sink = VecSink::default();
        decoder.feed(&data[part.start as usize..part.end as usize], &mut sink);
        decoder.finish(&mut sink);
        assert_eq!(part.events, sink.events.len() as u64);
        assert_eq!(part.triggers, sink.triggers.len() as u64);
        assert!(sink.events.iter().all(|e| e.t <= part.time_bound));
        joined.events.extend(sink.events);
        joined.triggers.extend(sink.triggers);
    }
    assert_eq!(joined, whole);
});
