//! What the backends are right now — roles, health, replication lag — as a
//! snapshot that sessions read without locks, and the monitor that keeps
//! it up to date.
//!
//! | module | owns |
//! |---|---|
//! | [`monitor`] | the monitor task: checks, heartbeat, publication |
//! | [`check`] | one check of one backend (mysql_async, every call timed out) |
//! | [`health`] | hysteresis: consecutive results before a state flips |
//! | [`heartbeat`] | the heartbeat writer on the primary |
//! | [`discovery`] | which backend is the primary |
//! | [`lag`] | replication lag from the heartbeat |
//! | [`lost`] | transactions a fenced server has that the primary lacks |
//!
//! Before the monitor's first results, the snapshot comes from the
//! configuration: the backend with `role: primary` (else the first) is the
//! primary, the others are replicas that are not yet readable.

pub mod check;
pub mod discovery;
pub mod health;
pub mod heartbeat;
pub mod lag;
pub mod lost;
pub mod monitor;
pub mod replication;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{Config, Role};
use crate::gtid::GtidPosition;

/// Replication lag as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// Not checked yet, or the monitor could not tell (replication stopped,
    /// NULL lag, heartbeat missing): never treated as zero.
    Unknown,
    /// Measured.
    Measured(Duration),
}

/// One backend in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendState {
    pub role: Role,
    /// Answering health checks (with hysteresis).
    pub healthy: bool,
    /// May take reads as a replica: healthy, replicating, lag known and
    /// within the limit (with hysteresis).
    pub readable: bool,
    pub lag: Lag,
    /// The last GTID position seen, for read-your-writes.
    pub gtid: Option<GtidPosition>,
    /// Relative share of reads.
    pub weight: u32,
    /// Takes reads only when no other replica can.
    pub backup: bool,
}

impl BackendState {
    /// A backend in `role` that the monitor found well: healthy, no lag,
    /// taking reads if it is a replica, weight 1, not a backup.
    pub fn in_service(role: Role) -> BackendState {
        BackendState {
            role,
            healthy: true,
            readable: role == Role::Replica,
            lag: Lag::Measured(Duration::ZERO),
            gtid: None,
            weight: 1,
            backup: false,
        }
    }
}

/// A consistent picture of every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Index of the primary, when one is known.
    pub primary: Option<usize>,
    /// In configuration order.
    pub backends: Vec<BackendState>,
    /// Why there is no primary (two writable servers, none), when so.
    pub alarm: Option<String>,
}

impl Topology {
    /// The topology a configuration describes, before any check: the
    /// configured primary, and replicas that wait for the monitor before
    /// they take reads.
    pub fn from_config(config: &Config) -> Topology {
        let primary = config
            .backends
            .iter()
            .position(|b| b.role == Some(Role::Primary))
            .unwrap_or(0);
        let backends = config
            .backends
            .iter()
            .enumerate()
            .map(|(index, backend)| BackendState {
                role: if index == primary {
                    Role::Primary
                } else {
                    Role::Replica
                },
                healthy: true,
                readable: false,
                lag: Lag::Unknown,
                gtid: None,
                weight: backend.weight,
                backup: backend.backup,
            })
            .collect();
        Topology {
            primary: Some(primary),
            backends,
            alarm: None,
        }
    }
}

/// Where the current topology is published.
///
/// The primary's index is published beside the snapshot as well: sessions
/// ask for it several times a statement, and a plain atomic load is far
/// cheaper than taking a snapshot (whose guard costs two atomic
/// read-modify-writes). Two reads, of either kind, may straddle a
/// publication and see different topologies; each decision takes what it
/// reads as current, as before.
#[derive(Debug)]
pub struct TopologyCell {
    snapshot: ArcSwap<Topology>,
    /// The snapshot's `primary`, [`NO_PRIMARY`] for none.
    primary: AtomicUsize,
    /// Woken by every publication, for sessions waiting for a primary.
    published: tokio::sync::Notify,
    /// While a switchover fences the primary: published snapshots have no
    /// primary, whatever the monitor found, and this alarm.
    fence: Mutex<Option<Fence>>,
}

/// A primary being made read-only by a switchover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The alarm published meanwhile.
    pub why: String,
    /// Once promoted, the backend whose publication as the primary ends
    /// the fence (see [`TopologyCell::hand_over`]).
    pub successor: Option<usize>,
}

const NO_PRIMARY: usize = usize::MAX;

impl TopologyCell {
    pub fn new(topology: Topology) -> TopologyCell {
        TopologyCell {
            primary: AtomicUsize::new(topology.primary.unwrap_or(NO_PRIMARY)),
            snapshot: ArcSwap::from_pointee(topology),
            published: tokio::sync::Notify::new(),
            fence: Mutex::new(None),
        }
    }

    /// The current snapshot (no lock; cheap enough for every statement).
    pub fn load(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.snapshot.load()
    }

