//! Prophesee EVT 3.0: 16-bit little-endian words, type in bits 12-15.
//!
//! Time is `loops << 24 | time_high << 12 | time_low`. A TIME_HIGH that goes back by at
//! least 2048 (half its 12-bit range) is a wrap of the 24-bit clock (every 16.78 s); a
//! TIME_HIGH that differs from the previous one resets TIME_LOW to 0. Rows come from
//! ADDR_Y; ADDR_X emits one event; VECT_BASE_X sets a base column and polarity that
//! VECT_12 and VECT_8 masks emit from, advancing the base by 12 and 8. As in OpenEB, words
//! before the first TIME_HIGH are dropped, as are CD words before the first ADDR_Y and
//! vectors before the first VECT_BASE_X; OTHERS and CONTINUED words are skipped.
//!
//! Into a sink that offers column slots, the decoder takes blocks of words through a
//! branch-free path (`fast`), and leaves what that path does not take (time high words,
//! triggers, words of undefined types, events outside the slots' bounds) to the per-word
//! state machine here, which defines what every word means.

mod fast;

use std::io::Write;

use self::fast::{Groups, Outcome};
use crate::carry::Carry;
use crate::encode::{EncodeError, check_coordinates};
use crate::geometry::Geometry;
use crate::sink::{Event, EventSink, Trigger};
use crate::stats::DecodeStats;

const ADDR_Y: u16 = 0x0;
const ADDR_X: u16 = 0x2;
const VECT_BASE_X: u16 = 0x3;
const VECT_12: u16 = 0x4;
const VECT_8: u16 = 0x5;
const TIME_LOW: u16 = 0x6;
const CONTINUED_4: u16 = 0x7;
const TIME_HIGH: u16 = 0x8;
const EXT_TRIGGER: u16 = 0xA;
const OTHERS: u16 = 0xE;
const CONTINUED_12: u16 = 0xF;

/// TIME_HIGH steps back by at least this much when the 24-bit clock wraps.
const LOOP_THRESHOLD: u16 = 2048;
/// Largest coordinate the 11-bit address fields hold.
const MAX_COORDINATE: u16 = 0x7FF;

/// Push decoder for EVT 3.0 event data (the bytes after the header).
#[derive(Debug, Clone, Default)]
pub struct Evt3Decoder {
    carry: Carry<2>,
    pub(crate) state: State,
    bytes: u64,
}

/// What the decoder knows at a word boundary. `Copy`, so that the decode loop works on a
/// local copy the compiler keeps in registers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct State {
    pub(crate) time_known: bool,
    pub(crate) row_known: bool,
    pub(crate) base_known: bool,
    pub(crate) time_high: u16,
    pub(crate) loops: i64,
    pub(crate) time: i64,
    pub(crate) y: u16,
    pub(crate) base_x: u16,
    pub(crate) polarity: u8,
    before_first_time: u64,
    unknown: u64,
}

impl Evt3Decoder {
    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        self.bytes += bytes.len() as u64;
        let mut state = self.state;
        let (first, mut words) = self.carry.split(bytes);
        if let Some(w) = first {
            state.word(u16::from_le_bytes(w), sink);
        }
        // A sink without slots takes every event through `event`: the fast path would
        // have nowhere to write.
        if sink.slots().is_some() {
            let mut groups = Groups::default();
            while !words.is_empty() {
                words = match fast::block(&mut state, words, &mut groups, sink) {
                    Outcome::Decoded(n) => &words[n..],
                    Outcome::Declined(n) => {
                        for &w in &words[..n] {
                            state.word(u16::from_le_bytes(w), sink);
                        }
                        &words[n..]
                    }
                };
            }
        }
        for &w in words {
            state.word(u16::from_le_bytes(w), sink);
        }
        self.state = state;
    }

    /// What was passed over so far.
    pub fn stats(&self) -> DecodeStats {
        let trailing_bytes = self.carry.len();
        DecodeStats {
            words: (self.bytes - trailing_bytes as u64) / 2,
            before_first_time: self.state.before_first_time,
            unknown: self.state.unknown,
            trailing_bytes,
        }
    }

    /// The decoder's state at a word boundary, with fresh counts.
    pub(crate) fn snapshot(&self) -> Self {
        let state = State { before_first_time: 0, unknown: 0, ..self.state };
        Self { state, ..Self::default() }
    }
}

