//! Parsing peer bytes with mysql_common's connection-phase packet types
//! never panics: rwsplit goes through `protocol::untrusted::parse`, fuzzed
//! here on arbitrary and on plausible input. (rwsplit's own decoders are
//! fuzzed next to their code, in src/protocol.) This test found that
//! mysql_common's greeting parser can panic; see protocol/untrusted.rs.

use mysql_common::packets::{AuthSwitchRequest, HandshakePacket, HandshakeResponse};
use proptest::prelude::*;
use rwsplit::protocol::untrusted::parse;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// A client's HandshakeResponse41 (parsed before authentication).
    #[test]
    fn handshake_responses(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse::<HandshakeResponse>(&bytes);
    }

    /// A backend's greeting and auth switch request.
    #[test]
    fn greetings_and_auth_switches(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse::<HandshakePacket>(&bytes);
        let _ = parse::<AuthSwitchRequest>(&bytes);
    }

    /// Greetings that get past the version string and fixed fields.
    #[test]
    fn plausible_greetings(fixed in proptest::collection::vec(any::<u8>(), 31), tail in proptest::collection::vec(any::<u8>(), 0..80)) {
        let mut bytes = vec![10, b'1', b'0', 0];
        bytes.extend_from_slice(&fixed);
        bytes.extend_from_slice(&tail);
        let _ = parse::<HandshakePacket>(&bytes);
    }

    /// Structured inputs that look like a HandshakeResponse41 get past the
    /// fixed header, so the variable fields are exercised too.
    #[test]
    fn plausible_handshake_responses(flags: u32, tail in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut bytes = flags.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 1, 45]);
        bytes.extend_from_slice(&[0; 23]);
        bytes.extend_from_slice(&tail);
        let _ = parse::<HandshakeResponse>(&bytes);
    }
}
