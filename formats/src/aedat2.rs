//! jAER's AEDAT 2.0: a `#` header whose first line is `#!AER-DAT2.0` and which names the
//! camera (`# AEChip: <Java class>`), then 8-byte big-endian records, a u32 address and a
//! u32 timestamp in µs. What an address means depends on the camera, as jAER's event
//! extractors read it:
//!
//! - DVS128 (`DVS128`, `Tmpdiff128`): x in bits 1-7, y in bits 8-14, bit 0 set for OFF;
//!   bit 15 (sync) and bit 31 mark special events, skipped. jAER mirrors x
//!   (`127 - x`) and counts y from the bottom.
//! - DAVIS240/346/640 (`DAVIS240C`, `DAVIS346B`, `SBret10`, ...): bit 31 marks APS
//!   samples and IMU words, skipped, as are external-input events (bit 10); else x in bits
//!   12-21 (mirrored by jAER: `width - 1 - x`), y in bits 22-30 (counted from the bottom),
//!   polarity in bit 11 (set for ON).
//!
//! evshm gives jAER's x and counts y from the top like every other format here
//! (`y = height - 1 - jAER's y`): for DAVIS cameras exactly what tonic's `read_davis_346`
//! gives. tonic's `read_dvs_128` reads the DVS128 address bits without jAER's mirroring
//! and with x and y swapped, and its polarity inverted (see docs/FORMATS.md).
//!
//! The timestamp wraps after 71.6 minutes: a backward jump larger than 2^31 µs is a wrap.
//! A header without an `AEChip` line (v2e writes none) is read as DVS128 when every
//! address in the head fits 16 bits, else as the smallest DAVIS whose sensor holds the
//! head's events; the geometry is then marked a guess, and a geometry given by the caller
//! picks the camera instead (`Detected::with_geometry`).

use std::io::Write;

use crate::carry::Carry;
use crate::encode::{EncodeError, check_coordinates};
use crate::error::DetectError;
use crate::geometry::Geometry;
use crate::hash_header::HashHeader;
use crate::sink::{Event, EventSink};
use crate::stats::DecodeStats;

/// A backward jump of the 32-bit time larger than this is a wrap.
const WRAP_THRESHOLD: u32 = 1 << 31;

/// The camera whose addresses an AEDAT 2.0 file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aedat2Chip {
    /// DVS128 (and the Tmpdiff128 chip): 128x128.
    Dvs128,
    /// DAVIS240 (A, B, C; SBret10): 240x180.
    Davis240,
    /// DAVIS346: 346x260.
    Davis346,
    /// DAVIS640: 640x480.
    Davis640,
}

impl Aedat2Chip {
    /// The sensor size.
    pub fn geometry(self) -> Geometry {
        let (width, height) = match self {
            Aedat2Chip::Dvs128 => (128, 128),
            Aedat2Chip::Davis240 => (240, 180),
            Aedat2Chip::Davis346 => (346, 260),
            Aedat2Chip::Davis640 => (640, 480),
        };
        Geometry { width, height }
    }

    /// The camera of this size, if jAER has one.
    pub fn of_geometry(geometry: Geometry) -> Option<Self> {
        [Aedat2Chip::Dvs128, Aedat2Chip::Davis240, Aedat2Chip::Davis346, Aedat2Chip::Davis640]
            .into_iter()
            .find(|chip| chip.geometry() == geometry)
    }

