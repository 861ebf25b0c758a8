//! SQL text: what rwsplit needs to know about a statement to route it,
//! without sending it anywhere.
//!
//! | module | owns |
//! |---|---|
//! | [`lexer`] | tokens of SQL text (strings and comments skipped), hints |
//! | [`classify`](mod@classify) | `classify(text) -> Classified`: the keyword scan |
//! | [`set`] | SET statements, with sqlparser |
//! | [`functions`] | which function calls a replica may run |
//! | [`kill`] | `KILL [QUERY] id`, which rwsplit answers itself |
//!
//! Everything here is pure and table-tested; docs/routing.md has the rules.

pub mod classify;
pub mod functions;
pub mod kill;
pub mod lexer;
pub mod set;

use std::borrow::Cow;

pub use classify::classify;
pub use lexer::Hint;

/// What a statement does, as far as routing is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    /// Only reads: may run on a replica.
    Read,
    /// Must run on the primary: writes, DDL, locking reads, calls of
    /// functions with side effects or unknown ones, and anything not
    /// understood.
    Write,
    /// Describes the previous statement (`FOUND_ROWS()`, `ROW_COUNT()`,
    /// `SHOW WARNINGS`, `SHOW ERRORS`, `@@warning_count`, `@@error_count`):
    /// runs where that statement ran.
    PreviousResult,
    /// Changes session state that every backend of the session must share:
    /// sent to all of them and replayed on connections opened later.
    SessionState(SessionChange),
    /// Changes session state in a way that cannot be replayed on other
    /// backends (a user variable assigned by a query, a SET reading tables
    /// or calling functions, GLOBAL mixed with SESSION, a multi-statement
    /// packet with session changes): runs on the primary, and the session
    /// stays there.
    PinsToPrimary,
    /// `BEGIN` / `START TRANSACTION`; `read_only` for `... READ ONLY`.
    Begin { read_only: bool },
    /// `COMMIT`, `ROLLBACK`, `SAVEPOINT`...: where the transaction is.
    Transaction,
    /// `LOCK TABLES`, `FLUSH TABLES WITH READ LOCK`: the session stays on
    /// the primary until `UNLOCK TABLES`.
    LockTables,
    /// `UNLOCK TABLES`.
    UnlockTables,
    /// `CREATE TEMPORARY TABLE name`: primary; later statements naming the
    /// table go there too.
    CreateTemporaryTable(String),
    /// `DROP [TEMPORARY] TABLE names`: primary; the names are forgotten.
    DropTables(Vec<String>),
    /// `EXECUTE name` of a text prepared statement: routed as what was
    /// prepared.
    ExecutePrepared(String),
    /// Runs nowhere: rwsplit answers ERR 1235 with this reason. `KILL`
    /// in any form rwsplit does not translate — its ids are rwsplit's, so
    /// a backend's thread id (`KILL 12+0`, inside an executable comment,
    /// among other statements, prepared) is never passed on.
    Refused(&'static str),
}

/// A session-state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// `SET` of session or user variables, `SET NAMES`, `SET TRANSACTION`...
    Variables,
    /// `USE db`.
    Database(String),
    /// `PREPARE name FROM ...`; `reads` when the prepared text is a read.
    Prepare { name: String, reads: bool },
    /// `DEALLOCATE PREPARE name` / `DROP PREPARE name`.
    Deallocate(String),
}

/// A statement's kind and the routing hint it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub kind: StatementKind,
    pub hint: Option<Hint>,
}

/// A statement's text as classification reads it: borrowed when it is
/// valid UTF-8, as nearly every statement is (`str::from_utf8` checks that
/// a word at a time, `from_utf8_lossy` a byte at a time), else with
/// replacement characters.
pub fn decode(sql: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(sql) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(sql),
    }
}

/// Whether `sql` names any of `tables` as a word (case-insensitively), for
/// statements touching a session's temporary tables. False positives (the
/// name inside a string) only send a statement to the primary. Most
/// sessions have no temporary tables, and then `sql` is not even decoded.
pub fn mentions_any(sql: &[u8], tables: &[String]) -> bool {
    if tables.is_empty() {
        return false;
    }
    lexer::Lexer::new(&decode(sql)).any(|token| match token {
        lexer::Token::Word(w) | lexer::Token::Quoted(w) => {
            tables.iter().any(|t| t.eq_ignore_ascii_case(w))
        }
        _ => false,
    })
}

