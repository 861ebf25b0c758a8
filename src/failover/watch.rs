//! The task that runs beside the monitor: it fences former primaries a
//! failover replaced once they answer again, and with `failover.auto`
//! starts a failover when the primary has failed enough checks.

use std::sync::Arc;

use tracing::{info, warn};

use super::server::Server;
use super::{ChangeError, Kind, Progress, change, rejoin};
use crate::server::Proxy;

/// Runs for as long as the proxy serves: each monitor interval, fences
/// former primaries that answer again and, with `failover.auto`, starts a
/// failover once the primary has failed `failover.failure_threshold`
/// consecutive checks.
pub async fn watch(proxy: Arc<Proxy>) {
    let mut ticks = tokio::time::interval(proxy.config.monitor.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last reason an automatic failover did not happen, logged once.
    let mut last_refusal: Option<String> = None;
    loop {
        ticks.tick().await;
        fence_returned(&proxy).await;
        if proxy.config.failover.auto && primary_failed(&proxy) {
            match change(&proxy, Kind::Failover, None, &Progress::default()).await {
                Ok(summary) => {
                    info!(summary, "automatic failover done");
                    last_refusal = None;
                }
                Err(ChangeError::Busy) => {}
                Err(error) => {
                    let text = error.to_string();
                    if last_refusal.as_ref() != Some(&text) {
                        warn!(%error, "automatic failover did not happen; it is tried again each monitor interval");
                        last_refusal = Some(text);
                    }
                }
            }
        }
    }
}

/// Whether the primary has failed `failover.failure_threshold` checks in a
/// row.
fn primary_failed(proxy: &Proxy) -> bool {
    let Some(primary) = proxy.topology.primary() else {
        return false;
    };
    proxy
        .reports
        .load()
        .get(primary)
        .is_some_and(|r| r.failed_checks >= proxy.config.failover.failure_threshold)
}

/// Fences each former primary a failover replaced, once it answers:
/// read-only at once, then a replica of the current primary if it has
/// nothing the primary lacks.
async fn fence_returned(proxy: &Proxy) {
    let pending = proxy.changes.to_fence().clone();
    let config = &proxy.config;
    for (old_index, promoted) in pending {
        let Ok(mut old) = Server::open(config, old_index, config.monitor.connect_timeout).await
        else {
            continue;
        };
        if let Err(error) = old.set_read_only(true).await {
            warn!(%error, "cannot fence the former primary yet");
            continue;
        }
        proxy.changes.to_fence().retain(|&(i, _)| i != old_index);
        info!(
            backend = old.name,
            "the former primary answers again: fenced (read_only = ON)"
        );
        // Until it was fenced the monitor saw two writable servers and
        // knew no primary: the one promoted in its place, then.
        let primary = proxy
            .topology
            .primary()
            .filter(|&p| p != old_index)
            .unwrap_or(promoted);
        let rejoined = async {
            let mut new = Server::open(config, primary, config.failover.timeout)
                .await
                .map_err(|e| e.to_string())?;
            rejoin(config, &mut old, &mut new, primary).await
        }
        .await;
        match rejoined {
            Ok(()) => info!(
                backend = old.name,
                primary = config.backends[primary].name,
                "the former primary replicates from the primary"
            ),
            Err(problem) => warn!(problem, "the former primary was not made a replica"),
        }
    }
}
