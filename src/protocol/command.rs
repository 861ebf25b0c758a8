//! Client commands: the command byte and the fixed-layout fields rwsplit
//! reads or rewrites (statement ids, cursor flags, parameter types).
//!
//! [`Command::decode`] is a pure function over the first chunk of a packet;
//! it never panics, whatever the bytes.

/// Command bytes.
pub mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const CREATE_DB: u8 = 0x05;
    pub const DROP_DB: u8 = 0x06;
    pub const REFRESH: u8 = 0x07;
    pub const SHUTDOWN: u8 = 0x08;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const DEBUG: u8 = 0x0d;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const TABLE_DUMP: u8 = 0x13;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// MariaDB's array execution (MARIADB_CLIENT_STMT_BULK_OPERATIONS).
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
}

/// COM_STMT_BULK_EXECUTE's flag: the parameter types follow the flags.
const BULK_SEND_TYPES: u8 = 0x80;

/// The statement id MariaDB accepts in COM_STMT_EXECUTE to mean "the
/// statement prepared last on this connection".
pub const LAST_PREPARED: u32 = 0xFFFF_FFFF;

/// A decoded client command (borrowing from the packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    Quit,
    InitDb(&'a [u8]),
    Query(&'a [u8]),
    FieldList,
    Statistics,
    ProcessInfo,
    ProcessKill(u32),
    Debug,
    Ping,
    Refresh,
    ChangeUser,
    Prepare(&'a [u8]),
    Execute {
        statement: u32,
        flags: u8,
    },
    SendLongData {
        statement: u32,
    },
    Close {
        statement: u32,
    },
    Reset {
        statement: u32,
    },
    Fetch {
        statement: u32,
    },
    /// MariaDB's COM_STMT_BULK_EXECUTE: one statement, many rows of
    /// parameters.
    BulkExecute {
        statement: u32,
    },
    SetOption,
    ResetConnection,
    /// A real command a proxy must not relay (replication, shutdown...).
    Refused(&'static str),
    /// A command byte rwsplit does not know.
    Unknown(u8),
}

/// The packet is too short for its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0} packet")]
pub struct Malformed(pub &'static str);

impl<'a> Command<'a> {
    /// Decodes a command from the first chunk of its packet.
    pub fn decode(payload: &'a [u8]) -> Result<Command<'a>, Malformed> {
        let Some((&byte, body)) = payload.split_first() else {
            return Err(Malformed("empty"));
        };
        let id = |name| statement_id(payload).ok_or(Malformed(name));
        Ok(match byte {
            com::QUIT => Command::Quit,
            com::INIT_DB => Command::InitDb(body),
            com::QUERY => Command::Query(body),
            com::FIELD_LIST => Command::FieldList,
            com::STATISTICS => Command::Statistics,
            com::PROCESS_INFO => Command::ProcessInfo,
            com::PROCESS_KILL => {
                Command::ProcessKill(u32_at(body, 0).ok_or(Malformed("COM_PROCESS_KILL"))?)
            }
            com::DEBUG => Command::Debug,
            com::PING => Command::Ping,
            com::REFRESH => match body.first() {
                Some(flags) if flags & REFRESH_REPLICATION != 0 => Command::Refused(
                    "COM_REFRESH that rotates or resets the binary log or replication \
                     (REFRESH_LOG, REFRESH_SLAVE, REFRESH_MASTER), on which failover relies; \
                     run such maintenance on the server itself",
                ),
                _ => Command::Refresh,
            },
            com::CHANGE_USER => Command::ChangeUser,
            com::STMT_PREPARE => Command::Prepare(body),
            com::STMT_EXECUTE => {
                // id(4) flags(1) iteration count(4)
                if payload.len() < 10 {
                    return Err(Malformed("COM_STMT_EXECUTE"));
                }
                Command::Execute {
                    statement: id("COM_STMT_EXECUTE")?,
                    flags: payload[5],
                }
            }
            com::STMT_SEND_LONG_DATA => {
                if payload.len() < 7 {
                    return Err(Malformed("COM_STMT_SEND_LONG_DATA"));
                }
                Command::SendLongData {
                    statement: id("COM_STMT_SEND_LONG_DATA")?,
                }
            }
            com::STMT_CLOSE => Command::Close {
                statement: id("COM_STMT_CLOSE")?,
            },
            com::STMT_RESET => Command::Reset {
                statement: id("COM_STMT_RESET")?,
            },
            com::STMT_FETCH => {
                if payload.len() < 9 {
                    return Err(Malformed("COM_STMT_FETCH"));
                }
                Command::Fetch {
                    statement: id("COM_STMT_FETCH")?,
                }
            }
            com::STMT_BULK_EXECUTE => {
                // id(4) flags(2)
                if payload.len() < 7 {
                    return Err(Malformed("COM_STMT_BULK_EXECUTE"));
                }
                Command::BulkExecute {
                    statement: id("COM_STMT_BULK_EXECUTE")?,
                }
            }
            com::SET_OPTION => {
                if payload.len() < 3 {
                    return Err(Malformed("COM_SET_OPTION"));
                }
                Command::SetOption
            }
            com::RESET_CONNECTION => Command::ResetConnection,
            com::SHUTDOWN => {
                Command::Refused("COM_SHUTDOWN through a proxy; connect to the server itself")
            }
            com::CREATE_DB | com::DROP_DB => {
                Command::Refused("the removed COM_CREATE_DB/COM_DROP_DB; use CREATE/DROP DATABASE")
            }
            com::BINLOG_DUMP | com::BINLOG_DUMP_GTID | com::TABLE_DUMP | com::REGISTER_SLAVE => {
                Command::Refused("replication commands; replicate from the server itself")
            }
            other => Command::Unknown(other),
        })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The statement id of a COM_STMT_* packet (bytes 1..5).
pub fn statement_id(payload: &[u8]) -> Option<u32> {
    u32_at(payload, 1)
}

/// Writes a statement id into a COM_STMT_* packet or a PREPARE_OK.
pub fn set_statement_id(payload: &mut [u8], id: u32) {
    if let Some(field) = payload.get_mut(1..5) {
        field.copy_from_slice(&id.to_le_bytes());
    }
}

/// Whether a COM_STMT_EXECUTE's flags ask for a cursor.
pub fn wants_cursor(flags: u8) -> bool {
    flags & 0x07 != 0
}

/// Where a COM_STMT_EXECUTE or COM_STMT_BULK_EXECUTE keeps its parameter
/// types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecuteLayout {
    /// The byte whose bit `types_bit` says the types follow: the "new
    /// parameters bound" flag of COM_STMT_EXECUTE, the bulk flags of
    /// COM_STMT_BULK_EXECUTE.
    pub types_flag_at: usize,
    pub types_bit: u8,
    /// Where the types are, or would go.
    pub types_at: usize,
    /// The parameter types (2 bytes each), when the packet carries them.
    pub types: Option<(usize, usize)>,
}

/// Locates the parameter types in a COM_STMT_EXECUTE for a statement with
/// `params` parameters. `None` when the statement has none (nothing to find)
/// or the packet is too short.
pub fn execute_layout(payload: &[u8], params: u16) -> Option<ExecuteLayout> {
    if params == 0 {
        return None;
    }
    // command(1) id(4) flags(1) iterations(4) null bitmap
    let bound_flag_at = 10 + usize::from(params).div_ceil(8);
    let bound = *payload.get(bound_flag_at)?;
    layout(
        payload,
        params,
        (bound_flag_at, 1),
        bound_flag_at + 1,
        bound == 1,
    )
}

/// Locates the parameter types in a COM_STMT_BULK_EXECUTE for a statement
/// with `params` parameters, as [`execute_layout`] does.
pub fn bulk_layout(payload: &[u8], params: u16) -> Option<ExecuteLayout> {
    if params == 0 {
        return None;
    }
    // command(1) id(4) flags(2), the types flag in the first byte
    let flags = *payload.get(5)?;
    let sent = flags & BULK_SEND_TYPES != 0;
    layout(payload, params, (5, BULK_SEND_TYPES), 7, sent)
}

/// The layout of an execution whose types flag is bit `flag.1` of byte
/// `flag.0`, with the types, if `sent`, at `types_at`.
fn layout(
    payload: &[u8],
    params: u16,
    (types_flag_at, types_bit): (usize, u8),
    types_at: usize,
    sent: bool,
) -> Option<ExecuteLayout> {
    let end = types_at + 2 * usize::from(params);
    if payload.len() < if sent { end } else { types_at } {
        return None;
    }
    let types = sent.then_some((types_at, end));
    Some(ExecuteLayout {
        types_flag_at,
        types_bit,
        types_at,
        types,
    })
}

/// Rebuilds an execution that did not send types so that it carries
/// `types`: needed when a statement runs on a backend that has not yet seen
/// its types.
pub fn with_types(payload: &[u8], layout: ExecuteLayout, types: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + types.len());
    out.extend_from_slice(&payload[..layout.types_at]);
    out[layout.types_flag_at] |= layout.types_bit;
    out.extend_from_slice(types);
    out.extend_from_slice(&payload[layout.types_at..]);
    out
}

/// COM_REFRESH flags that rotate or reset the binary log or replication:
/// REFRESH_LOG (0x02, FLUSH LOGS), REFRESH_SLAVE (0x40, RESET SLAVE),
/// REFRESH_MASTER (0x80, RESET MASTER).
const REFRESH_REPLICATION: u8 = 0x02 | 0x40 | 0x80;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_decode() {
        let cases: &[(&[u8], Command)] = &[
            (b"\x01", Command::Quit),
            (b"\x03SELECT 1", Command::Query(b"SELECT 1")),
            (b"\x02db", Command::InitDb(b"db")),
            (b"\x0e", Command::Ping),
            (b"\x0c\x05\x00\x00\x00", Command::ProcessKill(5)),
            (b"\x16SELECT ?", Command::Prepare(b"SELECT ?")),
            (
                b"\x17\x07\x00\x00\x00\x01\x01\x00\x00\x00",
                Command::Execute {
                    statement: 7,
                    flags: 1,
                },
            ),
            (
                b"\x18\x07\x00\x00\x00\x00\x00data",
                Command::SendLongData { statement: 7 },
            ),
            (b"\x19\x07\x00\x00\x00", Command::Close { statement: 7 }),
            (b"\x1a\x07\x00\x00\x00", Command::Reset { statement: 7 }),
            (
                b"\x1c\x07\x00\x00\x00\x10\x00\x00\x00",
                Command::Fetch { statement: 7 },
            ),
            (b"\x1b\x01\x00", Command::SetOption),
            (b"\x1f", Command::ResetConnection),
            (b"\x99", Command::Unknown(0x99)),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Command::decode(bytes), Ok(*expected), "{bytes:?}");
        }
        assert!(matches!(Command::decode(b"\x12"), Ok(Command::Refused(_))));
        assert!(matches!(Command::decode(b"\x08"), Ok(Command::Refused(_))));
        // RESET MASTER, RESET SLAVE, FLUSH LOGS: refused; FLUSH TABLES, STATUS: relayed.
        for flags in [0x80u8, 0x40, 0x02, 0x81] {
            assert!(
                matches!(Command::decode(&[0x07, flags]), Ok(Command::Refused(_))),
                "{flags:#x}"
            );
        }
        for flags in [0x04u8, 0x10, 0x01] {
            assert_eq!(
                Command::decode(&[0x07, flags]),
                Ok(Command::Refresh),
                "{flags:#x}"
            );
        }
    }

    #[test]
    fn short_packets_are_malformed() {
        for bytes in [
            &b""[..],
            b"\x17\x01\x00",
            b"\x0c\x01",
            b"\x19",
            b"\x1c\x01\x00\x00\x00",
            b"\x18\x01\x00\x00\x00",
            b"\x1b",
        ] {
            assert!(Command::decode(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn statement_ids_are_rewritten_in_place() {
        let mut packet = b"\x17\x07\x00\x00\x00\x00\x01\x00\x00\x00".to_vec();
        set_statement_id(&mut packet, 0x0102_0304);
        assert_eq!(statement_id(&packet), Some(0x0102_0304));
        assert_eq!(&packet[5..], b"\x00\x01\x00\x00\x00");
    }

    #[test]
    fn parameter_types_are_found_and_added() {
        // Two params: bitmap 1 byte, bound flag, types (2 x 2 bytes), values.
        let with =
            b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x03\x00\xfe\x00VALUES".to_vec();
        let layout = execute_layout(&with, 2).unwrap();
        assert_eq!(
            layout,
            ExecuteLayout {
                types_flag_at: 11,
                types_bit: 1,
                types_at: 12,
                types: Some((12, 16))
            }
        );
        let without = b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00VALUES".to_vec();
        let layout = execute_layout(&without, 2).unwrap();
        assert_eq!(layout.types, None);
        assert_eq!(with_types(&without, layout, b"\x03\x00\xfe\x00"), with);
        assert_eq!(execute_layout(&with, 0), None);
        assert_eq!(execute_layout(&with[..13], 2), None, "types cut short");
        assert!(wants_cursor(1) && !wants_cursor(0));
    }

    #[test]
    fn bulk_executions_decode_and_their_types_are_found_and_added() {
        // Two params: flags (types follow), types (2 x 2 bytes), then rows.
        let with = b"\xfa\x01\x00\x00\x00\x80\x00\x03\x00\xfe\x00ROWS".to_vec();
        assert_eq!(
            Command::decode(&with),
            Ok(Command::BulkExecute { statement: 1 })
        );
        assert!(Command::decode(b"\xfa\x01\x00\x00\x00\x80").is_err());
        let layout = bulk_layout(&with, 2).unwrap();
        assert_eq!(layout.types, Some((7, 11)));
        let without = b"\xfa\x01\x00\x00\x00\x00\x00ROWS".to_vec();
        let layout = bulk_layout(&without, 2).unwrap();
        assert_eq!(layout.types, None);
        assert_eq!(with_types(&without, layout, b"\x03\x00\xfe\x00"), with);
        assert_eq!(bulk_layout(&with, 0), None);
        assert_eq!(bulk_layout(&with[..9], 2), None, "types cut short");
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), params in 0u16..20) {
            let _ = Command::decode(&bytes);
            for layout in [execute_layout(&bytes, params), bulk_layout(&bytes, params)].into_iter().flatten() {
                let _ = with_types(&bytes, layout, &vec![0; 2 * usize::from(params)]);
            }
        }
    }
}
