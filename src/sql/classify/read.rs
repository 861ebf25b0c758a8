//! Reads: whether a SELECT-like query may run on a replica, by one pass
//! over its bytes when that settles it ([`plainly_read`]), else token by
//! token ([`scan_read`]).

use super::eq;
use crate::sql::StatementKind;
use crate::sql::functions::{self, Call};
use crate::sql::lexer::{Lexer, Token, in_word};

/// Bytes at which a read's scan may have something to act on: a call or a
/// subquery, a variable, `:=`, another statement, or a comment that may be
/// executable (its contents are code, and its version number may run into
/// the word after it).
static READ_STOPS: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = matches!(byte as u8, b'(' | b'@' | b':' | b';' | b'/');
        byte += 1;
    }
    table
};

/// Whether the text of a SELECT-like query certainly has nothing that
/// [`scan_read`] would act on, in one pass over its bytes and no lexing:
/// none of the [`READ_STOPS`] and none of the words [`word_in_read`] looks
/// at. Strings and comments are looked into too, which can only send a
/// read to the full scan: every word the lexer finds is a whole run of word
/// bytes here, since the one way to split a run, an executable comment's
/// version number, needs a `/`. Most reads applications send take this
/// path (docs/benchmarks.md, step 17).
pub(super) fn plainly_read(text: &[u8]) -> bool {
    // Where the current run of word bytes started.
    let mut word = 0;
    for (at, &c) in text.iter().enumerate() {
        if in_word(c) {
            continue;
        }
        if READ_STOPS[usize::from(c)] || is_read_keyword(&text[word..at]) {
            return false;
        }
        word = at + 1;
    }
    !is_read_keyword(&text[word..])
}

/// The words that [`word_in_read`] acts on (with the word after them).
#[inline]
fn is_read_keyword(word: &[u8]) -> bool {
    let is = |keyword: &[u8]| word.eq_ignore_ascii_case(keyword);
    match word.len() {
        3 => is(b"FOR"),
        4 => is(b"LOCK") || is(b"INTO") || is(b"NEXT"),
        6 => is(b"INSERT"),
        7 => is(b"REPLACE"),
        8 => is(b"PREVIOUS"),
        _ => false,
    }
}

/// What scanning a read found.
pub(super) struct ReadScan {
    pub kind: StatementKind,
    /// Whether another statement follows; `None` when the scan stopped
    /// early and does not know.
    pub more: Option<bool>,
}

/// A SELECT-like query: a read unless something in it needs the primary.
pub(super) fn read_query(text: &str) -> StatementKind {
    let mut tokens = Lexer::new(text);
    scan_read(tokens.next(), tokens).kind
}

/// One pass over a SELECT-like query, from its `first` token (the `tokens`
/// follow it) up to the end of the statement.
pub(super) fn scan_read<'a>(first: Option<Token<'a>>, mut tokens: Lexer<'a>) -> ReadScan {
    let stop = |kind| ReadScan { kind, more: None };
    let mut previous_result = false;
    let mut more = false;
    let mut before: Option<Token<'_>> = None;
    let mut next = first;
    while let Some(token) = next {
        next = tokens.next();
        match token {
            Token::Punct(';') => {
                more = next.is_some();
                break;
            }
            Token::Assign => return stop(StatementKind::PinsToPrimary),
            Token::SystemVariable(name) => match system_variable(name) {
                Call::Pure => {}
                Call::PreviousResult => previous_result = true,
                Call::Primary => return stop(StatementKind::Write),
            },
            Token::Word(word) => match word_in_read(word, next) {
                Some(kind) => return stop(kind),
                None => {
                    if matches!(next, Some(Token::Punct('(')))
                        && !functions::is_keyword_before_paren(word)
                    {
                        // A qualified name (db.f) is a stored function.
                        match (before, functions::call(word)) {
                            (Some(Token::Punct('.')), _) | (_, Call::Primary) => {
                                return stop(StatementKind::Write);
                            }
                            (_, Call::PreviousResult) => previous_result = true,
                            (_, Call::Pure) => {}
                        }
                    }
                }
            },
            Token::Quoted(_) if matches!(next, Some(Token::Punct('('))) => {
                return stop(StatementKind::Write);
            }
            _ => {}
        }
        before = Some(token);
    }
    let kind = if previous_result {
        StatementKind::PreviousResult
    } else {
        StatementKind::Read
    };
    ReadScan {
        kind,
        more: Some(more),
    }
}

/// Keywords inside a read that decide it, with the word after them; each
/// is one of [`is_read_keyword`]'s.
fn word_in_read(word: &str, next: Option<Token<'_>>) -> Option<StatementKind> {
    if !is_read_keyword(word.as_bytes()) {
        return None;
    }
    let next_is = |k: &str| matches!(next, Some(Token::Word(w)) if eq(w, k));
    if eq(word, "FOR") && (next_is("UPDATE") || next_is("SHARE")) {
        return Some(StatementKind::Write); // SELECT ... FOR UPDATE / FOR SHARE
    }
    if eq(word, "LOCK") && next_is("IN") {
        return Some(StatementKind::Write); // LOCK IN SHARE MODE
    }
    if eq(word, "INTO") {
        // INTO @var assigns a user variable (kept on the primary only);
        // INTO OUTFILE / DUMPFILE writes a file on the server.
        return Some(match next {
            Some(Token::UserVariable(_)) => StatementKind::PinsToPrimary,
            _ => StatementKind::Write,
        });
    }
    if (eq(word, "NEXT") || eq(word, "PREVIOUS")) && next_is("VALUE") {
        return Some(StatementKind::Write); // NEXT VALUE FOR seq
    }
    if (eq(word, "INSERT") || eq(word, "REPLACE")) && next_is("SELECT") {
        return Some(StatementKind::Write);
    }
    None
}

/// `@@name`: `warning_count` and `error_count` describe the previous
/// statement; `identity` and `last_insert_id` are the session's own writes.
fn system_variable(name: &str) -> Call {
    let name = name.rsplit('.').next().unwrap_or(name);
    if eq(name, "warning_count") || eq(name, "error_count") {
        Call::PreviousResult
    } else if eq(name, "identity") || eq(name, "last_insert_id") || eq(name, "last_gtid") {
        Call::Primary
    } else {
        Call::Pure
    }
}
