//! Replication lag from a heartbeat: rwsplit writes its own clock to a row
//! on the primary every interval and reads the row back on each replica.
//!
//! Both timestamps come from rwsplit's clock, so the servers' clocks do not
//! matter. A replica whose row, read at `now`, shows write `w` lacks the
//! next write `w'` committed by then, at `t(w')`: its lag lies between
//! `now - t(w')` and `now - t(w)`. The midpoint is reported, off by at most half an interval,
//! except when `w'` is the latest write: a healthy replica is in that state
//! for the moment after each write, and the midpoint would report half an
//! interval of lag it does not have, so the lower bound is reported. A
//! replica with the latest write shows no lag.

use std::collections::VecDeque;
use std::time::Duration;

/// How many recent heartbeat writes are remembered.
const REMEMBERED: usize = 256;

/// One heartbeat write (microseconds since the UNIX epoch, rwsplit's
/// clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Write {
    /// The value written to the row (taken before sending the statement).
    value: u64,
    /// When it committed, as well as rwsplit can tell: halfway between
    /// sending the statement and its answer. On a busy machine the two
    /// differ by the statement's whole round trip.
    committed: u64,
}

/// The moment halfway between sending a statement at `sent` and its answer
/// at `answered` (microseconds): the best guess of when the server ran it.
pub fn halfway(sent: u64, answered: u64) -> u64 {
    sent + answered.saturating_sub(sent) / 2
}

/// The heartbeat writes rwsplit made, oldest first.
#[derive(Debug, Default)]
pub struct HeartbeatLog {
    writes: VecDeque<Write>,
}

impl HeartbeatLog {
    /// Records a write of `value`, sent then and answered at `answered`.
    pub fn record(&mut self, value: u64, answered: u64) {
        if self.writes.len() == REMEMBERED {
            self.writes.pop_front();
        }
        let committed = halfway(value, answered);
        self.writes.push_back(Write { value, committed });
    }

    /// When the newest write was sent, if any.
    pub fn latest(&self) -> Option<u64> {
        self.writes.back().map(|w| w.value)
    }

    /// The lag of a replica whose heartbeat row showed `seen` when it was
    /// read, at `now`. Writes committed after `now` are not missing: the
    /// replica could not have had them.
    pub fn lag(&self, seen: u64, now: u64) -> Duration {
        let committed = |value| {
            self.writes
                .iter()
                .find(|w| w.value == value)
                .map_or(value, |w| w.committed)
        };
        let mut missing = self
            .writes
            .iter()
            .filter(|w| w.value > seen && w.committed <= now);
        let micros = match (missing.next(), missing.next()) {
            (None, _) => 0,
            (Some(next), None) => now.saturating_sub(next.committed),
            (Some(next), Some(_)) => now.saturating_sub(committed(seen) / 2 + next.committed / 2),
        };
        Duration::from_micros(micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(writes: &[u64]) -> HeartbeatLog {
        let mut log = HeartbeatLog::default();
        for &w in writes {
            log.record(w, w);
        }
        log
    }

    #[test]
    fn lag_from_the_missing_writes() {
        let log = log(&[1_000_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000]);
        assert_eq!(
            log.lag(3_000_000, 3_200_000),
            Duration::ZERO,
            "has the latest write"
        );
        // Has the write of t=1.0s, lacks the one of t=1.5s: lag between 2.3
        // and 2.8 s at t=3.8s; the midpoint.
        assert_eq!(log.lag(1_000_000, 3_800_000), Duration::from_millis(2_550));
        assert_eq!(
            log.lag(500_000, 3_800_000),
            Duration::from_micros(3_800_000 - 750_000),
            "older than every write remembered"
        );
    }

    #[test]
    fn writes_after_the_read_are_not_missing() {
        let log = log(&[1_000_000, 1_500_000, 2_000_000, 2_500_000]);
        // Read at t=1.6 s (answered and aggregated much later): the replica
        // had the write of t=1.5 s, the newest there was.
        assert_eq!(log.lag(1_500_000, 1_600_000), Duration::ZERO);
        // Had the write of t=1.0 s at t=1.6 s: lacked only the one of 1.5 s.
        assert_eq!(log.lag(1_000_000, 1_600_000), Duration::from_millis(100));
    }

    #[test]
    fn a_replica_three_seconds_behind_is_measured_within_a_quarter_second() {
        let interval = 500_000;
        let writes: Vec<u64> = (0..40).map(|i| i * interval).collect();
        let log = log(&writes);
        for now in (6_000_000..19_000_000).step_by(37_000) {
            // The replica has exactly the writes committed 3 s or more ago.
            let seen = *writes
                .iter()
                .rev()
                .find(|&&w| w + 3_000_000 <= now)
                .unwrap();
            let lag = log.lag(seen, now).as_micros() as i64;
            assert!((lag - 3_000_000).abs() <= 250_000, "at {now}: {lag}");
        }
    }

    #[test]
    fn commit_times_lie_halfway_through_the_round_trip() {
        let mut log = HeartbeatLog::default();
        // Each write took 100 ms to answer (a busy machine).
        for sent in [0u64, 500_000, 1_000_000, 1_500_000] {
            log.record(sent, sent + 100_000);
        }
        // Seen the write sent at 0 (committed ~50 ms), lacks the one sent
        // at 0.5 s (committed ~550 ms): lag at 3.3 s is 3.3 - 0.3 s.
        assert_eq!(log.lag(0, 3_300_000), Duration::from_millis(3_000));
        assert_eq!(log.latest(), Some(1_500_000));
    }

    #[test]
    fn the_log_is_bounded() {
        let log = log(&(0..1000).collect::<Vec<u64>>());
        assert_eq!(log.writes.len(), REMEMBERED);
    }
}
