//! Chunk index of a recording: where each chunk of its event data starts, in the file and
//! in the decoder's state, built by one pass that counts events without decoding them.
//!
//! A recording too large to hold decoded, or of which only a window is wanted, is served
//! as chunks decoded on their own. Starting a decoder mid-file needs the state the
//! stream has there (EVT3: time high, clock loops, time low, row, vector base; EVT2 and
//! EVT2.1: time high and loops; DAT: last time and wraps). The [`Indexer`] keeps that
//! state at 64 KiB steps without running the per-word state machine: each format's
//! `index_words` (`index_records` for DAT) counts with branch-free loops, applies the
//! time words (rare) in order, and reads the rest of the state off the last words of each
//! kind (see `evt3::index_words`). Until the state no longer depends on the beginning of
//! the stream (before the first time word and, for EVT3, the first row) it decodes.
//!
//! The index is also how a stream's events are counted: a caller that wants only the
//! counts asks for one chunk ([`ChunkLimits::events`] of `u64::MAX`) and reads its
//! [`Chunk::events`] and [`Chunk::triggers`].
//!
//! AEDAT4 and text files are one chunk: compressed packets and lines of varying length
//! cannot be entered mid-file. AEDAT 3.1, AEDAT 2.0, Event Stream and ATIS `.bin` are
//! decoded by the index pass too (their decoders are simple byte machines), a byte at a
//! time as far as steps go: a chunk that is full at a step ends at the end of the record
//! being read there (`Decoder::to_boundary`), so that no record straddles two chunks.

use crate::carry::Carry;
use crate::decoder::Decoder;
use crate::format::Format;
use crate::sink::{EventSink, Trigger};

/// When a chunk is full, and where it may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// A chunk ends once it holds at least this many events.
    pub events: u64,
    /// A chunk also ends once its events span at least this many microseconds.
    pub span: Option<i64>,
    /// Bytes of event data between the places where a chunk may end: a chunk holds at
    /// most `events` plus the events of one step. A multiple of 8.
    pub step: u64,
}

impl ChunkLimits {
    /// The default step: 64 KiB, a few tens of thousands of events.
    pub const STEP: u64 = 64 * 1024;

    /// Chunks of about `events` events.
    pub fn events(events: u64) -> Self {
        Self { events, span: None, step: Self::STEP }
    }
}

/// One chunk of a recording's event data.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Offset of its first byte in the event data (after the header).
    pub start: u64,
    /// Offset one past its last byte.
    pub end: u64,
    /// CD events it holds (before any geometry filter).
    pub events: u64,
    /// External triggers it holds.
    pub triggers: u64,
    /// No event or trigger of the chunk has a later time (`i64::MIN` if it has none).
    /// Exact for DAT, AEDAT4 and text; for EVT formats the end of the last time-high
    /// period the chunk reaches.
    pub time_bound: i64,
    decoder: Decoder,
}

impl Chunk {
    /// A decoder in the state the stream has at the chunk's first byte: fed the bytes
    /// `start..end` of the event data, it decodes exactly the chunk's events.
    pub fn decoder(&self) -> Decoder {
        self.decoder.clone()
    }
}

/// Builds the chunk index of a stream fed in slices of any size; any split gives the
/// same chunks.
#[derive(Debug, Clone)]
pub struct Indexer {
    limits: ChunkLimits,
    /// The stream's state at `pos`.
    decoder: Decoder,
    /// Whether the state is still kept by running the decoder, rather than by the format's
    /// `index_words` (see the module docs).
    decoding: bool,
    /// Bytes per word; `None` for formats read as one chunk.
    word_len: Option<usize>,
    /// A word split across `feed` calls.
    carry: Carry<8>,
    /// Bytes of whole words consumed.
    pos: u64,
    chunks: Vec<Chunk>,
    current: Chunk,
    /// About the chunk's earliest time, for `limits.span`.
    first_time: Option<i64>,
    /// Where the current chunk ends, once full, for formats whose steps may fall inside a
    /// record: the end of that record.
    cut_at: Option<u64>,
}

