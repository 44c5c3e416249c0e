//! Blosc 1 chunks, as HDF5's Blosc filter (id 32001, hdf5plugin's `Blosc`) stores them:
//! the building block for reading DSEC's HDF5 files, whose event columns are compressed so.
//!
//! A chunk is a 16-byte header (format version, codec version, flags, type size, and as
//! little-endian u32s the decompressed size, the block size and the compressed size), then,
//! unless the data is stored as is (flag 0x02), one i32 offset per block and the blocks.
//! Each block is one stream, or one per byte of the type (`typesize` streams, each
//! `blocksize / typesize` bytes, unless flag 0x10 says it was not split; the last, shorter
//! block is never split), each stream an i32 compressed length and the codec's bytes (a
//! stream of the length it decompresses to is stored as is). Then the block is unshuffled:
//! bytes (flag 0x01: the k-th bytes of every element were stored together) or bits (flag
//! 0x04: the k-th bits of every 8 elements' worth). The codec is in bits 5-7 of the flags:
//! LZ4 (1: raw LZ4 blocks) and zstd (4: one zstd frame per stream) are read; BloscLZ (0),
//! Snappy (2) and zlib (3) are refused.
//!
//! Memory is bounded by the caller: a chunk that says it decompresses to more than
//! `max_len` bytes is refused before anything is allocated, and zstd frames whose window
//! exceeds 8 MiB are refused.

use std::io::Read;

use ruzstd::decoding::StreamingDecoder;

/// Bytes of a Blosc 1 header.
const HEADER: usize = 16;
/// Largest zstd window accepted (as for AEDAT4 packets).
const MAX_WINDOW: u64 = 8 << 20;

/// Why a Blosc chunk could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BloscError {
    /// The chunk ends before its header, offsets or streams do.
    #[error("Blosc chunk cut short")]
    Truncated,
    /// The chunk decompresses to more than the caller allows.
    #[error("Blosc chunk of {len} bytes decompressed, more than the {max} allowed")]
    TooLarge {
        /// What the header says.
        len: usize,
        /// The caller's bound.
        max: usize,
    },
    /// A codec evshm does not read.
    #[error("Blosc codec {0} is not read (LZ4 and zstd are)")]
    Codec(&'static str),
    /// The header or a stream contradicts itself.
    #[error("corrupt Blosc chunk: {0}")]
    Corrupt(&'static str),
}

/// The header of a Blosc 1 chunk.
#[derive(Debug, Clone, Copy)]
struct Header {
    flags: u8,
    typesize: usize,
    nbytes: usize,
    blocksize: usize,
    cbytes: usize,
}

impl Header {
    fn parse(chunk: &[u8]) -> Result<Self, BloscError> {
        let head = chunk.get(..HEADER).ok_or(BloscError::Truncated)?;
        let u32_at = |at: usize| {
            u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]) as usize
        };
        if head[0] == 0 || head[0] > 4 {
            return Err(BloscError::Corrupt("unknown format version"));
        }
        let header = Self {
            flags: head[2],
            typesize: usize::from(head[3]),
            nbytes: u32_at(4),
            blocksize: u32_at(8),
            cbytes: u32_at(12),
        };
        if header.typesize == 0 {
            return Err(BloscError::Corrupt("type size 0"));
        }
        Ok(header)
    }
}

