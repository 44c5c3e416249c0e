//! The packets of an AEDAT 4.0 file, each of the chosen stream decompressed in pieces.
//!
//! Nothing a packet expands to is held whole, so a small packet that expands to a lot (a
//! decompression bomb) costs time, not memory. A decode holds, whatever its input:
//!
//! - the packet as stored in the file, at most [`MAX_PACKET`] bytes: the file's own
//!   bytes, never an expansion of them;
//! - one [`PIECE`] of decompressed bytes, and the head of the packet being read, at most
//!   1 MiB (`evts::MAX_HEAD`);
//! - the decompressor's own buffers. zstd keeps a window of history, as large as the
//!   frame header announces, so frames announcing more than [`MAX_WINDOW`] are refused
//!   before anything is allocated. ruzstd grows its buffer to the window (plus two 128 KiB
//!   blocks) by doubling, and the allocator may keep the smaller buffers it left for
//!   reuse: a decode can take twice the window (measured in evshmd, glibc: 34 MB for one
//!   packet with a 16 MiB window). LZ4 frames (lz4_flex) hold a compressed block and up to
//!   two decompressed blocks with 64 KiB of history, sized from the frame header: the
//!   format caps blocks at 4 MiB (8 MiB in a legacy frame), so about 16 MiB at most (a
//!   little more for a packet of several frames, each larger than the last).
//!
//! That is under 20 MiB per decode whatever the file holds, and a few hundred KiB for the
//! packets dv-processing writes.

use std::io::Read;

use ruzstd::decoding::StreamingDecoder;

use super::evts::{EvtsReader, MAX_PACKET};
use super::{Aedat4Layout, Compression};
use crate::sink::EventSink;
use crate::stats::DecodeStats;

/// Decompressed bytes are read in pieces of this size.
const PIECE: usize = 64 << 10;
/// Largest zstd window accepted: 8 MiB. dv-processing compresses each packet in one call,
/// so its frames announce a window the size of the packet (16 KB for 1,000 events, 67 KB
/// for the largest packet of the test files): this takes packets of up to 524,288 events
/// however they were compressed, and larger ones whose compressor kept to an 8 MiB
/// window. A larger window is a packet of more events than a camera sends at once, or a
/// hostile file; ruzstd's default limit, 128 MiB, would let one decode take twice that.
const MAX_WINDOW: u64 = 8 << 20;

/// Push decoder for the packets of an AEDAT 4.0 file (the bytes after its header).
#[derive(Debug, Clone)]
pub struct Aedat4Decoder {
    layout: Aedat4Layout,
    /// Bytes of packets consumed so far.
    position: u64,
    /// The stream id and size that open a packet, as far as they were fed.
    packet_header: [u8; 8],
    packet_header_len: usize,
    /// The packet being read: its stream, size, and (for the chosen stream) its bytes.
    packet: Option<(i32, usize)>,
    payload: Vec<u8>,
    skipped: usize,
    /// The events of the packet being decoded.
    events: EvtsReader,
    /// Where decompressed bytes land, a piece at a time; allocated with the first
    /// compressed packet.
    piece: Vec<u8>,
    stats: DecodeStats,
    corrupt: bool,
}

impl Aedat4Decoder {
    /// A decoder for a file with this layout.
    pub fn new(layout: Aedat4Layout) -> Self {
        Self {
            layout,
            position: 0,
            packet_header: [0; 8],
            packet_header_len: 0,
            packet: None,
            payload: Vec::new(),
            skipped: 0,
            events: EvtsReader::default(),
            piece: Vec::new(),
            stats: DecodeStats::default(),
            corrupt: false,
        }
    }