impl Indexer {
    /// An indexer at the start of the event data of `format`.
    ///
    /// # Panics
    ///
    /// If `limits.step` is not a positive multiple of 8.
    pub fn new(format: Format, limits: ChunkLimits) -> Self {
        let word_len = match format {
            Format::Evt3 => Some(2),
            Format::Evt2 => Some(4),
            Format::Dat | Format::Evt21(_) => Some(8),
            // Records of varying length, or of a length steps do not divide: always
            // decoded, and cut at the first record boundary at or after a step.
            Format::Aedat3 | Format::Aedat2(_) | Format::EventStream(_) | Format::AtisBin => {
                Some(1)
            }
            Format::Text(_) | Format::Aedat4(_) => None,
        };
        assert!(
            limits.step > 0 && limits.step.is_multiple_of(8),
            "the step must be a multiple of 8"
        );
        let decoder = Decoder::new(format);
        let current = Chunk {
            start: 0,
            end: 0,
            events: 0,
            triggers: 0,
            time_bound: i64::MIN,
            decoder: decoder.clone(),
        };
        // A DAT record holds its whole time: no state comes from the start of the stream.
        let decoding = !matches!(format, Format::Dat);
        let chunks = Vec::new();
        Self {
            limits,
            decoder,
            decoding,
            word_len,
            carry: Carry::default(),
            pos: 0,
            chunks,
            current,
            first_time: None,
            cut_at: None,
        }
    }

    /// Indexes `bytes`, the continuation of what was fed before.
    pub fn feed(&mut self, bytes: &[u8]) {
        let Some(word_len) = self.word_len else {
            self.decode(bytes);
            return;
        };
        // A copy, so that the closure may borrow `self`.
        let mut carry = self.carry;
        carry.whole_words(word_len, bytes, |mut words| {
            // Pieces that end at steps, where a chunk may end, and at a pending cut.
            while !words.is_empty() {
                let mut to_step = self.limits.step - self.pos % self.limits.step;
                if let Some(at) = self.cut_at {
                    to_step = to_step.min(at - self.pos);
                }
                let (piece, rest) = words.split_at((to_step as usize).min(words.len()));
                self.step_words(piece);
                words = rest;
            }
        });
        self.carry = carry;
    }

    /// Takes the chunks that are complete and final so far, in order, for a caller that
    /// indexes a long stream piece by piece and wants to use its first chunks early. The
    /// last completed chunk stays behind: [`Indexer::finish`] may still extend it.
    pub fn take_completed(&mut self) -> Vec<Chunk> {
        let keep = self.chunks.len().min(1);
        self.chunks.drain(..self.chunks.len() - keep).collect()
    }

    /// Ends the stream and returns its remaining chunks (all of them, at least one, if
    /// none were taken before): contiguous, to the end of the data.
    pub fn finish(mut self) -> Vec<Chunk> {
        if self.word_len.is_none() {
            let mut sink = BoundSink::default();
            self.decoder.finish(&mut sink);
            self.take(sink);
        }
        let end = self.pos + self.carry.len() as u64;
        match self.chunks.last_mut() {
            // A chunk cut at the very end (or before a truncated word) would be empty.
            Some(last) if self.current.events == 0 && self.current.triggers == 0 => last.end = end,
            _ => {
                self.current.end = end;
                self.chunks.push(self.current);
            }
        }
        self.chunks
    }

    /// Takes whole words that do not cross a step.
    fn step_words(&mut self, words: &[u8]) {
        if self.decoding {
            self.decode(words);
        } else {
            self.index_words(words);
        }
        if self.cut_at == Some(self.pos) {
            self.cut_at = None;
            self.cut();
        }
        if self.word_len.is_some() && self.pos.is_multiple_of(self.limits.step) {
            if self.decoding && self.independent_of_start() {
                // `index_words` raises the bound at time words only: start from the
                // current time. Switching at steps only keeps the chunks independent of
                // the split.
                self.decoding = false;
                self.raise_bound(self.decoder.time_bound().unwrap_or(i64::MIN));
            }
            // Looked at only at steps, so that the chunks do not depend on the split.
            if self.current.time_bound != i64::MIN {
                self.first_time.get_or_insert(self.current.time_bound);
            }
            if self.full() && self.cut_at.is_none() {
                match self.decoder.to_boundary() {
                    Some(n @ 1..) => self.cut_at = Some(self.pos + n as u64),
                    _ => self.cut(),
                }
            }
        }
    }

