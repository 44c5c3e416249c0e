//! libcaer's AEDAT 3.1, as the DVS128 Gesture dataset ships it: a `#` header from
//! `#!AER-DAT3.1` to `#!END-HEADER`, then packets, each a 28-byte little-endian header
//! (i16 event type, i16 source, i32 event size, i32 timestamp offset, i32 timestamp
//! overflow, i32 capacity, i32 number, i32 valid) and `size * capacity` bytes of events.
//!
//! Polarity packets (type 1, 8-byte events) hold a u32 (bit 0 valid, bit 1 polarity, y in
//! bits 2-16, x in bits 17-31) and an i32 timestamp in µs; the time is
//! `overflow << 31 | timestamp`. Events not marked valid are skipped, as libcaer's
//! iterators skip them (tonic reads every event of a packet); packets of other types
//! (special, frames, IMU) are skipped whole. y counts from the top, as libcaer writes it.
//!
//! Geometry: a `#Geometry: WxH` line (evshm's encoder writes one), else the camera named
//! by a `#Source` line (DVS128, DAVIS240, DAVIS346, DAVIS640, DVXplorer), else 128x128 as
//! a guess (DVS128 Gesture).

use std::io::Write;

use crate::carry::Carry;
use crate::encode::{EncodeError, check_coordinates};
use crate::error::DetectError;
use crate::geometry::Geometry;
use crate::hash_header::HashHeader;
use crate::header::MAX_HEADER_LEN;
use crate::sink::{Event, EventSink};
use crate::stats::DecodeStats;

/// Bytes of a packet header.
const PACKET_HEADER: usize = 28;
/// libcaer's polarity event type.
const POLARITY: i16 = 1;
/// Bytes of a polarity event.
const EVENT: usize = 8;

/// The geometry an AEDAT 3.1 header states, and whether it states one.
pub(crate) fn detect_aedat3(head: &[u8]) -> Result<(Option<Geometry>, usize), DetectError> {
    let header = HashHeader::parse(head);
    if !header.closed {
        if head.len() >= MAX_HEADER_LEN {
            return Err(DetectError::HeaderTooLong { max: MAX_HEADER_LEN });
        }
        return Err(DetectError::Unrecognized {
            reason: "AEDAT 3.1 file whose header has no #!END-HEADER line".into(),
        });
    }
    let stated = header.get("Geometry").and_then(|value| {
        let (w, h) = value.split_once('x')?;
        Some(Geometry { width: w.trim().parse().ok()?, height: h.trim().parse().ok()? })
    });
    let sourced = || {
        let sources = header.lines().filter(|l| l.to_ascii_lowercase().starts_with("source"));
        sources.into_iter().find_map(camera_geometry)
    };
    let geometry = stated.filter(|g| g.width > 0 && g.height > 0).or_else(sourced);
    Ok((geometry, header.len))
}

/// The sensor size of the iniVation camera a header line names.
pub(crate) fn camera_geometry(line: &str) -> Option<Geometry> {
    let upper = line.to_ascii_uppercase();
    let size = |width, height| Some(Geometry { width, height });
    if upper.contains("DVS128") {
        size(128, 128)
    } else if upper.contains("DAVIS240") {
        size(240, 180)
    } else if upper.contains("DAVIS346") {
        size(346, 260)
    } else if upper.contains("DAVIS640") || upper.contains("DVXPLORER") {
        size(640, 480)
    } else {
        None
    }
}

/// Where the decoder is in the packet stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Reading a packet header.
    Header,
    /// Reading the events of a polarity packet: how many are left, and the time overflow.
    Events { left: u64, overflow: i64 },
    /// Skipping the bytes of a packet of another type.
    Skip { left: u64 },
}

/// Push decoder for AEDAT 3.1 packets (the bytes after the header).
#[derive(Debug, Clone)]
pub struct Aedat3Decoder {
    place: Place,
    header: Carry<PACKET_HEADER>,
    event: Carry<EVENT>,
    stats: DecodeStats,
}

impl Default for Aedat3Decoder {
    fn default() -> Self {
        Self {
            place: Place::Header,
            header: Carry::default(),
            event: Carry::default(),
            stats: DecodeStats::default(),
        }
    }
}

