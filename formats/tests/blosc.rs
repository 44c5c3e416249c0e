//! Blosc 1 chunks written by HDF5's Blosc filter (hdf5plugin 7.1.0, through h5py:
//! `tests/data/blosc/make_fixtures.py`) decompress to what was written: LZ4 and zstd, no
//! shuffle, byte shuffle and bit shuffle, elements of 1, 2, 4 and 8 bytes, several blocks
//! with a shorter last one; and no cut or corrupted chunk makes the decompressor panic or
//! allocate past its bound.

use std::path::PathBuf;

use evshm_formats::{BloscError, blosc_decompress};
use proptest::prelude::*;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/blosc");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "blosc"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// What the script wrote: value(i) = 3 i + (i * i mod 11), 50,000 elements of `size`
/// bytes, little-endian.
fn expected(size: usize) -> Vec<u8> {
    (0..50_000u64)
        .flat_map(|i| (3 * i + (i * i % 11)).to_le_bytes().into_iter().take(size))
        .collect()
}

#[test]
fn hdf5plugin_chunks_decompress_to_what_was_written() {
    let files = fixtures();
    assert_eq!(files.len(), 18, "every codec, shuffle and element size");
    for (name, chunk) in files {
        let size: usize =
            name.trim_end_matches(".blosc").rsplit('_').next().unwrap().parse().unwrap();
        let want = expected(size);
        assert_eq!(blosc_decompress(&chunk, want.len()).unwrap(), want, "{name}");
        let refused = blosc_decompress(&chunk, want.len() - 1);
        assert_eq!(refused, Err(BloscError::TooLarge { len: want.len(), max: want.len() - 1 }));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Real chunks cut short or with bytes flipped: an error or some bytes, never a panic,
    /// and never more than the bound.
    #[test]
    fn damaged_chunks_are_refused_or_bounded(
        which in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let files = fixtures();
        let (_, mut chunk) = files[which.index(files.len())].clone();
        for (at, byte) in flips {
            let at = at.index(chunk.len());
            chunk[at] ^= byte;
        }
        chunk.truncate(cut.index(chunk.len() + 1));
        if let Ok(bytes) = blosc_decompress(&chunk, 400_000) {
            prop_assert!(bytes.len() <= 400_000);
        }
    }

    #[test]
    fn arbitrary_bytes_are_refused_or_bounded(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(out) = blosc_decompress(&bytes, 1 << 16) {
            prop_assert!(out.len() <= 1 << 16);
        }
    }
}
