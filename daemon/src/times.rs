//! Finding rows by time in a published table: the rows of a window.
//!
//! A search reads the one block of the `t` column it needs with `pread` from the arena
//! file, not through the daemon's mapping (an arena truncated by a process of the daemon's
//! own uid makes a read an error, not a SIGBUS), guided by the maximum of every block,
//! kept from the decode.

use std::os::unix::fs::FileExt;

/// What a column can be read from: a table's stream in its arena, or a file in tests.
pub trait ReadAt {
    /// Fills `buf` from byte `offset` on.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

/// Rows per block of the summary of maxima: one 8 KiB read per search.
const BLOCK: usize = 1024;

/// Where a published table's `t` column is, and the maximum of each block of its rows.
#[derive(Debug)]
pub struct TimeColumn {
    /// Byte offset of the column in its table's stream.
    offset: u64,
    rows: usize,
    /// Largest `t` of each block of [`BLOCK`] rows.
    block_max: Vec<i64>,
}

impl TimeColumn {
    /// The summary of `column`, which lies at byte `offset` of its table's stream.
    pub fn new(column: &[i64], offset: u64) -> Self {
        let block_max =
            column.chunks(BLOCK).map(|block| block.iter().copied().max().unwrap_or(i64::MIN));
        Self { offset, rows: column.len(), block_max: block_max.collect() }
    }

    /// The first row at or after `from` whose time is at least `time`, or the number of
    /// rows if there is none, reading the column from `stream`.
    pub fn first_at_or_after(
        &self,
        stream: &impl ReadAt,
        time: i64,
        from: usize,
    ) -> std::io::Result<usize> {
        let mut bytes = [0u8; BLOCK * 8];
        for block in from / BLOCK..self.block_max.len() {
            if self.block_max[block] < time {
                continue;
            }
            let (start, end) = ((block * BLOCK).max(from), ((block + 1) * BLOCK).min(self.rows));
            let bytes = &mut bytes[..(end - start) * 8];
            stream.read_exact_at(bytes, self.offset + start as u64 * 8)?;
            let rows = bytes.as_chunks::<8>().0;
            if let Some(i) = rows.iter().position(|&t| i64::from_le_bytes(t) >= time) {
                return Ok(start + i);
            }
        }
        Ok(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn finds_the_first_row_reaching_a_time(
            times in prop::collection::vec(-50i64..50, 0..5000),
            time in -60i64..60,
            from in 0usize..5000,
        ) {
            let from = from.min(times.len());
            let expected = (from..times.len()).find(|&i| times[i] >= time).unwrap_or(times.len());
            let mut file = vec![0xAAu8; 24];
            file.extend(times.iter().flat_map(|t| t.to_le_bytes()));
            let path = std::env::temp_dir().join(format!("evshmd-times-{}", std::process::id()));
            std::fs::write(&path, &file).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let found = TimeColumn::new(&times, 24).first_at_or_after(&file, time, from).unwrap();
            prop_assert_eq!(found, expected);
        }
    }
}
