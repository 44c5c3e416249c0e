//! Prophesee EVT 2.0: 32-bit little-endian words, type in bits 28-31.
//!
//! CD_OFF (0) and CD_ON (1) carry y in bits 0-10, x in bits 11-21 and the low 6 bits of
//! time in bits 22-27; TIME_HIGH (8) carries time bits 6-33; EXT_TRIGGER (0xA) carries the
//! edge in bit 0 and the trigger id in bits 8-12. Words before the first TIME_HIGH are
//! dropped (OpenEB). Time wraps as `clock34` describes.

use std::io::Write;

use crate::carry::Carry;
use crate::clock34::{Clock34, HighSteps, TIME_HIGH_MASK};
use crate::encode::{EncodeError, check_coordinates};
use crate::geometry::Geometry;
use crate::sink::{Event, EventSink, Slots, Trigger};
use crate::stats::DecodeStats;

const CD_OFF: u32 = 0x0;
const CD_ON: u32 = 0x1;
const TIME_HIGH: u32 = 0x8;
const EXT_TRIGGER: u32 = 0xA;
const IMU: u32 = 0xD;
const OTHERS: u32 = 0xE;
const CONTINUED: u32 = 0xF;

const MAX_COORDINATE: u16 = 0x7FF;

/// Push decoder for EVT 2.0 event data (the bytes after the header).
#[derive(Debug, Clone, Default)]
pub struct Evt2Decoder {
    carry: Carry<4>,
    pub(crate) clock: Clock34,
    stats: DecodeStats,
}

impl Evt2Decoder {
    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        let (mut clock, mut stats) = (self.clock, self.stats);
        let (first, whole) = self.carry.split(bytes);
        if let Some(w) = first {
            Self::word(&mut clock, &mut stats, u32::from_le_bytes(w), sink);
        }
        for block in whole.chunks(FAST_BLOCK) {
            if fast_block(&clock, block, sink) {
                stats.words += block.len() as u64;
            } else {
                for &w in block {
                    Self::word(&mut clock, &mut stats, u32::from_le_bytes(w), sink);
                }
            }
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

    /// The decoder's state at a word boundary, with fresh counts.
    pub(crate) fn snapshot(&self) -> Self {
        Self { clock: self.clock, ..Self::default() }
    }

    #[inline(always)]
    fn word<S: EventSink>(clock: &mut Clock34, stats: &mut DecodeStats, word: u32, sink: &mut S) {
        stats.words += 1;
        let kind = word >> 28;
        if kind == TIME_HIGH {
            clock.set_high(word & TIME_HIGH_MASK);
            return;
        }
        if !clock.known() {
            stats.before_first_time += 1;
            return;
        }
        let t = clock.time(word >> 22);
        match kind {
            CD_OFF | CD_ON => {
                let x = ((word >> 11) & 0x7FF) as u16;
                let y = (word & 0x7FF) as u16;
                sink.event(t, x, y, kind as u8);
            }
            EXT_TRIGGER => {
                sink.trigger(Trigger { t, id: ((word >> 8) & 0x1F) as u8, p: (word & 1) as u8 })
            }
            IMU | OTHERS | CONTINUED => {}
            _ => stats.unknown += 1,
        }
    }
}

/// Words the fast loop decodes at a time.
const FAST_BLOCK: usize = 32;

/// Decodes a block of words straight into the sink's slots, if the sink offers room for
/// them, time is known and every word is a CD event inside the slots' bounds (at 20 M
/// events/s, a TIME_HIGH comes every 1280 words); otherwise returns false, for the
/// per-word path to take the block. Without a branch per word, so that it vectorises.
#[inline]
fn fast_block<S: EventSink>(clock: &Clock34, block: &[[u8; 4]], sink: &mut S) -> bool {
    if !clock.known() {
        return false;
    }
    let n = block.len();
    let Some(Slots { t, x, y, p, width, height }) = sink.slots().and_then(|s| s.take(n)) else {
        return false;
    };
    let mut taken = true;
    for (i, &w) in block.iter().enumerate() {
        let word = u32::from_le_bytes(w);
        let (column, row) = ((word >> 11) & 0x7FF, word & 0x7FF);
        taken &= (word >> 29 == 0) & (column < width) & (row < height);
        t[i] = clock.time(word >> 22);
        x[i] = column as i16;
        y[i] = row as i16;
        p[i] = ((word >> 28) & 1) as i8;
    }
    if taken {
        sink.commit(n);
    }
    taken
}

/// Counts the events (CD words, types 0 and 1) and triggers of whole EVT2 words, for a
/// decoder past its first TIME_HIGH.
fn count_events(bytes: &[u8]) -> (u64, u64) {
    let words = bytes.as_chunks::<4>().0;
    let events = words.iter().map(|&w| u64::from(u32::from_le_bytes(w) >> 29 == 0)).sum();
    let kind = |&w: &[u8; 4]| u32::from_le_bytes(w) >> 28;
    let triggers = words.iter().map(|w| u64::from(kind(w) == EXT_TRIGGER)).sum();
    (events, triggers)
}

/// Advances `clock` over whole words as decoding them would, and returns their events and
/// triggers, for a clock that is known; `bound` is raised to the highest time an event of
/// these words can have.
pub(crate) fn index_words(clock: &mut Clock34, bytes: &[u8], bound: &mut i64) -> (u64, u64) {
    for group in bytes.as_chunks::<4>().0.chunks(32) {
        // Branch-free test of a whole group first: most groups hold no TIME_HIGH.
        if group.iter().fold(false, |any, w| any | (w[3] >> 4 == TIME_HIGH as u8)) {
            for &w in group {
                let word = u32::from_le_bytes(w);
                if word >> 28 == TIME_HIGH {
                    clock.set_high(word & TIME_HIGH_MASK);
                    *bound = (*bound).max(clock.time(0x3F));
                }
            }
        }
    }
    count_events(bytes)
}

/// Writes EVT 2.0 files: a `% format EVT2;...` header, then one word per event and a
/// TIME_HIGH word whenever time crosses a 64 µs boundary.
///
/// Backward steps are possible while they stay within one 4.77 h clock loop and are
/// shorter than half of it.
#[derive(Debug)]
pub struct Evt2Encoder<W: Write> {
    out: W,
    geometry: Geometry,
    high: HighSteps,
    words: Vec<u32>,
}

impl<W: Write> Evt2Encoder<W> {
    /// Writes the header and returns an encoder for the events.
    pub fn new(mut out: W, geometry: Geometry) -> Result<Self, EncodeError> {
        write!(
            out,
            "% format EVT2;height={};width={}\n% generator evshm {}\n% end\n",
            geometry.height,
            geometry.width,
            env!("CARGO_PKG_VERSION")
        )?;
        Ok(Self { out, geometry, high: HighSteps::default(), words: Vec::with_capacity(4096) })
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) -> Result<(), EncodeError> {
        check_coordinates(event, self.geometry, MAX_COORDINATE)?;
        self.set_time(event.t)?;
        let kind = if event.p == 1 { CD_ON } else { CD_OFF };
        self.push_word(
            kind << 28
                | ((event.t & 0x3F) as u32) << 22
                | u32::from(event.x) << 11
                | u32::from(event.y),
        )
    }

