//! Packet framing: the 4-byte header, packets over 16 MiB split into chunks,
//! and length-encoded integers.
//!
//! Everything here is a pure function over byte buffers. A packet is taken
//! off a receive buffer only once all its chunks are there, and its size is
//! checked against the limit as soon as each chunk header arrives, so a peer
//! that announces a huge packet is refused before anything is buffered.

use bytes::{Buf, BufMut, BytesMut};

/// Bytes in a packet header: 3 of length, 1 of sequence id.
pub const HEADER_LEN: usize = 4;
/// Largest payload of one chunk; a chunk this long means another follows.
pub const MAX_CHUNK: usize = 0xFF_FFFF;

/// Why a packet could not be taken off a buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("packet of {len} bytes or more is over the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("chunk has sequence id {got}, expected {expected}")]
    OutOfOrder { expected: u8, got: u8 },
}

/// One complete packet exactly as received: every chunk with its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: BytesMut,
    /// Sum of the chunk payload lengths.
    payload_len: usize,
    /// Sequence id of the last chunk.
    last_seq: u8,
}

impl Frame {
    /// Sequence id of the first chunk.
    pub fn seq(&self) -> u8 {
        self.bytes[3]
    }

    /// Sequence id of the last chunk (the same as [`Frame::seq`] unless the
    /// packet is over 16 MiB).
    pub fn last_seq(&self) -> u8 {
        self.last_seq
    }

    /// Total payload length.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// Payload of the first chunk: the whole payload unless the packet is
    /// over 16 MiB. Enough to read a command byte, a statement id or the
    /// start of a statement.
    pub fn first_payload(&self) -> &[u8] {
        let len = self.payload_len.min(MAX_CHUNK);
        &self.bytes[HEADER_LEN..HEADER_LEN + len]
    }

    /// Mutable view of the first chunk's payload, for in-place rewrites of
    /// fixed-size fields (such as a statement id).
    pub fn first_payload_mut(&mut self) -> &mut [u8] {
        let len = self.payload_len.min(MAX_CHUNK);
        &mut self.bytes[HEADER_LEN..HEADER_LEN + len]
    }

    /// Whether the packet is split into more than one chunk.
    pub fn is_chunked(&self) -> bool {
        self.payload_len >= MAX_CHUNK
    }

    /// The bytes as received, headers included, ready to forward.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The payload with the chunks joined.
    pub fn into_payload(mut self) -> BytesMut {
        if !self.is_chunked() {
            self.bytes.advance(HEADER_LEN);
            return self.bytes;
        }
        let mut payload = BytesMut::with_capacity(self.payload_len);
        let mut rest = &self.bytes[..];
        while rest.len() >= HEADER_LEN {
            let len = chunk_len(rest);
            payload.put_slice(&rest[HEADER_LEN..HEADER_LEN + len]);
            rest = &rest[HEADER_LEN + len..];
        }
        payload
    }

    /// Builds a frame from a payload, splitting it into chunks from `seq`.
    pub fn from_payload(seq: u8, payload: &[u8]) -> Frame {
        let mut bytes =
            BytesMut::with_capacity(payload.len() + HEADER_LEN * (1 + payload.len() / MAX_CHUNK));
        let next = put_packet(&mut bytes, seq, payload);
        Frame {
            bytes,
            payload_len: payload.len(),
            last_seq: next.wrapping_sub(1),
        }
    }
}

fn chunk_len(header: &[u8]) -> usize {
    usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16
}

/// The payload bytes of the packet at the front of `buf` that its chunk
/// headers received so far announce: its size, as far as it is known.
pub fn announced(buf: &[u8]) -> usize {
    let mut offset = 0;
    let mut payload_len = 0;
    while let Some(header) = buf.get(offset..offset + HEADER_LEN) {
        let len = chunk_len(header);
        payload_len += len;
        if len < MAX_CHUNK {
            break;
        }
        offset += HEADER_LEN + len;
    }
    payload_len
}

/// Takes one complete packet off the front of `buf`, or returns `None` when
/// more bytes are needed. `limit` bounds the total payload length.
pub fn take_frame(buf: &mut BytesMut, limit: usize) -> Result<Option<Frame>, FrameError> {
    let mut offset = 0;
    let mut payload_len = 0usize;
    let mut expected_seq = None;
    loop {
        let Some(header) = buf.get(offset..offset + HEADER_LEN) else {
            return Ok(None);
        };
        let len = chunk_len(header);
        let seq = header[3];
        if let Some(expected) = expected_seq {
            if seq != expected {
                return Err(FrameError::OutOfOrder { expected, got: seq });
            }
        }
        payload_len += len;
        if payload_len > limit {
            return Err(FrameError::TooLarge {
                len: payload_len,
                limit,
            });
        }
        if buf.len() < offset + HEADER_LEN + len {
            return Ok(None);
        }
        offset += HEADER_LEN + len;
        if len < MAX_CHUNK {
            let bytes = buf.split_to(offset);
            return Ok(Some(Frame {
                bytes,
                payload_len,
                last_seq: seq,
            }));
        }
        expected_seq = Some(seq.wrapping_add(1));
    }
}

