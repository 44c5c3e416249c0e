//! Event Stream 2.x (`.es`), the format of the Neuromorphic-Paris tools (sepia, loris,
//! faery): `Event Stream` in ASCII, three version bytes (major 2), a type byte, and for
//! DVS (1) and ATIS (2) streams the width and height as little-endian u16; then a byte
//! stream whose events each start with a byte of time since the previous event:
//!
//! - DVS: `0xFF` adds 127 µs; `0xFE` is a reset (nothing); any other byte `b` adds `b >> 1`
//!   µs and gives the polarity in bit 0, followed by x and y as little-endian u16.
//! - ATIS: a byte with its six high bits set adds 63 µs times its two low bits (`0xFC` is
//!   a reset); any other byte `b` adds `b >> 2` µs, bit 0 tells an exposure measurement
//!   (skipped here) from a change detection, bit 1 the polarity; then x and y as above.
//!
//! Time starts at 0 and only rises. y counts from the bottom of the sensor in the file
//! (the Neuromorphic-Paris convention): evshm gives `height - 1 - y`, counted from the top
//! like every other format here, as faery's reader does (loris gives the file's y). The
//! reference is faery's decoder (`event_stream`), which stops at an event outside the
//! sensor where evshm drops it and goes on. Generic, colour and other stream types carry
//! no polarity events and are refused at detection.

use std::io::Write;

use crate::encode::{EncodeError, check_coordinates};
use crate::error::DetectError;
use crate::geometry::Geometry;
use crate::sink::{Event, EventSink};
use crate::stats::DecodeStats;

/// The first bytes of every Event Stream file.
pub(crate) const MAGIC: &[u8] = b"Event Stream";
/// Bytes of a DVS or ATIS header: magic, version, type, width, height.
const HEADER_LEN: usize = MAGIC.len() + 3 + 1 + 4;

/// The event types of an Event Stream file that evshm reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EsKind {
    /// DVS events (type 1): time, polarity, x, y.
    Dvs,
    /// ATIS events (type 2): change detections and exposure measurements.
    Atis,
}

/// What a decoder needs to know of an Event Stream file, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EsLayout {
    /// The event type.
    pub kind: EsKind,
    /// The sensor's height, to count y from the top.
    pub height: u16,
}

/// Reads the header of a file that starts with [`MAGIC`]: the layout, the geometry and
/// where the events start.
pub(crate) fn detect_event_stream(head: &[u8]) -> Result<(EsLayout, Geometry, usize), DetectError> {
    let short =
        || DetectError::Unrecognized { reason: "Event Stream file with a truncated header".into() };
    let [major, minor, patch, kind] = *head.get(MAGIC.len()..MAGIC.len() + 4).ok_or_else(short)?
    else {
        unreachable!("four bytes")
    };
    if major != 2 {
        return Err(DetectError::UnsupportedFormat {
            name: format!("Event Stream version {major}.{minor}.{patch} (evshm reads 2.x)"),
        });
    }
    let kind = match kind {
        1 => EsKind::Dvs,
        2 => EsKind::Atis,
        0 => return Err(unsupported("generic events (no pixel address or polarity)")),
        4 => return Err(unsupported("colour events (no polarity)")),
        other => return Err(unsupported(&format!("events of type {other}"))),
    };
    let size = head.get(MAGIC.len() + 4..HEADER_LEN).ok_or_else(short)?;
    let width = u32::from(u16::from_le_bytes([size[0], size[1]]));
    let height = u32::from(u16::from_le_bytes([size[2], size[3]]));
    if width == 0 || height == 0 {
        return Err(DetectError::BadGeometry { detail: format!("width {width}, height {height}") });
    }
    let layout = EsLayout { kind, height: height as u16 };
    Ok((layout, Geometry { width, height }, HEADER_LEN))
}

fn unsupported(what: &str) -> DetectError {
    DetectError::UnsupportedFormat { name: format!("Event Stream {what}") }
}

/// Push decoder for the events of an Event Stream file (the bytes after the header).
#[derive(Debug, Clone)]
pub struct EventStreamDecoder {
    kind: EsKind,
    /// The highest row, from which the file's y counts down.
    top: u16,
    t: i64,
    /// Bytes of the current event read so far (0: between events).
    at: u8,
    /// The first byte of the current event.
    lead: u8,
    x: u16,
    y: u16,
    stats: DecodeStats,
}

