//! Recognising a recording from its content, and finding its geometry.
//!
//! The file name is only a hint: the `% ` header decides. For RAW files the format comes
//! from `format EVT3;height=720;width=1280` (options in any order), else the legacy
//! `evt 3.0` key, else the `system_ID` table; the geometry from the format options, else a
//! `geometry WxH` line, else the `system_ID` table, else a per-format default
//! ([`GeometrySource::Default`]).
//!
//! Other formats are told by their first bytes: `#!AER-DAT4.0` (AEDAT 4.0),
//! `#!AER-DAT3.1` and `#!AER-DAT2.0` (AEDAT 3.1 and 2.0), `Event Stream` (Event Stream
//! 2.x). A file with none of these and no `% ` header is text if it reads as text, else
//! ATIS `.bin` if its head is whole 5-byte records with y at most 240 and time never going
//! back (a format without a header can only be recognised so).

use crate::aedat2::{Aedat2Chip, detect_aedat2};
use crate::aedat3::detect_aedat3;
use crate::aedat4::{MAGIC as AEDAT4_MAGIC, detect_aedat4};
use crate::atis_bin::detect_atis_bin;
use crate::dat::DAT_RECORD_LEN;
use crate::error::DetectError;
use crate::event_stream::{MAGIC as ES_MAGIC, detect_event_stream};
use crate::evt21::WordOrder;
use crate::format::Format;
use crate::geometry::Geometry;
use crate::header::{HeaderLines, MAX_HEADER_LEN};
use crate::text::detect_text;

/// Where a recording's [`Geometry`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeometrySource {
    /// Stated in the header.
    Header,
    /// Looked up from the header's `system_ID`.
    SystemId,
    /// Given by the caller, for a file that states none.
    Given,
    /// Not stated anywhere: [`Format::default_geometry`], a guess.
    Default,
}

impl GeometrySource {
    /// Lowercase name for metadata and logs.
    pub fn name(self) -> &'static str {
        match self {
            GeometrySource::Header => "header",
            GeometrySource::SystemId => "system_id",
            GeometrySource::Given => "given",
            GeometrySource::Default => "default",
        }
    }
}

/// What [`detect`] found out about a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The event format.
    pub format: Format,
    /// Byte offset where the event data starts (after the header, and for DAT after the
    /// event type and size bytes).
    pub data_offset: usize,
    /// Sensor size.
    pub geometry: Geometry,
    /// Where [`Detected::geometry`] came from.
    pub geometry_source: GeometrySource,
    /// The header lines.
    pub header: HeaderLines,
}

impl Detected {
    /// The geometry unless it is only a guess: what events are checked against.
    pub fn stated_geometry(&self) -> Option<Geometry> {
        (self.geometry_source != GeometrySource::Default).then_some(self.geometry)
    }

    /// Takes a geometry from the caller for a file that states none. A file that states
    /// one keeps it; the returned error gives it when the two differ. For an AEDAT 2.0 file
    /// that names no camera, a geometry of one of jAER's cameras also picks its address
    /// layout.
    pub fn with_geometry(mut self, given: Geometry) -> Result<Self, Geometry> {
        match self.stated_geometry() {
            Some(stated) if stated != given => Err(stated),
            Some(_) => Ok(self),
            None => {
                // An AEDAT 2.0 file that names no camera: the given size picks it.
                if let Format::Aedat2(_) = self.format
                    && let Some(chip) = Aedat2Chip::of_geometry(given)
                {
                    self.format = Format::Aedat2(chip);
                }
                self.geometry = given;
                self.geometry_source = GeometrySource::Given;
                Ok(self)
            }
        }
    }
}

