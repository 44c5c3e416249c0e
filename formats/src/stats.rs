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