    /// Adds one external trigger.
    pub fn push_trigger(&mut self, trigger: &Trigger) -> Result<(), EncodeError> {
        self.set_time(trigger.t)?;
        self.push_word(
            EXT_TRIGGER << 28
                | ((trigger.t & 0x3F) as u32) << 22
                | u32::from(trigger.id & 0x1F) << 8
                | u32::from(trigger.p & 1),
        )
    }

    /// Writes what is pending and returns the writer.
    pub fn finish(mut self) -> Result<W, EncodeError> {
        self.write_words()?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn set_time(&mut self, t: i64) -> Result<(), EncodeError> {
        let words = &mut self.words;
        self.high.advance(t, "EVT2", |high| words.push(TIME_HIGH << 28 | high))
    }

    fn push_word(&mut self, word: u32) -> Result<(), EncodeError> {
        self.words.push(word);
        if self.words.len() >= 4096 {
            self.write_words()?;
        }
        Ok(())
    }

    fn write_words(&mut self) -> Result<(), EncodeError> {
        let bytes: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.out.write_all(&bytes)?;
        self.words.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::VecSink;

    fn decode(words: &[u32]) -> (VecSink, DecodeStats) {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut decoder = Evt2Decoder::default();
        let mut sink = VecSink::default();
        decoder.feed(&bytes, &mut sink);
        (sink, decoder.stats())
    }

    #[test]
    fn cd_words_and_time() {
        let cd_on = 1 << 28 | 5 << 22 | 300 << 11 | 200;
        let (sink, stats) = decode(&[cd_on, 0x8000_0002, cd_on, 0xA500_0301, 0x3000_0000]);
        assert_eq!(stats.before_first_time, 1);
        assert_eq!(stats.unknown, 1);
        assert_eq!(sink.events, [Event { t: 128 + 5, x: 300, y: 200, p: 1 }]);
        assert_eq!(sink.triggers, [Trigger { t: 128 + 20, id: 3, p: 1 }]);
    }

    #[test]
    fn wrap_of_the_34_bit_clock() {
        let (sink, _) = decode(&[0x8FFF_FFFF, 0x0000_0001, 0x8000_0000, 0x0000_0001]);
        let ts: Vec<i64> = sink.events.iter().map(|e| e.t).collect();
        assert_eq!(ts, [(1 << 34) - 64, 1 << 34]);
    }

    #[test]
    fn encoder_round_trip_across_wraps() {
        let geometry = Geometry { width: 640, height: 480 };
        let events = [
            Event { t: 70, x: 639, y: 479, p: 1 },
            Event { t: 65, x: 0, y: 0, p: 0 },
            Event { t: (1 << 34) + 3, x: 1, y: 2, p: 1 },
            Event { t: (3 << 34) + 99, x: 3, y: 4, p: 0 },
        ];
        let mut encoder = Evt2Encoder::new(Vec::new(), geometry).unwrap();
        for e in &events {
            encoder.push(e).unwrap();
        }
        encoder.push_trigger(&Trigger { t: (3 << 34) + 100, id: 7, p: 0 }).unwrap();
        let file = encoder.finish().unwrap();
        let detected = crate::detect(&file, None).unwrap();
        let mut sink = VecSink::default();
        Evt2Decoder::default().feed(&file[detected.data_offset..], &mut sink);
        assert_eq!(sink.events, events);
        assert_eq!(sink.triggers, [Trigger { t: (3 << 34) + 100, id: 7, p: 0 }]);
    }
}