/// Recognises a recording from the first bytes of its file (at most [`MAX_HEADER_LEN`]
/// are looked at; pass the whole file or its head). `extension` is a hint only, used to
/// word the error.
pub fn detect(head: &[u8], extension: Option<&str>) -> Result<Detected, DetectError> {
    let head = &head[..head.len().min(MAX_HEADER_LEN)];
    if head.starts_with(AEDAT4_MAGIC) {
        let aedat4 = detect_aedat4(head)?;
        let format = Format::Aedat4(aedat4.layout);
        let (geometry, geometry_source) = match aedat4.geometry {
            Some(geometry) => (geometry, GeometrySource::Header),
            None => (format.default_geometry(), GeometrySource::Default),
        };
        let header = HeaderLines::default();
        return Ok(Detected {
            format,
            data_offset: aedat4.data_offset,
            geometry,
            geometry_source,
            header,
        });
    }
    if head.starts_with(ES_MAGIC) {
        let (layout, geometry, data_offset) = detect_event_stream(head)?;
        return Ok(Detected {
            format: Format::EventStream(layout),
            data_offset,
            geometry,
            geometry_source: GeometrySource::Header,
            header: HeaderLines::default(),
        });
    }
    if head.starts_with(b"#!AER-DAT") {
        return aedat_2_or_3(head);
    }
    if head.starts_with(HDF5_SIGNATURE) {
        return Err(DetectError::UnsupportedFormat {
            name: "HDF5 (DSEC, MVSEC and Metavision layouts are read by `evshm convert` \
                   only; convert the file to serve it)"
                .into(),
        });
    }
    let header = HeaderLines::parse(head);
    if (header.unterminated || header.len == head.len()) && head.len() == MAX_HEADER_LEN {
        return Err(DetectError::HeaderTooLong { max: MAX_HEADER_LEN });
    }
    if header.is_empty() {
        if let Some(text) = detect_text(head) {
            let format = Format::Text(text.columns);
            let (geometry, geometry_source) = match text.geometry {
                Some(geometry) => (geometry, GeometrySource::Header),
                None => (format.default_geometry(), GeometrySource::Default),
            };
            return Ok(Detected {
                format,
                data_offset: text.data_offset,
                geometry,
                geometry_source,
                header,
            });
        }
        if let Some(geometry) = detect_atis_bin(head, MAX_HEADER_LEN) {
            return Ok(Detected {
                format: Format::AtisBin,
                data_offset: 0,
                geometry,
                geometry_source: GeometrySource::Default,
                header,
            });
        }
        return Err(DetectError::Unrecognized { reason: describe_headless(head, extension) });
    }
    if let Some(format) = raw_format(&header)? {
        let (geometry, geometry_source) = raw_geometry(&header, format)?;
        return Ok(Detected { format, data_offset: header.len, geometry, geometry_source, header });
    }
    dat(head, header)
}

/// What a file without a `% ` header looks like to detection. A name that promises a
/// format evshm reads says what that format starts with, since the file may be cut short
/// or misnamed; any other name tells nothing (formats are told by content, not names).
fn describe_headless(head: &[u8], extension: Option<&str>) -> String {
    let what = if head.is_empty() {
        "the file is empty"
    } else {
        "no `% ` header, and not text with one `t x y p` event per line"
    };
    let lower = extension.map(str::to_ascii_lowercase);
    let promise = match lower.as_deref() {
        Some("raw") => "a Prophesee RAW file starts with its `% ` header: was it cut off?",
        Some("dat") => "a Prophesee DAT file starts with its `% ` header: was it cut off?",
        Some("aedat4" | "aedat" | "aedat2" | "aedat3") => {
            "an AEDAT file starts with `#!AER-DAT` and its version (2.0, 3.1 and 4.0 are read)"
        }
        // `.bin` names too many formats to hint at ATIS records.
        Some("es") => "an Event Stream file starts with `Event Stream`",
        Some("csv" | "txt") => {
            "evshm reads text of four numbers per line, `t x y p` (or in the order a header \
             line such as `t,x,y,p` gives)"
        }
        _ => return what.to_owned(),
    };
    let ext = extension.unwrap_or_default();
    format!("{what}; the name ends in .{ext}, but {promise}")
}

/// The first bytes of an HDF5 file (without a user block).
pub const HDF5_SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";

