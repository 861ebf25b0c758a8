//! Transaction replay (`routing.transaction_replay`, docs/failover.md): a
//! transaction open on a primary that is fenced, fails or is replaced is
//! run again on the new primary, statement by statement, and goes on there
//! when every statement answers exactly as it did the first time. When it
//! cannot be replayed, the session does what it does without replay.
//!
//! Three moments move a transaction:
//!
//! - before one of its statements, the primary is no longer its server
//!   (the monitor published another, or this rwsplit fenced it for a
//!   switchover);
//! - a statement is refused with ERR 1290 by its server, now read-only
//!   (another rwsplit fenced it): the ERR is kept from the client;
//! - its server's connection is lost before a statement answered, and the
//!   statement cannot have committed ([`crate::sql::transaction_effect`]).
//!
//! If replay fails part-way (a statement answers differently, or fails),
//! the client gets an ERR saying so and the session ends: its transaction
//! is gone, as when a connection is lost.

use mysql_common::constants::StatusFlags;
use tracing::{info, warn};

use super::relay::{Definitions, Digested, Relayed};
use super::{End, RESULTS, Session, Untouched};
use crate::backend::conn::BackendError;
use crate::protocol::command::com;
use crate::protocol::messages::ErrorPacket;
use crate::protocol::packet::Frame;
use crate::sql;

impl Session {
    /// Whether a command relayed to `target` is recorded for replay: it
    /// runs in the transaction being recorded, or on the primary where it
    /// may begin one.
    pub(super) fn records_transaction(&self, target: usize) -> bool {
        if !self.proxy.config.routing.transaction_replay {
            return false;
        }
        match self.routing.transaction.backend() {
            Some(backend) => backend == target,
            None => self.proxy.primary() == Some(target),
        }
    }

    /// Records a command relayed to `target` (see
    /// [`Session::records_transaction`]).
    pub(super) fn record(&mut self, target: usize, request: &[u8], relayed: &Relayed) {
        let in_transaction = self.backends[target]
            .as_ref()
            .is_some_and(|c| c.status().contains(StatusFlags::SERVER_STATUS_IN_TRANS));
        // Outside a transaction (most statements: autocommit, or its end)
        // the log only forgets: the statement is not lexed.
        let text = match request.get(4) {
            Some(&com::QUERY)
                if in_transaction && matches!(relayed.digest, Some(Digested::Bytes(_))) =>
            {
                let effect = sql::transaction_effect(&sql::decode(&request[5..]));
                Some((request, effect))
            }
            _ => None,
        };
        let digest = match relayed.digest {
            Some(Digested::Bytes(digest)) => digest.get(),
            _ => 0,
        };
        self.routing
            .transaction
            .record(target, text, digest, in_transaction);
    }

    /// The ERR a relay kept from the client ([`Relayed::held`]), taken
    /// from the backend's read buffer.
    pub(super) fn take_held(&mut self, target: usize) -> Vec<u8> {
        let Some(conn) = self.backends[target].as_mut() else {
            return Vec::new();
        };
        let held = conn.buffered().to_vec();
        conn.consume(held.len());
        held
    }

    /// Sends the client the ERR a relay kept from it, after all.
    pub(super) async fn deliver_held(
        &mut self,
        target: usize,
        request: &[u8],
        mut relayed: Relayed,
        held: Vec<u8>,
    ) -> Result<Relayed, End> {
        self.client.write_relayed(&held, false).await?;
        relayed.held = false;
        self.record(target, request, &relayed);
        Ok(relayed)
    }

    /// The backend of the transaction being recorded, if it can be
    /// replayed.
    pub(super) fn replayable_transaction(&self) -> Option<usize> {
        let log = &self.routing.transaction;
        log.backend().filter(|_| log.replayable().is_ok())
    }

    /// Before a statement of the transaction being recorded: when its
    /// server is no longer the primary, the transaction moves to the one
    /// that is (waiting for it, if none is published yet).
    pub(super) async fn follow_primary(&mut self, seq: u8) -> Result<(), End> {
        let log = &self.routing.transaction;
        let Some(from) = log.backend() else {
            return Ok(());
        };
        if self.proxy.primary() == Some(from) {
            return Ok(());
        }
        if let Err(why) = log.replayable() {
            warn!(
                id = self.registration.id(),
                backend = self.proxy.endpoints[from].name,
                why = why.describe(),
                "the transaction's server is no longer the primary, and the transaction cannot be replayed"
            );
            self.routing.transaction.clear();
            return Ok(());
        }
        // Boxed, as everything rare here: a session's future is as large
        // as the largest it may await inline, for as long as it lives.
        Box::pin(self.move_transaction(from, None, seq))
            .await
            .map(drop)
    }

    /// Runs a statement of the transaction being recorded (on `from`, its
    /// server). If `from` refuses it as read-only, or its connection is
    /// lost before it answers and it cannot have committed
    /// (`may_have_committed` false), the transaction moves to the new
    /// primary and the statement runs there.
    pub(super) async fn run_in_transaction(
        &mut self,
        from: usize,
        frame: &Frame,
        may_have_committed: bool,
    ) -> Result<Option<Relayed>, End> {
        let outcome = self
            .try_relay_to(from, frame.as_bytes(), RESULTS, None, Definitions::Pass)
            .await?;
        match outcome {
            Ok(relayed) if !relayed.held => Ok(Some(relayed)),
            interrupted => {
                Box::pin(self.interrupted(from, frame, may_have_committed, interrupted)).await
            }
        }
    }

