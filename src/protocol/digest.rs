//! A digest of a response's bytes: transaction replay compares what a
//! statement answered the first time with what it answers when run again.
//! The status flags that say how the server ran a statement rather than
//! what it answered — slow, no index used — are left out: they differ
//! between two runs of the same statement (a lock waited for once, a plan
//! chosen differently) while the answer does not.

use std::hash::Hasher;
use std::num::NonZeroU64;

use mysql_common::constants::StatusFlags;

/// Status flags that vary from one run of a statement to the next.
const CIRCUMSTANTIAL: StatusFlags = StatusFlags::SERVER_QUERY_WAS_SLOW
    .union(StatusFlags::SERVER_STATUS_NO_INDEX_USED)
    .union(StatusFlags::SERVER_STATUS_NO_GOOD_INDEX_USED);

/// Fed a response's bytes in order, in pieces of any size.
#[derive(Debug, Default)]
pub struct Digest(std::hash::DefaultHasher);

impl Digest {
    pub fn add(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// Adds `bytes`, where each of `status` is the offset of an OK or EOF
    /// packet's status flags, without their circumstantial flags.
    pub fn add_masked(&mut self, bytes: &[u8], status: &[usize]) {
        let mask = !CIRCUMSTANTIAL.bits();
        let mut from = 0;
        for &at in status {
            let Some(flags) = bytes.get(at..at + 2) else {
                continue;
            };
            let masked = u16::from_le_bytes([flags[0], flags[1]]) & mask;
            self.0.write(&bytes[from..at]);
            self.0.write(&masked.to_le_bytes());
            from = at + 2;
        }
        self.0.write(&bytes[from..]);
    }

    /// Never zero (a zero hash counts as one), so that an optional
    /// digest takes no more room than a digest.
    pub fn finish(&self) -> NonZeroU64 {
        NonZeroU64::new(self.0.finish()).unwrap_or(NonZeroU64::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bytes_give_equal_digests_however_they_are_split() {
        let mut whole = Digest::default();
        whole.add(b"abcdef");
        let mut pieces = Digest::default();
        pieces.add(b"ab");
        pieces.add(b"cdef");
        assert_eq!(whole.finish(), pieces.finish());
        let mut other = Digest::default();
        other.add(b"abcdeg");
        assert_ne!(whole.finish(), other.finish());
    }

    #[test]
    fn a_slow_run_of_a_statement_digests_as_a_fast_one() {
        // An OK packet's header and status flags: autocommit, and slow.
        let fast = b"\x07\x00\x00\x01\x00\x01\x00\x02\x00\x00\x00";
        let slow = b"\x07\x00\x00\x01\x00\x01\x00\x02\x08\x00\x00";
        let digest = |bytes: &[u8]| {
            let mut digest = Digest::default();
            digest.add_masked(bytes, &[7]);
            digest.finish()
        };
        assert_eq!(digest(fast), digest(slow));
        let mut in_transaction = *fast;
        in_transaction[7] |= 0x01;
        assert_ne!(digest(fast), digest(&in_transaction), "other flags count");
    }
}
