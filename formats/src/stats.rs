//! What every decoder counts besides events and triggers.

/// Counts of what a decoder passed over; events and triggers go to the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Words (records for DAT) consumed.
    pub words: u64,
    /// Words dropped because they came before the first time-high word (OpenEB's rule:
    /// their time is unknown).
    pub before_first_time: u64,
    /// Words of a type the format does not define.
    pub unknown: u64,
    /// Bytes of a final, incomplete word: not an event.
    pub trailing_bytes: usize,
}

impl DecodeStats {
    /// Records passed over instead of decoded: words before the first time word, words of
    /// unknown type (for text, malformed lines; for AEDAT4, unreadable packets), and a
    /// truncated final word (or packet) as one record, since its bytes are not an event.
    /// Events outside the sensor are not among them: they were decoded, then dropped.
    pub fn skipped(&self) -> u64 {
        self.before_first_time + self.unknown + u64::from(self.trailing_bytes > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_word_is_one_skipped_record_whatever_its_length() {
        let stats = DecodeStats { words: 10, before_first_time: 2, unknown: 3, trailing_bytes: 5 };
        assert_eq!(stats.skipped(), 6);
        assert_eq!(DecodeStats { trailing_bytes: 0, ..stats }.skipped(), 5);
    }
}
