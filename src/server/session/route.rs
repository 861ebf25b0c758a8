//! Routing a session's statements: classify, decide with
//! [`crate::routing::route`], run there, and keep the session's state
//! consistent on every backend it holds.

use std::sync::atomic::Ordering;

use mysql_common::constants::StatusFlags;
use tracing::{info, warn};

use super::relay::{self, Definitions};
use super::transaction_log::Unreplayable;
use super::{End, Flow, RESULTS, Session, Untouched};
use crate::config::ReplicaAffinity;
use crate::metrics::{KindLabel, Route, Stopwatch, ThreadMetrics};
use crate::protocol::messages::ErrorPacket;
use crate::protocol::packet::Frame;
use crate::protocol::response::Expect;
use crate::routing::{ReadPolicy, SessionView, Target, route};
use crate::server::session::relay::Relayed;
use crate::sql::{self, Classified, Hint, SessionChange, StatementKind, TransactionEffect};

impl Session {
    /// The backend where a transaction is open, from its status flags.
    pub(super) fn transaction(&self) -> Option<usize> {
        self.backends.iter().position(|b| {
            b.as_ref()
                .is_some_and(|c| c.status().contains(StatusFlags::SERVER_STATUS_IN_TRANS))
        })
    }

    /// Where a statement of `kind` with text `sql` runs now.
    pub(super) fn target(&self, kind: &StatementKind, hint: Option<Hint>, sql: &[u8]) -> Target {
        self.target_avoiding(kind, hint, sql, 0)
    }

