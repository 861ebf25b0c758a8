//! Read-your-writes (`routing.read_your_writes`): with `session`, after a
//! session writes, its reads go only to replicas that have applied the
//! write; with `global`, every read waits for every write any session had
//! acknowledged when it started.
//!
//! The write's GTID comes from the OK packet when the server reports it
//! (MariaDB tracking `last_gtid` in `session_track_system_variables`,
//! MySQL with `session_track_gtids=OWN_GTID`) and the client negotiated
//! CLIENT_SESSION_TRACK; otherwise the first read after the write asks the
//! primary connection: `SELECT @@last_gtid` on MariaDB, `SELECT
//! @@global.gtid_executed` on MySQL (everything the primary committed, the
//! write included). A read then goes to a replica whose position, as the
//! monitor last saw it, covers the write; failing that, rwsplit waits on
//! the replica routing chose (or a less lagging one) (`MASTER_GTID_WAIT`, `WAIT_FOR_EXECUTED_GTID_SET`)
//! up to `routing.causal_read_timeout`; failing that, the read runs on the
//! primary.
//!
//! `global` counts the writes sessions acknowledge ([`WriteClock`]). A
//! read that starts after the count moved asks the primary for its whole
//! position (`@@gtid_binlog_pos`, MySQL's `@@global.gtid_executed`), which
//! covers every write counted before it asked; reads that start before the
//! next write share that answer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::debug;

use super::Session;
use crate::backend::conn::BackendError;
use crate::config::ReadYourWrites;
use crate::gtid::Committed;
use crate::routing::{Target, freshest_replica};
use crate::topology::Lag;

/// Replicas whose measured lags differ by less than this are as far
/// behind as each other (the heartbeat's resolution is a few
/// milliseconds).
const SAME_LAG: std::time::Duration = std::time::Duration::from_millis(10);

/// The session's last write, as far as reads must respect it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LastWrite {
    /// Nothing to wait for.
    #[default]
    None,
    /// A write ran; its GTID is still to be asked for.
    Unknown,
    /// What the session's last write committed (with `global`: the
    /// primary's position after `clock` writes), and the replicas (bit set)
    /// known to have applied it.
    Known {
        gtid: Committed,
        applied: u64,
        clock: u64,
    },
}

/// The writes every session of this rwsplit has acknowledged, for
/// `read_your_writes: global`.
#[derive(Debug, Default)]
pub struct WriteClock {
    /// Writes acknowledged to clients so far.
    acknowledged: AtomicU64,
    /// The primary's position read once `.0` writes had been acknowledged:
    /// it covers them all.
    known: Mutex<Option<(u64, Committed)>>,
}

impl WriteClock {
    /// Counts a write: called between the server's answer and the client's
    /// (`relay::Relay::acknowledges`).
    pub(super) fn tick(&self) {
        self.acknowledged.fetch_add(1, Ordering::Release);
    }

    fn now(&self) -> u64 {
        self.acknowledged.load(Ordering::Acquire)
    }

    /// A position that covers the first `count` writes, if one was learnt.
    fn position_at(&self, count: u64) -> Option<Committed> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .as_ref()
            .filter(|(at, _)| *at >= count)
            .map(|(_, position)| position.clone())
    }

    /// Keeps `position`, read after `count` writes, unless a later one is kept.
    fn learn(&self, count: u64, position: &Committed) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.as_ref().is_none_or(|(at, _)| *at < count) {
            *known = Some((count, position.clone()));
        }
    }
}

impl Session {
    fn causal_reads(&self) -> bool {
        self.proxy.config.routing.read_your_writes != ReadYourWrites::Off
    }

    /// Whether a relay to `backend` ticks the write clock (the primary,
    /// with `global`).
    pub(super) fn acknowledges(&self, backend: usize) -> bool {
        self.global_reads() && Some(backend) == self.proxy.primary()
    }

    fn global_reads(&self) -> bool {
        self.proxy.config.routing.read_your_writes == ReadYourWrites::Global
    }

    /// Whether responses from `backend` should be read for GTIDs:
    /// reads respect writes, it is the primary, and its OK packets carry
    /// session-state changes.
    pub(super) fn tracks_gtid(&self, backend: usize) -> bool {
        self.proxy.config.routing.read_your_writes == ReadYourWrites::Session
            && Some(backend) == self.proxy.primary()
            && self.backends[backend].as_ref().is_some_and(|c| {
                c.capabilities()
                    .contains(mysql_common::constants::CapabilityFlags::CLIENT_SESSION_TRACK)
            })
    }

