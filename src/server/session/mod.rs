//! One client's session: its commands, the backend connections it holds,
//! and the state it must keep consistent across them.
//!
//! | module | owns |
//! |---|---|
//! | [`route`] | classify, route, run, keep session state on every backend |
//! | [`causal`] | read-your-writes: reads wait for the session's last write |
//! | [`state`] | what routing remembers: pins, locks, temporary tables, history |
//! | [`relay`] | a command to a backend and its response back (the hot path) |
//! | [`backends`] | its backend connections: from a pool or opened, handed back |
//! | [`statements`] | prepared statements: client ids and backend ids |
//! | [`prepared`] | the COM_STMT_* commands |
//! | [`control`] | commands rwsplit answers itself: PING, KILL, RESET, CHANGE_USER |
//! | [`transactions`] | transaction replay: a transaction moved to a new primary |
//! | [`transaction_log`] | what replay keeps of the open transaction |
//!
//! A backend connection held in [`Session::backends`] is always between
//! responses. Whenever a relay stops part-way, the connection is closed and
//! the session ends: its state on that backend is unknown.

mod backends;
mod causal;
mod control;
mod prepared;
mod relay;
mod route;
mod state;
mod statements;
mod transaction_log;
mod transactions;

use std::net::SocketAddr;
use std::sync::Arc;

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info, warn};

use super::Proxy;
use super::client::{ClientConn, ClientError};
use super::login::{self, Identity, LoginError};
use super::registry::Registration;
use super::throttle::Admission;
use crate::backend::conn::{BackendConn, BackendError};
use crate::metrics::Stopwatch;
use crate::protocol::command::{Command, com};
use crate::protocol::messages::{ErrorPacket, ok_payload};
use crate::protocol::packet::{Frame, FrameError};
use crate::protocol::response::Expect;
use crate::protocol::session_track::ClientTracking;
use crate::routing::Target;
use crate::sql::kill::{Kill, parse_kill};
use crate::sql::{SessionChange, StatementKind};
pub use causal::WriteClock;
use prepared::Run;
use relay::{Definitions, Relay, RelayError, Relayed};
use state::RoutingState;
use statements::Statements;

const RESULTS: Expect = Expect::Results { cursor: false };

/// A backend connection failed before any of its response reached the
/// client (why, in the field); the connection is already closed.
struct Untouched(BackendError);

/// Whether the session goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// COM_QUIT.
    Quit,
    /// The client went away or its connection failed.
    Client(ClientError),
    /// The client broke the protocol; it was told why.
    Violation(&'static str),
    /// A backend connection failed mid-command.
    BackendLost {
        backend: String,
        error: String,
        /// The sequence id of the ERR packet that tells the client, sent as
        /// the session closes; `None` when it was told already, or when
        /// part of a packet reached it (no ERR can follow that).
        tell: Option<u8>,
    },
    /// Authentication (COM_CHANGE_USER) or database selection failed.
    Refused,
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> Self {
        End::Client(ClientError::Io(e))
    }
}

/// Runs one client from accept to close on session thread `thread`.
pub async fn run(
    proxy: Arc<Proxy>,
    thread: usize,
    tcp: TcpStream,
    peer: SocketAddr,
    registration: Registration,
    _permit: OwnedSemaphorePermit,
    admission: Admission,
) {
    // The login's state, on the heap, is freed once the client is in, and
    // what it hands over is moved into the session: inline, both would take
    // room in this future for the connection's lifetime.
    let (mut session, next_seq) = {
        let admitted = Box::pin(log_in(&proxy, tcp, peer, &registration, admission)).await;
        let Some(logged_in) = admitted else { return };
        registration.set_user(logged_in.identity.user.name.as_str().into());
        let routing = RoutingState::new(&proxy.config.routing);
        let session = Session {
            backends: proxy.endpoints.iter().map(|_| None).collect(),
            proxy,
            thread,
            client: logged_in.client,
            identity: logged_in.identity,
            statements: Statements::default(),
            status: StatusFlags::SERVER_STATUS_AUTOCOMMIT,
            routing,
            last_write: causal::LastWrite::None,
            registration,
        };
        (session, logged_in.next_seq)
    };
    let end = match session.start(next_seq).await {
        Ok(()) => session.serve().await,
        Err(end) => end,
    };
    session.close(end).await;
}