impl EventStreamDecoder {
    /// A decoder at the start of the events of a stream of this layout.
    pub fn new(layout: EsLayout) -> Self {
        let top = layout.height.saturating_sub(1);
        let (kind, stats) = (layout.kind, DecodeStats::default());
        Self { kind, top, t: 0, at: 0, lead: 0, x: 0, y: 0, stats }
    }

    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        for &byte in bytes {
            match self.at {
                0 => self.lead(byte),
                1 => (self.x, self.at) = (u16::from(byte), 2),
                2 => (self.x, self.at) = (self.x | u16::from(byte) << 8, 3),
                3 => (self.y, self.at) = (u16::from(byte), 4),
                _ => {
                    (self.y, self.at) = (self.y | u16::from(byte) << 8, 0);
                    self.event(sink);
                }
            }
        }
    }

    /// Takes the byte that starts an event, or a time step or reset between events.
    #[inline]
    fn lead(&mut self, byte: u8) {
        self.stats.words += 1;
        match self.kind {
            EsKind::Dvs => match byte {
                0xFF => self.t += 127,
                0xFE => {}
                _ => {
                    self.t += i64::from(byte >> 1);
                    (self.lead, self.at) = (byte, 1);
                }
            },
            EsKind::Atis => {
                if byte & 0xFC == 0xFC {
                    self.t += 63 * i64::from(byte & 0b11);
                } else {
                    self.t += i64::from(byte >> 2);
                    (self.lead, self.at) = (byte, 1);
                }
            }
        }
    }

    #[inline]
    fn event<S: EventSink>(&mut self, sink: &mut S) {
        let p = match self.kind {
            EsKind::Dvs => self.lead & 1,
            // Exposure measurements are not change detections.
            EsKind::Atis if self.lead & 1 == 1 => return,
            EsKind::Atis => self.lead >> 1 & 1,
        };
        // A row past the sensor wraps to a large value, which the geometry filter drops.
        sink.event(self.t, self.x, self.top.wrapping_sub(self.y), p);
    }

    /// What was passed over so far.
    pub fn stats(&self) -> DecodeStats {
        let held = if self.at == 0 { 0 } else { usize::from(self.at) };
        DecodeStats { trailing_bytes: held, ..self.stats }
    }

    /// Bytes until the end of the event being read (0 between events).
    pub(crate) fn to_boundary(&self) -> usize {
        if self.at == 0 { 0 } else { 5 - usize::from(self.at) }
    }

    /// The decoder's state between events, with fresh counts.
    pub(crate) fn snapshot(&self) -> Self {
        Self { stats: DecodeStats::default(), ..self.clone() }
    }
}

/// The longest step between two events the encoder writes (in overflow bytes).
const MAX_STEP: i64 = 1 << 32;

/// Writes Event Stream 2.0.0 files of DVS or ATIS events (change detections only).
/// Time may not go back, nor step by more than 2^32 µs (the format counts time from 0 in
/// overflow bytes of 127 µs: a recording whose times are far from 0, Unix time for one,
/// must be shifted first).
#[derive(Debug)]
pub struct EventStreamEncoder<W: Write> {
    out: std::io::BufWriter<W>,
    kind: EsKind,
    geometry: Geometry,
    t: i64,
}

impl<W: Write> EventStreamEncoder<W> {
    /// Writes the header and returns an encoder for the events (width and height at most
    /// 65535).
    pub fn new(mut out: W, geometry: Geometry, kind: EsKind) -> Result<Self, EncodeError> {
        let side = |v: u32| u16::try_from(v).ok();
        let (Some(width), Some(height)) = (side(geometry.width), side(geometry.height)) else {
            return Err(EncodeError::OutOfRange {
                x: 0,
                y: 0,
                width: geometry.width,
                height: geometry.height,
            });
        };
        out.write_all(MAGIC)?;
        let kind_byte = match kind {
            EsKind::Dvs => 1,
            EsKind::Atis => 2,
        };
        out.write_all(&[2, 0, 0, kind_byte])?;
        out.write_all(&width.to_le_bytes())?;
        out.write_all(&height.to_le_bytes())?;
        Ok(Self { out: std::io::BufWriter::with_capacity(1 << 16, out), kind, geometry, t: 0 })
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) -> Result<(), EncodeError> {
        check_coordinates(event, self.geometry, u16::MAX)?;
        if event.t < 0 {
            return Err(EncodeError::NegativeTime { t: event.t });
        }
        if event.t < self.t {
            return Err(EncodeError::TimeNotEncodable {
                t: event.t,
                previous: self.t,
                reason: "Event Stream time never goes back",
            });
        }
        let mut delta = event.t - self.t;
        if delta > MAX_STEP {
            return Err(EncodeError::TimeNotEncodable {
                t: event.t,
                previous: self.t,
                reason: "Event Stream counts time from 0 in steps of at most 127 µs (189 µs \
                         for ATIS), one byte each: a step over 2^32 µs (71 minutes, 34 MB) is \
                         refused; shift the times to start near 0",
            });
        }
        self.t = event.t;
        let lead = match self.kind {
            EsKind::Dvs => {
                self.overflow(0xFF, (delta / 127) as usize)?;
                delta %= 127;
                (delta as u8) << 1 | event.p
            }
            EsKind::Atis => {
                let steps = delta / 63;
                self.overflow(0xFF, (steps / 3) as usize)?;
                if steps % 3 > 0 {
                    self.out.write_all(&[0xFC | (steps % 3) as u8])?;
                }
                delta %= 63;
                (delta as u8) << 2 | event.p << 1
            }
        };
        self.out.write_all(&[lead])?;
        self.out.write_all(&event.x.to_le_bytes())?;
        let y = self.geometry.height as u16 - 1 - event.y;
        self.out.write_all(&y.to_le_bytes())?;
        Ok(())
    }

