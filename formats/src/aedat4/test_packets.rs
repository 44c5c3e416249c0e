//! Packets for the unit tests: `EVTS` flatbuffers in two layouts, compressed with either
//! codec, decompression bombs, and the decode that held a packet whole, to compare with.

use std::io::{Read, Write};

use super::flat;
use crate::sink::Event;

/// Where an `EVTS` packet's vtable is. (Offsets to tables and vectors are unsigned in
/// flatbuffers, so a vector always follows its table; a vtable may be on either side.)
#[derive(Debug, Clone, Copy)]
pub(super) enum Layout {
    /// Before its table, as the flatbuffers builder (dv-processing) writes it: the vector
    /// of events is last.
    Builder,
    /// After the vector of events: the vector is found only once its events are read.
    VtableLast,
}

/// An `EVTS` packet (a size-prefixed flatbuffer) holding `events`, then `padding` zeros.
pub(super) fn evts(events: &[Event], layout: Layout, padding: usize) -> Vec<u8> {
    let mut vector = u32::try_from(events.len()).unwrap().to_le_bytes().to_vec();
    for e in events {
        vector.extend_from_slice(&e.t.to_le_bytes());
        vector.extend_from_slice(&(e.x as i16).to_le_bytes());
        vector.extend_from_slice(&(e.y as i16).to_le_bytes());
        vector.extend_from_slice(&[e.p, 0, 0, 0]);
    }
    let vtable = [6u16, 8, 4].map(u16::to_le_bytes).concat();
    // The buffer after the size prefix: root offset, identifier, then the rest.
    let mut b = Vec::new();
    match layout {
        Layout::Builder => {
            // Vtable at 10, table at 16 (6 bytes after its vtable), vector at 24.
            b.extend_from_slice(&16u32.to_le_bytes());
            b.extend_from_slice(b"EVTS\0\0");
            b.extend_from_slice(&vtable);
            b.extend_from_slice(&6i32.to_le_bytes());
        }
        Layout::VtableLast => {
            // Table at 8, vector at 16, vtable after the vector.
            let vtable_at = 16 + vector.len() as i32;
            b.extend_from_slice(&8u32.to_le_bytes());
            b.extend_from_slice(b"EVTS");
            b.extend_from_slice(&(8 - vtable_at).to_le_bytes());
        }
    }
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&vector);
    if let Layout::VtableLast = layout {
        b.extend_from_slice(&vtable);
    }
    b.resize(b.len() + padding, 0);
    [&u32::try_from(b.len()).unwrap().to_le_bytes()[..], &b].concat()
}

/// `payload` as a packet of `stream`.
pub(super) fn framed(stream: i32, payload: &[u8]) -> Vec<u8> {
    let size = i32::try_from(payload.len()).unwrap();
    [&stream.to_le_bytes()[..], &size.to_le_bytes(), payload].concat()
}

/// One zstd frame of `bytes`, as ruzstd compresses it.
pub(super) fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

/// One LZ4 frame of `bytes`, in linked blocks of at most `block` (as dv-processing writes).
pub(super) fn lz4(bytes: &[u8], block: lz4_flex::frame::BlockSize) -> Vec<u8> {
    use lz4_flex::frame::{BlockMode, FrameEncoder, FrameInfo};
    let info = FrameInfo::new().block_size(block).block_mode(BlockMode::Linked);
    let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[path = "../../../tests/support/zstd_bomb.rs"]
mod zstd_bomb;
pub(super) use zstd_bomb::zstd_bomb;

/// The events of a packet decompressed whole, as the decoder did before it read packets
/// in pieces; `None` where it counted the packet as unknown.
pub(super) fn whole(decompressed: impl Read) -> Option<Vec<Event>> {
    const MAX_PACKET: usize = 256 << 20;
    let mut packet = Vec::new();
    decompressed.take(MAX_PACKET as u64 + 1).read_to_end(&mut packet).ok()?;
    if packet.len() > MAX_PACKET {
        return None;
    }
    let buffer = packet.get(4..)?;
    if buffer.get(4..8) != Some(b"EVTS") {
        return None;
    }
    let root = flat::u32_at(buffer, 0)? as usize;
    let (start, count) = flat::vector(buffer, flat::field(buffer, root, 0)?)?;
    let elements = buffer.get(start..start.checked_add(count.checked_mul(16)?)?)?;
    let event = |e: &[u8; 16]| Event {
        t: i64::from_le_bytes(e[..8].try_into().unwrap()),
        x: i16::from_le_bytes([e[8], e[9]]) as u16,
        y: i16::from_le_bytes([e[10], e[11]]) as u16,
        p: u8::from(e[12] != 0),
    };
    Some(elements.as_chunks::<16>().0.iter().map(event).collect())
}
