//! Transactions a fenced server holds that the primary lacks: what a
//! failed primary had acknowledged and no replica received, found when it
//! came back. The fence records them (`failover::fence_strays`); the
//! monitor raises them as the server's replication alarm and counts them
//! in its report until the server replicates again (reconciled, or
//! rebuilt from the primary).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use crate::gtid::Lacking;

/// What one fenced server has that the primary lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The primary it was compared with.
    pub primary: String,
    /// Each range of GTIDs (MariaDB), or the GTID set (MySQL).
    pub ranges: Vec<String>,
    /// How many transactions, when the ranges tell (MariaDB).
    pub transactions: Option<u64>,
}

impl Lost {
    pub fn new(primary: &str, lacking: &[Lacking]) -> Lost {
        Lost {
            primary: primary.to_owned(),
            ranges: lacking.iter().map(ToString::to_string).collect(),
            transactions: lacking.iter().map(Lacking::count).sum(),
        }
    }
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let primary = &self.primary;
        let count = match self.transactions {
            Some(1) => "1 transaction".to_owned(),
            Some(n) => format!("{n} transactions"),
            None => "transactions".to_owned(),
        };
        write!(
            f,
            "it has {count} {primary} lacks ({}): acknowledged on it and never replicated, \
             they are not on {primary}; it stays read-only and does not replicate: reconcile \
             them by hand, or rebuild it from {primary}",
            self.ranges.join(", ")
        )
    }
}

/// The servers fenced with transactions the primary lacks, by backend.
#[derive(Debug, Default)]
pub struct LostLog {
    servers: Mutex<HashMap<usize, Lost>>,
}

impl LostLog {
    pub fn record(&self, backend: usize, lost: Lost) {
        self.servers().insert(backend, lost);
    }

    /// Forgets a server that replicates again.
    pub fn forget(&self, backend: usize) {
        self.servers().remove(&backend);
    }

    pub fn get(&self, backend: usize) -> Option<Lost> {
        self.servers().get(&backend).cloned()
    }

    fn servers(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Lost>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_how_many_transactions_and_which() {
        let lacking = [
            Lacking {
                stream: "0-1".into(),
                first: 12,
                last: 20,
            },
            Lacking {
                stream: "1-1".into(),
                first: 3,
                last: 3,
            },
        ];
        let lost = Lost::new("db2", &lacking);
        assert_eq!(lost.transactions, Some(10));
        assert!(
            lost.to_string()
                .starts_with("it has 10 transactions db2 lacks (0-1-12 to 0-1-20, 1-1-3)"),
            "{lost}"
        );
    }
}