    /// Where a statement runs, choosing no reader in the `avoid` bit set.
    pub(super) fn target_avoiding(
        &self,
        kind: &StatementKind,
        hint: Option<Hint>,
        sql: &[u8],
        avoid: u64,
    ) -> Target {
        let view = SessionView {
            transaction: self.transaction(),
            autocommit_off: !self.status.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT),
            locked_tables: self.routing.locked_tables,
            uses_temporary_table: sql::mentions_any(sql, &self.routing.temporary_tables),
            pinned: self.routing.pinned,
            previous: self.routing.previous,
        };
        let settings = &self.proxy.config.routing;
        let metrics = &self.proxy.metrics;
        let load = |backend: usize| metrics.in_flight(backend);
        // With session affinity a choice is made once per session, so the
        // sessions' sequence numbers spread them; otherwise every read takes
        // the next turn.
        let (turn, sticky) = match settings.replica_affinity {
            ReplicaAffinity::Session => (u64::from(self.registration.id()), self.routing.reader),
            ReplicaAffinity::Statement => (self.proxy.turn.fetch_add(1, Ordering::Relaxed), None),
        };
        let reads = ReadPolicy {
            selection: settings.replica_selection,
            primary_serves_reads: settings.primary_serves_reads,
            load: &load,
            turn,
            avoid,
            sticky,
        };
        route(kind, hint, &view, &self.proxy.topology.load(), &reads)
    }

    /// Where the session's next plain read would go: the connection a
    /// session that has not read yet opens first.
    pub(super) fn next_read_target(&self) -> Target {
        self.target(&StatementKind::Read, None, b"")
    }

    /// COM_QUERY: classify, route, relay, then keep what the statement
    /// changed about the session.
    pub(super) async fn query(&mut self, frame: Frame) -> Result<Flow, End> {
        let started = Stopwatch::start();
        let text = sql::decode(&frame.first_payload()[1..]);
        let Classified { kind, hint } = sql::classify(&text);
        let kind = match kind {
            StatementKind::Refused(why) => {
                let seq = frame.last_seq().wrapping_add(1);
                return self
                    .reply_error(seq, &ErrorPacket::not_supported(why))
                    .await;
            }
            StatementKind::SessionState(change) => {
                if sql::names_state_tracker(&text) {
                    self.routing.owns_state_tracker = true;
                    self.pin("the client sets session_track_state_change, which rwsplit relies on");
                }
                drop(text);
                return self
                    .session_state(frame, RESULTS, Some(change), started)
                    .await;
            }
            StatementKind::ExecutePrepared(name) => match self.routing.prepared.get(&name) {
                Some(true) => StatementKind::Read,
                _ => StatementKind::Write,
            },
            kind => kind,
        };
        let kind = match kind {
            StatementKind::Read
                if self.routing.user_variables_on_primary
                    && sql::reads_user_variable(text.as_bytes()) =>
            {
                StatementKind::Write
            }
            kind => kind,
        };
        if self.routing.transaction.backend().is_some() {
            self.follow_primary(frame.last_seq().wrapping_add(1))
                .await?;
        }
        let target = self.target(&kind, hint, text.as_bytes());
        tracing::trace!(?kind, ?hint, ?target, "routed");
        // (`matches!`, not `==`: comparing with a constant builds and drops one.)
        let read = matches!(kind, StatementKind::Read);
        // `START TRANSACTION READ ONLY` runs whole on one replica.
        let on_replica = read || matches!(kind, StatementKind::Begin { read_only: true });
        let outside_transaction = self.transaction().is_none();
        let reroute =
            |session: &Self, avoid| session.target_avoiding(&kind, hint, text.as_bytes(), avoid);
        // A read-only transaction that starts on a replica must see the
        // session's writes as much as a single read. (Tested here first:
        // a future not made is cheaper than one that returns at once.)
        let target = if outside_transaction && on_replica && self.must_wait_on(target) {
            self.causal_target(target, reroute).await
        } else {
            target
        };
        let in_recorded_transaction = self
            .replayable_transaction()
            .filter(|&backend| target == Target::Backend(backend));
        let relayed = if read && outside_transaction {
            // A read whose replica's connection fails before it answers
            // runs once more, elsewhere. The attempts run here rather than
            // in a function of their own: one future fewer on the path of
            // every read (docs/benchmarks.md, step 24).
            let (mut target, mut retryable) = (target, true);
            loop {
                let backend = match self.open_backend(target) {
                    Some(backend) => backend,
                    // Boxed: rare, and it would take room in every session's future.
                    None => match Box::pin(self.open_or_refuse(target, &frame, true)).await? {
                        Some(backend) => backend,
                        None => break None,
                    },
                };
                self.routing.previous = Some(backend);
                let request = frame.as_bytes();
                let hold = self.hold_missing_table(backend);
                let mut ready =
                    self.relay_for(backend, request, RESULTS, None, Definitions::Pass)?;
                ready.how.hold = ready.how.hold.or(hold);
                // A read writes nothing for other sessions to wait for.
                ready.how.acknowledges = None;
                let relayed = relay::relay(ready, request).await;
                let lost = match self.relay_ended(backend, request, relayed)? {
                    Ok(relayed) if relayed.held => {
                        self.take_held(backend);
                        target = self.primary_target();
                        continue;
                    }
                    Ok(relayed) => break Some(relayed),
                    Err(Untouched(lost)) => lost,
                };
                if !retryable || Some(backend) == self.proxy.primary() {
                    // Nowhere better to go: the client hears it was lost.
                    return Err(self.lost(backend, lost, Some(1)));
                }
                warn!(
                    backend = self.proxy.endpoints[backend].name,
                    error = %lost,
                    "a read's backend connection failed before it answered; the read runs elsewhere"
                );
                target = self.retry_target(backend, reroute);
                retryable = false;
            }
        } else if let Some(backend) = in_recorded_transaction {
            let may_have_committed = sql::transaction_effect(&text) != TransactionEffect::Within;
            self.run_in_transaction(backend, &frame, may_have_committed)
                .await?
        } else if outside_transaction && self.is_primary(target) {
            self.run_on_primary(target, &frame).await?
        } else {
            self.run_on(target, &frame, RESULTS, false).await?
        };
        self.count(KindLabel::of(&kind), started, relayed.is_some());
        if relayed.as_ref().is_some_and(|r| r.state_changed) {
            self.state_reported(&kind, &text);
        }
        if matches!(kind, StatementKind::Write) {
            self.routing.user_variables_on_primary = true;
            if sql::may_call_procedure(&text) {
                self.routing.called_procedure = true;
            }
        }
        let succeeded = relayed.as_ref().is_some_and(|r| r.error.is_none());
        if let (Some(relayed), Some(backend)) = (relayed, self.routing.previous) {
            self.note_write(backend, !read && succeeded, relayed.gtid);
            if on_replica {
                self.note_reader(backend);
            }
        }
        self.apply(kind, succeeded);
        Ok(Flow::Continue)
    }

    /// The server reported that a statement of `kind`, `text`, changed
    /// the session's state. What rwsplit recognised is replayed or
    /// followed already; any other change (a SET inside a procedure or an
    /// `EXECUTE IMMEDIATE`, say) cannot be replayed elsewhere, so the
    /// session stays where that happened: on the primary.
    pub(super) fn state_reported(&mut self, kind: &StatementKind, text: &str) {
        if !sql::state_change_expected(kind, text) {
            if self.routing.previous != self.proxy.primary() {
                // (Not the statement's text: it may hold anything.)
                warn!(
                    id = self.registration.id(),
                    ?kind,
                    "a statement rwsplit sent to a replica changed the session's state"
                );
            }
            self.pin("the server reported a change of session state rwsplit cannot replay");
        }
    }

    /// What a read on `backend` must not pass to the client: after the
    /// session called a procedure, which may have created temporary tables
    /// that the server does not report, a replica's "no such table" sends
    /// the read to the primary instead.
    pub(super) fn hold_missing_table(&self, backend: usize) -> Option<u16> {
        (self.routing.called_procedure && Some(backend) != self.proxy.primary())
            .then_some(relay::NO_SUCH_TABLE)
    }

    /// Remembers the replica a read ran on, for the session's next reads.
    pub(super) fn note_reader(&mut self, backend: usize) {
        if Some(backend) != self.proxy.primary() {
            self.routing.reader = Some(backend);
        }
    }

    /// The counters of the session's thread.
    pub(super) fn metrics(&self) -> &ThreadMetrics {
        self.proxy.metrics.thread(self.thread)
    }

    /// The primary as a target.
    pub(super) fn primary_target(&self) -> Target {
        self.proxy
            .primary()
            .map_or(Target::NoPrimary, Target::Backend)
    }

    /// Counts a statement for the metrics: where it ran (the previous
    /// backend) when it `ran`, else as refused.
    pub(super) fn count(&self, kind: KindLabel, started: Stopwatch, ran: bool) {
        let metrics = self.metrics();
        match self.routing.previous.filter(|_| ran) {
            Some(backend) => {
                let route = if Some(backend) == self.proxy.primary() {
                    Route::Primary
                } else {
                    Route::Replica
                };
                metrics.statement(route, kind, started.micros());
            }
            None => metrics.refused(),
        }
    }

    /// Records what a statement changed about the session's routing.
    pub(super) fn apply(&mut self, kind: StatementKind, succeeded: bool) {
        match kind {
            // Even a failed multi-statement packet may have changed state.
            StatementKind::PinsToPrimary => {
                self.pin("a session change that cannot be replayed on other backends")
            }
            _ if !succeeded => {}
            StatementKind::LockTables => self.routing.locked_tables = true,
            StatementKind::UnlockTables => self.routing.locked_tables = false,
            StatementKind::CreateTemporaryTable(table) => self.routing.temporary_tables.push(table),
            StatementKind::DropTables(tables) => self
                .routing
                .temporary_tables
                .retain(|t| !tables.iter().any(|d| d.eq_ignore_ascii_case(t))),
            _ => {}
        }
    }

    /// Keeps the session on the primary from now on, and lets go of its
    /// other backend connections (their state will not be kept up to date).
    pub(super) fn pin(&mut self, why: &str) {
        if self.routing.pinned {
            return;
        }
        info!(
            id = self.registration.id(),
            why, "session stays on the primary from now on"
        );
        self.routing.pinned = true;
        let primary = self.proxy.primary();
        for index in 0..self.backends.len() {
            if Some(index) != primary {
                self.release_backend(index);
            }
        }
    }

    /// A statement that changes session state: it runs where the session's
    /// transaction is (or else as [`Session::state_target`] says), its
    /// answer goes to the client, and if it succeeded it is run on every
    /// other backend connection the session holds and recorded for
    /// connections opened later.
    pub(super) async fn session_state(
        &mut self,
        frame: Frame,
        expect: Expect,
        change: Option<SessionChange>,
        started: Stopwatch,
    ) -> Result<Flow, End> {
        // Replaying the session's state and then its transaction would
        // apply this twice.
        self.routing.transaction.spoil(Unreplayable::SessionState);
        let (anchor, outside_transaction) = match self.transaction() {
            Some(backend) => (Target::Backend(backend), false),
            None => (self.state_target(), true),
        };
        // Outside a transaction an unreachable replica is no reason to
        // fail: like a read, the statement goes to another server.
        let relayed = self
            .run_on(anchor, &frame, expect, outside_transaction)
            .await?;
        self.count(KindLabel::Session, started, relayed.is_some());
        let Some(relayed) = relayed else {
            return Ok(Flow::Continue);
        };
        if let Some(backend) = self.routing.previous.filter(|_| outside_transaction) {
            self.note_reader(backend);
        }
        if relayed.error.is_some() {
            return Ok(Flow::Continue);
        }
        match change {
            Some(SessionChange::Database(db)) => self.identity.db = Some(db),
            Some(SessionChange::Prepare { name, reads }) => {
                self.routing.prepared.insert(name, reads);
            }
            Some(SessionChange::Deallocate(name)) => {
                self.routing.prepared.remove(&name);
            }
            Some(SessionChange::Variables) | None => {}
        }
        if self.routing.pinned {
            return Ok(Flow::Continue);
        }
        let payload = frame.into_payload().to_vec();
        if self
            .routing
            .history
            .record(payload.clone(), expect)
            .is_err()
        {
            self.pin("more session-state statements than routing.session_history_limit");
            return Ok(Flow::Continue);
        }
        let ran_on = self.routing.previous;
        for index in 0..self.backends.len() {
            let Some(conn) = self.backends[index]
                .as_mut()
                .filter(|_| Some(index) != ran_on)
            else {
                continue;
            };
            if let Err(error) = conn.run(&payload, expect).await {
                let backend = &self.proxy.endpoints[index].name;
                warn!(backend, %error, "a session-state statement failed on another backend; connection closed");
                self.discard(index);
            }
        }
        Ok(Flow::Continue)
    }

    /// Where a session-state statement runs outside a transaction: on the
    /// primary when the session holds its connection (or is pinned there),
    /// else on a connection it holds, else where its next read would go.
    /// Session-state statements compute the same on every server (anything
    /// else pins the session), and each is replayed on the others as they
    /// are opened; so a session that only reads — a driver's `SET NAMES`
    /// and `SET autocommit` at connect, then queries — never opens the
    /// primary's connection. The statement that overflows the history pins
    /// the session to the primary, so it runs there, on a connection the
    /// history brought up to date first.
    fn state_target(&self) -> Target {
        let primary = self.primary_target();
        if self.routing.pinned
            || self.routing.history.is_full()
            || self.open_backend(primary).is_some()
        {
            return primary;
        }
        match self.backends.iter().position(Option::is_some) {
            Some(open) => Target::Backend(open),
            None => self.next_read_target(),
        }
    }

    /// Runs a client command on `target`. A read whose replica cannot be
    /// reached outside a transaction runs on the primary instead. `Ok(None)`
    /// when no backend could take it (the client got an ERR).
    pub(super) async fn run_on(
        &mut self,
        target: Target,
        frame: &Frame,
        expect: Expect,
        read: bool,
    ) -> Result<Option<Relayed>, End> {
        let backend = match self.open_backend(target) {
            Some(backend) => backend,
            None => match self.open_or_refuse(target, frame, read).await? {
                Some(backend) => backend,
                None => return Ok(None),
            },
        };
        let relayed = self
            .relay_to(backend, frame.as_bytes(), expect, None, Definitions::Pass)
            .await?;
        self.routing.previous = Some(backend);
        Ok(Some(relayed))
    }

    /// Whether `target` is the primary.
    fn is_primary(&self, target: Target) -> bool {
        matches!(target, Target::Backend(backend) if Some(backend) == self.proxy.primary())
    }

    /// Runs a statement outside a transaction on the primary, as
    /// [`Session::run_on`] does. One the primary refuses as read-only, as
    /// a switchover or failover fenced it, did nothing there: it runs on
    /// the primary that follows (waiting up to `routing.wait_for_primary`
    /// for it), so that the client does not see the change. A server
    /// still writable that refuses it for another reason, or no new
    /// primary in time, and the client gets the refusal.
    async fn run_on_primary(
        &mut self,
        target: Target,
        frame: &Frame,
    ) -> Result<Option<Relayed>, End> {
        let backend = match self.open_backend(target) {
            Some(backend) => backend,
            None => match self.open_or_refuse(target, frame, false).await? {
                Some(backend) => backend,
                None => return Ok(None),
            },
        };
        self.routing.previous = Some(backend);
        let request = frame.as_bytes();
        let mut ready = self.relay_for(backend, request, RESULTS, None, Definitions::Pass)?;
        ready.how.hold = Some(relay::READ_ONLY_ERROR);
        let relayed = relay::relay(ready, request).await;
        match self.relay_ended(backend, request, relayed)? {
            Ok(relayed) if relayed.held => {
                // Boxed: rare, and it would take room in every session's future.
                Box::pin(self.run_after_fence(backend, frame, relayed)).await
            }
            Ok(relayed) => Ok(Some(relayed)),
            Err(Untouched(lost)) => Err(self.lost(backend, lost, Some(1))),
        }
    }

    /// [`Session::run_on_primary`] once `fenced` refused the statement as
    /// read-only (its ERR held in `refused`).
    async fn run_after_fence(
        &mut self,
        fenced: usize,
        frame: &Frame,
        refused: Relayed,
    ) -> Result<Option<Relayed>, End> {
        let held = self.take_held(fenced);
        match self.successor(fenced).await? {
            Some(primary) => {
                self.run_on(Target::Backend(primary), frame, RESULTS, false)
                    .await
            }
            None => self
                .deliver_held(fenced, frame.as_bytes(), refused, held)
                .await
                .map(Some),
        }
    }

    /// The primary that follows `fenced`, which refused a statement as
    /// read-only: `None` when it is not read-only (another of its options
    /// refused the statement), or no other primary was published within
    /// `routing.wait_for_primary`.
    pub(super) async fn successor(&mut self, fenced: usize) -> Result<Option<usize>, End> {
        let read_only = self.read_only(fenced).await;
        if !read_only.map_err(|lost| self.lost(fenced, lost, Some(1)))? {
            return Ok(None);
        }
        let limit = self.proxy.config.routing.wait_for_primary;
        let next = self
            .proxy
            .topology
            .wait_for_primary_except(Some(fenced), limit);
        Ok(next.await)
    }

    /// Opens the connection for `target` ([`Session::backend_for`]), or
    /// tells the client why it could not be opened (`Ok(None)`), in answer
    /// to its command `frame`.
    pub(super) async fn open_or_refuse(
        &mut self,
        target: Target,
        frame: &Frame,
        read: bool,
    ) -> Result<Option<usize>, End> {
        match self.backend_for(target, read).await {
            Ok(backend) => Ok(Some(backend)),
            Err(error) => {
                self.reply_error(frame.last_seq().wrapping_add(1), &error)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Where a read goes once `failed` could not take it (its connection
    /// failed, or could not be opened): after a write the read must see,
    /// where that write is; else where `reroute` sends it, avoiding
    /// `failed`.
    pub(super) fn retry_target(
        &self,
        failed: usize,
        reroute: impl Fn(&Self, u64) -> Target,
    ) -> Target {
        match self.write_pending() {
            true => self.primary_target(),
            false => reroute(self, 1 << failed),
        }
    }

    /// `target`'s backend when its connection is open, as it nearly always
    /// is: then [`Session::backend_for`] need not be awaited, whose future
    /// costs about a hundred instructions even when it has nothing to do.
    pub(super) fn open_backend(&self, target: Target) -> Option<usize> {
        match target {
            Target::Backend(backend) if self.backends[backend].is_some() => Some(backend),
            _ => None,
        }
    }

    /// The primary, once one is published (a switchover or failover is
    /// under way), within `routing.wait_for_primary`; else the error that
    /// says why there is none.
    async fn wait_for_primary(&self) -> Result<usize, ErrorPacket> {
        let limit = self.proxy.config.routing.wait_for_primary;
        match self.proxy.topology.wait_for_primary(limit).await {
            Some(primary) => Ok(primary),
            None => {
                let topology = self.proxy.topology.load();
                Err(ErrorPacket::no_primary(topology.alarm.as_deref()))
            }
        }
    }

    /// Opens (if needed) the connection for `target`. A read outside a
    /// transaction whose replica cannot be reached goes to another reader
    /// (a replica, else the primary) instead.
    pub(super) async fn backend_for(
        &mut self,
        target: Target,
        read: bool,
    ) -> Result<usize, ErrorPacket> {
        let backend = match target {
            Target::Backend(backend) => backend,
            Target::NoPrimary => self.wait_for_primary().await?,
        };
        let error = match self.ensure_backend(backend).await {
            Ok(()) => return Ok(backend),
            Err(error) => error,
        };
        let primary = self.proxy.primary();
        if !read || Some(backend) == primary || self.transaction().is_some() {
            return Err(error);
        }
        let fallback = self.retry_target(backend, |session, avoid| {
            session.target_avoiding(&StatementKind::Read, None, b"", avoid)
        });
        let Target::Backend(fallback) = fallback else {
            return Err(error);
        };
        warn!(
            backend = self.proxy.endpoints[backend].name,
            instead = self.proxy.endpoints[fallback].name,
            "replica unreachable; the read goes elsewhere"
        );
        self.ensure_backend(fallback).await.map(|()| fallback)
    }
}
