//! The COM_STMT_* commands: statement ids are translated between the
//! client's (rwsplit's) and each backend's; a statement is prepared on a
//! backend the first time it runs there; parameter types are added to an
//! execution that relies on types the backend has not seen.
//!
//! A statement that only reads is prepared on, and executed on, a replica
//! chosen like any read; others on the primary. FETCH and RESET follow the
//! statement to where it last ran (its cursor is there); long data goes to
//! the primary and takes the next execution with it.

use tracing::{debug, warn};

use super::relay::{self, Definitions, Relayed};
use super::statements::{ColumnDefs, Prepared, Statement};
use super::{End, Flow, Session, Untouched};
use crate::backend::conn::BackendError;
use crate::protocol::command::{self, set_statement_id, wants_cursor};
use crate::protocol::messages::ErrorPacket;
use crate::protocol::packet::Frame;
use crate::protocol::response::{Expect, column_definitions};
use crate::routing::Target;
use crate::sql::{self, StatementKind};

/// How executions of a prepared statement of `kind` are routed. Session
/// changes made by a prepared statement (`SET @a = ?`) depend on the values
/// of each execution and cannot be replayed as text: they run on the
/// primary and keep the session there, like other such changes.
fn prepared_kind(kind: StatementKind) -> StatementKind {
    match kind {
        StatementKind::SessionState(_) | StatementKind::ExecutePrepared(_) => {
            StatementKind::PinsToPrimary
        }
        kind => kind,
    }
}

/// The command that executes a prepared statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Run {
    /// COM_STMT_EXECUTE, with its flags (cursor type).
    Execute(u8),
    /// MariaDB's COM_STMT_BULK_EXECUTE: rows of parameters at once, for a
    /// statement that writes (a server refuses one that returns rows), so
    /// it runs where writes run.
    Bulk,
}

impl Run {
    fn layout(self, payload: &[u8], params: u16) -> Option<command::ExecuteLayout> {
        match self {
            Run::Execute(_) => command::execute_layout(payload, params),
            Run::Bulk => command::bulk_layout(payload, params),
        }
    }

    fn expect(self) -> Expect {
        Expect::Results {
            cursor: matches!(self, Run::Execute(flags) if wants_cursor(flags)),
        }
    }
}

/// Why an attempt at an execution did not run.
enum NotRun {
    /// The client was sent an error.
    Refused,
    /// This replica's connection failed before anything reached the client.
    Untouched(usize),
}

/// Why a statement could not be prepared on a backend.
enum PrepareFailure {
    /// The backend answered with an error, for the client.
    Refused(ErrorPacket),
    /// The connection failed (it is closed); the caller may go elsewhere.
    Untouched,
}

impl Session {
    /// Where an execution goes whose response `backend` held
    /// ([`Relayed::held`]): a read that missed a temporary table to the
    /// primary; one the primary refused as read-only (fenced) to the
    /// primary that follows. `Err` with the refusal, delivered to the
    /// client, when there is none.
    async fn after_held(
        &mut self,
        backend: usize,
        reads: bool,
        request: &[u8],
        relayed: Relayed,
    ) -> Result<Result<Target, Relayed>, End> {
        let held = self.take_held(backend);
        if reads {
            return Ok(Ok(self.primary_target()));
        }
        match self.successor(backend).await? {
            Some(primary) => Ok(Ok(Target::Backend(primary))),
            None => Ok(Err(self
                .deliver_held(backend, request, relayed, held)
                .await?)),
        }
    }