/// Whether a server's report that statement `text` of `kind` changed the
/// session's state is accounted for already: session-state statements are
/// replayed, temporary tables are followed, what pins the session pins it,
/// and `SET STATEMENT ... FOR` sets its variables back after the statement
/// (MariaDB reports that as a change too). Any other report is a change
/// rwsplit did not see coming.
pub fn state_change_expected(kind: &StatementKind, text: &str) -> bool {
    match kind {
        StatementKind::SessionState(_)
        | StatementKind::PinsToPrimary
        | StatementKind::CreateTemporaryTable(_)
        | StatementKind::DropTables(_) => true,
        _ => {
            let mut tokens = lexer::Lexer::new(text);
            let mut word = |keyword: &str| matches!(tokens.next(), Some(lexer::Token::Word(w)) if w.eq_ignore_ascii_case(keyword));
            word("SET") && word("STATEMENT")
        }
    }
}

/// Whether `text` reads a user variable (`@name`). A session's user
/// variables are the same everywhere while only replayed SETs assign
/// them; once a statement that may assign them ran on the primary (a
/// write, a `CALL`, a stored function, `SELECT ... INTO @v`), reads of
/// them go there. Looks only at texts with an `@` in them.
pub fn reads_user_variable(text: &[u8]) -> bool {
    text.contains(&b'@')
        && lexer::Lexer::new(&decode(text)).any(|t| matches!(t, lexer::Token::UserVariable(_)))
}

/// Whether `text` may call a stored procedure: `CALL`, or one of the
/// statements that run other statements (`EXECUTE`, `BEGIN NOT ATOMIC`).
pub fn may_call_procedure(text: &str) -> bool {
    matches!(
        lexer::Lexer::new(text).next(),
        Some(lexer::Token::Word(w))
            if w.eq_ignore_ascii_case("CALL") || w.eq_ignore_ascii_case("EXECUTE") || w.eq_ignore_ascii_case("BEGIN")
    )
}

/// Whether `text` names `session_track_state_change`, the server's
/// state-change tracker, which rwsplit keeps on for itself.
pub fn names_state_tracker(text: &str) -> bool {
    const TRACKER: &str = "session_track_state_change";
    lexer::Lexer::new(text).any(|token| match token {
        lexer::Token::Word(w) | lexer::Token::Quoted(w) => w.eq_ignore_ascii_case(TRACKER),
        lexer::Token::SystemVariable(v) => {
            let name = v.rsplit('.').next().unwrap_or(v);
            name.eq_ignore_ascii_case(TRACKER)
        }
        _ => false,
    })
}

/// What a statement does to the transaction it runs in, as transaction
/// replay needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionEffect {
    /// Reads or changes rows, or handles a savepoint: the transaction goes
    /// on.
    Within,
    /// `BEGIN`, `START TRANSACTION`, `COMMIT`, `ROLLBACK` (`AND CHAIN`
    /// too): ends the open transaction, if any; a transaction open after
    /// it began with it.
    Restarts,
    /// Anything else — DDL (which commits implicitly), `CALL` (which may
    /// commit inside), several statements...: cannot be replayed as part
    /// of a transaction.
    Other,
}

