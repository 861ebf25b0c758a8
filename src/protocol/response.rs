//! Finds where a backend's response to one command ends, without decoding
//! rows, and keeps the status flags of its terminating packets.
//!
//! The scanner is fed the bytes read from the backend, in pieces of any size.
//! It reports how many bytes belong to packets it has classified — those may
//! be forwarded to the client at once — and whether the response is complete.
//! Rows and column definitions are passed over by length, even across reads,
//! so a large result set streams through with a bounded buffer; only the small
//! packets that carry state (OK, ERR, EOF, column counts, PREPARE_OK) are
//! waited for whole and parsed.

use mysql_common::constants::StatusFlags;

use super::packet::{
    HEADER_LEN, MAX_CHUNK, number_packets, packet_ranges, put_packet, read_lenenc,
};
use super::session_track::{
    ClientTracking, reports_state_change, strip, tracked_gtids, tracked_variable,
};
use crate::gtid::Committed;

/// What kind of response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// OK, ERR, LOCAL INFILE request, or result sets chained by
    /// `SERVER_MORE_RESULTS_EXISTS`: COM_QUERY, COM_STMT_EXECUTE, COM_PROCESS_INFO.
    /// `cursor` is set for a COM_STMT_EXECUTE that asked for a cursor.
    Results { cursor: bool },
    /// PREPARE_OK with parameter and column definitions, or ERR.
    Prepare,
    /// Binary rows and a terminator, or ERR: COM_STMT_FETCH.
    Fetch,
    /// Column definitions and a terminator, or ERR: COM_FIELD_LIST.
    FieldList,
    /// Exactly one packet: COM_PING, COM_INIT_DB, COM_STATISTICS, COM_RESET_CONNECTION...
    Single,
}

/// What the scanner has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The response goes on; feed more bytes.
    NeedMore,
    /// The server asked for a LOCAL INFILE: relay the client's file packets
    /// (up to an empty one) to the backend, then keep scanning.
    LocalInfile,
    /// The response is complete.
    Done,
    /// Scanning stopped after a packet to be sent rewritten
    /// ([`ResponseScanner::take_rewrite`]); scan the rest of the input.
    Paused,
}

/// How far a call to [`ResponseScanner::scan`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes from the start of the input that belong to classified packets.
    pub consumed: usize,
    pub scan: Scan,
}

/// The fields of a PREPARE_OK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    /// Offset, in the input of the `scan` call that saw it, of the statement
    /// id's first byte — where a proxy writes its own id.
    pub id_offset: usize,
    pub statement_id: u32,
    pub columns: u16,
    pub params: u16,
}

/// Where the first column count packet of a response was, for a proxy
/// that must fill in column definitions the backend skipped (MariaDB's
/// metadata caching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnCount {
    /// Offset, in the input of the `scan` call that saw it, of its
    /// "metadata follows" byte.
    pub follows_offset: usize,
    /// Its sequence id.
    pub seq: u8,
    /// The column definitions follow it (false: the client's cached ones
    /// apply).
    pub follows: bool,
}

/// An OK packet to send the client in place of the backend's (see
/// [`ResponseScanner::stripping`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// Offset of its header in the input of the `scan` call that saw it;
    /// that call consumed up to its end.
    pub start: usize,
    /// The packet to send instead, header included.
    pub packet: Vec<u8>,
}

/// The backend sent something no valid response contains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed response from backend: {0}")]
pub struct ScanError(pub &'static str);

/// How the scanner treats one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handling {
    /// Read whole and parsed (status-carrying packets).
    Whole,
    /// Passed over by length (rows, column definitions).
    Opaque,
    /// Its first byte has not arrived yet.
    Undecided,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// First packet of a result: OK, ERR, LOCAL INFILE or a column count.
    First,
    /// Column definitions left before the rows.
    Columns(u64),
    /// The EOF after column definitions (without DEPRECATE_EOF).
    MetaEof,
    /// Rows until a terminator or ERR.
    Rows,
    /// First packet of a COM_STMT_PREPARE response.
    PrepareFirst,
    /// Column definitions until a terminator (COM_FIELD_LIST).
    FieldList,
    /// The only packet of the response.
    Single,
    /// This many more packets, then the response ends.
    Skip(u32),
    /// Waiting for the client's LOCAL INFILE data; the server then answers
    /// with OK or ERR.
    LocalInfile,
    Done,
}

