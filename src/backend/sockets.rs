//! The connections open to one backend: how many (for metrics), and
//! their sockets, so that every one of them can be cut at once when the
//! backend stops being the primary — a statement waiting on a frozen
//! primary must never get that primary's late answer.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The sockets of the connections open to one backend.
#[derive(Debug, Default)]
pub struct Sockets {
    /// Connections open now (the metrics' count).
    open: Arc<AtomicU64>,
    /// Each live connection's socket, by a number of its own.
    live: Mutex<HashMap<u64, RawFd>>,
    next: AtomicU64,
}

impl Sockets {
    /// Sockets counting in `open`, the metrics' count of open connections.
    pub fn counting(open: Arc<AtomicU64>) -> Sockets {
        Sockets {
            open,
            ..Sockets::default()
        }
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Shuts down every live socket, both ways: a read or write in flight
    /// on one fails at once, and nothing the server sends later reaches
    /// anyone. The connections stay open (closed by their owners, who see
    /// the failure). Returns how many were cut.
    pub fn cut_all(&self) -> usize {
        let live = self.lock();
        for &fd in live.values() {
            // SAFETY: `fd` is open: a connection is removed from `live`
            // (under this lock) before its socket is closed (`Registered`
            // is dropped first), so it cannot have been closed, or reused
            // for another file, while it is here. shutdown(2) neither
            // closes it nor touches memory.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
        live.len()
    }

    /// Registers a connection's socket until the returned value is dropped.
    pub(super) fn register(self: &Arc<Self>, fd: RawFd) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, fd);
        self.open.fetch_add(1, Ordering::Relaxed);
        Registered {
            sockets: self.clone(),
            id,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, RawFd>> {
        // The map is always consistent: a panic elsewhere does not spoil it.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection counted and its socket registered in its backend's
/// [`Sockets`], until dropped — which must happen before the socket is
/// closed.
#[derive(Debug)]
pub(super) struct Registered {
    sockets: Arc<Sockets>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.sockets.lock().remove(&self.id);
        self.sockets.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn cut_sockets_fail_their_reads_and_dropped_ones_are_forgotten() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let sockets = Arc::new(Sockets::default());
        let registered = sockets.register(client.as_raw_fd());
        let other = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        drop(sockets.register(other.as_raw_fd()));
        assert_eq!(sockets.open(), 1, "the dropped one is not counted");
        assert_eq!(sockets.cut_all(), 1, "only the live one is cut");
        let mut byte = [0u8; 1];
        // Without the cut this read would wait for the server forever.
        assert_eq!(client.read(&mut byte).unwrap(), 0, "end of stream");
        drop(registered);
        assert_eq!((sockets.open(), sockets.cut_all()), (0, 0));
    }
}