/// Decompresses one Blosc 1 chunk, refusing one that decompresses to more than `max_len`
/// bytes.
pub fn blosc_decompress(chunk: &[u8], max_len: usize) -> Result<Vec<u8>, BloscError> {
    let h = Header::parse(chunk)?;
    if h.nbytes > max_len {
        return Err(BloscError::TooLarge { len: h.nbytes, max: max_len });
    }
    let chunk = chunk.get(..h.cbytes.max(HEADER)).ok_or(BloscError::Truncated)?;
    if h.flags & 0x02 != 0 {
        let data = chunk.get(HEADER..HEADER + h.nbytes).ok_or(BloscError::Truncated)?;
        return Ok(data.to_vec());
    }
    if h.nbytes == 0 {
        return Ok(Vec::new());
    }
    if h.blocksize == 0 {
        return Err(BloscError::Corrupt("block size 0"));
    }
    let codec = match h.flags >> 5 {
        1 => Codec::Lz4,
        4 => Codec::Zstd,
        0 => return Err(BloscError::Codec("BloscLZ")),
        2 => return Err(BloscError::Codec("Snappy")),
        3 => return Err(BloscError::Codec("zlib")),
        _ => return Err(BloscError::Corrupt("unknown codec")),
    };
    let blocks = h.nbytes.div_ceil(h.blocksize);
    let mut out = vec![0u8; h.nbytes];
    let mut scratch = vec![0u8; h.blocksize.min(h.nbytes)];
    for (i, block) in out.chunks_mut(h.blocksize).enumerate() {
        let at = HEADER + 4 * i;
        let start = chunk.get(at..at + 4).ok_or(BloscError::Truncated)?;
        let start = i32::from_le_bytes([start[0], start[1], start[2], start[3]]);
        let start = usize::try_from(start).map_err(|_| BloscError::Corrupt("negative offset"))?;
        if start < HEADER + 4 * blocks {
            return Err(BloscError::Corrupt("block offset inside the header"));
        }
        let split = h.flags & 0x10 == 0 && block.len() == h.blocksize;
        let streams = if split { h.typesize } else { 1 };
        if block.len() % streams != 0 {
            return Err(BloscError::Corrupt("block does not split into its streams"));
        }
        let shuffled = h.flags & 0x05 != 0;
        let target = if shuffled { &mut scratch[..block.len()] } else { &mut *block };
        let mut at = start;
        let stream_len = target.len() / streams;
        for stream in target.chunks_mut(stream_len) {
            at = inflate_stream(chunk, at, stream, codec)?;
        }
        if h.flags & 0x04 != 0 {
            bit_unshuffle(&scratch[..block.len()], h.typesize, block);
        } else if h.flags & 0x01 != 0 {
            byte_unshuffle(&scratch[..block.len()], h.typesize, block);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
enum Codec {
    Lz4,
    Zstd,
}

/// Decompresses the stream at `at` into `out` (exactly its length); returns where the next
/// stream starts.
fn inflate_stream(
    chunk: &[u8],
    at: usize,
    out: &mut [u8],
    codec: Codec,
) -> Result<usize, BloscError> {
    let len = chunk.get(at..at + 4).ok_or(BloscError::Truncated)?;
    let len = i32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    let len = usize::try_from(len).map_err(|_| BloscError::Corrupt("negative stream length"))?;
    let data = chunk.get(at + 4..at + 4 + len).ok_or(BloscError::Truncated)?;
    if len == out.len() {
        out.copy_from_slice(data);
        return Ok(at + 4 + len);
    }
    let corrupt = |_| BloscError::Corrupt("stream does not decompress to its block");
    match codec {
        Codec::Lz4 => {
            let n = lz4_flex::block::decompress_into(data, out)
                .map_err(|_| BloscError::Corrupt("bad LZ4 stream"))?;
            if n != out.len() {
                return Err(corrupt(()));
            }
        }
        Codec::Zstd => {
            let mut decoder = StreamingDecoder::new_with_max_window_size(data, MAX_WINDOW)
                .map_err(|_| BloscError::Corrupt("bad zstd frame, or a window over 8 MiB"))?;
            decoder.read_exact(out).map_err(|_| BloscError::Corrupt("short zstd stream"))?;
            // Nothing may follow the block's bytes.
            if decoder.read(&mut [0u8]).map_err(|_| BloscError::Corrupt("bad zstd stream"))? != 0 {
                return Err(corrupt(()));
            }
        }
    }
    Ok(at + 4 + len)
}

/// Undoes Blosc's byte shuffle of a block: the k-th bytes of its whole elements were
/// stored together; bytes past the last whole element were stored as they were.
fn byte_unshuffle(shuffled: &[u8], typesize: usize, out: &mut [u8]) {
    let elements = shuffled.len() / typesize;
    for (k, plane) in shuffled[..elements * typesize].chunks(elements.max(1)).enumerate() {
        for (i, &byte) in plane.iter().enumerate() {
            out[i * typesize + k] = byte;
        }
    }
    let whole = elements * typesize;
    out[whole..].copy_from_slice(&shuffled[whole..]);
}

/// Undoes the bit shuffle of a block: over its elements in a multiple of 8, bit `b` of
/// every element was stored together, element after element, least significant bit first;
/// the elements past that multiple were stored as they were.
fn bit_unshuffle(shuffled: &[u8], typesize: usize, out: &mut [u8]) {
    let elements = shuffled.len() / typesize / 8 * 8;
    let bits = typesize * 8;
    out[..elements * typesize].fill(0);
    for b in 0..bits {
        for i in 0..elements {
            let from = b * elements + i;
            let bit = shuffled[from / 8] >> (from % 8) & 1;
            let to = i * bits + b;
            out[to / 8] |= bit << (to % 8);
        }
    }
    let whole = elements * typesize;
    out[whole..].copy_from_slice(&shuffled[whole..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk stored as is.
    #[test]
    fn memcpyed_chunks_and_bounds() {
        let mut chunk = vec![2, 1, 0x02 | 4 << 5, 4];
        for v in [8u32, 8, 24] {
            chunk.extend_from_slice(&v.to_le_bytes());
        }
        chunk.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(blosc_decompress(&chunk, 8).unwrap(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(blosc_decompress(&chunk, 7), Err(BloscError::TooLarge { len: 8, max: 7 }));
        assert_eq!(blosc_decompress(&chunk[..20], 8), Err(BloscError::Truncated));
        assert_eq!(blosc_decompress(&chunk[..10], 8), Err(BloscError::Truncated));
    }

    #[test]
    fn shuffles_undone() {
        // Two 2-byte elements 0x0201, 0x0403: shuffled, the low bytes then the high bytes.
        let mut out = [0; 5];
        byte_unshuffle(&[1, 3, 2, 4, 9], 2, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 9]);
        // Eight 1-byte elements, element i = i: bit plane b holds bit b of each.
        let elements: Vec<u8> = (0..8).collect();
        let mut planes = [0u8; 8];
        for (b, plane) in planes.iter_mut().enumerate() {
            for (i, e) in elements.iter().enumerate() {
                *plane |= (e >> b & 1) << i;
            }
        }
        let mut out = [0u8; 8];
        bit_unshuffle(&planes, 1, &mut out);
        assert_eq!(out.to_vec(), elements);
    }
}
