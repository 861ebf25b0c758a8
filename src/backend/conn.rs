//! One connection to a backend: TCP, optional TLS, and a login as the
//! client's user with the client's capability flags and collation, so that
//! the backend's responses can be forwarded to the client byte for byte.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mysql_common::constants::{CapabilityFlags, MariadbCapabilities, StatusFlags};
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio_rustls::TlsConnector;

use super::sockets::{Registered, Sockets};
use crate::net::Stream;
use crate::protocol::digest::Digest;
use crate::protocol::messages::{ErrorPacket, text_row};
use crate::protocol::packet::{
    Frame, FrameError, HEADER_LEN, packet_ranges, put_packet, read_lenenc, take_frame,
};
use crate::protocol::response::{Expect, ResponseScanner, Scan, ScanError};

mod login;

pub use login::mariadb_capabilities;

/// What turns the server's state-change tracker on for a session.
pub(crate) const TRACK_STATE: &str = "SET SESSION session_track_state_change = 1";

/// Largest packet accepted from a backend (the protocol's own limit).
const MAX_BACKEND_PACKET: usize = 1 << 30;
/// Smallest spare room kept in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// Where a backend is and how to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The backend's name from the configuration.
    pub name: String,
    /// `host:port`, resolved on each connect.
    pub address: String,
    /// TLS towards it, when configured.
    pub tls: Option<TlsTarget>,
    /// Limit on TCP connect plus login.
    pub connect_timeout: Duration,
    /// The connections open to this backend: each registers itself while
    /// it lives, to be counted and, when the backend stops being the
    /// primary, cut.
    pub sockets: Arc<Sockets>,
}

/// TLS settings for one backend.
#[derive(Clone)]
pub struct TlsTarget {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// Who to log in as, and how.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub db: Option<&'a str>,
    /// The client's negotiated capabilities; compression and TLS are removed
    /// (they are per side).
    pub capabilities: CapabilityFlags,
    /// The client's negotiated MariaDB extended capabilities.
    pub mariadb: MariadbCapabilities,
    pub collation: u8,
    pub attributes: Option<&'a HashMap<String, String>>,
    /// Negotiate CLIENT_SESSION_TRACK whatever the client said and turn
    /// the server's state-change tracker on, so that rwsplit learns of
    /// every change of session state (a session's connections; not
    /// rwsplit's own or a test's raw client).
    pub track_state: bool,
}

/// What a backend said about itself in its greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub version: Vec<u8>,
    pub capabilities: CapabilityFlags,
    /// MariaDB's extended capabilities (none from MySQL).
    pub mariadb: MariadbCapabilities,
    pub collation: u8,
    pub thread_id: u32,
}

impl Greeting {
    /// Whether the server is MariaDB (its version says so) rather than MySQL.
    pub fn is_mariadb(&self) -> bool {
        super::is_mariadb(&self.version)
    }
}

