//! Prophesee's ECF codec (HDF5 filter 0x8ECF), with which the Metavision SDK compresses
//! each chunk of a recording's `CD/events` dataset: the building block for reading
//! Metavision HDF5 files. Written from the format as OpenEB's `hdf5_ecf` codec defines it.
//!
//! A buffer holds at most 65,535 events as columns: a little-endian u32 (event count in
//! bits 2-31, bit 1 set when y, x and p are packed together, bit 0 when x and p are), then
//!
//! - times: the first time as a u64, then bytes whose high nibble is a step (0-14 µs)
//!   and low nibble a count of events at the time reached (15: the count follows as a
//!   u16); a byte whose high nibble is 15 starts a long step, its low nibble and those of
//!   the following bytes with high nibble 15 the step's 4-bit digits, least significant
//!   first;
//! - then either y, x and p packed: 23-bit values `y << 12 | x << 1 | p`, four in three u32s;
//! - or y as runs of u16 (`y << 5 | count`, count 31: a u16 count follows), then either x
//!   and p packed (12-bit values `x << 1 | p`, four in three u16s) or x as u16s
//!   `x << 5 | mask` (the event at x, then one at `x + j + 1` for each bit `4 - j` of the
//!   mask) and p as runs of u8 (`p << 7 | count`, count 127: a u16 count follows).
//!
//! Decoding keeps the four columns of one buffer (under 1 MB); a buffer that claims more
//! events, or whose runs overflow its count, is refused.

use crate::sink::{Event, EventSink};

/// The HDF5 filter id of the ECF codec.
pub const ECF_FILTER_ID: u32 = 0x8ECF;
/// Most events one buffer holds.
const MAX_EVENTS: usize = 65_535;

/// Why an ECF buffer could not be decoded, or events not encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EcfError {
    /// The buffer ends before its columns do.
    #[error("ECF buffer cut short")]
    Truncated,
    /// The buffer contradicts itself.
    #[error("corrupt ECF buffer: {0}")]
    Corrupt(&'static str),
    /// Events the codec cannot hold (more than 65,535, time going back, x or y past 2047).
    #[error("events ECF cannot encode: {0}")]
    Unencodable(&'static str),
}

/// How the encoder lays out x, y and p (the decoder reads all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcfLayout {
    /// y, x and p packed in 23-bit values.
    Packed,
    /// y in runs, x and p packed in 12-bit values.
    YRuns,
    /// y in runs, x with a mask of the next five columns, p in runs.
    Masked,
}

