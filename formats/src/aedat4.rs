//! iniVation AEDAT 4.0: the polarity events of the file's first event stream.
//!
//! Layout (little-endian): `#!AER-DAT4.0\r\n`; a u32 length and a flatbuffer `IOHeader`
//! (`IOHE`: compression, position of the trailing data table, an XML `infoNode` that
//! describes the streams and their sensor size); then packets, each an i32 stream id, an
//! i32 size and that many bytes: a size-prefixed flatbuffer, compressed as a whole with
//! the file's codec (one LZ4 frame or one zstd frame per packet). Event packets (`EVTS`)
//! hold a vector of 16-byte events: i64 time, i16 x, i16 y, a polarity byte. Packets end
//! at the data table, or at the end of the file.
//!
//! A packet that cannot be decompressed or parsed is skipped and counted (as an unknown
//! word); a packet cut short by the end of the file is not decoded (its bytes count as
//! trailing). Sizes from the file are capped, so no number in it drives an allocation.

use std::collections::BTreeMap;
use std::io::Read;

use crate::error::DetectError;
use crate::geometry::Geometry;
use crate::header::MAX_HEADER_LEN;
use crate::sink::EventSink;
use crate::stats::DecodeStats;

/// The first bytes of every AEDAT 4.0 file.
pub(crate) const MAGIC: &[u8] = b"#!AER-DAT4.0\r\n";
/// Largest packet, compressed or not, that is decoded; larger ones are corrupt.
const MAX_PACKET: usize = 256 << 20;
/// Bytes per event in an event packet.
const EVENT_LEN: usize = 16;

/// How packets are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not compressed.
    None,
    /// One LZ4 frame per packet (`LZ4` and `LZ4_HIGH`).
    Lz4,
    /// One zstd frame per packet (`ZSTD` and `ZSTD_HIGH`).
    Zstd,
}

/// What a decoder needs to know of an AEDAT 4.0 file, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aedat4Layout {
    /// Packet compression.
    pub compression: Compression,
    /// The stream whose events are decoded: the first event stream.
    pub stream: i32,
    /// Bytes of packets after the header, when a data table follows them.
    pub packets_len: Option<u64>,
}

/// What the head of an AEDAT 4.0 file tells: the layout, where packets start, the sensor
/// size.
pub(crate) struct Aedat4Head {
    pub(crate) layout: Aedat4Layout,
    pub(crate) data_offset: usize,
    pub(crate) geometry: Option<Geometry>,
}

/// Reads the header at the head of a file that starts with [`MAGIC`].
pub(crate) fn detect_aedat4(head: &[u8]) -> Result<Aedat4Head, DetectError> {
    let bad = |reason: &str| DetectError::Unrecognized {
        reason: format!("AEDAT 4.0 file with {reason}"),
    };
    let len = flat::u32_at(head, MAGIC.len()).ok_or_else(|| bad("no header"))? as usize;
    let start = MAGIC.len() + 4;
    if len > MAX_HEADER_LEN {
        return Err(DetectError::HeaderTooLong { max: MAX_HEADER_LEN });
    }
    let header = head.get(start..start + len).ok_or_else(|| bad("a truncated header"))?;
    let root = flat::u32_at(header, 0).ok_or_else(|| bad("a truncated header"))? as usize;
    if header.get(4..8) != Some(b"IOHE") {
        return Err(bad("a header that is not an IOHeader"));
    }
    let compression = match flat::field(header, root, 0).map(|at| flat::i32_at(header, at)) {
        None => 0,
        Some(Some(value)) => value,
        Some(None) => return Err(bad("a malformed header")),
    };
    let compression = match compression {
        0 => Compression::None,
        1 | 2 => Compression::Lz4,
        3 | 4 => Compression::Zstd,
        other => {
            return Err(DetectError::UnsupportedFormat {
                name: format!("AEDAT 4.0 compression {other}"),
            });
        }
    };
    let table = flat::field(header, root, 1).and_then(|at| flat::i64_at(header, at)).unwrap_or(-1);
    let info = flat::field(header, root, 2).and_then(|at| flat::string(header, at));
    let info = info.ok_or_else(|| bad("no stream description"))?;
    let (stream, geometry) = first_event_stream(info).ok_or_else(|| bad("no event stream"))?;
    let data_offset = start + len;
    let packets_len = u64::try_from(table).ok().and_then(|t| t.checked_sub(data_offset as u64));
    let layout = Aedat4Layout { compression, stream, packets_len };
    Ok(Aedat4Head { layout, data_offset, geometry })
}

