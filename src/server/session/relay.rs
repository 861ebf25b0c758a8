//! The hot path: send one client command to a backend and stream the
//! response back unchanged.
//!
//! Bytes go from the backend's read buffer to the client as soon as the
//! scanner has classified them: one read, one write, no copy of rows. The
//! only rewrites are a PREPARE_OK's statement id, patched in place, and, on
//! a connection that caches metadata, column definitions the backend
//! skipped but the client does not hold (see [`Definitions`]).

use mysql_common::constants::StatusFlags;

use crate::backend::conn::{BackendConn, BackendError};
use crate::gtid::Committed;
use crate::metrics::InFlight;
use crate::protocol::digest::Digest;
use crate::protocol::packet::{Renumber, number_packets};
use crate::protocol::response::{
    Expect, PrepareOk, ResponseScanner, Rewrite, Scan, column_definitions,
};
use crate::protocol::session_track::ClientTracking;
use crate::server::client::{ClientConn, ClientError};
use crate::server::session::WriteClock;

/// What a relayed response said.
#[derive(Debug, Clone, Default)]
pub struct Relayed {
    /// Status flags of its last OK/EOF.
    pub status: Option<StatusFlags>,
    /// Its error code, if it ended with ERR.
    pub error: Option<u16>,
    /// The PREPARE_OK, for COM_STMT_PREPARE.
    pub prepared: Option<PrepareOk>,
    /// What its OK packets reported the write committed, when tracked.
    pub gtid: Option<Committed>,
    /// With [`Definitions::Keep`] or [`Definitions::Supply`]: the column
    /// definitions the client got with the response's first result set or
    /// PREPARE_OK, as [`column_definitions`] gives them; `None` when it got
    /// none (the backend skipped them, or there were no columns).
    pub columns: Option<Vec<u8>>,
    /// With [`Relay::digest`]: what transaction replay keeps of it.
    pub digest: Option<Digested>,
    /// With [`Relay::hold`]: the response is that ERR alone, not sent to
    /// the client; it is left in the backend's read buffer.
    pub held: bool,
    /// The server said the statement changed the session's state (on a
    /// connection that tracks it, any change; see
    /// [`BackendConn::tracks_state`]).
    pub state_changed: bool,
}

/// What a relay with [`Relay::digest`] made of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digested {
    /// The digest of its bytes.
    Bytes(std::num::NonZeroU64),
    /// It read a LOCAL INFILE from the client, which cannot be replayed.
    LocalInfile,
}

/// What to do with a response's column definitions, on a connection that
/// negotiated MARIADB_CLIENT_CACHE_METADATA: the backend skips the
/// definitions of a prepared statement's result while they are the ones it
/// last sent on that connection, and the client then uses the ones it
/// holds. A session that runs one statement on several backends keeps the
/// two in step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Definitions<'a> {
    /// Relay them as they come.
    #[default]
    Pass,
    /// Relay them and report them in [`Relayed::columns`].
    Keep,
    /// As `Keep`; if the backend skips them, send the client these (the
    /// backend's current ones, as [`column_definitions`] gives them) in
    /// their place.
    Supply(&'a [u8]),
}

/// How to relay one command.
#[derive(Debug, Clone, Copy)]
pub struct Relay<'a> {
    /// What kind of response it gets.
    pub expect: Expect,
    /// A statement id to write into a PREPARE_OK.
    pub rename: Option<u32>,
    /// Read committed GTIDs from OK packets (CLIENT_SESSION_TRACK connections).
    pub track_gtid: bool,
    /// What to do with column definitions (prepared statements on
    /// connections that cache metadata).
    pub definitions: Definitions<'a>,
    /// Compute [`Relayed::digest`] (transaction replay).
    pub digest: bool,
    /// Keep a response that is a lone ERR with this code from the client
    /// and say so in [`Relayed::held`]: the statement may go elsewhere
    /// instead (a transaction interrupted by [`READ_ONLY_ERROR`] to a new
    /// primary, a read that missed a temporary table to the primary).
    pub hold: Option<u16>,
    /// On a connection that tracks state changes for rwsplit: what of
    /// them the client is to receive.
    pub tracking: Option<ClientTracking>,
    /// The write clock to tick once the backend's whole answer is in and
    /// before its end reaches the client (the primary, with
    /// `read_your_writes: global`): a read another client starts after
    /// this one's acknowledgement is then sure to wait for it.
    pub acknowledges: Option<&'a WriteClock>,
}