    /// The current snapshot's primary.
    pub fn primary(&self) -> Option<usize> {
        Some(self.primary.load(Ordering::Acquire)).filter(|&p| p != NO_PRIMARY)
    }

    /// Publishes a new snapshot: without its primary while one is fenced,
    /// unless that primary is the fence's successor, which ends the fence.
    pub fn store(&self, topology: Topology) {
        let mut fence = self.fence();
        if fence
            .as_ref()
            .is_some_and(|f| f.successor.is_some() && f.successor == topology.primary)
        {
            *fence = None;
        }
        self.publish(topology, fence.as_ref());
    }

    fn publish(&self, mut topology: Topology, fence: Option<&Fence>) {
        if let Some(fence) = fence {
            topology.primary = None;
            topology.alarm = Some(fence.why.clone());
        }
        let primary = topology.primary.unwrap_or(NO_PRIMARY);
        self.snapshot.store(Arc::new(topology));
        self.primary.store(primary, Ordering::Release);
        self.published.notify_waiters();
    }

    fn fence(&self) -> MutexGuard<'_, Option<Fence>> {
        // A plain value: consistent even after a panic.
        self.fence.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops publishing a primary, at once and until [`Self::unfence`]:
    /// a switchover calls it before it makes the primary read-only, so
    /// that no statement is sent there meanwhile (sessions wait for the
    /// next primary instead, up to `routing.wait_for_primary`). Taken
    /// under the same lock as every publication, so no snapshot the
    /// monitor computed before can bring the primary back.
    pub fn begin_fence(&self, fence: Fence) {
        let mut current = self.fence();
        let topology = (**self.load()).clone();
        self.publish(topology, Some(&fence));
        *current = Some(fence);
    }

    /// Ends the fence once the monitor publishes `successor` as the
    /// primary: not before, since until its next checks its view of the old
    /// primary may predate the fence (still writable) and of the new one
    /// the promotion (still replicating).
    pub fn hand_over(&self, successor: usize) {
        if let Some(fence) = self.fence().as_mut() {
            fence.successor = Some(successor);
        }
    }

    /// Ends a fence: the monitor's next publication has the primary it finds.
    pub fn unfence(&self) {
        *self.fence() = None;
    }

    /// The primary, waiting up to `limit` for one to be published when
    /// there is none (a switchover or failover under way).
    pub async fn wait_for_primary(&self, limit: Duration) -> Option<usize> {
        self.wait_for_primary_except(None, limit).await
    }

    /// The primary, unless it is `except` (a server a session saw fenced
    /// or lost): then, or while there is none, waits up to `limit` for
    /// another to be published.
    pub async fn wait_for_primary_except(
        &self,
        except: Option<usize>,
        limit: Duration,
    ) -> Option<usize> {
        let other = || self.primary().filter(|p| Some(*p) != except);
        if let Some(primary) = other() {
            return Some(primary);
        }
        if limit.is_zero() {
            return None;
        }
        let wait = async {
            loop {
                let published = self.published.notified();
                tokio::pin!(published);
                // Registered before looking, so no publication is missed.
                published.as_mut().enable();
                if let Some(primary) = other() {
                    return primary;
                }
                published.await;
            }
        };
        crate::timer::timeout(limit, wait).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_is_published_with_each_snapshot() {
        let topology = |primary| Topology {
            primary,
            backends: Vec::new(),
            alarm: None,
        };
        let cell = TopologyCell::new(topology(Some(0)));
        assert_eq!(cell.primary(), Some(0));
        cell.store(topology(None));
        assert_eq!(cell.primary(), None);
        cell.store(topology(Some(2)));
        assert_eq!((cell.primary(), cell.load().primary), (Some(2), Some(2)));
    }

    #[tokio::test]
    async fn no_primary_is_published_while_one_is_fenced() {
        let topology = |primary| Topology {
            primary,
            backends: Vec::new(),
            alarm: None,
        };
        let cell = Arc::new(TopologyCell::new(topology(Some(0))));
        let why = "switchover under way".to_owned();
        cell.begin_fence(Fence {
            why: why.clone(),
            successor: None,
        });
        assert_eq!(cell.primary(), None);
        cell.store(topology(Some(0)));
        assert_eq!(
            (cell.primary(), cell.load().alarm.clone()),
            (None, Some(why)),
            "what the monitor found before the fence does not undo it"
        );
        assert_eq!(cell.wait_for_primary(Duration::from_millis(20)).await, None);
        let waiting = tokio::spawn({
            let cell = cell.clone();
            async move { cell.wait_for_primary(Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        cell.hand_over(1);
        cell.store(topology(Some(0)));
        assert_eq!(
            cell.primary(),
            None,
            "a view from before the promotion does not end the fence"
        );
        cell.store(topology(Some(1)));
        assert_eq!(waiting.await.unwrap(), Some(1), "woken by the publication");
        cell.store(topology(Some(2)));
        assert_eq!(cell.primary(), Some(2), "the fence ended with it");
    }
}
