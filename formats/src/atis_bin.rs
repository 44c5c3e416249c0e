//! ATIS 40-bit `.bin` files, as N-MNIST and N-Caltech101 ship them: no header, then
//! 5-byte records: x (byte 0), y (byte 1), polarity (bit 7 of byte 2), and a 23-bit
//! timestamp in microseconds (bits 0-6 of byte 2, then bytes 3 and 4, big-endian).
//!
//! A record with y = 240 is not an event but a time overflow: every later timestamp is
//! 2^13 µs later, as Garrick Orchard's `Read_Ndataset.m` and tonic's `read_mnist_file`
//! have it (the datasets' recordings last well under 2^23 µs, so none holds one).
//!
//! The format states no sensor size; detection guesses it from the events of the head
//! (34x34 for N-MNIST, else the ATIS sensor's 304x240) and marks it a guess, so that no
//! event is dropped.

use std::io::Write;

use crate::carry::Carry;
use crate::encode::{EncodeError, check_coordinates};
use crate::geometry::Geometry;
use crate::sink::{Event, EventSink};
use crate::stats::DecodeStats;

/// Bytes per record.
const RECORD: usize = 5;
/// The y of a time-overflow record.
const OVERFLOW_Y: u8 = 240;
/// Microseconds an overflow record adds to every later timestamp.
const OVERFLOW_STEP: i64 = 1 << 13;
/// Timestamps a record holds: 23 bits.
const TIME_RANGE: i64 = 1 << 23;
/// Most overflow records the encoder writes between two events.
const MAX_OVERFLOWS: i64 = 1 << 20;

/// Push decoder for ATIS `.bin` records.
#[derive(Debug, Clone, Default)]
pub struct AtisBinDecoder {
    carry: Carry<RECORD>,
    /// Overflow records seen so far.
    overflows: i64,
    stats: DecodeStats,
}

impl AtisBinDecoder {
    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        let (first, whole) = self.carry.split(bytes);
        for r in first.iter().chain(whole) {
            self.record(r, sink);
        }
    }

    #[inline]
    fn record<S: EventSink>(&mut self, r: &[u8; RECORD], sink: &mut S) {
        self.stats.words += 1;
        if r[1] == OVERFLOW_Y {
            self.overflows += 1;
            return;
        }
        let t = time(r) + self.overflows * OVERFLOW_STEP;
        sink.event(t, u16::from(r[0]), u16::from(r[1]), r[2] >> 7);
    }

    /// What was passed over so far.
    pub fn stats(&self) -> DecodeStats {
        DecodeStats { trailing_bytes: self.carry.len(), ..self.stats }
    }

    /// Bytes until the end of the record being read (0 between records).
    pub(crate) fn to_boundary(&self) -> usize {
        if self.carry.len() == 0 { 0 } else { RECORD - self.carry.len() }
    }

    /// The decoder's state between records, with fresh counts.
    pub(crate) fn snapshot(&self) -> Self {
        Self { overflows: self.overflows, ..Self::default() }
    }
}

/// A record's 23-bit timestamp.
fn time(r: &[u8; RECORD]) -> i64 {
    i64::from(r[2] & 0x7F) << 16 | i64::from(r[3]) << 8 | i64::from(r[4])
}

/// Records a head must hold to be recognised: fewer tell too little (a recording of
/// N-MNIST holds thousands).
const MIN_RECORDS: usize = 8;
/// The longest step in time between two events of a recording, for detection: a second.
const MAX_STEP: i64 = 1_000_000;

/// Recognises ATIS `.bin` records from the head of a file that has no header: at least
/// [`MIN_RECORDS`], whole records only (when `head` is the whole file, shorter than
/// `complete_below`), y never past 240, and time never going back nor jumping by more
/// than [`MAX_STEP`]. Returns the guessed geometry.
pub(crate) fn detect_atis_bin(head: &[u8], complete_below: usize) -> Option<Geometry> {
    if head.len() < MIN_RECORDS * RECORD
        || (head.len() < complete_below && !head.len().is_multiple_of(RECORD))
    {
        return None;
    }
    let (records, _) = head.as_chunks::<RECORD>();
    let (mut overflows, mut last, mut max_x, mut max_y) = (0, None, 0, 0);
    for r in records {
        if r[1] > OVERFLOW_Y {
            return None;
        }
        if r[1] == OVERFLOW_Y {
            overflows += 1;
            continue;
        }
        let t = time(r) + overflows * OVERFLOW_STEP;
        if last.is_some_and(|last| t < last || t - last > MAX_STEP) {
            return None;
        }
        (last, max_x, max_y) = (Some(t), max_x.max(r[0]), max_y.max(r[1]));
    }
    Some(if max_x < 34 && max_y < 34 {
        Geometry { width: 34, height: 34 }
    } else {
        Geometry { width: 304, height: 240 }
    })
}

/// Writes ATIS `.bin` records (no header: the geometry is not stored), with overflow
/// records where a timestamp needs them. Time may step back, but not below the last
/// overflow: the format has no way back.
#[derive(Debug)]
pub struct AtisBinEncoder<W: Write> {
    out: std::io::BufWriter<W>,
    geometry: Geometry,
    overflows: i64,
}