    pub(super) async fn prepare(&mut self, frame: Frame, sql: Vec<u8>) -> Result<Flow, End> {
        let seq = frame.last_seq().wrapping_add(1);
        let text = sql::decode(&sql);
        let classified = sql::classify(&text);
        if let StatementKind::Refused(why) = classified.kind {
            return self
                .reply_error(seq, &ErrorPacket::not_supported(why))
                .await;
        }
        if sql::may_call_procedure(&text) {
            // Noted before it runs: see `Session::hold_missing_table`.
            self.routing.called_procedure = true;
        }
        let reads = classified.kind == StatementKind::Read;
        let kind = prepared_kind(classified.kind);
        let target = self.target(&kind, classified.hint, &sql);
        let backend = match self.backend_for(target, reads).await {
            Ok(backend) => backend,
            Err(error) => return self.reply_error(seq, &error).await,
        };
        drop(text);
        let id = self.statements.allocate();
        let definitions = match self.caches_metadata() {
            true => Definitions::Keep,
            false => Definitions::Pass,
        };
        let relayed = self
            .relay_to(
                backend,
                frame.as_bytes(),
                Expect::Prepare,
                Some(id),
                definitions,
            )
            .await?;
        if let Some(ok) = relayed.prepared {
            let columns: Option<ColumnDefs> = relayed.columns.map(Into::into);
            let reads_user_variable = sql::reads_user_variable(&sql);
            let statement = Statement {
                sql,
                params: ok.params,
                columns: ok.columns,
                types: None,
                on: vec![Prepared {
                    backend,
                    id: ok.statement_id,
                    has_types: false,
                    columns: columns.clone(),
                }],
                kind,
                last: None,
                long_data: false,
                reads_user_variable,
                held_columns: columns,
            };
            self.statements.insert(id, statement);
        }
        Ok(Flow::Continue)
    }

    pub(super) async fn execute(
        &mut self,
        mut frame: Frame,
        statement: u32,
        run: Run,
    ) -> Result<Flow, End> {
        let started = crate::metrics::Stopwatch::start();
        let seq = frame.last_seq().wrapping_add(1);
        let Some(id) = self.statements.resolve(statement) else {
            // MariaDB names the same handler for a bulk execution.
            let error = ErrorPacket::unknown_statement(statement, "mysqld_stmt_execute");
            return self.reply_error(seq, &error).await;
        };
        let (kind, long_data) = match (run, self.statements.get(id)) {
            (Run::Execute(_), Some(s))
                if s.reads_user_variable && self.routing.user_variables_on_primary =>
            {
                (StatementKind::Write, s.long_data)
            }
            (Run::Execute(_), Some(s)) => (s.kind.clone(), s.long_data),
            (Run::Bulk, _) | (_, None) => (StatementKind::Write, false),
        };
        let reads = matches!(kind, StatementKind::Read) && !long_data;
        let target = self.execution_target_avoiding(id, &kind, 0);
        // A read outside a transaction whose replica fails before it
        // answers runs once more, elsewhere.
        let outside_transaction = self.transaction().is_none();
        let mut retryable = reads && outside_transaction;
        let mut target = if retryable && self.must_wait_on(target) {
            self.causal_target(target, |session, avoid| {
                session.execution_target_avoiding(id, &kind, avoid)
            })
            .await
        } else {
            target
        };
        // The attempts run here rather than in a function of their own:
        // one future fewer on the path of every execution
        // (docs/benchmarks.md, step 24).
        let (backend, relayed) = loop {
            let prepared = match self.prepared_backend(target, id) {
                Some(prepared) => Ok(prepared),
                // Boxed: rare, and it would take room in every session's future.
                None => {
                    Box::pin(self.prepare_backend(&frame, target, (id, reads), retryable)).await?
                }
            };
            let failed = match prepared {
                Ok((backend, backend_id)) => {
                    // The frame stays ours for a second attempt: each writes
                    // its backend's statement id in.
                    let with_types =
                        self.execution_request(&mut frame, (backend, backend_id), id, run)?;
                    let request = with_types.as_ref().unwrap_or(&frame).as_bytes();
                    let supply = self.columns_to_supply(id, backend);
                    let definitions = match (self.caches_metadata(), &supply) {
                        (false, _) => Definitions::Pass,
                        (true, None) => Definitions::Keep,
                        (true, Some(columns)) => Definitions::Supply(columns),
                    };
                    self.routing.previous = Some(backend);
                    // A read that misses a temporary table goes to the
                    // primary; an execution the primary refuses as
                    // read-only (fenced) to the next one.
                    let hold = if reads {
                        self.hold_missing_table(backend)
                    } else if outside_transaction && Some(backend) == self.proxy.primary() {
                        Some(relay::READ_ONLY_ERROR)
                    } else {
                        None
                    };
                    let mut ready =
                        self.relay_for(backend, request, run.expect(), None, definitions)?;
                    ready.how.hold = ready.how.hold.or(hold);
                    if reads {
                        // A read writes nothing for other sessions to wait for.
                        ready.how.acknowledges = None;
                    }
                    let relayed = relay::relay(ready, request).await;
                    match self.relay_ended(backend, request, relayed)? {
                        Ok(relayed) if relayed.held => {
                            // Boxed: rare, and it would take room in every session's future.
                            let held = self.after_held(backend, reads, request, relayed);
                            match Box::pin(held).await? {
                                Ok(next) => target = next,
                                Err(delivered) => break (backend, delivered),
                            }
                            retryable = false;
                            continue;
                        }
                        Ok(relayed) => break (backend, relayed),
                        Err(Untouched(_)) if retryable && Some(backend) != self.proxy.primary() => {
                            backend
                        }
                        Err(Untouched(lost)) => return Err(self.lost(backend, lost, Some(1))),
                    }
                }
                Err(NotRun::Refused) => return Ok(Flow::Continue),
                Err(NotRun::Untouched(failed)) => failed,
            };
            warn!(
                backend = self.proxy.endpoints[failed].name,
                "an execution's backend connection failed before it answered; it runs elsewhere"
            );
            target = self.retry_target(failed, |session, avoid| {
                session.execution_target_avoiding(id, &kind, avoid)
            });
            retryable = false;
        };
        if let Some(columns) = &relayed.columns
            && let Some(statement) = self.statements.get_mut(id)
        {
            statement.columns_sent(backend, ColumnDefs::from(columns.as_slice()));
        }
        self.count(crate::metrics::KindLabel::of(&kind), started, true);
        if relayed.state_changed {
            let text = self
                .statements
                .get(id)
                .map(|s| sql::decode(&s.sql).into_owned());
            self.state_reported(&kind, &text.unwrap_or_default());
        }
        if matches!(kind, StatementKind::Write) {
            self.routing.user_variables_on_primary = true;
        }
        self.note_write(backend, !reads && relayed.error.is_none(), relayed.gtid);
        if reads {
            self.note_reader(backend);
        }
        self.apply(kind, relayed.error.is_none());
        Ok(Flow::Continue)
    }

