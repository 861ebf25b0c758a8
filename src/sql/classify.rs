//! `classify(text)`: the statement's kind from a keyword scan.
//!
//! The first keyword settles most statements. Reads (`SELECT`, `VALUES`,
//! `TABLE`, a parenthesised query) are scanned ([`read`]) — by one pass
//! over their bytes when that settles it, else token by token — for what
//! makes a read unfit for a replica: locking clauses, `INTO`, `:=`, calls
//! of functions that are not pure built-ins, and `@@warning_count`-style
//! variables that describe the previous statement. SET statements and
//! `WITH` queries go to sqlparser ([`super::set`], [`with_query`]). Anything
//! not understood is a [`StatementKind::Write`]: it runs on the primary,
//! never on a replica by accident, and never fails for being unknown.

mod read;

use super::lexer::{Lexer, Token, leading_hint};
use super::{Classified, SessionChange, StatementKind, set};
use read::{plainly_read, read_query, scan_read};

/// Classifies one statement (or multi-statement packet) of SQL text.
pub fn classify(text: &str) -> Classified {
    Classified {
        kind: kind(text),
        hint: leading_hint(text),
    }
}

/// The kind of a whole COM_QUERY text.
pub fn kind(text: &str) -> StatementKind {
    let (first, more) = single(text);
    // A read's scan knows whether another statement follows; other kinds
    // stop after a few tokens, and the rest of the text is checked here
    // (only when it has a `;` at all: a byte search, nearly free).
    let more = more.unwrap_or_else(|| text.contains(';') && split(text).nth(1).is_some());
    if more { multi(text) } else { first }
}

/// Several statements in one packet run on the primary. If any of them
/// changes session state, the other backends cannot follow.
fn multi(text: &str) -> StatementKind {
    let kinds: Vec<StatementKind> = split(text).map(|s| single(s).0).collect();
    if let Some(refused) = kinds
        .iter()
        .find(|k| matches!(k, StatementKind::Refused(_)))
    {
        return refused.clone();
    }
    let changes_state = kinds.iter().any(|k| {
        matches!(
            k,
            StatementKind::SessionState(_)
                | StatementKind::PinsToPrimary
                | StatementKind::LockTables
                | StatementKind::UnlockTables
                | StatementKind::CreateTemporaryTable(_)
                | StatementKind::Begin { .. }
                | StatementKind::DropTables(_)
        )
    });
    if changes_state {
        StatementKind::PinsToPrimary
    } else {
        StatementKind::Write
    }
}

/// Splits text at top-level `;` into non-empty statements.
fn split(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let mut lexer = Lexer::new(rest);
            let end = loop {
                match lexer.next_token() {
                    None => break rest.len(),
                    Some((at, Token::Punct(';'))) => break at,
                    Some(_) => {}
                }
            };
            let statement = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            if Lexer::new(statement).next().is_some() {
                return Some(statement);
            }
        }
    })
}

/// The kind of the first statement of `text`, and whether another follows
/// when that is known without a further scan.
fn single(text: &str) -> (StatementKind, Option<bool>) {
    let mut tokens = Lexer::new(text);
    let Some(first) = tokens.next() else {
        return (StatementKind::Write, Some(false));
    };
    match first {
        Token::Word(w)
            if ["SELECT", "VALUES", "TABLE"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)) =>
        {
            if plainly_read(text.as_bytes()) {
                return (StatementKind::Read, Some(false));
            }
            let scan = scan_read(Some(first), tokens);
            (scan.kind, scan.more)
        }
        Token::Punct('(') => {
            let scan = scan_read(Some(first), tokens);
            (scan.kind, scan.more)
        }
        Token::Word(keyword) => (statement(keyword, tokens, text), None),
        _ => (StatementKind::Write, None),
    }
}