impl Aedat3Decoder {
    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, mut bytes: &[u8], sink: &mut S) {
        while !bytes.is_empty() {
            match self.place {
                Place::Header => {
                    let take = (PACKET_HEADER - self.header.len()).min(bytes.len());
                    // At most one header: the one the held bytes begin, or a whole one.
                    let (first, whole) = self.header.split(&bytes[..take]);
                    bytes = &bytes[take..];
                    if let Some(h) = first.or_else(|| whole.first().copied()) {
                        self.packet(&h);
                    }
                }
                Place::Events { left, overflow } => {
                    let room =
                        (left as usize).saturating_mul(EVENT).saturating_sub(self.event.len());
                    let take = room.min(bytes.len());
                    let (first, whole) = self.event.split(&bytes[..take]);
                    bytes = &bytes[take..];
                    let done = u64::from(first.is_some()) + whole.len() as u64;
                    for e in first.iter().chain(whole) {
                        self.stats.words += 1;
                        event(e, overflow, sink);
                    }
                    let left = left - done;
                    self.place =
                        if left == 0 { Place::Header } else { Place::Events { left, overflow } };
                }
                Place::Skip { left } => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    let left = left - take;
                    self.place = if left == 0 { Place::Header } else { Place::Skip { left } };
                }
            }
        }
    }

    /// Starts the packet whose header this is.
    fn packet(&mut self, h: &[u8; PACKET_HEADER]) {
        self.stats.words += 1;
        let i32_at = |at: usize| i32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let kind = i16::from_le_bytes([h[0], h[1]]);
        let (size, overflow, capacity) = (i32_at(4), i32_at(12), i32_at(16));
        let (Ok(size), Ok(capacity)) = (u64::try_from(size), u64::try_from(capacity)) else {
            // A packet of negative size: where the next one starts is unknown.
            self.stats.unknown += 1;
            self.place = Place::Header;
            return;
        };
        self.place = if kind == POLARITY && size == EVENT as u64 && capacity > 0 {
            Place::Events { left: capacity, overflow: i64::from(overflow) }
        } else if size * capacity > 0 {
            if kind == POLARITY {
                self.stats.unknown += 1;
            }
            Place::Skip { left: size * capacity }
        } else {
            Place::Header
        };
    }

    /// What was passed over so far.
    pub fn stats(&self) -> DecodeStats {
        DecodeStats { trailing_bytes: self.header.len() + self.event.len(), ..self.stats }
    }

    /// Bytes until the end of the packet header or event being read (0 between them).
    pub(crate) fn to_boundary(&self) -> usize {
        match (self.header.len(), self.event.len()) {
            (0, 0) => 0,
            (0, held) => EVENT - held,
            (held, _) => PACKET_HEADER - held,
        }
    }

    /// The decoder's state between events, with fresh counts.
    pub(crate) fn snapshot(&self) -> Self {
        Self { place: self.place, ..Self::default() }
    }
}

/// Decodes one polarity event.
#[inline]
fn event<S: EventSink>(e: &[u8; EVENT], overflow: i64, sink: &mut S) {
    let data = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
    if data & 1 == 0 {
        return;
    }
    let ts = i64::from(u32::from_le_bytes([e[4], e[5], e[6], e[7]]) & 0x7FFF_FFFF);
    let (x, y) = ((data >> 17) as u16 & 0x7FFF, (data >> 2) as u16 & 0x7FFF);
    sink.event(overflow << 31 | ts, x, y, (data >> 1 & 1) as u8);
}

/// Writes AEDAT 3.1 files: a header naming the geometry, then polarity packets of up to
/// 4096 events. Events may come in any time order.
#[derive(Debug)]
pub struct Aedat3Encoder<W: Write> {
    out: W,
    geometry: Geometry,
    /// The current packet's events, and its time overflow.
    packet: Vec<u8>,
    overflow: i64,
}

/// Events per packet the encoder writes.
const PACKET_EVENTS: usize = 4096;

impl<W: Write> Aedat3Encoder<W> {
    /// Writes the header and returns an encoder for the events.
    pub fn new(mut out: W, geometry: Geometry) -> Result<Self, EncodeError> {
        let source = match (geometry.width, geometry.height) {
            (128, 128) => "DVS128",
            (240, 180) => "DAVIS240C",
            (346, 260) => "DAVIS346B",
            _ => "evshm",
        };
        write!(
            out,
            "#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: {source}\r\n#Geometry: {}x{}\r\n\
             #Start-Time: 1970-01-01 00:00:00 (TZ+0000)\r\n#!END-HEADER\r\n",
            geometry.width, geometry.height
        )?;
        Ok(Self { out, geometry, packet: Vec::new(), overflow: 0 })
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) -> Result<(), EncodeError> {
        check_coordinates(event, self.geometry, 0x7FFF)?;
        if event.t < 0 {
            return Err(EncodeError::NegativeTime { t: event.t });
        }
        let overflow = event.t >> 31;
        if overflow > i64::from(i32::MAX) {
            return Err(EncodeError::TimeNotEncodable {
                t: event.t,
                previous: 0,
                reason: "AEDAT 3.1 time overflows are 32-bit",
            });
        }
        if overflow != self.overflow || self.packet.len() == PACKET_EVENTS * EVENT {
            self.flush()?;
            self.overflow = overflow;
        }
        let data = 1 | u32::from(event.p) << 1 | u32::from(event.y) << 2 | u32::from(event.x) << 17;
        self.packet.extend_from_slice(&data.to_le_bytes());
        self.packet.extend_from_slice(&((event.t & 0x7FFF_FFFF) as u32).to_le_bytes());
        Ok(())
    }

