//! What keeps the admin API from being exhausted or driven by a web page:
//! a bounded accept loop with a deadline on request heads, and a check
//! that a request changing the servers did not come from a browser.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{HEADER_TIMEOUT, MAX_CONNECTIONS};
use crate::logging::Throttled;

/// Serves `router` on `listener` until `shutdown`: at most
/// [`MAX_CONNECTIONS`] connections at once (one more is closed at once),
/// each request's head within [`HEADER_TIMEOUT`]. Failed accepts (out of
/// descriptors, say) are logged once per interval, with how many.
pub(super) async fn serve_bounded(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut full = Throttled::default();
    let mut failed = Throttled::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        failed.warn(|count| tracing::warn!(%error, count, "the admin API cannot accept connections"));
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    full.warn(|count| tracing::warn!(%peer, count, max = MAX_CONNECTIONS, "admin API connections at their limit; closed"));
                    continue;
                };
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let _slot = slot;
                    // A client that goes away mid-request is nothing to report.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        }
    }
}

/// Lets a request that changes the servers through only when no web page
/// can have sent it: no `Origin` header (browsers send one with every
/// POST, and scripts cannot leave it out), and a `Host` that is an address
/// or `localhost`, so that a DNS name rebound to this machine cannot reach
/// it either.
pub(super) async fn same_machine(request: Request, next: Next) -> Response {
    let refused = {
        let headers = request.headers();
        let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("?"));
        refusal(text(header::ORIGIN), text(header::HOST))
    };
    match refused {
        None => next.run(request).await,
        Some(why) => (StatusCode::FORBIDDEN, format!("{why}\n")).into_response(),
    }
}

/// Why a request with these `Origin` and `Host` headers may not change
/// the servers, if it may not.
fn refusal(origin: Option<&str>, host: Option<&str>) -> Option<&'static str> {
    if origin.is_some() {
        return Some(
            "refused: a web page sent this request (it has an Origin header); use `rwsplit \
             switchover`, `rwsplit failover` or curl",
        );
    }
    let host = host?;
    let name = match host.parse::<SocketAddr>() {
        Ok(_) => return None,
        Err(_) => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.parse::<IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost") {
        None
    } else {
        Some(
            "refused: the Host header names a host, not an address (a DNS name rebound to this \
             machine would look the same); call the admin API by its address",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_come_from_tools_on_an_address_not_from_web_pages() {
        for host in [
            None,
            Some("127.0.0.1:6034"),
            Some("[::1]:6034"),
            Some("localhost:6034"),
            Some("10.0.0.5"),
        ] {
            assert_eq!(refusal(None, host), None, "{host:?}");
        }
        assert!(refusal(Some("http://evil.example"), Some("127.0.0.1:6034")).is_some());
        assert!(
            refusal(Some("null"), None).is_some(),
            "a sandboxed page says null"
        );
        assert!(
            refusal(None, Some("evil.example:6034")).is_some(),
            "DNS rebinding"
        );
        assert!(refusal(None, Some("rwsplit.internal")).is_some());
    }
}