/// The kind of a statement that starts with `keyword` (not a read).
fn statement<'a>(keyword: &str, mut tokens: Lexer<'a>, text: &'a str) -> StatementKind {
    let is = |k: &str| keyword.eq_ignore_ascii_case(k);
    if is("WITH") {
        with_query(text)
    } else if is("SHOW") {
        show(tokens)
    } else if is("DESCRIBE") || is("DESC") || is("EXPLAIN") {
        explain(tokens)
    } else if is("SET") {
        set::classify_set(text)
    } else if is("USE") {
        match name(tokens.next()) {
            Some(db) => StatementKind::SessionState(SessionChange::Database(db)),
            None => StatementKind::Write,
        }
    } else if is("BEGIN") {
        begin(tokens)
    } else if is("START") {
        start(tokens)
    } else if is("COMMIT") || is("ROLLBACK") || is("SAVEPOINT") || is("RELEASE") {
        StatementKind::Transaction
    } else if is("LOCK") {
        lock(tokens)
    } else if is("UNLOCK") {
        match words(&mut tokens, 1).as_slice() {
            [w] if eq(w, "TABLES") || eq(w, "TABLE") => StatementKind::UnlockTables,
            _ => StatementKind::Write,
        }
    } else if is("FLUSH") {
        flush(tokens)
    } else if is("CREATE") {
        create(tokens)
    } else if is("DROP") {
        drop(tokens)
    } else if is("PREPARE") {
        prepare(tokens)
    } else if is("EXECUTE") {
        match name(tokens.next()) {
            Some(n) if !eq(&n, "IMMEDIATE") => StatementKind::ExecutePrepared(n),
            // EXECUTE IMMEDIATE 'KILL ...' is refused as its text would be.
            _ => match literal(tokens.rest()).map(|text| kind(&text)) {
                Some(refused @ StatementKind::Refused(_)) => refused,
                _ => StatementKind::Write,
            },
        }
    } else if is("KILL") {
        // `KILL id` with a literal id is answered before classification
        // (`sql::kill`); any other form could name a backend's thread.
        StatementKind::Refused(KILL_FORMS)
    } else if is("DEALLOCATE") {
        deallocate(tokens)
    } else if is("HELP") {
        StatementKind::Read
    } else {
        // INSERT, UPDATE, DELETE, REPLACE, CALL, DO, LOAD, ALTER, GRANT,
        // XA, HANDLER, ANALYZE... and every keyword not known here.
        StatementKind::Write
    }
}

fn eq(word: &str, keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword)
}

/// The next `n` words (fewer if something else comes first).
fn words<'a>(tokens: &mut Lexer<'a>, n: usize) -> Vec<&'a str> {
    tokens
        .by_ref()
        .take(n)
        .map_while(|t| match t {
            Token::Word(w) => Some(w),
            _ => None,
        })
        .collect()
}

/// An identifier token's name.
fn name(token: Option<Token<'_>>) -> Option<String> {
    match token? {
        Token::Word(w) | Token::Quoted(w) => Some(w.to_owned()),
        _ => None,
    }
}

/// `WITH ...`: sqlparser finds the main statement; when it cannot parse
/// the text, only a CTE followed by a plain SELECT keyword scan is trusted.
fn with_query(text: &str) -> StatementKind {
    use sqlparser::ast::{SetExpr, Statement};
    use sqlparser::dialect::MySqlDialect;
    match sqlparser::parser::Parser::parse_sql(&MySqlDialect {}, &super::lexer::code(text)) {
        // A CTE's main statement may also be an UPDATE, DELETE or INSERT.
        Ok(statements) => match statements.as_slice() {
            [Statement::Query(query)]
                if matches!(
                    *query.body,
                    SetExpr::Select(_)
                        | SetExpr::Query(_)
                        | SetExpr::SetOperation { .. }
                        | SetExpr::Values(_)
                        | SetExpr::Table(_)
                ) =>
            {
                read_query(text)
            }
            _ => StatementKind::Write,
        },
        Err(_) => StatementKind::Write,
    }
}

/// SHOW: reads, except what describes one server (its binary logs,
/// replication, processes, global state) or the previous statement.
fn show(mut tokens: Lexer<'_>) -> StatementKind {
    let mut word = words(&mut tokens, 1).pop().unwrap_or_default();
    if eq(word, "FULL") || eq(word, "GLOBAL") || eq(word, "SESSION") || eq(word, "LOCAL") {
        if eq(word, "GLOBAL") {
            return StatementKind::Write;
        }
        word = words(&mut tokens, 1).pop().unwrap_or_default();
    }
    if eq(word, "COUNT") {
        // SHOW COUNT(*) WARNINGS
        return StatementKind::PreviousResult;
    }
    const PREVIOUS: &[&str] = &["WARNINGS", "ERRORS"];
    const SERVER: &[&str] = &[
        "MASTER",
        "SLAVE",
        "REPLICA",
        "BINLOG",
        "BINARY",
        "RELAYLOG",
        "PROCESSLIST",
        "STATUS",
        "VARIABLES",
        "ENGINE",
        "OPEN",
        "PROFILE",
        "PROFILES",
        "EXPLAIN",
        "ANALYZE",
        "ALL",
        "USER_STATISTICS",
        "CLIENT_STATISTICS",
        "INDEX_STATISTICS",
        "TABLE_STATISTICS",
        "MUTEX",
        "INNODB",
    ];
    if PREVIOUS.iter().any(|k| eq(word, k)) {
        StatementKind::PreviousResult
    } else if word.is_empty() || SERVER.iter().any(|k| eq(word, k)) {
        StatementKind::Write
    } else {
        StatementKind::Read
    }
}