/// The lowest-numbered stream of type `EVTS` in the `infoNode` XML, with its size.
/// Attributes belong to the stream named by the last `path="/outInfo/N/..."` before them.
fn first_event_stream(xml: &str) -> Option<(i32, Option<Geometry>)> {
    #[derive(Default)]
    struct Stream {
        events: bool,
        width: Option<u32>,
        height: Option<u32>,
    }
    let mut streams: BTreeMap<i32, Stream> = BTreeMap::new();
    let mut current: Option<i32> = None;
    let mut rest = xml;
    loop {
        let path = rest.find("path=\"");
        let attr = rest.find("<attr key=\"");
        match (path, attr) {
            (Some(p), a) if a.is_none_or(|a| p < a) => {
                let value = &rest[p + 6..];
                let end = value.find('"')?;
                current = value[..end]
                    .strip_prefix("/outInfo/")
                    .and_then(|s| s.split('/').next()?.parse().ok());
                rest = &value[end..];
            }
            (_, Some(a)) => {
                let tail = &rest[a + 11..];
                let key = &tail[..tail.find('"')?];
                let value_start = tail.find('>')? + 1;
                let value_len = tail[value_start..].find("</attr>")?;
                let value = tail[value_start..value_start + value_len].trim();
                if let Some(id) = current {
                    let stream = streams.entry(id).or_default();
                    match key {
                        "typeIdentifier" => stream.events = value == "EVTS",
                        "sizeX" => stream.width = value.parse().ok(),
                        "sizeY" => stream.height = value.parse().ok(),
                        _ => {}
                    }
                }
                rest = &tail[value_start + value_len..];
            }
            _ => break,
        }
    }
    let (&id, stream) = streams.iter().find(|(_, s)| s.events)?;
    let geometry = match (stream.width, stream.height) {
        (Some(width), Some(height)) if width > 0 && height > 0 => Some(Geometry { width, height }),
        _ => None,
    };
    Some((id, geometry))
}

/// Push decoder for the packets of an AEDAT 4.0 file (the bytes after its header).
#[derive(Debug, Clone)]
pub struct Aedat4Decoder {
    layout: Aedat4Layout,
    /// Bytes of packets consumed so far.
    position: u64,
    /// The stream id and size that open a packet, as far as they were fed.
    packet_header: [u8; 8],
    packet_header_len: usize,
    /// The packet being read: its stream, size, and (for the chosen stream) its bytes.
    packet: Option<(i32, usize)>,
    payload: Vec<u8>,
    skipped: usize,
    decompressed: Vec<u8>,
    stats: DecodeStats,
    corrupt: bool,
}

impl Aedat4Decoder {
    /// A decoder for a file with this layout.
    pub fn new(layout: Aedat4Layout) -> Self {
        Self {
            layout,
            position: 0,
            packet_header: [0; 8],
            packet_header_len: 0,
            packet: None,
            payload: Vec::new(),
            skipped: 0,
            decompressed: Vec::new(),
            stats: DecodeStats::default(),
            corrupt: false,
        }
    }

    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        let left =
            self.layout.packets_len.map_or(u64::MAX, |len| len.saturating_sub(self.position));
        let mut bytes = &bytes[..bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX))];
        self.position += bytes.len() as u64;
        while !bytes.is_empty() && !self.corrupt {
            match self.packet {
                None => {
                    let take = (8 - self.packet_header_len).min(bytes.len());
                    self.packet_header[self.packet_header_len..self.packet_header_len + take]
                        .copy_from_slice(&bytes[..take]);
                    self.packet_header_len += take;
                    bytes = &bytes[take..];
                    if self.packet_header_len == 8 {
                        self.packet_header_len = 0;
                        self.start_packet();
                    }
                }
                Some((stream, size)) => {
                    let have = if stream == self.layout.stream {
                        self.payload.len()
                    } else {
                        self.skipped
                    };
                    let take = (size - have).min(bytes.len());
                    if stream == self.layout.stream {
                        self.payload.extend_from_slice(&bytes[..take]);
                    } else {
                        self.skipped += take;
                    }
                    bytes = &bytes[take..];
                    if have + take == size {
                        self.packet = None;
                        self.skipped = 0;
                        if stream == self.layout.stream {
                            let payload = std::mem::take(&mut self.payload);
                            self.decode_packet(&payload, sink);
                            self.payload = payload;
                            self.payload.clear();
                        }
                    }
                }
            }
        }
    }

    fn start_packet(&mut self) {
        let stream = i32::from_le_bytes(self.packet_header[..4].try_into().expect("4 bytes"));
        let size = i32::from_le_bytes(self.packet_header[4..].try_into().expect("4 bytes"));
        match usize::try_from(size) {
            Ok(size) if size <= MAX_PACKET => self.packet = Some((stream, size)),
            // A size no writer produces: the packet framing is lost, so is the rest.
            _ => {
                self.corrupt = true;
                self.stats.unknown += 1;
            }
        }
    }

    fn decode_packet<S: EventSink>(&mut self, payload: &[u8], sink: &mut S) {
        self.stats.words += 1;
        let limit = MAX_PACKET as u64 + 1;
        let packet = match self.layout.compression {
            Compression::None => payload,
            Compression::Lz4 => {
                self.decompressed.clear();
                let reader = lz4_flex::frame::FrameDecoder::new(payload);
                match reader.take(limit).read_to_end(&mut self.decompressed) {
                    Ok(_) if self.decompressed.len() <= MAX_PACKET => &self.decompressed,
                    _ => return self.stats.unknown += 1,
                }
            }
            Compression::Zstd => {
                self.decompressed.clear();
                let Ok(reader) = ruzstd::decoding::StreamingDecoder::new(payload) else {
                    return self.stats.unknown += 1;
                };
                match reader.take(limit).read_to_end(&mut self.decompressed) {
                    Ok(_) if self.decompressed.len() <= MAX_PACKET => &self.decompressed,
                    _ => return self.stats.unknown += 1,
                }
            }
        };
        if events(packet, sink).is_none() {
            self.stats.unknown += 1;
        }
    }

    /// What was passed over so far: packets count as words, packets that could not be
    /// read as unknown words, the bytes of an unfinished packet as trailing bytes.
    pub fn stats(&self) -> DecodeStats {
        let unfinished = match self.packet {
            Some(_) => 8 + self.payload.len() + self.skipped,
            None => self.packet_header_len,
        };
        DecodeStats { trailing_bytes: unfinished, ..self.stats }
    }
}

