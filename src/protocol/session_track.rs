//! Session-state information in OK packets (CLIENT_SESSION_TRACK): which
//! value a tracked system variable took, such as MariaDB's `last_gtid`,
//! the GTIDs MySQL reports for a session's commits, and the entries of the
//! state-change tracker that rwsplit turns on for itself, taken out of
//! what the client receives ([`strip`]).
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

use super::packet::{put_lenenc, read_lenenc, read_lenenc_bytes};

/// Entry type of a changed system variable.
const SYSTEM_VARIABLES: u8 = 0;
/// Entry type of the state-change tracker (`session_track_state_change`).
const STATE_CHANGE: u8 = 2;
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

/// Whether this OK packet has an entry of the state-change tracker: the
/// statement changed the session's state (a variable, the database, a
/// temporary table, a prepared statement), as opposed to only moving a
/// tracked variable such as `last_gtid`. Never panics on arbitrary bytes.
pub fn reports_state_change(ok: &[u8]) -> bool {
    changes(ok).is_some_and(|mut entries| entries.any(|(kind, _)| kind == STATE_CHANGE))
}

/// The session-state entries of an OK packet: none unless its status
/// says the state changed.
fn changes(ok: &[u8]) -> Option<Changes<'_>> {
    Layout::of(ok).map(|layout| Changes(layout.changes))
}

/// What of the session-state changes an OK packet reports a client gets,
/// on a backend connection where rwsplit negotiated CLIENT_SESSION_TRACK
/// and turned the state-change tracker on for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTracking {
    /// The client did not negotiate CLIENT_SESSION_TRACK: nothing.
    Nothing,
    /// It did: every entry but the state-change tracker's.
    Requested,
    /// It did, and turned the state-change tracker on itself: everything.
    Everything,
}

/// The OK packet `ok` as the server would have sent it to a client
/// tracking what `tracking` says; `None` when that is `ok` itself. As a
/// server does, the info text is left out when it is empty and no state
/// change is reported, and the SERVER_SESSION_STATE_CHANGED flag goes with
/// the last entry. Never panics on arbitrary bytes (a packet it cannot
/// read is left as it is).
pub fn strip(ok: &[u8], tracking: ClientTracking) -> Option<Vec<u8>> {
    let layout = Layout::of(ok)?;
    let keep = |kind: u8| match tracking {
        ClientTracking::Nothing => false,
        ClientTracking::Requested => kind != STATE_CHANGE,
        ClientTracking::Everything => true,
    };
    let mut entries = Vec::with_capacity(layout.changes.len());
    let mut all_kept = true;
    let mut walked = Changes(layout.changes);
    for (kind, data) in walked.by_ref() {
        if keep(kind) {
            entries.push(kind);
            put_lenenc(&mut entries, data.len() as u64);
            entries.extend_from_slice(data);
        } else {
            all_kept = false;
        }
    }
    if all_kept || !walked.0.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(ok.len());
    out.extend_from_slice(&ok[..layout.status]);
    let mut status = u16::from_le_bytes([ok[layout.status], ok[layout.status + 1]]);
    if entries.is_empty() {
        status &= !StatusFlags::SERVER_SESSION_STATE_CHANGED.bits();
    }
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&ok[layout.status + 2..layout.status + 4]);
    if !entries.is_empty() || !layout.info.is_empty() {
        put_lenenc(&mut out, layout.info.len() as u64);
        out.extend_from_slice(layout.info);
    }
    if !entries.is_empty() {
        put_lenenc(&mut out, entries.len() as u64);
        out.extend_from_slice(&entries);
    }
    Some(out)
}

/// Where the parts of an OK packet that reports session-state changes are.
struct Layout<'a> {
    /// Offset of the status flags.
    status: usize,
    info: &'a [u8],
    changes: &'a [u8],
}

