//! The EVT3 decoder's fast path: a block of words decoded straight into a sink's column
//! slots in two passes, without a branch that depends on the data.
//!
//! Word types follow one another too irregularly for a branch predictor (a camera's row,
//! column, vector base and vector words interleave at random), and a vector word holds a
//! varying number of events: a per-word state machine mispredicts about once per event.
//! Here the first pass walks the words keeping the state without a branch: the last word
//! of each kind that sets state (ADDR_Y, TIME_LOW, VECT_BASE_X) in one packed `u64` that
//! each word updates by table-driven arithmetic, and the columns the vectors moved the
//! base by since. For each word that holds events it writes that state into [`Groups`],
//! unconditionally, advancing the write position only past those words (so the others,
//! most of them, leave nothing behind). The second pass unpacks each group and writes its
//! events into the columns, again unconditionally: all twelve slots a word can fill, the
//! next group overwriting what lies past this one's events.
//!
//! Words whose effect is rare and more involved (TIME_HIGH, EXT_TRIGGER, types EVT3 does
//! not define) end the block and are left to the per-word path, so that their order with
//! the events and the counts stay exactly as that path makes them; so are stretches where
//! they come every few words (a sparse recording), where blocks would be too short to pay.

use std::hint::select_unpredictable;

use super::{
    ADDR_X, ADDR_Y, MAX_COORDINATE, State, TIME_HIGH, TIME_LOW, VECT_8, VECT_12, VECT_BASE_X,
};
use crate::sink::{EventSink, Slots};

/// Words the fast path looks at per block: enough that a block's fixed costs (asking the
/// sink for slots, committing) do not count, few enough that its groups stay in L1.
pub(super) const BLOCK: usize = 256;

/// A block that a word ends sooner than this is left, whole, to the per-word path.
const SHORT: usize = 32;

/// Events one word can hold (a VECT_12 mask), and so the slots from its first event on
/// that writing a group touches.
const LANES: usize = 12;

/// The words of a block that hold events, each with the state it is decoded with: the
/// `packed` state, with the last ADDR_Y word in bits 0-15, the last TIME_LOW word in bits
/// 16-31, the last VECT_BASE_X word in bits 32-47 and the word itself in bits 48-63; the
/// columns the vectors since that VECT_BASE_X moved the base by (`advance`); and a `mask`
/// of its events, bit `i` for one at the base column plus `i` (1 for an ADDR_X word, whose
/// column is its own). Arrays of each, so that writing one is a store at a scaled index.
pub(super) struct Groups {
    packed: [u64; BLOCK],
    advance: [u32; BLOCK],
    mask: [u32; BLOCK],
}

impl Default for Groups {
    fn default() -> Self {
        Self { packed: [0; BLOCK], advance: [0; BLOCK], mask: [0; BLOCK] }
    }
}

/// Where each word goes in the packed state.
const ROW_SHIFT: u32 = 0;
const LOW_SHIFT: u32 = 16;
const BASE_SHIFT: u32 = 32;
const WORD_SHIFT: u32 = 48;

/// What a word type does in the first pass.
#[derive(Debug, Clone, Copy)]
struct Kind {
    /// The bits of the packed state the word leaves alone: all but its 16.
    keep: u64,
    /// Multiplies the word into its 16 bits (a power of two).
    place: u64,
    /// The word's bits that are events: a vector's mask, none of any other word.
    events: u32,
    /// 1 for an ADDR_X word, an event of its own; 0 for others.
    single: u32,
    /// Columns the word moves the vector base by.
    advance: u32,
    /// 0 for a VECT_BASE_X, which starts the base's advance anew; all ones for others.
    since_base: u32,
}