/// Incremental scanner for one response.
#[derive(Debug, Clone)]
pub struct ResponseScanner {
    deprecate_eof: bool,
    cursor: bool,
    state: State,
    /// Bytes of the current chunk still to pass through unread.
    skip: usize,
    /// The current packet goes on in another chunk (it was ≥ 16 MiB).
    continued: bool,
    last_seq: Option<u8>,
    status: Option<StatusFlags>,
    error: Option<u16>,
    prepare: Option<PrepareOk>,
    /// Read what writes committed from OK packets (the connection
    /// negotiated CLIENT_SESSION_TRACK and a session wants its writes' GTIDs).
    track_gtid: bool,
    /// The last write's GTIDs an OK packet reported.
    gtid: Option<Committed>,
    /// Column counts carry a "metadata follows" byte (the connection
    /// negotiated MARIADB_CLIENT_CACHE_METADATA).
    cache_metadata: bool,
    /// Progress reports may come before a result (the connection
    /// negotiated MARIADB_CLIENT_PROGRESS).
    progress: bool,
    /// The first column count of the response, until taken.
    column_count: Option<ColumnCount>,
    /// Column counts seen: only the first is reported, and only the first
    /// result set's definitions are captured.
    results: u32,
    /// Copies of the definition packets of the response's first result
    /// set or prepared statement (headers included), when asked for.
    captured: Option<Vec<u8>>,
    /// The opaque packet being passed over is being copied.
    capturing: bool,
    /// Rewrite OK packets that report session-state changes for a client
    /// that is to see these of them.
    strip: Option<ClientTracking>,
    /// An OK packet had a state-change tracker's entry, or an EOF packet
    /// said SERVER_SESSION_STATE_CHANGED.
    state_changed: bool,
    /// The rewritten OK packet, until taken.
    rewrite: Option<Rewrite>,
    /// When asked for: where the status flags of the OK and EOF packets
    /// classified by the current `scan` call are, in its input.
    status_offsets: Option<Vec<usize>>,
}

impl ResponseScanner {
    /// A scanner for the response to a command that expects `expect`, on a
    /// connection that did (`deprecate_eof`) or did not negotiate
    /// CLIENT_DEPRECATE_EOF.
    pub fn new(expect: Expect, deprecate_eof: bool) -> Self {
        let (state, cursor) = match expect {
            Expect::Results { cursor } => (State::First, cursor),
            Expect::Prepare => (State::PrepareFirst, false),
            Expect::Fetch => (State::Rows, false),
            Expect::FieldList => (State::FieldList, false),
            Expect::Single => (State::Single, false),
        };
        ResponseScanner {
            deprecate_eof,
            cursor,
            state,
            skip: 0,
            continued: false,
            last_seq: None,
            status: None,
            error: None,
            prepare: None,
            track_gtid: false,
            gtid: None,
            cache_metadata: false,
            progress: false,
            column_count: None,
            results: 0,
            captured: None,
            capturing: false,
            strip: None,
            state_changed: false,
            rewrite: None,
            status_offsets: None,
        }
    }

    /// Also notes where each OK and EOF packet's status flags are
    /// ([`ResponseScanner::status_offsets`]), for a digest that leaves
    /// some of them out.
    pub fn noting_status(mut self) -> Self {
        self.status_offsets = Some(Vec::new());
        self
    }

    /// Where the status flags of the OK and EOF packets the last `scan`
    /// call classified are, in its input (see
    /// [`ResponseScanner::noting_status`]).
    pub fn status_offsets(&self) -> &[usize] {
        self.status_offsets.as_deref().unwrap_or_default()
    }

    /// For a connection where rwsplit negotiated CLIENT_SESSION_TRACK and
    /// turned the state-change tracker on: OK packets that report changes
    /// are given ([`ResponseScanner::take_rewrite`]) as the server would
    /// have sent them to a client `tracking` as this one does.
    pub fn stripping(mut self, tracking: ClientTracking) -> Self {
        self.strip = Some(tracking);
        self
    }

