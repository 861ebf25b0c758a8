//! Accepting clients: a connection limit, sessions spread over a fixed
//! set of threads, and graceful shutdown.
//!
//! Sessions run on `listen.threads` session threads (one per CPU by default),
//! each with a single-threaded runtime of its own. The main runtime
//! accepts every client and hands it to the session thread that has the
//! fewest sessions, so a burst of connections is spread evenly (threads
//! that each accepted from the shared socket took them unevenly: all 8 of
//! a sysbench start on one thread, in two starts out of six). A session
//! never leaves its thread: no work is stolen or handed between threads,
//! which saves the cross-thread wake-ups a work-stealing runtime pays on
//! every command (measured in docs/benchmarks.md). The monitor and the
//! admin API stay on the main runtime.
//!
//! Each session holds a permit of a semaphore sized `max_client_connections`;
//! a client arriving when none is left gets ERR 1040 and is closed. On
//! shutdown accepting stops, then the sessions get (at most)
//! [`SHUTDOWN_GRACE`] to end, i.e. until every permit is back; then the
//! threads stop, closing whatever is left.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::{error, info, warn};

use super::registry::Registration;
use super::session;
use super::throttle::Admission;
use super::{Proxy, affinity};
use crate::logging::Throttled;
use crate::protocol::messages::ErrorPacket;
use crate::protocol::packet::put_packet;

/// How long shutdown waits for sessions to end before closing them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often idle pooled connections are checked for expiry.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts clients on `listener` until `shutdown` resolves. Dropping the
/// returned future stops the session threads too.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let max = proxy.config.listen.max_client_connections;
    let limit = Arc::new(Semaphore::new(max));
    let sweeper = tokio::spawn(sweep_pools(proxy.clone()));
    // Tells the session threads to stop; a sender dropped (this future
    // dropped) reads the same.
    let (exit, told) = watch::channel(false);
    let threads = match spawn_threads(&proxy, &told) {
        Ok(threads) => threads,
        Err(error) => {
            error!(%error, "cannot start the session threads");
            return;
        }
    };
    tokio::select! {
        () = accept(&proxy, &listener, &limit, &threads) => {}
        () = shutdown => {}
    }
    drop(listener);
    sweeper.abort();
    info!(
        sessions = proxy.registry.len(),
        "stopped accepting clients; waiting for sessions to end"
    );
    let drained = crate::timer::timeout(SHUTDOWN_GRACE, limit.acquire_many(max as u32)).await;
    if drained.is_err() {
        warn!(
            sessions = proxy.registry.len(),
            "closing sessions still open after {SHUTDOWN_GRACE:?}"
        );
    }
    let _ = exit.send(true);
    // The threads end as soon as they are told; joining only waits for that.
    let joined = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join.join();
        }
    });
    let _ = joined.await;
}

/// A client accepted and admitted, on its way to a session thread.
struct Admitted {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    registration: Registration,
    permit: OwnedSemaphorePermit,
    login: Admission,
}

/// A session thread as the acceptor sees it.
struct SessionThread {
    handoff: mpsc::UnboundedSender<Admitted>,
    join: std::thread::JoinHandle<()>,
}

/// Starts the session threads, each with a runtime of its own, bound to a
/// CPU each with `listen.pin_threads` (see [`affinity`]). Those runtimes
/// have no timer driver: the few timeouts a session arms are kept by the
/// runtime calling this (see [`crate::timer`]).
fn spawn_threads(
    proxy: &Arc<Proxy>,
    told: &watch::Receiver<bool>,
) -> std::io::Result<Vec<SessionThread>> {
    let keeper = tokio::runtime::Handle::current();
    let cpus = match proxy.config.listen.pin_threads {
        true => affinity::allowed_cpus()?,
        false => Vec::new(),
    };
    let threads = (0..proxy.config.listen.threads)
        .map(|index| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            let (handoff, admitted) = mpsc::unbounded_channel();
            let (proxy, told, keeper) = (proxy.clone(), told.clone(), keeper.clone());
            let join = std::thread::Builder::new()
                .name(format!("rwsplit-sessions-{index}"))
                .spawn(move || {
                    crate::timer::keep_timers_on(keeper);
                    // Dropping the runtime cancels the sessions still running.
                    runtime.block_on(session_thread(proxy, index, admitted, told));
                })?;
            if let Some(cpu) = affinity::cpu_for(index, &cpus) {
                affinity::pin(&join, cpu).map_err(|error| {
                    std::io::Error::new(
                        error.kind(),
                        format!("cannot bind session thread {index} to CPU {cpu}: {error}"),
                    )
                })?;
            }
            Ok(SessionThread { handoff, join })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    if !cpus.is_empty() {
        info!(threads = threads.len(), cpus = ?cpus, "session threads bound to these CPUs in turn");
    }
    Ok(threads)
}

/// Session thread `index`: runs the sessions handed to it until told to exit.
async fn session_thread(
    proxy: Arc<Proxy>,
    index: usize,
    mut admitted: mpsc::UnboundedReceiver<Admitted>,
    mut told: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            changed = told.changed() => if changed.is_err() || *told.borrow() {
                return;
            },
            Some(client) = admitted.recv() => start_session(&proxy, index, client),
        }
    }
}

/// Spawns the session of a client handed to session thread `index`.
fn start_session(proxy: &Arc<Proxy>, index: usize, client: Admitted) {
    let Admitted {
        tcp,
        peer,
        registration,
        permit,
        login,
    } = client;
    let leaving = Leaving {
        proxy: proxy.clone(),
        thread: index,
    };
    let tcp = match TcpStream::from_std(tcp) {
        Ok(tcp) => tcp,
        Err(error) => return warn!(%peer, %error, "cannot register a client's socket"),
    };
    let id = registration.id();
    let task = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            let _leaving = leaving;
            session::run(proxy, index, tcp, peer, registration, permit, login).await;
        }
    });
    proxy.registry.set_abort(id, task.abort_handle());
}