    /// The jAER class the encoder names in `# AEChip:`.
    fn class(self) -> &'static str {
        match self {
            Aedat2Chip::Dvs128 => "ch.unizh.ini.jaer.chip.retina.DVS128",
            Aedat2Chip::Davis240 => "eu.seebetter.ini.chips.davis.DAVIS240C",
            Aedat2Chip::Davis346 => "eu.seebetter.ini.chips.davis.DAVIS346B",
            Aedat2Chip::Davis640 => "eu.seebetter.ini.chips.davis.DAVIS640",
        }
    }

    /// The camera a jAER class name stands for.
    fn of_class(class: &str) -> Option<Self> {
        let upper = class.to_ascii_uppercase();
        let simple = upper.rsplit('.').next().unwrap_or(&upper);
        // DAVIS names as jAER's classes and the scripts that write its files spell them
        // (DAVIS346B, Davis346blue, DAVI346, SBret10).
        let davis = simple.contains("DAVI") || simple.contains("SBRET");
        if simple.contains("DVS128") || simple.contains("TMPDIFF128") {
            Some(Aedat2Chip::Dvs128)
        } else if davis && (simple.contains("240") || simple.contains("SBRET10")) {
            Some(Aedat2Chip::Davis240)
        } else if davis && simple.contains("346") {
            Some(Aedat2Chip::Davis346)
        } else if davis && simple.contains("640") {
            Some(Aedat2Chip::Davis640)
        } else {
            None
        }
    }
}

/// The camera and where the records start, from the head of an AEDAT 2.0 file; the
/// flag tells whether the header named the camera.
pub(crate) fn detect_aedat2(head: &[u8]) -> Result<(Aedat2Chip, bool, usize), DetectError> {
    let header = HashHeader::parse(head);
    if header.unterminated {
        return Err(DetectError::Unrecognized {
            reason: "AEDAT 2.0 file whose header is cut short".into(),
        });
    }
    let Some(class) = header.get("AEChip") else {
        let records = head[header.len..].as_chunks::<8>().0;
        let addresses = || records.iter().map(|r| u32::from_be_bytes([r[0], r[1], r[2], r[3]]));
        if addresses().all(|a| a < 1 << 16) {
            return Ok((Aedat2Chip::Dvs128, false, header.len));
        }
        // DAVIS addresses: the smallest DAVIS whose sensor holds the head's events (v2e,
        // for one, writes no AEChip line).
        let dvs = addresses().filter(|a| a & 0x8000_0400 == 0);
        let (x, y) = dvs.fold((0, 0), |(x, y), a| (x.max(a >> 12 & 0x3FF), y.max(a >> 22 & 0x1FF)));
        let davis = [Aedat2Chip::Davis240, Aedat2Chip::Davis346, Aedat2Chip::Davis640];
        let fits = |chip: &Aedat2Chip| x < chip.geometry().width && y < chip.geometry().height;
        return match davis.into_iter().find(fits) {
            Some(chip) => Ok((chip, false, header.len)),
            None => Err(DetectError::UnsupportedFormat {
                name: "AEDAT 2.0 without an AEChip header line, of addresses no DVS128 or \
                       DAVIS holds"
                    .into(),
            }),
        };
    };
    match Aedat2Chip::of_class(class) {
        Some(chip) => Ok((chip, true, header.len)),
        None => Err(DetectError::UnsupportedFormat { name: format!("AEDAT 2.0 from {class}") }),
    }
}

/// Push decoder for AEDAT 2.0 records (the bytes after the header).
#[derive(Debug, Clone)]
pub struct Aedat2Decoder {
    chip: Aedat2Chip,
    carry: Carry<8>,
    last: u32,
    wraps: i64,
    stats: DecodeStats,
}

