//! Broken replication, as the monitor judges it: a replica whose threads
//! have stopped, and a replica that has transactions its primary does not
//! (the primary's binary log was reset or restored from an older copy, or
//! the replica was written to directly). Routing needs neither — a replica
//! that does not follow its primary leaves read rotation by its lag — but
//! a person does: both raise an alarm in `/status`, `/metrics` and the log.

use std::time::Instant;

use super::check::Replication;
use crate::gtid::GtidPosition;

/// A server's GTID position and when it was read: after `from`, before
/// `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub position: GtidPosition,
    pub from: Instant,
    pub to: Instant,
}

/// Why a replica does not replicate, if it does not.
pub fn stopped(replication: Option<&Replication>) -> Option<String> {
    let Some(replication) = replication else {
        return Some("it is not set up to replicate (SHOW SLAVE STATUS is empty)".to_owned());
    };
    let threads = match (replication.io_running, replication.sql_running) {
        (true, true) => return None,
        (false, true) => "its IO thread has stopped",
        (true, false) => "its SQL thread has stopped",
        (false, false) => "its replication threads have stopped",
    };
    let source = &replication.source;
    Some(match replication.last_error.as_str() {
        "" => format!("{threads} (replicating from {source})"),
        error => format!("{threads} (replicating from {source}): {error}"),
    })
}

/// The position of the newest of a replica's `readings` (oldest first)
/// that its `primary` should include and does not. A reading qualifies
/// when it was taken before the primary's began: the primary had by then
/// committed every transaction the replica had received from it, so one
/// it lacks never came from it. Readings taken while the primary's was
/// being taken prove nothing either way.
pub fn ahead<'a>(primary: &Reading, readings: &'a [Reading]) -> Option<&'a GtidPosition> {
    readings
        .iter()
        .rev()
        .find(|reading| reading.to < primary.from)
        .map(|reading| &reading.position)
        .filter(|position| !primary.position.includes(position))
}

/// Whether a server's position went backwards between two readings: it
/// lacks a transaction it had (its binary log was reset, or it was
/// restored from an older copy).
pub fn went_backwards(before: &Reading, after: &Reading) -> bool {
    !after.position.includes(&before.position)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn running(io: bool, sql: bool, error: &str) -> Replication {
        Replication {
            io_running: io,
            sql_running: sql,
            seconds_behind: None,
            source: "127.0.0.1:3306".into(),
            last_error: error.into(),
        }
    }

    #[test]
    fn a_replica_replicates_only_with_both_threads_running() {
        assert_eq!(stopped(Some(&running(true, true, ""))), None);
        assert_eq!(
            stopped(Some(&running(false, true, "Got fatal error 1236"))).as_deref(),
            Some(
                "its IO thread has stopped (replicating from 127.0.0.1:3306): Got fatal error 1236"
            )
        );
        assert_eq!(
            stopped(Some(&running(false, false, ""))).as_deref(),
            Some("its replication threads have stopped (replicating from 127.0.0.1:3306)")
        );
        assert!(stopped(None).unwrap().contains("not set up to replicate"));
    }

    /// Readings at whole seconds after `start`.
    fn reading(start: Instant, position: &str, from: u64, to: u64) -> Reading {
        Reading {
            position: GtidPosition::parse(position).unwrap(),
            from: start + Duration::from_secs(from),
            to: start + Duration::from_secs(to),
        }
    }

    #[test]
    fn a_replica_is_ahead_only_of_a_primary_read_after_it() {
        let t = Instant::now();
        let primary = reading(t, "0-1-7", 10, 11);
        // Read before the primary was: the primary should have 0-1-500.
        let behind = [reading(t, "0-1-500", 8, 9)];
        assert_eq!(
            ahead(&primary, &behind).map(ToString::to_string).as_deref(),
            Some("0-1-500")
        );
        // Read while the primary was: it may have committed 0-1-8 since.
        assert_eq!(ahead(&primary, &[reading(t, "0-1-8", 10, 11)]), None);
        // The newest reading that qualifies is the one judged.
        let caught_up = [reading(t, "0-1-500", 6, 7), reading(t, "0-1-6", 8, 9)];
        assert_eq!(ahead(&primary, &caught_up), None);
        assert_eq!(ahead(&primary, &[]), None, "nothing to judge");
        let other_domain = [reading(t, "0-1-7,1-3-2", 8, 9)];
        assert!(
            ahead(&primary, &other_domain).is_some(),
            "a domain it lacks"
        );
    }

    #[test]
    fn a_reset_binary_log_goes_backwards() {
        let t = Instant::now();
        let before = reading(t, "0-1-20468", 0, 1);
        assert!(went_backwards(&before, &reading(t, "0-1-3", 2, 3)));
        assert!(went_backwards(&before, &reading(t, "", 2, 3)));
        assert!(!went_backwards(&before, &reading(t, "0-1-20470", 2, 3)));
        assert!(
            !went_backwards(&before, &reading(t, "0-2-20469", 2, 3)),
            "a new primary numbers on"
        );
    }
}
