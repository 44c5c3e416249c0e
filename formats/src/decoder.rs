//! One decoder type over every format, for callers that pick the format at run time.

use crate::aedat2::Aedat2Decoder;
use crate::aedat3::Aedat3Decoder;
use crate::aedat4::Aedat4Decoder;
use crate::atis_bin::AtisBinDecoder;
use crate::dat::DatDecoder;
use crate::event_stream::EventStreamDecoder;
use crate::evt2::Evt2Decoder;
use crate::evt3::Evt3Decoder;
use crate::evt21::Evt21Decoder;
use crate::format::Format;
use crate::sink::EventSink;
use crate::stats::DecodeStats;
use crate::text::TextDecoder;

/// A push decoder for any [`Format`]: feed it the event data (everything from
/// [`crate::Detected::data_offset`] on) in slices of any size.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Decoder {
    /// DAT.
    Dat(DatDecoder),
    /// EVT 2.0.
    Evt2(Evt2Decoder),
    /// EVT 2.1.
    Evt21(Evt21Decoder),
    /// EVT 3.0.
    Evt3(Evt3Decoder),
    /// Text.
    Text(TextDecoder),
    /// AEDAT 4.0.
    Aedat4(Aedat4Decoder),
    /// AEDAT 3.1.
    Aedat3(Aedat3Decoder),
    /// AEDAT 2.0.
    Aedat2(Aedat2Decoder),
    /// Event Stream.
    EventStream(EventStreamDecoder),
    /// ATIS `.bin`.
    AtisBin(AtisBinDecoder),
}

impl Decoder {
    /// A decoder at the start of the event data of `format`.
    pub fn new(format: Format) -> Self {
        match format {
            Format::Dat => Decoder::Dat(DatDecoder::default()),
            Format::Evt2 => Decoder::Evt2(Evt2Decoder::default()),
            Format::Evt21(order) => Decoder::Evt21(Evt21Decoder::new(order)),
            Format::Evt3 => Decoder::Evt3(Evt3Decoder::default()),
            Format::Text(columns) => Decoder::Text(TextDecoder::new(columns)),
            Format::Aedat4(layout) => Decoder::Aedat4(Aedat4Decoder::new(layout)),
            Format::Aedat3 => Decoder::Aedat3(Aedat3Decoder::default()),
            Format::Aedat2(chip) => Decoder::Aedat2(Aedat2Decoder::new(chip)),
            Format::EventStream(layout) => Decoder::EventStream(EventStreamDecoder::new(layout)),
            Format::AtisBin => Decoder::AtisBin(AtisBinDecoder::default()),
        }
    }

