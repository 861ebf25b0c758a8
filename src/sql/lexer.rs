//! A small SQL lexer: enough of MySQL/MariaDB's lexical rules to find
//! keywords, identifiers, variables and punctuation without being fooled by
//! strings or comments.
//!
//! Comments are skipped, except MySQL's executable comments (`/*! ... */`,
//! `/*!50100 ... */`, MariaDB's `/*M! ... */`), whose contents the server
//! runs and so are lexed as code. String contents are never looked at.

/// One token of SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// A keyword or an unquoted identifier.
    Word(&'a str),
    /// A back-quoted identifier, without the quotes.
    Quoted(&'a str),
    /// A string literal ('...' or "...").
    Text,
    /// A number.
    Number,
    /// A user variable: `@name`, `@'name'`, `@"name"`, or `@`.
    UserVariable(&'a str),
    /// A system variable: `@@name`, `@@session.name`, `@@global.name`.
    SystemVariable(&'a str),
    /// `:=`
    Assign,
    /// Any other character: `(`, `)`, `,`, `;`, `=`, `.`, `*`...
    Punct(char),
}

/// Bytes that continue a word or a number: ASCII letters and digits, `_`,
/// `$`, and every byte of a multi-byte UTF-8 character.
static IN_WORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let c = byte as u8;
        table[byte] = c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
        byte += 1;
    }
    table
};

/// Bytes that may start whitespace or a comment, or end an executable
/// comment.
static TRIVIA: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let c = byte as u8;
        table[byte] = c.is_ascii_whitespace() || matches!(c, b'#' | b'-' | b'/' | b'*');
        byte += 1;
    }
    table
};

/// Whether `byte` continues a word or a number.
pub fn in_word(byte: u8) -> bool {
    IN_WORD[usize::from(byte)]
}

/// Iterates over the tokens of `text`.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    /// Inside an executable comment: its `*/` ends it rather than being
    /// punctuation.
    in_executable_comment: bool,
    /// Where executable comments open (`/*!50100`) and close (`*/`), when
    /// [`code`] asks for them.
    markers: Option<Vec<std::ops::Range<usize>>>,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            text,
            pos: 0,
            in_executable_comment: false,
            markers: None,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes().get(self.pos + ahead).copied()
    }

    /// Skips whitespace and comments; enters executable comments.
    #[inline]
    fn skip_trivia(&mut self) {
        // Between most tokens there is one space or nothing: settled here,
        // without a call.
        let bytes = self.bytes();
        let mut at = self.pos;
        if bytes.get(at) == Some(&b' ') {
            at += 1;
        }
        if !bytes.get(at).is_some_and(|&c| TRIVIA[usize::from(c)]) {
            self.pos = at;
            return;
        }
        self.skip_trivia_run();
    }

    /// Runs of whitespace and comments: kept out of line, so that the
    /// common case above stays small enough to inline.
    #[inline(never)]
    fn skip_trivia_run(&mut self) {
        loop {
            while self.peek(0).is_some_and(|c| c.is_ascii_whitespace()) {
                self.pos += 1;
            }
            // Only these bytes can start a comment or end an executable one.
            if !matches!(self.peek(0), Some(b'#' | b'-' | b'/' | b'*')) {
                return;
            }
            match (self.peek(0), self.peek(1), self.peek(2)) {
                (Some(b'#'), _, _) => self.skip_line(),
                (Some(b'-'), Some(b'-'), c)
                    if c.is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
                {
                    self.skip_line()
                }
                (Some(b'/'), Some(b'*'), Some(b'!')) => self.enter_executable_comment(3),
                (Some(b'/'), Some(b'*'), Some(b'M')) if self.peek(3) == Some(b'!') => {
                    self.enter_executable_comment(4)
                }
                (Some(b'/'), Some(b'*'), _) => self.skip_block_comment(),
                (Some(b'*'), Some(b'/'), _) if self.in_executable_comment => {
                    self.in_executable_comment = false;
                    self.mark(self.pos..self.pos + 2);
                    self.pos += 2;
                }
                _ => return,
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            if c == b'\n' {
                return;
            }
        }
    }

    fn skip_block_comment(&mut self) {
        match self.text[self.pos + 2..].find("*/") {
            Some(end) => self.pos += 2 + end + 2,
            None => self.pos = self.text.len(),
        }
    }

    /// `/*!`, or MariaDB's `/*M!`, and an optional version number: the
    /// server runs the comment's contents when it is at least that
    /// version. rwsplit reads them as code whatever the version (when in
    /// doubt, code is what sends a statement to the primary), except for
    /// a version no server has: mariadb-dump starts its files with
    /// `/*M!999999\- enable the sandbox mode */`, a command for the
    /// `mariadb` client that every server skips.
    fn enter_executable_comment(&mut self, prefix: usize) {
        let start = self.pos;
        self.pos += prefix;
        let digits = self.pos;
        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.text[digits..self.pos].starts_with("99") && self.pos - digits == 6 {
            self.pos = start;
            return self.skip_block_comment();
        }
        self.mark(start..self.pos);
        self.in_executable_comment = true;
    }

    fn mark(&mut self, range: std::ops::Range<usize>) {
        if let Some(markers) = &mut self.markers {
            markers.push(range);
        }
    }

    /// Consumes a quoted run starting at the current position and ending
    /// with `quote`; doubled quotes and backslash escapes stay inside.
    /// Returns what is between the quotes (to the end of the text when the
    /// closing quote is missing).
    fn quoted(&mut self, quote: u8) -> &'a str {
        let start = self.pos + 1;
        self.pos = start;
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            if c == b'\\' && quote != b'`' {
                self.pos = (self.pos + 1).min(self.text.len());
            } else if c == quote {
                if self.peek(0) == Some(quote) {
                    self.pos += 1;
                } else {
                    return self.text.get(start..self.pos - 1).unwrap_or_default();
                }
            }
        }
        self.text.get(start..).unwrap_or_default()
    }

    /// Where the run of word bytes starting at `from` ends.
    fn word_end(&self, from: usize) -> usize {
        let rest = self.bytes().get(from..).unwrap_or_default();
        from + rest.iter().position(|&c| !in_word(c)).unwrap_or(rest.len())
    }

    /// The rest of the text from the current position (after trivia).
    pub fn rest(&mut self) -> &'a str {
        self.skip_trivia();
        &self.text[self.pos..]
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        self.next_token().map(|(_, token)| token)
    }
}