    /// Decodes into a sink that only counts and bounds time.
    fn decode(&mut self, bytes: &[u8]) {
        let mut sink = BoundSink::default();
        self.decoder.feed(bytes, &mut sink);
        self.pos += bytes.len() as u64;
        self.take(sink);
    }

    fn take(&mut self, sink: BoundSink) {
        self.current.events += sink.events;
        self.current.triggers += sink.triggers;
        self.raise_bound(sink.bound);
    }

    /// Whether the state from here on no longer depends on what came before the first
    /// time word (and, for EVT3, the first row): then `index_words` keeps it exactly.
    fn independent_of_start(&self) -> bool {
        match &self.decoder {
            Decoder::Dat(_) => true,
            Decoder::Evt2(d) => d.time_known(),
            Decoder::Evt21(d) => d.time_known(),
            Decoder::Evt3(d) => d.state.time_known && d.state.row_known,
            _ => false,
        }
    }

    /// Counts whole words and advances the state over them without decoding.
    fn index_words(&mut self, words: &[u8]) {
        // The current time is in the bound already: raised when it was reached.
        let mut bound = i64::MIN;
        let (events, triggers) = match &mut self.decoder {
            Decoder::Dat(d) => (crate::dat::index_records(d, words, &mut bound), 0),
            Decoder::Evt2(d) => crate::evt2::index_words(&mut d.clock, words, &mut bound),
            Decoder::Evt21(d) => {
                let order = d.order();
                crate::evt21::index_words(&mut d.clock, order, words, &mut bound)
            }
            Decoder::Evt3(d) => crate::evt3::index_words(&mut d.state, words, &mut bound),
            _ => unreachable!("always decoded"),
        };
        self.pos += words.len() as u64;
        self.current.events += events;
        self.current.triggers += triggers;
        self.raise_bound(bound);
    }

    fn raise_bound(&mut self, bound: i64) {
        self.current.time_bound = self.current.time_bound.max(bound);
    }

    fn full(&self) -> bool {
        let spanned = |span| {
            self.first_time.is_some_and(|f| self.current.time_bound.saturating_sub(f) >= span)
        };
        self.current.events >= self.limits.events || self.limits.span.is_some_and(spanned)
    }

    /// Ends the current chunk here and starts the next.
    fn cut(&mut self) {
        let decoder = self.decoder.snapshot();
        // Until its next time word, the next chunk's events are at the current time.
        let carried = decoder.time_bound();
        let next = Chunk {
            start: self.pos,
            end: self.pos,
            events: 0,
            triggers: 0,
            time_bound: carried.unwrap_or(i64::MIN),
            decoder,
        };
        let mut done = std::mem::replace(&mut self.current, next);
        done.end = self.pos;
        self.first_time = carried.or(Some(done.time_bound).filter(|&t| t != i64::MIN));
        self.chunks.push(done);
    }
}

/// Counts events and triggers and keeps their latest time.
#[derive(Debug, Clone, Copy)]
struct BoundSink {
    events: u64,
    triggers: u64,
    bound: i64,
}

impl Default for BoundSink {
    fn default() -> Self {
        Self { events: 0, triggers: 0, bound: i64::MIN }
    }
}

impl EventSink for BoundSink {
    #[inline]
    fn event(&mut self, t: i64, _x: u16, _y: u16, _p: u8) {
        self.events += 1;
        self.bound = self.bound.max(t);
    }

