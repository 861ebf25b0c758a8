//! Session-state information in OK packets (CLIENT_SESSION_TRACK): which
//! value a tracked system variable took, such as MariaDB's `last_gtid`,
//! and the GTIDs MySQL reports for a session's commits.
//!
//! Layout of an OK packet on a connection with CLIENT_SESSION_TRACK:
//! header (0x00, or 0xFE when it ends a result set), affected rows and last
//! insert id (length-encoded), status flags (2), warnings (2), info
//! (length-encoded string), then, when the status has
//! SERVER_SESSION_STATE_CHANGED, the state changes as one length-encoded
//! string of entries: a type byte and length-encoded data. Type 0
//! (SESSION_TRACK_SYSTEM_VARIABLES) data is a length-encoded name and a
//! length-encoded value; type 3 (SESSION_TRACK_GTIDS) data is an encoding
//! byte (0: text) and a length-encoded GTID set.

use mysql_common::constants::StatusFlags;

use super::packet::{read_lenenc, read_lenenc_bytes};

/// Entry type of a changed system variable.
const SYSTEM_VARIABLES: u8 = 0;
/// Entry type of MySQL's GTID tracker (`session_track_gtids`).
const GTIDS: u8 = 3;
/// The one GTID encoding MySQL defines: the set as text.
const GTIDS_AS_TEXT: u8 = 0;

/// The value `name` took in this OK packet's session-state changes (the
/// last one when it changed several times), if the packet reports it.
/// Never panics on arbitrary bytes.
pub fn tracked_variable<'a>(ok: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    changes(ok)?
        .filter(|&(kind, _)| kind == SYSTEM_VARIABLES)
        .filter_map(|(_, data)| {
            let (variable, used) = read_lenenc_bytes(data)?;
            let (value, _) = read_lenenc_bytes(&data[used..])?;
            variable.eq_ignore_ascii_case(name).then_some(value)
        })
        .last()
}

/// The GTID set MySQL's GTID tracker reports in this OK packet, if any.
/// Never panics on arbitrary bytes.
pub fn tracked_gtids(ok: &[u8]) -> Option<&[u8]> {
    changes(ok)?
        .filter(|&(kind, _)| kind == GTIDS)
        .filter_map(|(_, data)| match data.split_first()? {
            (&GTIDS_AS_TEXT, set) => read_lenenc_bytes(set).map(|(set, _)| set),
            _ => None,
        })
        .last()
}

/// The session-state entries of an OK packet: none unless its status
/// says the state changed.
fn changes(ok: &[u8]) -> Option<Changes<'_>> {
    let mut at = 1;
    for _ in 0..2 {
        let (_, used) = read_lenenc(ok.get(at..)?)?;
        at += used;
    }
    let status = ok.get(at..at + 2)?;
    let status = StatusFlags::from_bits_truncate(u16::from_le_bytes([status[0], status[1]]));
    if !status.contains(StatusFlags::SERVER_SESSION_STATE_CHANGED) {
        return None;
    }
    at += 4;
    let (_, used) = read_lenenc_bytes(ok.get(at..)?)?;
    at += used;
    let (changes, _) = read_lenenc_bytes(ok.get(at..)?)?;
    Some(Changes(changes))
}

/// Walks `(type, data)` entries; stops at the first malformed one.
struct Changes<'a>(&'a [u8]);

impl<'a> Iterator for Changes<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, rest) = self.0.split_first()?;
        let Some((data, used)) = read_lenenc_bytes(rest) else {
            self.0 = &[];
            return None;
        };
        self.0 = &rest[used..];
        Some((kind, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The OK packet MariaDB sends for an INSERT with
    /// `session_track_system_variables='last_gtid'`: 1 row, autocommit,
    /// state changed, last_gtid=0-1-42. (tests/monitor.rs reads the same
    /// from a real server.)
    const INSERT_OK: &[u8] = b"\x00\x01\x00\x02\x40\x00\x00\x00\x13\x00\x11\x09last_gtid\x060-1-42";

    #[test]
    fn last_gtid_is_found() {
        assert_eq!(
            tracked_variable(INSERT_OK, b"last_gtid"),
            Some(&b"0-1-42"[..])
        );
        assert_eq!(
            tracked_variable(INSERT_OK, b"LAST_GTID"),
            Some(&b"0-1-42"[..])
        );
        assert_eq!(tracked_variable(INSERT_OK, b"autocommit"), None);
    }

    #[test]
    fn other_entries_and_repeats_are_walked_past() {
        // A schema change (type 1) first, then last_gtid twice.
        let mut changes = b"\x01\x03\x02db".to_vec();
        changes.extend_from_slice(b"\x00\x11\x09last_gtid\x060-1-41");
        changes.extend_from_slice(b"\x00\x11\x09last_gtid\x060-1-42");
        let mut ok = b"\x00\x00\x00\x02\x40\x00\x00\x00".to_vec();
        ok.push(changes.len() as u8);
        ok.extend_from_slice(&changes);
        assert_eq!(tracked_variable(&ok, b"last_gtid"), Some(&b"0-1-42"[..]));
    }

    #[test]
    fn without_the_state_changed_flag_nothing_is_read() {
        let mut ok = INSERT_OK.to_vec();
        ok[4] = 0x00;
        assert_eq!(tracked_variable(&ok, b"last_gtid"), None);
        assert_eq!(
            tracked_variable(b"\x00\x00\x00\x02\x00\x00\x00", b"last_gtid"),
            None
        );
    }

    #[test]
    fn truncated_packets_give_nothing() {
        for end in 0..INSERT_OK.len() {
            assert_eq!(
                tracked_variable(&INSERT_OK[..end], b"last_gtid"),
                None,
                "{end}"
            );
        }
    }

    /// An OK packet as MySQL sends it with `session_track_gtids=OWN_GTID`
    /// after a commit: the tracker entry (type 3) holds the encoding byte
    /// and the set.
    fn mysql_ok(set: &[u8]) -> Vec<u8> {
        let mut entry = vec![GTIDS_AS_TEXT, set.len() as u8];
        entry.extend_from_slice(set);
        let mut changes = vec![GTIDS, entry.len() as u8];
        changes.extend_from_slice(&entry);
        let mut ok = b"\x00\x01\x00\x02\x40\x00\x00\x00".to_vec();
        ok.push(changes.len() as u8);
        ok.extend_from_slice(&changes);
        ok
    }

    #[test]
    fn mysql_gtids_are_found() {
        let set = b"3e11fa47-71ca-11e1-9e33-c80aa9429562:23";
        let ok = mysql_ok(set);
        assert_eq!(tracked_gtids(&ok), Some(&set[..]));
        assert_eq!(tracked_variable(&ok, b"last_gtid"), None);
        assert_eq!(tracked_gtids(INSERT_OK), None);
        let mut unknown_encoding = ok.clone();
        unknown_encoding[11] = 1;
        assert_eq!(tracked_gtids(&unknown_encoding), None);
        for end in 0..ok.len() {
            assert_eq!(tracked_gtids(&ok[..end]), None, "{end}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = tracked_variable(&bytes, b"last_gtid");
            let _ = tracked_gtids(&bytes);
        }
    }
}
