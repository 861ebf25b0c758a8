//! The third-party decoders rwsplit feeds untrusted bytes never panic:
//! mysql_common's connection-phase parsers, on arbitrary input. (rwsplit's
//! own decoders are fuzzed next to their code, in src/protocol.)

use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthSwitchRequest, HandshakePacket, HandshakeResponse};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// A client's HandshakeResponse41 (parsed before authentication).
    #[test]
    fn handshake_responses(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ParseBuf(&bytes).parse::<HandshakeResponse>(());
    }

    /// A backend's greeting and auth switch request.
    #[test]
    fn greetings_and_auth_switches(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ParseBuf(&bytes).parse::<HandshakePacket>(());
        let _ = ParseBuf(&bytes).parse::<AuthSwitchRequest>(());
    }

    /// Structured inputs that look like a HandshakeResponse41 get past the
    /// fixed header, so the variable fields are exercised too.
    #[test]
    fn plausible_handshake_responses(flags: u32, tail in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut bytes = flags.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 1, 45]);
        bytes.extend_from_slice(&[0; 23]);
        bytes.extend_from_slice(&tail);
        let _ = ParseBuf(&bytes).parse::<HandshakeResponse>(());
    }
}
