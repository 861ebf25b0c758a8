//! Where a statement runs: `route(kind, &SessionView, &Topology, &ReadPolicy)`,
//! a pure function, table-tested. docs/routing.md states the rules.
//!
//! In order: a statement inside a transaction runs on that transaction's
//! backend; a session that holds table locks, uses its temporary tables,
//! was pinned or has autocommit off runs on the primary; a hint decides next; then the kind of
//! statement: reads (and read-only transactions) go to a replica chosen by
//! the read policy, statements describing the previous one go where it ran,
//! everything else to the primary.

use crate::config::{ReplicaSelection, Role};
use crate::sql::{Hint, StatementKind};
use crate::topology::{Lag, Topology};

/// What the router needs to know about the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionView {
    /// The backend where a transaction is open (from its status flags).
    pub transaction: Option<usize>,
    /// Autocommit is off: every statement opens or continues a transaction.
    pub autocommit_off: bool,
    /// Between LOCK TABLES and UNLOCK TABLES.
    pub locked_tables: bool,
    /// The statement names one of the session's temporary tables.
    pub uses_temporary_table: bool,
    /// The session's state cannot be reproduced elsewhere.
    pub pinned: bool,
    /// Where the previous statement ran.
    pub previous: Option<usize>,
}

/// How reads are spread.
#[derive(Clone, Copy)]
pub struct ReadPolicy<'a> {
    pub selection: ReplicaSelection,
    /// The primary takes reads too.
    pub primary_serves_reads: bool,
    /// Statements in flight on a backend, by index. Asked only when the
    /// choice is by it (least_connections, no sticky reader): counting
    /// reads every session thread's counters.
    pub load: &'a dyn Fn(usize) -> u32,
    /// A number that grows with every read (for round robin and ties).
    pub turn: u64,
    /// Backends not to use (a bit per index): where a read just failed.
    pub avoid: u64,
    /// The replica the session reads from, kept while it may take reads
    /// (`replica_affinity: session`).
    pub sticky: Option<usize>,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Run on this backend.
    Backend(usize),
    /// The statement needs the primary and none is known.
    NoPrimary,
}

/// Decides where a statement runs. `kind` must not be
/// [`StatementKind::ExecutePrepared`]: the session resolves it to the kind
/// of what was prepared first.
pub fn route(
    kind: &StatementKind,
    hint: Option<Hint>,
    session: &SessionView,
    topology: &Topology,
    reads: &ReadPolicy<'_>,
) -> Target {
    if let Some(backend) = session.transaction {
        return Target::Backend(backend);
    }
    let primary = topology.primary.map_or(Target::NoPrimary, Target::Backend);
    // With autocommit off every statement opens a transaction, which would
    // keep the session wherever it started: so even hinted reads stay on
    // the primary.
    if session.pinned
        || session.locked_tables
        || session.uses_temporary_table
        || session.autocommit_off
    {
        return primary;
    }
    let read = |fallback: Target| pick_reader(topology, reads).map_or(fallback, Target::Backend);
    match hint {
        Some(Hint::Primary) => return primary,
        Some(Hint::Replica) => return read(primary),
        None => {}
    }
    match kind {
        StatementKind::Read | StatementKind::Begin { read_only: true } => read(primary),
        StatementKind::PreviousResult => session.previous.map_or(primary, Target::Backend),
        _ => primary,
    }
}

/// The backend that takes the next read, if any is eligible. Allocates
/// nothing: candidates are a bit set (at most 64 backends).
pub fn pick_reader(topology: &Topology, reads: &ReadPolicy<'_>) -> Option<usize> {
    // The session's replica, while it may take reads, without looking at
    // the others (a backup one only when no other may: below).
    if let Some(sticky) = reads
        .sticky
        .filter(|&i| reads_from(topology, reads, i, false))
    {
        return Some(sticky);
    }
    let mut candidates = eligible(topology, reads, false);
    if candidates == 0 {
        candidates = eligible(topology, reads, true);
    }
    if candidates == 0 {
        return None;
    }
    if let Some(sticky) = reads
        .sticky
        .filter(|&i| i < 64 && candidates & (1 << i) != 0)
    {
        return Some(sticky);
    }
    let weight = |i: usize| u64::from(topology.backends[i].weight.max(1));
    // Ties go to the first candidate found from a point that moves with
    // every read, so equal backends share the load.
    let start = (reads.turn % u64::from(candidates.count_ones())) as usize;
    let rotated = || {
        bits(candidates)
            .skip(start)
            .chain(bits(candidates).take(start))
    };
    match reads.selection {
        ReplicaSelection::RoundRobin => {
            let total: u64 = bits(candidates).map(weight).sum();
            let mut point = reads.turn % total;
            bits(candidates).find(|&i| {
                let inside = point < weight(i);
                point = point.saturating_sub(weight(i));
                inside
            })
        }
        ReplicaSelection::LeastConnections => {
            // Fewest in flight per unit of weight: a/wa < b/wb  <=>  a*wb < b*wa.
            let load = |i: usize| u64::from((reads.load)(i));
            rotated().reduce(|best, i| {
                if load(i) * weight(best) < load(best) * weight(i) {
                    i
                } else {
                    best
                }
            })
        }
        ReplicaSelection::LeastLag => {
            let lag = |i: usize| match topology.backends[i].lag {
                Lag::Measured(d) => d,
                Lag::Unknown => std::time::Duration::MAX,
            };
            rotated().reduce(|best, i| if lag(i) < lag(best) { i } else { best })
        }
    }
}

/// The replica in read rotation with the smallest measured lag: where a
/// read that must wait for a write waits the least.
pub fn freshest_replica(topology: &Topology) -> Option<usize> {
    topology
        .backends
        .iter()
        .enumerate()
        .filter(|(index, b)| topology.primary != Some(*index) && b.healthy && b.readable)
        .filter_map(|(index, b)| match b.lag {
            Lag::Measured(lag) => Some((lag, index)),
            Lag::Unknown => None,
        })
        .min()
        .map(|(_, index)| index)
}

/// The set of backends that may take a read: replicas the monitor keeps in
/// rotation (backups or not), and the primary when it serves reads.
fn eligible(topology: &Topology, reads: &ReadPolicy<'_>, backup: bool) -> u64 {
    (0..topology.backends.len().min(64))
        .filter(|&index| reads_from(topology, reads, index, backup))
        .fold(0, |set, index| set | 1 << index)
}

/// Whether backend `index` may take a read, among the backups or the
/// others.
fn reads_from(topology: &Topology, reads: &ReadPolicy<'_>, index: usize, backup: bool) -> bool {
    let Some(backend) = topology.backends.get(index).filter(|_| index < 64) else {
        return false;
    };
    let is_primary = topology.primary == Some(index);
    let as_replica = backend.role == Role::Replica
        && !is_primary
        && backend.backup == backup
        && backend.readable;
    let as_primary = is_primary && reads.primary_serves_reads && !backup;
    let avoided = reads.avoid & (1 << index) != 0;
    backend.healthy && !avoided && (as_replica || as_primary)
}

/// The indices in a bit set, lowest first.
fn bits(mut set: u64) -> impl Iterator<Item = usize> + Clone {
    std::iter::from_fn(move || {
        (set != 0).then(|| {
            let index = set.trailing_zeros() as usize;
            set &= set - 1;
            index
        })
    })
}

#[cfg(test)]
mod tests;