/// An AEDAT file of version 2.0 or 3.1 (the head starts with `#!AER-DAT`).
fn aedat_2_or_3(head: &[u8]) -> Result<Detected, DetectError> {
    let version = head[b"#!AER-DAT".len()..].split(|&b| b == b'\r' || b == b'\n').next();
    let version = String::from_utf8_lossy(version.unwrap_or_default()).trim().to_owned();
    let (format, geometry, data_offset) = match version.as_str() {
        "2.0" => {
            let (chip, named, data_offset) = detect_aedat2(head)?;
            (Format::Aedat2(chip), named.then(|| chip.geometry()), data_offset)
        }
        "3.1" => {
            let (geometry, data_offset) = detect_aedat3(head)?;
            (Format::Aedat3, geometry, data_offset)
        }
        other => return Err(DetectError::UnsupportedFormat { name: format!("AEDAT {other}") }),
    };
    let (geometry, geometry_source) = match geometry {
        Some(geometry) => (geometry, GeometrySource::Header),
        None => (format.default_geometry(), GeometrySource::Default),
    };
    Ok(Detected { format, data_offset, geometry, geometry_source, header: HeaderLines::default() })
}

/// The format a RAW header names, or `None` when the header is not a RAW header.
fn raw_format(header: &HeaderLines) -> Result<Option<Format>, DetectError> {
    if let Some(value) = header.get("format") {
        let name = value.split(';').next().unwrap_or("").trim();
        return match name.to_ascii_uppercase().as_str() {
            "EVT2" => Ok(Some(Format::Evt2)),
            "EVT21" => Ok(Some(Format::Evt21(word_order(header)))),
            "EVT3" => Ok(Some(Format::Evt3)),
            _ => Err(DetectError::UnsupportedFormat { name: name.to_owned() }),
        };
    }
    if let Some(version) = header.get("evt") {
        return match version {
            "2.0" => Ok(Some(Format::Evt2)),
            "2.1" => Ok(Some(Format::Evt21(word_order(header)))),
            "3.0" => Ok(Some(Format::Evt3)),
            other => Err(DetectError::UnsupportedFormat { name: format!("evt {other}") }),
        };
    }
    Ok(header.get("system_ID").and_then(system_id).map(|sensor| sensor.format))
}

/// The half order of EVT 2.1 words, as OpenEB decides it: the format's `endianness`
/// option, else an `endianness` header line, else `legacy` for Prophesee cameras older
/// than the Saphir board (system IDs below 0x37, or none given).
fn word_order(header: &HeaderLines) -> WordOrder {
    let stated = format_option(header, "endianness").or_else(|| header.get("endianness"));
    match stated {
        Some("legacy") => return WordOrder::Legacy,
        Some(_) => return WordOrder::Standard,
        None => {}
    }
    let integrators = ["integrator_name", "camera_integrator_name", "plugin_integrator_name"];
    let third_party = integrators.iter().filter_map(|k| header.get(k)).any(|n| n != "Prophesee");
    let old_board = match header.get("system_ID").map(|id| id.trim().parse::<i64>()) {
        None => true,
        Some(Ok(id)) => id != 0 && id < 0x37,
        Some(Err(_)) => false,
    };
    if !third_party && old_board { WordOrder::Legacy } else { WordOrder::Standard }
}

