//! Counters the proxy keeps for `/status` and `/metrics`: plain atomics,
//! bumped on the hot path without locks or allocation, read when scraped.
//!
//! [`render`] writes them in the Prometheus text exposition format
//! (version 0.0.4), together with the topology's health and lag.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sql::StatementKind;
use crate::topology::{Lag, Topology};

/// Where a statement ran, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Primary,
    Replica,
}

impl Route {
    const ALL: [Route; 2] = [Route::Primary, Route::Replica];

    fn label(self) -> &'static str {
        match self {
            Route::Primary => "primary",
            Route::Replica => "replica",
        }
    }
}

/// A statement's kind, as a label (coarser than [`StatementKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindLabel {
    Read,
    Write,
    Session,
    Transaction,
}

impl KindLabel {
    const ALL: [KindLabel; 4] = [
        KindLabel::Read,
        KindLabel::Write,
        KindLabel::Session,
        KindLabel::Transaction,
    ];

    fn label(self) -> &'static str {
        match self {
            KindLabel::Read => "read",
            KindLabel::Write => "write",
            KindLabel::Session => "session",
            KindLabel::Transaction => "transaction",
        }
    }

    pub fn of(kind: &StatementKind) -> KindLabel {
        match kind {
            StatementKind::Read | StatementKind::PreviousResult => KindLabel::Read,
            StatementKind::SessionState(_) | StatementKind::PinsToPrimary => KindLabel::Session,
            StatementKind::Begin { .. }
            | StatementKind::Transaction
            | StatementKind::LockTables
            | StatementKind::UnlockTables => KindLabel::Transaction,
            StatementKind::Write
            | StatementKind::CreateTemporaryTable(_)
            | StatementKind::DropTables(_)
            | StatementKind::ExecutePrepared(_) => KindLabel::Write,
        }
    }
}

/// Upper bounds of the latency histogram's buckets, in microseconds.
const BUCKETS_MICROS: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// Per-backend counters.
#[derive(Debug, Default)]
pub struct BackendMetrics {
    /// Commands relayed to the backend.
    pub commands: AtomicU64,
    /// Connections open to it (held by sessions or idle in the pool); the
    /// connections themselves keep it up to date.
    pub open_connections: Arc<AtomicU64>,
}

/// Everything counted, for the whole process.
#[derive(Debug)]
pub struct Metrics {
    /// Statements by route and kind.
    statements: [[AtomicU64; 4]; 2],
    /// Statements that found no backend to run on (no primary).
    refused: AtomicU64,
    /// Cumulative latency histogram of statements (routing to the end of
    /// the response), one count per bucket, plus the sum.
    latency: [AtomicU64; BUCKETS_MICROS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// Client connections accepted, and refused for the connection limit.
    pub clients_accepted: AtomicU64,
    pub clients_refused: AtomicU64,
    pub backends: Vec<BackendMetrics>,
}

impl Metrics {
    pub fn new(backends: usize) -> Metrics {
        Metrics {
            statements: Default::default(),
            refused: AtomicU64::new(0),
            latency: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
            clients_accepted: AtomicU64::new(0),
            clients_refused: AtomicU64::new(0),
            backends: (0..backends).map(|_| BackendMetrics::default()).collect(),
        }
    }

