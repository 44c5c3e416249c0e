//! Quick single-thread decode throughput check: `cargo run --release -p evshm-formats
//! --example decode_speed [EVENTS]`. Generates a synthetic recording in memory in each
//! format and, as evshmd does, indexes it (the pass that counts each chunk's events) and
//! decodes it into preallocated columns.

use std::time::Instant;

use evshm_formats::synth::{Synth, SynthConfig};
use evshm_formats::{
    ChunkLimits, ColumnSink, CountingSink, DatEncoder, Decoder, Evt2Encoder, Evt3Encoder, Geometry,
    Indexer, detect,
};

fn main() {
    let events: u64 = std::env::args().nth(1).map_or(20_000_000, |a| a.parse().unwrap());
    let geometry = Geometry { width: 1280, height: 720 };
    let synth = || Synth::new(SynthConfig { geometry, events, ..SynthConfig::default() });
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut e3 = Evt3Encoder::new(Vec::new(), geometry).unwrap();
    synth().for_each(|e| e3.push(&e).unwrap());
    files.push(("evt3", e3.finish().unwrap()));
    let mut e2 = Evt2Encoder::new(Vec::new(), geometry).unwrap();
    synth().for_each(|e| e2.push(&e).unwrap());
    files.push(("evt2", e2.finish().unwrap()));
    let mut dat = DatEncoder::new(Vec::new(), geometry).unwrap();
    synth().for_each(|e| dat.push(&e).unwrap());
    files.push(("dat", dat.finish().unwrap()));

    let only = std::env::var("DECODE_ONLY").ok();
    for (name, bytes) in &files {
        if only.as_deref().is_some_and(|only| only != *name) {
            continue;
        }
        let detected = detect(bytes, None).unwrap();
        let data = &bytes[detected.data_offset..];
        let n = events as usize;
        // The first of the runs below touches the columns' pages: the best run measures
        // the decode, not page faults.
        let mut columns = ColumnSink::with_capacity(n);
        let mut best_index = f64::MAX;
        let mut best_fill = f64::MAX;
        let mut chunks = 0;
        for _ in 0..3 {
            // evshmd's first pass: the chunk index, which counts each chunk's events.
            let started = Instant::now();
            let mut indexer = Indexer::new(detected.format, ChunkLimits::events(4 << 20));
            for chunk in data.chunks(1 << 16) {
                indexer.feed(chunk);
            }
            let index = indexer.finish();
            best_index = best_index.min(started.elapsed().as_secs_f64());
            assert_eq!(index.iter().map(|c| c.events).sum::<u64>(), events);
            chunks = index.len();
            columns.clear();
            let started = Instant::now();
            let mut decoder = Decoder::new(detected.format);
            for chunk in data.chunks(1 << 16) {
                decoder.feed(chunk, &mut columns);
            }
            best_fill = best_fill.min(started.elapsed().as_secs_f64());
            assert_eq!(columns.len(), n);
        }
        let started = Instant::now();
        let mut nothing = CountingSink::default();
        let mut decoder = Decoder::new(detected.format);
        for chunk in data.chunks(1 << 16) {
            decoder.feed(chunk, &mut nothing);
        }
        let dispatch = started.elapsed().as_secs_f64();
        assert_eq!(nothing.events, events);
        let mev = |s: f64| events as f64 / s / 1e6;
        println!("{name:5} dispatch only (decode into a counter) {:7.1} Mev/s", mev(dispatch));
        println!(
            "{name:5} {:6.2} B/ev  index ({chunks} chunks) {:7.1} Mev/s  decode {:7.1} Mev/s  \
             both passes {:7.1} Mev/s",
            data.len() as f64 / events as f64,
            mev(best_index),
            mev(best_fill),
            mev(best_index + best_fill)
        );
    }
}
