//! Prophesee DAT: after the `% ` header, an event-type byte and a record-size byte (8),
//! then 8-byte little-endian records: a u32 timestamp and a u32 holding x in bits 0-13,
//! y in bits 14-27 and the polarity in bits 28-31.
//!
//! The timestamp is 32 bits wide and wraps after 71.6 minutes: a backward jump larger than
//! 2^31 µs is a wrap; smaller backward steps are kept as recorded.

use std::io::Write;

use crate::carry::Carry;
use crate::encode::{EncodeError, check_coordinates};
use crate::geometry::Geometry;
use crate::sink::{Event, EventSink, Slots};
use crate::stats::DecodeStats;

/// Widest coordinate the 14-bit fields hold.
const MAX_COORDINATE: u16 = (1 << 14) - 1;
/// A backward jump of the 32-bit time larger than this is a wrap.
const WRAP_THRESHOLD: u32 = 1 << 31;
/// Bytes per record, as the byte after the event type states it.
pub(crate) const DAT_RECORD_LEN: u8 = 8;
/// DAT event type of CD events written by current Prophesee tools.
const EVENT_CD: u8 = 12;

/// Push decoder for DAT CD records (the bytes after the type and size bytes).
#[derive(Debug, Clone, Default)]
pub struct DatDecoder {
    carry: Carry<8>,
    /// The last record's 32-bit timestamp.
    pub(crate) last: u32,
    /// Wraps of the 32-bit timestamp so far.
    pub(crate) wraps: i64,
    stats: DecodeStats,
}

impl DatDecoder {
    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        let (mut last, mut wraps) = (self.last, self.wraps);
        let (first, whole) = self.carry.split(bytes);
        if let Some(r) = first {
            record(&r, &mut last, &mut wraps, sink);
        }
        for block in whole.chunks(FAST_BLOCK) {
            if !fast_block(&mut last, wraps, block, sink) {
                for r in block {
                    record(r, &mut last, &mut wraps, sink);
                }
            }
        }
        self.stats.words += u64::from(first.is_some()) + whole.len() as u64;
        (self.last, self.wraps) = (last, wraps);
    }

    /// What was passed over so far.
    pub fn stats(&self) -> DecodeStats {
        DecodeStats { trailing_bytes: self.carry.len(), ..self.stats }
    }

    /// The decoder's state at a record boundary, with fresh counts.
    pub(crate) fn snapshot(&self) -> Self {
        Self { last: self.last, wraps: self.wraps, ..Self::default() }
    }
}

/// Decodes one record.
#[inline(always)]
fn record<S: EventSink>(r: &[u8; 8], last: &mut u32, wraps: &mut i64, sink: &mut S) {
    let (time, data) = fields(r);
    if wraps_between(*last, time) {
        *wraps += 1;
    }
    *last = time;
    let (x, y) = ((data & 0x3FFF) as u16, ((data >> 14) & 0x3FFF) as u16);
    sink.event(*wraps << 32 | i64::from(time), x, y, u8::from(data >> 28 != 0));
}

/// Whether the 32-bit time wrapped between two consecutive records.
#[inline(always)]
fn wraps_between(last: u32, time: u32) -> bool {
    time < last && last - time > WRAP_THRESHOLD
}

/// A record's time and data words.
#[inline(always)]
fn fields(r: &[u8; 8]) -> (u32, u32) {
    (u32::from_le_bytes([r[0], r[1], r[2], r[3]]), u32::from_le_bytes([r[4], r[5], r[6], r[7]]))
}

/// Records the fast loop decodes at a time.
const FAST_BLOCK: usize = 64;

/// Decodes a block of records straight into the sink's slots, if the sink offers room
/// for them, time does not wrap within the block and every event lies inside the slots'
/// bounds; otherwise leaves `last` as it was and returns false, for the per-record path
/// to take the block. Without a branch per record, so that it vectorises.
#[inline]
fn fast_block<S: EventSink>(last: &mut u32, wraps: i64, block: &[[u8; 8]], sink: &mut S) -> bool {
    let Some(Slots { t, x, y, p, width, height }) = sink.slots().and_then(|s| s.take(block.len()))
    else {
        return false;
    };
    let mut previous = *last;
    let mut taken = true;
    for (i, r) in block.iter().enumerate() {
        let (time, data) = fields(r);
        taken &= !wraps_between(previous, time);
        previous = time;
        let (column, row) = (data & 0x3FFF, (data >> 14) & 0x3FFF);
        taken &= (column < width) & (row < height);
        t[i] = wraps << 32 | i64::from(time);
        x[i] = column as i16;
        y[i] = row as i16;
        p[i] = i8::from(data >> 28 != 0);
    }
    if taken {
        *last = previous;
        sink.commit(block.len());
    }
    taken
}

