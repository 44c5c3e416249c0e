//! Prophesee EVT 2.1: 64-bit words, each CD word a vector of up to 32 events on one row.
//!
//! Standard word (little-endian u64): validity mask in bits 0-31, y in bits 32-42, base x
//! in bits 43-53, the low 6 bits of time in bits 54-59, type in bits 60-63. EVT_NEG (0)
//! and EVT_POS (1) emit one event at `x + i` for every set bit `i` of the mask, in
//! ascending order; TIME_HIGH (8) carries time bits 6-33 in bits 32-59; EXT_TRIGGER (0xA)
//! carries the edge in bit 32 and the id in bits 40-44. In the `endianness=legacy` order
//! the two 32-bit halves are swapped: the half with the type comes first in the file.
//! Words before the first TIME_HIGH are dropped (OpenEB); time wraps as in EVT 2.0.

use std::io::Write;

use crate::carry::Carry;
use crate::clock34::{Clock34, HighSteps, TIME_HIGH_MASK};
use crate::encode::{EncodeError, check_coordinates};
use crate::geometry::Geometry;
use crate::sink::{Event, EventSink, Trigger};
use crate::stats::DecodeStats;

const EVT_NEG: u64 = 0x0;
const EVT_POS: u64 = 0x1;
const TIME_HIGH: u64 = 0x8;
const EXT_TRIGGER: u64 = 0xA;
const IMU: u64 = 0xD;
const OTHERS: u64 = 0xE;
const CONTINUED: u64 = 0xF;
const MAX_COORDINATE: u16 = 0x7FF;

/// The order of the two 32-bit halves of a word in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    /// Little-endian u64: the mask half first.
    #[default]
    Standard,
    /// `endianness=legacy`: the half holding the type first.
    Legacy,
}

impl WordOrder {
    #[inline(always)]
    pub(crate) fn word(self, bytes: [u8; 8]) -> u64 {
        let first = u64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        let second = u64::from(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
        match self {
            WordOrder::Standard => first | second << 32,
            WordOrder::Legacy => second | first << 32,
        }
    }

    fn bytes(self, word: u64) -> [u8; 8] {
        match self {
            WordOrder::Standard => word.to_le_bytes(),
            WordOrder::Legacy => (word.rotate_left(32)).to_le_bytes(),
        }
    }
}

/// Push decoder for EVT 2.1 event data (the bytes after the header).
#[derive(Debug, Clone, Default)]
pub struct Evt21Decoder {
    order: WordOrder,
    carry: Carry<8>,
    pub(crate) clock: Clock34,
    stats: DecodeStats,
}

impl Evt21Decoder {
    /// A decoder for words in the given order.
    pub fn new(order: WordOrder) -> Self {
        Self { order, ..Self::default() }
    }

    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        let order = self.order;
        let (mut clock, mut stats) = (self.clock, self.stats);
        let (first, whole) = self.carry.split(bytes);
        for &w in first.iter().chain(whole) {
            Self::word(&mut clock, &mut stats, order.word(w), sink);
        }
        (self.clock, self.stats) = (clock, stats);
    }

    /// What was passed over so far.
    pub fn stats(&self) -> DecodeStats {
        DecodeStats { trailing_bytes: self.carry.len(), ..self.stats }
    }

    /// Whether a TIME_HIGH has been seen.
    pub(crate) fn time_known(&self) -> bool {
        self.clock.known()
    }

    /// The word order.
    pub(crate) fn order(&self) -> WordOrder {
        self.order
    }

    /// The decoder's state at a word boundary, with fresh counts.
    pub(crate) fn snapshot(&self) -> Self {
        Self { order: self.order, clock: self.clock, ..Self::default() }
    }

