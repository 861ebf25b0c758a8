//! The MySQL wire protocol, as much of it as a faithful relay needs.
//!
//! Everything here is pure: functions over byte buffers, table-tested on
//! hand-built packets and fuzzed with proptest. Sockets live elsewhere.
//!
//! | module | owns |
//! |---|---|
//! | [`packet`] | framing: headers, >16 MiB chunking, length-encoded integers |
//! | [`compress`] | the compressed protocol's zlib frames |
//! | [`command`] | client commands: decoding, statement ids, parameter types |
//! | [`change_user`] | COM_CHANGE_USER parsing |
//! | [`response`] | where a backend's response ends, and its status flags |
//! | [`digest`] | a digest of a response's bytes, for transaction replay |
//! | [`session_track`] | session-state changes in OK packets (`last_gtid`, MySQL GTIDs) |
//! | [`messages`] | ERR and OK packets rwsplit writes, and its error catalogue |
//! | [`auth`] | nonces, scramble checks, the caching_sha2 RSA key |
//! | [`untrusted`] | mysql_common's packet parsers on peer bytes, panic-free |

pub mod auth;
pub mod change_user;
pub mod command;
pub mod compress;
pub mod digest;
pub mod messages;
pub mod packet;
pub mod response;
pub mod session_track;
pub mod untrusted;