/// Logs a client in within `listen.handshake_timeout`, waiting for a
/// login slot of its address first when it has none; or tells it why not
/// (after a delay, for a wrong password) and logs that: `None` then. The
/// slot is given back when this returns.
async fn log_in(
    proxy: &Proxy,
    tcp: TcpStream,
    peer: SocketAddr,
    registration: &Registration,
    admission: Admission,
) -> Option<login::LoggedIn> {
    let timeout = proxy.config.listen.handshake_timeout;
    let login = crate::timer::timeout(timeout, async {
        let slot = admission.slot().await;
        (
            login::login(proxy, tcp, peer, registration.id()).await,
            slot,
        )
    });
    match login.await {
        Ok((Ok(logged_in), slot)) => {
            slot.succeeded();
            Some(logged_in)
        }
        Ok((Err(LoginError::Denied(mut client, denial)), _slot)) => {
            login::deny(proxy, &mut client, &denial, "login").await;
            None
        }
        Ok((Err(error), _)) => {
            info!(%peer, %error, "login failed");
            None
        }
        Err(_) => {
            info!(%peer, ?timeout, "client did not log in in time; closed");
            None
        }
    }
}

/// A logged-in client and the backend connections it holds.
struct Session {
    proxy: Arc<Proxy>,
    /// The session thread it runs on: whose counters it bumps.
    thread: usize,
    client: ClientConn,
    identity: Identity,
    /// One slot per backend, filled the first time a command goes there.
    backends: Vec<Option<BackendConn>>,
    statements: Statements,
    /// Status flags of the last response: autocommit, and what rwsplit
    /// answers itself (COM_PING).
    status: StatusFlags,
    routing: RoutingState,
    /// The last write, for read-your-writes; kept across
    /// COM_RESET_CONNECTION (the client's writes stay its own).
    last_write: causal::LastWrite,
    registration: Registration,
}

impl Session {
    /// Ends the login: checks the database the client asked for, then
    /// sends OK. The check opens the connection the session's first read
    /// will use, so that a session that only reads never holds one to the
    /// primary; if that fails, the primary has the last word (a replica
    /// behind a `CREATE DATABASE`, say).
    async fn start(&mut self, seq: u8) -> Result<(), End> {
        if self.identity.db.is_some() {
            let opened = match self.next_read_target() {
                Target::Backend(reader) => match self.ensure_backend(reader).await {
                    Ok(()) => Ok(reader),
                    // The reader was the primary: its answer stands.
                    Err(error) if Some(reader) == self.proxy.primary() => Err(error),
                    Err(_) => self.backend_for(self.primary_target(), false).await,
                },
                no_reader => self.backend_for(no_reader, false).await,
            };
            match opened {
                Ok(backend) => self.note_reader(backend),
                Err(error) => {
                    self.client.send_error(seq, &error).await?;
                    return Err(End::Refused);
                }
            }
        }
        self.client.send(seq, &ok_payload(self.status, 0)).await?;
        if self
            .identity
            .capabilities
            .contains(CapabilityFlags::CLIENT_COMPRESS)
        {
            self.client.enable_compression();
        }
        debug!(id = self.registration.id(), user = self.identity.user.name, peer = %self.client.peer(), "logged in");
        Ok(())
    }

