//! The leaf parsers of the configuration: pure functions from a scalar's
//! text to its typed value, or to a message saying what was expected.

use std::net::SocketAddr;
use std::time::Duration;

/// Largest packet the MySQL protocol allows (`max_allowed_packet` upper bound).
const MAX_PACKET_LIMIT: usize = 1 << 30;

pub(super) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an IP address and port; expected something like 127.0.0.1:6033 or [::1]:6033"))
}

pub(super) fn host_port(s: &str) -> Result<(), String> {
    let expected = "expected host:port such as 127.0.0.1:3306 or db1:3306";
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}` has no port; {expected}"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let valid_host = !host.is_empty()
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if !valid_host {
        return Err(format!(
            "`{host}` is not a valid host name or IP address; {expected}"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "`{port}` is not a port number (1-65535); {expected}"
        )),
    }
}

pub(super) fn boolean(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{s}` is not a boolean; expected true or false")),
    }
}

pub(super) fn positive<T: std::str::FromStr + PartialOrd + Default>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!("`{s}` is not a whole number of at least 1")),
    }
}

const EXPECTED_DURATION: &str = "expected a duration with a unit, such as 500ms, 2s or 1m";

pub(super) fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s) {
        Ok(d) if d.is_zero() => Err(format!(
            "`{s}` is zero; {EXPECTED_DURATION}, greater than zero"
        )),
        other => other,
    }
}

/// A duration, zero included (`0s`).
pub(super) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|_| format!("`{s}` is not a duration; {EXPECTED_DURATION}"))
}

/// Sizes as MySQL writes them: bytes, or a number with K/M/G (KiB/MiB/GiB)
/// suffix; here from 1KiB to 1GiB.
pub(super) fn packet_size(s: &str) -> Result<usize, String> {
    size_between(s, 1024, MAX_PACKET_LIMIT, "from 1KiB to 1GiB")
}

/// A size, as [`packet_size`], of memory: from 1MiB to 1TiB.
pub(super) fn memory_size(s: &str) -> Result<usize, String> {
    size_between(s, 1 << 20, 1 << 40, "from 1MiB to 1TiB")
}

fn size_between(s: &str, low: usize, high: usize, range: &str) -> Result<usize, String> {
    let expected = format!("expected a size such as 16MiB, 64M or 1048576 (bytes), {range}");
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => return Err(format!("`{s}` has an unknown unit; {expected}")),
    };
    match number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_shl(shift).filter(|v| v >> shift == n))
    {
        Some(bytes) if (low..=high).contains(&bytes) => Ok(bytes),
        _ => Err(format!("`{s}` is out of range; {expected}")),
    }
}

pub(super) fn one_of<T: Copy>(s: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            format!("`{s}` is not one of: {}", names.join(", "))
        })
}

pub(super) fn qualified_table(s: &str) -> Result<String, String> {
    let identifier =
        |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match s.split_once('.') {
        Some((schema, table)) if identifier(schema) && identifier(table) => Ok(s.to_owned()),
        _ => Err(format!(
            "`{s}` is not schema.table; expected something like rwsplit.heartbeat"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(positive_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(positive_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(positive_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(
            positive_duration("1s 500ms"),
            Ok(Duration::from_millis(1500))
        );
        for bad in ["0s", "5", "fast", "-1s", ""] {
            assert!(positive_duration(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(duration("0s"), Ok(Duration::ZERO), "where zero means off");
        assert!(duration("5").is_err());
    }

    #[test]
    fn sizes() {
        let cases = [
            ("1048576", Some(1 << 20)),
            ("16MiB", Some(16 << 20)),
            ("64M", Some(64 << 20)),
            ("1G", Some(1 << 30)),
            ("1KiB", Some(1024)),
            ("2G", None),
            ("1000", None),
            ("16 MB", None),
            ("MiB", None),
            ("99999999999999999999G", None),
        ];
        for (input, expected) in cases {
            assert_eq!(packet_size(input).ok(), expected, "{input}");
        }
        assert_eq!(memory_size("2G"), Ok(2 << 30));
        assert_eq!(memory_size("1T"), Ok(1 << 40));
        assert!(memory_size("512KiB").is_err());
    }

    #[test]
    fn host_ports() {
        for good in [
            "127.0.0.1:3306",
            "db1:3306",
            "my-db.example.com:1",
            "[::1]:3306",
        ] {
            assert_eq!(host_port(good), Ok(()), "{good}");
        }
        for bad in [
            "127.0.0.1",
            "db1:",
            "db1:0",
            "db1:70000",
            ":3306",
            "db 1:3306",
            "a_b:3306",
        ] {
            assert!(host_port(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(boolean("true"), Ok(true));
        assert!(boolean("yes").is_err());
        assert_eq!(positive::<u32>("3"), Ok(3));
        assert!(positive::<u32>("0").is_err());
        assert!(positive::<u32>("-1").is_err());
        assert_eq!(
            qualified_table("rwsplit.heartbeat").as_deref(),
            Ok("rwsplit.heartbeat")
        );
        assert!(qualified_table("heartbeat").is_err());
        assert!(qualified_table("a.b;drop").is_err());
        assert!(socket_addr("localhost:6033").is_err());
        assert_eq!(one_of("b", &[("a", 1), ("b", 2)]), Ok(2));
        assert_eq!(
            one_of("c", &[("a", 1), ("b", 2)]),
            Err("`c` is not one of: a, b".into())
        );
    }
}