impl<'a> Lexer<'a> {
    /// The next token and the byte offset where it starts.
    pub fn next_token(&mut self) -> Option<(usize, Token<'a>)> {
        self.skip_trivia();
        let start = self.pos;
        let c = self.peek(0)?;
        let token = match c {
            b'\'' | b'"' => {
                self.quoted(c);
                Token::Text
            }
            b'`' => Token::Quoted(self.quoted(b'`')),
            b'@' if self.peek(1) == Some(b'@') => {
                self.pos += 2;
                // @@session.name: the dot and the name belong to it.
                let mut end = self.word_end(self.pos);
                if self.bytes().get(end) == Some(&b'.') {
                    end = self.word_end(end + 1);
                }
                self.pos = end;
                Token::SystemVariable(&self.text[start + 2..end])
            }
            b'@' => {
                self.pos += 1;
                match self.peek(0) {
                    Some(q @ (b'\'' | b'"' | b'`')) => Token::UserVariable(self.quoted(q)),
                    _ => {
                        self.pos = self.word_end(self.pos);
                        Token::UserVariable(&self.text[start + 1..self.pos])
                    }
                }
            }
            b':' if self.peek(1) == Some(b'=') => {
                self.pos += 2;
                Token::Assign
            }
            b'0'..=b'9' => {
                self.pos = self.word_end(self.pos);
                // A decimal point and fraction, or an exponent sign.
                if self.peek(0) == Some(b'.') {
                    self.pos = self.word_end(self.pos + 1);
                }
                Token::Number
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                self.pos = self.word_end(self.pos);
                Token::Word(&self.text[start..self.pos])
            }
            // Bytes from 0x80 start words: what is left is ASCII.
            _ => {
                self.pos += 1;
                Token::Punct(char::from(c))
            }
        };
        Some((start, token))
    }
}

/// `text` with the markers of its executable comments (`/*!50100`,
/// `/*M!100100`, their `*/`) blanked out, so that a parser that takes
/// comments for comments (sqlparser) reads their contents as the server
/// does. Borrowed when there are none.
pub fn code(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("/*!") && !text.contains("/*M!") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut lexer = Lexer::new(text);
    lexer.markers = Some(Vec::new());
    while lexer.next().is_some() {}
    lexer.skip_trivia();
    let mut code = text.as_bytes().to_vec();
    for marker in lexer.markers.unwrap_or_default() {
        code[marker].fill(b' ');
    }
    // Only ASCII bytes were replaced, by ASCII spaces.
    std::borrow::Cow::Owned(String::from_utf8(code).unwrap_or_else(|_| text.to_owned()))
}

/// A routing hint in a leading comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// `/* rwsplit:primary */`
    Primary,
    /// `/* rwsplit:replica */`
    Replica,
}

