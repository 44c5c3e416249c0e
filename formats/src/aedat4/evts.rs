//! The events of one `EVTS` packet, read from its decompressed bytes as they come, so that
//! the decompressed packet never exists whole.
//!
//! A packet is a size-prefixed flatbuffer: the size, the root table's offset, the
//! identifier `EVTS`, then a vtable, the table and the vector of 16-byte events, in an
//! order the offsets tell. The flatbuffers builder (dv-processing's writer) builds back to
//! front, so the vector comes last: only the bytes before it, its head (32 in
//! dv-processing's files), are kept until the vector's place and length are known; the
//! events are then passed to the sink as they arrive, and the bytes after them are only
//! counted.
//!
//! Offsets to tables and vectors are unsigned in flatbuffers, so a vector always follows
//! its table; the vtable, reached by a signed offset, may follow the vector, and the
//! vector is found only once the vtable is read. A stream cannot go back: the bytes up to
//! the vtable are kept, the vector among them, while they are at most [`MAX_HEAD`];
//! beyond that the packet is refused.
//!
//! A packet is refused (the caller counts it as an unknown word) when it is not an event
//! packet, when its vector would end beyond [`MAX_PACKET`] bytes (before any of its events
//! are passed on), or when it ends before its last event or grows beyond [`MAX_PACKET`]
//! bytes after it. Events passed on before a refusal are kept: unlike a decoder that holds
//! the whole packet, this one cannot take them back.

use std::ops::Range;

use super::flat;
use crate::carry::Carry;
use crate::sink::EventSink;

/// Largest packet, as stored or decompressed, that is read; larger ones are refused.
pub(super) const MAX_PACKET: usize = 256 << 20;
/// Most bytes of a packet kept to find its vector of events: 1 MiB, room for a vector of
/// 65,534 events laid out before its vtable.
pub(super) const MAX_HEAD: usize = 1 << 20;
/// Bytes per event: i64 time, i16 x, i16 y, a polarity byte, 3 bytes of padding.
const EVENT_LEN: usize = 16;

/// Reads the events of a packet fed in pieces; [`EvtsReader::finish`] ends the packet and
/// readies the reader for the next.
#[derive(Debug, Clone, Default)]
pub(super) struct EvtsReader {
    state: State,
    /// Bytes of the packet read so far.
    pos: usize,
    /// The packet's first bytes, while the vector is not found in them.
    head: Vec<u8>,
    /// An event split between two pieces.
    carry: Carry<EVENT_LEN>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum State {
    /// Looking for the vector of events.
    #[default]
    Head,
    /// The events are these bytes of the packet.
    Events(Range<usize>),
    /// After the last event.
    Tail,
    /// Given up: not an event packet, malformed, or too large.
    Refused,
}

/// Where a packet's events are, as far as its first bytes tell.
#[derive(Debug, PartialEq, Eq)]
enum Located {
    /// The events are these bytes of the packet.
    At(Range<usize>),
    /// The bytes given end before the head does.
    Later,
    /// Not an event packet.
    Never,
}

impl EvtsReader {
    /// Reads the next decompressed bytes of the packet; `false` once it is refused (what
    /// follows need not be decompressed).
    pub(super) fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) -> bool {
        match self.state {
            State::Head => self.find_events(bytes, sink),
            State::Events(_) | State::Tail => self.read_on(bytes, sink),
            State::Refused => {}
        }
        if self.pos > MAX_PACKET {
            self.state = State::Refused;
        }
        self.state != State::Refused
    }

    /// Ends the packet: whether all its events were read. The reader is then ready for
    /// the next packet; it keeps the head's allocation, at most [`MAX_HEAD`] bytes.
    pub(super) fn finish(&mut self) -> bool {
        let whole = self.state == State::Tail;
        self.state = State::Head;
        self.pos = 0;
        self.head.clear();
        self.carry = Carry::default();
        whole
    }