impl State {
    /// Takes a TIME_HIGH word's 12 bits; returns whether the time changed (which resets
    /// TIME_LOW).
    #[inline(always)]
    pub(crate) fn time_high(&mut self, high: u16) -> bool {
        if self.time_known && self.time_high >= high + LOOP_THRESHOLD {
            self.loops += 1;
        }
        let changed = !self.time_known || high != self.time_high;
        if changed {
            self.time = (self.loops << 24) | i64::from(high) << 12;
        }
        self.time_high = high;
        self.time_known = true;
        changed
    }

    #[inline(always)]
    fn word<S: EventSink>(&mut self, word: u16, sink: &mut S) {
        let kind = word >> 12;
        if kind == TIME_HIGH {
            self.time_high(word & 0xFFF);
            return;
        }
        if !self.time_known {
            self.before_first_time += 1;
            return;
        }
        match kind {
            ADDR_Y => {
                self.y = word & MAX_COORDINATE;
                self.row_known = true;
            }
            ADDR_X if self.row_known => {
                sink.event(self.time, word & MAX_COORDINATE, self.y, ((word >> 11) & 1) as u8);
            }
            VECT_BASE_X => {
                self.base_x = word & MAX_COORDINATE;
                self.polarity = ((word >> 11) & 1) as u8;
                self.base_known = true;
            }
            VECT_12 => self.vector(word & 0xFFF, 12, sink),
            VECT_8 => self.vector(word & 0xFF, 8, sink),
            TIME_LOW => self.time = (self.time & !0xFFF) | i64::from(word & 0xFFF),
            EXT_TRIGGER => sink.trigger(Trigger {
                t: self.time,
                id: ((word >> 8) & 0xF) as u8,
                p: (word & 1) as u8,
            }),
            ADDR_X | CONTINUED_4 | OTHERS | CONTINUED_12 => {}
            _ => self.unknown += 1,
        }
    }

    #[inline(always)]
    fn vector<S: EventSink>(&mut self, mut mask: u16, width: u16, sink: &mut S) {
        if !(self.row_known && self.base_known) {
            return;
        }
        while mask != 0 {
            let x = self.base_x.wrapping_add(mask.trailing_zeros() as u16);
            sink.event(self.time, x, self.y, self.polarity);
            mask &= mask - 1;
        }
        self.base_x = self.base_x.wrapping_add(width);
    }
}

/// Counts the events and triggers in whole EVT3 words, for a decoder past its first
/// TIME_HIGH and ADDR_Y (so every ADDR_X is an event); vectors count once a VECT_BASE_X
/// is known (`base_known`, or one among these words).
fn count_events(bytes: &[u8], base_known: bool) -> (u64, u64) {
    let (mut count, mut triggers) = (0u64, 0u64);
    let mut words = bytes.as_chunks::<2>().0.iter();
    if !base_known {
        for &word in words.by_ref() {
            match u16::from_le_bytes(word) >> 12 {
                ADDR_X => count += 1,
                EXT_TRIGGER => triggers += 1,
                VECT_BASE_X => break,
                _ => {}
            }
        }
    }
    for block in words.as_slice().chunks(1 << 16) {
        let (events, trigger_words) = count_words(block);
        count += u64::from(events);
        triggers += u64::from(trigger_words);
    }
    (count, triggers)
}

/// Events and triggers of at most 2^16 words past the first VECT_BASE_X: branch-free and
/// free of table lookups, so that it vectorises (word types interleave too irregularly
/// for a branch predictor); 32-bit sums cannot overflow on so few words.
fn count_words(words: &[[u8; 2]]) -> (u32, u32) {
    let (mut events, mut triggers) = (0u32, 0u32);
    for &word in words {
        let word = u16::from_le_bytes(word);
        let kind = word >> 12;
        let mask = (u16::from(kind == VECT_12) * 0xFFF) | (u16::from(kind == VECT_8) * 0xFF);
        events += (word & mask).count_ones() + u32::from(kind == ADDR_X);
        triggers += u32::from(kind == EXT_TRIGGER);
    }
    (events, triggers)
}

