//! The HTTP admin API on `admin.address`: what operators, probes and
//! Prometheus read, and what `rwsplit status` asks.
//!
//! | path | answers |
//! |---|---|
//! | `GET /status` | JSON: the topology and each backend's health, lag, GTID, connections ([`status::Status`]) |
//! | `GET /metrics` | Prometheus text format ([`crate::metrics::render`]) |
//! | `GET /health` | 200 while the process runs (liveness) |
//! | `GET /ready` | 200 when a primary is known and the listener is up (naming any replication alarm), else 503 (readiness) |
//! | `POST /switchover?to=NAME` | moves the primary to NAME (or the best replica): its steps as lines of text, as they happen ([`change`]) |
//! | `POST /failover?to=NAME` | replaces a failed primary with NAME (or the best replica), the same way |
//!
//! With `admin.token` set, every path but the probes needs
//! `Authorization: Bearer <token>`; the probes need nothing, so that
//! container orchestrators can call them, and reveal nothing. A request
//! that changes the servers is refused when a web browser sent it (an
//! `Origin` header) or names a host that is not an address (DNS
//! rebinding): a page open on the same host must not be able to start a
//! switchover ([`guard`]).
//!
//! The listener holds at most [`MAX_CONNECTIONS`] connections, apart from
//! the MySQL listener's, and a request's head must arrive within
//! [`HEADER_TIMEOUT`]: half-sent requests cannot pin its descriptors.

pub mod change;
pub mod client;
mod guard;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::metrics::{self, Scene};
use crate::server::Proxy;
use status::Status;

/// Connections the admin listener holds at once; one more is closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a request's head (request line and headers) has to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let changes = Router::new()
        .route("/switchover", post(change::switchover))
        .route("/failover", post(change::failover))
        .route_layer(middleware::from_fn(guard::same_machine));
    let guarded = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .merge(changes)
        .route_layer(middleware::from_fn_with_state(proxy.clone(), authorize));
    let router = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .merge(guarded)
        .with_state(proxy);
    guard::serve_bounded(listener, router, shutdown).await;
}

/// Lets a request through when no token is configured or it carries the
/// right one (compared in constant time).
async fn authorize(State(proxy): State<Arc<Proxy>>, request: Request, next: Next) -> Response {
    let Some(token) = &proxy.config.admin.token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let matches =
        aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), token.as_bytes())
            .is_ok();
    if matches {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "admin.token is set: send Authorization: Bearer <token>\n",
        )
            .into_response()
    }
}

async fn status(State(proxy): State<Arc<Proxy>>) -> axum::Json<Status> {
    axum::Json(Status::of(&proxy))
}

async fn metrics(State(proxy): State<Arc<Proxy>>) -> Response {
    let topology = proxy.topology.load();
    let reports = proxy.reports.load();
    let names: Vec<String> = proxy
        .config
        .backends
        .iter()
        .map(|b| b.name.clone())
        .collect();
    let scene = Scene {
        topology: &topology,
        reports: &reports,
        names: &names,
        clients_open: proxy.registry.len(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&proxy.metrics, scene),
    )
        .into_response()
}

async fn ready(State(proxy): State<Arc<Proxy>>) -> Response {
    if proxy.ready() {
        // Still ready: reads left the replicas that do not follow, and
        // taking the sidecar out of service would take its application out.
        let alarms: String = proxy
            .config
            .backends
            .iter()
            .zip(proxy.reports.load().iter())
            .filter_map(|(backend, report)| {
                let alarm = report.replication_alarm.as_ref()?;
                Some(format!("replication alarm: {}: {alarm}\n", backend.name))
            })
            .collect();
        (StatusCode::OK, format!("ready\n{alarms}")).into_response()
    } else {
        let why = proxy
            .topology
            .load()
            .alarm
            .clone()
            .unwrap_or_else(|| "no primary confirmed by the monitor yet".to_owned());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response()
    }
}