    fn trigger(&mut self, trigger: Trigger) {
        self.triggers += 1;
        self.bound = self.bound.max(trigger.t);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event_stream::{EsKind, EsLayout};
    use crate::evt21::WordOrder;
    use crate::sink::VecSink;
    use crate::testing::{arbitrary_words, pieces};

    /// The chunks of `bytes` fed in pieces cut at `splits`, taking the completed ones after
    /// each piece.
    fn index(format: Format, limits: ChunkLimits, bytes: &[u8], splits: &[usize]) -> Vec<Chunk> {
        let mut indexer = Indexer::new(format, limits);
        let mut chunks = Vec::new();
        for piece in pieces(bytes, splits) {
            indexer.feed(piece);
            chunks.extend(indexer.take_completed());
        }
        chunks.extend(indexer.finish());
        chunks
    }

    /// Decoding chunk by chunk, each from its own decoder, gives what decoding the whole
    /// stream gives; counts and time bounds hold; the chunks do not depend on the split.
    fn check(
        format: Format,
        bytes: &[u8],
        limits: ChunkLimits,
        splits: &[usize],
    ) -> Result<(), TestCaseError> {
        let chunks = index(format, limits, bytes, splits);
        let (whole, whole_stats) = {
            let mut decoder = Decoder::new(format);
            let mut sink = VecSink::default();
            decoder.feed(bytes, &mut sink);
            decoder.finish(&mut sink);
            (sink, decoder.stats())
        };
        let mut joined = VecSink::default();
        // What evshmd adds up over the chunks of an open: no word is counted twice (a
        // chunk starts with fresh counts) and none is left out.
        let mut passed_over = (0, 0, 0, 0);
        let mut offset = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            prop_assert_eq!(chunk.start, offset);
            offset = chunk.end;
            let mut decoder = chunk.decoder();
            let mut sink = VecSink::default();
            decoder.feed(&bytes[chunk.start as usize..chunk.end as usize], &mut sink);
            decoder.finish(&mut sink);
            let stats = decoder.stats();
            passed_over.0 += stats.before_first_time;
            passed_over.1 += stats.unknown;
            passed_over.2 += stats.trailing_bytes;
            passed_over.3 += stats.skipped();
            prop_assert_eq!(
                (chunk.events, chunk.triggers),
                (sink.events.len() as u64, sink.triggers.len() as u64),
                "chunk {}",
                i
            );
            let latest =
                sink.events.iter().map(|e| e.t).chain(sink.triggers.iter().map(|t| t.t)).max();
            prop_assert!(
                latest.is_none_or(|t| t <= chunk.time_bound),
                "chunk {} has t {:?} past its bound {}",
                i,
                latest,
                chunk.time_bound
            );
            let records = chunk.decoder.to_boundary().is_some();
            if i + 1 < chunks.len() {
                // Formats read a byte at a time end a chunk at the record after the step.
                prop_assert!(
                    records || chunk.end % limits.step == 0,
                    "chunk {} ends off a step",
                    i
                );
                prop_assert!(
                    chunk.events >= limits.events || limits.span.is_some(),
                    "chunk {} ended early",
                    i
                );
            }
            joined.events.extend(sink.events);
            joined.triggers.extend(sink.triggers);
        }
        prop_assert_eq!(offset, bytes.len() as u64);
        prop_assert_eq!(joined, whole);
        let expected = (
            whole_stats.before_first_time,
            whole_stats.unknown,
            whole_stats.trailing_bytes,
            whole_stats.skipped(),
        );
        prop_assert_eq!(passed_over, expected);
        let unsplit = index(format, limits, bytes, &[]);
        let ends = |chunks: &[Chunk]| {
            chunks.iter().map(|c| (c.start, c.end, c.events)).collect::<Vec<_>>()
        };
        prop_assert_eq!(ends(&unsplit), ends(&chunks));
        Ok(())
    }

    fn limits() -> impl Strategy<Value = ChunkLimits> {
        (1u64..40, 1u64..8, prop::option::of(1i64..5000))
            .prop_map(|(events, steps, span)| ChunkLimits { events, span, step: steps * 8 })
    }