    /// Reads the client's commands and answers each, until it quits or
    /// the session fails. The commands are dispatched here, not in a
    /// function of their own: each `async fn` between the session and a
    /// relay is one more future to set up, and to save at every wait, on
    /// the path of every command (docs/benchmarks.md, step 24).
    async fn serve(&mut self) -> End {
        loop {
            let frame = match self.client.read_frame().await {
                Ok(frame) => frame,
                Err(ClientError::Frame(FrameError::TooLarge { .. })) => {
                    return self
                        .violation(
                            1,
                            ErrorPacket::packet_too_large(),
                            "packet over max_allowed_packet",
                        )
                        .await;
                }
                Err(ClientError::OverBudget(_)) => {
                    return self
                        .violation(
                            1,
                            ErrorPacket::packet_budget_exhausted(),
                            "packet over listen.buffered_packet_budget",
                        )
                        .await;
                }
                Err(ClientError::Frame(FrameError::OutOfOrder { .. })) => {
                    return self
                        .violation(
                            1,
                            ErrorPacket::packets_out_of_order(),
                            "chunks out of order",
                        )
                        .await;
                }
                Err(error) => return End::Client(error),
            };
            // The commands that carry statements go straight to their
            // paths; `handle` dispatches the others.
            let flow = match Command::decode(frame.first_payload()) {
                Ok(Command::Execute { statement, flags }) if frame.seq() == 0 => {
                    self.execute(frame, statement, Run::Execute(flags)).await
                }
                Ok(Command::Query(sql)) if frame.seq() == 0 && parse_kill(sql).is_none() => {
                    self.query(frame).await
                }
                _ => self.handle(frame).await,
            };
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => return End::Quit,
                Err(end) => return end,
            }
        }
    }

    async fn handle(&mut self, frame: Frame) -> Result<Flow, End> {
        let seq = frame.last_seq().wrapping_add(1);
        if frame.seq() != 0 {
            return Err(self
                .violation(
                    seq,
                    ErrorPacket::packets_out_of_order(),
                    "command with sequence id not 0",
                )
                .await);
        }
        let command = match Command::decode(frame.first_payload()) {
            Ok(command) => command,
            Err(error) => {
                debug!(%error, "malformed command");
                return self
                    .reply_error(seq, &ErrorPacket::malformed_packet())
                    .await;
            }
        };
        match command {
            Command::Quit => Ok(Flow::Quit),
            Command::Ping => self.reply_ok(seq).await,
            Command::Query(sql) => match parse_kill(sql) {
                Some(kill) => self.kill(kill, seq).await,
                None => self.query(frame).await,
            },
            Command::InitDb(db) => {
                let change = SessionChange::Database(String::from_utf8_lossy(db).into_owned());
                self.session_state(frame, Expect::Single, Some(change), Stopwatch::start())
                    .await
            }
            Command::SetOption => {
                self.session_state(frame, Expect::Single, None, Stopwatch::start())
                    .await
            }
            Command::FieldList => {
                // Lists a table's columns: a read, unless the table may be
                // one of the session's temporary tables.
                let table = &frame.first_payload()[1..];
                let target = self.target(&StatementKind::Read, None, table);
                self.run_on(target, &frame, Expect::FieldList, true)
                    .await
                    .map(|_| Flow::Continue)
            }
            Command::Statistics | Command::Debug | Command::Refresh => {
                self.on_primary(&frame, Expect::Single).await
            }
            Command::ProcessInfo => self.on_primary(&frame, RESULTS).await,
            Command::ProcessKill(id) => self.kill(Kill::Connection(id.into()), seq).await,
            Command::ChangeUser => self.change_user(frame).await,
            Command::ResetConnection => self.reset_connection(seq).await,
            Command::Prepare(sql) => {
                let sql = sql.to_vec();
                self.prepare(frame, sql).await
            }
            Command::Execute { statement, flags } => {
                self.execute(frame, statement, Run::Execute(flags)).await
            }
            Command::BulkExecute { statement } => self.execute(frame, statement, Run::Bulk).await,
            Command::SendLongData { statement } => self.send_long_data(frame, statement).await,
            Command::Close { statement } => self.close_statement(frame, statement).await,
            Command::Reset { statement } => self.reset_statement(frame, statement).await,
            Command::Fetch { statement } => self.fetch(frame, statement).await,
            Command::Refused(what) => {
                self.reply_error(seq, &ErrorPacket::not_supported(what))
                    .await
            }
            Command::Unknown(byte) => {
                debug!(byte, "unknown command");
                self.reply_error(seq, &ErrorPacket::unknown_command()).await
            }
        }
    }

    /// Tells the client why it is disconnected.
    async fn violation(&mut self, seq: u8, error: ErrorPacket, why: &'static str) -> End {
        // The client may be gone already; the session ends either way.
        let _ = self.client.send_error(seq, &error).await;
        End::Violation(why)
    }

    /// Relays a command about the server itself to the primary.
    async fn on_primary(&mut self, frame: &Frame, expect: Expect) -> Result<Flow, End> {
        let primary = self.primary_target();
        self.run_on(primary, frame, expect, false)
            .await
            .map(|_| Flow::Continue)
    }

    /// Relays raw request bytes to an open backend connection.
    async fn relay_to(
        &mut self,
        target: usize,
        request: &[u8],
        expect: Expect,
        rename: Option<u32>,
        definitions: Definitions<'_>,
    ) -> Result<Relayed, End> {
        match self
            .try_relay_to(target, request, expect, rename, definitions)
            .await?
        {
            Ok(relayed) if relayed.held => {
                let held = self.take_held(target);
                // Boxed: rare, and it would take room in every session's future.
                Box::pin(self.deliver_held(target, request, relayed, held)).await
            }
            Ok(relayed) => Ok(relayed),
            Err(Untouched(lost)) => Err(self.lost(target, lost, Some(1))),
        }
    }

    /// Like [`Session::relay_to`], but a backend that fails before any of
    /// its response reached the client is handed back: the connection is
    /// closed and the client told nothing, so the caller may run the
    /// command elsewhere.
    async fn try_relay_to(
        &mut self,
        target: usize,
        request: &[u8],
        expect: Expect,
        rename: Option<u32>,
        definitions: Definitions<'_>,
    ) -> Result<Result<Relayed, Untouched>, End> {
        let ready = self.relay_for(target, request, expect, rename, definitions)?;
        let relayed = relay::relay(ready, request).await;
        self.relay_ended(target, request, relayed)
    }

    /// The relay of `request` to `target`'s open connection, for
    /// [`relay::relay`], whose result goes to [`Session::relay_ended`]:
    /// together, what [`Session::try_relay_to`] does. The statement paths
    /// (prepared executions, reads) run the three themselves: each `async
    /// fn` between a session and its relay is one more future to set up,
    /// and to save at every wait (docs/benchmarks.md, step 24).
    fn relay_for<'a>(
        &'a mut self,
        target: usize,
        request: &[u8],
        expect: Expect,
        rename: Option<u32>,
        definitions: Definitions<'a>,
    ) -> Result<relay::Ready<'a>, End> {
        let track_gtid = self.tracks_gtid(target);
        let digest = self.records_transaction(target);
        // In a transaction that may be replayed, a text statement refused
        // as read-only may move with it.
        let hold_read_only = digest
            && request.get(4) == Some(&com::QUERY)
            && self.replayable_transaction() == Some(target);
        let hold = hold_read_only.then_some(relay::READ_ONLY_ERROR);
        let tracking = self.backends[target]
            .as_ref()
            .filter(|conn| conn.tracks_state())
            .map(|_| self.client_tracking());
        let acknowledges = self.acknowledges(target).then_some(&self.proxy.writes);
        let Some(backend) = self.backends[target].as_mut() else {
            return Err(End::Violation("internal error: no backend connection"));
        };
        Ok(relay::Ready {
            client: &mut self.client,
            backend,
            how: Relay {
                expect,
                rename,
                track_gtid,
                definitions,
                digest,
                hold,
                tracking,
                acknowledges,
            },
            in_flight: self.proxy.metrics.thread(self.thread).relaying(target),
        })
    }

    /// What of the session-state changes a backend reports the client
    /// receives: rwsplit keeps the state-change tracker on for itself.
    fn client_tracking(&self) -> ClientTracking {
        if !self
            .identity
            .capabilities
            .contains(CapabilityFlags::CLIENT_SESSION_TRACK)
        {
            ClientTracking::Nothing
        } else if self.routing.owns_state_tracker {
            ClientTracking::Everything
        } else {
            ClientTracking::Requested
        }
    }

    /// Takes in the end of a relay made with [`Session::relay_for`]:
    /// the session's status, the transaction's record, and a failed
    /// backend's connection discarded; `Err(Untouched)` when it failed
    /// before any of its answer reached the client.
    fn relay_ended(
        &mut self,
        target: usize,
        request: &[u8],
        relayed: Result<Relayed, RelayError>,
    ) -> Result<Result<Relayed, Untouched>, End> {
        match relayed {
            Ok(relayed) => {
                if let Some(status) = relayed.status {
                    self.status = status;
                }
                if relayed.digest.is_some() && !relayed.held {
                    self.record(target, request, &relayed);
                }
                Ok(Ok(relayed))
            }
            Err(RelayError::Client(error)) => {
                self.discard(target);
                Err(End::Client(error))
            }
            Err(RelayError::Backend {
                error,
                untouched: true,
                ..
            }) => {
                self.discard(target);
                Ok(Err(Untouched(error)))
            }
            Err(RelayError::Backend {
                error,
                at_boundary,
                next_seq,
                untouched: false,
            }) => {
                self.discard(target);
                // Once part of a packet went out, no ERR can follow it.
                Err(self.lost(target, error, at_boundary.then_some(next_seq)))
            }
        }
    }

    /// The end of a session whose backend `target` was lost mid-command
    /// (its connection already discarded): the client is told with an ERR
    /// of sequence id `tell` as the session closes.
    fn lost(&self, target: usize, error: BackendError, tell: Option<u8>) -> End {
        End::BackendLost {
            backend: self.proxy.endpoints[target].name.clone(),
            error: error.to_string(),
            tell,
        }
    }

    async fn reply_ok(&mut self, seq: u8) -> Result<Flow, End> {
        self.client.send(seq, &ok_payload(self.status, 0)).await?;
        Ok(Flow::Continue)
    }

    async fn reply_error(&mut self, seq: u8, error: &ErrorPacket) -> Result<Flow, End> {
        self.client.send_error(seq, error).await?;
        Ok(Flow::Continue)
    }

    async fn close(mut self, end: End) {
        let id = self.registration.id();
        match &end {
            End::Quit | End::Client(ClientError::Closed) => debug!(id, "session ended"),
            End::Client(error) => info!(id, %error, "session ended"),
            End::Violation(why) => info!(id, why, "client broke the protocol; disconnected"),
            End::BackendLost { backend, error, .. } => warn!(
                id,
                backend, error, "backend connection lost; session closed"
            ),
            End::Refused => debug!(id, "session refused"),
        }
        if let End::BackendLost {
            backend,
            tell: Some(seq),
            ..
        } = &end
        {
            // The session ends either way; the client may be gone.
            let _ = self
                .client
                .send_error(*seq, &ErrorPacket::backend_lost(backend))
                .await;
        }
        self.release_backends();
        self.client.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;

    use super::*;

    /// A session's future is allocated for every client, for as long as
    /// it stays connected; the logins it may run, large and rare, are
    /// boxed so that they do not size it (docs/benchmarks.md, step 18).
    #[test]
    fn a_session_future_holds_no_login_state() {
        let proxy = Proxy::for_tests("{ address: '127.0.0.1:0' }");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let address = listener.local_addr().expect("address");
            let (_client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
            let (tcp, peer) = accepted.expect("accept");
            let permit = Arc::new(Semaphore::new(1)).acquire_owned().await;
            let registration = proxy.registry.register();
            let session = run(
                proxy.clone(),
                0,
                tcp,
                peer,
                registration,
                permit.expect("permit"),
                proxy.logins.admit(peer.ip()).expect("a login slot"),
            );
            let size = std::mem::size_of_val(&session);
            // About 2.6 KiB with rustc 1.95; 4.2 to 4.6 KiB with both logins inline.
            assert!(size <= 3 * 1024, "a session's future takes {size} bytes");
        });
    }
}