/// ER_OPTION_PREVENTS_STATEMENT: what a read-only server answers a write.
pub const READ_ONLY_ERROR: u16 = 1290;
/// ER_NO_SUCH_TABLE.
pub const NO_SUCH_TABLE: u16 = 1146;

/// Why a relay stopped early. Either way the backend connection is in an
/// unknown state and must be closed.
#[derive(Debug)]
pub enum RelayError {
    /// The client went away or broke the protocol.
    Client(ClientError),
    /// The backend did.
    Backend {
        error: BackendError,
        /// Whether what the client got so far ends on a packet boundary, so
        /// that an ERR packet can still be sent to it.
        at_boundary: bool,
        /// Sequence id an ERR packet to the client would carry.
        next_seq: u8,
        /// Nothing of the response reached the client: the command may be
        /// run elsewhere if it is safe to.
        untouched: bool,
    },
}

impl From<ClientError> for RelayError {
    fn from(e: ClientError) -> Self {
        RelayError::Client(e)
    }
}

/// A relay ready to run.
#[derive(Debug)]
pub struct Ready<'a> {
    pub client: &'a mut ClientConn,
    pub backend: &'a mut BackendConn,
    pub how: Relay<'a>,
    /// The command counted in flight on the backend, until the relay
    /// returns (or is dropped: an aborted session).
    pub in_flight: InFlight<'a>,
}

