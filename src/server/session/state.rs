//! A session's routing state: what pins it to the primary, its temporary
//! tables, its text prepared statements, the history of session-state
//! commands replayed on backend connections it opens later, and its open
//! transaction on the primary (for transaction replay).

use std::collections::HashMap;

use super::transaction_log::TransactionLog;
use crate::backend::conn::{BackendConn, BackendError};
use crate::config::RoutingConfig;
use crate::protocol::response::Expect;

/// What routing must remember about a session between statements.
#[derive(Debug)]
pub struct RoutingState {
    /// Everything runs on the primary from now on (state that cannot be
    /// reproduced on other backends).
    pub pinned: bool,
    /// The client set `session_track_state_change` itself: it receives
    /// the state-change tracker's reports that rwsplit otherwise keeps to
    /// itself (and the session is pinned: the tracker may be off now).
    pub owns_state_tracker: bool,
    /// Between LOCK TABLES and UNLOCK TABLES.
    pub locked_tables: bool,
    /// A statement that may assign user variables ran on the primary (a
    /// write, a `CALL`, a stored function): reads of user variables go
    /// there from now on (see `sql::reads_user_variable`).
    pub user_variables_on_primary: bool,
    /// The session called a stored procedure: it may have created
    /// temporary tables, which the server does not report as it does
    /// those created by statements (see `Session::hold_missing_table`).
    pub called_procedure: bool,
    /// Temporary tables the session created (statements naming them run on
    /// the primary, where they exist).
    pub temporary_tables: Vec<String>,
    /// Where the previous statement ran.
    pub previous: Option<usize>,
    /// The replica the session's reads go to (`replica_affinity: session`).
    pub reader: Option<usize>,
    /// Text prepared statements: name, and whether the prepared text reads.
    pub prepared: HashMap<String, bool>,
    /// Session-state commands to replay on new backend connections.
    pub history: History,
    /// The open transaction on the primary, for transaction replay.
    pub transaction: TransactionLog,
}

impl RoutingState {
    pub fn new(config: &RoutingConfig) -> RoutingState {
        RoutingState {
            pinned: false,
            owns_state_tracker: false,
            locked_tables: false,
            called_procedure: false,
            user_variables_on_primary: false,
            temporary_tables: Vec::new(),
            previous: None,
            reader: None,
            prepared: HashMap::new(),
            history: History::new(config.session_history_limit),
            transaction: TransactionLog::new(config.transaction_replay_max_size),
        }
    }
}

/// One recorded command: its payload (command byte included) and the
/// response it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    payload: Vec<u8>,
    expect: Expect,
}

/// The session-state commands a session has run, in order, up to a limit.
#[derive(Debug)]
pub struct History {
    entries: Vec<Entry>,
    limit: usize,
}

/// Why a history entry could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryFull;

impl History {
    pub fn new(limit: usize) -> History {
        History {
            entries: Vec::new(),
            limit,
        }
    }

    /// Records a command that succeeded. Past the limit the history is
    /// dropped: it can no longer bring a new connection up to date, and the
    /// caller pins the session to the connections it has.
    pub fn record(&mut self, payload: Vec<u8>, expect: Expect) -> Result<(), HistoryFull> {
        if self.is_full() {
            self.entries = Vec::new();
            return Err(HistoryFull);
        }
        self.entries.push(Entry { payload, expect });
        Ok(())
    }

    /// Whether the next command recorded would overflow the history.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.limit
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs every recorded command on a fresh connection.
    pub async fn replay(&self, conn: &mut BackendConn) -> Result<(), BackendError> {
        for entry in &self.entries {
            conn.run(&entry.payload, entry.expect).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_is_bounded() {
        let mut history = History::new(2);
        let set = || b"\x03SET @a = 1".to_vec();
        let results = Expect::Results { cursor: false };
        assert_eq!(history.record(set(), results), Ok(()));
        assert!(!history.is_full());
        assert_eq!(history.record(set(), results), Ok(()));
        assert_eq!(history.len(), 2);
        assert!(history.is_full(), "the next record would overflow it");
        assert_eq!(history.record(set(), results), Err(HistoryFull));
        assert!(
            history.is_empty(),
            "an incomplete history is worse than none"
        );
    }
}