    /// The bytes this reader holds, at most [`MAX_HEAD`] whatever the packet.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.head.capacity()
    }

    /// Looks for the vector in the head so far and `bytes`, keeping them while it is not
    /// found; then reads the events they hold.
    fn find_events<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        // Usually the first piece holds the whole head: it is read in place, not kept.
        if self.head.is_empty() {
            match locate(bytes) {
                Located::At(events) => {
                    self.state = State::Events(events);
                    return self.read_on(bytes, sink);
                }
                Located::Never => return self.state = State::Refused,
                Located::Later => {}
            }
        }
        let (kept, rest) = bytes.split_at(bytes.len().min(MAX_HEAD - self.head.len()));
        self.head.extend_from_slice(kept);
        self.pos = self.head.len();
        match locate(&self.head) {
            Located::At(events) => {
                self.state = State::Events(events);
                let head = std::mem::take(&mut self.head);
                self.pos = 0;
                self.read_on(&head, sink);
                self.head = head;
                self.read_on(rest, sink);
            }
            Located::Later if self.head.len() < MAX_HEAD => {}
            Located::Later | Located::Never => self.state = State::Refused,
        }
    }

    /// Reads `bytes`, the packet's from `self.pos` on, once its vector is found: passes on
    /// the events among them, counts the rest.
    fn read_on<S: EventSink>(&mut self, mut bytes: &[u8], sink: &mut S) {
        if let State::Events(events) = &self.state {
            let events = events.clone();
            let skip = events.start.saturating_sub(self.pos).min(bytes.len());
            self.pos += skip;
            bytes = &bytes[skip..];
            let take = events.end.saturating_sub(self.pos).min(bytes.len());
            let (first, whole) = self.carry.split(&bytes[..take]);
            for event in first.iter().chain(whole) {
                emit(event, sink);
            }
            self.pos += take;
            bytes = &bytes[take..];
            if self.pos == events.end {
                self.state = State::Tail;
            }
        }
        self.pos += bytes.len();
    }
}

/// Where the events of the packet that starts with `packet` are.
fn locate(packet: &[u8]) -> Located {
    match packet.get(8..12) {
        Some(b"EVTS") => {}
        Some(_) => return Located::Never,
        None => return Located::Later,
    }
    // Offsets count from the end of the size prefix.
    let buffer = &packet[4..];
    let vector = flat::u32_at(buffer, 0)
        .and_then(|root| flat::field(buffer, root as usize, 0))
        .and_then(|at| flat::vector(buffer, at));
    let Some((start, count)) = vector else {
        // Out of the bytes so far, or malformed: either way, more bytes are read, up to
        // `MAX_HEAD`, which tells.
        return Located::Later;
    };
    let start = start + 4;
    match count.checked_mul(EVENT_LEN).and_then(|len| start.checked_add(len)) {
        Some(end) if end <= MAX_PACKET => Located::At(start..end),
        _ => Located::Never,
    }
}