/// The hint in the comments before the first token of `text`, if any.
pub fn leading_hint(text: &str) -> Option<Hint> {
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix("/*") {
        if after.starts_with('!') || after.starts_with("M!") {
            return None; // executable comment: code, not a hint
        }
        let end = after.find("*/")?;
        let hint = match after[..end].trim() {
            h if h.eq_ignore_ascii_case("rwsplit:primary") => Some(Hint::Primary),
            h if h.eq_ignore_ascii_case("rwsplit:replica") => Some(Hint::Replica),
            _ => None,
        };
        if hint.is_some() {
            return hint;
        }
        rest = after[end + 2..].trim_start();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use Token::*;
    use proptest::prelude::*;

    fn tokens(text: &str) -> Vec<Token<'_>> {
        Lexer::new(text).collect()
    }

    #[test]
    fn words_strings_and_comments() {
        assert_eq!(
            tokens(
                "SELECT a, 'it''s -- not a comment', \"x\\\"y\" FROM `my table` -- comment\n# hash\nWHERE b=1.5e3"
            ),
            vec![
                Word("SELECT"),
                Word("a"),
                Punct(','),
                Text,
                Punct(','),
                Text,
                Word("FROM"),
                Quoted("my table"),
                Word("WHERE"),
                Word("b"),
                Punct('='),
                Number,
            ]
        );
        assert_eq!(tokens("a /* x ; y */ b"), vec![Word("a"), Word("b")]);
        assert_eq!(
            tokens("a--b"),
            vec![Word("a"), Punct('-'), Punct('-'), Word("b")],
            "-- needs a space"
        );
    }

    #[test]
    fn variables_and_assignment() {
        assert_eq!(
            tokens("SELECT @a := @@session.sql_mode, @`odd name`, @@warning_count, @'q'"),
            vec![
                Word("SELECT"),
                UserVariable("a"),
                Assign,
                SystemVariable("session.sql_mode"),
                Punct(','),
                UserVariable("odd name"),
                Punct(','),
                SystemVariable("warning_count"),
                Punct(','),
                UserVariable("q"),
            ]
        );
    }

    #[test]
    fn executable_comments_are_code() {
        assert_eq!(
            tokens("/*!40101 SET NAMES utf8 */; /*M!100100 SELECT 1 */ /*+ hint */ x"),
            vec![
                Word("SET"),
                Word("NAMES"),
                Word("utf8"),
                Punct(';'),
                Word("SELECT"),
                Number,
                Word("x")
            ]
        );
    }

    #[test]
    fn a_version_no_server_has_makes_a_plain_comment() {
        assert_eq!(
            tokens("/*M!999999\\- enable the sandbox mode */ /*!40101 SET @a=@@b */"),
            vec![
                Word("SET"),
                UserVariable("a"),
                Punct('='),
                SystemVariable("b")
            ]
        );
        assert_eq!(
            tokens("/*!990000 DROP TABLE t */ SELECT 1"),
            vec![Word("SELECT"), Number]
        );
    }

    #[test]
    fn code_is_the_text_without_executable_comment_markers() {
        assert_eq!(code("SET @a = 1"), "SET @a = 1");
        assert!(matches!(code("SELECT '/*!'"), std::borrow::Cow::Owned(_)));
        assert_eq!(code("SELECT '/*!'"), "SELECT '/*!'");
        assert_eq!(code("/*M!100000 SET @v = 1 */"), "           SET @v = 1   ");
        assert_eq!(
            code("/*!40101 SET @a = 1 */ /* note */ /*!SELECT 2*/"),
            "         SET @a = 1    /* note */    SELECT 2  "
        );
        assert_eq!(
            code("/*M!999999\\- sandbox */ /*!40101 SET @a=1 */"),
            "/*M!999999\\- sandbox */          SET @a=1   "
        );
    }

    #[test]
    fn hints_come_from_leading_comments() {
        assert_eq!(
            leading_hint("/* rwsplit:primary */ SELECT 1"),
            Some(Hint::Primary)
        );
        assert_eq!(
            leading_hint("  /* app */ /*RWSPLIT:REPLICA*/ SELECT 1"),
            Some(Hint::Replica)
        );
        assert_eq!(
            leading_hint("SELECT /* rwsplit:primary */ 1"),
            None,
            "only leading comments"
        );
        assert_eq!(leading_hint("/* rwsplit:elsewhere */ SELECT 1"), None);
        assert_eq!(leading_hint("/*!rwsplit:primary */ SELECT 1"), None);
    }

    proptest! {
        #[test]
        fn lexing_never_panics_and_ends(text in "\\PC{0,60}") {
            let count = Lexer::new(&text).take(1000).count();
            prop_assert!(count < 1000);
            let _ = leading_hint(&text);
            prop_assert_eq!(code(&text).len(), text.len());
        }
    }
}
