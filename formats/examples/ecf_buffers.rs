//! Writes ECF buffers for the test fixtures:
//!
//! - `ecf_buffers DIR`: a fixed set of events, one buffer per layout, into `DIR`
//!   (`tests/data/ecf/make_fixtures.py` has evlib decode them);
//! - `ecf_buffers chunks EVENTS DIR ROWS`: the events of `EVENTS` (records of i64 t, u16 x,
//!   u16 y, u8 p, little-endian) as HDF5 would filter them in chunks of `ROWS`, the last
//!   padded with zeroed events, one buffer per chunk, `DIR/N.ecf`
//!   (`tests/data/hdf5/make_fixtures.py` stores them in a Metavision file).

use evshm_formats::{EcfLayout, Event, ecf_encode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [dir] => layouts(dir),
        [mode, events, dir, rows] if mode == "chunks" => chunks(events, dir, rows.parse()?),
        _ => Err("usage: ecf_buffers DIR | ecf_buffers chunks EVENTS DIR ROWS".into()),
    }
}

fn layouts(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
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

fn chunks(events: &str, dir: &str, rows: usize) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = std::fs::read(events)?;
    let events: Vec<Event> = bytes
        .chunks_exact(13)
        .map(|r| Event {
            t: i64::from_le_bytes(r[..8].try_into().expect("8 bytes")),
            x: u16::from_le_bytes([r[8], r[9]]),
            y: u16::from_le_bytes([r[10], r[11]]),
            p: r[12],
        })
        .collect();
    for (i, chunk) in events.chunks(rows).enumerate() {
        // HDF5 filters whole chunks: the last is padded with zeroed events, whose time
        // OpenEB's encoder writes as the last time (it does not go back).
        let last = chunk.last().map_or(0, |e| e.t);
        let mut chunk = chunk.to_vec();
        chunk.resize(rows, Event { t: last, ..Event::default() });
        std::fs::write(format!("{dir}/{i}.ecf"), ecf_encode(&chunk, EcfLayout::Masked)?)?;
    }
    Ok(())
}