/// Advances `decoder` over whole records as decoding them would and returns how many
/// there are (every record is an event); `bound` is raised to their highest time.
pub(crate) fn index_records(decoder: &mut DatDecoder, bytes: &[u8], bound: &mut i64) -> u64 {
    let records = bytes.as_chunks::<8>().0;
    let time = |r: &[u8; 8]| u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
    let (mut last, mut wraps, mut highest) = (decoder.last, decoder.wraps, *bound);
    for group in records.chunks(64) {
        // Branch-free over a group without a wrap (all but one group in 71 minutes).
        let mut previous = last;
        let mut any_wrap = false;
        let mut group_max = 0;
        for r in group {
            let t = time(r);
            any_wrap |= wraps_between(previous, t);
            group_max = group_max.max(t);
            previous = t;
        }
        if any_wrap {
            for r in group {
                let t = time(r);
                wraps += i64::from(wraps_between(last, t));
                last = t;
                highest = highest.max(wraps << 32 | i64::from(t));
            }
        } else {
            highest = highest.max(wraps << 32 | i64::from(group_max));
            last = previous;
        }
    }
    (decoder.last, decoder.wraps, *bound) = (last, wraps, highest);
    records.len() as u64
}

/// Writes DAT files of CD events (type 12) with `Width` and `Height` header lines.
///
/// Time may step back by less than 2^31 µs, and forward by at most that much between
/// consecutive events (35.8 minutes), so that the 32-bit wrap stays unambiguous.
#[derive(Debug)]
pub struct DatEncoder<W: Write> {
    out: std::io::BufWriter<W>,
    geometry: Geometry,
    previous: Option<i64>,
}

impl<W: Write> DatEncoder<W> {
    /// Writes the header and returns an encoder for the events.
    pub fn new(mut out: W, geometry: Geometry) -> Result<Self, EncodeError> {
        write!(
            out,
            "% Data file containing CD events.\n% Version 2\n% Width {}\n% Height {}\n",
            geometry.width, geometry.height
        )?;
        out.write_all(&[EVENT_CD, DAT_RECORD_LEN])?;
        Ok(Self { out: std::io::BufWriter::with_capacity(1 << 16, out), geometry, previous: None })
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) -> Result<(), EncodeError> {
        check_coordinates(event, self.geometry, MAX_COORDINATE)?;
        if event.t < 0 {
            return Err(EncodeError::NegativeTime { t: event.t });
        }
        let previous = self.previous.unwrap_or(0);
        let wrap_safe = (event.t - previous).abs() < i64::from(WRAP_THRESHOLD)
            && (event.t >= previous || event.t >> 32 == previous >> 32);
        if !wrap_safe {
            return Err(EncodeError::TimeNotEncodable {
                t: event.t,
                previous,
                reason: "DAT's 32-bit time allows steps shorter than 2^31 µs, and backward \
                         steps only within one wrap",
            });
        }
        self.previous = Some(event.t);
        let data = u32::from(event.x) | u32::from(event.y) << 14 | u32::from(event.p) << 28;
        self.out.write_all(&(event.t as u32).to_le_bytes())?;
        self.out.write_all(&data.to_le_bytes())?;
        Ok(())
    }

    /// Writes what is pending and returns the writer.
    pub fn finish(self) -> Result<W, EncodeError> {
        crate::encode::flushed(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::VecSink;

    #[test]
    fn round_trip_across_the_32_bit_wrap() {
        let geometry = Geometry { width: 304, height: 240 };
        let events = [
            Event { t: 10, x: 303, y: 239, p: 1 },
            Event { t: 9, x: 0, y: 0, p: 0 },
            Event { t: (1 << 31) - 5, x: 1, y: 1, p: 1 },
            Event { t: 3 << 30, x: 1, y: 1, p: 1 },
            Event { t: (1 << 32) + 7, x: 2, y: 2, p: 0 },
            Event { t: (1 << 32) + 6, x: 2, y: 2, p: 0 },
        ];
        let mut encoder = DatEncoder::new(Vec::new(), geometry).unwrap();
        for e in &events {
            encoder.push(e).unwrap();
        }
        let file = encoder.finish().unwrap();
        let detected = crate::detect(&file, Some("dat")).unwrap();
        assert_eq!(detected.geometry, geometry);
        let mut sink = VecSink::default();
        let mut decoder = DatDecoder::default();
        decoder.feed(&file[detected.data_offset..], &mut sink);
        assert_eq!(sink.events, events);
        assert_eq!(decoder.stats().trailing_bytes, 0);
    }

    #[test]
    fn refuses_jumps_the_wrap_cannot_disambiguate() {
        let mut encoder = DatEncoder::new(Vec::new(), Geometry { width: 8, height: 8 }).unwrap();
        encoder.push(&Event { t: 0, x: 0, y: 0, p: 0 }).unwrap();
        assert!(encoder.push(&Event { t: 1 << 31, x: 0, y: 0, p: 0 }).is_err());
    }
}