    proptest! {
        #[test]
        fn evt3_chunks_decode_as_the_whole(bytes in arbitrary_words(2), extra in prop::option::of(any::<u8>()),
                                           limits in limits(), splits in prop::collection::vec(0usize..300, 0..6)) {
            let mut bytes = bytes;
            bytes.extend(extra);
            check(Format::Evt3, &bytes, limits, &splits)?;
        }

        #[test]
        fn evt2_chunks_decode_as_the_whole(bytes in arbitrary_words(4), limits in limits(),
                                           splits in prop::collection::vec(0usize..900, 0..6)) {
            check(Format::Evt2, &bytes, limits, &splits)?;
        }

        #[test]
        fn evt21_chunks_decode_as_the_whole(bytes in arbitrary_words(8), legacy in any::<bool>(),
                                            limits in limits(), splits in prop::collection::vec(0usize..2000, 0..6)) {
            let order = if legacy { WordOrder::Legacy } else { WordOrder::Standard };
            check(Format::Evt21(order), &bytes, limits, &splits)?;
        }

        #[test]
        fn dat_chunks_decode_as_the_whole(bytes in arbitrary_words(8), tail in 0usize..8, limits in limits(),
                                          splits in prop::collection::vec(0usize..2000, 0..6)) {
            let cut = bytes.len().saturating_sub(tail);
            check(Format::Dat, &bytes[..cut], limits, &splits)?;
        }
    }

    /// The event data of `events` written in `format` by evshm's encoder, on a 128x128
    /// sensor, with bytes flipped at `flips`.
    fn encoded(
        format: Format,
        events: &[crate::sink::Event],
        flips: &[(prop::sample::Index, u8)],
    ) -> Vec<u8> {
        let geometry = crate::geometry::Geometry { width: 128, height: 128 };
        let mut encoder = crate::encoder::Encoder::new(format, Vec::new(), geometry).unwrap();
        events.iter().for_each(|e| encoder.push(e).unwrap());
        let file = encoder.finish().unwrap();
        // A headerless ATIS file of a few events is not recognisable: its data is all.
        let offset = match format {
            Format::AtisBin => 0,
            _ => crate::detect(&file, None).unwrap().data_offset,
        };
        let mut data = file[offset..].to_vec();
        if !data.is_empty() {
            for (at, byte) in flips {
                let at = at.index(data.len());
                data[at] ^= byte;
            }
        }
        data
    }

    fn record_format() -> impl Strategy<Value = Format> {
        prop::sample::select(vec![
            Format::Aedat3,
            Format::Aedat2(crate::aedat2::Aedat2Chip::Dvs128),
            Format::EventStream(EsLayout { kind: EsKind::Dvs, height: 128 }),
            Format::EventStream(EsLayout { kind: EsKind::Atis, height: 128 }),
            Format::AtisBin,
        ])
    }

    fn rising_events() -> impl Strategy<Value = Vec<crate::sink::Event>> {
        prop::collection::vec((0i64..400, 0u16..128, 0u16..128, 0u8..2), 0..300).prop_map(|steps| {
            let mut t = 0;
            steps
                .into_iter()
                .map(|(dt, x, y, p)| {
                    t += dt * dt;
                    crate::sink::Event { t, x, y, p }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn record_formats_chunk_at_record_ends(format in record_format(), events in rising_events(),
                                               flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                                               limits in limits(), splits in prop::collection::vec(0usize..900, 0..6)) {
            check(format, &encoded(format, &events, &flips), limits, &splits)?;
        }

        #[test]
        fn record_formats_chunk_arbitrary_bytes(format in record_format(), bytes in arbitrary_words(8),
                                                limits in limits(), splits in prop::collection::vec(0usize..900, 0..6)) {
            check(format, &bytes, limits, &splits)?;
        }
    }

    #[test]
    fn text_is_one_chunk_with_an_exact_bound() {
        let text = b"10 1 2 1\n30 3 4 0\n20 5 6 1";
        let columns = crate::detect(text, Some("txt")).unwrap().format;
        let chunks = index(columns, ChunkLimits { events: 1, span: None, step: 8 }, text, &[3, 9]);
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            (chunks[0].start, chunks[0].end, chunks[0].events, chunks[0].time_bound),
            (0, text.len() as u64, 3, 30)
        );
    }

    #[test]
    fn empty_stream_is_one_empty_chunk() {
        let chunks = index(Format::Evt3, ChunkLimits::events(10), &[], &[]);
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            (chunks[0].start, chunks[0].end, chunks[0].events, chunks[0].time_bound),
            (0, 0, 0, i64::MIN)
        );
    }
}
