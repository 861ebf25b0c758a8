//! SET statements: session state to replay everywhere, or not.
//!
//! A SET of session or user variables to constant values is session state:
//! it is sent to every backend of the session and replayed on connections
//! opened later. A SET that must not be replayed goes to the primary only:
//! global variables (a server setting), passwords and default roles. A SET
//! whose value reads tables or calls functions would compute something
//! different on each server, so it runs on the primary and keeps the
//! session there.
//!
//! sqlparser parses most SET forms with per-assignment scopes; the forms it
//! does not parse (`SET CHARACTER SET`, `SET STATEMENT ... FOR`, MariaDB
//! extensions) are recognised by keyword first, and anything else falls to
//! the primary.

use std::ops::ControlFlow;

use sqlparser::ast::{ContextModifier, Expr, ObjectName, Set, Statement, visit_expressions};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::functions::{self, Call};
use super::lexer::{Lexer, Token};
use super::{SessionChange, StatementKind, classify};

const VARIABLES: StatementKind = StatementKind::SessionState(SessionChange::Variables);

/// Classifies a statement starting with SET.
pub fn classify_set(text: &str) -> StatementKind {
    let mut tokens = Lexer::new(text);
    tokens.next(); // SET
    let words: Vec<Token<'_>> = tokens.clone().take(3).collect();
    let word = |i: usize| match words.get(i) {
        Some(Token::Word(w)) => Some(*w),
        _ => None,
    };
    let is = |i: usize, k: &str| word(i).is_some_and(|w| w.eq_ignore_ascii_case(k));
    if is(0, "CHARACTER") && is(1, "SET") || is(0, "CHARSET") || is(0, "NAMES") || is(0, "ROLE") {
        return VARIABLES;
    }
    if is(0, "PASSWORD") || is(0, "DEFAULT") && is(1, "ROLE") {
        return StatementKind::Write;
    }
    if is(0, "GLOBAL") && is(1, "TRANSACTION") {
        return StatementKind::Write;
    }
    if is(0, "TRANSACTION") || (is(0, "SESSION") || is(0, "LOCAL")) && is(1, "TRANSACTION") {
        return VARIABLES;
    }
    if is(0, "STATEMENT") {
        return set_statement(text);
    }
    match Parser::parse_sql(&MySqlDialect {}, &super::lexer::code(text)) {
        Ok(statements) => match statements.as_slice() {
            [Statement::Set(set)] => assignments(set),
            _ => StatementKind::Write,
        },
        Err(_) if mentions_global(text) => StatementKind::Write,
        Err(_) => StatementKind::PinsToPrimary,
    }
}

/// `SET STATEMENT var = value [, ...] FOR statement`: the variables apply to
/// that statement only, which is routed as itself.
fn set_statement(text: &str) -> StatementKind {
    let mut tokens = Lexer::new(text);
    while let Some((at, token)) = tokens.next_token() {
        if matches!(token, Token::Word(w) if w.eq_ignore_ascii_case("FOR")) {
            let inner = &text[at + 3..];
            return match classify::kind(inner) {
                kind @ (StatementKind::Read
                | StatementKind::Write
                | StatementKind::PreviousResult) => kind,
                _ => StatementKind::PinsToPrimary,
            };
        }
    }
    StatementKind::Write
}

fn mentions_global(text: &str) -> bool {
    Lexer::new(text).any(|t| match t {
        Token::Word(w) => w.eq_ignore_ascii_case("GLOBAL"),
        Token::SystemVariable(v) => v.len() > 7 && v[..7].eq_ignore_ascii_case("global."),
        _ => false,
    })
}

/// Scope of each assignment and whether its value is a constant.
fn assignments(set: &Set) -> StatementKind {
    let pairs: Vec<(bool, &Expr)> = match set {
        Set::SingleAssignment {
            scope,
            variable,
            values,
            ..
        } => values
            .iter()
            .map(|value| (is_global(*scope, variable), value))
            .collect(),
        Set::MultipleAssignments { assignments } => assignments
            .iter()
            .map(|a| (is_global(a.scope, &a.name), &a.value))
            .collect(),
        Set::SetNames { .. }
        | Set::SetNamesDefault {}
        | Set::SetTimeZone { .. }
        | Set::SetRole { .. } => {
            return VARIABLES;
        }
        Set::SetTransaction { .. } => return VARIABLES,
        _ => return StatementKind::PinsToPrimary,
    };
    let globals = pairs.iter().filter(|(global, _)| *global).count();
    if globals == pairs.len() {
        StatementKind::Write
    } else if globals > 0 || pairs.iter().any(|(_, value)| !is_constant(value)) {
        StatementKind::PinsToPrimary
    } else {
        VARIABLES
    }
}

fn is_global(scope: Option<ContextModifier>, name: &ObjectName) -> bool {
    scope == Some(ContextModifier::Global)
        || name
            .0
            .first()
            .and_then(|part| part.as_ident())
            .is_some_and(|ident| ident.value.eq_ignore_ascii_case("@@global"))
}

/// A value that evaluates the same on every server: literals, variables,
/// operators, and deterministic built-in functions over them (so that
/// `SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')` is replayed) — no
/// subquery, no stored function, no clock or random number.
fn is_constant(value: &Expr) -> bool {
    let found = visit_expressions(value, |expr| match expr {
        Expr::Function(function) => {
            let name = function
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.as_str());
            let deterministic = function.name.0.len() == 1
                && name.is_some_and(|n| {
                    functions::call(n) == Call::Pure
                        && !NONDETERMINISTIC.iter().any(|d| d.eq_ignore_ascii_case(n))
                });
            if deterministic {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    found.is_continue()
}

/// Pure built-ins whose value differs from one call (or server) to the next.
const NONDETERMINISTIC: &[&str] = &[
    "BENCHMARK",
    "CURDATE",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURTIME",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "NOW",
    "RAND",
    "RANDOM_BYTES",
    "SLEEP",
    "SYSDATE",
    "SYS_GUID",
    "UNIX_TIMESTAMP",
    "UTC_DATE",
    "UTC_TIME",
    "UTC_TIMESTAMP",
    "UUID",
    "UUID_SHORT",
    "VERSION",
];
