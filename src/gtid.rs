//! GTIDs in both dialects, server positions, and whether a position covers
//! a session's write.
//!
//! - **MariaDB**: a transaction is `domain-server-sequence`; a position
//!   (`gtid_current_pos`) is the last GTID applied in each domain. With
//!   `gtid_strict_mode` sequence numbers only grow within a domain, so a
//!   position covers a GTID when its entry for that domain has at least
//!   that sequence number.
//! - **MySQL**: a GTID set is `uuid:interval[:interval…]` per source,
//!   comma-separated (8.3+ adds tags: `uuid:tag:interval`); a position is
//!   the set of every transaction applied (`gtid_executed`), and a write is
//!   the set its statement committed (`session_track_gtids=OWN_GTID`). A
//!   position covers a write when it contains every transaction of it.

use std::fmt;
use std::time::Duration;

/// One MariaDB transaction: `domain-server-sequence`.
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

/// A MySQL GTID set, kept normalized: per source (`uuid` or `uuid:tag`,
/// lower case) sorted, merged intervals of transaction numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet(Vec<(String, Vec<(u64, u64)>)>);

impl GtidSet {
    /// Parses `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,…`, as
    /// `gtid_executed` and the GTID tracker write it (whitespace and line
    /// breaks allowed; empty text is the empty set). `None` when any part
    /// is not a GTID set.
    pub fn parse(text: &str) -> Option<GtidSet> {
        let mut sources: Vec<(String, Vec<(u64, u64)>)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut fields = part.split(':').map(str::trim);
            let uuid = fields.next()?.to_ascii_lowercase();
            if uuid.len() != 36 || !uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return None;
            }
            // Intervals belong to the uuid, or to `uuid:tag` after a tag.
            let mut source = uuid.clone();
            let mut intervals = Vec::new();
            for field in fields {
                if field.starts_with(|c: char| c.is_ascii_digit()) {
                    intervals.push(interval(field)?);
                    continue;
                }
                if !is_tag(field) || (source != uuid && intervals.is_empty()) {
                    return None;
                }
                add(&mut sources, source, std::mem::take(&mut intervals));
                source = format!("{uuid}:{}", field.to_ascii_lowercase());
            }
            if intervals.is_empty() {
                return None;
            }
            add(&mut sources, source, intervals);
        }
        for (_, intervals) in &mut sources {
            *intervals = merged(std::mem::take(intervals));
        }
        sources.sort();
        Some(GtidSet(sources))
    }

    /// Whether every transaction of `other` is in this set.
    pub fn contains(&self, other: &GtidSet) -> bool {
        other.0.iter().all(|(source, wanted)| {
            let have = self.0.iter().find(|(s, _)| s == source);
            have.is_some_and(|(_, have)| {
                wanted
                    .iter()
                    .all(|&(a, b)| have.iter().any(|&(x, y)| x <= a && b <= y))
            })
        })
    }
}

/// Adds `intervals` of `source` to `sources`.
fn add(sources: &mut Vec<(String, Vec<(u64, u64)>)>, source: String, intervals: Vec<(u64, u64)>) {
    if intervals.is_empty() {
        return;
    }
    match sources.iter_mut().find(|(s, _)| *s == source) {
        Some((_, known)) => known.extend(intervals),
        None => sources.push((source, intervals)),
    }
}

/// `7` or `1-5`, with start ≥ 1 and start ≤ end.
fn interval(text: &str) -> Option<(u64, u64)> {
    let (start, end) = match text.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let n = text.parse().ok()?;
            (n, n)
        }
    };
    (1 <= start && start <= end).then_some((start, end))
}

/// A MySQL 8.3 GTID tag: a letter or `_`, then up to 31 letters, digits or `_`.
fn is_tag(text: &str) -> bool {
    text.len() <= 32
        && text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Sorted intervals with overlapping and adjacent ones joined.
fn merged(mut intervals: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    intervals.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for (start, end) in intervals {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (source, intervals)) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { "" } else { "," })?;
            f.write_str(source)?;
            for &(start, end) in intervals {
                match start == end {
                    true => write!(f, ":{start}")?,
                    false => write!(f, ":{start}-{end}")?,
                }
            }
        }
        Ok(())
    }
}

/// What a session's write committed, as its server names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// MariaDB's `last_gtid` (one GTID), or a primary's position (the
    /// last GTID of each domain): everything up to each.
    MariaDb(Vec<Gtid>),
    /// The GTID set MySQL reported for the statement.
    MySql(GtidSet),
}

