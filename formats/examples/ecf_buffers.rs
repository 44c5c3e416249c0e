//! Writes ECF buffers of a fixed set of events, one per layout, into the directory given
//! as the first argument: what `tests/data/ecf/make_fixtures.py` has evlib decode.

use evshm_formats::{EcfLayout, Event, ecf_encode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: ecf_buffers DIR")?;
    // Bursts along rows (runs of y, neighbouring x), long and short steps in time, runs of
    // one polarity longer than the short counts hold.
    let mut events = Vec::new();
    let mut t = 1_700_000_000i64;
    for i in 0..3000u16 {
        t += match i % 50 {
            0 => 100_000,
            7 => 15,
            _ => i64::from(i % 3),
        };
        let y = (i / 40) % 720;
        let x = (i * 7 + i / 13) % 1280;
        let p = u8::from(i % 300 < 180);
        events.push(Event { t, x, y, p });
    }
    for (name, layout) in
        [("packed", EcfLayout::Packed), ("yruns", EcfLayout::YRuns), ("masked", EcfLayout::Masked)]
    {
        std::fs::write(format!("{dir}/{name}.ecf"), ecf_encode(&events, layout)?)?;
    }
    Ok(())
}