    /// Decodes the next bytes of the stream.
    pub fn feed<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        let left =
            self.layout.packets_len.map_or(u64::MAX, |len| len.saturating_sub(self.position));
        let mut bytes = &bytes[..bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX))];
        self.position += bytes.len() as u64;
        while !bytes.is_empty() && !self.corrupt {
            match self.packet {
                None => {
                    let take = (8 - self.packet_header_len).min(bytes.len());
                    self.packet_header[self.packet_header_len..self.packet_header_len + take]
                        .copy_from_slice(&bytes[..take]);
                    self.packet_header_len += take;
                    bytes = &bytes[take..];
                    if self.packet_header_len == 8 {
                        self.packet_header_len = 0;
                        self.start_packet();
                    }
                }
                Some((stream, size)) => {
                    let have = if stream == self.layout.stream {
                        self.payload.len()
                    } else {
                        self.skipped
                    };
                    let take = (size - have).min(bytes.len());
                    if stream == self.layout.stream {
                        self.payload.extend_from_slice(&bytes[..take]);
                    } else {
                        self.skipped += take;
                    }
                    bytes = &bytes[take..];
                    if have + take == size {
                        self.packet = None;
                        self.skipped = 0;
                        if stream == self.layout.stream {
                            let payload = std::mem::take(&mut self.payload);
                            self.decode_packet(&payload, sink);
                            self.payload = payload;
                            self.payload.clear();
                        }
                    }
                }
            }
        }
    }

    fn start_packet(&mut self) {
        let stream = i32::from_le_bytes(self.packet_header[..4].try_into().expect("4 bytes"));
        let size = i32::from_le_bytes(self.packet_header[4..].try_into().expect("4 bytes"));
        match usize::try_from(size) {
            Ok(size) if size <= MAX_PACKET => self.packet = Some((stream, size)),
            // A size no writer produces: the packet framing is lost, so is the rest.
            _ => {
                self.corrupt = true;
                self.stats.unknown += 1;
            }
        }
    }

    /// Decodes one packet of the chosen stream, decompressing it a piece at a time.
    fn decode_packet<S: EventSink>(&mut self, payload: &[u8], sink: &mut S) {
        self.stats.words += 1;
        let read = match self.layout.compression {
            Compression::None => self.events.feed(payload, sink),
            Compression::Lz4 => self.inflate(lz4_flex::frame::FrameDecoder::new(payload), sink),
            Compression::Zstd => {
                match StreamingDecoder::new_with_max_window_size(payload, MAX_WINDOW) {
                    Ok(frame) => self.inflate(frame, sink),
                    Err(_) => false,
                }
            }
        };
        // Always finished, to ready the reader for the next packet.
        if !self.events.finish() || !read {
            self.stats.unknown += 1;
        }
    }

    /// Passes what `frame` decompresses to the events reader, a piece at a time, until the
    /// frame ends, fails or the reader refuses the packet; `false` unless it ended.
    fn inflate<S: EventSink>(&mut self, mut frame: impl Read, sink: &mut S) -> bool {
        if self.piece.is_empty() {
            self.piece = vec![0; PIECE];
        }
        loop {
            match frame.read(&mut self.piece) {
                Ok(0) => return true,
                Ok(n) if self.events.feed(&self.piece[..n], sink) => {}
                Ok(_) | Err(_) => return false,
            }
        }
    }

    /// What was passed over so far: packets count as words, packets that could not be
    /// read as unknown words, the bytes of an unfinished packet as trailing bytes.
    pub fn stats(&self) -> DecodeStats {
        let unfinished = match self.packet {
            Some(_) => 8 + self.payload.len() + self.skipped,
            None => self.packet_header_len,
        };
        DecodeStats { trailing_bytes: unfinished, ..self.stats }
    }
}

#[cfg(test)]
mod tests {
    use lz4_flex::frame::BlockSize;

    use super::*;
    use crate::aedat4::test_packets::{Layout, evts, framed, lz4, whole, zstd, zstd_bomb};
    use crate::sink::{Event, VecSink};

    impl Aedat4Decoder {
        /// A decoder that reads decompressed bytes in pieces of `len`.
        fn with_piece(layout: Aedat4Layout, len: usize) -> Self {
            Self { piece: vec![0; len], ..Self::new(layout) }
        }
    }

    fn layout(compression: Compression) -> Aedat4Layout {
        Aedat4Layout { compression, stream: 0, packets_len: None }
    }

    fn events(n: usize, from: i64) -> Vec<Event> {
        (0..n as u16)
            .map(|i| Event { t: from + i64::from(i), x: i, y: 3, p: (i % 2) as u8 })
            .collect()
    }

    fn compress(compression: Compression, packet: &[u8]) -> Vec<u8> {
        match compression {
            Compression::None => packet.to_vec(),
            Compression::Lz4 => lz4(packet, BlockSize::Max64KB),
            Compression::Zstd => zstd(packet),
        }
    }

