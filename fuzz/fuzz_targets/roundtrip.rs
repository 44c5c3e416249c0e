//! Any event stream the encoder accepts decodes back to itself, in every format.
#![no_main]

use evshm_formats::{
    Aedat2Chip, Columns, Decoder, EsKind, EsLayout, Encoder, Event, Format, Geometry, VecSink,
    WordOrder, detect,
};
use libfuzzer_sys::fuzz_target;

const FORMATS: [Format; 11] = [
    Format::Aedat3,
    // Written for the camera of the geometry: 128x128 here, see below.
    Format::Aedat2(Aedat2Chip::Dvs128),
    Format::EventStream(EsLayout { kind: EsKind::Dvs, height: 0 }),
    Format::EventStream(EsLayout { kind: EsKind::Atis, height: 0 }),
    Format::AtisBin,
    Format::Dat,
    Format::Evt2,
    Format::Evt21(WordOrder::Standard),
    Format::Evt21(WordOrder::Legacy),
    Format::Evt3,
    Format::Text(Columns::TXYP),
];

fuzz_target!(|input: &[u8]| {
    let [selector, width, height, records @ ..] = input else { return };
    let format = FORMATS[usize::from(*selector) % FORMATS.len()];
    let mut geometry = Geometry { width: u32::from(*width) * 8 + 1, height: u32::from(*height) * 4 + 1 };
    match format {
        // AEDAT 2.0 is written for one of jAER's cameras; ATIS .bin rows stop below 240.
        Format::Aedat2(_) => geometry = Aedat2Chip::Dvs128.geometry(),
        Format::AtisBin => {
            geometry.width = geometry.width.min(256);
            geometry.height = geometry.height.min(240);
        }
        _ => {}
    }
    // Each 8-byte record: a time step (which may go back a little), x, y, polarity.
    let mut t = 0i64;
    let events: Vec<Event> = records
        .chunks_exact(8)
        .map(|r| {
            t = (t + i64::from(i32::from_le_bytes([r[0], r[1], r[2], r[3]]) >> 4)).max(0);
            let x = u16::from_le_bytes([r[4], r[5]]) % geometry.width as u16;
            let y = u16::from(r[6]) % geometry.height as u16;
            Event { t, x, y, p: r[7] & 1 }
        })
        .collect();
    let mut encoder = Encoder::new(format, Vec::new(), geometry).unwrap();
    for event in &events {
        if encoder.push(event).is_err() {
            return; // a time step the format cannot express: refused, not mangled
        }
    }
    let Ok(file) = encoder.finish() else { return };
    // ATIS .bin states no geometry and, with few events, cannot be recognised.
    let (format, data_offset) = if format == Format::AtisBin {
        (format, 0)
    } else {
        let detected = detect(&file, None).unwrap();
        assert_eq!(detected.geometry, geometry);
        (detected.format, detected.data_offset)
    };
    let mut decoder = Decoder::new(format);
    let mut sink = VecSink::default();
    decoder.feed(&file[data_offset..], &mut sink);
    decoder.finish(&mut sink);
    assert_eq!(sink.events, events);
});