    /// Writes the current packet, if it holds any event.
    fn flush(&mut self) -> Result<(), EncodeError> {
        if self.packet.is_empty() {
            return Ok(());
        }
        let n = (self.packet.len() / EVENT) as i32;
        let mut header = Vec::with_capacity(PACKET_HEADER);
        header.extend_from_slice(&POLARITY.to_le_bytes());
        header.extend_from_slice(&1i16.to_le_bytes());
        for value in [EVENT as i32, 4, self.overflow as i32, n, n, n] {
            header.extend_from_slice(&value.to_le_bytes());
        }
        self.out.write_all(&header)?;
        self.out.write_all(&self.packet)?;
        self.packet.clear();
        Ok(())
    }

    /// Writes what is pending and returns the writer.
    pub fn finish(mut self) -> Result<W, EncodeError> {
        self.flush()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::VecSink;

    /// A packet header whose number of events is one less than its capacity, as libcaer
    /// may leave it: the capacity sizes the packet.
    fn packet_header(kind: i16, size: i32, overflow: i32, capacity: i32) -> Vec<u8> {
        let mut h = kind.to_le_bytes().to_vec();
        h.extend_from_slice(&1i16.to_le_bytes());
        for v in [size, 4, overflow, capacity, capacity - 1, capacity - 1] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    }

    #[test]
    fn round_trip_across_overflows_and_packets() {
        let geometry = Geometry { width: 128, height: 128 };
        let mut events = vec![
            Event { t: 5, x: 127, y: 0, p: 1 },
            Event { t: 3, x: 0, y: 127, p: 0 },
            Event { t: (1 << 31) + 2, x: 1, y: 2, p: 1 },
            Event { t: 9 << 31, x: 1, y: 2, p: 0 },
        ];
        events.extend((0..5000).map(|i| Event { t: (9 << 31) + i, x: 3, y: 4, p: 1 }));
        let mut encoder = Aedat3Encoder::new(Vec::new(), geometry).unwrap();
        events.iter().for_each(|e| encoder.push(e).unwrap());
        let file = encoder.finish().unwrap();
        let (stated, offset) = detect_aedat3(&file).unwrap();
        assert_eq!(stated, Some(geometry));
        let mut decoder = Aedat3Decoder::default();
        let mut sink = VecSink::default();
        for piece in file[offset..].chunks(11) {
            decoder.feed(piece, &mut sink);
        }
        assert_eq!(sink.events, events);
        assert_eq!(decoder.stats().trailing_bytes, 0);
    }

    #[test]
    fn other_packets_and_invalid_events_are_skipped() {
        let mut data = packet_header(2, 12, 0, 2);
        data.extend_from_slice(&[0xAB; 24]);
        data.extend(packet_header(POLARITY, 8, 1, 2));
        // Valid ON event at x 5, y 6, t 7; then an invalid one.
        data.extend_from_slice(&(1u32 | 1 << 1 | 6 << 2 | 5 << 17).to_le_bytes());
        data.extend_from_slice(&7u32.to_le_bytes());
        data.extend_from_slice(&(6u32 << 2).to_le_bytes());
        data.extend_from_slice(&8u32.to_le_bytes());
        data.extend(packet_header(POLARITY, 8, 0, 1));
        data.extend_from_slice(&[1, 0, 0]);
        let mut decoder = Aedat3Decoder::default();
        let mut sink = VecSink::default();
        decoder.feed(&data, &mut sink);
        assert_eq!(sink.events, [Event { t: (1 << 31) + 7, x: 5, y: 6, p: 1 }]);
        assert_eq!(decoder.stats().trailing_bytes, 3);
        assert_eq!(decoder.to_boundary(), 5);
    }

    #[test]
    fn geometry_from_the_header() {
        let head = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n";
        assert_eq!(
            detect_aedat3(head).unwrap(),
            (Some(Geometry { width: 128, height: 128 }), head.len())
        );
        let head = b"#!AER-DAT3.1\r\n#Source 1: Mystery\r\n#!END-HEADER\r\n";
        assert_eq!(detect_aedat3(head).unwrap().0, None);
        assert!(detect_aedat3(b"#!AER-DAT3.1\r\n#Source 1: DVS128\r\n").is_err());
    }
}