/// Appends `payload` as one packet (several chunks if over 16 MiB) starting
/// at sequence id `seq`. Returns the sequence id after the last chunk.
pub fn put_packet(out: &mut impl BufMut, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let len = rest.len().min(MAX_CHUNK);
        out.put_uint_le(len as u64, 3);
        out.put_u8(seq);
        out.put_slice(&rest[..len]);
        seq = seq.wrapping_add(1);
        rest = &rest[len..];
        // A payload that is a multiple of MAX_CHUNK ends with an empty chunk.
        if len < MAX_CHUNK {
            return seq;
        }
    }
}

/// The payload length in a packet header.
fn payload_len(header: &[u8]) -> usize {
    usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16
}

/// The byte ranges (headers included) of the whole packets at the start of
/// `bytes`.
pub fn packet_ranges(bytes: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let header = bytes.get(pos..pos + HEADER_LEN)?;
        let end = pos + HEADER_LEN + payload_len(header);
        if end > bytes.len() {
            return None;
        }
        let packet = pos..end;
        pos = end;
        Some(packet)
    })
}

/// Gives the whole packets in `bytes` the sequence ids `first`, `first +
/// 1`...; returns the id after the last.
pub fn number_packets(bytes: &mut [u8], first: u8) -> u8 {
    let (mut seq, mut pos) = (first, 0);
    while let Some(header) = bytes.get_mut(pos..pos + HEADER_LEN) {
        header[3] = seq;
        seq = seq.wrapping_add(1);
        pos += HEADER_LEN + payload_len(header);
    }
    seq
}

/// Adds a fixed amount to the sequence id of every packet of a stream
/// that is passed through in pieces: a proxy that inserted packets of its
/// own into a response renumbers the rest. Each piece must start either
/// inside a payload or at a header, and hold headers whole (a response
/// scanner's consumed ranges do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renumber {
    shift: u8,
    /// Payload bytes of the current packet not yet passed.
    left: usize,
}

impl Renumber {
    pub fn new(shift: u8) -> Renumber {
        Renumber { shift, left: 0 }
    }

    /// Renumbers the headers in the next piece of the stream.
    pub fn apply(&mut self, piece: &mut [u8]) {
        let mut pos = 0;
        while pos < piece.len() {
            if self.left > 0 {
                let n = self.left.min(piece.len() - pos);
                self.left -= n;
                pos += n;
                continue;
            }
            let Some(header) = piece.get_mut(pos..pos + HEADER_LEN) else {
                return;
            };
            header[3] = header[3].wrapping_add(self.shift);
            self.left = payload_len(header);
            pos += HEADER_LEN;
        }
    }
}

