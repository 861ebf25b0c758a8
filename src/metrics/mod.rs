//! Counters the proxy keeps for `/status` and `/metrics`: plain atomics,
//! bumped on the hot path without locks or allocation, read when scraped.
//! What the hot path counts is kept per session thread, each thread's
//! counters on cache lines of their own, and summed when read: two threads
//! bumping the same counters would pass the line between their cores on
//! every statement.
//!
//! [`render`] writes them in the Prometheus text exposition format
//! (version 0.0.4), together with the topology's health and lag.

mod stopwatch;

pub use stopwatch::Stopwatch;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::sql::StatementKind;
use crate::topology::monitor::BackendReport;
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
            | StatementKind::ExecutePrepared(_)
            // (Never run, so never counted.)
            | StatementKind::Refused(_) => KindLabel::Write,
        }
    }
}

/// Upper bounds of the latency histogram's buckets, in microseconds.
const BUCKETS_MICROS: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// Per-backend counters that are not on the hot path.
#[derive(Debug, Default)]
pub struct BackendMetrics {
    /// Connections open to it (held by sessions or idle in the pool); the
    /// connections themselves keep it up to date.
    pub open_connections: Arc<AtomicU64>,
}

/// Everything counted, for the whole process.
#[derive(Debug)]
pub struct Metrics {
    /// One per session thread.
    threads: Box<[ThreadMetrics]>,
    /// Client connections accepted; refused for the connection limit, and
    /// for `listen.max_logins_per_address`.
    pub clients_accepted: AtomicU64,
    pub clients_refused: AtomicU64,
    pub clients_refused_logging_in: AtomicU64,
    /// Logins and COM_CHANGE_USERs refused for a wrong user or password.
    pub login_failures: AtomicU64,
    /// Milliseconds a stray server was seen writable beside the primary
    /// before it was fenced, summed over the strays fenced.
    pub stray_writable_ms: AtomicU64,
    pub backends: Vec<BackendMetrics>,
    /// Switchovers and failovers by kind and result (done, failed).
    topology_changes: [[AtomicU64; 2]; 2],
    /// Transactions moved to a new primary: replayed, not replayed.
    transaction_replays: [AtomicU64; 2],
}

/// What one session thread counts. Aligned to two cache lines (the
/// adjacent-line prefetcher pairs them) so that no other thread's counters
/// share its lines.
#[derive(Debug)]
#[repr(align(128))]
pub struct ThreadMetrics {
    /// Statements by route and kind.
    statements: [[AtomicU64; 4]; 2],
    /// Statements that found no backend to run on (no primary).
    refused: AtomicU64,
    /// Cumulative latency histogram of statements (routing to the end of
    /// the response), one count per bucket, plus the sum.
    latency: [AtomicU64; BUCKETS_MICROS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// Sessions running on the thread. The acceptor writes it too, once
    /// per client, which is rare enough to share the line.
    pub sessions: AtomicUsize,
    backends: Box<[BackendCounters]>,
}

/// One session thread's counters for one backend, on a line of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct BackendCounters {
    /// Commands relayed to the backend.
    commands: AtomicU64,
    /// Commands relayed and not yet answered in full.
    in_flight: AtomicU32,
}

impl Metrics {
    pub fn new(backends: usize, threads: usize) -> Metrics {
        Metrics {
            threads: (0..threads).map(|_| ThreadMetrics::new(backends)).collect(),
            clients_accepted: AtomicU64::new(0),
            clients_refused: AtomicU64::new(0),
            clients_refused_logging_in: AtomicU64::new(0),
            login_failures: AtomicU64::new(0),
            stray_writable_ms: AtomicU64::new(0),
            backends: (0..backends).map(|_| BackendMetrics::default()).collect(),
            topology_changes: Default::default(),
            transaction_replays: Default::default(),
        }
    }

