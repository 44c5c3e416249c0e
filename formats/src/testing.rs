//! Inputs for the unit tests of anything that reads a stream fed in pieces.

/// Streams of `word_len`-byte words of every type, each type equally likely, with random
/// payloads: for property tests of anything that walks words.
pub(crate) fn arbitrary_words(
    word_len: usize,
) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    prop::collection::vec((0u8..16, any::<u64>()), 0..400).prop_map(move |words| {
        let mut bytes = Vec::new();
        for (kind, payload) in words {
            let word = match word_len {
                2 => (u64::from(kind) << 12 | (payload & 0xFFF)).to_le_bytes(),
                4 => (u64::from(kind) << 28 | (payload & 0x0FFF_FFFF)).to_le_bytes(),
                _ => payload.to_le_bytes(),
            };
            bytes.extend_from_slice(&word[..word_len]);
        }
        bytes
    })
}

/// `bytes` cut at each of `splits` in turn (offsets into what is left, clamped): the
/// pieces a test feeds one at a time, to show that where the input is cut does not matter.
pub(crate) fn pieces<'b>(bytes: &'b [u8], splits: &[usize]) -> Vec<&'b [u8]> {
    let mut rest = bytes;
    let mut pieces = Vec::with_capacity(splits.len() + 1);
    for &split in splits {
        let (piece, tail) = rest.split_at(split.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}