    #[inline(always)]
    fn word<S: EventSink>(clock: &mut Clock34, stats: &mut DecodeStats, word: u64, sink: &mut S) {
        stats.words += 1;
        let kind = word >> 60;
        if kind == TIME_HIGH {
            clock.set_high((word >> 32) as u32 & TIME_HIGH_MASK);
            return;
        }
        if !clock.known() {
            stats.before_first_time += 1;
            return;
        }
        let t = clock.time((word >> 54) as u32);
        match kind {
            EVT_NEG | EVT_POS => {
                let y = ((word >> 32) & 0x7FF) as u16;
                let x = ((word >> 43) & 0x7FF) as u16;
                let mut mask = word as u32;
                while mask != 0 {
                    sink.event(t, x.wrapping_add(mask.trailing_zeros() as u16), y, kind as u8);
                    mask &= mask - 1;
                }
            }
            EXT_TRIGGER => sink.trigger(Trigger {
                t,
                id: ((word >> 40) & 0x1F) as u8,
                p: ((word >> 32) & 1) as u8,
            }),
            IMU | OTHERS | CONTINUED => {}
            _ => stats.unknown += 1,
        }
    }
}

/// Counts the events and triggers of whole EVT 2.1 words, for a decoder past its first
/// TIME_HIGH.
fn count_events(bytes: &[u8], order: WordOrder) -> (u64, u64) {
    let (mut events, mut triggers) = (0, 0);
    for &w in bytes.as_chunks::<8>().0 {
        let word = order.word(w);
        let kind = word >> 60;
        events += if kind <= EVT_POS { u64::from((word as u32).count_ones()) } else { 0 };
        triggers += u64::from(kind == EXT_TRIGGER);
    }
    (events, triggers)
}

/// Advances `clock` over whole words as decoding them would, and returns their events and
/// triggers, for a clock that is known; `bound` is raised to the highest time an event of
/// these words can have.
pub(crate) fn index_words(
    clock: &mut Clock34,
    order: WordOrder,
    bytes: &[u8],
    bound: &mut i64,
) -> (u64, u64) {
    for group in bytes.as_chunks::<8>().0.chunks(16) {
        // Branch-free test of a whole group first: most groups hold no TIME_HIGH.
        if group.iter().fold(false, |any, &w| any | (order.word(w) >> 60 == TIME_HIGH)) {
            for &w in group {
                let word = order.word(w);
                if word >> 60 == TIME_HIGH {
                    clock.set_high((word >> 32) as u32 & TIME_HIGH_MASK);
                    *bound = (*bound).max(clock.time(0x3F));
                }
            }
        }
    }
    count_events(bytes, order)
}

/// Writes EVT 2.1 files: a `% format EVT21;...` header, then one vector word per run of
/// events that share a time, row and polarity within 32 columns.
#[derive(Debug)]
pub struct Evt21Encoder<W: Write> {
    out: W,
    geometry: Geometry,
    order: WordOrder,
    high: HighSteps,
    /// The vector being filled: time, row, polarity, base column, mask.
    pending: Option<(i64, u16, u8, u16, u32)>,
    words: Vec<u64>,
}

impl<W: Write> Evt21Encoder<W> {
    /// Writes the header and returns an encoder for the events.
    pub fn new(mut out: W, geometry: Geometry, order: WordOrder) -> Result<Self, EncodeError> {
        let endianness = match order {
            WordOrder::Standard => "little",
            WordOrder::Legacy => "legacy",
        };
        write!(
            out,
            "% format EVT21;height={};width={};endianness={endianness}\n% generator evshm {}\n% end\n",
            geometry.height,
            geometry.width,
            env!("CARGO_PKG_VERSION")
        )?;
        let high = HighSteps::default();
        Ok(Self { out, geometry, order, high, pending: None, words: Vec::with_capacity(2048) })
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) -> Result<(), EncodeError> {
        check_coordinates(event, self.geometry, MAX_COORDINATE)?;
        if let Some((t, y, p, base, mask)) = &mut self.pending {
            // The vector takes events right of its last one, within 32 columns of its base.
            let last = 31 - mask.leading_zeros();
            let same = event.t == *t && event.y == *y && event.p == *p;
            if same && event.x > *base && u32::from(event.x - *base) > last {
                let offset = u32::from(event.x - *base);
                if offset < 32 {
                    *mask |= 1 << offset;
                    return Ok(());
                }
            }
        }
        self.flush_vector()?;
        self.pending = Some((event.t, event.y, event.p, event.x, 1));
        Ok(())
    }