/// Advances `state` over whole words as decoding them would, without decoding events, and
/// returns their events and triggers: for a state past its first TIME_HIGH and ADDR_Y.
/// The counts come from [`count_events`]; TIME_HIGH words, which are rare, are applied in
/// order; the rest of the state (row, vector base, TIME_LOW) is read off the last words of
/// each kind, found by scanning backwards. `bound` is raised to the highest time an event
/// of these words can have.
pub(crate) fn index_words(state: &mut State, bytes: &[u8], bound: &mut i64) -> (u64, u64) {
    let words = bytes.as_chunks::<2>().0;
    // The backward scan below finds the VECT_BASE_X that `count_events` looks for.
    let counts = count_events(bytes, state.base_known);
    let mut last_change = None;
    for (g, group) in words.chunks(32).enumerate() {
        // Branch-free test of a whole group first: most groups hold no TIME_HIGH.
        if group.iter().fold(false, |any, w| any | (w[1] >> 4 == TIME_HIGH as u8)) {
            for (i, w) in group.iter().enumerate() {
                let word = u16::from_le_bytes(*w);
                if word >> 12 == TIME_HIGH {
                    if state.time_high(word & 0xFFF) {
                        last_change = Some(g * 32 + i);
                    }
                    *bound = (*bound).max(state.time | 0xFFF);
                }
            }
        }
    }
    let (mut row, mut base, mut low) = (None, None, None);
    // Columns the vectors after the last VECT_BASE_X (or all of them) advance the base by.
    let mut advance = 0u16;
    for (i, w) in words.iter().enumerate().rev() {
        let word = u16::from_le_bytes(*w);
        match word >> 12 {
            ADDR_Y if row.is_none() => row = Some(word & MAX_COORDINATE),
            VECT_BASE_X if base.is_none() => base = Some(word),
            VECT_12 if base.is_none() => advance = advance.wrapping_add(12),
            VECT_8 if base.is_none() => advance = advance.wrapping_add(8),
            TIME_LOW if low.is_none() => low = Some((i, word & 0xFFF)),
            _ => {}
        }
        if row.is_some() && base.is_some() && low.is_some() {
            break;
        }
    }
    if let Some(y) = row {
        state.y = y;
    }
    if let Some(word) = base {
        state.base_x = (word & MAX_COORDINATE).wrapping_add(advance);
        state.polarity = ((word >> 11) & 1) as u8;
        state.base_known = true;
    } else if state.base_known {
        state.base_x = state.base_x.wrapping_add(advance);
    }
    // A TIME_LOW counts unless a TIME_HIGH that changed the time came after it.
    if let Some((i, low)) = low
        && last_change.is_none_or(|changed| i > changed)
    {
        state.time = (state.time & !0xFFF) | i64::from(low);
    }
    counts
}

/// Writes EVT 3.0 files: a `% format EVT3;...` header, then events grouped into vectors
/// where consecutive events share a time, row and polarity.
///
/// Times must be representable: forward jumps of any size (intermediate TIME_HIGH words
/// carry the wraps), backward steps only within the same 16.78 s clock loop and by less
/// than 8.4 s.
#[derive(Debug)]
pub struct Evt3Encoder<W: Write> {
    out: W,
    geometry: Geometry,
    /// Time above the low 12 bits (loops and TIME_HIGH) the decoder is at, once known.
    high: Option<i64>,
    low: u16,
    row: Option<u16>,
    run: Run,
    words: Vec<u16>,
}

/// Events waiting to be written as one ADDR_X or vector group.
#[derive(Debug, Default)]
struct Run {
    t: i64,
    y: u16,
    p: u8,
    xs: Vec<u16>,
}

/// Vector groups never span more than this many columns, so masks stay dense.
const MAX_RUN_SPAN: u16 = 64;