impl Committed {
    /// Parses MariaDB's `0-1-42` (or a position, `0-1-42,1-2-7`) or a
    /// MySQL GTID set (told apart by the `:` only MySQL sets have). `None`
    /// for empty text: nothing was written to the binary log.
    pub fn parse(text: &str) -> Option<Committed> {
        if text.contains(':') {
            GtidSet::parse(text)
                .filter(|set| *set != GtidSet::default())
                .map(Committed::MySql)
        } else {
            match GtidPosition::parse(text)? {
                GtidPosition::MariaDb(gtids) if !gtids.is_empty() => {
                    Some(Committed::MariaDb(gtids))
                }
                _ => None,
            }
        }
    }

    /// The query that waits on a replica until it applied this write, up
    /// to `timeout`; it answers `0` once applied (MariaDB's
    /// `MASTER_GTID_WAIT`, MySQL's `WAIT_FOR_EXECUTED_GTID_SET`).
    pub fn wait_query(&self, timeout: Duration) -> String {
        let seconds = timeout.as_secs_f64();
        match self {
            Committed::MariaDb(_) => format!("SELECT MASTER_GTID_WAIT('{self}', {seconds:.3})"),
            Committed::MySql(set) => {
                format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{set}', {seconds:.3})")
            }
        }
    }
}

impl fmt::Display for Committed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Committed::MariaDb(gtids) => GtidPosition::MariaDb(gtids.clone()).fmt(f),
            Committed::MySql(set) => set.fmt(f),
        }
    }
}

/// A server's position: what it has applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidPosition {
    /// `gtid_current_pos`: the last GTID applied in each domain.
    MariaDb(Vec<Gtid>),
    /// `gtid_executed`.
    MySql(GtidSet),
}

impl Default for GtidPosition {
    fn default() -> Self {
        GtidPosition::MariaDb(Vec::new())
    }
}

impl GtidPosition {
    /// Parses `0-1-42,1-2-7` (MariaDB) or a MySQL GTID set, told apart by
    /// the `:` only MySQL sets have; empty text is the empty position.
    /// `None` when any part does not parse.
    pub fn parse(text: &str) -> Option<GtidPosition> {
        let text = text.trim();
        if text.contains(':') {
            return GtidSet::parse(text).map(GtidPosition::MySql);
        }
        if text.is_empty() {
            return Some(GtidPosition::default());
        }
        text.split(',')
            .map(Gtid::parse)
            .collect::<Option<Vec<_>>>()
            .map(GtidPosition::MariaDb)
    }

    /// Whether the write `committed` has been applied at this position (a
    /// write of the other dialect never is).
    pub fn covers(&self, committed: &Committed) -> bool {
        match (self, committed) {
            (GtidPosition::MariaDb(position), Committed::MariaDb(gtids)) => {
                gtids.iter().all(|gtid| {
                    position
                        .iter()
                        .any(|g| g.domain == gtid.domain && g.sequence >= gtid.sequence)
                })
            }
            (GtidPosition::MySql(executed), Committed::MySql(set)) => executed.contains(set),
            _ => false,
        }
    }

    /// Whether every transaction applied at `other` is applied here too:
    /// in MariaDB, every domain of `other` is here with at least its
    /// sequence number (as `covers`, domain by domain); in MySQL, the set
    /// contains `other`'s. Positions of two dialects never include each
    /// other, but the empty position is included everywhere.
    pub fn includes(&self, other: &GtidPosition) -> bool {
        match (self, other) {
            (_, GtidPosition::MariaDb(theirs)) if theirs.is_empty() => true,
            (GtidPosition::MariaDb(_), GtidPosition::MariaDb(theirs)) => {
                self.covers(&Committed::MariaDb(theirs.clone()))
            }
            (GtidPosition::MySql(ours), GtidPosition::MySql(theirs)) => ours.contains(theirs),
            _ => false,
        }
    }

    /// The transactions of `logged` (a server's binary log,
    /// `gtid_binlog_pos`) that a server whose own position is `self`
    /// (`gtid_current_pos`) and whose replication position is `received`
    /// (`gtid_slave_pos`: what it applied from its sources) may lack; none
    /// when it certainly has them all. MariaDB numbers the transactions of
    /// a domain across servers, so a larger number written by another
    /// server says nothing: this server has `logged`'s last transaction of
    /// a domain only when that is its own stream at least as far (same
    /// server id), or a stream it replicated at least as far. A server
    /// that wrote while another did has diverged from it, whatever the
    /// numbers. For MySQL, the GTID sets say it exactly. Each lacking
    /// range is `(domain-server, first, last)` of `logged`'s server.
    pub fn lacks(&self, received: &GtidPosition, logged: &GtidPosition) -> Vec<Lacking> {
        match (self, received, logged) {
            (
                GtidPosition::MariaDb(ours),
                GtidPosition::MariaDb(replicated),
                GtidPosition::MariaDb(theirs),
            ) => theirs
                .iter()
                .filter_map(|gtid| {
                    let reached = [ours, replicated]
                        .into_iter()
                        .flatten()
                        .filter(|g| g.domain == gtid.domain && g.server == gtid.server)
                        .map(|g| g.sequence)
                        .max()
                        .unwrap_or(0);
                    (reached < gtid.sequence).then(|| Lacking {
                        stream: format!("{}-{}", gtid.domain, gtid.server),
                        first: reached + 1,
                        last: gtid.sequence,
                    })
                })
                .collect(),
            (GtidPosition::MySql(ours), _, GtidPosition::MySql(theirs))
                if ours.contains(theirs) =>
            {
                Vec::new()
            }
            _ if logged.is_empty() => Vec::new(),
            _ => vec![Lacking {
                stream: logged.to_string(),
                first: 0,
                last: 0,
            }],
        }
    }

