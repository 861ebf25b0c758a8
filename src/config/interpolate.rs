//! `${VAR}` / `${VAR:-default}` substitution in the text of `proxy.yaml`.
//!
//! Substitution happens on the text before YAML parsing, like `envsubst`, so a
//! reference works for any value type (`port: ${PORT}` as well as strings).
//! Whole-line comments are left alone so that documentation inside the file may
//! mention variables that are not set. `$$` stands for a literal `$`.

use std::fmt;

/// A `${...}` reference that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    /// 1-based line of the reference in the file.
    pub line: usize,
    /// What went wrong.
    pub kind: InterpolationErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationErrorKind {
    /// `${NAME}` with `NAME` not set in the environment and no default.
    Missing(String),
    /// `${` without a closing `}` or with a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    Malformed(String),
}

impl InterpolationError {
    /// What is wrong and how to fix it, without the line number.
    pub fn message(&self) -> String {
        match &self.kind {
            InterpolationErrorKind::Missing(name) => format!(
                "environment variable {name} is not set; set it, or write ${{{name}:-default}} to give a default"
            ),
            InterpolationErrorKind::Malformed(text) => format!(
                "malformed reference `{text}`; expected ${{NAME}} or ${{NAME:-default}} (write $$ for a literal $)"
            ),
        }
    }
}

impl fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message())
    }
}

/// Replaces every `${NAME}` and `${NAME:-default}` in `text` using `lookup`.
///
/// `${NAME:-default}` uses `default` when `NAME` is unset or empty, as in the
/// shell. A reference that cannot be resolved is left as written and reported;
/// every such reference is returned, not just the first, so that the caller
/// can go on checking the rest of the file.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<InterpolationError>) {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        interpolate_line(line, index + 1, &lookup, &mut out, &mut errors);
    }
    (out, errors)
}

fn interpolate_line(
    line: &str,
    number: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
    errors: &mut Vec<InterpolationError>,
) {
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                errors.push(malformed(number, &rest[pos..]));
                out.push_str(&rest[pos..]);
                return;
            };
            match resolve(&body[..end], lookup) {
                Ok(value) => out.push_str(&value),
                Err(kind) => {
                    errors.push(InterpolationError { line: number, kind });
                    out.push_str(&rest[pos..pos + end + 3]);
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
}

fn resolve(
    reference: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolationErrorKind> {
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    if !is_valid_name(name) {
        return Err(InterpolationErrorKind::Malformed(format!(
            "${{{reference}}}"
        )));
    }
    match (lookup(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(InterpolationErrorKind::Missing(name.to_owned())),
    }
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn malformed(line: usize, text: &str) -> InterpolationError {
    InterpolationError {
        line,
        kind: InterpolationErrorKind::Malformed(text.trim_end().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PASSWORD" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("3306".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutions() {
        let cases = [
            ("plain: text\n", "plain: text\n"),
            ("password: ${PASSWORD}\n", "password: s3cret\n"),
            ("password: \"${PASSWORD}\"\n", "password: \"s3cret\"\n"),
            ("port: ${PORT}\n", "port: 3306\n"),
            ("a: ${UNSET:-fallback}\n", "a: fallback\n"),
            ("a: ${EMPTY:-fallback}\n", "a: fallback\n"),
            ("a: ${PASSWORD:-fallback}\n", "a: s3cret\n"),
            ("a: ${UNSET:-}\n", "a: \n"),
            ("a: ${EMPTY}\n", "a: \n"),
            ("a: ${UNSET:-127.0.0.1:3307}\n", "a: 127.0.0.1:3307\n"),
            ("a: $${PASSWORD}\n", "a: ${PASSWORD}\n"),
            ("a: cost $5\n", "a: cost $5\n"),
            ("a: ends with $", "a: ends with $"),
            (
                "  # mentions ${UNSET} in a comment\n",
                "  # mentions ${UNSET} in a comment\n",
            ),
            ("a: ${PORT}-${PASSWORD}", "a: 3306-s3cret"),
        ];
        for (input, expected) in cases {
            let (text, errors) = interpolate(input, env);
            assert_eq!(
                (text.as_str(), errors),
                (expected, vec![]),
                "input: {input:?}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "a: ${ONE}\nb: ok\nc: ${TWO} ${PASSWORD} ${1BAD}\nd: ${OPEN\n";
        let (substituted, errors) = interpolate(text, env);
        assert_eq!(
            substituted, "a: ${ONE}\nb: ok\nc: ${TWO} s3cret ${1BAD}\nd: ${OPEN\n",
            "unresolved references stay as written"
        );
        let kinds: Vec<_> = errors.iter().map(|e| (e.line, e.kind.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (1, InterpolationErrorKind::Missing("ONE".into())),
                (3, InterpolationErrorKind::Missing("TWO".into())),
                (3, InterpolationErrorKind::Malformed("${1BAD}".into())),
                (4, InterpolationErrorKind::Malformed("${OPEN".into())),
            ]
        );
        assert!(
            errors[0]
                .to_string()
                .contains("environment variable ONE is not set")
        );
    }
}