    /// The rewritten OK packet, once, after the `scan` call that saw it
    /// (which stopped with [`Scan::Paused`] after it).
    pub fn take_rewrite(&mut self) -> Option<Rewrite> {
        self.rewrite.take()
    }

    /// Whether the response said the session's state changed: an OK
    /// packet with an entry of the state-change tracker, or an EOF packet
    /// with SERVER_SESSION_STATE_CHANGED.
    pub fn state_changed(&self) -> bool {
        self.state_changed
    }

    /// For a connection that negotiated MARIADB_CLIENT_CACHE_METADATA:
    /// each column count is followed by a byte saying whether column
    /// definitions follow.
    pub fn caching_metadata(mut self) -> Self {
        self.cache_metadata = true;
        self
    }

    /// For a connection that negotiated MARIADB_CLIENT_PROGRESS: a
    /// long-running statement (ALTER TABLE, LOAD DATA INFILE...) may be
    /// preceded by progress reports, ERR packets with error code 0xFFFF,
    /// which do not end the response.
    pub fn reporting_progress(mut self) -> Self {
        self.progress = true;
        self
    }

    /// Also copies the definition packets (headers included) of the first
    /// result set, or of a PREPARE_OK (parameters, then columns), for
    /// [`ResponseScanner::take_captured`].
    pub fn capturing_definitions(mut self) -> Self {
        self.captured = Some(Vec::new());
        self
    }

    /// The definition packets copied (see
    /// [`ResponseScanner::capturing_definitions`]); empty when the response
    /// had none.
    pub fn take_captured(&mut self) -> Option<Vec<u8>> {
        self.captured.take()
    }

    /// The response's first column count, once, after the `scan` call that
    /// saw it. Its `follows_offset` is relative to that call's input.
    pub fn take_column_count(&mut self) -> Option<ColumnCount> {
        self.column_count.take()
    }

    /// Also reads the GTIDs that OK packets report in their session-state
    /// changes — MariaDB's `last_gtid` variable, MySQL's GTID tracker —
    /// (only valid on a CLIENT_SESSION_TRACK connection).
    pub fn tracking_gtid(mut self) -> Self {
        self.track_gtid = true;
        self
    }

    /// The GTID of the transaction this response committed, when an OK
    /// packet reported it (see [`ResponseScanner::tracking_gtid`]).
    pub fn gtid(&self) -> Option<&Committed> {
        self.gtid.as_ref()
    }

    /// Status flags of the last OK or EOF packet seen, if any.
    pub fn status(&self) -> Option<StatusFlags> {
        self.status
    }

    /// The error code, if the response ended with ERR.
    pub fn error(&self) -> Option<u16> {
        self.error
    }

    /// The PREPARE_OK, once, after the `scan` call that saw it. Its
    /// `id_offset` is relative to that call's input.
    pub fn take_prepare_ok(&mut self) -> Option<PrepareOk> {
        self.prepare.take()
    }

    /// Sequence id of the last packet header consumed.
    pub fn last_seq(&self) -> Option<u8> {
        self.last_seq
    }

    /// Whether everything consumed so far ends on a packet boundary (so a
    /// packet of our own may follow).
    pub fn at_boundary(&self) -> bool {
        self.skip == 0 && !self.continued
    }

    /// Whether the response is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Call after relaying the client's LOCAL INFILE data: the server's
    /// answer (OK or ERR) comes next. `seq` is the sequence id of the
    /// client's last (empty) packet.
    pub fn resume_after_local_infile(&mut self, seq: u8) {
        debug_assert_eq!(self.state, State::LocalInfile);
        self.state = State::First;
        self.last_seq = Some(seq);
    }