    /// [`Session::run_in_transaction`] once `from` refused the statement
    /// (`Ok`, with the ERR held) or was lost before it answered (`Err`).
    async fn interrupted(
        &mut self,
        from: usize,
        frame: &Frame,
        may_have_committed: bool,
        outcome: Result<Relayed, Untouched>,
    ) -> Result<Option<Relayed>, End> {
        let seq = frame.last_seq().wrapping_add(1);
        let (relayed, held) = match outcome {
            Ok(refused) => {
                let held = self.take_held(from);
                (refused, held)
            }
            Err(Untouched(lost)) => {
                if !may_have_committed
                    && let Some(to) = self.move_transaction(from, Some(from), seq).await?
                {
                    return self.run_moved(to, frame).await;
                }
                self.routing.transaction.clear();
                return Err(self.lost(from, lost, Some(seq)));
            }
        };
        match self.read_only(from).await {
            Ok(true) => {
                if let Some(to) = self.move_transaction(from, Some(from), seq).await? {
                    return self.run_moved(to, frame).await;
                }
            }
            Ok(false) => {}
            Err(lost) => {
                self.routing.transaction.clear();
                return Err(self.lost(from, lost, Some(seq)));
            }
        }
        self.deliver_held(from, frame.as_bytes(), relayed, held)
            .await
            .map(Some)
    }

    /// Whether `backend`, which refused a statement with ERR 1290, is
    /// read-only now — fenced — rather than refusing it for another of
    /// its options; asked on the session's connection to it, which is
    /// discarded if that fails.
    pub(super) async fn read_only(&mut self, backend: usize) -> Result<bool, BackendError> {
        let Some(conn) = self.backends[backend].as_mut() else {
            return Ok(false);
        };
        match conn.query_value("SELECT @@global.read_only").await {
            Ok(value) => Ok(value.as_deref() == Some(b"1")),
            Err(lost) => {
                self.discard(backend);
                Err(lost)
            }
        }
    }

    /// Runs the statement that found its transaction's server gone on
    /// `to`, where the transaction was just replayed.
    async fn run_moved(&mut self, to: usize, frame: &Frame) -> Result<Option<Relayed>, End> {
        let relayed = self
            .relay_to(to, frame.as_bytes(), RESULTS, None, Definitions::Pass)
            .await?;
        self.routing.previous = Some(to);
        Ok(Some(relayed))
    }

    /// Moves the transaction from `from` to the primary, waiting up to
    /// `routing.wait_for_primary` for one other than `except`. `Ok(None)`
    /// when there is none, or it is `from` again: nothing was done.
    /// `Ok(Some(to))` when the transaction was replayed on `to` (its
    /// connection on `from` closed, which rolls it back there). When the
    /// replay fails the client is told, and the session ends.
    async fn move_transaction(
        &mut self,
        from: usize,
        except: Option<usize>,
        seq: u8,
    ) -> Result<Option<usize>, End> {
        let limit = self.proxy.config.routing.wait_for_primary;
        let topology = &self.proxy.topology;
        let Some(to) = topology.wait_for_primary_except(except, limit).await else {
            return Ok(None);
        };
        if to == from {
            return Ok(None);
        }
        let Ok(entries) = self.routing.transaction.replayable() else {
            return Ok(None);
        };
        let entries = entries.to_vec();
        self.discard(from);
        let names = |index: usize| self.proxy.endpoints[index].name.clone();
        let (from_name, to_name) = (names(from), names(to));
        match self.replay_on(to, &entries).await {
            Ok(()) => {
                info!(
                    id = self.registration.id(),
                    from = from_name,
                    to = to_name,
                    statements = entries.len(),
                    "transaction replayed on the new primary"
                );
                self.proxy.metrics.transaction_replay(true);
                self.routing.transaction.moved_to(to);
                self.routing.previous = Some(to);
                Ok(Some(to))
            }
            Err(why) => {
                self.proxy.metrics.transaction_replay(false);
                self.discard(to);
                self.routing.transaction.clear();
                let error = ErrorPacket::transaction_not_replayed(&from_name, &to_name, &why);
                // The session ends either way; the client may be gone.
                let _ = self.client.send_error(seq, &error).await;
                Err(End::BackendLost {
                    backend: from_name,
                    error: format!("transaction not replayed on {to_name}: {why}"),
                    tell: None,
                })
            }
        }
    }

    /// Runs the recorded statements on `to`, comparing each answer with
    /// the one the client got; why not, if they differ or fail.
    async fn replay_on(
        &mut self,
        to: usize,
        entries: &[super::transaction_log::Entry],
    ) -> Result<(), String> {
        self.ensure_backend(to)
            .await
            .map_err(|error| format!("cannot open a connection: {}", error.message))?;
        let Some(conn) = self.backends[to].as_mut() else {
            return Err("no connection".into());
        };
        let count = entries.len();
        for (n, entry) in entries.iter().enumerate() {
            let n = n + 1;
            match conn.replay(&entry.request, RESULTS).await {
                Ok(digest) if digest == entry.digest => {}
                Ok(_) => return Err(format!("statement {n} of {count} answered differently")),
                Err(error) => return Err(format!("statement {n} of {count} failed: {error}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::protocol::messages::ErrorPacket;

    #[test]
    fn a_failed_replay_says_where_the_transaction_was_and_why_it_is_gone() {
        let error = ErrorPacket::transaction_not_replayed(
            "db1",
            "db2",
            "statement 2 of 3 answered differently",
        );
        assert_eq!(error.code, 2013);
        let message = &error.message;
        for part in [
            "db1",
            "db2",
            "statement 2 of 3",
            "rolled back",
            "session is closed",
        ] {
            assert!(message.contains(part), "{message}");
        }
    }
}
