//! Server-side prepared statements of one session.
//!
//! The client sees one statement id, chosen by rwsplit; each backend that
//! has the statement prepared has its own id for it, recorded here. The
//! SQL and the last parameter types are kept so that the statement can be
//! prepared and executed on a backend that has not seen it yet.
//!
//! On a connection that caches metadata (MARIADB_CLIENT_CACHE_METADATA) a
//! backend skips a result's column definitions while they are the ones it
//! last sent for the statement, and the client uses the ones it holds. Both
//! are kept here, so that an execution on a backend whose definitions the
//! client does not hold gets them supplied.

/// Column definition packets (headers included) of a statement's result.
pub type ColumnDefs = Arc<[u8]>;

use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::command::LAST_PREPARED;
use crate::sql::StatementKind;

/// One prepared statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement text, to prepare it on another backend.
    pub sql: Vec<u8>,
    pub params: u16,
    pub columns: u16,
    /// Parameter types from the last execution that sent them (2 bytes
    /// each), for executions that do not resend them.
    pub types: Option<Vec<u8>>,
    /// Where the statement is prepared.
    pub on: Vec<Prepared>,
    /// What the statement does: its executions are routed by it.
    pub kind: StatementKind,
    /// Where it last ran: its cursor lives there, and FETCH and RESET go there.
    pub last: Option<usize>,
    /// COM_STMT_SEND_LONG_DATA went to the primary since the last
    /// execution, so the next one must run there.
    pub long_data: bool,
    /// It reads user variables: once they may have been assigned on the
    /// primary, its executions go there (see `sql::reads_user_variable`).
    pub reads_user_variable: bool,
    /// The column definitions the client holds (connections that cache
    /// metadata only).
    pub held_columns: Option<ColumnDefs>,
}

/// A statement prepared on one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub backend: usize,
    /// The backend's statement id.
    pub id: u32,
    /// The backend has the statement's current parameter types.
    pub has_types: bool,
    /// The column definitions the backend last sent for it (connections
    /// that cache metadata only).
    pub columns: Option<ColumnDefs>,
}

impl Statement {
    /// This statement on `backend`, if prepared there.
    pub fn on_backend(&self, backend: usize) -> Option<&Prepared> {
        self.on.iter().find(|p| p.backend == backend)
    }

    /// This statement's id on `backend`, if prepared there.
    pub fn id_on(&self, backend: usize) -> Option<u32> {
        self.on_backend(backend).map(|p| p.id)
    }

    /// The column definitions to give the client if an execution on
    /// `backend` skips them: the backend's, when the client holds others.
    pub fn columns_to_supply(&self, backend: usize) -> Option<ColumnDefs> {
        let theirs = self.on_backend(backend)?.columns.as_ref()?;
        (self.held_columns.as_ref() != Some(theirs)).then(|| theirs.clone())
    }

    /// Records column definitions the client got from an execution on
    /// `backend`: they are the backend's current ones.
    pub fn columns_sent(&mut self, backend: usize, columns: ColumnDefs) {
        for prepared in self.on.iter_mut().filter(|p| p.backend == backend) {
            prepared.columns = Some(columns.clone());
        }
        self.held_columns = Some(columns);
    }

    /// Records that `backend` now has the current parameter types too.
    pub fn types_sent_to_also(&mut self, backend: usize) {
        for prepared in self.on.iter_mut().filter(|p| p.backend == backend) {
            prepared.has_types = true;
        }
    }

    /// Records which backends have the current parameter types: after an
    /// execution that sent new ones to `backend`, only that one.
    pub fn types_sent_to(&mut self, backend: usize) {
        for prepared in &mut self.on {
            prepared.has_types = prepared.backend == backend;
        }
    }
}

/// The session's statements by client-facing id.
#[derive(Debug, Default)]
pub struct Statements {
    next_id: u32,
    /// Keyed by ids rwsplit hands out, so a fast hasher is safe.
    by_id: HashMap<u32, Statement, foldhash::fast::RandomState>,
    /// The last statement prepared successfully (MariaDB's id -1).
    last: Option<u32>,
}

impl Statements {
    /// A fresh client-facing id.
    pub fn allocate(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        if self.next_id == LAST_PREPARED {
            self.next_id = 1;
        }
        self.next_id
    }