    /// Scans `input` (the bytes not yet consumed, newest at the end).
    pub fn scan(&mut self, input: &[u8]) -> Result<Progress, ScanError> {
        let mut pos = 0;
        if let Some(offsets) = &mut self.status_offsets {
            offsets.clear();
        }
        loop {
            if self.skip > 0 {
                let n = self.skip.min(input.len() - pos);
                if self.capturing {
                    if let Some(captured) = &mut self.captured {
                        captured.extend_from_slice(&input[pos..pos + n]);
                    }
                }
                pos += n;
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(self.progress(pos, Scan::NeedMore));
                }
            }
            match self.state {
                State::Done if !self.continued => return Ok(self.progress(pos, Scan::Done)),
                State::LocalInfile => return Ok(self.progress(pos, Scan::LocalInfile)),
                _ => {}
            }
            let Some(header) = input.get(pos..pos + HEADER_LEN) else {
                return Ok(self.progress(pos, Scan::NeedMore));
            };
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            if self.continued {
                // A further chunk of a packet over 16 MiB: opaque data.
                self.capturing = false;
                self.continued = len == MAX_CHUNK;
                self.last_seq = Some(header[3]);
                self.skip = len;
                pos += HEADER_LEN;
                continue;
            }
            let handling = self.handling(input.get(pos + HEADER_LEN).copied(), len);
            if handling == Handling::Undecided {
                return Ok(self.progress(pos, Scan::NeedMore));
            }
            if handling == Handling::Opaque {
                // A row or column definition: pass it through by length.
                self.capturing = self.captured.is_some()
                    && self.results <= 1
                    && matches!(self.state, State::Columns(_) | State::Skip(_));
                if self.capturing {
                    if let Some(captured) = &mut self.captured {
                        captured.extend_from_slice(header);
                    }
                }
                self.on_opaque_packet()?;
                self.continued = len == MAX_CHUNK;
                self.last_seq = Some(header[3]);
                self.skip = len;
                pos += HEADER_LEN;
                continue;
            }
            if len >= MAX_CHUNK {
                return Err(ScanError("a status packet is over 16 MiB"));
            }
            let Some(payload) = input.get(pos + HEADER_LEN..pos + HEADER_LEN + len) else {
                return Ok(self.progress(pos, Scan::NeedMore));
            };
            self.last_seq = Some(header[3]);
            self.on_packet(payload, pos + HEADER_LEN)?;
            pos += HEADER_LEN + len;
            if self.rewrite.is_some() {
                return Ok(self.progress(pos, Scan::Paused));
            }
        }
    }

    fn progress(&self, consumed: usize, scan: Scan) -> Progress {
        Progress { consumed, scan }
    }

    /// How the packet of length `len` starting with `first` (if that byte
    /// has arrived) is handled. Rows and column definitions are opaque.
    fn handling(&self, first: Option<u8>, len: usize) -> Handling {
        match self.state {
            State::Columns(_) | State::Skip(_) => Handling::Opaque,
            State::Rows | State::FieldList => match first {
                None if len > 0 => Handling::Undecided,
                Some(0xFF) => Handling::Whole,
                Some(0xFE) if len < MAX_CHUNK => Handling::Whole,
                _ => Handling::Opaque,
            },
            _ => Handling::Whole,
        }
    }

    /// A packet passed over by length.
    fn on_opaque_packet(&mut self) -> Result<(), ScanError> {
        self.state = match self.state {
            State::Columns(1) if self.deprecate_eof => State::Rows,
            State::Columns(1) => State::MetaEof,
            State::Columns(n) => State::Columns(n - 1),
            State::Skip(1) => State::Done,
            State::Skip(n) => State::Skip(n - 1),
            state @ (State::Rows | State::FieldList) => state,
            _ => return Err(ScanError("unexpected packet")),
        };
        Ok(())
    }

    /// A packet read whole; `offset` is where its payload starts in the input.
    fn on_packet(&mut self, payload: &[u8], offset: usize) -> Result<(), ScanError> {
        let first = payload.first().copied();
        self.state = match (self.state, first) {
            (State::Single, Some(0xFF)) => self.on_error(payload),
            (State::Single, _) => {
                if let Some(status) = self.terminator_status(payload) {
                    self.status = Some(status);
                    self.note_state(payload, offset, status);
                }
                State::Done
            }
            (State::First, Some(0xFF)) if self.progress && is_progress_report(payload) => {
                State::First
            }
            (_, Some(0xFF)) => self.on_error(payload),
            (State::First, Some(0x00)) => {
                let status = ok_status(payload)?;
                if self.track_gtid && status.contains(StatusFlags::SERVER_SESSION_STATE_CHANGED) {
                    self.note_gtid(payload);
                }
                self.note_state(payload, offset, status);
                self.after_terminator(status)
            }
            (State::First, Some(0xFB)) => State::LocalInfile,
            (State::First, _) => self.on_column_count(payload, offset)?,
            (State::MetaEof, Some(0xFE)) => {
                let status = eof_status(payload)?;
                if let Some(offsets) = &mut self.status_offsets {
                    offsets.push(offset + 3);
                }
                self.status = Some(status);
                if self.cursor && status.contains(StatusFlags::SERVER_STATUS_CURSOR_EXISTS) {
                    State::Done
                } else {
                    State::Rows
                }
            }
            (State::Rows | State::FieldList, Some(0xFE)) => {
                let status = self
                    .terminator_status(payload)
                    .ok_or(ScanError("bad terminator"))?;
                self.note_state(payload, offset, status);
                self.after_terminator(status)
            }
            (State::PrepareFirst, Some(0x00)) => self.on_prepare_ok(payload, offset)?,
            _ => return Err(ScanError("unexpected packet")),
        };
        Ok(())
    }

    fn on_column_count(&mut self, payload: &[u8], offset: usize) -> Result<State, ScanError> {
        let (count, used) = read_lenenc(payload)
            .filter(|&(count, _)| count > 0)
            .ok_or(ScanError("bad column count"))?;
        let follows = match (self.cache_metadata, &payload[used..]) {
            (false, []) | (true, [1]) => true,
            (true, [0]) => false,
            _ => return Err(ScanError("bad column count")),
        };
        self.results += 1;
        if self.results == 1 {
            self.column_count = Some(ColumnCount {
                follows_offset: offset + used,
                seq: self.last_seq.unwrap_or(1),
                follows,
            });
        }
        Ok(match follows {
            true => State::Columns(count),
            false if self.deprecate_eof => State::Rows,
            false => State::MetaEof,
        })
    }

    /// Notes a state change an OK or EOF packet (payload at `offset`)
    /// reports, and rewrites an OK packet for the client if it must. An
    /// OK packet says which trackers saw a change (a change of state is
    /// the state-change tracker's entry); an EOF packet only has the flag.
    fn note_state(&mut self, payload: &[u8], offset: usize, status: StatusFlags) {
        let ok_format = payload.first() == Some(&0x00) || self.deprecate_eof;
        if let Some(offsets) = &mut self.status_offsets {
            let at = if ok_format {
                ok_status_offset(payload)
            } else {
                Some(3)
            };
            offsets.extend(at.map(|at| offset + at));
        }
        if !status.contains(StatusFlags::SERVER_SESSION_STATE_CHANGED) {
            return;
        }
        if !ok_format {
            self.state_changed = true;
            return;
        }
        self.state_changed |= reports_state_change(payload);
        let Some(tracking) = self.strip else {
            return;
        };
        if let Some(ok) = strip(payload, tracking) {
            let start = offset - HEADER_LEN;
            let mut packet = Vec::with_capacity(HEADER_LEN + ok.len());
            put_packet(&mut packet, self.last_seq.unwrap_or(1), &ok);
            self.rewrite = Some(Rewrite { start, packet });
        }
    }

    fn note_gtid(&mut self, ok: &[u8]) {
        let gtid = tracked_variable(ok, b"last_gtid")
            .or_else(|| tracked_gtids(ok))
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(Committed::parse);
        if gtid.is_some() {
            self.gtid = gtid;
        }
    }

    fn on_error(&mut self, payload: &[u8]) -> State {
        self.error = Some(
            payload
                .get(1..3)
                .map_or(0, |c| u16::from_le_bytes([c[0], c[1]])),
        );
        State::Done
    }

    /// After an OK or EOF that ends a result: another result, or the end.
    fn after_terminator(&mut self, status: StatusFlags) -> State {
        self.status = Some(status);
        if status.contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS) {
            State::First
        } else {
            State::Done
        }
    }

    /// Status of an OK or EOF packet in the format this connection uses for
    /// a 0xFE terminator.
    fn terminator_status(&self, payload: &[u8]) -> Option<StatusFlags> {
        match payload.first() {
            Some(0x00) => ok_status(payload).ok(),
            Some(0xFE) if self.deprecate_eof => ok_status(payload).ok(),
            Some(0xFE) => eof_status(payload).ok(),
            _ => None,
        }
    }

    fn on_prepare_ok(&mut self, payload: &[u8], offset: usize) -> Result<State, ScanError> {
        let field =
            |range: std::ops::Range<usize>| payload.get(range).ok_or(ScanError("short PREPARE_OK"));
        let id = field(1..5)?;
        let columns = field(5..7)?;
        let params = field(7..9)?;
        let ok = PrepareOk {
            id_offset: offset + 1,
            statement_id: u32::from_le_bytes([id[0], id[1], id[2], id[3]]),
            columns: u16::from_le_bytes([columns[0], columns[1]]),
            params: u16::from_le_bytes([params[0], params[1]]),
        };
        self.prepare = Some(ok);
        let eof = |n: u16| u32::from(n > 0 && !self.deprecate_eof);
        let packets =
            u32::from(ok.params) + eof(ok.params) + u32::from(ok.columns) + eof(ok.columns);
        Ok(if packets == 0 {
            State::Done
        } else {
            State::Skip(packets)
        })
    }
}

