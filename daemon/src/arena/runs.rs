//! Sets of disjoint byte runs of an arena, kept coalesced: its free space, and the
//! pages that are allocated (backed).

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, non-adjacent runs `start..end`, by start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Runs {
    by_start: BTreeMap<u64, u64>,
    total: u64,
}

impl Runs {
    /// One run, `range` (nothing if it is empty).
    pub fn of(range: Range<u64>) -> Runs {
        let mut runs = Runs::default();
        runs.insert(range);
        runs
    }

    /// Bytes in all runs.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether there is no run.
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }

    /// The runs, in order.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.by_start.iter().map(|(&start, &end)| start..end)
    }

    /// The longest run's length.
    pub fn longest(&self) -> u64 {
        self.iter().map(|r| r.end - r.start).max().unwrap_or(0)
    }

    /// Adds `range`, merging it with the runs it overlaps or touches.
    pub fn insert(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        // Runs that overlap or touch: those starting at or before `end` and ending at or
        // after `start`.
        let touching: Vec<(u64, u64)> = (self.by_start.range(..=end))
            .rev()
            .take_while(|&(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.by_start.remove(&s);
            self.total -= e - s;
            start = start.min(s);
            end = end.max(e);
        }
        self.by_start.insert(start, end);
        self.total += end - start;
    }

    /// Removes `range` from the runs (the parts of it that are in them).
    pub fn remove(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let overlapping: Vec<(u64, u64)> = (self.by_start.range(..range.end))
            .rev()
            .take_while(|&(_, &e)| e > range.start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in overlapping {
            self.by_start.remove(&s);
            self.total -= e - s;
            if s < range.start {
                self.by_start.insert(s, range.start);
                self.total += range.start - s;
            }
            if e > range.end {
                self.by_start.insert(range.end, e);
                self.total += e - range.end;
            }
        }
    }

    /// The parts of `range` in the runs.
    pub fn within(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut parts: Vec<Range<u64>> = (self.by_start.range(..range.end))
            .rev()
            .take_while(|&(_, &e)| e > range.start)
            .map(|(&s, &e)| s.max(range.start)..e.min(range.end))
            .collect();
        parts.reverse();
        parts
    }

    /// Bytes of `range` in the runs.
    pub fn bytes_within(&self, range: Range<u64>) -> u64 {
        self.within(range).iter().map(|r| r.end - r.start).sum()
    }

    /// The parts of `range` not in the runs.
    pub fn gaps(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut gaps = Vec::new();
        let mut at = range.start;
        for part in self.within(range.clone()) {
            if part.start > at {
                gaps.push(at..part.start);
            }
            at = part.end;
        }
        if at < range.end {
            gaps.push(at..range.end);
        }
        gaps
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn runs_coalesce_and_split() {
        let mut runs = Runs::of(0..10);
        runs.insert(10..20);
        runs.insert(30..40);
        assert_eq!(runs.iter().collect::<Vec<_>>(), vec![0..20, 30..40]);
        runs.insert(15..35);
        assert_eq!(runs.iter().collect::<Vec<_>>(), vec![0..40]);
        runs.remove(5..8);
        assert_eq!(runs.iter().collect::<Vec<_>>(), vec![0..5, 8..40]);
        assert_eq!(runs.total(), 37);
        assert_eq!(runs.within(3..10), vec![3..5, 8..10]);
        assert_eq!(runs.gaps(3..10), vec![5..8]);
        assert_eq!(runs.gaps(40..50), vec![40..50]);
        assert_eq!(runs.longest(), 32);
    }

    proptest! {
        /// Against a bitmap: any sequence of inserts and removes leaves the same bytes,
        /// coalesced.
        #[test]
        fn runs_match_a_bitmap(ops in proptest::collection::vec((any::<bool>(), 0u64..200, 0u64..40), 1..60)) {
            let mut runs = Runs::default();
            let mut bits = [false; 240];
            for (add, start, len) in ops {
                let range = start..start + len;
                if add { runs.insert(range.clone()) } else { runs.remove(range.clone()) }
                for b in &mut bits[start as usize..(start + len) as usize] { *b = add; }
                let listed: Vec<Range<u64>> = runs.iter().collect();
                for pair in listed.windows(2) {
                    prop_assert!(pair[0].end < pair[1].start, "coalesced: {listed:?}");
                }
                for (i, &b) in bits.iter().enumerate() {
                    let i = i as u64;
                    prop_assert_eq!(b, listed.iter().any(|r| r.contains(&i)));
                }
                prop_assert_eq!(runs.total(), bits.iter().filter(|&&b| b).count() as u64);
                let probe = 50..120;
                prop_assert_eq!(runs.bytes_within(probe.clone()) + runs.gaps(probe.clone()).iter().map(|r| r.end - r.start).sum::<u64>(), 70);
            }
        }
    }
}
