//! What transaction replay keeps of a session's open transaction on the
//! primary: each statement's request and a digest of the response the
//! client got, so that the transaction can be run again on a new primary
//! and be seen to answer the same (docs/failover.md, "Transaction replay").

use crate::sql::TransactionEffect;

/// One statement of the transaction: its request packet(s) as the client
/// sent them, and the digest of its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub request: Vec<u8>,
    pub digest: u64,
}

/// Why a transaction cannot be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreplayable {
    /// A command other than a text statement (COM_QUERY) ran in it.
    Command,
    /// A statement that may commit part of it ran in it (DDL, `CALL`,
    /// several statements in one).
    Statement,
    /// A session-state statement ran in it (replaying the session's state
    /// and then the transaction would apply it twice).
    SessionState,
    /// Its statements add up to more than `transaction_replay_max_size`.
    TooLarge,
}

impl Unreplayable {
    pub fn describe(self) -> &'static str {
        match self {
            Unreplayable::Command => "it ran a command other than a text statement",
            Unreplayable::Statement => "it ran a statement that may commit part of it",
            Unreplayable::SessionState => "it changed session state",
            Unreplayable::TooLarge => "its statements exceed routing.transaction_replay_max_size",
        }
    }
}

/// The open transaction on the primary, as far as replay needs it.
/// Allocated while a transaction is recorded, so that it takes no room in
/// the sessions that have none.
#[derive(Debug)]
pub struct TransactionLog {
    open: Option<Box<Recorded>>,
    limit: usize,
}

#[derive(Debug)]
struct Recorded {
    /// The backend the transaction runs on.
    backend: usize,
    entries: Vec<Entry>,
    size: usize,
    spoiled: Option<Unreplayable>,
}

impl TransactionLog {
    /// A log that keeps transactions of up to `limit` bytes of requests.
    pub fn new(limit: usize) -> TransactionLog {
        TransactionLog { open: None, limit }
    }

    /// The backend of the transaction being recorded.
    pub fn backend(&self) -> Option<usize> {
        self.open.as_ref().map(|open| open.backend)
    }

    /// Records a command that ran on `backend`: its `request` when it is
    /// a text statement (else `None`) with what it does to the transaction
    /// and the digest of its response, and whether a transaction is open
    /// there after it. A transaction that ended is forgotten; one that
    /// began with this command starts a new log.
    pub fn record(
        &mut self,
        backend: usize,
        request: Option<(&[u8], TransactionEffect)>,
        digest: u64,
        in_transaction: bool,
    ) {
        if !in_transaction {
            return self.clear();
        }
        if self.backend().is_some_and(|current| current != backend) {
            // A transaction on another backend while one is recorded: not
            // something a session does; keep nothing of either.
            return self.clear();
        }
        if let Some((_, TransactionEffect::Restarts)) = request {
            // What came before it was committed or rolled back.
            self.clear();
        }
        let open = self.open.get_or_insert_with(|| {
            Box::new(Recorded {
                backend,
                entries: Vec::new(),
                size: 0,
                spoiled: None,
            })
        });
        let request = match request {
            Some((_, TransactionEffect::Other)) => return self.spoil(Unreplayable::Statement),
            None => return self.spoil(Unreplayable::Command),
            Some((request, _)) => request,
        };
        if open.spoiled.is_some() {
            return;
        }
        open.size += request.len();
        if open.size > self.limit {
            return self.spoil(Unreplayable::TooLarge);
        }
        open.entries.push(Entry {
            request: request.to_vec(),
            digest,
        });
    }

    /// Marks the transaction being recorded as not replayable.
    pub fn spoil(&mut self, why: Unreplayable) {
        if let Some(open) = &mut self.open {
            open.spoiled = Some(why);
            open.entries = Vec::new();
        }
    }

    /// The statements to run again, or why they cannot be.
    pub fn replayable(&self) -> Result<&[Entry], Unreplayable> {
        match &self.open {
            Some(open) => match open.spoiled {
                Some(why) => Err(why),
                None => Ok(&open.entries),
            },
            None => Ok(&[]),
        }
    }

    /// After a replay: the transaction now runs on `backend`.
    pub fn moved_to(&mut self, backend: usize) {
        if let Some(open) = &mut self.open {
            open.backend = backend;
        }
    }

