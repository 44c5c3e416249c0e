//! Any bytes as a Blosc chunk: no panic, and never more bytes than the bound allows.
#![no_main]

use evshm_formats::blosc_decompress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let [bound, chunk @ ..] = input else { return };
    let max = usize::from(*bound) << 10;
    if let Ok(bytes) = blosc_decompress(chunk, max) {
        assert!(bytes.len() <= max);
    }
});
