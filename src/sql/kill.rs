//! Recognises `KILL` statements, which rwsplit answers itself: the id a
//! client names is the connection id rwsplit gave it, not a backend's.

/// A KILL statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// `KILL [CONNECTION] id`: end the session.
    Connection(u64),
    /// `KILL QUERY id`: stop the session's running statement.
    Query(u64),
    /// A form rwsplit does not translate (`KILL QUERY ID`, `KILL USER`).
    Unsupported(&'static str),
}

/// Parses `sql` if it is a KILL statement (any case, with `HARD`/`SOFT`,
/// leading comments and a trailing `;`).
pub fn parse_kill(sql: &[u8]) -> Option<Kill> {
    // Every COM_QUERY passes here and almost none is a KILL: the first byte
    // that is not whitespace settles most of them before the text is
    // decoded. A non-ASCII byte may be Unicode whitespace; those take the
    // full path.
    let first = sql
        .iter()
        .find(|&&b| !(b.is_ascii() && char::from(b).is_whitespace()));
    if !matches!(first, Some(b'k' | b'K' | b'/' | 0x80..)) {
        return None;
    }
    let text = std::str::from_utf8(sql).ok()?;
    let text = skip_leading_comments(text);
    let mut words = text
        .trim_end()
        .trim_end_matches(';')
        .split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("KILL") {
        return None;
    }
    let mut word = words.next()?;
    if word.eq_ignore_ascii_case("HARD") || word.eq_ignore_ascii_case("SOFT") {
        word = words.next()?;
    }
    let query = word.eq_ignore_ascii_case("QUERY");
    if query || word.eq_ignore_ascii_case("CONNECTION") {
        word = words.next()?;
    }
    if word.eq_ignore_ascii_case("USER") {
        return Some(Kill::Unsupported(
            "KILL USER; kill each connection by its id",
        ));
    }
    if query && word.eq_ignore_ascii_case("ID") {
        return Some(Kill::Unsupported(
            "KILL QUERY ID; use KILL QUERY with the connection id",
        ));
    }
    let id: u64 = word.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(if query {
        Kill::Query(id)
    } else {
        Kill::Connection(id)
    })
}

fn skip_leading_comments(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix("/*") {
            match rest.find("*/") {
                Some(end) => text = &rest[end + 2..],
                None => return text,
            }
        } else {
            return text;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_forms() {
        let cases: &[(&str, Option<Kill>)] = &[
            ("KILL 5", Some(Kill::Connection(5))),
            ("\u{a0}\x0b KILL 5", Some(Kill::Connection(5))),
            ("\x0b\tKILL 5", Some(Kill::Connection(5))),
            ("SELECT 'KILL 5'", None),
            ("", None),
            ("kill connection 5;", Some(Kill::Connection(5))),
            ("  KILL QUERY 17 ", Some(Kill::Query(17))),
            ("KILL HARD QUERY 17", Some(Kill::Query(17))),
            ("KILL SOFT CONNECTION 3", Some(Kill::Connection(3))),
            ("/* app */ KILL 9", Some(Kill::Connection(9))),
            (
                "KILL USER app",
                Some(Kill::Unsupported(
                    "KILL USER; kill each connection by its id",
                )),
            ),
            (
                "KILL QUERY ID 4",
                Some(Kill::Unsupported(
                    "KILL QUERY ID; use KILL QUERY with the connection id",
                )),
            ),
            ("KILL", None),
            ("KILL abc", None),
            ("KILL 5 6", None),
            ("SELECT 'KILL 5'", None),
            ("KILLER 5", None),
        ];
        for (sql, expected) in cases {
            assert_eq!(parse_kill(sql.as_bytes()), *expected, "{sql}");
        }
    }
}
