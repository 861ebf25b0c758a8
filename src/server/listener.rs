//! The accept loops: sessions on a fixed set of threads, a connection
//! limit, and graceful shutdown.
//!
//! Sessions run on `listen.threads` session threads (one by default),
//! each with a single-threaded runtime of its own that accepts from the
//! shared listening socket. A session never leaves the thread
//! that accepted it: no work is stolen or handed between threads, which
//! saves the cross-thread wake-ups a work-stealing runtime pays on every
//! command (measured in docs/benchmarks.md). The monitor and the admin API
//! stay on the main runtime.
//!
//! Each session holds a permit of a semaphore sized `max_client_connections`;
//! a client arriving when none is left gets ERR 1040 and is closed. On
//! shutdown the threads stop accepting, then the sessions get (at most)
//! [`SHUTDOWN_GRACE`] to end, i.e. until every permit is back; then the
//! threads stop, closing whatever is left.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::{error, info, warn};

use super::Proxy;
use super::session;
use crate::protocol::messages::ErrorPacket;
use crate::protocol::packet::put_packet;

/// How long shutdown waits for sessions to end before closing them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often idle pooled connections are checked for expiry.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// What the session threads are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Accepting,
    /// Accept no more clients; let sessions finish.
    Draining,
    /// Stop, closing the sessions left.
    Exit,
}

/// Accepts clients on `listener` until `shutdown` resolves. Dropping the
/// returned future stops the session threads too.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let max = proxy.config.listen.max_client_connections;
    let limit = Arc::new(Semaphore::new(max));
    let sweeper = tokio::spawn(sweep_pools(proxy.clone()));
    // A sender dropped (this future dropped) reads as Exit.
    let (phase, told) = watch::channel(Phase::Accepting);
    let threads = match spawn_threads(&proxy, listener, &limit, &told) {
        Ok(threads) => threads,
        Err(error) => {
            error!(%error, "cannot start the session threads");
            return;
        }
    };
    shutdown.await;
    let _ = phase.send(Phase::Draining);
    sweeper.abort();
    info!(
        sessions = proxy.registry.len(),
        "stopped accepting clients; waiting for sessions to end"
    );
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, limit.acquire_many(max as u32)).await;
    if drained.is_err() {
        warn!(
            sessions = proxy.registry.len(),
            "closing sessions still open after {SHUTDOWN_GRACE:?}"
        );
    }
    let _ = phase.send(Phase::Exit);
    // The threads end as soon as they see Exit; joining only waits for that.
    let joined = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    });
    let _ = joined.await;
}

/// Starts the session threads, each accepting from a clone of `listener`.
fn spawn_threads(
    proxy: &Arc<Proxy>,
    listener: TcpListener,
    limit: &Arc<Semaphore>,
    told: &watch::Receiver<Phase>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let listener = listener.into_std()?;
    (0..proxy.config.listen.threads)
        .map(|index| {
            let listener = listener.try_clone()?;
            let (proxy, limit, told) = (proxy.clone(), limit.clone(), told.clone());
            std::thread::Builder::new()
                .name(format!("rwsplit-sessions-{index}"))
                .spawn(move || session_thread(proxy, listener, limit, told))
        })
        .collect()
}

/// One session thread: a single-threaded runtime that accepts clients and
/// runs their sessions until told to exit.
fn session_thread(
    proxy: Arc<Proxy>,
    listener: std::net::TcpListener,
    limit: Arc<Semaphore>,
    mut told: watch::Receiver<Phase>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return error!(%error, "cannot start a session thread's runtime"),
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => return error!(%error, "cannot register the listener"),
        };
        accept(&proxy, &listener, &limit, &mut told).await;
        drop(listener);
        while *told.borrow() != Phase::Exit {
            if told.changed().await.is_err() {
                break;
            }
        }
    });
    // Dropping the runtime cancels the sessions still running here.
}

/// Accepts clients until told to stop accepting.
async fn accept(
    proxy: &Arc<Proxy>,
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
    told: &mut watch::Receiver<Phase>,
) {
    let max = proxy.config.listen.max_client_connections;
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            changed = told.changed() => match changed {
                Ok(()) if *told.borrow() == Phase::Accepting => continue,
                _ => return,
            },
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            proxy
                .metrics
                .clients_refused
                .fetch_add(1, Ordering::Relaxed);
            warn!(%peer, max, "refusing a client: max_client_connections reached");
            tokio::spawn(refuse(tcp));
            continue;
        };
        if let Err(error) = tcp.set_nodelay(true) {
            warn!(%peer, %error, "cannot set TCP_NODELAY");
        }
        proxy
            .metrics
            .clients_accepted
            .fetch_add(1, Ordering::Relaxed);
        let registration = proxy.registry.register();
        let id = registration.id();
        let task = tokio::spawn(session::run(proxy.clone(), tcp, peer, registration, permit));
        proxy.registry.set_abort(id, task.abort_handle());
    }
}

/// Tells a client over the limit why it is refused, then closes.
async fn refuse(mut tcp: TcpStream) {
    let mut out = Vec::new();
    put_packet(
        &mut out,
        0,
        &ErrorPacket::too_many_connections().payload_before_handshake(),
    );
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