/// Why talking to a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("timed out after {0:?} connecting and logging in")]
    Timeout(Duration),
    #[error("the backend does not offer TLS, but tls is configured for it")]
    TlsUnavailable,
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    #[error("the backend refused: {} ({})", .0.message, .0.code)]
    Refused(ErrorPacket),
    #[error("the backend asked for authentication plugin {0}, which rwsplit does not implement")]
    UnsupportedPlugin(String),
    #[error(
        "the backend lacks capabilities the client negotiated ({standard:?}, {mariadb:?}): \
         clients are offered what every backend rwsplit has reached supports, and this one \
         was not reached before the client logged in (or has been replaced by an older server)"
    )]
    MissingCapabilities {
        standard: CapabilityFlags,
        mariadb: MariadbCapabilities,
        /// The backend's greeting, which says what it does offer.
        greeting: Box<Greeting>,
    },
    #[error("the backend sent an invalid packet: {0}")]
    Protocol(String),
    #[error("the connection cannot be reused: {0}")]
    NotReusable(&'static str),
    #[error("connection to the backend lost: {0}")]
    Io(#[from] io::Error),
}

impl From<FrameError> for BackendError {
    fn from(e: FrameError) -> Self {
        BackendError::Protocol(e.to_string())
    }
}

impl From<ScanError> for BackendError {
    fn from(e: ScanError) -> Self {
        BackendError::Protocol(e.to_string())
    }
}

/// An authenticated connection to a backend.
#[derive(Debug)]
pub struct BackendConn {
    /// Its socket in the endpoint's [`Sockets`]; first, so that it is
    /// dropped (unregistered) before `stream` closes the socket.
    _registered: Registered,
    stream: Stream,
    /// Bytes read from the backend and not yet consumed.
    buf: BytesMut,
    greeting: Greeting,
    /// The capabilities this connection was opened with.
    capabilities: CapabilityFlags,
    /// The MariaDB extended capabilities it was opened with.
    mariadb: MariadbCapabilities,
    /// Status flags of the last complete response.
    status: StatusFlags,
    /// The server's state-change tracker is on: every OK packet of a
    /// statement that changed session state says so.
    tracks_state: bool,
}

impl BackendConn {
    /// What the backend said in its greeting.
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// The backend's id for this connection (its `CONNECTION_ID()`).
    pub fn thread_id(&self) -> u32 {
        self.greeting.thread_id
    }

    /// The capabilities this connection was opened with.
    pub fn capabilities(&self) -> CapabilityFlags {
        self.capabilities
    }

    /// The MariaDB extended capabilities this connection was opened with.
    pub fn mariadb_capabilities(&self) -> MariadbCapabilities {
        self.mariadb
    }

    /// Whether this idle connection can still be used: nothing arrived on
    /// it since its last response (its server did not close it, restart
    /// or die). For connections taken from a pool.
    pub fn still_idle(&self) -> bool {
        self.buf.is_empty() && !self.stream.idle_disturbed()
    }

    /// Whether the server reports every change of session state on this
    /// connection (see [`Login::track_state`]).
    pub fn tracks_state(&self) -> bool {
        self.tracks_state
    }

    /// Turns the server's state-change tracker on, after a login or a
    /// reset; a server without one (older than MariaDB 10.2 or MySQL 5.7)
    /// leaves it off.
    pub async fn track_state(&mut self) -> Result<(), BackendError> {
        match self.run_query(TRACK_STATE).await {
            Ok(()) => self.tracks_state = true,
            Err(BackendError::Refused(_)) => self.tracks_state = false,
            Err(other) => return Err(other),
        }
        Ok(())
    }

    /// Runs a statement of rwsplit's own that returns no rows.
    pub async fn run_query(&mut self, sql: &str) -> Result<(), BackendError> {
        let mut payload = vec![crate::protocol::command::com::QUERY];
        payload.extend_from_slice(sql.as_bytes());
        self.run(&payload, Expect::Single).await.map(drop)
    }

    /// Whether the connection negotiated CLIENT_DEPRECATE_EOF.
    pub fn deprecate_eof(&self) -> bool {
        self.capabilities
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }

    /// A scanner for the response to a command on this connection, in the
    /// format it negotiated.
    pub fn scanner(&self, expect: Expect) -> ResponseScanner {
        let mut scanner = ResponseScanner::new(expect, self.deprecate_eof());
        if self.caches_metadata() {
            scanner = scanner.caching_metadata();
        }
        if self
            .mariadb
            .contains(MariadbCapabilities::MARIADB_CLIENT_PROGRESS)
        {
            scanner = scanner.reporting_progress();
        }
        scanner
    }

    /// Whether the connection negotiated MARIADB_CLIENT_CACHE_METADATA.
    pub fn caches_metadata(&self) -> bool {
        self.mariadb
            .contains(MariadbCapabilities::MARIADB_CLIENT_CACHE_METADATA)
    }

    /// Status flags of the last complete response.
    pub fn status(&self) -> StatusFlags {
        self.status
    }

    /// Keeps what the end of a complete response says of the session: the
    /// status flags of its last OK or EOF, and, when it ended with an
    /// error that rolls the whole transaction back, that none is open.
    pub fn response_ended(&mut self, status: Option<StatusFlags>, error: Option<u16>) {
        if let Some(status) = status {
            self.status = status;
        }
        if error.is_some_and(rolls_back_transaction) {
            self.status.remove(StatusFlags::SERVER_STATUS_IN_TRANS);
        }
    }

    /// Writes raw packet bytes.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Writes `payload` as a packet with sequence id `seq`.
    pub async fn send(&mut self, seq: u8, payload: &[u8]) -> Result<(), BackendError> {
        let mut out = Vec::with_capacity(payload.len() + 4);
        put_packet(&mut out, seq, payload);
        Ok(self.stream.write_all(&out).await?)
    }

    /// Bytes read and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    pub fn buffered_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Drops `n` consumed bytes from the front of the buffer.
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        if self.buf.is_empty() && self.buf.capacity() > 4 * 1024 * 1024 {
            // Give back memory after a large response.
            self.buf = BytesMut::with_capacity(READ_CHUNK);
        }
    }

    /// Reads more bytes into the buffer; returns how many (0 at end of stream).
    pub async fn fill(&mut self) -> io::Result<usize> {
        crate::net::make_room(&mut self.buf, READ_CHUNK);
        self.stream.read_buf(&mut self.buf).await
    }

    /// Reads one whole packet (for rwsplit's own exchanges).
    pub async fn read_frame(&mut self) -> Result<Frame, BackendError> {
        loop {
            if let Some(frame) = take_frame(&mut self.buf, MAX_BACKEND_PACKET)? {
                return Ok(frame);
            }
            if self.fill().await? == 0 {
                return Err(BackendError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Sends one command and reads its whole response as raw bytes,
    /// whatever it is (ERR included); the response must fit in memory.
    pub async fn exchange(
        &mut self,
        payload: &[u8],
        expect: Expect,
    ) -> Result<(Vec<u8>, ResponseScanner), BackendError> {
        self.send(0, payload).await?;
        let mut response = Vec::new();
        let scanner = self
            .read_response(expect, |bytes, _| response.extend_from_slice(bytes))
            .await?;
        Ok((response, scanner))
    }

    /// Sends a client's request (raw packets) again, as transaction replay
    /// does, and returns the digest of the response's bytes, to compare
    /// with the digest of what the client got the first time.
    pub async fn replay(&mut self, request: &[u8], expect: Expect) -> Result<u64, BackendError> {
        self.write_all(request).await?;
        let mut digest = Digest::default();
        self.read_response(expect, |bytes, status| digest.add_masked(bytes, status))
            .await?;
        Ok(digest.finish().get())
    }

    /// Reads one response to its end, handing its bytes to `sink` as they
    /// are scanned, with where status flags are in them; keeps its status
    /// flags.
    async fn read_response(
        &mut self,
        expect: Expect,
        mut sink: impl FnMut(&[u8], &[usize]),
    ) -> Result<ResponseScanner, BackendError> {
        let mut scanner = match expect {
            // The column definitions of statements rwsplit prepares, which
            // a connection that caches metadata keeps track of.
            Expect::Prepare if self.caches_metadata() => {
                self.scanner(expect).capturing_definitions()
            }
            _ => self.scanner(expect),
        }
        .noting_status();
        loop {
            let progress = scanner.scan(&self.buf)?;
            sink(&self.buf[..progress.consumed], scanner.status_offsets());
            self.consume(progress.consumed);
            match progress.scan {
                Scan::Done => break,
                // rwsplit's own reads rewrite nothing.
                Scan::Paused => {}
                Scan::NeedMore => {
                    if self.fill().await? == 0 {
                        return Err(BackendError::Io(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Scan::LocalInfile => {
                    return Err(BackendError::Protocol(
                        "unexpected LOCAL INFILE request".into(),
                    ));
                }
            }
        }
        self.response_ended(scanner.status(), scanner.error());
        Ok(scanner)
    }

    /// Runs one command of rwsplit's own; an ERR response is returned as
    /// `Refused`.
    pub async fn run(
        &mut self,
        payload: &[u8],
        expect: Expect,
    ) -> Result<(Vec<u8>, ResponseScanner), BackendError> {
        let (response, scanner) = self.exchange(payload, expect).await?;
        if scanner.error().is_some() {
            let err = response.get(4..).and_then(ErrorPacket::parse);
            return Err(err.map_or_else(
                || BackendError::Protocol("bad ERR packet".into()),
                BackendError::Refused,
            ));
        }
        Ok((response, scanner))
    }

    /// COM_RESET_CONNECTION: clears session state (variables, temporary
    /// tables, prepared statements, open transaction).
    pub async fn reset(&mut self) -> Result<(), BackendError> {
        self.run(
            &[crate::protocol::command::com::RESET_CONNECTION],
            Expect::Single,
        )
        .await
        .map(drop)
    }

    /// COM_INIT_DB.
    pub async fn init_db(&mut self, db: &str) -> Result<(), BackendError> {
        let mut payload = vec![crate::protocol::command::com::INIT_DB];
        payload.extend_from_slice(db.as_bytes());
        self.run(&payload, Expect::Single).await.map(drop)
    }

    /// The value of a one-row, one-column query such as `SELECT DATABASE()`.
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let mut row = self.query_row(sql).await?;
        match row.len() {
            1 => Ok(row.remove(0)),
            _ => Err(BackendError::Protocol("expected one column".into())),
        }
    }

    /// The values of a one-row query of rwsplit's own, `None` for NULL.
    pub async fn query_row(&mut self, sql: &str) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let mut payload = vec![crate::protocol::command::com::QUERY];
        payload.extend_from_slice(sql.as_bytes());
        let (response, _) = self
            .run(&payload, Expect::Results { cursor: false })
            .await?;
        // Packets: column count, its definitions (a text result always has
        // them), [EOF], the row, terminator.
        let mut packets =
            packet_ranges(&response).map(|packet| &response[packet.start + HEADER_LEN..packet.end]);
        let columns = packets
            .next()
            .and_then(read_lenenc)
            .map(|(count, _)| count)
            .ok_or_else(|| BackendError::Protocol("expected a result set".into()))?;
        let before_row = usize::try_from(columns).unwrap_or(usize::MAX);
        let before_row = before_row.saturating_add(usize::from(!self.deprecate_eof()));
        let row = packets
            .nth(before_row)
            .ok_or_else(|| BackendError::Protocol("expected one row".into()))?;
        text_row(row)
            .filter(|values| values.len() as u64 == columns)
            .map(|values| values.into_iter().map(|v| v.map(<[u8]>::to_vec)).collect())
            .ok_or_else(|| BackendError::Protocol("bad row".into()))
    }
}

fn refusal(payload: &[u8]) -> BackendError {
    ErrorPacket::parse(payload).map_or_else(
        || BackendError::Protocol("bad ERR packet".into()),
        BackendError::Refused,
    )
}

fn refusal_or_protocol(payload: &[u8], what: &str) -> BackendError {
    if payload.first() == Some(&0xFF) {
        refusal(payload)
    } else {
        BackendError::Protocol(what.to_owned())
    }
}

/// Whether InnoDB has rolled the whole transaction back after error
/// `code`, not just the statement: ER_LOCK_DEADLOCK (it was chosen to break
/// a deadlock) and ER_LOCK_TABLE_FULL (its locks filled the buffer pool).
/// A lock wait timeout (1205) undoes only the statement unless
/// `innodb_rollback_on_timeout` is on, which a proxy does not see.
fn rolls_back_transaction(code: u16) -> bool {
    matches!(code, 1213 | 1206)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlocks_and_a_full_lock_table_end_the_transaction() {
        assert!(rolls_back_transaction(1213), "ER_LOCK_DEADLOCK");
        assert!(rolls_back_transaction(1206), "ER_LOCK_TABLE_FULL");
        assert!(!rolls_back_transaction(1205), "ER_LOCK_WAIT_TIMEOUT");
        assert!(!rolls_back_transaction(1062), "ER_DUP_ENTRY");
    }
}