/// The column definition packets (headers included) among the definitions
/// captured from a response (see [`ResponseScanner::capturing_definitions`]),
/// numbered from 0 so that equal definitions are equal bytes whatever
/// response they came in; `None` when there are none. For a PREPARE_OK's
/// response they follow the parameter definitions and, without
/// CLIENT_DEPRECATE_EOF, the EOF after them.
pub fn column_definitions(
    captured: &[u8],
    prepared: Option<&PrepareOk>,
    deprecate_eof: bool,
) -> Option<Vec<u8>> {
    let (skip, take) = match prepared {
        Some(ok) => {
            let eof = usize::from(ok.params > 0 && !deprecate_eof);
            (usize::from(ok.params) + eof, usize::from(ok.columns))
        }
        None => (0, usize::MAX),
    };
    let mut columns = packet_ranges(captured).skip(skip).take(take);
    let start = columns.next()?;
    let end = columns.last().map_or(start.end, |last| last.end);
    let mut columns = captured[start.start..end].to_vec();
    number_packets(&mut columns, 0);
    Some(columns)
}

/// A MariaDB progress report: an ERR packet with error code 0xFFFF.
fn is_progress_report(payload: &[u8]) -> bool {
    payload.get(..3) == Some(&[0xFF, 0xFF, 0xFF])
}