/// Passes one event on.
fn emit<S: EventSink>(e: &[u8; EVENT_LEN], sink: &mut S) {
    let t = i64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
    let x = i16::from_le_bytes([e[8], e[9]]);
    let y = i16::from_le_bytes([e[10], e[11]]);
    sink.event(t, x as u16, y as u16, u8::from(e[12] != 0));
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::aedat4::test_packets::{Layout, evts, whole};
    use crate::sink::{Event, VecSink};
    use crate::testing::pieces;

    /// What reading `packet` cut at `splits` gives: the events, whether the packet was
    /// whole, and the bytes the reader held at the end.
    fn read(packet: &[u8], splits: &[usize]) -> (Vec<Event>, bool, usize) {
        let mut reader = EvtsReader::default();
        let mut sink = VecSink::default();
        for piece in pieces(packet, splits) {
            if !reader.feed(piece, &mut sink) {
                break;
            }
        }
        let held = reader.capacity();
        (sink.events, reader.finish(), held)
    }

    fn events(n: usize) -> Vec<Event> {
        (0..n as u16)
            .map(|i| Event { t: 1000 + i64::from(i), x: i, y: !i, p: (i % 2) as u8 })
            .collect()
    }

    proptest! {
        /// Any split of a packet, in either layout, gives what the whole packet held.
        #[test]
        fn any_split_reads_what_the_whole_packet_holds(
            events in prop::collection::vec(
                (any::<i64>(), any::<u16>(), any::<u16>(), 0u8..2)
                    .prop_map(|(t, x, y, p)| Event { t, x, y, p }),
                0..300,
            ),
            vtable_last in any::<bool>(),
            padding in 0usize..100,
            splits in prop::collection::vec(0usize..2000, 0..6),
        ) {
            let layout = if vtable_last { Layout::VtableLast } else { Layout::Builder };
            let packet = evts(&events, layout, padding);
            prop_assert_eq!(whole(&packet[..]), Some(events.clone()));
            let (got, complete, _) = read(&packet, &splits);
            prop_assert_eq!(got, events);
            prop_assert!(complete);
        }
    }

    #[test]
    fn a_packet_in_builder_layout_is_read_in_place() {
        let packet = evts(&events(5000), Layout::Builder, 0);
        assert_eq!(read(&packet, &[]), (events(5000), true, 0));
        // A head cut short is kept with the piece that completes it.
        let (got, complete, held) = read(&packet, &[7, 20_000]);
        assert_eq!((got, complete), (events(5000), true));
        assert!((20_007..=MAX_HEAD).contains(&held), "{held} bytes held");
    }

    #[test]
    fn a_vtable_after_the_events_is_found_within_the_head_limit() {
        // Its vector ends 24 + 16 n bytes into the packet, then comes its vtable.
        let fits = (MAX_HEAD - 24 - 6) / EVENT_LEN;
        let packet = evts(&events(fits), Layout::VtableLast, 0);
        let (got, complete, held) = read(&packet, &[1000]);
        assert_eq!((got, complete), (events(fits), true));
        assert!(held <= MAX_HEAD);

        let packet = evts(&events(fits + 1), Layout::VtableLast, 0);
        let (got, complete, held) = read(&packet, &[1000, 70_000]);
        assert_eq!((got.len(), complete), (0, false), "refused: the stream cannot go back");
        assert!(held <= MAX_HEAD, "{held} bytes held");
    }

    #[test]
    fn what_is_not_an_event_packet_is_refused_at_its_first_bytes() {
        let mut reader = EvtsReader::default();
        let zeros = vec![0; 1 << 20];
        assert!(!reader.feed(&zeros[..12], &mut VecSink::default()));
        assert_eq!(reader.capacity(), 0, "nothing kept");
        assert!(!reader.finish());
        let mut imu = evts(&events(3), Layout::Builder, 0);
        imu[8..12].copy_from_slice(b"IMUS");
        assert_eq!(read(&imu, &[]), (vec![], false, 0));
    }

    #[test]
    fn a_vector_beyond_the_largest_packet_is_refused_before_any_event() {
        let mut packet = evts(&events(10), Layout::Builder, 0);
        let count = (MAX_PACKET / EVENT_LEN) as u32;
        packet[28..32].copy_from_slice(&count.to_le_bytes());
        assert_eq!(read(&packet, &[]), (vec![], false, 0));
        packet[28..32].copy_from_slice(&(count - 2).to_le_bytes());
        assert_eq!(read(&packet, &[]), (events(10), false, 0), "cut short: not whole");
    }

    #[test]
    fn a_packet_cut_inside_its_events_keeps_those_read_and_is_not_whole() {
        let packet = evts(&events(10), Layout::Builder, 0);
        let cut = 32 + 5 * EVENT_LEN + 7;
        assert_eq!(read(&packet[..cut], &[40]), (events(5), false, 0));
    }

    #[test]
    fn a_packet_growing_beyond_the_largest_is_refused_after_its_events() {
        let mut reader = EvtsReader::default();
        let mut sink = VecSink::default();
        assert!(reader.feed(&evts(&events(3), Layout::Builder, 0), &mut sink));
        let zeros = vec![0; 1 << 20];
        let fed = (0..300).take_while(|_| reader.feed(&zeros, &mut sink)).count();
        assert_eq!(fed, 255, "refused once past 256 MiB");
        assert_eq!((std::mem::take(&mut sink.events), reader.finish()), (events(3), false));
        // Ready for the next packet.
        let packet = evts(&events(4), Layout::Builder, 0);
        assert!(reader.feed(&packet, &mut sink));
        assert_eq!((sink.events, reader.finish()), (events(4), true));
    }
}
