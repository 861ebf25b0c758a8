//! Packets rwsplit writes itself — ERR and OK — and every error it sends to
//! a client, with the code and SQL state a MySQL/MariaDB server would use.

use mysql_common::constants::StatusFlags;

use super::packet::{put_lenenc, read_lenenc_bytes};

/// An error to send to a client as an ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPacket {
    pub code: u16,
    pub state: [u8; 5],
    pub message: String,
}

impl ErrorPacket {
    fn new(code: u16, state: &[u8; 5], message: impl Into<String>) -> Self {
        ErrorPacket {
            code,
            state: *state,
            message: message.into(),
        }
    }

    /// The packet payload (protocol 4.1 form, with the SQL state).
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.message.len());
        out.push(0xFF);
        out.extend_from_slice(&self.code.to_le_bytes());
        out.push(b'#');
        out.extend_from_slice(&self.state);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// The payload for a client whose capabilities are not known yet (an
    /// error instead of the greeting): without the SQL state, which such a
    /// client would read as part of the message.
    pub fn payload_before_handshake(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.message.len());
        out.push(0xFF);
        out.extend_from_slice(&self.code.to_le_bytes());
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// Parses an ERR packet payload (starting with 0xFF).
    pub fn parse(payload: &[u8]) -> Option<ErrorPacket> {
        let [0xFF, c0, c1, rest @ ..] = payload else {
            return None;
        };
        let (state, message) = match rest {
            [b'#', s @ ..] if s.len() >= 5 => (s[..5].try_into().ok()?, &s[5..]),
            _ => (*b"HY000", rest),
        };
        Some(ErrorPacket {
            code: u16::from_le_bytes([*c0, *c1]),
            state,
            message: String::from_utf8_lossy(message).into_owned(),
        })
    }

    /// ER_CON_COUNT_ERROR: the connection limit is reached.
    pub fn too_many_connections() -> Self {
        Self::new(1040, b"08004", "Too many connections")
    }

    /// ER_CON_COUNT_ERROR for `listen.max_logins_per_address`.
    pub fn too_many_logins() -> Self {
        Self::new(
            1040,
            b"08004",
            "Too many connections from this address are logging in at once",
        )
    }

    /// ER_ACCESS_DENIED_ERROR, worded exactly as MySQL does; it never says
    /// whether the user or the password was wrong.
    pub fn access_denied(user: &str, host: &str, used_password: bool) -> Self {
        let using = if used_password { "YES" } else { "NO" };
        Self::new(
            1045,
            b"28000",
            format!("Access denied for user '{user}'@'{host}' (using password: {using})"),
        )
    }

    /// ER_HANDSHAKE_ERROR: a HandshakeResponse rwsplit cannot use.
    pub fn bad_handshake() -> Self {
        Self::new(1043, b"08S01", "Bad handshake")
    }

    /// ER_UNKNOWN_COM_ERROR.
    pub fn unknown_command() -> Self {
        Self::new(1047, b"08S01", "Unknown command")
    }

    /// ER_OUT_OF_RESOURCES, for a packet over `listen.buffered_packet_budget`.
    pub fn packet_budget_exhausted() -> Self {
        Self::new(
            1041,
            b"HY000",
            "Out of memory: rwsplit is receiving too many large packets at once (listen.buffered_packet_budget); send it again later",
        )
    }

    /// ER_NET_PACKET_TOO_LARGE.
    pub fn packet_too_large() -> Self {
        Self::new(
            1153,
            b"08S01",
            "Got a packet bigger than 'max_allowed_packet' bytes",
        )
    }

    /// ER_NET_PACKETS_OUT_OF_ORDER.
    pub fn packets_out_of_order() -> Self {
        Self::new(1156, b"08S01", "Got packets out of order")
    }

    /// ER_MALFORMED_PACKET.
    pub fn malformed_packet() -> Self {
        Self::new(1835, b"HY000", "Malformed communication packet")
    }

    /// ER_SECURE_TRANSPORT_REQUIRED.
    pub fn insecure_transport() -> Self {
        Self::new(
            3159,
            b"08004",
            "Connections using insecure transport are prohibited: rwsplit requires TLS \
             (listen.tls.required); connect with TLS, e.g. mariadb --ssl",
        )
    }

    /// ER_NOT_SUPPORTED_AUTH_MODE: the client lacks what a login needs.
    pub fn client_cannot_authenticate(reason: &str) -> Self {
        Self::new(
            1251,
            b"08004",
            format!(
                "Client does not support authentication protocol requested by server; {reason}"
            ),
        )
    }

    /// CR_CONN_HOST_ERROR: no connection to a backend could be opened.
    pub fn backend_unreachable(backend: &str, address: &str, reason: &str) -> Self {
        Self::new(
            2003,
            b"HY000",
            format!("Can't connect to backend {backend} ({address}) through rwsplit: {reason}"),
        )
    }

    /// CR_SERVER_LOST: a backend connection died during a statement.
    pub fn backend_lost(backend: &str) -> Self {
        Self::new(
            2013,
            b"HY000",
            format!(
                "Lost connection to backend {backend} during query; whether the statement took \
                 effect is unknown; the session is closed"
            ),
        )
    }

    /// CR_SERVER_LOST: a transaction that lost its primary could not be
    /// replayed on the new one (`routing.transaction_replay`).
    pub fn transaction_not_replayed(from: &str, to: &str, why: &str) -> Self {
        Self::new(
            2013,
            b"HY000",
            format!(
                "Lost the transaction's primary {from}; replaying the transaction on the new \
                 primary {to} failed ({why}), so it was rolled back and the session is closed"
            ),
        )
    }

    /// ER_OPTION_PREVENTS_STATEMENT: no primary is known, so a statement
    /// that needs one cannot run; `why` is the monitor's alarm, if any.
    pub fn no_primary(why: Option<&str>) -> Self {
        let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
        Self::new(
            1290,
            b"HY000",
            format!(
                "rwsplit has no primary to run this statement on{why}; reads still work. \
                 See rwsplit status"
            ),
        )
    }

    /// ER_NO_SUCH_THREAD.
    pub fn unknown_thread(id: u64) -> Self {
        Self::new(1094, b"HY000", format!("Unknown thread id: {id}"))
    }

    /// ER_KILL_DENIED_ERROR.
    pub fn not_thread_owner(id: u64) -> Self {
        Self::new(1095, b"HY000", format!("You are not owner of thread {id}"))
    }

    /// ER_NOT_SUPPORTED_YET, naming what rwsplit does not do.
    pub fn not_supported(what: &str) -> Self {
        Self::new(1235, b"42000", format!("rwsplit does not support {what}"))
    }

    /// ER_UNKNOWN_STMT_HANDLER, as the server words it.
    pub fn unknown_statement(id: u32, command: &str) -> Self {
        Self::new(
            1243,
            b"HY000",
            format!("Unknown prepared statement handler ({id}) given to {command}"),
        )
    }

    /// ER_CONNECTION_KILLED: this session was killed with KILL.
    pub fn connection_killed() -> Self {
        Self::new(1927, b"70100", "Connection was killed")
    }
}

