//! A zstd decompression bomb, written by hand: shared by the AEDAT4 decoder's unit tests
//! (`formats/src/aedat4/test_packets.rs`) and the cross-process tests (`tests/util`).

/// One zstd frame of `prefix` followed by zeros up to `len` bytes, with a window of
/// `2^window_log` bytes: the prefix in raw blocks, the zeros in RLE blocks of 128 KiB
/// (4 bytes each), so 256 MiB take 8 KiB.
pub fn zstd_bomb(prefix: &[u8], len: usize, window_log: u8) -> Vec<u8> {
    const BLOCK: usize = 128 << 10;
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, (window_log - 10) << 3];
    let mut block = |kind: u32, size: usize, content: &[u8], last: bool| {
        let header = u32::from(last) | kind << 1 | u32::try_from(size).unwrap() << 3;
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.extend_from_slice(content);
    };
    for piece in prefix.chunks(BLOCK) {
        block(0, piece.len(), piece, false);
    }
    let mut zeros = len - prefix.len();
    while zeros > 0 {
        let size = zeros.min(BLOCK);
        zeros -= size;
        block(1, size, &[0], zeros == 0);
    }
    frame
}
