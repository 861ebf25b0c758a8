//! What the backends are right now — roles, health, replication lag — as a
//! snapshot that sessions read without locks.
//!
//! Until the monitor runs, the snapshot comes from the configuration: the
//! backend with `role: primary` (else the first) is the primary, the others
//! are healthy replicas whose lag is not monitored.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{Config, Role};

/// Replication lag as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// No monitor measures it (static topology): the replica is trusted.
    NotMonitored,
    /// The monitor could not tell (replication stopped, NULL lag): never
    /// treated as zero.
    Unknown,
    /// Measured.
    Measured(Duration),
}

/// One backend in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendState {
    pub role: Role,
    /// Answering health checks.
    pub healthy: bool,
    pub lag: Lag,
    /// Relative share of reads.
    pub weight: u32,
    /// Takes reads only when no other replica can.
    pub backup: bool,
}

/// A consistent picture of every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Index of the primary, when one is known.
    pub primary: Option<usize>,
    /// In configuration order.
    pub backends: Vec<BackendState>,
}

impl Topology {
    /// The static topology of a configuration.
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
                lag: Lag::NotMonitored,
                weight: backend.weight,
                backup: backend.backup,
            })
            .collect();
        Topology {
            primary: Some(primary),
            backends,
        }
    }
}

/// Where the current topology is published.
#[derive(Debug)]
pub struct TopologyCell(ArcSwap<Topology>);

impl TopologyCell {
    pub fn new(topology: Topology) -> TopologyCell {
        TopologyCell(ArcSwap::from_pointee(topology))
    }

    /// The current snapshot (no lock; cheap enough for every statement).
    pub fn load(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.0.load()
    }

    /// Publishes a new snapshot.
    pub fn store(&self, topology: Topology) {
        self.0.store(Arc::new(topology));
    }
}