/// A format option of `format NAME;key=value;...`.
fn format_option<'h>(header: &'h HeaderLines, key: &str) -> Option<&'h str> {
    let value = header.get("format")?;
    value.split(';').skip(1).find_map(|option| {
        let (k, v) = option.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

fn raw_geometry(
    header: &HeaderLines,
    format: Format,
) -> Result<(Geometry, GeometrySource), DetectError> {
    if let (Some(w), Some(h)) = (format_option(header, "width"), format_option(header, "height")) {
        return Ok((parse_geometry(w, h)?, GeometrySource::Header));
    }
    if let Some(value) = header.get("geometry") {
        let (w, h) = value
            .split_once('x')
            .ok_or_else(|| DetectError::BadGeometry { detail: format!("geometry {value}") })?;
        return Ok((parse_geometry(w, h)?, GeometrySource::Header));
    }
    if let Some(sensor) = header.get("system_ID").and_then(system_id) {
        return Ok((sensor.geometry, GeometrySource::SystemId));
    }
    Ok((format.default_geometry(), GeometrySource::Default))
}

/// Largest width or height accepted from a header: the widest coordinate any supported
/// format can carry (DAT's 14 bits).
const MAX_SIDE: u32 = 1 << 14;

fn parse_geometry(width: &str, height: &str) -> Result<Geometry, DetectError> {
    let bad = || DetectError::BadGeometry { detail: format!("width {width}, height {height}") };
    let width: u32 = width.trim().parse().map_err(|_| bad())?;
    let height: u32 = height.trim().parse().map_err(|_| bad())?;
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(bad());
    }
    Ok(Geometry { width, height })
}

/// What a `system_ID` tells about a camera.
#[derive(Debug, Clone, Copy)]
struct Sensor {
    format: Format,
    geometry: Geometry,
}

/// OpenEB's table of camera system IDs (`system_ID`, decimal in RAW headers) for the
/// cameras that wrote headers without a `format` line.
fn system_id(value: &str) -> Option<Sensor> {
    let sensor = |format, width, height| Sensor { format, geometry: Geometry { width, height } };
    let id: u32 = value.trim().parse().ok()?;
    Some(match id {
        // Gen3 and Gen3.1 sensors (CCAM3/4/5, VisionCam, EVK2) stream EVT2.
        21 | 23 | 25 | 28 | 29 | 33 | 34 | 35 | 41 | 151 | 153 | 161 | 162 => {
            sensor(Format::Evt2, 640, 480)
        }
        // Gen4 on older boards streams EVT2 at HD size.
        26 | 31 | 39 => sensor(Format::Evt2, 1280, 720),
        40 => sensor(Format::Evt3, 640, 480),
        // Gen4/Gen4.1/IMX636 on CCAM5, EVK2 and EVK3 boards stream EVT3.
        30 | 46 | 48 | 49 | 50 => sensor(Format::Evt3, 1280, 720),
        _ => return None,
    })
}

/// DAT event types for CD events (0: legacy `Event2d`, 12: `EventCD`).
const DAT_CD_TYPES: [u8; 2] = [0, 12];
/// DAT event type of external-trigger files.
const DAT_TRIGGER_TYPE: u8 = 14;

fn dat(head: &[u8], header: HeaderLines) -> Result<Detected, DetectError> {
    let unrecognized = |reason: String| Err(DetectError::Unrecognized { reason });
    let Some(&[event_type, event_size]) = head.get(header.len..header.len + 2) else {
        return unrecognized(
            "a `% ` header without a format line and without DAT event type and size bytes".into(),
        );
    };
    if event_type == DAT_TRIGGER_TYPE {
        return Err(DetectError::UnsupportedFormat { name: "DAT external triggers".into() });
    }
    if !DAT_CD_TYPES.contains(&event_type) || event_size != DAT_RECORD_LEN {
        return unrecognized(format!(
            "a `% ` header without a format line, followed by bytes {event_type:#04x} \
             {event_size:#04x} that are not a DAT event type and size"
        ));
    }
    let (geometry, geometry_source) = match (header.get("Width"), header.get("Height")) {
        (Some(w), Some(h)) => (parse_geometry(w, h)?, GeometrySource::Header),
        _ => (Format::Dat.default_geometry(), GeometrySource::Default),
    };
    Ok(Detected {
        format: Format::Dat,
        data_offset: header.len + 2,
        geometry,
        geometry_source,
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_ok(bytes: &[u8]) -> Detected {
        detect(bytes, None).unwrap()
    }

    #[test]
    fn format_line_with_options_in_any_order() {
        let d = detect_ok(b"% format EVT3;width=1280;height=720\n% end\n\x00\x80");
        assert_eq!(d.format, Format::Evt3);
        assert_eq!(d.geometry, Geometry { width: 1280, height: 720 });
        assert_eq!(d.geometry_source, GeometrySource::Header);
        assert_eq!(d.data_offset, 42);
    }

    #[test]
    fn legacy_evt_key_with_system_id_geometry() {
        let d = detect_ok(b"% evt 2.0\n% system_ID 21\n");
        assert_eq!(d.format, Format::Evt2);
        assert_eq!(d.geometry, Geometry { width: 640, height: 480 });
        assert_eq!(d.geometry_source, GeometrySource::SystemId);
    }

    #[test]
    fn geometry_line() {
        let d = detect_ok(b"% evt 3.0\n% geometry 320x240\n");
        assert_eq!(d.geometry, Geometry { width: 320, height: 240 });
    }

    #[test]
    fn system_id_alone_gives_format() {
        assert_eq!(detect_ok(b"% system_ID 48\n").format, Format::Evt3);
    }

    #[test]
    fn evt21_word_order_as_openeb_decides_it() {
        let order = |head: &[u8]| match detect_ok(head).format {
            Format::Evt21(order) => order,
            other => panic!("{other:?}"),
        };
        assert_eq!(order(b"% format EVT21;endianness=legacy\n"), WordOrder::Legacy);
        assert_eq!(order(b"% format EVT21;endianness=little\n"), WordOrder::Standard);
        assert_eq!(order(b"% evt 2.1\n% endianness legacy\n"), WordOrder::Legacy);
        assert_eq!(order(b"% evt 2.1\n"), WordOrder::Legacy);
        assert_eq!(order(b"% evt 2.1\n% system_ID 48\n"), WordOrder::Legacy);
        assert_eq!(order(b"% evt 2.1\n% system_ID 64\n"), WordOrder::Standard);
        assert_eq!(order(b"% evt 2.1\n% integrator_name Acme\n"), WordOrder::Standard);
    }

    #[test]
    fn dat_with_and_without_geometry() {
        let d = detect_ok(b"% Version 2\n% Width 640\n% Height 480\n\x0c\x08");
        assert_eq!((d.format, d.data_offset), (Format::Dat, 39));
        assert_eq!(d.geometry, Geometry { width: 640, height: 480 });
        let d = detect_ok(b"% Version 2\n\x00\x08");
        assert_eq!(d.geometry_source, GeometrySource::Default);
        assert_eq!(d.geometry, Geometry { width: 304, height: 240 });
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let err = |b: &[u8]| detect(b, Some("raw")).unwrap_err().to_string();
        assert!(err(b"").contains("empty"));
        assert!(err(b"hello world\n").contains("no `% ` header"));
        assert!(err(b"% format EVT4;width=1\n").contains("EVT4"));
        assert!(err(b"% evt 4.0\n").contains("evt 4.0"));
        assert!(err(b"% format EVT3;width=0;height=5\n").contains("geometry"));
        assert!(err(b"% note hi\nplain text").contains("not a DAT"));
        assert!(err(b"% Version 2\n\x0e\x08").contains("triggers"));
        assert!(err(b"\x89HDF\r\n\x1a\n\x00\x00").contains("HDF5 (DSEC, MVSEC and Metavision"));
    }

    #[test]
    fn a_name_is_mentioned_only_when_it_promises_a_format_evshm_reads() {
        let err = |b: &[u8], ext| detect(b, ext).unwrap_err().to_string();
        let bin = err(b"\x01\x02\x03 binary", Some("npy"));
        assert!(!bin.contains(".npy") && !bin.contains("although"), "{bin}");
        assert!(bin.contains("by their content whatever their name"), "{bin}");
        assert!(bin.ends_with("convert other formats to one of these"), "{bin}");
        assert_eq!(bin, err(b"\x01\x02\x03 binary", None));
        let raw = err(b"\x01\x02\x03 binary", Some("RAW"));
        assert!(raw.contains("the name ends in .RAW, but a Prophesee RAW file starts with its `% ` header: was it cut off?"), "{raw}");
        assert!(
            err(b"", Some("csv"))
                .contains("the file is empty; the name ends in .csv, but evshm reads text")
        );
        assert!(err(b"\x00", Some("aedat4")).contains("2.0, 3.1 and 4.0 are read"));
    }

    #[test]
    fn endless_header_is_refused() {
        let mut head = Vec::new();
        while head.len() < MAX_HEADER_LEN + 10 {
            head.extend_from_slice(b"% filler line\n");
        }
        assert!(matches!(detect(&head, None), Err(DetectError::HeaderTooLong { .. })));
    }
}