    /// Records what a statement that ran on `backend` means for later
    /// reads: `gtid` from its OK packet; `wrote` when it may have written.
    pub(super) fn note_write(&mut self, backend: usize, wrote: bool, gtid: Option<Committed>) {
        if !self.causal_reads() || Some(backend) != self.proxy.primary() {
            return;
        }
        if self.global_reads() {
            // Counted by the relay, before the client had the answer.
            return;
        }
        match gtid {
            Some(gtid) => {
                self.last_write = LastWrite::Known {
                    gtid,
                    applied: 0,
                    clock: 0,
                }
            }
            None if wrote => self.last_write = LastWrite::Unknown,
            None => {}
        }
    }

    /// Whether a read must still respect an earlier write.
    pub(super) fn write_pending(&self) -> bool {
        match self.proxy.config.routing.read_your_writes {
            ReadYourWrites::Off => false,
            ReadYourWrites::Session => self.last_write != LastWrite::None,
            ReadYourWrites::Global => self.proxy.writes.now() > 0,
        }
    }

    /// Whether a read must wait for a write before it runs on `target`:
    /// one is pending and `target` is not known to have applied it (with
    /// `global`, no write was acknowledged since). Tested on every read
    /// before [`Session::causal_target`], whose future is not made when
    /// nothing is to be waited for.
    pub(super) fn must_wait_on(&self, target: Target) -> bool {
        if !self.write_pending() {
            return false;
        }
        let Target::Backend(backend) = target else {
            return false;
        };
        match &self.last_write {
            LastWrite::Known { applied, clock, .. } if applied & (1 << backend) != 0 => {
                self.global_reads() && *clock < self.proxy.writes.now()
            }
            _ => true,
        }
    }

    /// Where a read that routing sent to `target` may run given the
    /// session's last write: `target` if it has applied the write (or
    /// waited for it), else another replica that has, else the primary.
    /// `reroute` routes the read again avoiding a set of backends.
    pub(super) async fn causal_target(
        &mut self,
        target: Target,
        reroute: impl Fn(&Self, u64) -> Target,
    ) -> Target {
        let primary = self.proxy.primary();
        let Target::Backend(chosen) = target else {
            return target;
        };
        if !self.write_pending() || Some(chosen) == primary {
            return target;
        }
        let to_primary = self.primary_target();
        let Some(gtid) = self.write_gtid().await else {
            // The primary cannot say what it committed: it does not answer
            // (and would fail the read), or two servers are writable. The
            // most advanced replica is the closest to it.
            return match freshest_replica(&self.proxy.topology.load()) {
                Some(freshest) => Target::Backend(freshest),
                None if primary.is_none() => target,
                None => to_primary,
            };
        };
        let topology = self.proxy.topology.load();
        let mut lacking = 0u64;
        for (index, backend) in topology.backends.iter().enumerate() {
            let covered = backend.gtid.as_ref().is_some_and(|p| p.covers(&gtid));
            if covered {
                self.applied(index);
            } else if !self.has_applied(index) {
                lacking |= 1 << index;
            }
        }
        // No replica may be known to have the write yet (the monitor's
        // view is up to an interval old): then wait where it arrives
        // first — on the one routing chose, so that the session keeps its
        // replica, unless another is clearly ahead of it.
        let lag = |index: usize| match topology.backends[index].lag {
            Lag::Measured(lag) => Some(lag),
            Lag::Unknown => None,
        };
        let wait_on = match (freshest_replica(&topology), lag(chosen)) {
            (Some(freshest), Some(ours)) if lag(freshest).is_some_and(|l| l + SAME_LAG < ours) => {
                freshest
            }
            (Some(freshest), None) => freshest,
            _ => chosen,
        };
        drop(topology);
        if lacking & (1 << chosen) == 0 {
            return target;
        }
        match reroute(self, lacking) {
            Target::Backend(other) if Some(other) != primary => return Target::Backend(other),
            _ => {}
        }
        if self.wait_for(wait_on, &gtid).await {
            self.applied(wait_on);
            Target::Backend(wait_on)
        } else {
            to_primary
        }
    }