/// Reads a length-encoded integer: the value and the bytes it took. `None`
/// when `buf` is too short or starts with 0xFB (NULL) or 0xFF (error marker).
pub fn read_lenenc(buf: &[u8]) -> Option<(u64, usize)> {
    let le = |bytes: &[u8]| {
        bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
    };
    match *buf.first()? {
        b @ 0..=0xFA => Some((u64::from(b), 1)),
        0xFC => Some((le(buf.get(1..3)?), 3)),
        0xFD => Some((le(buf.get(1..4)?), 4)),
        0xFE => Some((le(buf.get(1..9)?), 9)),
        _ => None,
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc(out: &mut impl BufMut, value: u64) {
    match value {
        0..=0xFA => out.put_u8(value as u8),
        0xFB..=0xFFFF => {
            out.put_u8(0xFC);
            out.put_u16_le(value as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            out.put_u8(0xFD);
            out.put_uint_le(value, 3);
        }
        _ => {
            out.put_u8(0xFE);
            out.put_u64_le(value);
        }
    }
}

/// Reads a length-encoded string: its bytes and the total bytes it took.
pub fn read_lenenc_bytes(buf: &[u8]) -> Option<(&[u8], usize)> {
    let (len, used) = read_lenenc(buf)?;
    let len = usize::try_from(len).ok()?;
    let end = used.checked_add(len)?;
    Some((buf.get(used..end)?, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_announces_its_size_chunk_by_chunk() {
        let mut bytes = BytesMut::new();
        put_packet(&mut bytes, 0, &vec![7u8; MAX_CHUNK + 10]);
        assert_eq!(announced(&bytes), MAX_CHUNK + 10);
        assert_eq!(
            announced(&bytes[..100]),
            MAX_CHUNK,
            "the second header not yet in"
        );
        assert_eq!(announced(&bytes[..3]), 0);
        assert_eq!(announced(b"\x05\0\0\0ab"), 5);
    }
    use proptest::prelude::*;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_packet(&mut out, seq, payload);
        out
    }

    #[test]
    fn a_stream_passed_in_pieces_is_renumbered_by_a_fixed_amount() {
        let stream = [packet(4, b"row one"), packet(5, b""), packet(6, b"\xfeend")].concat();
        let mut expected = stream.clone();
        assert_eq!(number_packets(&mut expected, 7), 10);
        // Pieces that end inside payloads or between packets.
        for cut in [5, 11, 15] {
            let mut renumber = Renumber::new(3);
            let mut renumbered = stream.clone();
            let (first, second) = renumbered.split_at_mut(cut);
            renumber.apply(first);
            renumber.apply(second);
            assert_eq!(renumbered, expected, "cut at {cut}");
        }
        assert_eq!(
            packet_ranges(&stream).collect::<Vec<_>>(),
            [0..11, 11..15, 15..23]
        );
    }

    #[test]
    fn small_packets_are_one_chunk() {
        assert_eq!(packet(3, b"\x0eping"), b"\x05\x00\x00\x03\x0eping");
        assert_eq!(packet(0, b""), b"\x00\x00\x00\x00");
    }

    #[test]
    fn frames_wait_for_all_their_bytes() {
        let bytes = packet(0, b"\x03SELECT 1");
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(take_frame(&mut buf, 1024), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
        let mut buf = BytesMut::from(&bytes[..]);
        buf.extend_from_slice(b"\x01\x00\x00\x00\x0e");
        let frame = take_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(frame.first_payload(), b"\x03SELECT 1");
        assert_eq!(frame.as_bytes(), &bytes[..]);
        assert_eq!(&buf[..], b"\x01\x00\x00\x00\x0e", "the next packet stays");
    }

    #[test]
    fn packets_over_16_mib_are_chunked_and_joined() {
        let payload: Vec<u8> = (0..MAX_CHUNK * 2 + 10).map(|i| i as u8).collect();
        let bytes = packet(7, &payload);
        assert_eq!(bytes.len(), payload.len() + 3 * HEADER_LEN);
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = take_frame(&mut buf, 64 << 20).unwrap().unwrap();
        assert!(frame.is_chunked());
        assert_eq!((frame.seq(), frame.last_seq()), (7, 9));
        assert_eq!(frame.payload_len(), payload.len());
        assert_eq!(frame.first_payload(), &payload[..MAX_CHUNK]);
        assert_eq!(&frame.into_payload()[..], &payload[..]);
    }

    #[test]
    fn an_exact_multiple_of_16_mib_ends_with_an_empty_chunk() {
        let payload = vec![1u8; MAX_CHUNK];
        let bytes = packet(0, &payload);
        assert_eq!(bytes.len(), MAX_CHUNK + 2 * HEADER_LEN);
        assert_eq!(&bytes[bytes.len() - 4..], &[0, 0, 0, 1]);
        let frame = take_frame(&mut BytesMut::from(&bytes[..]), 32 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(frame.payload_len(), MAX_CHUNK);
        assert_eq!(Frame::from_payload(0, &payload).as_bytes(), &bytes[..]);
    }

    #[test]
    fn oversized_packets_are_refused_from_the_header_alone() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0x7f, 0][..]);
        assert_eq!(
            take_frame(&mut buf, 1 << 20),
            Err(FrameError::TooLarge {
                len: 0x7f_ffff,
                limit: 1 << 20
            })
        );
    }

    #[test]
    fn chunks_must_be_in_sequence() {
        let mut bytes = packet(0, &vec![0u8; MAX_CHUNK]);
        bytes[MAX_CHUNK + HEADER_LEN + 3] = 5;
        assert_eq!(
            take_frame(&mut BytesMut::from(&bytes[..]), 32 << 20),
            Err(FrameError::OutOfOrder {
                expected: 1,
                got: 5
            })
        );
    }

    #[test]
    fn lenenc_round_trips_at_every_width() {
        for value in [
            0,
            250,
            251,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_lenenc(&mut out, value);
            assert_eq!(read_lenenc(&out), Some((value, out.len())), "{value}");
            assert_eq!(
                read_lenenc(&out[..out.len() - 1]),
                None,
                "truncated {value}"
            );
        }
        assert_eq!(read_lenenc(&[0xFB]), None);
        assert_eq!(read_lenenc(&[0xFF]), None);
        assert_eq!(read_lenenc_bytes(b"\x03defXY"), Some((&b"def"[..], 4)));
        assert_eq!(read_lenenc_bytes(b"\x05de"), None);
    }

    proptest! {
        #[test]
        fn take_frame_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), limit in 0usize..100) {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = take_frame(&mut buf, limit);
        }

        #[test]
        fn lenenc_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = read_lenenc(&bytes);
            let _ = read_lenenc_bytes(&bytes);
        }

        #[test]
        fn packets_round_trip(seq: u8, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let bytes = packet(seq, &payload);
            let mut buf = BytesMut::from(&bytes[..]);
            let frame = take_frame(&mut buf, 1024).unwrap().unwrap();
            prop_assert_eq!(frame.seq(), seq);
            prop_assert_eq!(frame.into_payload().to_vec(), payload);
            prop_assert!(buf.is_empty());
        }
    }
}