/// [`Kind`] of each word type.
static KINDS: [Kind; 16] = {
    let other = Kind {
        keep: !(0xFFFF << WORD_SHIFT),
        place: 1 << WORD_SHIFT,
        events: 0,
        single: 0,
        advance: 0,
        since_base: u32::MAX,
    };
    let mut kinds = [other; 16];
    kinds[ADDR_Y as usize] = Kind { keep: !(0xFFFF << ROW_SHIFT), place: 1 << ROW_SHIFT, ..other };
    kinds[TIME_LOW as usize] =
        Kind { keep: !(0xFFFF << LOW_SHIFT), place: 1 << LOW_SHIFT, ..other };
    kinds[VECT_BASE_X as usize] =
        Kind { keep: !(0xFFFF << BASE_SHIFT), place: 1 << BASE_SHIFT, since_base: 0, ..other };
    kinds[ADDR_X as usize] = Kind { single: 1, ..other };
    kinds[VECT_12 as usize] = Kind { events: 0xFFF, advance: 12, ..other };
    kinds[VECT_8 as usize] = Kind { events: 0xFF, advance: 8, ..other };
    kinds
};

/// The columns of the set bits of a mask, in increasing order from the base column,
/// padded with zeros: of its low byte and of its upper four bits (whose columns start at
/// 8). `u16`s, so that a group's columns come out of a load and a vector add; aligned, so
/// that no load straddles two cache lines.
#[repr(C, align(64))]
struct BitColumns {
    low: [[u16; 8]; 256],
    upper: [[u16; 8]; 16],
}

static BIT_COLUMNS: BitColumns = {
    const fn columns<const N: usize>(first: u16) -> [[u16; 8]; N] {
        let mut table = [[0u16; 8]; N];
        let mut bits = 0;
        while bits < N {
            let (mut bit, mut n) = (0, 0);
            while bit < 8 {
                if bits >> bit & 1 == 1 {
                    table[bits][n] = first + bit as u16;
                    n += 1;
                }
                bit += 1;
            }
            bits += 1;
        }
        table
    }
    BitColumns { low: columns(0), upper: columns(8) }
};

/// How many bits of each byte are set (`count_ones` is no instruction of baseline x86-64).
static BIT_COUNTS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte as u32).count_ones() as u8;
        byte += 1;
    }
    table
};

/// What the fast path did with the first words it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Decoded this many words (at least one) into the sink's slots and committed their
    /// events.
    Decoded(usize),
    /// Left this many words (at least one) to the per-word path: a word that ends a block,
    /// a sparse stretch where such words come every few words, or a block it cannot write
    /// (too few slots left, an event outside the slots' bounds, a state the fast path does
    /// not start from).
    Declined(usize),
}

/// Decodes the first words of `words` (at most [`BLOCK`]) into the sink's slots, advancing
/// `state` over them; `groups` is scratch space. `words` must not be empty.
#[inline]
pub(super) fn block<S: EventSink>(
    state: &mut State,
    words: &[[u8; 2]],
    groups: &mut Groups,
    sink: &mut S,
) -> Outcome {
    debug_assert!(!words.is_empty(), "a block of no words");
    let words = &words[..words.len().min(BLOCK)];
    // Only ADDR_Y sets the row and only TIME_HIGH (which ends a block) sets the time.
    if !(state.time_known && state.row_known) {
        return Outcome::Declined(words.len());
    }
    let taken = unbroken(words);
    if taken == 0 {
        return Outcome::Declined(1);
    }
    // Where words that end blocks come this close together (a sparse recording, where a
    // TIME_HIGH comes every few words), the per-word path is faster than blocks this short:
    // leave it the whole block.
    if taken < words.len() && taken < SHORT {
        return Outcome::Declined(words.len());
    }
    let words = &words[..taken];
    let scanned = if state.base_known {
        scan::<true>(state, words, groups)
    } else {
        scan::<false>(state, words, groups)
    };
    let Some(slots) = sink.slots() else {
        return Outcome::Declined(taken);
    };
    let high = state.time & !0xFFF;
    let Some(events) = write(groups, scanned.groups, high, slots) else {
        return Outcome::Declined(taken);
    };
    sink.commit(events);
    *state = scanned.state;
    Outcome::Decoded(taken)
}

