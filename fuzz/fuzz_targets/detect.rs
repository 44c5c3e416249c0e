//! Any file: detection never panics, and whatever it recognises decodes with every kept
//! event inside the sensor it states.
#![no_main]

use evshm_formats::{Decoder, GeometryFilter, VecSink, detect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|file: &[u8]| {
    let Ok(detected) = detect(file, None) else { return };
    let mut decoder = Decoder::new(detected.format);
    let mut sink = GeometryFilter::new(VecSink::default(), detected.stated_geometry());
    decoder.feed(&file[detected.data_offset.min(file.len())..], &mut sink);
    decoder.finish(&mut sink);
    if let Some(g) = detected.stated_geometry() {
        assert!(sink.inner.events.iter().all(|e| u32::from(e.x) < g.width && u32::from(e.y) < g.height));
    }
});