    /// Decodes `bytes`, the continuation of what was fed before.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        match self {
            Decoder::Dat(d) => d.feed(bytes, sink),
            Decoder::Evt2(d) => d.feed(bytes, sink),
            Decoder::Evt21(d) => d.feed(bytes, sink),
            Decoder::Evt3(d) => d.feed(bytes, sink),
            Decoder::Text(d) => d.feed(bytes, sink),
            Decoder::Aedat4(d) => d.feed(bytes, sink),
            Decoder::Aedat3(d) => d.feed(bytes, sink),
            Decoder::Aedat2(d) => d.feed(bytes, sink),
            Decoder::EventStream(d) => d.feed(bytes, sink),
            Decoder::AtisBin(d) => d.feed(bytes, sink),
        }
    }

    /// Ends the stream: decodes what only the end makes complete (a text file's last
    /// line without a newline). Binary formats have nothing to add: a partial final word
    /// is not an event.
    pub fn finish<S: EventSink>(&mut self, sink: &mut S) {
        if let Decoder::Text(d) = self {
            d.finish(sink);
        }
    }

    /// The decoder's state at a word boundary, with fresh counts: where a chunk starts.
    pub(crate) fn snapshot(&self) -> Decoder {
        match self {
            Decoder::Dat(d) => Decoder::Dat(d.snapshot()),
            Decoder::Evt2(d) => Decoder::Evt2(d.snapshot()),
            Decoder::Evt21(d) => Decoder::Evt21(d.snapshot()),
            Decoder::Evt3(d) => Decoder::Evt3(d.snapshot()),
            Decoder::Aedat3(d) => Decoder::Aedat3(d.snapshot()),
            Decoder::Aedat2(d) => Decoder::Aedat2(d.snapshot()),
            Decoder::EventStream(d) => Decoder::EventStream(d.snapshot()),
            Decoder::AtisBin(d) => Decoder::AtisBin(d.snapshot()),
            Decoder::Text(_) | Decoder::Aedat4(_) => unreachable!("read as one chunk"),
        }
    }

    /// For formats of records of varying length, read a byte at a time (AEDAT 3.1, AEDAT
    /// 2.0, Event Stream, ATIS `.bin`): the bytes until the end of the record being read, 0
    /// between records, where a chunk may start. `None` for the other formats.
    pub(crate) fn to_boundary(&self) -> Option<usize> {
        match self {
            Decoder::Aedat3(d) => Some(d.to_boundary()),
            Decoder::Aedat2(d) => Some(d.to_boundary()),
            Decoder::EventStream(d) => Some(d.to_boundary()),
            Decoder::AtisBin(d) => Some(d.to_boundary()),
            _ => None,
        }
    }

    /// The latest time an event can have before the next time word, once time is known.
    pub(crate) fn time_bound(&self) -> Option<i64> {
        match self {
            Decoder::Evt2(d) => d.clock.known().then(|| d.clock.time(0x3F)),
            Decoder::Evt21(d) => d.clock.known().then(|| d.clock.time(0x3F)),
            Decoder::Evt3(d) => d.state.time_known.then_some(d.state.time | 0xFFF),
            _ => None,
        }
    }

    /// What the decoder passed over so far; call it after [`Decoder::finish`] to learn
    /// of a truncated final word.
    pub fn stats(&self) -> DecodeStats {
        match self {
            Decoder::Dat(d) => d.stats(),
            Decoder::Evt2(d) => d.stats(),
            Decoder::Evt21(d) => d.stats(),
            Decoder::Evt3(d) => d.stats(),
            Decoder::Text(d) => d.stats(),
            Decoder::Aedat4(d) => d.stats(),
            Decoder::Aedat3(d) => d.stats(),
            Decoder::Aedat2(d) => d.stats(),
            Decoder::EventStream(d) => d.stats(),
            Decoder::AtisBin(d) => d.stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::encoder::Encoder;
    use crate::geometry::Geometry;
    use crate::sink::{ColumnSink, GeometryFilter, Slots, VecSink};
    use crate::synth::{Synth, SynthConfig};
    use crate::testing::pieces;

    /// Streams of mostly event words, with time words, wraps and words of other types
    /// among them: what the fast loops take, and everything that makes them hand a block
    /// back to the per-word path.
    fn eventful_words(format: Format) -> impl Strategy<Value = Vec<u8>> {
        let word = prop_oneof![
            30 => (Just(true), any::<u64>()),
            1 => (Just(false), any::<u64>()),
        ];
        prop::collection::vec(word, 0..600).prop_map(move |words| {
            let mut bytes = Vec::new();
            let mut time = 0u32;
            for (event, payload) in words {
                let low = payload as u32;
                match format {
                    Format::Dat => {
                        // Mostly small steps, now and then a step back or a wrap.
                        time = match (event, payload >> 62) {
                            (true, _) => time.wrapping_add(low & 0x3FF),
                            (false, 0) => time.wrapping_sub(low & 0xFFFF),
                            (false, _) => time.wrapping_add(low | 1 << 31),
                        };
                        let data =
                            if event { low & 0x7FF | (low >> 11 & 0x7FF) << 14 } else { low };
                        let data = data & 0x0FFF_FFFF | ((payload >> 40) as u32 & 1) << 28;
                        bytes.extend_from_slice(&time.to_le_bytes());
                        bytes.extend_from_slice(&data.to_le_bytes());
                    }
                    Format::Evt2 => {
                        let kind = if event { low >> 31 } else { (payload >> 32) as u32 & 0xF };
                        bytes.extend_from_slice(&(kind << 28 | low & 0x0FFF_FFFF).to_le_bytes());
                    }
                    _ => unreachable!("formats with fast loops"),
                }
            }
            bytes
        })
    }

    fn decode(format: Format, bytes: &[u8], splits: &[usize], sink: &mut impl EventSink) {
        let mut decoder = Decoder::new(format);
        for piece in pieces(bytes, splits) {
            decoder.feed(piece, sink);
        }
    }

    /// The fast loops write what the per-event path does, for any split of the input and
    /// any sensor size, and drop the same events.
    fn fast_loops_agree(
        format: Format,
        bytes: &[u8],
        splits: &[usize],
        geometry: Option<Geometry>,
    ) -> Result<(), TestCaseError> {
        let mut per_event = GeometryFilter::new(VecSink::default(), geometry);
        decode(format, bytes, &[], &mut per_event);
        let mut columns = GeometryFilter::new(ColumnSink::default(), geometry);
        decode(format, bytes, splits, &mut columns);
        prop_assert_eq!(columns.inner.events().collect::<Vec<_>>(), per_event.inner.events);
        prop_assert_eq!(columns.dropped, per_event.dropped);
        prop_assert_eq!(columns.inner.triggers, per_event.inner.triggers);
        Ok(())
    }

    fn geometry() -> impl Strategy<Value = Option<Geometry>> {
        prop::option::of(
            (1u32..2100, 1u32..2100).prop_map(|(width, height)| Geometry { width, height }),
        )
    }

    proptest! {
        #[test]
        fn dat_fast_loop_agrees(bytes in eventful_words(Format::Dat),
                                splits in prop::collection::vec(0usize..2000, 0..4),
                                geometry in geometry()) {
            fast_loops_agree(Format::Dat, &bytes, &splits, geometry)?;
        }

        #[test]
        fn evt2_fast_loop_agrees(bytes in eventful_words(Format::Evt2),
                                 splits in prop::collection::vec(0usize..2000, 0..4),
                                 geometry in geometry()) {
            fast_loops_agree(Format::Evt2, &bytes, &splits, geometry)?;
        }
    }

    /// Counts the events that arrive through slots rather than one by one.
    #[derive(Default)]
    struct SlotCounter {
        columns: ColumnSink,
        through_slots: usize,
    }

    impl EventSink for SlotCounter {
        fn event(&mut self, t: i64, x: u16, y: u16, p: u8) {
            self.columns.event(t, x, y, p);
        }

        fn slots(&mut self) -> Option<Slots<'_>> {
            self.columns.slots()
        }

        fn commit(&mut self, n: usize) {
            self.through_slots += n;
            self.columns.commit(n);
        }
    }

    /// On a recording shaped like a camera's, nearly every event takes the fast loop:
    /// without this, the tests above could pass with a fast loop that never runs.
    #[test]
    fn fast_loops_take_nearly_every_event() {
        let geometry = Geometry { width: 1280, height: 720 };
        let events = 200_000;
        for format in [Format::Dat, Format::Evt2, Format::Evt3] {
            let mut encoder = Encoder::new(format, Vec::new(), geometry).unwrap();
            for event in Synth::new(SynthConfig { geometry, events, ..SynthConfig::default() }) {
                encoder.push(&event).unwrap();
            }
            let file = encoder.finish().unwrap();
            let data = &file[crate::detect(&file, None).unwrap().data_offset..];
            let mut sink = GeometryFilter::new(SlotCounter::default(), Some(geometry));
            decode(format, data, &[], &mut sink);
            assert_eq!(sink.inner.columns.len() as u64, events, "{format:?}");
            assert!(
                sink.inner.through_slots as u64 > events * 9 / 10,
                "{format:?}: {}",
                sink.inner.through_slots
            );
        }
    }
}
