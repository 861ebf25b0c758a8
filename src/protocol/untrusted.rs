//! Parsing untrusted bytes with mysql_common's packet types, without ever
//! panicking.
//!
//! mysql_common's parsers return errors for most malformed input, but not
//! all: its greeting parser computes `auth_plugin_data_len as i8 - 8`, which
//! overflows (a panic in builds with overflow checks) for lengths of 0x80 to
//! 0x87. Every parse of bytes from a peer goes through [`parse`], which turns
//! any such panic into `None`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;

/// Parses `bytes` as `T`; `None` when they are not a valid `T`.
pub fn parse<'de, T>(bytes: &'de [u8]) -> Option<T>
where
    T: MyDeserialize<'de, Ctx = ()>,
{
    // The closure only reads `bytes`; a panic leaves nothing half-changed.
    catch_unwind(AssertUnwindSafe(|| ParseBuf(bytes).parse::<T>(()).ok()))
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::packets::HandshakePacket;

    #[test]
    fn the_overflowing_greeting_is_refused_not_a_panic() {
        // Protocol 10, version "x", then an auth_plugin_data_len of 0x80.
        let mut greeting = vec![10, b'x', 0];
        greeting.extend_from_slice(&[0; 4 + 8 + 1]); // connection id, scramble 1, filler
        greeting.extend_from_slice(&[0x00, 0x80]); // capabilities (SECURE_CONNECTION)
        greeting.extend_from_slice(&[45, 0, 0, 0, 0]); // collation, status, capabilities 2
        greeting.push(0x80); // auth_plugin_data_len
        greeting.extend_from_slice(&[0; 10]);
        greeting.extend_from_slice(&[b'a'; 40]);
        assert!(parse::<HandshakePacket>(&greeting).is_none());
    }
}
