//! The compressed protocol (CLIENT_COMPRESS): zlib frames with a 7-byte
//! header — compressed length (3), sequence id (1), uncompressed length (3,
//! zero when the payload is stored as is) — around ordinary packet bytes.
//!
//! rwsplit compresses only towards clients that ask for it; backend
//! connections are never compressed. Frames carry whole plain packets or
//! parts of them, so relayed bytes are wrapped without being re-framed.

use std::io::{Read, Write};

use bytes::{BufMut, BytesMut};
use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

/// Bytes in a compressed frame header.
pub const COMPRESSED_HEADER_LEN: usize = 7;
/// Largest amount of plain data in one frame.
const MAX_FRAME_DATA: usize = 0xFF_FFFF;
/// Smaller payloads are sent uncompressed, as MySQL does.
const MIN_COMPRESS_LENGTH: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressError {
    #[error("compressed frame does not inflate to its announced {announced} bytes")]
    BadData { announced: usize },
    #[error("compressed frame has sequence id {got}, expected {expected}")]
    OutOfOrder { expected: u8, got: u8 },
}

/// Appends `data` as compressed frames numbered from `seq`; returns the
/// next sequence id.
pub fn compress_into(out: &mut BytesMut, mut seq: u8, data: &[u8]) -> u8 {
    for chunk in data.chunks(MAX_FRAME_DATA) {
        let compressed = if chunk.len() >= MIN_COMPRESS_LENGTH {
            let mut encoder =
                ZlibEncoder::new(Vec::with_capacity(chunk.len() / 2), Compression::fast());
            // Writing into a Vec cannot fail.
            encoder
                .write_all(chunk)
                .and_then(|()| encoder.finish())
                .ok()
        } else {
            None
        };
        match compressed.filter(|c| c.len() < chunk.len()) {
            Some(compressed) => {
                out.put_uint_le(compressed.len() as u64, 3);
                out.put_u8(seq);
                out.put_uint_le(chunk.len() as u64, 3);
                out.put_slice(&compressed);
            }
            None => {
                out.put_uint_le(chunk.len() as u64, 3);
                out.put_u8(seq);
                out.put_uint_le(0, 3);
                out.put_slice(chunk);
            }
        }
        seq = seq.wrapping_add(1);
    }
    seq
}

/// How many plain bytes the frame starting `input` announces (its
/// uncompressed length, or its length when stored as is), once its header
/// has arrived: what inflating it would add, known before inflating it.
pub fn announced(input: &[u8]) -> Option<usize> {
    let header = input.get(..COMPRESSED_HEADER_LEN)?;
    let le24 = |b: &[u8]| usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16;
    Some(match le24(&header[4..7]) {
        0 => le24(&header[0..3]),
        plain => plain,
    })
}

/// Takes one complete compressed frame off `input` and appends its plain
/// bytes to `out`. Returns the frame's sequence id, or `None` when more
/// bytes are needed. `expected_seq`, when given, is checked.
pub fn take_frame(
    input: &mut BytesMut,
    out: &mut BytesMut,
    expected_seq: Option<u8>,
) -> Result<Option<u8>, CompressError> {
    let Some(header) = input.get(..COMPRESSED_HEADER_LEN) else {
        return Ok(None);
    };
    let le24 = |b: &[u8]| usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16;
    let stored = le24(&header[0..3]);
    let seq = header[3];
    let plain = le24(&header[4..7]);
    if let Some(expected) = expected_seq.filter(|e| *e != seq) {
        return Err(CompressError::OutOfOrder { expected, got: seq });
    }
    if input.len() < COMPRESSED_HEADER_LEN + stored {
        return Ok(None);
    }
    let frame = input.split_to(COMPRESSED_HEADER_LEN + stored);
    let data = &frame[COMPRESSED_HEADER_LEN..];
    if plain == 0 {
        out.put_slice(data);
        return Ok(Some(seq));
    }
    let inflated = inflate(data, plain).ok_or(CompressError::BadData { announced: plain })?;
    out.put_slice(&inflated);
    Ok(Some(seq))
}

/// Inflates `data`, which must come to exactly `plain` bytes. Never
/// inlined: the decoder's state is built on the stack (some 50 KiB), and
/// inlined into a client's read path it made every read of every client,
/// compressed or not, probe those stack pages (docs/benchmarks.md step 19).
#[inline(never)]
fn inflate(data: &[u8], plain: usize) -> Option<Vec<u8>> {
    // Read at most one byte more than announced, so a frame that inflates
    // to more (a zip bomb) is caught without inflating it all.
    let mut inflated = Vec::with_capacity(plain);
    let read = ZlibDecoder::new(data)
        .take(plain as u64 + 1)
        .read_to_end(&mut inflated);
    (read.is_ok() && inflated.len() == plain).then_some(inflated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(data: &[u8]) -> Vec<u8> {
        let mut wire = BytesMut::new();
        let next = compress_into(&mut wire, 3, data);
        assert_eq!(usize::from(next - 3), data.len().div_ceil(MAX_FRAME_DATA));
        let mut plain = BytesMut::new();
        let mut seq = 3;
        while !wire.is_empty() {
            assert_eq!(take_frame(&mut wire, &mut plain, Some(seq)), Ok(Some(seq)));
            seq += 1;
        }
        plain.to_vec()
    }

    #[test]
    fn small_payloads_are_stored_and_large_ones_compressed() {
        let mut wire = BytesMut::new();
        compress_into(&mut wire, 0, b"\x01\x00\x00\x00\x0e");
        assert_eq!(
            &wire[..],
            b"\x05\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x0e"
        );
        let text = "SELECT * FROM t WHERE id = 1; ".repeat(20);
        let mut wire = BytesMut::new();
        compress_into(&mut wire, 0, text.as_bytes());
        assert!(wire.len() < text.len() / 2);
        assert_eq!(round_trip(text.as_bytes()), text.as_bytes());
    }

    #[test]
    fn large_data_spans_frames() {
        let data: Vec<u8> = (0..MAX_FRAME_DATA + 1000)
            .map(|i| (i % 251) as u8)
            .collect();
        assert_eq!(round_trip(&data), data);
    }

    #[test]
    fn incomplete_frames_wait_and_bad_ones_fail() {
        let mut wire = BytesMut::new();
        compress_into(&mut wire, 0, &[7u8; 200]);
        let mut partial = BytesMut::from(&wire[..wire.len() - 1]);
        assert_eq!(
            take_frame(&mut partial, &mut BytesMut::new(), None),
            Ok(None)
        );
        let mut lying = BytesMut::from(&wire[..]);
        lying[4] = 201; // announces one byte more than it holds
        assert_eq!(
            take_frame(&mut lying, &mut BytesMut::new(), None),
            Err(CompressError::BadData { announced: 201 })
        );
        let mut wrong_seq = BytesMut::from(&wire[..]);
        assert_eq!(
            take_frame(&mut wrong_seq, &mut BytesMut::new(), Some(1)),
            Err(CompressError::OutOfOrder {
                expected: 1,
                got: 0
            })
        );
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut input = BytesMut::from(&bytes[..]);
            let _ = take_frame(&mut input, &mut BytesMut::new(), None);
        }

        #[test]
        fn anything_round_trips(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(round_trip(&data), data);
        }
    }
}
