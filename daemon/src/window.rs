//! Which chunks, and which rows of each, answer a request for a time window.
//!
//! The rows of `[start, end)` run from the first row with `t >= start` to the first row
//! with `t >= end` (see [`Window`]). The chunk index bounds every
//! chunk's times from above, so the chunks before the first that may reach `start` are
//! skipped without decoding, and the walk stops at the first row that reaches `end`.

use std::ops::Range;

use evshm_protocol::Window;

/// A decoded table of one chunk, as far as the window search needs it.
pub trait ChunkRows {
    /// Why a search failed.
    type Error;
    /// Its rows.
    fn rows(&self) -> u64;
    /// The first row at or after `from` with a time of at least `time`, or [`Self::rows`].
    fn first_at_or_after(&self, time: i64, from: u64) -> Result<u64, Self::Error>;
}

/// One chunk's part of an answer: rows `start..end` of chunk number `chunk`.
#[derive(Debug)]
pub struct Selected<C> {
    /// Position of the chunk in the recording.
    pub chunk: usize,
    /// Its table.
    pub table: C,
    /// First row of the answer.
    pub start: u64,
    /// One past the last row of the answer.
    pub end: u64,
}

/// The chunks an answer most likely needs, given `bound`, each chunk's upper bound on
/// time (`None` past the last chunk): all of them without a window, else from the first
/// that may reach `start` to the first that may reach `end`. Decoding them up front, in
/// parallel, is then a good bet; [`select`] decodes any others it turns out to need.
pub fn candidates<E>(
    window: Option<Window>,
    mut bound: impl FnMut(usize) -> Result<Option<i64>, E>,
) -> Result<Range<usize>, E> {
    let mut chunk = 0;
    let Some(window) = window else {
        while bound(chunk)?.is_some() {
            chunk += 1;
        }
        return Ok(0..chunk);
    };
    if window.start >= window.end {
        return Ok(0..0);
    }
    loop {
        match bound(chunk)? {
            None => return Ok(chunk..chunk),
            Some(b) if b >= window.start => break,
            Some(_) => chunk += 1,
        }
    }
    let first = chunk;
    loop {
        match bound(chunk)? {
            None => return Ok(first..chunk),
            Some(b) if b >= window.end => return Ok(first..chunk + 1),
            Some(_) => chunk += 1,
        }
    }
}

/// The chunks and rows that answer a request for `window` (the whole recording if
/// `None`), given each chunk's upper bound on time as in [`candidates`], fetching each
/// chunk's table with `fetch` as the walk needs it.
pub fn select<C: ChunkRows>(
    window: Option<Window>,
    mut bound: impl FnMut(usize) -> Result<Option<i64>, C::Error>,
    mut fetch: impl FnMut(usize) -> Result<C, C::Error>,
) -> Result<Vec<Selected<C>>, C::Error> {
    let mut selected = Vec::new();
    let Some(window) = window else {
        let mut chunk = 0;
        while bound(chunk)?.is_some() {
            let table = fetch(chunk)?;
            let end = table.rows();
            selected.push(Selected { chunk, table, start: 0, end });
            chunk += 1;
        }
        return Ok(selected);
    };
    if window.start >= window.end {
        return Ok(selected);
    }
    let mut started = false;
    let mut chunk = 0;
    while let Some(bound) = bound(chunk)? {
        chunk += 1;
        if !started && bound < window.start {
            continue;
        }
        let table = fetch(chunk - 1)?;
        let start = if started { 0 } else { table.first_at_or_after(window.start, 0)? };
        if start == table.rows() {
            continue;
        }
        started = true;
        let end = if bound < window.end {
            table.rows()
        } else {
            table.first_at_or_after(window.end, start)?
        };
        let reached_end = end < table.rows();
        if end > start {
            selected.push(Selected { chunk: chunk - 1, table, start, end });
        }
        if reached_end {
            break;
        }
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    impl ChunkRows for &[i64] {
        type Error = ();

        fn rows(&self) -> u64 {
            self.len() as u64
        }

        fn first_at_or_after(&self, time: i64, from: u64) -> Result<u64, ()> {
            Ok((from as usize..self.len()).find(|&i| self[i] >= time).unwrap_or(self.len()) as u64)
        }
    }

    /// The window's rows of the whole recording, by the definition.
    fn expected(times: &[i64], window: Window) -> Range<usize> {
        let first = |t: i64| times.iter().position(|&x| x >= t).unwrap_or(times.len());
        let start = first(window.start);
        start..first(window.end).max(start)
    }

    proptest! {
        /// Times that mostly rise and sometimes step back, cut into chunks whose bounds
        /// lie anywhere at or above their largest time.
        #[test]
        fn selection_equals_slicing_the_whole(
            steps in prop::collection::vec(-3i64..10, 0..300),
            cuts in prop::collection::vec(0usize..300, 0..8),
            slack in prop::collection::vec(0i64..20, 9),
            start in -10i64..1500,
            len in 0i64..400,
        ) {
            let times: Vec<i64> = steps.iter().scan(0, |t, s| { *t += s; Some(*t) }).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(times.len())).collect();
            cuts.extend([0, times.len()]);
            cuts.sort_unstable();
            cuts.dedup();
            let chunks: Vec<&[i64]> = cuts.windows(2).map(|w| &times[w[0]..w[1]]).collect();
            let bounds: Vec<i64> = chunks.iter().zip(&slack)
                .map(|(c, s)| c.iter().max().map_or(i64::MIN, |m| m + s)).collect();
            let window = Window { start, end: start + len };
            let mut fetched = Vec::new();
            let bound = |i: usize| Ok(bounds.get(i).copied());
            let selected = select(Some(window), bound, |i| {
                fetched.push(i);
                Ok(chunks[i])
            }).unwrap();
            let mut rows = Vec::new();
            for s in &selected {
                prop_assert!(s.start < s.end);
                rows.extend_from_slice(&s.table[s.start as usize..s.end as usize]);
            }
            prop_assert_eq!(&rows[..], &times[expected(&times, window)]);
            let likely = candidates::<()>(Some(window), bound).unwrap();
            prop_assert!(selected.iter().all(|s| likely.contains(&s.chunk) || s.chunk >= likely.end));
            // Chunks that cannot reach the window are never decoded.
            prop_assert!(fetched.iter().all(|&i| bounds[i] >= window.start));
        }
    }

    #[test]
    fn without_a_window_every_chunk_is_whole() {
        let chunks: [&[i64]; 2] = [&[1, 2], &[3]];
        let bound = |i: usize| Ok([2, 3].get(i).copied());
        let selected = select(None, bound, |i| Ok(chunks[i])).unwrap();
        let ranges: Vec<_> = selected.iter().map(|s| (s.chunk, s.start, s.end)).collect();
        assert_eq!(ranges, [(0, 0, 2), (1, 0, 1)]);
        assert_eq!(candidates::<()>(None, bound), Ok(0..2));
        assert_eq!(candidates::<()>(Some(Window { start: 5, end: 5 }), bound), Ok(0..0));
    }
}
