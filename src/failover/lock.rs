//! The topology lock: several rwsplit sidecars watch the same servers, and
//! only the one holding `GET_LOCK` on a majority of them may change who is
//! the primary. A lock lives as long as the connection that took it, so a
//! sidecar that dies mid-change frees it.

use std::time::Duration;

use tokio::task::JoinSet;

use super::server::Server;
use crate::config::Config;

const NAME: &str = "rwsplit.topology";

/// Held on a majority of the backends until dropped or released.
pub struct TopologyLock {
    held: Vec<Server>,
}

/// The lock could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the topology lock is held on {held} of {total} servers, and a change needs a majority \
     ({needed}); {why}"
)]
pub struct NotLocked {
    pub held: usize,
    pub total: usize,
    pub needed: usize,
    /// The servers that refused it or did not answer.
    pub why: String,
}

impl TopologyLock {
    /// Takes the lock on every backend that answers, at once; keeps it if
    /// that is more than half of them.
    pub async fn acquire(config: &Config, limit: Duration) -> Result<TopologyLock, NotLocked> {
        let mut attempts = JoinSet::new();
        for index in 0..config.backends.len() {
            let config = config.clone();
            attempts.spawn(async move {
                let mut server = Server::open(&config, index, limit).await?;
                match server.try_lock(NAME).await? {
                    true => Ok(server),
                    false => Err(super::server::StepError {
                        server: server.name.clone(),
                        action: "take the topology lock".into(),
                        error: "another rwsplit holds it (a change is under way there)".into(),
                    }),
                }
            });
        }
        let mut held = Vec::new();
        let mut refused = Vec::new();
        while let Some(attempt) = attempts.join_next().await {
            match attempt {
                Ok(Ok(server)) => held.push(server),
                Ok(Err(error)) => refused.push(error.to_string()),
                Err(error) => refused.push(error.to_string()),
            }
        }
        let total = config.backends.len();
        let needed = total / 2 + 1;
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
