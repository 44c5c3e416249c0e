//! Text exports: one event per line, four numbers separated by commas or white space.
//!
//! An optional first line names the columns, in any order: `t` (or `ts`, `time`,
//! `timestamp`), `x`, `y`, `p` (or `pol`, `polarity`, `on`); `x@320` and `y@240` state
//! the geometry. Without it the order is `t x y p`, unless the first lines show the third
//! column non-decreasing and the first not, which is `x y t p`. A timestamp with a decimal
//! point is in seconds, one without in microseconds. Polarity is 0 or 1 (-1 counts as 0).
//! Empty lines and lines starting with `#` are skipped; other lines that are not an event
//! are counted as malformed and skipped.

use std::io::Write;

use crate::encode::{EncodeError, check_coordinates};
use crate::geometry::Geometry;
use crate::sink::{Event, EventSink};
use crate::stats::DecodeStats;

/// Longest line the decoder reads; longer ones are malformed (and cannot make it buffer
/// without bound).
const MAX_LINE: usize = 256;
/// Data lines looked at to choose the column order of a file without a header.
const SAMPLE_LINES: usize = 64;

/// Which field of a line holds each of `t`, `x`, `y`, `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Columns {
    t: usize,
    x: usize,
    y: usize,
    p: usize,
}

impl Columns {
    /// `t x y p`.
    pub const TXYP: Columns = Columns { t: 0, x: 1, y: 2, p: 3 };
    /// `x y t p`.
    pub const XYTP: Columns = Columns { t: 2, x: 0, y: 1, p: 3 };
}

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
        let (columns, geometry) = parse_header(first)?;
        (Some(columns), geometry, offset)
    } else {
        lines = text.split_inclusive('\n');
        (None, None, 0)
    };
    let candidates: Vec<&str> =
        lines.filter(|l| !skipped(l.as_bytes()) && l.ends_with('\n')).take(SAMPLE_LINES).collect();
    let sample: Vec<[f64; 4]> = candidates.iter().filter_map(|l| numbers(l.as_bytes())).collect();
    // Most lines must be events: a stray malformed line is tolerated, prose is not.
    let mostly_events = sample.len() * 2 > candidates.len();
    if !(mostly_events || candidates.is_empty() && data_offset > 0) {
        return None;
    }
    let columns = columns.unwrap_or_else(|| {
        let rising = |i: usize| sample.windows(2).all(|w| w[0][i] <= w[1][i]);
        if !rising(0) && rising(2) { Columns::XYTP } else { Columns::TXYP }
    });
    Some(TextHead { columns, data_offset, geometry })
}

fn skipped(line: &[u8]) -> bool {
    let line = line.trim_ascii();
    line.is_empty() || line[0] == b'#'
}

fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b',' || b.is_ascii_whitespace()).filter(|f| !f.is_empty())
}

/// The four numbers of a data line, for choosing the column order.
fn numbers(line: &[u8]) -> Option<[f64; 4]> {
    let mut values = [0.0; 4];
    let mut n = 0;
    for field in fields(line) {
        *values.get_mut(n)? = std::str::from_utf8(field).ok()?.parse().ok()?;
        n += 1;
    }
    (n == 4).then_some(values)
}

fn parse_header(line: &str) -> Option<(Columns, Option<Geometry>)> {
    let (mut t, mut x, mut y, mut p) = (None, None, None, None);
    let (mut width, mut height) = (None, None);
    for (i, field) in fields(line.as_bytes()).enumerate() {
        let field = std::str::from_utf8(field).ok()?.to_ascii_lowercase();
        let (name, size) = match field.split_once('@') {
            Some((name, size)) => (name.to_owned(), Some(size.parse::<u32>().ok()?)),
            None => (field, None),
        };
        match name.as_str() {
            "t" | "ts" | "time" | "timestamp" => t = Some(i),
            "x" => (x, width) = (Some(i), size),
            "y" => (y, height) = (Some(i), size),
            "p" | "pol" | "polarity" | "on" => p = Some(i),
            _ => return None,
        }
    }
    let columns = Columns { t: t?, x: x?, y: y?, p: p? };
    let geometry = match (width, height) {
        (Some(width), Some(height)) if width > 0 && height > 0 => Some(Geometry { width, height }),
        _ => None,
    };
    Some((columns, geometry))
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
        let mut values: [&[u8]; 4] = [&[]; 4];
        let mut n = 0;
        for field in fields(line) {
            *values.get_mut(n)? = field;
            n += 1;
        }
        if n != 4 {
            return None;
        }
        let c = self.columns;
        let t = timestamp(values[c.t])?;
        let x = std::str::from_utf8(values[c.x]).ok()?.parse().ok()?;
        let y = std::str::from_utf8(values[c.y]).ok()?.parse().ok()?;
        let p = match values[c.p] {
            b"1" | b"+1" => 1,
            b"0" | b"-1" => 0,
            _ => return None,
        };
        Some(Event { t, x, y, p })
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
    use crate::sink::VecSink;

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