    pub fn insert(&mut self, id: u32, statement: Statement) {
        self.by_id.insert(id, statement);
        self.last = Some(id);
    }

    /// The client-facing id a command names, with -1 meaning the last one.
    pub fn resolve(&self, id: u32) -> Option<u32> {
        let id = if id == LAST_PREPARED { self.last? } else { id };
        self.by_id.contains_key(&id).then_some(id)
    }

    pub fn get(&self, id: u32) -> Option<&Statement> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Statement> {
        self.by_id.get_mut(&id)
    }

    pub fn remove(&mut self, id: u32) -> Option<Statement> {
        if self.last == Some(id) {
            self.last = None;
        }
        self.by_id.remove(&id)
    }

    /// Forgets everything (COM_RESET_CONNECTION, COM_CHANGE_USER).
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.last = None;
    }

    /// Forgets the ids of a backend whose connection was closed.
    pub fn forget_backend(&mut self, backend: usize) {
        for statement in self.by_id.values_mut() {
            statement.on.retain(|p| p.backend != backend);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(on: Vec<(usize, u32)>) -> Statement {
        let on = on
            .into_iter()
            .map(|(backend, id)| Prepared {
                backend,
                id,
                has_types: false,
                columns: None,
            })
            .collect();
        Statement {
            sql: b"SELECT ?".to_vec(),
            params: 1,
            columns: 1,
            types: None,
            on,
            kind: StatementKind::Read,
            last: None,
            long_data: false,
            reads_user_variable: false,
            held_columns: None,
        }
    }

    #[test]
    fn ids_map_per_backend_and_minus_one_is_the_last() {
        let mut statements = Statements::default();
        let a = statements.allocate();
        statements.insert(a, statement(vec![(0, 100)]));
        let b = statements.allocate();
        statements.insert(b, statement(vec![(0, 101), (2, 7)]));
        assert_ne!(a, b);
        assert_eq!(statements.resolve(LAST_PREPARED), Some(b));
        assert_eq!(statements.resolve(a), Some(a));
        assert_eq!(statements.resolve(999), None);
        assert_eq!(statements.get(b).unwrap().id_on(2), Some(7));
        statements.forget_backend(0);
        assert_eq!(statements.get(b).unwrap().id_on(0), None);
        let statement = statements.get_mut(b).unwrap();
        statement.on.push(Prepared {
            backend: 1,
            id: 9,
            has_types: false,
            columns: None,
        });
        statement.types_sent_to(2);
        assert_eq!(statement.on_backend(2).map(|p| p.has_types), Some(true));
        assert_eq!(statement.on_backend(1).map(|p| p.has_types), Some(false));
        statements.remove(b);
        assert_eq!(statements.resolve(LAST_PREPARED), None);
        statements.clear();
        assert_eq!(statements.resolve(a), None);
    }

    #[test]
    fn the_client_is_supplied_the_columns_of_a_backend_it_does_not_hold() {
        let columns = |text: &str| -> ColumnDefs { Arc::from(text.as_bytes()) };
        let mut statement = statement(vec![(0, 100), (1, 200)]);
        statement.on[0].columns = Some(columns("int"));
        statement.on[1].columns = Some(columns("int"));
        statement.held_columns = Some(columns("int"));
        assert_eq!(
            statement.columns_to_supply(0),
            None,
            "the client holds them"
        );
        assert_eq!(
            statement.columns_to_supply(1),
            None,
            "equal bytes are equal"
        );
        // Backend 1 sent new definitions (its table was altered).
        statement.columns_sent(1, columns("bigint"));
        assert_eq!(statement.columns_to_supply(1), None);
        assert_eq!(statement.columns_to_supply(0), Some(columns("int")));
        assert_eq!(statement.columns_to_supply(2), None, "not prepared there");
        statement.columns_sent(0, columns("int"));
        assert_eq!(statement.columns_to_supply(1), Some(columns("bigint")));
    }

    #[test]
    fn allocation_never_yields_zero_or_minus_one() {
        let mut statements = Statements {
            next_id: u32::MAX - 2,
            ..Default::default()
        };
        assert_eq!(statements.allocate(), u32::MAX - 1);
        assert_eq!(statements.allocate(), 1);
    }
}
