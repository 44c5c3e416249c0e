//! Counting events without decoding them, for callers that want only the counts of a
//! whole stream (the [`crate::Indexer`] counts the same way and also keeps chunk starts).
//!
//! A [`Counter`] runs the format's decoder with a counting sink only until the decoder's
//! state no longer affects which words are events (after the first time-high word, and
//! for EVT3 the first row address); from then on it counts with a tight loop over whole
//! words that the compiler can vectorise. Its count always equals what the decoder emits
//! for the same bytes, split in any way (a property test checks it).

use crate::decoder::Decoder;
use crate::detect::Format;
use crate::sink::CountingSink;

/// Counts the CD events of a stream fed in slices of any size.
#[derive(Debug, Clone)]
pub struct Counter {
    decoder: Decoder,
    slow: CountingSink,
    fast: CountingSink,
    /// Bytes of the stream held back because they do not complete a word yet.
    carry: Vec<u8>,
    /// EVT3 only: whether a VECT_BASE_X was seen, so vectors count.
    vector_base: bool,
    ready: bool,
}

impl Counter {
    /// A counter at the start of the event data of `format`.
    pub fn new(format: Format) -> Self {
        Self {
            decoder: Decoder::new(format),
            slow: CountingSink::default(),
            fast: CountingSink::default(),
            carry: Vec::new(),
            vector_base: false,
            ready: false,
        }
    }

    /// Counts the events in `bytes`, the continuation of what was fed before.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.ready {
            self.decoder.feed(bytes, &mut self.slow);
            self.ready = self.stateless_from_here();
            return;
        }
        let mut carry = std::mem::take(&mut self.carry);
        crate::decoder::whole_words(&mut carry, self.word_len(), bytes, |words| {
            self.count_words(words);
        });
        self.carry = carry;
    }

    /// Ends the stream, counting what only the end completes (see [`Decoder::finish`]).
    pub fn finish(&mut self) {
        self.decoder.finish(&mut self.slow);
    }

    /// CD events counted so far.
    pub fn events(&self) -> u64 {
        self.slow.events + self.fast.events
    }

    /// External triggers counted so far.
    pub fn triggers(&self) -> u64 {
        self.slow.triggers + self.fast.triggers
    }

    /// Whether, at the current position, counting no longer needs the decoder's state:
    /// its time is known, it holds no partial word, and for EVT3 a row is known.
    fn stateless_from_here(&mut self) -> bool {
        match &self.decoder {
            Decoder::Dat(d) => d.stats().trailing_bytes == 0,
            Decoder::Evt2(d) => d.time_known() && d.stats().trailing_bytes == 0,
            Decoder::Evt21(d) => d.time_known() && d.stats().trailing_bytes == 0,
            Decoder::Evt3(d) => {
                self.vector_base = d.vector_base_known();
                d.row_known() && d.stats().trailing_bytes == 0
            }
            // Lines vary in length and packets are compressed: these count by decoding.
            Decoder::Text(_) | Decoder::Aedat4(_) => false,
        }
    }

    fn word_len(&self) -> usize {
        match self.decoder {
            Decoder::Dat(_) | Decoder::Evt21(_) => 8,
            Decoder::Evt2(_) => 4,
            Decoder::Evt3(_) => 2,
            Decoder::Text(_) | Decoder::Aedat4(_) => unreachable!("counted by decoding"),
        }
    }

    fn count_words(&mut self, bytes: &[u8]) {
        let (events, triggers) = match self.decoder {
            // Every record of a DAT CD file is an event.
            Decoder::Dat(_) => ((bytes.len() / 8) as u64, 0),
            Decoder::Evt2(_) => crate::evt2::count_cd_words(bytes),
            Decoder::Evt21(ref d) => crate::evt21::count_events(bytes, d.order()),
            Decoder::Evt3(_) => crate::evt3::count_events(bytes, &mut self.vector_base),
            Decoder::Text(_) | Decoder::Aedat4(_) => unreachable!("counted by decoding"),
        };
        self.fast.events += events;
        self.fast.triggers += triggers;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::evt21::WordOrder;
    use crate::sink::VecSink;

    fn decoded(format: Format, bytes: &[u8]) -> (u64, u64) {
        let mut decoder = Decoder::new(format);
        let mut sink = VecSink::default();
        decoder.feed(bytes, &mut sink);
        (sink.events.len() as u64, sink.triggers.len() as u64)
    }

    use crate::decoder::arbitrary_words as stream;

    fn check(format: Format, bytes: &[u8], splits: &[usize]) -> Result<(), TestCaseError> {
        let mut counter = Counter::new(format);
        for piece in crate::decoder::pieces(bytes, splits) {
            counter.feed(piece);
        }
        prop_assert_eq!((counter.events(), counter.triggers()), decoded(format, bytes));
        Ok(())
    }

    proptest! {
        #[test]
        fn evt3_count_equals_decode(bytes in stream(2), extra in any::<u8>(),
                                    splits in prop::collection::vec(0usize..300, 0..6)) {
            let mut bytes = bytes;
            bytes.push(extra);
            check(Format::Evt3, &bytes, &splits)?;
        }

        #[test]
        fn evt2_count_equals_decode(bytes in stream(4),
                                    splits in prop::collection::vec(0usize..900, 0..6)) {
            check(Format::Evt2, &bytes, &splits)?;
        }

        #[test]
        fn evt21_count_equals_decode(bytes in stream(8), legacy in any::<bool>(),
                                     splits in prop::collection::vec(0usize..2000, 0..6)) {
            let order = if legacy { WordOrder::Legacy } else { WordOrder::Standard };
            check(Format::Evt21(order), &bytes, &splits)?;
        }

        #[test]
        fn dat_count_equals_decode(bytes in stream(8), tail in 0usize..8,
                                   splits in prop::collection::vec(0usize..2000, 0..6)) {
            let cut = bytes.len().saturating_sub(tail);
            check(Format::Dat, &bytes[..cut], &splits)?;
        }
    }
}