    /// `target`'s backend and statement `id`'s id there, when its
    /// connection is open and the statement prepared there, as nearly
    /// always: then [`Session::prepare_backend`] need not run.
    fn prepared_backend(&self, target: Target, id: u32) -> Option<(usize, u32)> {
        let backend = self.open_backend(target)?;
        Some((backend, self.statements.get(id)?.id_on(backend)?))
    }

    /// Opens `target`'s connection if need be and prepares statement `id`
    /// there if it is not yet: the backend and the statement's id on it.
    /// With `retryable`, a replica whose connection fails is handed back
    /// rather than reported to the client.
    async fn prepare_backend(
        &mut self,
        frame: &Frame,
        target: Target,
        (id, reads): (u32, bool),
        retryable: bool,
    ) -> Result<Result<(usize, u32), NotRun>, End> {
        let seq = frame.last_seq().wrapping_add(1);
        let opened = match self.open_backend(target) {
            Some(backend) => Some(backend),
            None => self.open_or_refuse(target, frame, reads).await?,
        };
        let Some(backend) = opened else {
            self.metrics().refused();
            return Ok(Err(NotRun::Refused));
        };
        let retryable = retryable && Some(backend) != self.proxy.primary();
        if let Some(backend_id) = self.statements.get(id).and_then(|s| s.id_on(backend)) {
            return Ok(Ok((backend, backend_id)));
        }
        match self.prepared_on(id, backend, retryable).await? {
            Ok(backend_id) => Ok(Ok((backend, backend_id))),
            Err(PrepareFailure::Refused(error)) => {
                self.reply_error(seq, &error).await?;
                Ok(Err(NotRun::Refused))
            }
            Err(PrepareFailure::Untouched) => Ok(Err(NotRun::Untouched(backend))),
        }
    }

