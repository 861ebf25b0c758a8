//! The topology lock: several rwsplit sidecars watch the same servers, and
//! only the one holding `GET_LOCK` on a majority of them (of all, or of
//! those that answer: `failover.lock_quorum`) may change who is the
//! primary. A lock lives as long as the connection that took it, so a
//! sidecar that dies mid-change frees it.

use std::time::Duration;

use tokio::task::JoinSet;

use super::server::{Server, StepError};
use crate::config::{Config, LockQuorum};

const NAME: &str = "rwsplit.topology";

/// Held on a majority of the backends until dropped or released.
pub struct TopologyLock {
    held: Vec<Server>,
}

/// The lock could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the topology lock is held on {held} of {total} servers, and a change needs {majority} \
     ({needed}); {why}"
)]
pub struct NotLocked {
    pub held: usize,
    pub total: usize,
    /// "a majority", or of which servers (`failover.lock_quorum`).
    pub majority: String,
    pub needed: usize,
    /// The servers that refused it or did not answer.
    pub why: String,
}

/// What one backend said when asked for the lock.
enum Attempt {
    Held(Server),
    /// It answered without giving the lock: another rwsplit holds it, or
    /// `GET_LOCK` failed.
    Refused(StepError),
    /// It could not be reached.
    Silent(StepError),
}

impl TopologyLock {
    /// Takes the lock on every backend that answers, at once; keeps it if
    /// that is more than half of them (`failover.lock_quorum`: of all
    /// configured backends, or of those that answered).
    pub async fn acquire(config: &Config, limit: Duration) -> Result<TopologyLock, NotLocked> {
        let mut attempts = JoinSet::new();
        for index in 0..config.backends.len() {
            let config = config.clone();
            attempts.spawn(async move {
                let mut server = match Server::open(&config, index, limit).await {
                    Ok(server) => server,
                    Err(error) => return Attempt::Silent(error),
                };
                match server.try_lock(NAME).await {
                    Ok(true) => Attempt::Held(server),
                    Ok(false) => Attempt::Refused(StepError {
                        server: server.name.clone(),
                        action: "take the topology lock".into(),
                        error: "another rwsplit holds it (a change is under way there)".into(),
                    }),
                    Err(error) => Attempt::Refused(error),
                }
            });
        }
        let mut held = Vec::new();
        let mut refused = Vec::new();
        let mut silent = 0;
        while let Some(attempt) = attempts.join_next().await {
            match attempt {
                Ok(Attempt::Held(server)) => held.push(server),
                Ok(Attempt::Refused(error)) => refused.push(error.to_string()),
                Ok(Attempt::Silent(error)) => {
                    silent += 1;
                    refused.push(error.to_string());
                }
                // Not known to be down: counted as running.
                Err(error) => refused.push(error.to_string()),
            }
        }
        let quorum = config.failover.lock_quorum;
        let total = config.backends.len();
        let answered = total - silent;
        let needed = needed(quorum, total, answered);
        if held.len() >= needed {
            return Ok(TopologyLock { held });
        }
        let mut lock = TopologyLock { held };
        let count = lock.held.len();
        lock.release().await;
        refused.sort();
        Err(NotLocked {
            held: count,
            total,
            majority: match quorum {
                LockQuorum::MajorityOfAll => "a majority".into(),
                LockQuorum::MajorityOfRunning => {
                    format!("a majority of the {answered} that answered")
                }
            },
            needed,
            why: refused.join("; "),
        })
    }

    /// Releases the lock everywhere (dropping it does too, as the
    /// connections close).
    pub async fn release(&mut self) {
        for server in &mut self.held {
            // A failure leaves the lock to the connection's end.
            let _ = server.unlock(NAME).await;
        }
        self.held.clear();
    }
}

/// How many backends' locks a change needs: more than half of all `total`
/// configured, or of the `answered` ones — at least one.
fn needed(quorum: LockQuorum, total: usize, answered: usize) -> usize {
    let of = match quorum {
        LockQuorum::MajorityOfAll => total,
        LockQuorum::MajorityOfRunning => answered,
    };
    of / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_of_all_backends_ignores_how_many_answered() {
        assert_eq!(needed(LockQuorum::MajorityOfAll, 3, 3), 2);
        assert_eq!(needed(LockQuorum::MajorityOfAll, 3, 1), 2);
        // Two backends, the primary gone: its replica alone is not enough.
        assert_eq!(needed(LockQuorum::MajorityOfAll, 2, 1), 2);
        assert_eq!(needed(LockQuorum::MajorityOfAll, 4, 4), 3);
    }

    #[test]
    fn a_majority_of_the_running_backends_counts_those_that_answered() {
        assert_eq!(needed(LockQuorum::MajorityOfRunning, 3, 3), 2);
        assert_eq!(needed(LockQuorum::MajorityOfRunning, 3, 2), 2);
        // Two backends, the primary gone: its replica can fail over.
        assert_eq!(needed(LockQuorum::MajorityOfRunning, 2, 1), 1);
        assert_eq!(needed(LockQuorum::MajorityOfRunning, 5, 2), 2);
        // None answered: still one lock needed, so no change.
        assert_eq!(needed(LockQuorum::MajorityOfRunning, 3, 0), 1);
    }
}
