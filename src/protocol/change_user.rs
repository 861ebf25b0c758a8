//! COM_CHANGE_USER parsing. (mysql_common only builds this packet, as a
//! client; rwsplit receives it.)

use std::collections::HashMap;

use mysql_common::constants::CapabilityFlags;

use super::command::Malformed;
use super::packet::{read_lenenc, read_lenenc_bytes};

/// The fields of a COM_CHANGE_USER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser<'a> {
    pub user: &'a [u8],
    pub auth_response: &'a [u8],
    /// Empty when no database is selected.
    pub db: &'a [u8],
    /// The client's collation, when sent.
    pub collation: Option<u16>,
    pub plugin: Option<&'a [u8]>,
    pub attributes: Option<HashMap<String, String>>,
}

/// Parses a COM_CHANGE_USER payload (starting with 0x11) from a client with
/// `capabilities`.
pub fn parse_change_user(
    payload: &[u8],
    capabilities: CapabilityFlags,
) -> Result<ChangeUser<'_>, Malformed> {
    let bad = Malformed("COM_CHANGE_USER");
    let rest = payload.strip_prefix(&[0x11]).ok_or(bad)?;
    let (user, rest) = null_terminated(rest).ok_or(bad)?;
    let (auth_response, rest) = if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION)
    {
        let (&len, rest) = rest.split_first().ok_or(bad)?;
        let len = usize::from(len);
        (rest.get(..len).ok_or(bad)?, &rest[len..])
    } else {
        null_terminated(rest).ok_or(bad)?
    };
    let (db, mut rest) = null_terminated(rest).unwrap_or((rest, &[]));
    let mut collation = None;
    if let [c0, c1, tail @ ..] = rest {
        collation = Some(u16::from_le_bytes([*c0, *c1]));
        rest = tail;
    }
    let mut plugin = None;
    if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !rest.is_empty() {
        let (name, tail) = null_terminated(rest).unwrap_or((rest, &[]));
        plugin = Some(name);
        rest = tail;
    }
    let mut attributes = None;
    if capabilities.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) && !rest.is_empty() {
        attributes = Some(parse_attributes(rest).ok_or(bad)?);
    }
    Ok(ChangeUser {
        user,
        auth_response,
        db,
        collation,
        plugin,
        attributes,
    })
}

fn null_terminated(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..end], &bytes[end + 1..]))
}

fn parse_attributes(bytes: &[u8]) -> Option<HashMap<String, String>> {
    let (len, used) = read_lenenc(bytes)?;
    let mut rest = bytes.get(used..used.checked_add(usize::try_from(len).ok()?)?)?;
    let mut attributes = HashMap::new();
    while !rest.is_empty() {
        let (key, used) = read_lenenc_bytes(rest)?;
        rest = &rest[used..];
        let (value, used) = read_lenenc_bytes(rest)?;
        rest = &rest[used..];
        attributes.insert(
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        );
    }
    Some(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CAPS: CapabilityFlags = CapabilityFlags::CLIENT_SECURE_CONNECTION
        .union(CapabilityFlags::CLIENT_PLUGIN_AUTH)
        .union(CapabilityFlags::CLIENT_CONNECT_ATTRS);

    #[test]
    fn a_full_change_user() {
        let mut packet = b"\x11bob\x00\x03abcshop\x00\x2d\x00mysql_native_password\x00".to_vec();
        packet.extend_from_slice(b"\x0b\x04_pid\x0512345");
        let parsed = parse_change_user(&packet, CAPS).unwrap();
        assert_eq!(parsed.user, b"bob");
        assert_eq!(parsed.auth_response, b"abc");
        assert_eq!(parsed.db, b"shop");
        assert_eq!(parsed.collation, Some(45));
        assert_eq!(parsed.plugin, Some(&b"mysql_native_password"[..]));
        assert_eq!(parsed.attributes.unwrap()["_pid"], "12345");
    }

    #[test]
    fn a_minimal_change_user() {
        let parsed = parse_change_user(b"\x11bob\x00\x00\x00", CAPS).unwrap();
        assert_eq!(
            (parsed.user, parsed.auth_response, parsed.db),
            (&b"bob"[..], &b""[..], &b""[..])
        );
        assert_eq!((parsed.collation, parsed.plugin), (None, None));
    }

    #[test]
    fn truncated_packets_are_malformed() {
        for bytes in [
            &b"\x11"[..],
            b"\x11bob",
            b"\x11bob\x00\x05ab",
            b"\x12bob\x00\x00\x00",
        ] {
            assert!(parse_change_user(bytes, CAPS).is_err(), "{bytes:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_change_user(&bytes, CAPS);
        }
    }
}