/// Whether a word of this type ends a block: TIME_HIGH (0x8), EXT_TRIGGER (0xA) and the
/// types EVT3 does not define (0x1, 0x9, 0xB, 0xC, 0xD). OTHERS and CONTINUED words have
/// no effect and stay in the block.
const fn ends_block(kind: u16) -> bool {
    kind == 0x1 || (kind >= TIME_HIGH && kind <= 0xD)
}

/// How many of `words` come before the first that ends a block: tested sixteen at a time
/// without a branch per word, so that the test vectorises.
fn unbroken(words: &[[u8; 2]]) -> usize {
    let ends = |w: &[u8; 2]| ends_block(u16::from_le_bytes(*w) >> 12);
    let mut clear = 0;
    for chunk in words.chunks_exact(16) {
        if chunk.iter().fold(false, |any, w| any | ends(w)) {
            break;
        }
        clear += 16;
    }
    clear + words[clear..].iter().position(ends).unwrap_or(words.len() - clear)
}

/// What a block's first pass found: the state after its words and how many groups it
/// wrote.
#[derive(Debug, Clone, Copy)]
struct Scanned {
    state: State,
    groups: usize,
}

/// The first pass: walks words of which none ends a block, writes a group for each that
/// holds events, and returns what it found. `BASE_KNOWN` is `state.base_known`: a stream
/// has a vector base from its first VECT_BASE_X on, and the loop for that case need not
/// keep track of it.
#[inline(never)]
fn scan<const BASE_KNOWN: bool>(state: &State, words: &[[u8; 2]], groups: &mut Groups) -> Scanned {
    // The base column is the last VECT_BASE_X's plus `advance`: start from one of column
    // 0, with the polarity, advanced by the current base.
    let mut packed = u64::from(state.y) << ROW_SHIFT
        | (u64::from(TIME_LOW) << 12 | (state.time & 0xFFF) as u64) << LOW_SHIFT
        | u64::from(state.polarity) << 11 << BASE_SHIFT;
    let mut advance = u32::from(state.base_x);
    // All ones once a VECT_BASE_X is known: vectors before it hold no events and do not
    // move the base.
    let mut base_known = if BASE_KNOWN { u32::MAX } else { 0 };
    let mut n = 0;
    for w in &words[..words.len().min(BLOCK)] {
        let word = u32::from(u16::from_le_bytes(*w));
        let kind = &KINDS[(word >> 12) as usize];
        packed = (packed & kind.keep) | (u64::from(word) * kind.place);
        let mask = (word & kind.events & base_known) | kind.single;
        // At most one group per word: the remainder only spares a bounds check.
        (groups.packed[n % BLOCK], groups.advance[n % BLOCK]) = (packed, advance);
        groups.mask[n % BLOCK] = mask;
        n += usize::from(mask != 0);
        advance = (advance + (kind.advance & base_known)) & kind.since_base;
        if !BASE_KNOWN {
            base_known |= !kind.since_base;
        }
    }
    let base_word = (packed >> BASE_SHIFT) as u16;
    let next = State {
        time: (state.time & !0xFFF) | (packed >> LOW_SHIFT & 0xFFF) as i64,
        y: (packed >> ROW_SHIFT) as u16 & MAX_COORDINATE,
        base_x: (base_word & MAX_COORDINATE).wrapping_add(advance as u16),
        polarity: (base_word >> 11) as u8 & 1,
        base_known: base_known != 0,
        ..*state
    };
    Scanned { state: next, groups: n }
}