impl<W: Write> Evt3Encoder<W> {
    /// Writes the header and returns an encoder for the events.
    pub fn new(mut out: W, geometry: Geometry) -> Result<Self, EncodeError> {
        write!(
            out,
            "% format EVT3;height={};width={}\n% generator evshm {}\n% end\n",
            geometry.height,
            geometry.width,
            env!("CARGO_PKG_VERSION")
        )?;
        Ok(Self {
            out,
            geometry,
            high: None,
            low: 0,
            row: None,
            run: Run::default(),
            words: Vec::with_capacity(4096),
        })
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) -> Result<(), EncodeError> {
        check_coordinates(event, self.geometry, MAX_COORDINATE)?;
        let run = &self.run;
        let extends = !run.xs.is_empty()
            && event.t == run.t
            && event.y == run.y
            && event.p == run.p
            && run.xs.last().is_some_and(|&last| event.x > last)
            && event.x - run.xs[0] < MAX_RUN_SPAN;
        if !extends {
            self.flush_run()?;
            self.run.t = event.t;
            self.run.y = event.y;
            self.run.p = event.p;
        }
        self.run.xs.push(event.x);
        Ok(())
    }

    /// Adds one external trigger.
    pub fn push_trigger(&mut self, trigger: &Trigger) -> Result<(), EncodeError> {
        self.flush_run()?;
        self.set_time(trigger.t)?;
        self.words
            .push(EXT_TRIGGER << 12 | u16::from(trigger.id & 0xF) << 8 | u16::from(trigger.p & 1));
        Ok(())
    }