    /// Counts a statement that ran, and how long it took.
    pub fn statement(&self, route: Route, kind: KindLabel, took: Duration) {
        self.statements[route as usize][kind as usize].fetch_add(1, Ordering::Relaxed);
        let micros = took.as_micros().min(u128::from(u64::MAX)) as u64;
        if let Some(bucket) = BUCKETS_MICROS.iter().position(|&b| micros <= b) {
            self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts a statement that found no backend.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Statements that ran with `route`, of every kind.
    pub fn statements_on(&self, route: Route) -> u64 {
        self.statements[route as usize]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// What [`render`] shows besides the counters.
#[derive(Debug, Clone, Copy)]
pub struct Scene<'a> {
    pub topology: &'a Topology,
    /// The backends' names, in configuration order.
    pub names: &'a [String],
    /// Client connections open now.
    pub clients_open: usize,
}

/// Renders the metrics and the scene as Prometheus text.
pub fn render(metrics: &Metrics, scene: Scene<'_>) -> String {
    let mut out = String::with_capacity(4096);
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    family(
        &mut out,
        "rwsplit_statements_total",
        "counter",
        "Statements run, by where they ran and their kind.",
    );
    for route in Route::ALL {
        for kind in KindLabel::ALL {
            let value = load(&metrics.statements[route as usize][kind as usize]);
            let _ = writeln!(
                out,
                "rwsplit_statements_total{{route=\"{}\",kind=\"{}\"}} {value}",
                route.label(),
                kind.label()
            );
        }
    }
    family(
        &mut out,
        "rwsplit_statements_refused_total",
        "counter",
        "Statements rwsplit answered with an error because no backend could take them (no primary known, backend unreachable).",
    );
    let _ = writeln!(
        out,
        "rwsplit_statements_refused_total {}",
        load(&metrics.refused)
    );
    family(
        &mut out,
        "rwsplit_statement_duration_seconds",
        "histogram",
        "Time from routing a statement to the end of its response.",
    );
    let mut cumulative = 0;
    for (bound, count) in BUCKETS_MICROS.iter().zip(&metrics.latency) {
        cumulative += load(count);
        let le = *bound as f64 / 1e6;
        let _ = writeln!(
            out,
            "rwsplit_statement_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let count = load(&metrics.latency_count);
    let _ = writeln!(
        out,
        "rwsplit_statement_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let sum = load(&metrics.latency_sum_micros) as f64 / 1e6;
    let _ = writeln!(out, "rwsplit_statement_duration_seconds_sum {sum}");
    let _ = writeln!(out, "rwsplit_statement_duration_seconds_count {count}");
    family(
        &mut out,
        "rwsplit_client_connections",
        "gauge",
        "Client connections open now.",
    );
    let _ = writeln!(out, "rwsplit_client_connections {}", scene.clients_open);
    family(
        &mut out,
        "rwsplit_client_connections_accepted_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(
        out,
        "rwsplit_client_connections_accepted_total {}",
        load(&metrics.clients_accepted)
    );
    family(
        &mut out,
        "rwsplit_client_connections_refused_total",
        "counter",
        "Client connections refused at listen.max_client_connections.",
    );
    let _ = writeln!(
        out,
        "rwsplit_client_connections_refused_total {}",
        load(&metrics.clients_refused)
    );
    render_backends(&mut out, metrics, scene.topology, scene.names);
    out
}

fn render_backends(out: &mut String, metrics: &Metrics, topology: &Topology, names: &[String]) {
    let backends = || {
        names
            .iter()
            .zip(&topology.backends)
            .zip(&metrics.backends)
            .enumerate()
    };
    let flag = |b: bool| u8::from(b);
    family(
        out,
        "rwsplit_backend_up",
        "gauge",
        "1 when the backend answers health checks.",
    );
    for (_, ((name, state), _)) in backends() {
        let _ = writeln!(
            out,
            "rwsplit_backend_up{{backend=\"{name}\"}} {}",
            flag(state.healthy)
        );
    }
    family(
        out,
        "rwsplit_backend_primary",
        "gauge",
        "1 for the backend that takes writes.",
    );
    for (index, ((name, _), _)) in backends() {
        let _ = writeln!(
            out,
            "rwsplit_backend_primary{{backend=\"{name}\"}} {}",
            flag(topology.primary == Some(index))
        );
    }
    family(
        out,
        "rwsplit_backend_readable",
        "gauge",
        "1 when the backend is a replica in read rotation.",
    );
    for (_, ((name, state), _)) in backends() {
        let _ = writeln!(
            out,
            "rwsplit_backend_readable{{backend=\"{name}\"}} {}",
            flag(state.readable)
        );
    }
    family(
        out,
        "rwsplit_backend_replication_lag_seconds",
        "gauge",
        "Measured replication lag (NaN when unknown).",
    );
    for (_, ((name, state), _)) in backends() {
        let lag = match state.lag {
            Lag::Measured(d) => d.as_secs_f64().to_string(),
            Lag::Unknown => "NaN".to_owned(),
        };
        let _ = writeln!(
            out,
            "rwsplit_backend_replication_lag_seconds{{backend=\"{name}\"}} {lag}"
        );
    }
    family(
        out,
        "rwsplit_backend_commands_total",
        "counter",
        "Commands relayed to the backend.",
    );
    for (_, ((name, _), counters)) in backends() {
        let _ = writeln!(
            out,
            "rwsplit_backend_commands_total{{backend=\"{name}\"}} {}",
            counters.commands.load(Ordering::Relaxed)
        );
    }
    family(
        out,
        "rwsplit_backend_connections",
        "gauge",
        "Connections open to the backend (in sessions and pooled).",
    );
    for (_, ((name, _), counters)) in backends() {
        let _ = writeln!(
            out,
            "rwsplit_backend_connections{{backend=\"{name}\"}} {}",
            counters.open_connections.load(Ordering::Relaxed)
        );
    }
    family(
        out,
        "rwsplit_primary_alarm",
        "gauge",
        "1 while writes are refused: no primary, or several writable servers.",
    );
    let _ = writeln!(
        out,
        "rwsplit_primary_alarm {}",
        flag(topology.alarm.is_some())
    );
}

/// Writes the HELP and TYPE lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::topology::BackendState;

    fn topology() -> Topology {
        let backend = |role, lag| BackendState {
            role,
            healthy: true,
            readable: role == Role::Replica,
            lag,
            gtid: None,
            weight: 1,
            backup: false,
        };
        Topology {
            primary: Some(0),
            backends: vec![
                backend(Role::Primary, Lag::Measured(Duration::ZERO)),
                backend(Role::Replica, Lag::Unknown),
            ],
            alarm: None,
        }
    }

    #[test]
    fn statements_land_in_their_buckets() {
        let metrics = Metrics::new(2);
        metrics.statement(Route::Replica, KindLabel::Read, Duration::from_micros(90));
        metrics.statement(Route::Replica, KindLabel::Read, Duration::from_millis(3));
        metrics.statement(Route::Primary, KindLabel::Write, Duration::from_secs(60));
        assert_eq!(metrics.statements_on(Route::Replica), 2);
        let scene = Scene {
            topology: &topology(),
            names: &["db1".into(), "db2".into()],
            clients_open: 7,
        };
        let text = render(&metrics, scene);
        for line in [
            "rwsplit_statements_total{route=\"replica\",kind=\"read\"} 2",
            "rwsplit_statements_total{route=\"primary\",kind=\"write\"} 1",
            "rwsplit_statement_duration_seconds_bucket{le=\"0.0001\"} 1",
            "rwsplit_statement_duration_seconds_bucket{le=\"0.005\"} 2",
            "rwsplit_statement_duration_seconds_bucket{le=\"5\"} 2",
            "rwsplit_statement_duration_seconds_bucket{le=\"+Inf\"} 3",
            "rwsplit_statement_duration_seconds_count 3",
            "rwsplit_backend_replication_lag_seconds{backend=\"db2\"} NaN",
            "rwsplit_backend_primary{backend=\"db1\"} 1",
            "rwsplit_backend_readable{backend=\"db2\"} 1",
            "rwsplit_client_connections 7",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn kinds_map_to_labels() {
        assert_eq!(KindLabel::of(&StatementKind::Read), KindLabel::Read);
        assert_eq!(
            KindLabel::of(&StatementKind::Transaction),
            KindLabel::Transaction
        );
        assert_eq!(
            KindLabel::of(&StatementKind::PinsToPrimary),
            KindLabel::Session
        );
        assert_eq!(
            KindLabel::of(&StatementKind::DropTables(vec![])),
            KindLabel::Write
        );
    }
}