    /// Adds one external trigger.
    pub fn push_trigger(&mut self, trigger: &Trigger) -> Result<(), EncodeError> {
        self.flush_vector()?;
        self.set_time(trigger.t)?;
        let low = (trigger.t & 0x3F) as u64;
        self.words.push(
            EXT_TRIGGER << 60
                | low << 54
                | u64::from(trigger.id & 0x1F) << 40
                | u64::from(trigger.p & 1) << 32,
        );
        Ok(())
    }

    /// Writes what is pending and returns the writer.
    pub fn finish(mut self) -> Result<W, EncodeError> {
        self.flush_vector()?;
        self.write_words()?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn flush_vector(&mut self) -> Result<(), EncodeError> {
        let Some((t, y, p, base, mask)) = self.pending.take() else { return Ok(()) };
        self.set_time(t)?;
        let kind = if p == 1 { EVT_POS } else { EVT_NEG };
        self.words.push(
            kind << 60
                | ((t & 0x3F) as u64) << 54
                | u64::from(base) << 43
                | u64::from(y) << 32
                | u64::from(mask),
        );
        if self.words.len() >= 2048 {
            self.write_words()?;
        }
        Ok(())
    }

    fn set_time(&mut self, t: i64) -> Result<(), EncodeError> {
        let words = &mut self.words;
        self.high.advance(t, "EVT2.1", |high| words.push(TIME_HIGH << 60 | u64::from(high) << 32))
    }

    fn write_words(&mut self) -> Result<(), EncodeError> {
        let order = self.order;
        let bytes: Vec<u8> = self.words.iter().flat_map(|&w| order.bytes(w)).collect();
        self.out.write_all(&bytes)?;
        self.words.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::VecSink;

    fn round_trip(order: WordOrder) {
        let geometry = Geometry { width: 1280, height: 720 };
        let mut events: Vec<Event> =
            (0..40).map(|i| Event { t: 100, x: 10 + i, y: 5, p: 1 }).collect();
        events.extend([
            Event { t: 99, x: 3, y: 5, p: 0 },
            Event { t: 99, x: 2, y: 5, p: 0 },
            Event { t: (1 << 34) + 7, x: 1279, y: 719, p: 1 },
        ]);
        let trigger = Trigger { t: (1 << 34) + 8, id: 17, p: 1 };
        let mut encoder = Evt21Encoder::new(Vec::new(), geometry, order).unwrap();
        for e in &events {
            encoder.push(e).unwrap();
        }
        encoder.push_trigger(&trigger).unwrap();
        let file = encoder.finish().unwrap();
        let detected = crate::detect(&file, None).unwrap();
        assert_eq!(detected.format, crate::Format::Evt21(order));
        assert_eq!(detected.geometry, geometry);
        let mut sink = VecSink::default();
        Evt21Decoder::new(order).feed(&file[detected.data_offset..], &mut sink);
        assert_eq!(sink.events, events);
        assert_eq!(sink.triggers, [trigger]);
    }

    #[test]
    fn round_trips_in_both_word_orders() {
        round_trip(WordOrder::Standard);
        round_trip(WordOrder::Legacy);
    }

    #[test]
    fn legacy_order_swaps_the_halves() {
        let word: u64 = EVT_POS << 60 | 5 << 54 | 100 << 43 | 7 << 32 | 0b101;
        let time_high: u64 = TIME_HIGH << 60 | 2 << 32;
        for order in [WordOrder::Standard, WordOrder::Legacy] {
            let bytes: Vec<u8> = [time_high, word].iter().flat_map(|&w| order.bytes(w)).collect();
            let mut sink = VecSink::default();
            Evt21Decoder::new(order).feed(&bytes, &mut sink);
            let xs: Vec<(i64, u16, u16)> = sink.events.iter().map(|e| (e.t, e.x, e.y)).collect();
            assert_eq!(xs, [(133, 100, 7), (133, 102, 7)]);
        }
        assert_eq!(&WordOrder::Legacy.bytes(word)[..4], &((word >> 32) as u32).to_le_bytes());
    }
}