/// The second pass: writes the events of `groups` into the first slots, at times of
/// `high` and the groups' TIME_LOW, and returns how many, if every event fits and lies
/// inside the slots' bounds; otherwise what it wrote is garbage past the committed events,
/// to be overwritten.
#[inline(never)]
fn write(groups: &Groups, n: usize, high: i64, slots: Slots<'_>) -> Option<usize> {
    let Slots { t, x, y, p, width, height } = slots;
    let len = t.len();
    let (x, y, p) = (&mut x[..len], &mut y[..len], &mut p[..len]);
    // The last slot a group may start at, writing all its lanes.
    let last = len.checked_sub(LANES)?;
    let mut at = 0usize;
    for g in 0..n.min(BLOCK) {
        if at > last {
            return None;
        }
        let (packed, mask) = (groups.packed[g], groups.mask[g]);
        let field = |shift: u32| (packed >> shift) as u16;
        let word = u32::from(field(WORD_SHIFT));
        let base_word = u32::from(field(BASE_SHIFT));
        let is_x = word >> 12 == u32::from(ADDR_X);
        let max = u32::from(MAX_COORDINATE);
        let base =
            select_unpredictable(is_x, word & max, (base_word & max) + groups.advance[g]) as u16;
        let polarity = (select_unpredictable(is_x, word, base_word) >> 11) as i8 & 1;
        let time = high | i64::from(field(LOW_SHIFT) & 0xFFF);
        let row = (field(ROW_SHIFT) & MAX_COORDINATE) as i16;
        // Columns of the mask's low byte, then, rarely (a VECT_12 with bits 8-11), of the
        // rest.
        let low = (mask & 0xFF) as usize;
        let mut count = usize::from(BIT_COUNTS[low]);
        t[at..at + 8].fill(time);
        y[at..at + 8].fill(row);
        p[at..at + 8].fill(polarity);
        let x = &mut x[at..at + LANES];
        for (slot, column) in x[..8].iter_mut().zip(BIT_COLUMNS.low[low]) {
            *slot = base.wrapping_add(column) as i16;
        }
        if mask > 0xFF {
            t[at + 8..at + LANES].fill(time);
            y[at + 8..at + LANES].fill(row);
            p[at + 8..at + LANES].fill(polarity);
            let upper = (mask >> 8 & 0xF) as usize;
            for (slot, column) in x[count..][..4].iter_mut().zip(BIT_COLUMNS.upper[upper]) {
                *slot = base.wrapping_add(column) as i16;
            }
            count += usize::from(BIT_COUNTS[upper]);
        }
        at += count;
    }
    let inside = |column: &[i16], bound: u32| {
        column.iter().fold(true, |inside, &v| inside & (u32::from(v as u16) < bound))
    };
    (inside(&x[..at], width) && inside(&y[..at], height)).then_some(at)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::evt3::{Evt3Decoder, Evt3Encoder};
    use crate::geometry::Geometry;
    use crate::sink::{ColumnSink, Event, EventSink, GeometryFilter, VecSink};
    use crate::stats::DecodeStats;
    use crate::testing::{arbitrary_words, pieces};

    /// Streams shaped like a camera's: mostly rows, columns, vector bases and vectors at
    /// small coordinates (inside most sensors), TIME_LOW now and then, and, rarely, every
    /// other type with any payload: time high steps and wraps, triggers, skipped words,
    /// undefined types, coordinates past any sensor. Optionally opened with a TIME_HIGH
    /// and an ADDR_Y, so that most of the stream can take the fast path.
    fn camera_words() -> impl Strategy<Value = Vec<u8>> {
        let word = prop_oneof![
            30 => (Just(0x0u16), 0u16..0x40),
            20 => (Just(0x2), 0u16..0x1000).prop_map(|(k, v)| (k, v & 0x83F)),
            15 => (Just(0x3), 0u16..0x1000).prop_map(|(k, v)| (k, v & 0x83F)),
            8 => (Just(0x4), 0u16..0x1000),
            12 => (Just(0x5), 0u16..0x100),
            8 => (Just(0x6), 0u16..0x1000),
            3 => (0u16..16, 0u16..0x1000),
        ];
        (any::<bool>(), prop::collection::vec(word, 0..1500)).prop_map(|(opened, words)| {
            let opening = [0x8123u16, 0x0005].into_iter().filter(|_| opened);
            let words = opening.chain(words.into_iter().map(|(kind, value)| kind << 12 | value));
            words.flat_map(u16::to_le_bytes).collect()
        })
    }

    fn decode(bytes: &[u8], splits: &[usize], sink: &mut impl EventSink) -> DecodeStats {
        let mut decoder = Evt3Decoder::default();
        for piece in pieces(bytes, splits) {
            decoder.feed(piece, sink);
        }
        decoder.stats()
    }

    /// Decoding into columns (the fast path, wherever it can) gives the events, triggers,
    /// drops and counts of the per-word path (a sink without slots), for any split of the
    /// input and any sensor size, into columns that grow and into columns of exactly the
    /// events' number (where the last blocks find too few slots).
    fn agrees_with_per_word_path(
        bytes: &[u8],
        splits: &[usize],
        geometry: Option<Geometry>,
    ) -> Result<(), TestCaseError> {
        let mut expected = GeometryFilter::new(VecSink::default(), geometry);
        let expected_stats = decode(bytes, &[], &mut expected);
        let exact = ColumnSink::with_capacity(expected.inner.events.len());
        for columns in [ColumnSink::default(), exact] {
            let mut columns = GeometryFilter::new(columns, geometry);
            let stats = decode(bytes, splits, &mut columns);
            prop_assert_eq!(&columns.inner.events().collect::<Vec<_>>(), &expected.inner.events);
            prop_assert_eq!(columns.dropped, expected.dropped);
            prop_assert_eq!(&columns.inner.triggers, &expected.inner.triggers);
            prop_assert_eq!(stats, expected_stats);
        }
        Ok(())
    }

    fn geometry() -> impl Strategy<Value = Option<Geometry>> {
        prop::option::of(
            (1u32..2100, 1u32..2100).prop_map(|(width, height)| Geometry { width, height }),
        )
    }

    /// Events as a camera sends them: runs of neighbouring pixels on a row (which the
    /// encoder writes as vectors) and single pixels, time steps from none to a few
    /// seconds (across wraps of the 24-bit clock).
    fn camera_events() -> impl Strategy<Value = Vec<Event>> {
        let run = (0u8..8, 0u16..1280, 0u16..720, 0u8..2, 1u16..30);
        prop::collection::vec(run, 0..300).prop_map(|runs| {
            let mut t = 0;
            let mut events = Vec::new();
            for (step, x, y, p, len) in runs {
                t += match step {
                    0..4 => i64::from(step),
                    7 => 3_000_000,
                    _ => 997,
                };
                events.extend((x..(x + len).min(1280)).map(|x| Event { t, x, y, p }));
            }
            events
        })
    }

    proptest! {
        #[test]
        fn encoded_events_decode_into_columns_as_they_were(
            events in camera_events(),
            splits in prop::collection::vec(0usize..3000, 0..5),
        ) {
            let geometry = Geometry { width: 1280, height: 720 };
            let mut encoder = Evt3Encoder::new(Vec::new(), geometry).unwrap();
            events.iter().try_for_each(|e| encoder.push(e)).unwrap();
            let file = encoder.finish().unwrap();
            let data = &file[crate::detect(&file, None).unwrap().data_offset..];
            let mut columns = ColumnSink::default();
            decode(data, &splits, &mut columns);
            prop_assert_eq!(columns.events().collect::<Vec<_>>(), events);
        }

        #[test]
        fn camera_like_streams_decode_as_word_by_word(
            bytes in camera_words(),
            tail in prop::option::of(any::<u8>()),
            splits in prop::collection::vec(0usize..3000, 0..5),
            geometry in geometry(),
        ) {
            let mut bytes = bytes;
            bytes.extend(tail);
            agrees_with_per_word_path(&bytes, &splits, geometry)?;
        }

        #[test]
        fn arbitrary_streams_decode_as_word_by_word(
            bytes in arbitrary_words(2),
            splits in prop::collection::vec(0usize..900, 0..5),
            geometry in geometry(),
        ) {
            agrees_with_per_word_path(&bytes, &splits, geometry)?;
        }
    }
}