/// Sends `request` (raw packet bytes) to the backend and relays the
/// response to the client, as `ready.how` says.
pub async fn relay(ready: Ready<'_>, request: &[u8]) -> Result<Relayed, RelayError> {
    let Ready {
        client,
        backend,
        how,
        in_flight: _in_flight,
    } = ready;
    // Packets of rwsplit's own sent before the backend's (supplied column
    // definitions): the client's sequence ids are the backend's plus this.
    let mut inserted = 0u8;
    let lost = |error, scanner: &ResponseScanner, inserted: u8| RelayError::Backend {
        error,
        at_boundary: scanner.at_boundary(),
        next_seq: scanner
            .last_seq()
            .map_or(1, |s| s.wrapping_add(1).wrapping_add(inserted)),
        untouched: scanner.last_seq().is_none(),
    };
    let mut scanner = backend.scanner(how.expect);
    if how.track_gtid {
        scanner = scanner.tracking_gtid();
    }
    if how.definitions != Definitions::Pass {
        scanner = scanner.capturing_definitions();
    }
    if how.digest {
        scanner = scanner.noting_status();
    }
    if let Some(tracking) = how.tracking {
        scanner = scanner.stripping(tracking);
    }
    if let Err(e) = backend.write_all(request).await {
        return Err(lost(e.into(), &scanner, 0));
    }
    let mut prepared = None;
    let mut renumber: Option<Renumber> = None;
    let mut supplied = None;
    // Boxed: a hasher's state would take room in every session's future.
    let mut digest = how.digest.then(Box::<Digest>::default);
    let mut held = false;
    loop {
        let progress = match scanner.scan(backend.buffered()) {
            Ok(progress) => progress,
            Err(e) => return Err(lost(e.into(), &scanner, inserted)),
        };
        if let Some(ok) = scanner.take_prepare_ok() {
            prepared = Some(ok);
            if let Some(id) = how.rename {
                backend.buffered_mut()[ok.id_offset..ok.id_offset + 4]
                    .copy_from_slice(&id.to_le_bytes());
            }
        }
        let mut consumed = progress.consumed;
        if let (Some(count), Definitions::Supply(columns)) =
            (scanner.take_column_count(), how.definitions)
            && !count.follows
        {
            // The backend skipped the definitions the client lacks. The
            // column count's last byte says whether they follow: now they
            // do, ours, and the backend's packets after them are numbered
            // on from there.
            let after_count = count.follows_offset + 1;
            backend.buffered_mut()[count.follows_offset] = 1;
            let mut ours = columns.to_vec();
            let first = count.seq.wrapping_add(1);
            inserted = number_packets(&mut ours, first).wrapping_sub(first);
            let mut out = backend.buffered()[..after_count].to_vec();
            out.extend_from_slice(&ours);
            client
                .write_relayed(&out, true)
                .await
                .map_err(|e| RelayError::Client(e.into()))?;
            backend.consume(after_count);
            consumed -= after_count;
            renumber = Some(Renumber::new(inserted));
            supplied = Some(columns.to_vec());
        }
        if how.hold.is_some()
            && progress.scan == Scan::Done
            && scanner.last_seq() == Some(1)
            && scanner.error() == how.hold
        {
            // The whole response is that ERR, and none of it was sent.
            if backend.buffered().len() > consumed {
                let error = BackendError::Protocol("data after the end of a response".into());
                return Err(lost(error, &scanner, inserted));
            }
            if let Some(digest) = &mut digest {
                digest.add_masked(&backend.buffered()[..consumed], scanner.status_offsets());
            }
            held = true;
            break;
        }
        if consumed > 0 {
            if let Some(digest) = &mut digest {
                // (Recorded transactions have no prepared statements, whose
                // supplied definitions would move the offsets.)
                digest.add_masked(&backend.buffered()[..consumed], scanner.status_offsets());
            }
            if let Some(renumber) = &mut renumber {
                renumber.apply(&mut backend.buffered_mut()[..consumed]);
            }
            // (A response whose last packet is rewritten ends with a
            // pause, not `Done`: the scanner knows it is over.)
            let ended = scanner.is_done();
            if let (true, Some(clock)) = (ended, how.acknowledges) {
                clock.tick();
            }
            let more = !ended && progress.scan != Scan::LocalInfile;
            let relayed = &backend.buffered()[..consumed];
            let written = match scanner.take_rewrite() {
                None => client.write_relayed(relayed, more).await,
                // Boxed: rare, and it would take room in every session's future.
                Some(rewrite) => Box::pin(write_rewritten(client, relayed, rewrite, more)).await,
            };
            written.map_err(|e| RelayError::Client(e.into()))?;
            backend.consume(consumed);
        }
        match progress.scan {
            Scan::Done => break,
            Scan::Paused => {}
            Scan::LocalInfile => {
                digest = None;
                let last_seq = relay_local_infile(client, backend).await?;
                scanner.resume_after_local_infile(last_seq);
            }
            Scan::NeedMore => match backend.fill().await {
                Ok(0) => {
                    return Err(lost(
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into(),
                        &scanner,
                        inserted,
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(lost(e.into(), &scanner, inserted)),
            },
        }
    }
    if !backend.buffered().is_empty() && !held {
        // The client has its whole response; what follows cannot be trusted.
        let error = BackendError::Protocol("data after the end of a response".into());
        return Err(RelayError::Backend {
            error,
            at_boundary: false,
            next_seq: 0,
            untouched: false,
        });
    }
    let columns = match (how.definitions, supplied) {
        (Definitions::Pass, _) => None,
        (_, Some(ours)) => Some(ours),
        _ => scanner.take_captured().and_then(|captured| {
            column_definitions(&captured, prepared.as_ref(), backend.deprecate_eof())
        }),
    };
    let relayed = Relayed {
        status: scanner.status(),
        error: scanner.error(),
        prepared,
        gtid: scanner.gtid().cloned(),
        columns,
        digest: how.digest.then(|| match digest {
            Some(digest) => Digested::Bytes(digest.finish()),
            None => Digested::LocalInfile,
        }),
        held,
        state_changed: scanner.state_changed(),
    };
    backend.response_ended(relayed.status, relayed.error);
    Ok(relayed)
}

/// Writes `relayed`, whose last packet is sent as `rewrite` says, with the
/// sequence id it has in `relayed` (renumbered, if packets were inserted).
async fn write_rewritten(
    client: &mut ClientConn,
    relayed: &[u8],
    rewrite: Rewrite,
    more: bool,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(rewrite.start + rewrite.packet.len());
    out.extend_from_slice(&relayed[..rewrite.start]);
    out.extend_from_slice(&rewrite.packet);
    out[rewrite.start + 3] = relayed[rewrite.start + 3];
    client.write_relayed(&out, more).await
}

/// Relays the client's LOCAL INFILE packets to the backend, up to and
/// including the empty one that ends the file. Returns its sequence id.
async fn relay_local_infile(
    client: &mut ClientConn,
    backend: &mut BackendConn,
) -> Result<u8, RelayError> {
    loop {
        let frame = client.read_frame().await?;
        if let Err(e) = backend.write_all(frame.as_bytes()).await {
            return Err(RelayError::Backend {
                error: e.into(),
                at_boundary: true,
                next_seq: frame.last_seq().wrapping_add(1),
                untouched: false,
            });
        }
        if frame.payload_len() == 0 {
            return Ok(frame.last_seq());
        }
    }
}

/// Sends packets that get no response (COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE).
pub async fn send_only(backend: &mut BackendConn, request: &[u8]) -> Result<(), BackendError> {
    Ok(backend.write_all(request).await?)
}