impl<W: Write> AtisBinEncoder<W> {
    /// An encoder for events inside `geometry` (at most 256x240: x is a byte, y below 240).
    pub fn new(out: W, geometry: Geometry) -> Result<Self, EncodeError> {
        Ok(Self { out: std::io::BufWriter::with_capacity(1 << 16, out), geometry, overflows: 0 })
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) -> Result<(), EncodeError> {
        check_coordinates(event, self.geometry, 255)?;
        if event.y >= u16::from(OVERFLOW_Y) {
            return Err(EncodeError::OutOfRange {
                x: event.x,
                y: event.y,
                width: self.geometry.width,
                height: self.geometry.height,
            });
        }
        if event.t < 0 {
            return Err(EncodeError::NegativeTime { t: event.t });
        }
        if (event.t - self.overflows * OVERFLOW_STEP - TIME_RANGE) / OVERFLOW_STEP > MAX_OVERFLOWS {
            return Err(EncodeError::TimeNotEncodable {
                t: event.t,
                previous: self.overflows * OVERFLOW_STEP,
                reason: "ATIS .bin reaches later times by overflow records of 2^13 µs, 5 bytes \
                         each: more than 2^20 at once (2.4 hours) are refused; shift the times \
                         to start near 0",
            });
        }
        while event.t - self.overflows * OVERFLOW_STEP >= TIME_RANGE {
            self.out.write_all(&[0, OVERFLOW_Y, 0, 0, 0])?;
            self.overflows += 1;
        }
        let ts = event.t - self.overflows * OVERFLOW_STEP;
        if ts < 0 {
            return Err(EncodeError::TimeNotEncodable {
                t: event.t,
                previous: self.overflows * OVERFLOW_STEP,
                reason: "ATIS .bin time never goes back past an overflow record",
            });
        }
        let ts = ts as u32;
        self.out.write_all(&[
            event.x as u8,
            event.y as u8,
            event.p << 7 | (ts >> 16) as u8,
            (ts >> 8) as u8,
            ts as u8,
        ])?;
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

    fn encode(events: &[Event], geometry: Geometry) -> Vec<u8> {
        let mut encoder = AtisBinEncoder::new(Vec::new(), geometry).unwrap();
        events.iter().for_each(|e| encoder.push(e).unwrap());
        encoder.finish().unwrap()
    }

    #[test]
    fn round_trip_through_overflow_records() {
        let geometry = Geometry { width: 34, height: 34 };
        let events = [
            Event { t: 0, x: 0, y: 0, p: 0 },
            Event { t: (1 << 23) - 1, x: 33, y: 33, p: 1 },
            Event { t: 1 << 23, x: 1, y: 2, p: 1 },
            Event { t: (1 << 23) - 5, x: 1, y: 2, p: 0 },
            Event { t: 40 << 23, x: 5, y: 6, p: 1 },
        ];
        let file = encode(&events, geometry);
        let mut far = AtisBinEncoder::new(Vec::new(), geometry).unwrap();
        assert!(far.push(&Event { t: 1_600_000_000_000_000, ..Event::default() }).is_err());
        let mut sink = VecSink::default();
        let mut decoder = AtisBinDecoder::default();
        for piece in file.chunks(3) {
            decoder.feed(piece, &mut sink);
        }
        assert_eq!(sink.events, events);
        assert_eq!(decoder.stats().trailing_bytes, 0);
    }

    #[test]
    fn the_layout_of_n_mnist() {
        // x 12, y 30, ON, t = 0x01_0203.
        let mut sink = VecSink::default();
        AtisBinDecoder::default().feed(&[12, 30, 0x81, 0x02, 0x03, 7], &mut sink);
        assert_eq!(sink.events, [Event { t: 0x01_0203, x: 12, y: 30, p: 1 }]);
    }

    #[test]
    fn detection_needs_whole_records_and_rising_time() {
        let n_mnist = Geometry { width: 34, height: 34 };
        let events: Vec<Event> =
            (0..10).map(|i| Event { t: 5 + 3 * i, x: 3 * i as u16, y: 4, p: 1 }).collect();
        let file = encode(&events, n_mnist);
        assert_eq!(detect_atis_bin(&file, 1 << 16), Some(n_mnist));
        assert_eq!(detect_atis_bin(&file[..49], 1 << 16), None);
        assert_eq!(detect_atis_bin(&file[..49], 49), Some(n_mnist));
        assert_eq!(detect_atis_bin(&file[..35], 35), None, "too few records");
        let mut back = file.clone();
        back[9] = 0;
        assert_eq!(detect_atis_bin(&back, 1 << 16), None);
        let mut jump = file.clone();
        jump[17] = 0x70;
        assert_eq!(detect_atis_bin(&jump, 1 << 16), None);
        let mut past = file.clone();
        past[6] = 241;
        assert_eq!(detect_atis_bin(&past, 1 << 16), None);
        let wide: Vec<Event> = events.iter().map(|e| Event { x: e.x + 200, ..*e }).collect();
        let wide = encode(&wide, Geometry { width: 304, height: 240 });
        assert_eq!(detect_atis_bin(&wide, 1 << 16), Some(Geometry { width: 304, height: 240 }));
    }
}