impl<'a> Layout<'a> {
    /// `None` unless `ok` is a whole OK packet with the state-changed flag.
    fn of(ok: &'a [u8]) -> Option<Layout<'a>> {
        let mut at = 1;
        for _ in 0..2 {
            let (_, used) = read_lenenc(ok.get(at..)?)?;
            at += used;
        }
        let status = at;
        let flags = ok.get(at..at + 2)?;
        let flags = StatusFlags::from_bits_truncate(u16::from_le_bytes([flags[0], flags[1]]));
        if !flags.contains(StatusFlags::SERVER_SESSION_STATE_CHANGED) {
            return None;
        }
        at += 4;
        let (info, used) = read_lenenc_bytes(ok.get(at..)?)?;
        at += used;
        let (changes, used) = read_lenenc_bytes(ok.get(at..)?)?;
        (at + used == ok.len()).then_some(Layout {
            status,
            info,
            changes,
        })
    }
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

    /// OK packets MariaDB 10.11 sent with the state-change tracker on, and
    /// what it sends with it off (captured with a raw client).
    const SET_USER_VARIABLE: &[u8] = b"\x00\x00\x00\x02\x40\x00\x00\x00\x03\x02\x01\x31";
    const SET_USER_VARIABLE_UNTRACKED: &[u8] = b"\x00\x00\x00\x02\x00\x00\x00";
    const SET_AUTOCOMMIT: &[u8] =
        b"\x00\x00\x00\x00\x40\x00\x00\x00\x14\x00\x0f\x0aautocommit\x03OFF\x02\x01\x31";
    const SET_AUTOCOMMIT_UNTRACKED: &[u8] =
        b"\x00\x00\x00\x00\x40\x00\x00\x00\x11\x00\x0f\x0aautocommit\x03OFF";
    /// `PREPARE`: an info text ("Statement prepared") and the tracker's entry.
    const PREPARED: &[u8] = b"\x00\x00\x00\x02\x40\x00\x00\x12Statement prepared\x03\x02\x01\x31";
    const PREPARED_UNTRACKED: &[u8] = b"\x00\x00\x00\x02\x00\x00\x00\x12Statement prepared";
    /// A result set's last packet with CLIENT_DEPRECATE_EOF.
    const SET_STATEMENT_END: &[u8] = b"\xfe\x00\x00\x02\x40\x00\x00\x00\x03\x02\x01\x31";

    #[test]
    fn the_state_change_trackers_entry_is_taken_out() {
        use ClientTracking::*;
        for (tracked, requested, nothing) in [
            (
                SET_USER_VARIABLE,
                SET_USER_VARIABLE_UNTRACKED,
                SET_USER_VARIABLE_UNTRACKED,
            ),
            (
                SET_AUTOCOMMIT,
                SET_AUTOCOMMIT_UNTRACKED,
                &b"\x00\x00\x00\x00\x00\x00\x00"[..],
            ),
            (PREPARED, PREPARED_UNTRACKED, PREPARED_UNTRACKED),
        ] {
            assert_eq!(strip(tracked, Requested).as_deref(), Some(requested));
            assert_eq!(strip(tracked, Nothing).as_deref(), Some(nothing));
            assert_eq!(strip(tracked, Everything), None);
            assert!(reports_state_change(tracked));
            assert!(!reports_state_change(requested));
        }
        assert!(
            !reports_state_change(INSERT_OK),
            "last_gtid moves by itself"
        );
        assert_eq!(
            strip(SET_STATEMENT_END, Requested).as_deref(),
            Some(&b"\xfe\x00\x00\x02\x00\x00\x00"[..])
        );
        // Without the flag, or without entries to take out: as it is.
        assert_eq!(strip(SET_USER_VARIABLE_UNTRACKED, Nothing), None);
        assert_eq!(strip(SET_AUTOCOMMIT_UNTRACKED, Requested), None);
        assert_eq!(strip(INSERT_OK, Requested), None);
    }

    #[test]
    fn a_packet_it_cannot_read_is_left_alone() {
        for end in 0..SET_AUTOCOMMIT.len() {
            assert_eq!(
                strip(&SET_AUTOCOMMIT[..end], ClientTracking::Nothing),
                None,
                "{end}"
            );
        }
        let mut trailing = SET_USER_VARIABLE.to_vec();
        trailing.push(0);
        assert_eq!(strip(&trailing, ClientTracking::Nothing), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = tracked_variable(&bytes, b"last_gtid");
            let _ = tracked_gtids(&bytes);
            let _ = strip(&bytes, ClientTracking::Nothing);
            let _ = strip(&bytes, ClientTracking::Requested);
            let _ = reports_state_change(&bytes);
        }
    }
}
