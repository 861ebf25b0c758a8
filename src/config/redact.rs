//! What a YAML syntax error may show of `proxy.yaml` without showing a
//! secret. The parser's message quotes the lines around the error; quoted
//! from the text after `${VAR}` substitution it would print passwords
//! given through the environment (to a terminal, or to a container's log).
//! So the message is made from the file as written, with the values of
//! secret keys masked; when only the substituted text is broken, the
//! message names the line and the references on it, never their values.

/// Key names whose values are never shown: any key containing one of
/// these (`password`, `replication_password`, `token`...).
const SECRET_KEYS: [&str; 3] = ["password", "token", "secret"];

/// `text` with the value of every secret key replaced by `"***"`, in block
/// (`password: x`) and flow (`{ name: a, password: x }`) style. Lines keep
/// their count, so that line numbers stay right.
pub(super) fn mask_secrets(text: &str) -> String {
    text.split_inclusive('\n').map(mask_line).collect()
}

fn mask_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some((key_end, value_start)) = next_secret(rest) {
        out.push_str(&rest[..key_end]);
        out.push_str(": \"***\"");
        let value = &rest[value_start..];
        rest = &value[value_end(value)..];
    }
    out.push_str(rest);
    out
}

/// In `line`: where the next secret key's name ends and its value starts.
fn next_secret(line: &str) -> Option<(usize, usize)> {
    let lower = line.to_ascii_lowercase();
    let mut from = 0;
    while from < line.len() {
        let found = SECRET_KEYS
            .iter()
            .filter_map(|k| lower[from..].find(k).map(|at| (from + at, k.len())))
            .min()?;
        let (at, len) = found;
        // The whole key: word characters around the match.
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        let end = at
            + len
            + line[at + len..]
                .find(|c: char| !word(c))
                .unwrap_or(line.len() - at - len);
        let after = line[end..].trim_start();
        if let Some(value) = after.strip_prefix(':') {
            let value_start = line.len() - value.trim_start().len();
            return Some((end, value_start));
        }
        from = end.max(at + 1);
    }
    None
}

/// Where a YAML value starting `text` ends: its closing quote, or the
/// first `,` or `}` (flow style) outside a `${...}` reference, or the end
/// of the line.
fn value_end(text: &str) -> usize {
    let mut chars = text.char_indices();
    match chars.next() {
        Some((_, quote @ ('"' | '\''))) => {
            let mut escaped = false;
            let mut chars = chars.peekable();
            while let Some((at, c)) = chars.next() {
                if quote == '"' && c == '\\' && !escaped {
                    escaped = true;
                    continue;
                }
                if c == quote && !escaped {
                    // In single quotes, '' is a quote.
                    if quote == '\'' && chars.next_if(|&(_, next)| next == '\'').is_some() {
                        continue;
                    }
                    return at + c.len_utf8();
                }
                escaped = false;
            }
            text.trim_end_matches(['\n', '\r']).len()
        }
        _ => {
            let mut at = 0;
            while let Some(found) = text[at..].find([',', '}', '\n', '\r', '$']) {
                let found = at + found;
                match text[found..].strip_prefix("${") {
                    Some(reference) => {
                        at = found + 2 + reference.find('}').map_or(0, |end| end + 1)
                    }
                    None if text.as_bytes()[found] == b'$' => at = found + 1,
                    None => return text[..found].trim_end().len(),
                }
            }
            text.len()
        }
    }
}

/// The 1-based line a serde-saphyr syntax error names (`line 5 column 3`).
pub(super) fn error_line(message: &str) -> Option<usize> {
    let after = message.split("line ").nth(1)?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The `${...}` references written on 1-based `line` of `text`.
pub(super) fn references_on(text: &str, line: usize) -> Vec<&str> {
    let Some(line) = text.lines().nth(line.wrapping_sub(1)) else {
        return Vec::new();
    };
    line.match_indices("${")
        .filter_map(|(at, _)| line[at..].find('}').map(|end| &line[at..at + end + 1]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_masked_in_both_styles() {
        let text = "users:\n  - { name: app, password: hunter2 }\n  - name: b\n    password: 'it''s'\nadmin: { token: \"a\\\"b\", address: x }\nfailover: { replication_password: ${REPL} }\n";
        let masked = mask_secrets(text);
        for secret in ["hunter2", "it''s", "a\\\"b", "${REPL}"] {
            assert!(!masked.contains(secret), "{secret} in {masked}");
        }
        assert_eq!(masked.lines().count(), text.lines().count());
        assert!(
            masked.contains("{ name: app, password: \"***\" }"),
            "{masked}"
        );
        assert!(masked.contains("address: x"), "{masked}");
        assert_eq!(
            mask_secrets("name: password_policy\n"),
            "name: password_policy\n"
        );
        assert_eq!(
            mask_secrets("- { name: app, password: ${APP_PASSWORD} }\n"),
            "- { name: app, password: \"***\" }\n"
        );
    }

    #[test]
    fn the_line_and_its_references_are_found() {
        let message = "error: line 5 column 3: unclosed bracket";
        assert_eq!(error_line(message), Some(5));
        assert_eq!(error_line("no position"), None);
        let text = "a: 1\nb: { p: ${ONE}, q: ${TWO:-x} }\n";
        assert_eq!(references_on(text, 2), ["${ONE}", "${TWO:-x}"]);
        assert!(references_on(text, 9).is_empty());
    }
}
