//! A digest of a response's bytes: transaction replay compares what a
//! statement answered the first time with what it answers when run again.

use std::hash::Hasher;
use std::num::NonZeroU64;

/// Fed a response's bytes in order, in pieces of any size.
#[derive(Debug, Default)]
pub struct Digest(std::hash::DefaultHasher);

impl Digest {
    pub fn add(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
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
}