/// DESCRIBE / EXPLAIN: a table description or the plan of a read is a
/// read; the plan of a write goes to the primary.
fn explain(mut tokens: Lexer<'_>) -> StatementKind {
    let rest = tokens.rest();
    let mut peek = Lexer::new(rest);
    let mut word = match peek.next() {
        Some(Token::Word(w)) => w,
        Some(Token::Quoted(_)) => return StatementKind::Read,
        Some(Token::Punct('(')) => return read_query(rest),
        _ => return StatementKind::Write,
    };
    // EXPLAIN EXTENDED | PARTITIONS | FORMAT=JSON ...
    while eq(word, "EXTENDED") || eq(word, "PARTITIONS") || eq(word, "FORMAT") {
        if eq(word, "FORMAT") {
            peek.next(); // =
            peek.next(); // JSON / TRADITIONAL
        }
        word = match peek.next() {
            Some(Token::Word(w)) => w,
            _ => return StatementKind::Write,
        };
    }
    if eq(word, "SELECT") || eq(word, "WITH") || eq(word, "VALUES") || eq(word, "TABLE") {
        match read_query(peek.rest()) {
            StatementKind::Read | StatementKind::PreviousResult => StatementKind::Read,
            _ => StatementKind::Write,
        }
    } else if ["INSERT", "UPDATE", "DELETE", "REPLACE", "FOR", "ANALYZE"]
        .iter()
        .any(|k| eq(word, k))
    {
        StatementKind::Write
    } else {
        // DESCRIBE table [column]
        StatementKind::Read
    }
}

fn begin(mut tokens: Lexer<'_>) -> StatementKind {
    match tokens.next() {
        None => StatementKind::Begin { read_only: false },
        Some(Token::Word(w)) if eq(w, "WORK") => StatementKind::Begin { read_only: false },
        // BEGIN NOT ATOMIC ... END: an anonymous compound statement.
        _ => StatementKind::Write,
    }
}

/// `START TRANSACTION [READ ONLY | READ WRITE | WITH CONSISTENT SNAPSHOT], ...`
fn start(mut tokens: Lexer<'_>) -> StatementKind {
    if !matches!(tokens.next(), Some(Token::Word(w)) if eq(w, "TRANSACTION")) {
        return StatementKind::Write; // START SLAVE, START REPLICA...
    }
    let rest: Vec<Token<'_>> = tokens.collect();
    let read_only = rest
        .windows(2)
        .any(|w| matches!(w, [Token::Word(a), Token::Word(b)] if eq(a, "READ") && eq(b, "ONLY")));
    StatementKind::Begin { read_only }
}

fn lock(mut tokens: Lexer<'_>) -> StatementKind {
    match words(&mut tokens, 1).as_slice() {
        [w] if eq(w, "TABLES") || eq(w, "TABLE") => StatementKind::LockTables,
        _ => StatementKind::Write,
    }
}

/// `FLUSH TABLES ... WITH READ LOCK` holds locks like LOCK TABLES.
fn flush(tokens: Lexer<'_>) -> StatementKind {
    let words: Vec<&str> = tokens
        .filter_map(|t| match t {
            Token::Word(w) => Some(w),
            _ => None,
        })
        .collect();
    let read_lock = words
        .windows(3)
        .any(|w| eq(w[0], "WITH") && eq(w[1], "READ") && eq(w[2], "LOCK"));
    if read_lock {
        StatementKind::LockTables
    } else {
        StatementKind::Write
    }
}