    /// Writes what is pending and returns the writer.
    pub fn finish(mut self) -> Result<W, EncodeError> {
        self.flush_run()?;
        self.write_words()?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn flush_run(&mut self) -> Result<(), EncodeError> {
        if self.run.xs.is_empty() {
            return Ok(());
        }
        self.set_time(self.run.t)?;
        if self.row != Some(self.run.y) {
            self.words.push(ADDR_Y << 12 | self.run.y);
            self.row = Some(self.run.y);
        }
        let p = u16::from(self.run.p & 1) << 11;
        let xs = std::mem::take(&mut self.run.xs);
        if let [x] = xs[..] {
            self.words.push(ADDR_X << 12 | p | x);
        } else {
            let last = xs[xs.len() - 1];
            let mut base = xs[0];
            self.words.push(VECT_BASE_X << 12 | p | base);
            let mut pending = &xs[..];
            while base <= last {
                let (kind, width) = if last - base < 8 { (VECT_8, 8) } else { (VECT_12, 12) };
                let split = pending.partition_point(|&x| x < base + width);
                let mask = pending[..split].iter().fold(0u16, |m, &x| m | 1 << (x - base));
                self.words.push(kind << 12 | mask);
                pending = &pending[split..];
                base += width;
            }
        }
        self.run.xs = xs;
        self.run.xs.clear();
        if self.words.len() >= 4000 {
            self.write_words()?;
        }
        Ok(())
    }

    /// Emits the TIME_HIGH and TIME_LOW words that bring the decoder to time `t`.
    fn set_time(&mut self, t: i64) -> Result<(), EncodeError> {
        if t < 0 {
            return Err(EncodeError::NegativeTime { t });
        }
        let high = t >> 12;
        let current = match self.high {
            Some(current) => current,
            None => {
                self.words.push(TIME_HIGH << 12);
                self.high = Some(0);
                self.low = 0;
                0
            }
        };
        if high < current
            && (current - high >= i64::from(LOOP_THRESHOLD) || high >> 12 != current >> 12)
        {
            return Err(EncodeError::TimeNotEncodable {
                t,
                previous: current << 12 | i64::from(self.low),
                reason: "EVT3 can step back only within one 16.78 s clock loop and by less than \
                         2048 time-high units",
            });
        }
        // Forward steps of at most LOOP_THRESHOLD time-high units let the decoder see
        // every wrap of the 12-bit TIME_HIGH.
        let mut at = current;
        while at != high {
            at = if high > at { high.min(at + i64::from(LOOP_THRESHOLD)) } else { high };
            self.words.push(TIME_HIGH << 12 | (at & 0xFFF) as u16);
            self.low = 0;
        }
        self.high = Some(high);
        let low = (t & 0xFFF) as u16;
        if low != self.low {
            self.words.push(TIME_LOW << 12 | low);
            self.low = low;
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
    use crate::sink::{ColumnSink, VecSink};

    fn decode(words: &[u16]) -> (VecSink, DecodeStats) {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut decoder = Evt3Decoder::default();
        let mut sink = VecSink::default();
        decoder.feed(&bytes, &mut sink);
        (sink, decoder.stats())
    }

    fn ev(t: i64, x: u16, y: u16, p: u8) -> Event {
        Event { t, x, y, p }
    }

    #[test]
    fn words_before_first_time_high_are_dropped() {
        let (sink, stats) = decode(&[0x0005, 0x2003, 0x8001, 0x0005, 0x2803]);
        assert_eq!(sink.events, [ev(4096, 3, 5, 1)]);
        assert_eq!(stats.before_first_time, 2);
    }

    #[test]
    fn vectors_advance_the_base() {
        // base 10, polarity 1; VECT_12 bits 0 and 11; VECT_8 bit 1.
        let (sink, _) = decode(&[0x8000, 0x0002, 0x380A, 0x4801, 0x5002]);
        let xs: Vec<u16> = sink.events.iter().map(|e| e.x).collect();
        assert_eq!(xs, [10, 21, 23]);
        assert!(sink.events.iter().all(|e| e.p == 1 && e.y == 2));
    }

    #[test]
    fn time_high_change_resets_time_low_but_repeat_does_not() {
        let (sink, _) = decode(&[0x8001, 0x0000, 0x6005, 0x8001, 0x2001, 0x8002, 0x2001]);
        let ts: Vec<i64> = sink.events.iter().map(|e| e.t).collect();
        assert_eq!(ts, [4096 + 5, 2 * 4096]);
    }

    #[test]
    fn wrap_is_counted_when_time_high_goes_back_by_half_its_range() {
        let (sink, _) = decode(&[0x8FFF, 0x0000, 0x2001, 0x8000, 0x2001, 0x8100, 0x80FF, 0x2001]);
        let ts: Vec<i64> = sink.events.iter().map(|e| e.t).collect();
        assert_eq!(ts, [0xFFF << 12, 1 << 24, (1 << 24) + (0xFF << 12)]);
    }

    #[test]
    fn triggers_and_skipped_words() {
        let (sink, stats) = decode(&[0x8000, 0xA301, 0xE123, 0xF123, 0x7001, 0x1000]);
        assert_eq!(sink.triggers, [Trigger { t: 0, id: 3, p: 1 }]);
        assert_eq!(stats.unknown, 1);
    }

    #[test]
    fn truncated_final_word_is_not_an_event() {
        let mut decoder = Evt3Decoder::default();
        let mut sink = VecSink::default();
        decoder.feed(&[0x00, 0x80, 0x00, 0x00, 0x01], &mut sink);
        assert_eq!(decoder.stats().trailing_bytes, 1);
        assert!(sink.events.is_empty());
    }

    #[test]
    fn encoder_round_trips_runs_wraps_and_backward_steps() {
        let geometry = Geometry { width: 1280, height: 720 };
        let mut events = vec![ev(7, 1, 1, 0), ev(3, 2, 1, 0), ev(3, 5, 1, 1)];
        events.extend((0..40).map(|i| ev(9000, 100 + i * 2, 700, 1)));
        events.extend([ev(1 << 24, 0, 0, 0), ev(5 << 24, 1279, 719, 1), ev(5 << 24, 1279, 0, 1)]);
        let mut encoder = Evt3Encoder::new(Vec::new(), geometry).unwrap();
        for e in &events {
            encoder.push(e).unwrap();
        }
        let file = encoder.finish().unwrap();
        let detected = crate::detect(&file, None).unwrap();
        assert_eq!(detected.geometry, geometry);
        let mut decoder = Evt3Decoder::default();
        let mut sink = VecSink::default();
        decoder.feed(&file[detected.data_offset..], &mut sink);
        assert_eq!(sink.events, events);
        let mut columns = ColumnSink::default();
        Evt3Decoder::default().feed(&file[detected.data_offset..], &mut columns);
        assert_eq!(columns.events().collect::<Vec<_>>(), events);
    }

    #[test]
    fn encoder_refuses_what_it_cannot_represent() {
        let geometry = Geometry { width: 640, height: 480 };
        let mut encoder = Evt3Encoder::new(Vec::new(), geometry).unwrap();
        assert!(encoder.push(&ev(0, 640, 0, 0)).is_err());
        encoder.push(&ev(10_000_000, 0, 0, 0)).unwrap();
        encoder.push(&ev(1, 0, 0, 0)).unwrap();
        assert!(encoder.finish().is_err());
    }
}