    /// Decodes `packets` (stream, payload) with `decoder`: events and unknown packets.
    fn decode(mut decoder: Aedat4Decoder, packets: &[(i32, Vec<u8>)]) -> (Vec<Event>, u64) {
        let mut sink = VecSink::default();
        for (stream, payload) in packets {
            decoder.feed(&framed(*stream, payload), &mut sink);
        }
        assert_eq!(decoder.piece.capacity(), decoder.piece.len(), "the piece never grows");
        (sink.events, decoder.stats().unknown)
    }

    /// Pieces of any size, splitting events and heads, give the events the decoder gave
    /// when it decompressed each packet whole; with either codec and layout.
    #[test]
    fn pieces_of_any_size_decode_as_whole_packets_did() {
        let packets = [
            // 80 KB: more than a piece, and than an LZ4 block.
            evts(&events(5000, 0), Layout::Builder, 0),
            evts(&[], Layout::Builder, 0),
            evts(&events(300, 10_000), Layout::VtableLast, 5),
            evts(&events(7, 20_000), Layout::Builder, 3),
        ];
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let mut expected = Vec::new();
            let mut stored = Vec::new();
            for packet in &packets {
                let payload = compress(compression, packet);
                let decompressed: Box<dyn Read> = match compression {
                    Compression::None => Box::new(&payload[..]),
                    Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(&payload[..])),
                    Compression::Zstd => Box::new(StreamingDecoder::new(&payload[..]).unwrap()),
                };
                expected.extend(whole(decompressed).unwrap());
                stored.push((0, payload));
                // Another stream's packet between: skipped.
                stored.push((1, compress(compression, &packets[0])));
            }
            for piece in [1, 7, 16, 17, 4099, PIECE] {
                let decoder = Aedat4Decoder::with_piece(layout(compression), piece);
                let (got, unknown) = decode(decoder, &stored);
                assert_eq!(unknown, 0, "{compression:?}, pieces of {piece}");
                assert!(got == expected, "{compression:?}, pieces of {piece}");
            }
        }
    }

    /// A zstd packet of 8 KiB that expands to 256 MiB, the most a packet may: its events
    /// are read, and the decoder holds no more than a piece (the head is read in place)
    /// besides ruzstd's window, at most 8 MiB: a larger one is refused, and so is a packet
    /// beyond 256 MiB. (The cross-process test `aedat4_decompression_bombs_*` measures
    /// what the daemon's memory does.)
    #[test]
    fn zstd_bombs_are_read_in_bounded_memory_or_refused() {
        let two = events(2, 7);
        let head = evts(&two, Layout::Builder, 0);
        let cases = [
            (zstd_bomb(&head, MAX_PACKET, 23), two.clone(), 0),
            (zstd_bomb(&head, MAX_PACKET + 1, 23), two.clone(), 1),
            (zstd_bomb(&head, MAX_PACKET, 24), vec![], 1),
            (zstd_bomb(&[], MAX_PACKET, 23), vec![], 1),
        ];
        for (i, (payload, expected, unknown)) in cases.into_iter().enumerate() {
            assert!(payload.len() < 16 << 10);
            let mut decoder = Aedat4Decoder::new(layout(Compression::Zstd));
            let mut sink = VecSink::default();
            decoder.feed(&framed(0, &payload), &mut sink);
            assert_eq!((sink.events, decoder.stats().unknown), (expected, unknown), "case {i}");
            assert!(decoder.piece.capacity() <= PIECE);
            assert_eq!(decoder.events.capacity(), 0, "case {i}: no head kept");
        }
    }

    /// The same with LZ4, whose frames allow blocks of up to 4 MiB.
    #[test]
    fn lz4_bombs_are_read_in_bounded_memory() {
        let two = events(2, 7);
        let bomb = evts(&two, Layout::Builder, 64 << 20);
        let payload = lz4(&bomb, BlockSize::Max4MB);
        assert!(payload.len() < bomb.len() / 200);
        let mut decoder = Aedat4Decoder::new(layout(Compression::Lz4));
        let mut sink = VecSink::default();
        decoder.feed(&framed(0, &payload), &mut sink);
        assert_eq!((sink.events, decoder.stats().unknown), (two, 0));
        assert!(decoder.piece.capacity() <= PIECE);
        assert_eq!(decoder.events.capacity(), 0, "no head kept");
    }
}