    /// Writes `count` overflow bytes.
    fn overflow(&mut self, byte: u8, mut count: usize) -> Result<(), EncodeError> {
        while count > 0 {
            const RUN: usize = 4096;
            let n = count.min(RUN);
            self.out.write_all(&[byte; RUN][..n])?;
            count -= n;
        }
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

    fn round_trip(kind: EsKind) {
        let geometry = Geometry { width: 1280, height: 720 };
        let events = [
            Event { t: 0, x: 0, y: 0, p: 0 },
            Event { t: 0, x: 1279, y: 719, p: 1 },
            Event { t: 126, x: 300, y: 2, p: 1 },
            Event { t: 126 + 127, x: 3, y: 2, p: 0 },
            Event { t: 1_000_000, x: 3, y: 2, p: 1 },
            Event { t: 1_000_062, x: 3, y: 2, p: 1 },
            Event { t: 1_000_063 + 189, x: 3, y: 2, p: 0 },
        ];
        let mut encoder = EventStreamEncoder::new(Vec::new(), geometry, kind).unwrap();
        events.iter().for_each(|e| encoder.push(e).unwrap());
        let file = encoder.finish().unwrap();
        let (layout, size, offset) = detect_event_stream(&file).unwrap();
        assert_eq!((layout, size, offset), (EsLayout { kind, height: 720 }, geometry, 20));
        let mut decoder = EventStreamDecoder::new(layout);
        let mut sink = VecSink::default();
        for piece in file[offset..].chunks(2) {
            decoder.feed(piece, &mut sink);
        }
        assert_eq!(sink.events, events);
        assert_eq!(decoder.stats().trailing_bytes, 0);
        assert!(encoder_refuses_going_back(kind));
    }

    fn encoder_refuses_going_back(kind: EsKind) -> bool {
        let mut encoder =
            EventStreamEncoder::new(Vec::new(), Geometry { width: 4, height: 4 }, kind).unwrap();
        encoder.push(&Event { t: 10, ..Event::default() }).unwrap();
        // Unix time in µs would take 12 TB of overflow bytes: refused, nothing allocated.
        let far = encoder.push(&Event { t: 1_600_000_000_000_000, ..Event::default() });
        encoder.push(&Event { t: 9, ..Event::default() }).is_err() && far.is_err()
    }

    #[test]
    fn dvs_round_trip() {
        round_trip(EsKind::Dvs);
    }

    #[test]
    fn atis_round_trip() {
        round_trip(EsKind::Atis);
    }

    #[test]
    fn atis_exposure_measurements_and_resets_are_not_events() {
        let mut decoder = EventStreamDecoder::new(EsLayout { kind: EsKind::Atis, height: 480 });
        let mut sink = VecSink::default();
        // A reset, an exposure measurement 1 µs in, a change detection (ON) 2 µs later at
        // the file's row 8 (from the bottom), then an OFF 189 µs later at row 9, as faery
        // 0.7.1 reads them.
        let bytes = [0xFC, 1 << 2 | 1, 5, 0, 6, 0, 2 << 2 | 0b10, 7, 0, 8, 0, 0xFF, 0, 9, 0, 9, 0];
        decoder.feed(&bytes, &mut sink);
        let faery = [Event { t: 3, x: 7, y: 471, p: 1 }, Event { t: 192, x: 9, y: 470, p: 0 }];
        assert_eq!(sink.events, faery);
    }

    #[test]
    fn headers_of_other_types_and_versions_are_refused() {
        let head = |version: u8, kind: u8| {
            let mut h = MAGIC.to_vec();
            h.extend_from_slice(&[version, 0, 0, kind, 4, 0, 4, 0]);
            h
        };
        let err = |h: Vec<u8>| detect_event_stream(&h).unwrap_err().to_string();
        assert!(err(head(1, 1)).contains("version 1.0.0"));
        assert!(err(head(2, 0)).contains("generic"));
        assert!(err(head(2, 4)).contains("colour"));
        assert!(err(head(2, 1)[..17].to_vec()).contains("truncated"));
    }
}
