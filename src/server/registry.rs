//! Every live session by the connection id its client was given: what KILL
//! needs to find a session's user, its backend threads, and its task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;

/// The sessions of one rwsplit process.
#[derive(Debug, Default)]
pub struct Registry {
    next_id: AtomicU32,
    sessions: Mutex<HashMap<u32, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Empty until the client has logged in.
    user: Arc<str>,
    /// (backend index, backend thread id) of each backend connection held.
    threads: Vec<(usize, u32)>,
    abort: Option<AbortHandle>,
}

/// What KILL needs to know about a session.
#[derive(Debug, Clone)]
pub struct KillTarget {
    pub user: Arc<str>,
    pub threads: Vec<(usize, u32)>,
    abort: Option<AbortHandle>,
}

impl KillTarget {
    /// Ends the session's task: its client and backend sockets are closed.
    pub fn abort(&self) {
        if let Some(abort) = &self.abort {
            abort.abort();
        }
    }
}

/// A session's entry; removed from the registry when dropped.
#[derive(Debug)]
pub struct Registration {
    id: u32,
    registry: Arc<Registry>,
}

impl Registry {
    /// Gives a new session a connection id no live session has.
    pub fn register(self: &Arc<Self>) -> Registration {
        let mut sessions = self.lock();
        let id = loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id != 0 && !sessions.contains_key(&id) {
                break id;
            }
        };
        sessions.insert(id, Entry::default());
        Registration {
            id,
            registry: self.clone(),
        }
    }

    /// Records the task of session `id`, so that KILL can end it.
    pub fn set_abort(&self, id: u32, abort: AbortHandle) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.abort = Some(abort);
        }
    }

    /// The session with connection id `id`, if it is logged in.
    pub fn lookup(&self, id: u64) -> Option<KillTarget> {
        let id = u32::try_from(id).ok()?;
        let sessions = self.lock();
        let entry = sessions.get(&id).filter(|e| !e.user.is_empty())?;
        Some(KillTarget {
            user: entry.user.clone(),
            threads: entry.threads.clone(),
            abort: entry.abort.clone(),
        })
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Number of live sessions logged in as `user`.
    pub fn sessions_of(&self, user: &str) -> usize {
        self.lock().values().filter(|e| &*e.user == user).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Entry>> {
        // Entries are replaced whole, so the map is consistent after a panic.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Registration {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Records who logged in on this session.
    pub fn set_user(&self, user: Arc<str>) {
        if let Some(entry) = self.registry.lock().get_mut(&self.id) {
            entry.user = user;
        }
    }

    /// Records (or, with `None`, forgets) the backend thread of `backend`.
    pub fn set_thread(&self, backend: usize, thread: Option<u32>) {
        if let Some(entry) = self.registry.lock().get_mut(&self.id) {
            entry.threads.retain(|(b, _)| *b != backend);
            entry.threads.extend(thread.map(|t| (backend, t)));
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_entries_go_with_their_session() {
        let registry = Arc::new(Registry::default());
        let a = registry.register();
        let b = registry.register();
        assert_ne!(a.id(), b.id());
        assert!(
            registry.lookup(u64::from(a.id())).is_none(),
            "not logged in yet"
        );
        a.set_user("app".into());
        a.set_thread(0, Some(42));
        a.set_thread(1, Some(7));
        a.set_thread(0, Some(43));
        let target = registry.lookup(u64::from(a.id())).unwrap();
        assert_eq!(&*target.user, "app");
        assert_eq!(target.threads, vec![(1, 7), (0, 43)]);
        assert_eq!(registry.len(), 2);
        drop(a);
        assert_eq!(registry.len(), 1);
        assert!(registry.lookup(u64::from(b.id()) + 1000).is_none());
        assert!(registry.lookup(u64::MAX).is_none());
    }

    #[test]
    fn ids_skip_zero_and_live_sessions_on_wrap() {
        let registry = Arc::new(Registry::default());
        registry.next_id.store(u32::MAX - 1, Ordering::Relaxed);
        let a = registry.register();
        assert_eq!(a.id(), u32::MAX);
        let b = registry.register();
        assert_eq!(b.id(), 1, "0 is skipped");
        registry.next_id.store(u32::MAX - 1, Ordering::Relaxed);
        let c = registry.register();
        assert_eq!(c.id(), 2, "live ids are skipped");
    }
}