impl Aedat2Decoder {
    /// A decoder for the addresses of this camera.
    pub fn new(chip: Aedat2Chip) -> Self {
        Self { chip, carry: Carry::default(), last: 0, wraps: 0, stats: DecodeStats::default() }
    }

    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        let (first, whole) = self.carry.split(bytes);
        let Geometry { width, height } = self.chip.geometry();
        let (x_top, y_top) = ((width - 1) as u16, (height - 1) as u16);
        for r in first.iter().chain(whole) {
            self.stats.words += 1;
            let address = u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
            let time = u32::from_be_bytes([r[4], r[5], r[6], r[7]]);
            if time < self.last && self.last - time > WRAP_THRESHOLD {
                self.wraps += 1;
            }
            self.last = time;
            let t = self.wraps << 32 | i64::from(time);
            // Mirrored coordinates past the sensor wrap to large values, which the
            // geometry filter drops.
            let (x, y, p) = match self.chip {
                Aedat2Chip::Dvs128 => {
                    if address & 0x8000_8000 != 0 {
                        continue;
                    }
                    let (x, y) = ((address >> 1 & 0x7F) as u16, (address >> 8 & 0x7F) as u16);
                    (x_top.wrapping_sub(x), y_top.wrapping_sub(y), (!address & 1) as u8)
                }
                _ => {
                    if address & 0x8000_0400 != 0 {
                        continue;
                    }
                    let (x, y) = ((address >> 12 & 0x3FF) as u16, (address >> 22 & 0x1FF) as u16);
                    (x_top.wrapping_sub(x), y_top.wrapping_sub(y), (address >> 11 & 1) as u8)
                }
            };
            sink.event(t, x, y, p);
        }
    }

    /// What was passed over so far.
    pub fn stats(&self) -> DecodeStats {
        DecodeStats { trailing_bytes: self.carry.len(), ..self.stats }
    }

    /// Bytes until the end of the record being read (0 between records).
    pub(crate) fn to_boundary(&self) -> usize {
        if self.carry.len() == 0 { 0 } else { 8 - self.carry.len() }
    }

    /// The decoder's state between records, with fresh counts.
    pub(crate) fn snapshot(&self) -> Self {
        Self { last: self.last, wraps: self.wraps, ..Self::new(self.chip) }
    }
}

/// Writes AEDAT 2.0 files as jAER writes them for one of its cameras (the geometry must
/// be that camera's). Time may step back by less than 2^31 µs within one wrap, and
/// forward by less than 2^31 µs.
#[derive(Debug)]
pub struct Aedat2Encoder<W: Write> {
    out: std::io::BufWriter<W>,
    chip: Aedat2Chip,
    previous: i64,
}

