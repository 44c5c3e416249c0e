//! AEDAT 4.0 files for the cross-process tests: the header and first packet of a file
//! written by dv-processing (`formats/tests/data/aedat4`), followed by hand-made packets
//! that expand to far more than their size (decompression bombs).

use std::io::Write;
use std::path::PathBuf;

use super::real::Row;

/// A fixture written by dv-processing.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../formats/tests/data/aedat4").join(name)
}

/// The header of fixture `name` and its first packet (stream 0, 1,000 events), as the
/// start of a new file: the header's position of the data table is cleared (-1), as
/// `make_fixtures.py` does for its truncated file, so that packets appended after it are
/// read up to the end of the file.
pub fn start_of(name: &str) -> Vec<u8> {
    let mut file = std::fs::read(fixture(name)).unwrap();
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let header_len = u32_at(&file, 14) as usize;
    let header = &file[18..18 + header_len];
    let root = u32_at(header, 0) as usize;
    let vtable = (root as i64 - i64::from(u32_at(header, root) as i32)) as usize;
    let field = u16::from_le_bytes(header[vtable + 6..vtable + 8].try_into().unwrap());
    let at = 18 + root + usize::from(field);
    file[at..at + 8].copy_from_slice(&(-1i64).to_le_bytes());
    let first = 18 + header_len;
    let size = u32_at(&file, first + 4) as usize;
    file.truncate(first + 8 + size);
    file
}

/// A packet of stream 0 holding `payload`.
pub fn packet(payload: &[u8]) -> Vec<u8> {
    let mut packet = 0i32.to_le_bytes().to_vec();
    packet.extend_from_slice(&i32::try_from(payload.len()).unwrap().to_le_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// The start of an uncompressed `EVTS` packet of `len` bytes holding `events`, laid out as
/// the flatbuffers builder (dv-processing's writer) does: size prefix, root offset,
/// identifier, vtable, table, then the vector of events. Its remaining bytes are zeros.
pub fn evts_head(events: &[Row], len: usize) -> Vec<u8> {
    let mut head = Vec::new();
    head.extend_from_slice(&u32::try_from(len - 4).unwrap().to_le_bytes());
    // Root table at 16; identifier; 2 bytes of padding; vtable (its size, the table's
    // size, field 0 at 4); table (back 6 bytes to its vtable, forward 4 to the vector).
    head.extend_from_slice(&16u32.to_le_bytes());
    head.extend_from_slice(b"EVTS\0\0");
    for v in [6u16, 8, 4] {
        head.extend_from_slice(&v.to_le_bytes());
    }
    head.extend_from_slice(&6i32.to_le_bytes());
    head.extend_from_slice(&4u32.to_le_bytes());
    head.extend_from_slice(&u32::try_from(events.len()).unwrap().to_le_bytes());
    for &(t, x, y, p) in events {
        head.extend_from_slice(&t.to_le_bytes());
        head.extend_from_slice(&x.to_le_bytes());
        head.extend_from_slice(&y.to_le_bytes());
        head.extend_from_slice(&[p as u8, 0, 0, 0]);
    }
    head
}

#[path = "../support/zstd_bomb.rs"]
mod zstd_bomb;
pub use zstd_bomb::zstd_bomb;

/// One LZ4 frame of `prefix` followed by zeros up to `len` bytes, in linked 4 MiB blocks
/// (the largest): 256 MiB take about 1 MiB.
pub fn lz4_bomb(prefix: &[u8], len: usize) -> Vec<u8> {
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    let info = FrameInfo::new().block_size(BlockSize::Max4MB).block_mode(BlockMode::Linked);
    let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
    encoder.write_all(prefix).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = len - prefix.len();
    while left > 0 {
        let n = left.min(zeros.len());
        encoder.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
    encoder.finish().unwrap()
}
