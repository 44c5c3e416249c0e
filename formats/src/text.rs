//! Text exports: one event per line, four numbers separated by commas or white space.
//!
//! An optional first line names the columns, in any order: `t` (or `ts`, `time`,
//! `timestamp`), `x`, `y`, `p` (or `pol`, `polarity`, `on`); `x@320` and `y@240` state
//! the geometry. Without it the order is guessed from the first data lines (at most 64):
//!
//! - `p` is a column whose every value is a polarity (`0`, `1`, `-1`, `+1`); of several
//!   (all-zero polarities, a sensor 2 pixels wide, times still at 0), the last, where
//!   every common export puts it;
//! - `t` is, of the other three, the one whose values cannot be coordinates (decimal
//!   seconds, negative, or past 65535 µs), else the non-decreasing one of the largest range
//!   (a constant column rises too, over no range);
//! - `x` and `y` are the two left, in file order: `x` first.
//!
//! Where the lines do not tell (no column of polarities, no rising column, or two of the
//! same range, as in a sample of one line), the columns left are `t x y` in file order: the
//! default `t x y p` when polarity is last. Content cannot tell `x` from `y`, nor the time
//! from a coordinate that rises while the time stands still (a burst along one row in the
//! first 65 ms): a header line settles both.
//!
//! A timestamp with a decimal point is in seconds, one without in microseconds. Polarity is
//! 0 or 1 (-1 counts as 0). Empty lines and lines starting with `#` are skipped; other lines
//! that are not an event are counted as malformed and skipped.

mod columns;

use std::io::Write;

use crate::encode::{EncodeError, check_coordinates};
use crate::geometry::Geometry;
use crate::sink::{Event, EventSink};
use crate::stats::DecodeStats;

pub use columns::Columns;

/// Longest line the decoder reads; longer ones are malformed (and cannot make it buffer
/// without bound).
const MAX_LINE: usize = 256;
/// Data lines looked at to choose the column order of a file without a header.
const SAMPLE_LINES: usize = 64;

/// What the head of a text export tells: the column order, where the events start, the
/// sensor size if the header line states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextHead {
    pub(crate) columns: Columns,
    /// Bytes up to the first event line: the header line, if any, and what precedes it.
    pub(crate) data_offset: usize,
    pub(crate) geometry: Option<Geometry>,
}

/// Recognises a text export from the head of a file: `None` if it is not one.
pub(crate) fn detect_text(head: &[u8]) -> Option<TextHead> {
    let text = std::str::from_utf8(head).ok().or_else(|| {
        // The head may end inside a multi-byte character; anything else is binary.
        let valid = std::str::from_utf8(head).err()?.valid_up_to();
        (head.len() - valid < 4).then(|| std::str::from_utf8(&head[..valid]).ok())?
    })?;
    if text.bytes().any(|b| b == 0 || (b < 0x20 && !b"\t\r\n".contains(&b))) {
        return None;
    }
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n');
    let first = lines.by_ref().find(|l| {
        offset += l.len();
        !skipped(l.as_bytes())
    })?;
    let (columns, geometry, data_offset) = if first.bytes().any(|b| b.is_ascii_alphabetic()) {
        let (columns, geometry) = columns::parse_header(first)?;
        (Some(columns), geometry, offset)
    } else {
        lines = text.split_inclusive('\n');
        (None, None, 0)
    };
    let candidates: Vec<&str> =
        lines.filter(|l| !skipped(l.as_bytes()) && l.ends_with('\n')).take(SAMPLE_LINES).collect();
    let sample: Vec<[&[u8]; 4]> = (candidates.iter())
        .filter_map(|l| four_fields(l.as_bytes()))
        .filter(|fields| fields.iter().all(|f| number(f).is_some()))
        .collect();
    // Most lines must be events: a stray malformed line is tolerated, prose is not.
    let mostly_events = sample.len() * 2 > candidates.len();
    if !(mostly_events || candidates.is_empty() && data_offset > 0) {
        return None;
    }
    let columns = columns.unwrap_or_else(|| columns::guess(&sample));
    Some(TextHead { columns, data_offset, geometry })
}

fn skipped(line: &[u8]) -> bool {
    let line = line.trim_ascii();
    line.is_empty() || line[0] == b'#'
}

fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b',' || b.is_ascii_whitespace()).filter(|f| !f.is_empty())
}

/// The four fields of a line; `None` if it has more or fewer.
fn four_fields(line: &[u8]) -> Option<[&[u8]; 4]> {
    let mut values: [&[u8]; 4] = [&[]; 4];
    let mut n = 0;
    for field in fields(line) {
        *values.get_mut(n)? = field;
        n += 1;
    }
    (n == 4).then_some(values)
}