/// Counts a session off its thread when the session ends or is aborted.
struct Leaving {
    proxy: Arc<Proxy>,
    thread: usize,
}

impl Drop for Leaving {
    fn drop(&mut self) {
        let sessions = &self.proxy.metrics.thread(self.thread).sessions;
        sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts clients and hands each to the least busy session thread.
async fn accept(
    proxy: &Arc<Proxy>,
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
    threads: &[SessionThread],
) {
    let max = proxy.config.listen.max_client_connections;
    // Both can happen thousands of times a second under a flood: logged
    // once per interval, with how many times.
    let mut failed = Throttled::default();
    let mut refused = Throttled::default();
    let mut crowded = Throttled::default();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                failed.warn(|count| warn!(%error, count, "accept failed"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            proxy
                .metrics
                .clients_refused
                .fetch_add(1, Ordering::Relaxed);
            refused.warn(|count| {
                warn!(%peer, max, count, "refusing clients: max_client_connections reached")
            });
            tokio::spawn(refuse(tcp, ErrorPacket::too_many_connections()));
            continue;
        };
        let Some(login) = proxy.logins.admit(peer.ip()) else {
            proxy
                .metrics
                .clients_refused_logging_in
                .fetch_add(1, Ordering::Relaxed);
            let per_address = proxy.config.listen.max_logins_per_address;
            crowded.warn(|count| {
                warn!(%peer, per_address, count, "refusing clients: max_logins_per_address reached for their address")
            });
            tokio::spawn(refuse(tcp, ErrorPacket::too_many_logins()));
            continue;
        };
        if let Err(error) = tcp.set_nodelay(true) {
            warn!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(error) => {
                warn!(%peer, %error, "cannot hand a client's socket to a session thread");
                continue;
            }
        };
        proxy
            .metrics
            .clients_accepted
            .fetch_add(1, Ordering::Relaxed);
        let client = Admitted {
            tcp,
            peer,
            registration: proxy.registry.register(),
            permit,
            login,
        };
        let sessions = |index| &proxy.metrics.thread(index).sessions;
        let index = least_busy((0..threads.len()).map(|i| sessions(i).load(Ordering::Relaxed)));
        sessions(index).fetch_add(1, Ordering::Relaxed);
        if threads[index].handoff.send(client).is_err() {
            // Only a thread that panicked drops its end; the client is closed.
            sessions(index).fetch_sub(1, Ordering::Relaxed);
            error!(%peer, "a session thread has stopped; client closed");
        }
    }
}

/// Which thread gets the next client: the one with the fewest sessions,
/// the first of equals (0 when there are no threads).
fn least_busy(sessions: impl Iterator<Item = usize>) -> usize {
    sessions
        .enumerate()
        .min_by_key(|&(_, count)| count)
        .map_or(0, |(index, _)| index)
}

/// Tells a client over a limit why it is refused, then closes.
async fn refuse(mut tcp: TcpStream, error: ErrorPacket) {
    let mut out = Vec::new();
    put_packet(&mut out, 0, &error.payload_before_handshake());
    // The client may already be gone; there is nothing more to do then.
    let _ = tcp.write_all(&out).await;
    let _ = tcp.shutdown().await;
}

async fn sweep_pools(proxy: Arc<Proxy>) {
    let mut ticks = tokio::time::interval(POOL_SWEEP_INTERVAL);
    loop {
        ticks.tick().await;
        for pool in &proxy.pools {
            pool.sweep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_with_the_fewest_sessions_takes_the_next_client() {
        assert_eq!(least_busy([3, 1, 2].into_iter()), 1);
        assert_eq!(least_busy([2, 2, 2].into_iter()), 0);
        assert_eq!(least_busy([0].into_iter()), 0);
        // A burst of clients alternates between two idle threads.
        let mut counts = [0, 0];
        let picks: Vec<usize> = (0..4)
            .map(|_| {
                let pick = least_busy(counts.into_iter());
                counts[pick] += 1;
                pick
            })
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    /// Starts `threads` session threads as `serve` does and returns the
    /// CPUs each may run on.
    fn session_thread_cpus(threads: usize, pin: bool) -> Vec<Vec<usize>> {
        let proxy = Proxy::for_tests(&format!(
            "{{ address: '127.0.0.1:0', threads: {threads}, pin_threads: {pin} }}"
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (exit, told) = watch::channel(false);
        let threads = runtime
            .block_on(async { spawn_threads(&proxy, &told) })
            .expect("session threads start");
        let cpus = threads
            .iter()
            .map(|thread| affinity::of(&thread.join).expect("affinity"))
            .collect();
        drop(exit);
        for thread in threads {
            thread.join.join().expect("session thread ends");
        }
        cpus
    }

    #[test]
    fn pinned_session_threads_take_one_allowed_cpu_each_in_turn() {
        let allowed = affinity::allowed_cpus().unwrap();
        let threads = allowed.len() + 1;
        let expected: Vec<Vec<usize>> = (0..threads)
            .map(|index| vec![allowed[index % allowed.len()]])
            .collect();
        assert_eq!(session_thread_cpus(threads, true), expected);
        assert_eq!(
            session_thread_cpus(2, false),
            [allowed.clone(), allowed],
            "unpinned threads may run anywhere the process may"
        );
    }
}
