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
//! This module reads the header; `packets` splits what follows into packets and
//! decompresses them a piece at a time into `evts`, which passes their events on as they
//! come. A packet that cannot be decompressed or read is skipped and counted (as an
//! unknown word), though the events read before a failure part way through it are kept;
//! a packet cut short by the end of the file is not decoded (its bytes count as
//! trailing). Sizes from the file are capped, so no number in it drives an
//! allocation, and what a decode holds is bounded whatever a packet expands to: see
//! `packets`.

mod evts;
mod flat;
mod packets;
#[cfg(test)]
mod test_packets;

use std::collections::BTreeMap;

use crate::error::DetectError;
use crate::geometry::Geometry;
use crate::header::MAX_HEADER_LEN;

pub use packets::Aedat4Decoder;

/// The first bytes of every AEDAT 4.0 file.
pub(crate) const MAGIC: &[u8] = b"#!AER-DAT4.0\r\n";

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
///
/// Attributes belong to the stream named by the last node path before them whose segment
/// after `outInfo` is a number: `/outInfo/N/...` as dv-processing writes it, and
/// `/mainloop/Recorder/outInfo/N/...` as DV's recorder does. Attributes are read whatever
/// the order of their own attributes (`key`, `type`) and the indentation.
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
    while let Some(open) = rest.find('<') {
        let tail = &rest[open + 1..];
        let tag_end = tail.find('>')?;
        let tag = &tail[..tag_end];
        rest = &tail[tag_end + 1..];
        if let Some(node) = tag.strip_prefix("node ") {
            if let Some(path) = attribute(node, "path") {
                current = stream_of(path);
            }
        } else if let Some(attr) = tag.strip_prefix("attr ") {
            let key = attribute(attr, "key")?;
            let value_len = rest.find("</attr>")?;
            let value = rest[..value_len].trim();
            rest = &rest[value_len..];
            if let Some(id) = current {
                let stream = streams.entry(id).or_default();
                match key {
                    "typeIdentifier" => stream.events = value == "EVTS",
                    "sizeX" => stream.width = value.parse().ok(),
                    "sizeY" => stream.height = value.parse().ok(),
                    _ => {}
                }
            }
        }
    }
    let (&id, stream) = streams.iter().find(|(_, s)| s.events)?;
    let geometry = match (stream.width, stream.height) {
        (Some(width), Some(height)) if width > 0 && height > 0 => Some(Geometry { width, height }),
        _ => None,
    };
    Some((id, geometry))
}

/// The value of attribute `name` in the inside of a tag (`key="value"` pairs).
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = tag;
    loop {
        let at = rest.find(name)?;
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        if before.is_none_or(char::is_whitespace)
            && let Some(quoted) = after.strip_prefix("=\"")
        {
            return Some(&quoted[..quoted.find('"')?]);
        }
        rest = after;
    }
}

/// The stream number of a node path: the segment after `outInfo`, if a number.
fn stream_of(path: &str) -> Option<i32> {
    let mut segments = path.split('/');
    segments.find(|s| *s == "outInfo")?;
    segments.next()?.parse().ok()
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

    /// DV's recorder (issue 16): nodes under `/mainloop/Recorder/outInfo/`, indented with
    /// spaces, the event stream after frames, an `info` node with `source` and
    /// `tsOffset`, attributes with `type` before `key`.
    #[test]
    fn the_header_of_dvs_recorder() {
        let xml = r#"<dv version="2.0">
    <node name="outInfo" path="/mainloop/Recorder/outInfo/">
        <node name="0" path="/mainloop/Recorder/outInfo/0/">
            <attr key="compression" type="string">LZ4</attr>
            <attr key="originalModuleName" type="string">capture</attr>
            <attr key="originalOutputName" type="string">frames</attr>
            <attr key="typeIdentifier" type="string">FRME</attr>
            <node name="info" path="/mainloop/Recorder/outInfo/0/info/">
                <attr key="sizeX" type="int">346</attr>
                <attr key="sizeY" type="int">260</attr>
            </node>
        </node>
        <node name="1" path="/mainloop/Recorder/outInfo/1/">
            <attr key="compression" type="string">LZ4</attr>
            <attr key="originalOutputName" type="string">events</attr>
            <attr type="string" key="typeIdentifier">EVTS</attr>
            <node name="info" path="/mainloop/Recorder/outInfo/1/info/">
                <attr key="sizeX" type="int">346</attr>
                <attr key="sizeY" type="int">260</attr>
                <attr key="source" type="string">DAVIS346_00000499</attr>
                <attr key="tsOffset" type="long">1633954080938520</attr>
            </node>
        </node>
        <node name="2" path="/mainloop/Recorder/outInfo/2/">
            <attr key="typeIdentifier" type="string">IMUS</attr>
        </node>
        <node name="3" path="/mainloop/Recorder/outInfo/3/">
            <attr key="typeIdentifier" type="string">TRIG</attr>
        </node>
    </node>
</dv>"#;
        assert_eq!(first_event_stream(xml), Some((1, Some(Geometry { width: 346, height: 260 }))));
        assert_eq!(stream_of("/mainloop/Recorder/outInfo/12/info/"), Some(12));
        assert_eq!(stream_of("/outInfo/"), None);
        assert_eq!(attribute(r#"node name="x" path="/a/""#, "path"), Some("/a/"));
        assert_eq!(attribute(r#"attr xkey="a" key="b""#, "key"), Some("b"));
    }
}