    /// Whether it names no transaction.
    pub fn is_empty(&self) -> bool {
        match self {
            GtidPosition::MariaDb(gtids) => gtids.is_empty(),
            GtidPosition::MySql(set) => *set == GtidSet::default(),
        }
    }
}

/// Transactions one server may lack of another's: in MariaDB, sequence
/// numbers `first..=last` of one domain-server stream (at most; the
/// numbers of a domain are shared by its servers); in MySQL, a GTID set
/// (`first` and `last` 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lacking {
    pub stream: String,
    pub first: u64,
    pub last: u64,
}

impl Lacking {
    /// How many transactions the range holds; `None` for a GTID set.
    pub fn count(&self) -> Option<u64> {
        match (self.first, self.last) {
            (0, 0) => None,
            (first, last) => Some(last + 1 - first),
        }
    }
}

impl fmt::Display for Lacking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first, self.last) {
            (0, 0) => f.write_str(&self.stream),
            (first, last) if first == last => write!(f, "{}-{first}", self.stream),
            (first, last) => write!(f, "{}-{first} to {}-{last}", self.stream, self.stream),
        }
    }
}

impl fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidPosition::MariaDb(gtids) => {
                let parts: Vec<String> = gtids.iter().map(Gtid::to_string).collect();
                f.write_str(&parts.join(","))
            }
            GtidPosition::MySql(set) => set.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4E11FA47-71CA-11E1-9E33-C80AA9429563";

    fn committed(text: &str) -> Committed {
        Committed::parse(text).unwrap()
    }

    #[test]
    fn mariadb_parsing() {
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
        assert_eq!(Committed::parse(""), None, "empty @@last_gtid: no write");
    }

    #[test]
    fn mariadb_coverage_is_per_domain() {
        let position = GtidPosition::parse("0-1-42,1-2-7").unwrap();
        assert!(position.covers(&committed("0-1-42")));
        assert!(position.covers(&committed("0-1-41")));
        assert!(
            position.covers(&committed("0-3-40")),
            "the server id does not matter within a domain"
        );
        assert!(!position.covers(&committed("0-1-43")));
        assert!(position.covers(&committed("1-2-7")));
        assert!(
            !position.covers(&committed("2-1-1")),
            "an unknown domain is not covered"
        );
        assert!(!GtidPosition::default().covers(&committed("0-1-1")));
        // A primary's whole position, as global read-your-writes waits for.
        let primary = committed("0-1-42,1-2-8");
        assert!(!position.covers(&primary), "domain 1 is behind");
        assert!(
            GtidPosition::parse("0-1-42,1-2-8")
                .unwrap()
                .covers(&primary)
        );
        assert_eq!(
            primary.wait_query(Duration::from_secs(2)),
            "SELECT MASTER_GTID_WAIT('0-1-42,1-2-8', 2.000)"
        );
    }

    #[test]
    fn positions_include_positions() {
        let position = |text: &str| GtidPosition::parse(text).unwrap();
        let ahead = position("0-2-50,1-1-7");
        assert!(ahead.includes(&position("0-1-42,1-1-7")));
        assert!(ahead.includes(&position("")));
        assert!(ahead.includes(&ahead));
        assert!(!position("0-1-42,1-1-7").includes(&ahead));
        assert!(
            !position("0-1-60").includes(&ahead),
            "ahead in one domain, missing another"
        );
        let mysql = position(&format!("{A}:1-100"));
        assert!(mysql.includes(&position(&format!("{A}:5-9"))));
        assert!(!mysql.includes(&position(&format!("{A}:101"))));
        assert!(!mysql.includes(&position("0-1-1")));
    }

    /// db1 (server 1) was the primary up to 0-1-5311 but db2, promoted
    /// when db1 failed, had applied only up to 0-1-5301; db2 then wrote on,
    /// up to 0-2-27690. db1's last ten transactions exist nowhere else,
    /// although 27690 > 5311.
    #[test]
    fn a_larger_number_from_another_server_is_not_inclusion() {
        let position = |text: &str| GtidPosition::parse(text).unwrap();
        let new_applied = position("0-2-27690");
        let new_received = position("0-1-5301");
        let old_logged = position("0-1-5311");
        assert!(
            new_applied.includes(&old_logged),
            "by number alone it would be"
        );
        let lacking = new_applied.lacks(&new_received, &old_logged);
        assert_eq!(
            lacking,
            [Lacking {
                stream: "0-1".into(),
                first: 5302,
                last: 5311
            }]
        );
        assert_eq!(lacking[0].to_string(), "0-1-5302 to 0-1-5311");
        // It had received all of db1's: nothing lacks.
        assert!(
            new_applied
                .lacks(&position("0-1-5311"), &old_logged)
                .is_empty()
        );
        // A server's own stream, further on.
        assert!(
            position("0-1-5400")
                .lacks(&position(""), &old_logged)
                .is_empty()
        );
        // Another domain it never saw.
        assert_eq!(
            position("0-1-5400")
                .lacks(&position(""), &position("0-1-5311,1-1-3"))
                .len(),
            1
        );
        assert!(
            position("0-2-9")
                .lacks(&position("0-2-9"), &position(""))
                .is_empty()
        );
        // MySQL's sets say it exactly.
        let mysql = |text: String| GtidPosition::parse(&text).unwrap();
        assert!(
            mysql(format!("{A}:1-100"))
                .lacks(&position(""), &mysql(format!("{A}:1-90")))
                .is_empty()
        );
        assert_eq!(
            mysql(format!("{A}:1-100"))
                .lacks(&position(""), &mysql(format!("{A}:1-90,{B}:1")))
                .len(),
            1
        );
    }

    #[test]
    fn mysql_sets_parse_and_normalize() {
        // As gtid_executed prints it: upper case, a line break after the comma.
        let set = GtidSet::parse(&format!("{B}:1-5:7,\n{A}:1-3:4:9-9")).unwrap();
        assert_eq!(
            set.to_string(),
            format!("{A}:1-4:9,{}:1-5:7", B.to_ascii_lowercase())
        );
        let tagged = GtidSet::parse(&format!("{A}:1-2:Batch_7:5")).unwrap();
        assert_eq!(tagged.to_string(), format!("{A}:1-2,{A}:batch_7:5"));
        assert_eq!(GtidSet::parse(""), Some(GtidSet::default()));
        for bad in [
            "abc:1",
            A,
            &format!("{A}:0"),
            &format!("{A}:5-3"),
            &format!("{A}:1-x"),
            &format!("{A}:9tag:1"),
            &format!("{A}:tag"),
            &format!("{A}:one:two:1"),
            &format!("{A}:1,junk"),
        ] {
            assert_eq!(GtidSet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn mysql_coverage_needs_every_transaction() {
        let position = GtidPosition::parse(&format!("{A}:1-100:102-200,{B}:1-5")).unwrap();
        assert!(position.covers(&committed(&format!("{A}:100"))));
        assert!(position.covers(&committed(&format!("{A}:150-160,{B}:5"))));
        assert!(
            !position.covers(&committed(&format!("{A}:101"))),
            "a gap is not covered"
        );
        assert!(!position.covers(&committed(&format!("{A}:99-102"))));
        assert!(!position.covers(&committed(&format!("{A}:3,{B}:6"))));
        assert!(
            !position.covers(&committed(&format!("{A}:tag:1"))),
            "a tagged GTID belongs to a source of its own"
        );
        assert!(
            !GtidPosition::parse("")
                .unwrap()
                .covers(&committed(&format!("{A}:1")))
        );
        assert_eq!(Committed::parse(&format!("{A}:")), None);
    }

    #[test]
    fn dialects_never_cover_each_other() {
        let mariadb = GtidPosition::parse("0-1-42").unwrap();
        let mysql = GtidPosition::parse(&format!("{A}:1-100")).unwrap();
        assert!(!mariadb.covers(&committed(&format!("{A}:1"))));
        assert!(!mysql.covers(&committed("0-1-1")));
    }

    #[test]
    fn wait_queries() {
        let timeout = Duration::from_millis(1500);
        assert_eq!(
            committed("0-1-42").wait_query(timeout),
            "SELECT MASTER_GTID_WAIT('0-1-42', 1.500)"
        );
        assert_eq!(
            committed(&format!("{A}:7")).wait_query(timeout),
            format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{A}:7', 1.500)")
        );
    }
}