/// A field read as a number of any kind, to look at a column's values.
fn number(field: &[u8]) -> Option<f64> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// A field read as `x` or `y`.
fn coordinate(field: &[u8]) -> Option<u16> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// A field read as `p`: `1` or `+1` is on, `0` or `-1` off.
fn polarity(field: &[u8]) -> Option<u8> {
    match field {
        b"1" | b"+1" => Some(1),
        b"0" | b"-1" => Some(0),
        _ => None,
    }
}

/// Push decoder for the lines of a text export (the bytes after its header line).
#[derive(Debug, Clone)]
pub struct TextDecoder {
    columns: Columns,
    line: Vec<u8>,
    /// Inside a line longer than [`MAX_LINE`], until its end.
    overlong: bool,
    malformed: u64,
    stats: DecodeStats,
}

impl TextDecoder {
    /// A decoder for lines with the given column order.
    pub fn new(columns: Columns) -> Self {
        Self {
            columns,
            line: Vec::new(),
            overlong: false,
            malformed: 0,
            stats: DecodeStats::default(),
        }
    }

    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(end);
            if self.line.is_empty() && !self.overlong {
                self.line_done(head, sink);
            } else {
                self.append(head);
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, sink);
                self.line = line;
                self.line.clear();
            }
            self.overlong = false;
            rest = &tail[1..];
        }
        self.append(rest);
    }

    /// Decodes a last line that has no newline; call once after the last `feed`.
    pub fn finish<S: EventSink>(&mut self, sink: &mut S) {
        if !self.line.is_empty() || self.overlong {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, sink);
            self.overlong = false;
        }
    }

    /// What was passed over so far: malformed lines count as unknown words.
    pub fn stats(&self) -> DecodeStats {
        DecodeStats { unknown: self.malformed, trailing_bytes: self.line.len(), ..self.stats }
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.line.len() + bytes.len() > MAX_LINE {
            self.overlong = true;
            self.line.clear();
        } else if !self.overlong {
            self.line.extend_from_slice(bytes);
        }
    }

    fn line_done<S: EventSink>(&mut self, line: &[u8], sink: &mut S) {
        self.stats.words += 1;
        if self.overlong || line.len() > MAX_LINE {
            self.malformed += 1;
        } else if !skipped(line) {
            match self.parse(line) {
                Some(event) => sink.event(event.t, event.x, event.y, event.p),
                None => self.malformed += 1,
            }
        }
    }

    fn parse(&self, line: &[u8]) -> Option<Event> {
        let values = four_fields(line)?;
        let c = self.columns;
        Some(Event {
            t: timestamp(values[c.t])?,
            x: coordinate(values[c.x])?,
            y: coordinate(values[c.y])?,
            p: polarity(values[c.p])?,
        })
    }
}

/// Microseconds from an integer (µs) or a decimal number (s).
fn timestamp(field: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(field).ok()?;
    if field.iter().any(|&b| matches!(b, b'.' | b'e' | b'E')) {
        let micros = (text.parse::<f64>().ok()? * 1e6).round();
        (micros.is_finite() && micros.abs() < 9e18).then_some(micros as i64)
    } else {
        text.parse().ok()
    }
}

/// Writes text exports: a `t,x@W,y@H,p` header, then `t,x,y,p` lines with `t` in µs.
#[derive(Debug)]
pub struct TextEncoder<W: Write> {
    out: W,
    geometry: Geometry,
}