/// `CREATE [OR REPLACE] TEMPORARY TABLE [IF NOT EXISTS] name`
fn create(mut tokens: Lexer<'_>) -> StatementKind {
    let mut word = words(&mut tokens, 1).pop().unwrap_or_default();
    if eq(word, "OR") {
        words(&mut tokens, 1); // REPLACE
        word = words(&mut tokens, 1).pop().unwrap_or_default();
    }
    if !eq(word, "TEMPORARY") || !matches!(tokens.next(), Some(Token::Word(w)) if eq(w, "TABLE")) {
        return StatementKind::Write;
    }
    let mut token = tokens.next();
    if matches!(token, Some(Token::Word(w)) if eq(w, "IF")) {
        tokens.next(); // NOT
        tokens.next(); // EXISTS
        token = tokens.next();
    }
    match table_name(token, &mut tokens) {
        Some(table) => StatementKind::CreateTemporaryTable(table),
        None => StatementKind::Write,
    }
}

/// `DROP [TEMPORARY] TABLE [IF EXISTS] names`, `DROP PREPARE name`.
fn drop(mut tokens: Lexer<'_>) -> StatementKind {
    let mut word = words(&mut tokens, 1).pop().unwrap_or_default();
    if eq(word, "PREPARE") {
        return match name(tokens.next()) {
            Some(n) => StatementKind::SessionState(SessionChange::Deallocate(n)),
            None => StatementKind::Write,
        };
    }
    if eq(word, "TEMPORARY") {
        word = words(&mut tokens, 1).pop().unwrap_or_default();
    }
    if !eq(word, "TABLE") && !eq(word, "TABLES") {
        return StatementKind::Write;
    }
    let mut tables = Vec::new();
    let mut token = tokens.next();
    if matches!(token, Some(Token::Word(w)) if eq(w, "IF")) {
        tokens.next(); // EXISTS
        token = tokens.next();
    }
    while let Some(table) = table_name(token, &mut tokens) {
        tables.push(table);
        token = match tokens.next() {
            Some(Token::Punct(',')) => tokens.next(),
            _ => break,
        };
    }
    StatementKind::DropTables(tables)
}

/// A table name, unqualified: `t`, `` `t` ``, `db.t` (gives `t`).
fn table_name<'a>(first: Option<Token<'a>>, tokens: &mut Lexer<'a>) -> Option<String> {
    let mut table = name(first)?;
    let mut lookahead = tokens.clone();
    if lookahead.next() == Some(Token::Punct('.')) {
        tokens.next();
        table = name(tokens.next())?;
    }
    Some(table)
}

/// Why a KILL form is refused.
pub const KILL_FORMS: &str = "KILL with anything but a literal connection id, alone in its \
     statement; run `KILL [QUERY] id` with the id rwsplit gave the session in its greeting (the \
     client library's connection or thread id)";

/// `PREPARE name FROM 'text'` (classified) or `FROM @var` (unknown: primary).
fn prepare(mut tokens: Lexer<'_>) -> StatementKind {
    let Some(statement) = name(tokens.next()) else {
        return StatementKind::Write;
    };
    if !matches!(tokens.next(), Some(Token::Word(w)) if eq(w, "FROM")) {
        return StatementKind::Write;
    }
    let source = tokens.rest();
    if let Some(refused @ StatementKind::Refused(_)) = literal(source).map(|text| kind(&text)) {
        return refused;
    }
    // A prepared read of user variables runs where they may have been
    // assigned (see `sql::reads_user_variable`).
    let reads = literal(source).is_some_and(|text| {
        kind(&text) == StatementKind::Read && !super::reads_user_variable(text.as_bytes())
    });
    StatementKind::SessionState(SessionChange::Prepare {
        name: statement,
        reads,
    })
}

fn deallocate(mut tokens: Lexer<'_>) -> StatementKind {
    if !matches!(tokens.next(), Some(Token::Word(w)) if eq(w, "PREPARE")) {
        return StatementKind::Write;
    }
    match name(tokens.next()) {
        Some(n) => StatementKind::SessionState(SessionChange::Deallocate(n)),
        None => StatementKind::Write,
    }
}

/// The contents of a single string literal making up all of `text`.
fn literal(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches(';').trim_end();
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = text.strip_prefix(quote)?.strip_suffix(quote)?;
    let doubled = format!("{quote}{quote}");
    if inner.replace(&doubled, "").contains(quote) {
        return None; // more than one literal (concatenation)
    }
    Some(
        inner
            .replace(&doubled, &quote.to_string())
            .replace("\\'", "'"),
    )
}

#[cfg(test)]
mod tests;