    /// Makes `frame` an execution of statement `id` on `backend`, where
    /// its id is `backend_id`, with the parameter types the backend lacks:
    /// the request to send is `frame`, or the frame returned when the types
    /// had to be added.
    fn execution_request(
        &mut self,
        frame: &mut Frame,
        (backend, backend_id): (usize, u32),
        id: u32,
        run: Run,
    ) -> Result<Option<Frame>, End> {
        let statement = self
            .statements
            .get_mut(id)
            .ok_or(End::Violation("internal error: statement vanished"))?;
        let layout = run.layout(frame.first_payload(), statement.params);
        statement.last = Some(backend);
        statement.long_data = false;
        let has_types = statement.on_backend(backend).is_some_and(|p| p.has_types);
        match (layout, &statement.types) {
            (Some(layout), _) if layout.types.is_some() => {
                // New types: remembered, and only this backend has them now.
                let (start, end) = layout.types.unwrap_or_default();
                statement.types = Some(frame.first_payload()[start..end].to_vec());
                statement.types_sent_to(backend);
            }
            (Some(layout), Some(types)) if !has_types => {
                // The client relies on types it sent in an earlier execution,
                // which ran elsewhere: this backend gets them now.
                let mut payload = command::with_types(&frame.clone().into_payload(), layout, types);
                set_statement_id(&mut payload, backend_id);
                statement.types_sent_to_also(backend);
                return Ok(Some(Frame::from_payload(0, &payload)));
            }
            _ => {}
        }
        set_statement_id(frame.first_payload_mut(), backend_id);
        Ok(None)
    }

    /// The column definitions to give the client if an execution of
    /// statement `id` on `backend` skips them (see
    /// [`Statement::columns_to_supply`]), on a connection that caches them.
    fn columns_to_supply(&self, id: u32, backend: usize) -> Option<ColumnDefs> {
        if !self.caches_metadata() {
            return None;
        }
        self.statements.get(id)?.columns_to_supply(backend)
    }

    /// Where the next execution of statement `id` runs, routed as `kind`
    /// (the statement's own, or a write for a bulk execution), choosing no
    /// reader in the `avoid` bit set.
    fn execution_target_avoiding(&self, id: u32, kind: &StatementKind, avoid: u64) -> Target {
        let Some(statement) = self.statements.get(id) else {
            return Target::NoPrimary;
        };
        if statement.long_data {
            if let Some(transaction) = self.transaction() {
                return Target::Backend(transaction);
            }
            return self.primary_target();
        }
        self.target_avoiding(kind, None, &statement.sql, avoid)
    }

    pub(super) async fn fetch(&mut self, frame: Frame, statement: u32) -> Result<Flow, End> {
        self.statement_command(frame, statement, Expect::Fetch, "mysqld_stmt_fetch")
            .await
    }

    pub(super) async fn reset_statement(
        &mut self,
        frame: Frame,
        statement: u32,
    ) -> Result<Flow, End> {
        self.statement_command(frame, statement, Expect::Single, "mysqld_stmt_reset")
            .await
    }

    /// COM_STMT_FETCH / COM_STMT_RESET: relayed to the backend where the
    /// statement last ran (or where it was prepared).
    async fn statement_command(
        &mut self,
        mut frame: Frame,
        statement: u32,
        expect: Expect,
        name: &str,
    ) -> Result<Flow, End> {
        let seq = frame.last_seq().wrapping_add(1);
        let found = self
            .statements
            .resolve(statement)
            .and_then(|id| self.statements.get(id))
            .and_then(|s| {
                let backend = s.last.or_else(|| s.on.first().map(|p| p.backend))?;
                Some((backend, s.id_on(backend)?))
            });
        let Some((backend, backend_id)) = found.filter(|(b, _)| self.backends[*b].is_some()) else {
            return self
                .reply_error(seq, &ErrorPacket::unknown_statement(statement, name))
                .await;
        };
        set_statement_id(frame.first_payload_mut(), backend_id);
        self.relay_to(backend, frame.as_bytes(), expect, None, Definitions::Pass)
            .await?;
        Ok(Flow::Continue)
    }

