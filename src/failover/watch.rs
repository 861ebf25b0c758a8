//! The task that runs beside the monitor: it fences strays — writable
//! servers beside the primary that no replica follows, most often a failed
//! primary that came back — and with `failover.auto` starts a failover when
//! the primary has failed enough checks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{info, warn};

use super::{ChangeError, Kind, Progress, change, fence_strays};
use crate::server::Proxy;

/// Runs for as long as the proxy serves: each monitor interval, fences
/// strays (writable servers beside the primary that no replica follows)
/// and, with `failover.auto`, starts a failover once the primary has
/// failed `failover.failure_threshold` consecutive checks.
pub async fn watch(proxy: Arc<Proxy>) {
    let mut ticks = tokio::time::interval(proxy.config.monitor.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last reason an automatic failover did not happen, logged once.
    let mut last_refusal: Option<String> = None;
    let mut last_primary = proxy.topology.primary();
    // When the monitor first saw the stray being fenced: how long two
    // servers were writable is measured from there.
    let mut stray_since: Option<Instant> = None;
    loop {
        ticks.tick().await;
        let primary = proxy.topology.primary();
        if let (Some(before), Some(now)) = (last_primary, primary)
            && before != now
            && !proxy.topology.load().backends[before].healthy
        {
            // Another rwsplit failed over (this one cut its connections
            // before promoting): what this one holds to the failed primary
            // must not deliver its late answers either.
            super::cut(&proxy, before, &Progress::default());
        }
        last_primary = primary.or(last_primary);
        if stray_seen(&proxy) {
            let since = *stray_since.get_or_insert_with(Instant::now);
            match fence_strays(&proxy).await {
                Ok(0) | Err(ChangeError::Busy) => {}
                Ok(_) => {
                    let writable = since.elapsed();
                    let millis = u64::try_from(writable.as_millis()).unwrap_or(u64::MAX);
                    let total = &proxy.metrics.stray_writable_ms;
                    total.fetch_add(millis, Ordering::Relaxed);
                    warn!(
                        ?writable,
                        "two servers were writable for this long, as the monitor saw it: from its \
                         first check that found the stray writable to its fence"
                    );
                    stray_since = None;
                }
                Err(error) => warn!(%error, "a stray writable server was not fenced yet"),
            }
        } else {
            stray_since = None;
        }
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

/// Whether the monitor sees a writable server that does not replicate
/// beside the primary: a stray to fence (the fence itself decides again
/// from a survey of its own).
fn stray_seen(proxy: &Proxy) -> bool {
    let topology = proxy.topology.load();
    let Some(primary) = topology.primary else {
        return false;
    };
    let reports = proxy.reports.load();
    reports.iter().enumerate().any(|(index, report)| {
        index != primary
            && topology.backends[index].healthy
            && report.read_only == Some(false)
            && report.replication.is_none()
    })
}