/// What statement `text` does to the transaction it runs in.
pub fn transaction_effect(text: &str) -> TransactionEffect {
    const ROWS: [&str; 10] = [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "REPLACE",
        "WITH",
        "VALUES",
        "TABLE",
        "SAVEPOINT",
        "RELEASE",
    ];
    if text.trim_end().trim_end_matches(';').contains(';') {
        return TransactionEffect::Other;
    }
    let mut tokens = lexer::Lexer::new(text);
    let word = match tokens.next() {
        Some(lexer::Token::Punct('(')) => return TransactionEffect::Within,
        Some(lexer::Token::Word(w)) => w,
        _ => return TransactionEffect::Other,
    };
    let is = |k: &str| word.eq_ignore_ascii_case(k);
    if ROWS.iter().any(|k| is(k)) {
        TransactionEffect::Within
    } else if is("ROLLBACK") {
        // `ROLLBACK [WORK] TO [SAVEPOINT] name` keeps the transaction.
        let to = tokens
            .take(2)
            .any(|t| matches!(t, lexer::Token::Word(w) if w.eq_ignore_ascii_case("TO")));
        match to {
            true => TransactionEffect::Within,
            false => TransactionEffect::Restarts,
        }
    } else if is("BEGIN") || is("START") || is("COMMIT") {
        TransactionEffect::Restarts
    } else {
        TransactionEffect::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_statements_do_to_a_transaction() {
        use TransactionEffect::*;
        for (sql, effect) in [
            ("INSERT INTO t VALUES (1)", Within),
            ("INSERT INTO t VALUES (1);", Within),
            ("/* rwsplit:primary */ update t SET a = 1", Within),
            ("DELETE FROM t", Within),
            ("REPLACE INTO t VALUES (1)", Within),
            ("SELECT * FROM t FOR UPDATE", Within),
            ("(SELECT 1)", Within),
            ("WITH c AS (SELECT 1) SELECT * FROM c", Within),
            ("SAVEPOINT a", Within),
            ("RELEASE SAVEPOINT a", Within),
            ("ROLLBACK TO a", Within),
            ("rollback work to savepoint a", Within),
            ("BEGIN", Restarts),
            ("START TRANSACTION", Restarts),
            ("COMMIT", Restarts),
            ("COMMIT AND CHAIN", Restarts),
            ("rollback", Restarts),
            ("ROLLBACK WORK", Restarts),
            ("CREATE TABLE t (a INT)", Other),
            ("CALL p()", Other),
            ("INSERT INTO t VALUES (1); COMMIT", Other),
            ("SET autocommit = 1", Other),
            ("XA START 'x'", Other),
            ("", Other),
        ] {
            assert_eq!(transaction_effect(sql), effect, "{sql}");
        }
    }

    #[test]
    fn which_reported_state_changes_are_expected() {
        use StatementKind::*;
        let variables = SessionState(SessionChange::Variables);
        for (kind, text, expected) in [
            (&variables, "SET @a = 1", true),
            (&PinsToPrimary, "SELECT @a := 1", true),
            (
                &CreateTemporaryTable("t".into()),
                "CREATE TEMPORARY TABLE t (a INT)",
                true,
            ),
            (&DropTables(vec!["t".into()]), "DROP TABLE t", true),
            (
                &Read,
                "SET STATEMENT max_statement_time = 1 FOR SELECT 1",
                true,
            ),
            (
                &Write,
                "/* c */ set statement sql_mode = '' FOR UPDATE t SET a = 1",
                true,
            ),
            (&Write, "CALL p(@a)", false),
            (&Write, "EXECUTE IMMEDIATE 'SET @a = 1'", false),
            (&ExecutePrepared("s".into()), "EXECUTE s", false),
            (&Read, "SELECT 1", false),
        ] {
            assert_eq!(state_change_expected(kind, text), expected, "{text}");
        }
    }

    #[test]
    fn reads_of_user_variables_are_found() {
        for text in [
            "SELECT @v",
            "SELECT * FROM t WHERE id = @`odd name`",
            "EXECUTE s USING @a",
        ] {
            assert!(reads_user_variable(text.as_bytes()), "{text}");
        }
        for text in [
            "SELECT @@sql_mode",
            "SELECT '@v'",
            "SELECT 1 -- @v",
            "SELECT c FROM t",
        ] {
            assert!(!reads_user_variable(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn the_state_tracker_is_found_by_name() {
        for text in [
            "SET session_track_state_change = 1",
            "SET SESSION session_track_state_change = OFF",
            "set @@session.Session_Track_State_Change = 0",
            "SET @@session_track_state_change = 1, @a = 2",
            "/*!50000 SET session_track_state_change = 1 */",
        ] {
            assert!(names_state_tracker(text), "{text}");
        }
        for text in [
            "SET session_track_schema = 1",
            "SET @session_track_state_change = 1",
            "SET @a = 'session_track_state_change'",
        ] {
            assert!(!names_state_tracker(text), "{text}");
        }
    }

    #[test]
    fn statements_are_decoded_without_copying_when_valid() {
        assert!(matches!(
            decode("SELECT 'é'".as_bytes()),
            Cow::Borrowed("SELECT 'é'")
        ));
        assert_eq!(decode(b"SELECT '\xe9'"), "SELECT '\u{fffd}'");
    }
}
