//! Messages for unknown keys: which keys the section takes, and the likeliest
//! one meant. The key lists come from serde itself, so they cannot drift from
//! the structs in [`super::raw`].

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::raw::*;

/// Explains an unknown key at `path` (such as `backends[0].adress`).
pub(super) fn unknown_key_message(path: &str) -> String {
    let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
    let Some(known) = keys_of(parent) else {
        return "unknown key".to_owned();
    };
    let suggestion = known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, k)| format!("did you mean `{k}`? "))
        .unwrap_or_default();
    format!(
        "unknown key `{key}`; {suggestion}expected one of: {}",
        known.join(", ")
    )
}

/// The keys a section at `parent` (a path with list indices) takes.
fn keys_of(parent: &str) -> Option<&'static [&'static str]> {
    let shape: String = strip_indices(parent);
    Some(match shape.as_str() {
        "" => fields::<RawConfig>(),
        "listen" => fields::<RawListen>(),
        "listen.tls" => fields::<RawListenTls>(),
        "admin" => fields::<RawAdmin>(),
        "users[]" => fields::<RawUser>(),
        "backends[]" => fields::<RawBackend>(),
        "backends[].tls" => fields::<RawBackendTls>(),
        "monitor" => fields::<RawMonitor>(),
        "routing" => fields::<RawRouting>(),
        "failover" => fields::<RawFailover>(),
        _ => return None,
    })
}

fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            c if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

/// The field names serde's derive gives a struct, read by asking it to
/// deserialize from a deserializer that only records them.
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut found: &'static [&'static str] = &[];
    // The deserializer always fails after recording the fields; the error is
    // the expected way out, not a problem.
    let _ = T::deserialize(FieldRecorder { found: &mut found });
    found
}

struct FieldRecorder<'a> {
    found: &'a mut &'static [&'static str],
}

#[derive(Debug)]
struct Recorded;

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fields recorded")
    }
}

impl std::error::Error for Recorded {}

impl de::Error for Recorded {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Recorded
    }
}

impl<'de> de::Deserializer<'de> for FieldRecorder<'_> {
    type Error = Recorded;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Recorded> {
        *self.found = fields;
        Err(Recorded)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Recorded> {
        Err(Recorded)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Levenshtein distance, for "did you mean" on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_knows_its_keys() {
        assert_eq!(
            keys_of(""),
            Some(
                &[
                    "listen", "admin", "users", "backends", "monitor", "routing", "failover"
                ][..]
            )
        );
        for section in [
            "listen",
            "listen.tls",
            "admin",
            "users[3]",
            "backends[0]",
            "backends[12].tls",
            "monitor",
            "routing",
            "failover",
        ] {
            assert!(keys_of(section).is_some_and(|k| !k.is_empty()), "{section}");
        }
        assert_eq!(keys_of("nowhere"), None);
    }

    #[test]
    fn messages_suggest_the_nearest_key() {
        assert_eq!(
            unknown_key_message("backends[1].adress"),
            "unknown key `adress`; did you mean `address`? expected one of: name, address, role, weight, backup, tls"
        );
        assert!(
            unknown_key_message("zzz").starts_with("unknown key `zzz`; expected one of: listen")
        );
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("adress", "address"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