impl<W: Write> TextEncoder<W> {
    /// Writes the header and returns an encoder for the events.
    pub fn new(mut out: W, geometry: Geometry) -> Result<Self, EncodeError> {
        writeln!(out, "t,x@{},y@{},p", geometry.width, geometry.height)?;
        Ok(Self { out, geometry })
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) -> Result<(), EncodeError> {
        check_coordinates(event, self.geometry, u16::MAX)?;
        writeln!(self.out, "{},{},{},{}", event.t, event.x, event.y, event.p)?;
        Ok(())
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W, EncodeError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use crate::header::MAX_HEADER_LEN;
    use crate::sink::VecSink;
    use crate::synth::{Synth, SynthConfig};

    fn decode(text: &str) -> (Vec<Event>, DecodeStats, TextHead) {
        let head = detect_text(text.as_bytes()).expect("a text export");
        let mut decoder = TextDecoder::new(head.columns);
        let mut sink = VecSink::default();
        decoder.feed(&text.as_bytes()[head.data_offset..], &mut sink);
        decoder.finish(&mut sink);
        (sink.events, decoder.stats(), head)
    }

    fn ev(t: i64, x: u16, y: u16, p: u8) -> Event {
        Event { t, x, y, p }
    }

    #[test]
    fn header_gives_order_and_geometry() {
        let (events, _, head) = decode("x@320,y@240,on,t\n3,4,1,100\n5,6,0,101");
        assert_eq!(events, [ev(100, 3, 4, 1), ev(101, 5, 6, 0)]);
        assert_eq!(head.geometry, Some(Geometry { width: 320, height: 240 }));
    }

    #[test]
    fn seconds_and_spaces_without_header() {
        let (events, _, head) = decode("# comment\n0.000001 10 20 1\n\n1.5 11 21 -1\n");
        assert_eq!(events, [ev(1, 10, 20, 1), ev(1_500_000, 11, 21, 0)]);
        assert_eq!((head.columns, head.geometry), (Columns::TXYP, None));
    }

    #[test]
    fn x_y_t_p_is_recognised_from_the_data() {
        let (events, ..) = decode("30 5 100 1\n2 7 150 0\n9 1 150 1\n");
        assert_eq!(events[1], ev(150, 2, 7, 0));
    }

    #[test]
    fn malformed_and_overlong_lines_are_counted_and_skipped() {
        let long = "9".repeat(MAX_LINE + 5);
        let (events, stats, _) =
            decode(&format!("t,x,y,p\n1,2,3,1\nnope\n{long}\n1,2,3,7\n4,5,6,0\n"));
        assert_eq!(events, [ev(1, 2, 3, 1), ev(4, 5, 6, 0)]);
        assert_eq!(stats.unknown, 3);
    }

    #[test]
    fn header_after_comments() {
        let (events, _, head) = decode("# t,x,y,p\n# more\nx,y,t,p\n1,2,3,0\n");
        assert_eq!(events, [ev(3, 1, 2, 0)]);
        assert_eq!(head.data_offset, 25);
    }

    #[test]
    fn binary_is_not_text() {
        assert!(detect_text(b"\x00\x80\x01\x02").is_none());
        assert!(detect_text(b"hello world\n").is_none());
        assert!(detect_text(b"1 2 3\n").is_none());
        assert!(detect_text(b"t x y p\n").is_some(), "a header alone is an empty recording");
    }

    /// `events` as a header-less export with the columns in `order` (letters of `txyp`),
    /// `t` in seconds with a decimal point if `seconds`, else in microseconds.
    fn export(events: &[Event], order: &str, seconds: bool) -> String {
        let mut text = String::new();
        for e in events {
            let fields: Vec<String> = (order.chars())
                .map(|c| match c {
                    't' if seconds => format!("{:.6}", e.t as f64 / 1e6),
                    't' => e.t.to_string(),
                    'x' => e.x.to_string(),
                    'y' => e.y.to_string(),
                    _ => e.p.to_string(),
                })
                .collect();
            text.push_str(&fields.join(","));
            text.push('\n');
        }
        text
    }

    /// Issue 15: a header-less export of 100,000 lines was read in one of two column
    /// orders, and any other skipped nearly every line. Detection sees the file's head,
    /// as evshmd's does.
    #[test]
    fn headerless_exports_decode_every_line_in_any_order() {
        let camera: Vec<Event> = Synth::new(SynthConfig::events(100_000)).collect();
        // Rows read out in turn, each pair of times swapped: y rises, the time does not.
        let jittered: Vec<Event> = (0..100_000i64)
            .map(|i| Event {
                t: 1_000_000 + (i ^ 1),
                x: (i * 7919 % 1280) as u16,
                y: (i / 4 % 720) as u16,
                p: (i % 2) as u8,
            })
            .collect();
        let orders = [
            ("txyp", false, &camera[..]),
            ("xytp", false, &camera[..]),
            ("txyp", true, &camera[..]),
            ("ptxy", false, &camera[..]),
            ("xypt", false, &camera[..]),
            ("txyp", false, &jittered[..]),
        ];
        for (order, seconds, events) in orders {
            let text = export(events, order, seconds);
            let head = &text.as_bytes()[..text.len().min(MAX_HEADER_LEN)];
            let Format::Text(columns) = crate::detect(head, Some("csv")).unwrap().format else {
                panic!("{order}: not text");
            };
            let mut decoder = TextDecoder::new(columns);
            let mut sink = VecSink::default();
            decoder.feed(text.as_bytes(), &mut sink);
            decoder.finish(&mut sink);
            let skipped = decoder.stats().unknown;
            assert_eq!(skipped, 0, "{order} (seconds: {seconds}): {skipped} lines skipped");
            assert_eq!(sink.events, events, "{order} (seconds: {seconds})");
        }
    }

    #[test]
    fn round_trip_with_any_split() {
        let geometry = Geometry { width: 640, height: 480 };
        let events = [ev(0, 1, 2, 1), ev(99_999_999_999, 639, 479, 0), ev(5, 0, 0, 1)];
        let mut encoder = TextEncoder::new(Vec::new(), geometry).unwrap();
        events.iter().for_each(|e| encoder.push(e).unwrap());
        let file = encoder.finish().unwrap();
        let head = detect_text(&file).unwrap();
        assert_eq!(head.geometry, Some(geometry));
        for chunk in [1, 2, 7, 1000] {
            let mut decoder = TextDecoder::new(head.columns);
            let mut sink = VecSink::default();
            file[head.data_offset..].chunks(chunk).for_each(|c| decoder.feed(c, &mut sink));
            decoder.finish(&mut sink);
            assert_eq!(sink.events, events);
        }
    }
}