    /// Forgets the transaction (it ended, or was lost).
    pub fn clear(&mut self) {
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransactionEffect::*;

    fn requests(log: &TransactionLog) -> Vec<&[u8]> {
        let entries = log.replayable().expect("replayable");
        entries.iter().map(|e| e.request.as_slice()).collect()
    }

    #[test]
    fn a_transaction_is_recorded_from_its_first_statement_to_its_end() {
        let mut log = TransactionLog::new(100);
        log.record(0, Some((b"autocommit insert", Within)), 1, false);
        assert_eq!(log.backend(), None);
        log.record(0, Some((b"begin", Restarts)), 2, true);
        log.record(0, Some((b"insert", Within)), 3, true);
        assert_eq!(log.backend(), Some(0));
        assert_eq!(requests(&log), [&b"begin"[..], b"insert"]);
        assert_eq!(log.replayable().unwrap()[1].digest, 3);
        log.record(0, Some((b"commit", Restarts)), 4, false);
        assert_eq!(log.backend(), None);
        assert_eq!(requests(&log), Vec::<&[u8]>::new());
    }

    #[test]
    fn other_commands_and_session_state_spoil_the_transaction_until_it_ends() {
        let mut log = TransactionLog::new(100);
        log.record(1, Some((b"begin", Restarts)), 0, true);
        log.record(1, None, 0, true);
        assert_eq!(log.replayable(), Err(Unreplayable::Command));
        log.record(1, Some((b"insert", Within)), 0, true);
        assert_eq!(log.replayable(), Err(Unreplayable::Command));
        log.record(1, Some((b"rollback", Restarts)), 0, false);
        log.record(1, Some((b"begin", Restarts)), 0, true);
        assert_eq!(requests(&log), [&b"begin"[..]]);
        log.spoil(Unreplayable::SessionState);
        assert_eq!(log.replayable(), Err(Unreplayable::SessionState));
    }

    #[test]
    fn spoiling_outside_a_transaction_changes_nothing() {
        let mut log = TransactionLog::new(100);
        log.spoil(Unreplayable::SessionState);
        log.record(0, Some((b"begin", Restarts)), 0, true);
        assert_eq!(requests(&log), [&b"begin"[..]]);
    }

    #[test]
    fn a_transaction_over_the_limit_is_not_replayable() {
        let mut log = TransactionLog::new(10);
        log.record(0, Some((b"begin", Restarts)), 0, true);
        log.record(0, Some((b"12345", Within)), 0, true);
        assert_eq!(requests(&log).len(), 2);
        log.record(0, Some((b"6", Within)), 0, true);
        assert_eq!(log.replayable(), Err(Unreplayable::TooLarge));
        log.record(0, Some((b"commit", Restarts)), 0, false);
        log.record(0, Some((b"begin", Restarts)), 0, true);
        assert_eq!(
            requests(&log).len(),
            1,
            "the next transaction starts afresh"
        );
    }

    #[test]
    fn a_replayed_transaction_goes_on_recording_on_its_new_backend() {
        let mut log = TransactionLog::new(100);
        log.record(0, Some((b"begin", Restarts)), 0, true);
        log.moved_to(2);
        log.record(2, Some((b"insert", Within)), 0, true);
        assert_eq!(log.backend(), Some(2));
        assert_eq!(requests(&log), [&b"begin"[..], b"insert"]);
    }

    #[test]
    fn a_begin_inside_a_transaction_starts_a_new_one() {
        let mut log = TransactionLog::new(100);
        log.record(0, Some((b"begin", Restarts)), 0, true);
        log.record(0, Some((b"insert 1", Within)), 0, true);
        log.record(0, Some((b"begin", Restarts)), 0, true);
        log.record(0, Some((b"insert 2", Within)), 0, true);
        assert_eq!(requests(&log), [&b"begin"[..], b"insert 2"]);
    }

    #[test]
    fn with_autocommit_off_the_first_statement_opens_the_transaction() {
        let mut log = TransactionLog::new(100);
        log.record(3, Some((b"insert", Within)), 0, true);
        assert_eq!(log.backend(), Some(3));
        assert_eq!(requests(&log), [&b"insert"[..]]);
    }

    #[test]
    fn a_statement_that_may_commit_part_of_it_spoils_the_transaction() {
        let mut log = TransactionLog::new(100);
        log.record(0, Some((b"begin", Restarts)), 0, true);
        log.record(0, Some((b"call p()", Other)), 0, true);
        assert_eq!(log.replayable(), Err(Unreplayable::Statement));
        assert_eq!(log.backend(), Some(0), "still the transaction's server");
        log.record(0, Some((b"commit", Restarts)), 0, false);
        assert_eq!(log.backend(), None);
    }
}