/// Emits the events of a size-prefixed `EVTS` packet; `None` if it is not one.
fn events<S: EventSink>(packet: &[u8], sink: &mut S) -> Option<()> {
    let buffer = packet.get(4..)?;
    if buffer.get(4..8) != Some(b"EVTS") {
        return None;
    }
    let root = flat::u32_at(buffer, 0)? as usize;
    let (start, count) = flat::vector(buffer, flat::field(buffer, root, 0)?)?;
    let elements = buffer.get(start..start.checked_add(count.checked_mul(EVENT_LEN)?)?)?;
    for e in elements.as_chunks::<EVENT_LEN>().0 {
        let t = i64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
        let x = i16::from_le_bytes([e[8], e[9]]);
        let y = i16::from_le_bytes([e[10], e[11]]);
        sink.event(t, x as u16, y as u16, u8::from(e[12] != 0));
    }
    Some(())
}

/// Just enough of the flatbuffers wire format to read two tables, every access checked.
mod flat {
    pub(super) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
    }

    pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
    }

    pub(super) fn i32_at(b: &[u8], at: usize) -> Option<i32> {
        u32_at(b, at).map(|v| v as i32)
    }

    pub(super) fn i64_at(b: &[u8], at: usize) -> Option<i64> {
        Some(i64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
    }

    /// Where field `index` of the table at `table` is stored, if present.
    pub(super) fn field(b: &[u8], table: usize, index: usize) -> Option<usize> {
        let vtable = usize::try_from(table as i64 - i64::from(i32_at(b, table)?)).ok()?;
        let entry = 4 + 2 * index;
        if entry + 2 > usize::from(u16_at(b, vtable)?) {
            return None;
        }
        let offset = u16_at(b, vtable + entry)?;
        (offset != 0).then(|| table + usize::from(offset))
    }

    /// Start and length of the vector an offset at `at` points to.
    pub(super) fn vector(b: &[u8], at: usize) -> Option<(usize, usize)> {
        let start = at.checked_add(u32_at(b, at)? as usize)?;
        Some((start + 4, u32_at(b, start)? as usize))
    }

    /// The string an offset at `at` points to.
    pub(super) fn string(b: &[u8], at: usize) -> Option<&str> {
        let (start, len) = vector(b, at)?;
        std::str::from_utf8(b.get(start..start.checked_add(len)?)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_event_stream_and_its_size() {
        let xml = r#"<dv version="2.0"><node name="outInfo" path="/outInfo/">
            <node name="1" path="/outInfo/1/"><attr key="typeIdentifier" type="string">EVTS</attr>
              <node name="info" path="/outInfo/1/info/"><attr key="sizeX" type="int">640</attr>
              <attr key="sizeY" type="int">480</attr></node></node>
            <node name="0" path="/outInfo/0/"><attr key="typeIdentifier" type="string">IMUS</attr></node>
            <node name="2" path="/outInfo/2/"><attr key="typeIdentifier" type="string">EVTS</attr></node>
        </node></dv>"#;
        assert_eq!(first_event_stream(xml), Some((1, Some(Geometry { width: 640, height: 480 }))));
        assert_eq!(first_event_stream("<dv></dv>"), None);
    }
}