    /// What the session's last write committed, asking the primary when
    /// only the fact of a write is known. `None` when it cannot be learned.
    async fn write_gtid(&mut self) -> Option<Committed> {
        if self.global_reads() {
            return self.global_position().await;
        }
        match &self.last_write {
            LastWrite::None => None,
            LastWrite::Known { gtid, .. } => Some(gtid.clone()),
            LastWrite::Unknown => {
                let value = self.ask_primary("SELECT @@last_gtid").await?;
                let gtid = std::str::from_utf8(&value).ok().and_then(Committed::parse);
                match &gtid {
                    Some(gtid) => {
                        self.last_write = LastWrite::Known {
                            gtid: gtid.clone(),
                            applied: 0,
                            clock: 0,
                        }
                    }
                    // Empty: the write did not reach the binary log
                    // (nothing changed); nothing to wait for.
                    None if value.is_empty() => self.last_write = LastWrite::None,
                    None => {}
                }
                gtid
            }
        }
    }

    /// A position that covers every write acknowledged so far: the one
    /// this session last waited for, or one another session learnt, or
    /// the primary's, asked for now. When the primary cannot say, the
    /// session's own last write, if it knows its position; else `None`.
    async fn global_position(&mut self) -> Option<Committed> {
        let count = self.proxy.writes.now();
        if let LastWrite::Known { gtid, clock, .. } = &self.last_write
            && *clock >= count
        {
            return Some(gtid.clone());
        }
        let learnt = self.proxy.writes.position_at(count);
        let gtid = match learnt {
            Some(gtid) => gtid,
            None => match self.primary_position().await {
                Some(gtid) => {
                    self.proxy.writes.learn(count, &gtid);
                    gtid
                }
                None => {
                    return match &self.last_write {
                        LastWrite::Known { gtid, .. } => Some(gtid.clone()),
                        _ => None,
                    };
                }
            },
        };
        self.last_write = LastWrite::Known {
            gtid: gtid.clone(),
            applied: 0,
            clock: count,
        };
        Some(gtid)
    }

    /// Waits on replica `backend` until it applied `gtid`, up to
    /// `routing.causal_read_timeout`. False on timeout or any failure.
    async fn wait_for(&mut self, backend: usize, gtid: &Committed) -> bool {
        if self.ensure_backend(backend).await.is_err() {
            return false;
        }
        let Some(conn) = self.backends[backend].as_mut() else {
            return false;
        };
        let wait = gtid.wait_query(self.proxy.config.routing.causal_read_timeout);
        let answer = conn.query_value(&wait).await;
        debug!(backend, %gtid, ?answer, "waited for a session's write");
        self.answered(backend, answer)
            .is_some_and(|value| value == b"0")
    }

    /// The value of one of rwsplit's own queries on `backend`; a failure
    /// other than an error answer leaves the connection in an unknown
    /// state, so it is closed.
    fn answered(
        &mut self,
        backend: usize,
        answer: Result<Option<Vec<u8>>, BackendError>,
    ) -> Option<Vec<u8>> {
        match answer {
            Ok(value) => value,
            Err(BackendError::Refused(_)) => None,
            Err(_) => {
                self.discard(backend);
                None
            }
        }
    }

    /// What the primary has committed, if it answers.
    async fn primary_position(&mut self) -> Option<Committed> {
        let value = self.ask_primary("SELECT @@gtid_binlog_pos").await?;
        Committed::parse(std::str::from_utf8(&value).ok()?)
    }

    /// The healthy primary's answer to `mariadb` (a MySQL primary is asked
    /// for `@@global.gtid_executed`), on the session's connection to it.
    async fn ask_primary(&mut self, mariadb: &str) -> Option<Vec<u8>> {
        let primary = self.healthy_primary()?;
        self.ensure_backend(primary).await.ok()?;
        let conn = self.backends[primary].as_mut()?;
        let ask = match conn.greeting().is_mariadb() {
            true => mariadb,
            false => "SELECT @@global.gtid_executed",
        };
        let answer = conn.query_value(ask).await;
        self.answered(primary, answer)
    }

    /// The primary, unless the monitor finds it down: asking one that
    /// does not answer would hold the read for `monitor.connect_timeout`.
    fn healthy_primary(&self) -> Option<usize> {
        let topology = self.proxy.topology.load();
        topology
            .primary
            .filter(|&primary| topology.backends[primary].healthy)
    }

    fn applied(&mut self, backend: usize) {
        if let LastWrite::Known { applied, .. } = &mut self.last_write {
            *applied |= 1 << backend;
        }
    }

    fn has_applied(&self, backend: usize) -> bool {
        matches!(self.last_write, LastWrite::Known { applied, .. } if applied & (1 << backend) != 0)
    }
}
