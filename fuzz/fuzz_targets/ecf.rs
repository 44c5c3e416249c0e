//! Any bytes as an ECF buffer: no panic, and a decode gives as many events as it says, at
//! most 65,535; any events the encoder takes decode back to themselves.
#![no_main]

use evshm_formats::{EcfLayout, Event, VecSink, ecf_decode, ecf_encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut sink = VecSink::default();
    if let Ok(n) = ecf_decode(input, &mut sink) {
        assert_eq!(n, sink.events.len());
        assert!(n <= 65_535);
    }
    // Each 6-byte record: a time step, x, y and polarity.
    let mut t = 0i64;
    let events: Vec<Event> = input
        .chunks_exact(6)
        .map(|r| {
            t += i64::from(r[0] >> 4) << (r[0] & 0xF);
            let x = u16::from_le_bytes([r[1], r[2]]) & 0x7FF;
            let y = u16::from_le_bytes([r[3], r[4]]) & 0x7FF;
            Event { t, x, y, p: r[5] & 1 }
        })
        .collect();
    for layout in [EcfLayout::Packed, EcfLayout::YRuns, EcfLayout::Masked] {
        let buffer = ecf_encode(&events, layout).unwrap();
        let mut sink = VecSink::default();
        ecf_decode(&buffer, &mut sink).unwrap();
        assert_eq!(sink.events, events);
    }
});