    /// COM_STMT_SEND_LONG_DATA has no response: the data goes to the
    /// primary (or the transaction's backend), where the next execution
    /// will run. An unknown statement is reported by the server at that
    /// execution, so it is dropped here.
    pub(super) async fn send_long_data(
        &mut self,
        mut frame: Frame,
        statement: u32,
    ) -> Result<Flow, End> {
        let Some(id) = self.statements.resolve(statement) else {
            return Ok(Flow::Continue);
        };
        let target = self
            .transaction()
            .or(self.proxy.primary())
            .map_or(Target::NoPrimary, Target::Backend);
        let Ok(backend) = self.backend_for(target, false).await else {
            return Ok(Flow::Continue);
        };
        let Ok(backend_id) = self.prepared_on(id, backend, false).await? else {
            return Ok(Flow::Continue);
        };
        if let Some(statement) = self.statements.get_mut(id) {
            statement.long_data = true;
        }
        set_statement_id(frame.first_payload_mut(), backend_id);
        self.send_only(backend, frame.as_bytes()).await?;
        Ok(Flow::Continue)
    }

    /// COM_STMT_CLOSE has no response: the statement is closed on every
    /// backend that has it.
    pub(super) async fn close_statement(
        &mut self,
        frame: Frame,
        statement: u32,
    ) -> Result<Flow, End> {
        let Some(removed) = self
            .statements
            .resolve(statement)
            .and_then(|id| self.statements.remove(id))
        else {
            return Ok(Flow::Continue);
        };
        let mut payload = frame.first_payload().to_vec();
        for Prepared {
            backend,
            id: backend_id,
            ..
        } in removed.on
        {
            if self.backends[backend].is_some() {
                set_statement_id(&mut payload, backend_id);
                let frame = Frame::from_payload(0, &payload);
                self.send_only(backend, frame.as_bytes()).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// The statement's id on `backend` (connected), preparing it there first
    /// if needed.
    async fn prepared_on(
        &mut self,
        id: u32,
        backend: usize,
        retryable: bool,
    ) -> Result<Result<u32, PrepareFailure>, End> {
        let Some(statement) = self.statements.get(id) else {
            return Err(End::Violation("internal error: statement vanished"));
        };
        if let Some(backend_id) = statement.id_on(backend) {
            return Ok(Ok(backend_id));
        }
        let mut request = vec![command::com::STMT_PREPARE];
        request.extend_from_slice(&statement.sql);
        let Some(conn) = self.backends[backend].as_mut() else {
            return Err(End::Violation("internal error: no backend connection"));
        };
        match conn.run(&request, Expect::Prepare).await {
            Ok((_, mut scanner)) => match scanner.take_prepare_ok() {
                Some(ok) => {
                    let deprecate_eof = conn.deprecate_eof();
                    let columns = scanner
                        .take_captured()
                        .and_then(|captured| {
                            column_definitions(&captured, Some(&ok), deprecate_eof)
                        })
                        .map(ColumnDefs::from);
                    if let Some(statement) = self.statements.get_mut(id) {
                        statement.on.push(Prepared {
                            backend,
                            id: ok.statement_id,
                            has_types: false,
                            columns,
                        });
                    }
                    Ok(Ok(ok.statement_id))
                }
                None => Err(End::Violation("internal error: PREPARE_OK not seen")),
            },
            Err(BackendError::Refused(error)) => Ok(Err(PrepareFailure::Refused(error))),
            Err(error) if retryable => {
                debug!(%error, "preparing on a replica failed");
                self.discard(backend);
                Ok(Err(PrepareFailure::Untouched))
            }
            Err(error) => {
                self.discard(backend);
                Err(self.lost(backend, error, Some(1)))
            }
        }
    }

    /// Sends packets that get no response.
    async fn send_only(&mut self, target: usize, request: &[u8]) -> Result<(), End> {
        let Some(backend) = self.backends[target].as_mut() else {
            return Ok(());
        };
        if let Err(error) = super::relay::send_only(backend, request).await {
            self.discard(target);
            // The command has no response: no ERR for the client either.
            return Err(self.lost(target, error, None));
        }
        Ok(())
    }
}
