//! Which field of a text export's lines holds `t`, `x`, `y` and `p`: named by a header
//! line, or guessed from the first data lines of a file without one (the rules, and what
//! they cannot tell, are in the docs of the `text` module).

use super::{coordinate, fields, number, polarity};
use crate::geometry::Geometry;

/// Which field of a line holds each of `t`, `x`, `y`, `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Columns {
    pub(super) t: usize,
    pub(super) x: usize,
    pub(super) y: usize,
    pub(super) p: usize,
}

impl Columns {
    /// `t x y p`: the order of a file without a header whose lines do not tell.
    pub const TXYP: Columns = Columns { t: 0, x: 1, y: 2, p: 3 };
    /// `x y t p`.
    pub const XYTP: Columns = Columns { t: 2, x: 0, y: 1, p: 3 };
}

/// The column order, and the geometry if stated, of a header line; `None` if it names
/// anything but the four columns.
pub(super) fn parse_header(line: &str) -> Option<(Columns, Option<Geometry>)> {
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

/// The column order of a file without a header, from a sample of its data lines, each
/// four numbers.
pub(super) fn guess(sample: &[[&[u8]; 4]]) -> Columns {
    let column = |i: usize| sample.iter().map(move |line| line[i]);
    // The last, where every common export puts polarity: a sensor 2 pixels wide, or a
    // time still at 0, makes another column look like one.
    let Some(p) = (0..4).rev().find(|&i| column(i).all(|f| polarity(f).is_some())) else {
        // No order reads these lines: keep the documented default.
        return Columns::TXYP;
    };
    let rest: Vec<usize> = (0..4).filter(|&i| i != p).collect();
    let t = time(sample, &rest).unwrap_or(rest[0]);
    let coordinates: Vec<usize> = rest.into_iter().filter(|&i| i != t).collect();
    Columns { t, x: coordinates[0], y: coordinates[1], p }
}

/// Which of the columns `candidates` holds the time: the only one whose values cannot be
/// coordinates (decimal seconds, negative, or beyond 65535 µs), else the only
/// non-decreasing one of the largest range. `None` when the sample does not tell.
fn time(sample: &[[&[u8]; 4]], candidates: &[usize]) -> Option<usize> {
    let column = |i: usize| sample.iter().map(move |line| line[i]);
    let not_coordinates: Vec<usize> = (candidates.iter().copied())
        .filter(|&i| column(i).any(|f| coordinate(f).is_none()))
        .collect();
    if let [t] = not_coordinates[..] {
        return Some(t);
    }
    let values = |i: usize| column(i).map(|f| number(f).unwrap_or(f64::NAN));
    let rising = |i: usize| values(i).zip(values(i).skip(1)).all(|(a, b)| a <= b);
    let range = |i: usize| {
        let (low, high) = values(i)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| (low.min(v), high.max(v)));
        high - low
    };
    let ranges: Vec<(usize, f64)> =
        candidates.iter().copied().filter(|&i| rising(i)).map(|i| (i, range(i))).collect();
    let widest = ranges.iter().map(|&(_, r)| r).fold(f64::NEG_INFINITY, f64::max);
    match ranges.iter().filter(|&&(_, r)| r == widest).collect::<Vec<_>>()[..] {
        [&(t, _)] => Some(t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order guessed from lines of four numbers.
    fn guessed(lines: &str) -> Columns {
        let sample: Vec<[&[u8]; 4]> = (lines.lines())
            .map(|l| super::super::four_fields(l.as_bytes()).expect("four fields"))
            .collect();
        guess(&sample)
    }

    fn columns(order: &str) -> Columns {
        let at = |c| order.find(c).unwrap();
        Columns { t: at('t'), x: at('x'), y: at('y'), p: at('p') }
    }

    #[test]
    fn time_is_the_rising_column_of_the_largest_range() {
        assert_eq!(guessed("100 30 5 1\n100 2 7 0\n250 9 1 1\n"), columns("txyp"));
        assert_eq!(guessed("30 5 100 1\n2 7 150 0\n9 1 150 1\n"), columns("xytp"));
        assert_eq!(guessed("1 100 30 5\n0 100 2 7\n1 250 9 1\n"), columns("ptxy"));
        assert_eq!(guessed("30 5 1 100\n2 7 0 150\n9 1 1 150\n"), columns("xypt"));
        // x rising too (a run along a row), over a smaller range than the time.
        assert_eq!(guessed("5 100 7 1\n6 200 7 0\n7 300 7 1\n"), columns("xtyp"));
    }

    #[test]
    fn time_that_cannot_be_a_coordinate_wins_even_out_of_order() {
        // Decimal seconds: the smallest range, and x rises.
        assert_eq!(guessed("0.5 1 4 1\n0.4 2 3 0\n0.6 3 9 1\n"), columns("txyp"));
        // Microseconds past 65535, a step back, while y rises.
        assert_eq!(guessed("70001 9 1 1\n70000 3 2 0\n70002 5 3 1\n"), columns("txyp"));
        assert_eq!(guessed("9 1 -3 1\n3 2 -4 0\n"), columns("xytp"));
    }

    #[test]
    fn polarity_is_the_last_column_of_polarities() {
        // All zero, or -1 and 1.
        assert_eq!(guessed("10 3 4 0\n11 5 6 0\n"), columns("txyp"));
        assert_eq!(guessed("-1 10 3 4\n1 20 5 2\n"), columns("ptxy"));
        // A sensor 2 pixels wide: x looks like polarity too; the last one is taken.
        assert_eq!(guessed("10 0 4 1\n11 1 6 0\n12 1 2 1\n"), columns("txyp"));
        // A time still at 0: so does t.
        assert_eq!(guessed("0 7 4 1\n0 3 6 0\n0 9 2 1\n"), columns("txyp"));
    }

    #[test]
    fn what_the_sample_does_not_tell_falls_back_to_t_x_y_p() {
        // No column of polarities: no order reads the lines.
        assert_eq!(guessed("10 3 4 7\n11 5 6 8\n"), Columns::TXYP);
        // One line: every column rises, none more than another.
        assert_eq!(guessed("30 5 100 1\n"), Columns::TXYP);
        // Constant columns tie; with polarity first, the rest is `t x y` in file order.
        assert_eq!(guessed("1 7 7 7\n0 7 7 7\n"), columns("ptxy"));
        // No column rises.
        assert_eq!(guessed("9 5 3 1\n8 4 2 0\n"), Columns::TXYP);
    }

    #[test]
    fn a_constant_column_is_not_taken_for_the_time() {
        // One row: y never changes, and rises (not strictly) as well as t.
        assert_eq!(guessed("10 30 5 1\n12 2 5 0\n15 9 5 1\n"), columns("txyp"));
        assert_eq!(guessed("30 5 10 1\n2 5 12 0\n9 5 15 1\n"), columns("xytp"));
    }

    #[test]
    fn header_names_the_columns_in_any_order() {
        let (columns, geometry) = parse_header("x@320,y@240,on,t\n").unwrap();
        assert_eq!(columns, Columns { t: 3, x: 0, y: 1, p: 2 });
        assert_eq!(geometry, Some(Geometry { width: 320, height: 240 }));
        assert_eq!(parse_header("t x y\n"), None);
        assert_eq!(parse_header("t x y q\n"), None);
    }
}