/// Status flags of an OK packet (header 0x00 or 0xFE).
pub fn ok_status(payload: &[u8]) -> Result<StatusFlags, ScanError> {
    let at = ok_status_offset(payload).ok_or(ScanError("short OK packet"))?;
    Ok(StatusFlags::from_bits_truncate(u16::from_le_bytes([
        payload[at],
        payload[at + 1],
    ])))
}

/// Where an OK packet's status flags are: after the header and two
/// length-encoded numbers (affected rows, last insert id).
fn ok_status_offset(payload: &[u8]) -> Option<usize> {
    let (_, affected) = read_lenenc(payload.get(1..)?)?;
    let (_, insert_id) = read_lenenc(payload.get(1 + affected..)?)?;
    let at = 1 + affected + insert_id;
    payload.get(at..at + 2).map(|_| at)
}

/// Status flags of an EOF packet: 0xFE, warnings (2), status (2).
pub fn eof_status(payload: &[u8]) -> Result<StatusFlags, ScanError> {
    match payload {
        [0xFE, _, _, s0, s1, ..] => Ok(StatusFlags::from_bits_truncate(u16::from_le_bytes([
            *s0, *s1,
        ]))),
        _ => Err(ScanError("short EOF packet")),
    }
}

#[cfg(test)]
mod tests;
