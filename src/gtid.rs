//! GTIDs and GTID positions, MariaDB style (`domain-server-sequence`), and
//! whether a server's position covers a given transaction.
//!
//! With `gtid_strict_mode` sequence numbers only grow within a domain, so a
//! position covers a GTID when its entry for the GTID's domain has at least
//! that sequence number.

use std::fmt;

/// One transaction: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub sequence: u64,
}

impl Gtid {
    /// Parses `0-1-42`.
    pub fn parse(text: &str) -> Option<Gtid> {
        let mut parts = text.trim().splitn(3, '-');
        Some(Gtid {
            domain: parts.next()?.parse().ok()?,
            server: parts.next()?.parse().ok()?,
            sequence: parts.next()?.parse().ok()?,
        })
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.sequence)
    }
}

/// A server's position: the last GTID applied in each domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidPosition(Vec<Gtid>);

impl GtidPosition {
    /// Parses `0-1-42,1-2-7` (empty text is the empty position). `None`
    /// when any part is not a GTID.
    pub fn parse(text: &str) -> Option<GtidPosition> {
        let text = text.trim();
        if text.is_empty() {
            return Some(GtidPosition::default());
        }
        text.split(',')
            .map(Gtid::parse)
            .collect::<Option<Vec<_>>>()
            .map(GtidPosition)
    }

    /// Whether the transaction `gtid` has been applied at this position.
    pub fn covers(&self, gtid: &Gtid) -> bool {
        self.0
            .iter()
            .any(|g| g.domain == gtid.domain && g.sequence >= gtid.sequence)
    }
}

impl fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Gtid::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(
            Gtid::parse("0-1-42"),
            Some(Gtid {
                domain: 0,
                server: 1,
                sequence: 42
            })
        );
        assert_eq!(
            Gtid::parse(" 2-100-18446744073709551615 ").map(|g| g.sequence),
            Some(u64::MAX)
        );
        for bad in ["", "0-1", "a-b-c", "0-1-2-3", "-1-2-3"] {
            assert_eq!(Gtid::parse(bad), None, "{bad}");
        }
        let position = GtidPosition::parse("0-1-42,1-2-7").unwrap();
        assert_eq!(position.to_string(), "0-1-42,1-2-7");
        assert_eq!(GtidPosition::parse(""), Some(GtidPosition::default()));
        assert_eq!(GtidPosition::parse("0-1-42,junk"), None);
    }

    #[test]
    fn coverage_is_per_domain() {
        let position = GtidPosition::parse("0-1-42,1-2-7").unwrap();
        let gtid = |text| Gtid::parse(text).unwrap();
        assert!(position.covers(&gtid("0-1-42")));
        assert!(position.covers(&gtid("0-1-41")));
        assert!(
            position.covers(&gtid("0-3-40")),
            "the server id does not matter within a domain"
        );
        assert!(!position.covers(&gtid("0-1-43")));
        assert!(position.covers(&gtid("1-2-7")));
        assert!(
            !position.covers(&gtid("2-1-1")),
            "an unknown domain is not covered"
        );
        assert!(!GtidPosition::default().covers(&gtid("0-1-1")));
    }
}
