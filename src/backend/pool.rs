//! Idle backend connections, kept for reuse by later sessions.
//!
//! A connection enters the pool only once it is in the state of a fresh
//! login ([`super::fresh`]), so it carries nothing of the session that used
//! it. A connection whose state is unknown (a client that
//! vanished mid-response, an error mid-stream) is closed, never pooled.
//! Pools are keyed by everything a connection was opened with that changes
//! what it sends back — the user, the capability flags and the collation —
//! and by the session thread that opened it: its socket is registered with
//! that thread's runtime, so a session on another thread would be woken
//! through that thread on every response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::conn::{BackendConn, BackendError};

/// What a pooled connection was opened with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub user: Arc<str>,
    pub capabilities: u32,
    /// MariaDB's extended capabilities.
    pub mariadb: u32,
    pub collation: u8,
    /// The session thread the connection belongs to.
    pub home: std::thread::ThreadId,
}

/// A pooled connection and the database it has selected.
#[derive(Debug)]
struct Idle {
    conn: BackendConn,
    db: Option<String>,
    since: Instant,
}

/// The idle connections of one backend.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    /// Most idle connections kept per key; more are closed.
    max_idle_per_key: usize,
    /// Idle connections older than this are closed rather than reused.
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(max_idle_per_key: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_key,
            idle_timeout,
        }
    }

    /// Takes an idle connection for `key`, preferring one that already has
    /// `db` selected. Returns it with its current database; the caller
    /// selects `db` when they differ. With `db` of `None` only connections
    /// without a database qualify (one cannot be unselected).
    pub fn take(&self, key: &PoolKey, db: Option<&str>) -> Option<(BackendConn, Option<String>)> {
        let mut idle = self.lock();
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        // A connection whose server closed it, or died, since it was
        // pooled is dropped here rather than handed to a session.
        list.retain(|c| now.duration_since(c.since) < self.idle_timeout && c.conn.still_idle());
        let position = list
            .iter()
            .rposition(|c| c.db.as_deref() == db)
            .or_else(|| db.and_then(|_| list.iter().rposition(|c| c.db.is_some())))?;
        let found = list.swap_remove(position);
        Some((found.conn, found.db))
    }

    /// Resets `conn` to the state of a fresh login and keeps it for
    /// reuse. Any failure closes it instead.
    pub async fn put(&self, key: PoolKey, mut conn: BackendConn) -> Result<(), BackendError> {
        let db = super::fresh::reset_for_reuse(&mut conn).await?;
        let mut idle = self.lock();
        let list = idle.entry(key).or_default();
        if list.len() < self.max_idle_per_key {
            list.push(Idle {
                conn,
                db,
                since: Instant::now(),
            });
        }
        Ok(())
    }

    /// Closes idle connections past the idle timeout.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.lock();
        for list in idle.values_mut() {
            list.retain(|c| now.duration_since(c.since) < self.idle_timeout);
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// Number of idle connections, for status output.
    pub fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<Idle>>> {
        // The map is always left consistent, so a panic elsewhere while it
        // was held does not make it unusable.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