    /// Counts a switchover or failover that ran (not one refused for
    /// another under way).
    pub fn topology_change(&self, kind: crate::failover::Kind, done: bool) {
        self.topology_changes[kind as usize][usize::from(!done)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a transaction replayed on a new primary, or whose replay
    /// failed.
    pub fn transaction_replay(&self, done: bool) {
        self.transaction_replays[usize::from(!done)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of session thread `index`.
    pub fn thread(&self, index: usize) -> &ThreadMetrics {
        &self.threads[index]
    }

    /// Statements that ran with `route`, of every kind.
    pub fn statements_on(&self, route: Route) -> u64 {
        self.sum(|t| t.statements[route as usize].iter().map(load).sum())
    }

    /// Commands relayed to backend `index`.
    pub fn commands(&self, index: usize) -> u64 {
        self.sum(|t| load(&t.backends[index].commands))
    }

    /// Commands relayed to backend `index` and not answered in full yet.
    pub fn in_flight(&self, index: usize) -> u32 {
        self.threads
            .iter()
            .map(|t| t.backends[index].in_flight.load(Ordering::Relaxed))
            .sum()
    }

    fn sum(&self, counter: impl Fn(&ThreadMetrics) -> u64) -> u64 {
        self.threads.iter().map(counter).sum()
    }
}

impl ThreadMetrics {
    fn new(backends: usize) -> ThreadMetrics {
        ThreadMetrics {
            statements: Default::default(),
            refused: AtomicU64::new(0),
            latency: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
            sessions: AtomicUsize::new(0),
            backends: (0..backends).map(|_| BackendCounters::default()).collect(),
        }
    }

    /// Counts a statement that ran, and how long it took (microseconds).
    pub fn statement(&self, route: Route, kind: KindLabel, micros: u64) {
        self.statements[route as usize][kind as usize].fetch_add(1, Ordering::Relaxed);
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

    /// Counts a command relayed to `backend`, in flight until the guard
    /// returned is dropped: when the response is in, or when the session
    /// is aborted (KILL, shutdown) in the middle of it.
    pub fn relaying(&self, backend: usize) -> InFlight<'_> {
        let counters = &self.backends[backend];
        counters.commands.fetch_add(1, Ordering::Relaxed);
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&counters.in_flight)
    }
}

/// A command in flight on a backend; see [`ThreadMetrics::relaying`].
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// What [`render`] shows besides the counters.
#[derive(Debug, Clone, Copy)]
pub struct Scene<'a> {
    pub topology: &'a Topology,
    /// The monitor's reports, in configuration order.
    pub reports: &'a [BackendReport],
    /// The backends' names, in configuration order.
    pub names: &'a [String],
    /// Client connections open now.
    pub clients_open: usize,
}

/// Renders the metrics and the scene as Prometheus text.
pub fn render(metrics: &Metrics, scene: Scene<'_>) -> String {
    let mut out = String::with_capacity(4096);
    let statements = Route::ALL.iter().flat_map(|&route| {
        KindLabel::ALL.iter().map(move |&kind| {
            (
                format!("{{route=\"{}\",kind=\"{}\"}}", route.label(), kind.label()),
                metrics
                    .sum(|t| load(&t.statements[route as usize][kind as usize]))
                    .to_string(),
            )
        })
    });
    let one = |value: String| [(String::new(), value)];
    write_family(
        &mut out,
        "rwsplit_statements_total",
        "counter",
        "Statements run, by where they ran and their kind.",
        statements,
    );
    write_family(
        &mut out,
        "rwsplit_statements_refused_total",
        "counter",
        "Statements rwsplit answered with an error because no backend could take them (no primary known, backend unreachable).",
        one(metrics.sum(|t| load(&t.refused)).to_string()),
    );
    render_latency(&mut out, metrics);
    write_family(
        &mut out,
        "rwsplit_client_connections",
        "gauge",
        "Client connections open now.",
        one(scene.clients_open.to_string()),
    );
    write_family(
        &mut out,
        "rwsplit_client_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        one(load(&metrics.clients_accepted).to_string()),
    );
    write_family(
        &mut out,
        "rwsplit_client_connections_refused_total",
        "counter",
        "Client connections refused at accept: at listen.max_client_connections, or with listen.max_logins_per_address of their address logging in and eight times as many waiting.",
        [
            (
                "{reason=\"max_client_connections\"}",
                &metrics.clients_refused,
            ),
            (
                "{reason=\"max_logins_per_address\"}",
                &metrics.clients_refused_logging_in,
            ),
        ]
        .into_iter()
        .map(|(labels, count)| (labels.to_string(), load(count).to_string())),
    );
    write_family(
        &mut out,
        "rwsplit_login_failures_total",
        "counter",
        "Logins and COM_CHANGE_USERs refused for a wrong user or password.",
        one(load(&metrics.login_failures).to_string()),
    );
    write_family(
        &mut out,
        "rwsplit_stray_writable_seconds_total",
        "counter",
        "Time two servers were writable as this rwsplit saw it (a lower bound): from the first check that found a stray writable beside the primary to its fence, summed over the strays fenced.",
        one((load(&metrics.stray_writable_ms) as f64 / 1000.0).to_string()),
    );
    let changes = crate::failover::Kind::ALL.iter().flat_map(|&kind| {
        ["done", "failed"]
            .iter()
            .enumerate()
            .map(move |(result, label)| {
                (
                    format!("{{kind=\"{}\",result=\"{label}\"}}", kind.name()),
                    load(&metrics.topology_changes[kind as usize][result]).to_string(),
                )
            })
    });
    write_family(
        &mut out,
        "rwsplit_topology_changes_total",
        "counter",
        "Switchovers and failovers this rwsplit ran, by kind and result.",
        changes,
    );
    let replays = ["done", "failed"]
        .iter()
        .enumerate()
        .map(|(result, label)| {
            (
                format!("{{result=\"{label}\"}}"),
                load(&metrics.transaction_replays[result]).to_string(),
            )
        });
    write_family(
        &mut out,
        "rwsplit_transaction_replays_total",
        "counter",
        "Transactions moved to a new primary by replaying them (routing.transaction_replay), by result.",
        replays,
    );
    let threads = metrics.threads.iter().enumerate().map(|(index, thread)| {
        (
            format!("{{thread=\"{index}\"}}"),
            thread.sessions.load(Ordering::Relaxed).to_string(),
        )
    });
    write_family(
        &mut out,
        "rwsplit_thread_sessions",
        "gauge",
        "Client sessions on each session thread (listen.threads).",
        threads,
    );
    render_backends(&mut out, metrics, scene);
    out
}

/// The latency histogram, with cumulative buckets.
fn render_latency(out: &mut String, metrics: &Metrics) {
    let name = "rwsplit_statement_duration_seconds";
    write_family(
        out,
        name,
        "histogram",
        "Time from routing a statement to the end of its response.",
        [],
    );
    let mut cumulative = 0;
    for (bucket, bound) in BUCKETS_MICROS.iter().enumerate() {
        cumulative += metrics.sum(|t| load(&t.latency[bucket]));
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let count = metrics.sum(|t| load(&t.latency_count));
    let sum = metrics.sum(|t| load(&t.latency_sum_micros)) as f64 / 1e6;
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
    );
}

/// One sample per backend for each per-backend metric.
fn render_backends(out: &mut String, metrics: &Metrics, scene: Scene<'_>) {
    let topology = scene.topology;
    let flag = |b: bool| u8::from(b).to_string();
    type Value<'a> = Box<dyn Fn(usize) -> String + 'a>;
    let families: [(&str, &str, &str, Value<'_>); 8] = [
        (
            "rwsplit_backend_up",
            "gauge",
            "1 when the backend answers health checks.",
            Box::new(|i| flag(topology.backends[i].healthy)),
        ),
        (
            "rwsplit_backend_primary",
            "gauge",
            "1 for the backend that takes writes.",
            Box::new(|i| flag(topology.primary == Some(i))),
        ),
        (
            "rwsplit_backend_readable",
            "gauge",
            "1 when the backend is a replica in read rotation.",
            Box::new(|i| flag(topology.backends[i].readable)),
        ),
        (
            "rwsplit_backend_replication_lag_seconds",
            "gauge",
            "Measured replication lag (NaN when unknown).",
            Box::new(|i| match topology.backends[i].lag {
                Lag::Measured(d) => d.as_secs_f64().to_string(),
                Lag::Unknown => "NaN".to_owned(),
            }),
        ),
        (
            "rwsplit_backend_replication_alarm",
            "gauge",
            "1 when the replica does not follow its primary: its replication threads stopped, or it has transactions the primary lacks (see /status).",
            Box::new(|i| {
                flag(
                    scene
                        .reports
                        .get(i)
                        .is_some_and(|r| r.replication_alarm.is_some()),
                )
            }),
        ),
        (
            "rwsplit_backend_lost_transactions",
            "gauge",
            "Transactions a fenced server has that the primary lacks (acknowledged on a failed primary, never replicated), until it replicates again; 0 otherwise.",
            Box::new(|i| {
                let reports = &scene.reports;
                let lost = reports.get(i).and_then(|r| r.lost_transactions);
                lost.unwrap_or(0).to_string()
            }),
        ),
        (
            "rwsplit_backend_commands_total",
            "counter",
            "Commands relayed to the backend.",
            Box::new(|i| metrics.commands(i).to_string()),
        ),
        (
            "rwsplit_backend_connections",
            "gauge",
            "Connections open to the backend (in sessions and pooled).",
            Box::new(|i| {
                metrics.backends[i]
                    .open_connections
                    .load(Ordering::Relaxed)
                    .to_string()
            }),
        ),
    ];
    for (name, kind, help, value) in &families {
        let samples = scene
            .names
            .iter()
            .enumerate()
            .map(|(i, backend)| (format!("{{backend=\"{backend}\"}}"), value(i)));
        write_family(out, name, kind, help, samples);
    }
    let alarm = [(String::new(), flag(topology.alarm.is_some()))];
    write_family(
        out,
        "rwsplit_primary_alarm",
        "gauge",
        "1 while writes are refused: no primary, or several writable servers.",
        alarm,
    );
}

/// Writes a metric family: its HELP and TYPE lines and `(labels, value)`
/// samples.
fn write_family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, String)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::topology::BackendState;

    fn topology() -> Topology {
        Topology {
            primary: Some(0),
            backends: vec![
                BackendState::in_service(Role::Primary),
                BackendState {
                    lag: Lag::Unknown,
                    ..BackendState::in_service(Role::Replica)
                },
            ],
            alarm: None,
        }
    }

    #[test]
    fn statements_land_in_their_buckets() {
        let metrics = Metrics::new(2, 2);
        let (one, two) = (metrics.thread(0), metrics.thread(1));
        one.statement(Route::Replica, KindLabel::Read, 90);
        two.statement(Route::Replica, KindLabel::Read, 3_000);
        one.statement(Route::Primary, KindLabel::Write, 60_000_000);
        two.refused();
        two.sessions.store(4, Ordering::Relaxed);
        assert_eq!(metrics.statements_on(Route::Replica), 2);
        let stopped = BackendReport {
            replication_alarm: Some("its IO thread has stopped".into()),
            ..BackendReport::default()
        };
        let scene = Scene {
            topology: &topology(),
            reports: &[BackendReport::default(), stopped],
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
            "rwsplit_backend_replication_alarm{backend=\"db1\"} 0",
            "rwsplit_backend_replication_alarm{backend=\"db2\"} 1",
            "rwsplit_client_connections 7",
            "rwsplit_statements_refused_total 1",
            "rwsplit_thread_sessions{thread=\"0\"} 0",
            "rwsplit_thread_sessions{thread=\"1\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn commands_in_flight_are_summed_over_threads() {
        let metrics = Metrics::new(2, 2);
        let answered = metrics.thread(0).relaying(1);
        let _running = metrics.thread(1).relaying(1);
        let _also = metrics.thread(1).relaying(0);
        drop(answered);
        assert_eq!((metrics.commands(0), metrics.commands(1)), (1, 2));
        assert_eq!((metrics.in_flight(0), metrics.in_flight(1)), (1, 1));
    }

    #[test]
    fn threads_count_on_lines_of_their_own() {
        let metrics = Metrics::new(1, 2);
        let one = std::ptr::from_ref(metrics.thread(0)) as usize;
        let two = std::ptr::from_ref(metrics.thread(1)) as usize;
        assert_eq!(one % 128, 0);
        assert!(two - one >= std::mem::size_of::<ThreadMetrics>());
        let counters = std::ptr::from_ref(&metrics.thread(0).backends[0]) as usize;
        assert_eq!(counters % 128, 0);
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