impl<W: Write> Aedat2Encoder<W> {
    /// Writes the header and returns an encoder for the events.
    pub fn new(mut out: W, chip: Aedat2Chip) -> Result<Self, EncodeError> {
        write!(
            out,
            "#!AER-DAT2.0\r\n# This is a raw AE data file created by evshm\r\n\
             # Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n\
             # Timestamps tick is 1 us\r\n# AEChip: {}\r\n",
            chip.class()
        )?;
        Ok(Self { out: std::io::BufWriter::with_capacity(1 << 16, out), chip, previous: 0 })
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) -> Result<(), EncodeError> {
        let geometry = self.chip.geometry();
        check_coordinates(event, geometry, u16::MAX)?;
        if event.t < 0 {
            return Err(EncodeError::NegativeTime { t: event.t });
        }
        let previous = self.previous;
        let wrap_safe = (event.t - previous).abs() < i64::from(WRAP_THRESHOLD)
            && (event.t >= previous || event.t >> 32 == previous >> 32);
        if !wrap_safe {
            return Err(EncodeError::TimeNotEncodable {
                t: event.t,
                previous,
                reason: "AEDAT 2.0's 32-bit time allows steps shorter than 2^31 µs, and \
                         backward steps only within one wrap",
            });
        }
        self.previous = event.t;
        let x = u32::from(geometry.width as u16 - 1 - event.x);
        let y = u32::from(geometry.height as u16 - 1 - event.y);
        let p = u32::from(event.p);
        let address = match self.chip {
            Aedat2Chip::Dvs128 => y << 8 | x << 1 | (1 - p),
            _ => y << 22 | x << 12 | p << 11,
        };
        self.out.write_all(&address.to_be_bytes())?;
        self.out.write_all(&(event.t as u32).to_be_bytes())?;
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

    fn decode(chip: Aedat2Chip, data: &[u8]) -> Vec<Event> {
        let mut decoder = Aedat2Decoder::new(chip);
        let mut sink = VecSink::default();
        for piece in data.chunks(5) {
            decoder.feed(piece, &mut sink);
        }
        sink.events
    }

    #[test]
    fn round_trip_for_every_camera_across_the_wrap() {
        for chip in
            [Aedat2Chip::Dvs128, Aedat2Chip::Davis240, Aedat2Chip::Davis346, Aedat2Chip::Davis640]
        {
            let g = chip.geometry();
            let (w, h) = (g.width as u16, g.height as u16);
            let events = [
                Event { t: 10, x: 0, y: 0, p: 1 },
                Event { t: 9, x: w - 1, y: h - 1, p: 0 },
                Event { t: (1 << 31) - 5, x: 1, y: 2, p: 1 },
                Event { t: 3 << 30, x: 1, y: 2, p: 1 },
                Event { t: (1 << 32) + 7, x: 2, y: 1, p: 0 },
            ];
            let mut encoder = Aedat2Encoder::new(Vec::new(), chip).unwrap();
            events.iter().for_each(|e| encoder.push(e).unwrap());
            let file = encoder.finish().unwrap();
            let (detected, named, offset) = detect_aedat2(&file).unwrap();
            assert_eq!((detected, named), (chip, true));
            assert_eq!(decode(chip, &file[offset..]), events, "{chip:?}");
        }
    }

    #[test]
    fn jaer_addresses_and_skipped_words() {
        let record = |address: u32, t: u32| {
            let mut r = address.to_be_bytes().to_vec();
            r.extend_from_slice(&t.to_be_bytes());
            r
        };
        // DVS128: raw x 5, raw y 6, raw bit 0 clear (ON); then a sync event.
        let data = [record(6 << 8 | 5 << 1, 1), record(0x8000, 2)].concat();
        assert_eq!(decode(Aedat2Chip::Dvs128, &data), [Event { t: 1, x: 122, y: 121, p: 1 }]);
        // DAVIS346: raw x 10, raw y 20, ON; then an APS sample, an IMU word and an external
        // input event.
        let data = [
            record(20 << 22 | 10 << 12 | 1 << 11, 5),
            record(0x8000_0000 | 3, 6),
            record(0x8000_0C00, 7),
            record(1 << 10, 8),
        ]
        .concat();
        assert_eq!(decode(Aedat2Chip::Davis346, &data), [Event { t: 5, x: 335, y: 239, p: 1 }]);
    }

    #[test]
    fn the_camera_comes_from_the_header() {
        let head = |chip: &str| format!("#!AER-DAT2.0\r\n# AEChip: {chip}\r\n").into_bytes();
        let chip = |name: &str| detect_aedat2(&head(name)).map(|(chip, _, _)| chip);
        assert_eq!(chip("ch.unizh.ini.jaer.chip.retina.DVS128").unwrap(), Aedat2Chip::Dvs128);
        assert_eq!(chip("eu.seebetter.ini.chips.davis.DAVIS240C").unwrap(), Aedat2Chip::Davis240);
        assert_eq!(
            chip("eu.seebetter.ini.chips.davis.Davis346blue").unwrap(),
            Aedat2Chip::Davis346
        );
        assert!(chip("ch.unizh.ini.jaer.chip.cochlea.CochleaAMS1c").is_err());
        let bare = [b"#!AER-DAT2.0\r\n".as_slice(), &[0, 0, 0x12, 0x34, 0, 0, 0, 1]].concat();
        assert_eq!(detect_aedat2(&bare).unwrap(), (Aedat2Chip::Dvs128, false, 14));
        // Raw x 300 on a DAVIS layout: a DAVIS346, as far as the head tells.
        let davis =
            [b"#!AER-DAT2.0\r\n".as_slice(), &(300u32 << 12).to_be_bytes(), &[0; 4]].concat();
        assert_eq!(detect_aedat2(&davis).unwrap(), (Aedat2Chip::Davis346, false, 14));
        let wide =
            [b"#!AER-DAT2.0\r\n".as_slice(), &(700u32 << 12).to_be_bytes(), &[0; 4]].concat();
        assert!(detect_aedat2(&wide).is_err());
    }
}
