//! The accept loop: one task per client, a connection limit, and graceful
//! shutdown.
//!
//! Each session holds a permit of a semaphore sized `max_client_connections`;
//! a client arriving when none is left gets ERR 1040 and is closed. On
//! shutdown the loop stops accepting, then waits (at most
//! [`SHUTDOWN_GRACE`]) until every permit is back, i.e. every session ended.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::Proxy;
use super::session;
use crate::protocol::messages::ErrorPacket;
use crate::protocol::packet::put_packet;

/// How long shutdown waits for sessions to end before closing them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often idle pooled connections are checked for expiry.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts clients on `listener` until `shutdown` resolves.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let max = proxy.config.listen.max_client_connections;
    let limit = Arc::new(Semaphore::new(max));
    let sweeper = tokio::spawn(sweep_pools(proxy.clone()));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
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
    sweeper.abort();
    drop(listener);
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