/// A little-endian reader over a buffer that reports a cut as [`EcfError::Truncated`].
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], EcfError> {
        let bytes = self.bytes.get(self.at..self.at + N).ok_or(EcfError::Truncated)?;
        self.at += N;
        Ok(bytes.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, EcfError> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, EcfError> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    fn u32(&mut self) -> Result<u32, EcfError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
}

/// Appends `count` copies of `value` to a column that must not grow past `n`.
fn run<T: Copy>(column: &mut Vec<T>, value: T, count: usize, n: usize) -> Result<(), EcfError> {
    if column.len() + count > n {
        return Err(EcfError::Corrupt("a run overflows the event count"));
    }
    column.extend(std::iter::repeat_n(value, count));
    Ok(())
}

/// Decodes one ECF buffer into `sink`; returns how many events it held.
pub fn ecf_decode<S: EventSink>(buffer: &[u8], sink: &mut S) -> Result<usize, EcfError> {
    let mut cur = Cursor { bytes: buffer, at: 0 };
    let info = cur.u32()?;
    let n = (info >> 2) as usize;
    if n > MAX_EVENTS {
        return Err(EcfError::Corrupt("more than 65,535 events"));
    }
    let (packed, xp_packed) = (info >> 1 & 1 == 1, info & 1 == 1);
    let ts = decode_times(&mut cur, n)?;
    let (mut ys, mut xs, mut ps) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    if packed {
        for _ in 0..n.div_ceil(4) {
            let w = [cur.u32()?, cur.u32()?, cur.u32()?];
            let vs = [
                w[0] >> 8,
                (w[0] & 0xFF) | (w[1] >> 16) << 8,
                (w[1] & 0xFFFF) | (w[2] >> 24) << 16,
                w[2] & 0xFF_FFFF,
            ];
            for v in vs {
                ys.push((v >> 12 & 0x7FF) as u16);
                xs.push((v >> 1 & 0x7FF) as u16);
                ps.push((v & 1) as u8);
            }
        }
    } else {
        while ys.len() < n {
            let v = cur.u16()?;
            let count =
                if v & 0x1F == 0x1F { usize::from(cur.u16()?) } else { usize::from(v & 0x1F) };
            run(&mut ys, v >> 5, count, n)?;
        }
        if xp_packed {
            for _ in 0..n.div_ceil(4) {
                let w = [cur.u16()?, cur.u16()?, cur.u16()?];
                let vs = [
                    w[0] >> 4,
                    (w[0] & 0xF) | (w[1] >> 8) << 4,
                    (w[1] & 0xFF) | (w[2] >> 12) << 8,
                    w[2] & 0xFFF,
                ];
                for v in vs {
                    xs.push(v >> 1);
                    ps.push((v & 1) as u8);
                }
            }
        } else {
            while xs.len() < n {
                let v = cur.u16()?;
                let x = v >> 5;
                xs.push(x);
                // Columns past the count are the encoder's padding, as in OpenEB.
                xs.extend((0..5).filter(|j| v & 1 << (4 - j) != 0).map(|j| x + j + 1));
            }
            while ps.len() < n {
                let v = cur.u8()?;
                let count =
                    if v & 0x7F == 0x7F { usize::from(cur.u16()?) } else { usize::from(v & 0x7F) };
                run(&mut ps, v >> 7, count, n)?;
            }
        }
    }
    for i in 0..n {
        sink.event(ts[i], xs[i], ys[i], ps[i]);
    }
    Ok(n)
}

/// The time column of `n` events.
fn decode_times(cur: &mut Cursor<'_>, n: usize) -> Result<Vec<i64>, EcfError> {
    let mut t = u64::from_le_bytes(cur.take()?);
    let mut ts = Vec::with_capacity(n);
    while ts.len() < n {
        let v = cur.u8()?;
        let (step, count) = (v >> 4, v & 0xF);
        if step == 0xF {
            // A long step: 4-bit digits while the high nibble is 15; the byte that ends it
            // is read again as a step and count.
            let mut dt = u64::from(count);
            let mut digits = 1;
            loop {
                let next = *cur.bytes.get(cur.at).ok_or(EcfError::Truncated)?;
                if next >> 4 != 0xF {
                    break;
                }
                if digits == 16 {
                    return Err(EcfError::Corrupt("a time step past 64 bits"));
                }
                dt |= u64::from(next & 0xF) << (4 * digits);
                digits += 1;
                cur.at += 1;
            }
            t = t.wrapping_add(dt);
            continue;
        }
        t = t.wrapping_add(u64::from(step));
        let count = if count == 0xF { usize::from(cur.u16()?) } else { usize::from(count) };
        run(&mut ts, t as i64, count, n)?;
    }
    Ok(ts)
}

/// Encodes up to 65,535 events (time never going back, x and y below 2048, p 0 or 1) in
/// one ECF buffer, laid out as `layout` says.
pub fn ecf_encode(events: &[Event], layout: EcfLayout) -> Result<Vec<u8>, EcfError> {
    let n = events.len();
    if n > MAX_EVENTS {
        return Err(EcfError::Unencodable("more than 65,535 events"));
    }
    if events.windows(2).any(|w| w[1].t < w[0].t) || events.first().is_some_and(|e| e.t < 0) {
        return Err(EcfError::Unencodable("time goes back, or is negative"));
    }
    if events.iter().any(|e| e.x > 0x7FF || e.y > 0x7FF || e.p > 1) {
        return Err(EcfError::Unencodable("x or y past 2047, or p past 1"));
    }
    let (packed, xp_packed) = match layout {
        EcfLayout::Packed => (1, 0),
        EcfLayout::YRuns => (0, 1),
        EcfLayout::Masked => (0, 0),
    };
    let mut out = ((n as u32) << 2 | packed << 1 | xp_packed).to_le_bytes().to_vec();
    encode_times(events, &mut out);
    // Groups of four, the last padded with zeros.
    let group = |i: usize| {
        std::array::from_fn::<Event, 4, _>(|j| events.get(i + j).copied().unwrap_or_default())
    };
    match layout {
        EcfLayout::Packed => {
            for i in (0..n).step_by(4) {
                let v =
                    group(i).map(|e| u32::from(e.y) << 12 | u32::from(e.x) << 1 | u32::from(e.p));
                let w = [
                    v[0] << 8 | (v[1] & 0xFF),
                    (v[1] >> 8) << 16 | (v[2] & 0xFFFF),
                    (v[2] >> 16) << 24 | v[3],
                ];
                w.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
            }
        }
        EcfLayout::YRuns | EcfLayout::Masked => {
            runs(events.iter().map(|e| e.y), |y, count| {
                if count >= 0x1F {
                    out.extend_from_slice(&(y << 5 | 0x1F).to_le_bytes());
                    out.extend_from_slice(&(count as u16).to_le_bytes());
                } else {
                    out.extend_from_slice(&(y << 5 | count as u16).to_le_bytes());
                }
            });
            if layout == EcfLayout::YRuns {
                for i in (0..n).step_by(4) {
                    let v = group(i).map(|e| e.x << 1 | u16::from(e.p));
                    let w = [
                        v[0] << 4 | (v[1] & 0xF),
                        (v[1] >> 4) << 8 | (v[2] & 0xFF),
                        (v[2] >> 8) << 12 | v[3],
                    ];
                    w.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
                }
            } else {
                let mut i = 0;
                while i < n {
                    let x = events[i].x;
                    let mut word = x << 5;
                    i += 1;
                    for j in 0..5 {
                        if events.get(i).is_some_and(|e| e.x == x + j + 1) {
                            word |= 1 << (4 - j);
                            i += 1;
                        }
                    }
                    out.extend_from_slice(&word.to_le_bytes());
                }
                runs(events.iter().map(|e| u16::from(e.p)), |p, count| {
                    if count >= 0x7F {
                        out.push((p << 7) as u8 | 0x7F);
                        out.extend_from_slice(&(count as u16).to_le_bytes());
                    } else {
                        out.push((p << 7) as u8 | count as u8);
                    }
                });
            }
        }
    }
    Ok(out)
}

/// Calls `emit` with each run of equal values and its length.
fn runs(values: impl Iterator<Item = u16>, mut emit: impl FnMut(u16, usize)) {
    let mut current: Option<(u16, usize)> = None;
    for v in values {
        current = match current {
            Some((c, count)) if c == v => Some((c, count + 1)),
            Some((c, count)) => {
                emit(c, count);
                Some((v, 1))
            }
            None => Some((v, 1)),
        };
    }
    if let Some((c, count)) = current {
        emit(c, count);
    }
}

/// The time column: the first time, then steps and counts.
fn encode_times(events: &[Event], out: &mut Vec<u8>) {
    let Some(first) = events.first() else {
        out.extend_from_slice(&0u64.to_le_bytes());
        return;
    };
    out.extend_from_slice(&(first.t as u64).to_le_bytes());
    let mut cur = first.t;
    let mut i = 0;
    while i < events.len() {
        let t = events[i].t;
        if t >= cur + 0xF {
            let mut dt = (t - cur) as u64;
            while dt > 0 {
                out.push(0xF0 | (dt & 0xF) as u8);
                dt >>= 4;
            }
            cur = t;
        }
        let step = (t - cur) as u8;
        cur = t;
        let count = events[i..].iter().take_while(|e| e.t == t).count();
        if count >= 0xF {
            out.push(step << 4 | 0xF);
            out.extend_from_slice(&(count as u16).to_le_bytes());
        } else {
            out.push(step << 4 | count as u8);
        }
        i += count;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sink::VecSink;

    fn events() -> impl Strategy<Value = Vec<Event>> {
        let step = prop_oneof![4 => Just(0i64), 4 => 0i64..15, 1 => 15i64..1 << 40];
        let x = prop_oneof![2 => 0u16..2048, 1 => Just(u16::MAX)];
        prop::collection::vec((step, x, 0u16..2048, 0u8..2), 0..300).prop_map(|raw| {
            let (mut t, mut last_x) = (1_000_000i64, 0u16);
            raw.into_iter()
                .map(|(dt, x, y, p)| {
                    t += dt;
                    // Now and then the next column, as a row of a burst.
                    last_x = if x == u16::MAX { (last_x + 1) & 0x7FF } else { x };
                    Event { t, x: last_x, y: y / 64 * 64, p }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn every_layout_round_trips(events in events(),
                                    layout in prop::sample::select(vec![EcfLayout::Packed, EcfLayout::YRuns, EcfLayout::Masked])) {
            let buffer = ecf_encode(&events, layout).unwrap();
            let mut sink = VecSink::default();
            prop_assert_eq!(ecf_decode(&buffer, &mut sink).unwrap(), events.len());
            prop_assert_eq!(sink.events, events);
        }

        #[test]
        fn damaged_buffers_are_refused_or_decode_the_count(events in events(), cut in any::<prop::sample::Index>(),
                                                            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
            let mut buffer = ecf_encode(&events, EcfLayout::Masked).unwrap();
            for (at, byte) in flips {
                let at = at.index(buffer.len());
                buffer[at] ^= byte;
            }
            buffer.truncate(cut.index(buffer.len() + 1));
            let mut sink = VecSink::default();
            if let Ok(n) = ecf_decode(&buffer, &mut sink) {
                prop_assert_eq!(n, sink.events.len());
                prop_assert!(n <= MAX_EVENTS);
            }
        }
    }

    #[test]
    fn long_steps_and_long_runs() {
        let mut events = vec![Event { t: 5, x: 1, y: 2, p: 1 }; 40];
        events.push(Event { t: 5 + (1 << 33) + 17, x: 2047, y: 2047, p: 0 });
        for layout in [EcfLayout::Packed, EcfLayout::YRuns, EcfLayout::Masked] {
            let buffer = ecf_encode(&events, layout).unwrap();
            let mut sink = VecSink::default();
            ecf_decode(&buffer, &mut sink).unwrap();
            assert_eq!(sink.events, events, "{layout:?}");
        }
        let too_many = vec![Event::default(); MAX_EVENTS + 1];
        assert!(ecf_encode(&too_many, EcfLayout::Packed).is_err());
        assert_eq!(
            ecf_decode(&[0xFF, 0xFF, 0xFF, 0xFF], &mut VecSink::default()),
            Err(EcfError::Corrupt("more than 65,535 events"))
        );
    }
}
