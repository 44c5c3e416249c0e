//! The bytes of a word split across two `feed` calls: every push decoder, and the index
//! pass, keeps them so that any split of the input reads the same words.

/// Up to `N` bytes of a word that the next `feed` completes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Carry<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Carry<N> {
    /// Bytes held: a truncated word if the input ends here.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes the next bytes of a stream of `N`-byte words: returns the word the held bytes
    /// begin, if `bytes` completes it, and the whole words that follow; keeps the
    /// incomplete tail for the next call.
    #[inline]
    pub(crate) fn split<'b>(&mut self, mut bytes: &'b [u8]) -> (Option<[u8; N]>, &'b [[u8; N]]) {
        let mut first = None;
        if self.len > 0 {
            let take = (N - self.len).min(bytes.len());
            self.bytes[self.len..self.len + take].copy_from_slice(&bytes[..take]);
            self.len += take;
            bytes = &bytes[take..];
            if self.len < N {
                return (None, &[]);
            }
            self.len = 0;
            first = Some(self.bytes);
        }
        let (whole, tail) = bytes.as_chunks::<N>();
        self.bytes[..tail.len()].copy_from_slice(tail);
        self.len = tail.len();
        (first, whole)
    }

    /// [`Carry::split`] for words of `word_len` bytes (at most `N`), a length known only at
    /// run time: passes `whole` the word the held bytes begin, if `bytes` completes it,
    /// then the whole words that follow, as one slice.
    pub(crate) fn whole_words(
        &mut self,
        word_len: usize,
        mut bytes: &[u8],
        mut whole: impl FnMut(&[u8]),
    ) {
        if self.len > 0 {
            let take = (word_len - self.len).min(bytes.len());
            self.bytes[self.len..self.len + take].copy_from_slice(&bytes[..take]);
            self.len += take;
            bytes = &bytes[take..];
            if self.len < word_len {
                return;
            }
            self.len = 0;
            let word = self.bytes;
            whole(&word[..word_len]);
        }
        let (words, tail) = bytes.split_at(bytes.len() / word_len * word_len);
        if !words.is_empty() {
            whole(words);
        }
        self.bytes[..tail.len()].copy_from_slice(tail);
        self.len = tail.len();
    }
}

impl<const N: usize> Default for Carry<N> {
    fn default() -> Self {
        Self { bytes: [0; N], len: 0 }
    }
}