/// An OK packet payload (protocol 4.1) with no info text.
pub fn ok_payload(status: StatusFlags, warnings: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(7);
    out.push(0x00);
    put_lenenc(&mut out, 0); // affected rows
    put_lenenc(&mut out, 0); // last insert id
    out.extend_from_slice(&status.bits().to_le_bytes());
    out.extend_from_slice(&warnings.to_le_bytes());
    out
}

/// The values of a text-protocol row (the response to an internal
/// `SELECT x, y`): `None` for SQL NULL. `None` when the row is malformed
/// or has bytes after its last value.
pub fn text_row(mut row: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let mut values = Vec::new();
    while let Some(&first) = row.first() {
        if first == 0xFB {
            values.push(None);
            row = &row[1..];
        } else {
            let (value, used) = read_lenenc_bytes(row)?;
            values.push(Some(value));
            row = &row[used..];
        }
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip() {
        let error = ErrorPacket::access_denied("app", "127.0.0.1", true);
        assert_eq!(
            error.payload(),
            b"\xff\x15\x04#28000Access denied for user 'app'@'127.0.0.1' (using password: YES)"
        );
        assert_eq!(ErrorPacket::parse(&error.payload()), Some(error));
        let early = ErrorPacket::too_many_connections().payload_before_handshake();
        assert_eq!(early, b"\xff\x10\x04Too many connections");
        let old_style = ErrorPacket::parse(&early).unwrap();
        assert_eq!((old_style.code, &old_style.state), (1040, b"HY000"));
        assert_eq!(ErrorPacket::parse(b"\x00"), None);
        assert_eq!(ErrorPacket::parse(b"\xff\x01"), None);
    }

    #[test]
    fn ok_packets_carry_status_and_warnings() {
        assert_eq!(
            ok_payload(StatusFlags::SERVER_STATUS_AUTOCOMMIT, 3),
            [0, 0, 0, 2, 0, 3, 0]
        );
    }

    #[test]
    fn text_values() {
        assert_eq!(text_row(b"\x04test"), Some(vec![Some(&b"test"[..])]));
        assert_eq!(text_row(b"\xfb\x011"), Some(vec![None, Some(&b"1"[..])]));
        assert_eq!(text_row(b"\x05te"), None);
        assert_eq!(text_row(b""), Some(vec![]));
    }
}
