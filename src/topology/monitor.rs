//! The monitor: checks every backend each `monitor.interval`, measures
//! replication lag, discovers the primary, and publishes the topology.
//!
//! Each backend has a checking task of its own, so one slow or silent
//! backend never delays the checks of the others; results go to one
//! aggregating task, which owns all state and is the only writer of the
//! topology. A heartbeat task writes rwsplit's clock to the primary every
//! interval (see [`super::lag`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::check::{CheckError, Checker, Observation, Replication};
use super::discovery::{Seen, discover};
use super::health::{Flip, Thresholds};
use super::lag::HeartbeatLog;
use super::{BackendState, Lag, Topology, TopologyCell};
use crate::config::{Config, Role};

/// What the monitor knows about one backend beyond the topology, for
/// `rwsplit status` and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendReport {
    pub version: Option<String>,
    pub read_only: Option<bool>,
    pub replication: Option<Replication>,
    pub lag_source: LagSource,
    /// The last failed check's error, while the backend fails.
    pub last_error: Option<String>,
}

/// Where a replica's lag comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LagSource {
    #[default]
    None,
    Heartbeat,
    SecondsBehindMaster,
}

/// The monitor's report on every backend, published for readers.
pub type Reports = ArcSwap<Vec<BackendReport>>;

/// Starts the monitor's tasks; they run until `tasks` is dropped.
pub fn start(config: &Config, topology: Arc<TopologyCell>, reports: Arc<Reports>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let writer_id = writer_id();
    let heartbeat = Arc::new(Heartbeat {
        log: Mutex::default(),
        enabled: AtomicBool::new(true),
    });
    let heartbeat_query = format!(
        "SELECT ts FROM {} WHERE writer = '{writer_id}'",
        config.monitor.heartbeat_table
    );
    let (results, incoming) = mpsc::channel(64);
    for (index, backend) in config.backends.iter().enumerate() {
        let checker = Checker::new(backend, &config.monitor, heartbeat_query.clone());
        tasks.spawn(watch(
            index,
            checker,
            config.monitor.interval,
            results.clone(),
        ));
    }
    tasks.spawn(write_heartbeats(
        config.clone(),
        topology.clone(),
        heartbeat.clone(),
        writer_id,
    ));
    tasks.spawn(aggregate(
        config.clone(),
        topology,
        reports,
        heartbeat,
        incoming,
    ));
    tasks
}

/// This rwsplit's row in the heartbeat table: unique per process, so that
/// several rwsplit sidecars measure lag each with its own clock.
fn writer_id() -> String {
    let mut random = [0u8; 6];
    // The system RNG failing is not recoverable; aws-lc aborts on it itself.
    aws_lc_rs::rand::fill(&mut random).expect("system random number generator");
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("rwsplit-{}-{hex}", std::process::id())
}

/// Checks one backend every interval, forever.
async fn watch(
    index: usize,
    mut checker: Checker,
    interval: Duration,
    results: mpsc::Sender<(usize, Result<Observation, CheckError>)>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = checker.check().await;
        if results.send((index, result)).await.is_err() {
            return;
        }
    }
}

/// The heartbeat writes and whether they work.
#[derive(Debug)]
struct Heartbeat {
    log: Mutex<HeartbeatLog>,
    /// False once the monitor account turned out unable to write: lag then
    /// comes from Seconds_Behind_Master.
    enabled: AtomicBool,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Writes rwsplit's clock to its heartbeat row on the primary every
/// interval, creating the table first.
async fn write_heartbeats(
    config: Config,
    topology: Arc<TopologyCell>,
    heartbeat: Arc<Heartbeat>,
    writer: String,
) {
    let monitor = &config.monitor;
    let table = &monitor.heartbeat_table;
    let schema = table.split('.').next().unwrap_or("rwsplit");
    let mut ticks = tokio::time::interval(monitor.interval);
    let mut conn: Option<(usize, mysql_async::Conn)> = None;
    loop {
        ticks.tick().await;
        let Some(primary) = topology.load().primary else {
            continue;
        };
        if conn.as_ref().is_none_or(|(index, _)| *index != primary) {
            let checker_opts = Checker::new(&config.backends[primary], monitor, String::new());
            conn = match checker_opts.connect().await {
                Ok(mut new) => {
                    let create = format!(
                        "CREATE DATABASE IF NOT EXISTS {schema}; \
                         CREATE TABLE IF NOT EXISTS {table} (writer VARCHAR(64) PRIMARY KEY, ts BIGINT UNSIGNED NOT NULL)"
                    );
                    match timed(monitor.query_timeout, new.query_drop(create)).await {
                        Ok(()) => Some((primary, new)),
                        Err(error) => {
                            disable(&heartbeat, &error);
                            None
                        }
                    }
                }
                Err(_) => None,
            };
        }
        let Some((_, primary_conn)) = conn.as_mut() else {
            continue;
        };
        let written = now_micros();
        let write = format!("REPLACE INTO {table} (writer, ts) VALUES ('{writer}', {written})");
        match timed(monitor.query_timeout, primary_conn.query_drop(write)).await {
            Ok(()) => {
                heartbeat.enabled.store(true, Ordering::Relaxed);
                heartbeat
                    .log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(written);
            }
            Err(error) => {
                if is_permission_error(&error) {
                    disable(&heartbeat, &error);
                }
                conn = None;
            }
        }
    }
}

fn is_permission_error(error: &str) -> bool {
    // 1044/1142: access denied; 1290: read-only; 1227: missing privilege.
    [
        "1044",
        "1142",
        "1290",
        "1227",
        "denied",
        "read-only",
        "--read-only",
    ]
    .iter()
    .any(|marker| error.contains(marker))
}

fn disable(heartbeat: &Heartbeat, error: &str) {
    if heartbeat.enabled.swap(false, Ordering::Relaxed) {
        warn!(
            %error,
            "the monitor account cannot write the heartbeat table; replication lag falls back to \
             Seconds_Behind_Master (1 s resolution). Grant it all privileges on the heartbeat schema \
             for sub-second lag"
        );
    }
}

async fn timed(
    duration: Duration,
    call: impl std::future::Future<Output = Result<(), mysql_async::Error>>,
) -> Result<(), String> {
    match tokio::time::timeout(duration, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {duration:?}")),
    }
}

/// What the aggregator keeps per backend.
#[derive(Debug)]
struct Tracked {
    up: Flip,
    /// In read rotation as far as replication and lag go.
    rotation: Flip,
    seen: Option<Seen>,
    lag: Lag,
    gtid: Option<super::gtid::GtidPosition>,
    report: BackendReport,
}

/// Owns every backend's state; turns check results into topologies.
async fn aggregate(
    config: Config,
    topology: Arc<TopologyCell>,
    reports: Arc<Reports>,
    heartbeat: Arc<Heartbeat>,
    mut incoming: mpsc::Receiver<(usize, Result<Observation, CheckError>)>,
) {
    let names: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
    let monitor = &config.monitor;
    let health = Thresholds {
        to_false: monitor.failure_threshold,
        to_true: monitor.recovery_threshold,
    };
    // Out of rotation at once; back after recovery_threshold good checks.
    let rotation = Thresholds {
        to_false: 1,
        to_true: monitor.recovery_threshold,
    };
    let mut tracked: Vec<Tracked> = config
        .backends
        .iter()
        .map(|_| Tracked {
            up: Flip::new(true),
            rotation: Flip::new(false),
            seen: None,
            lag: Lag::Unknown,
            gtid: None,
            report: BackendReport::default(),
        })
        .collect();
    while let Some((index, result)) = incoming.recv().await {
        let name = &names[index];
        let entry = &mut tracked[index];
        match result {
            Ok(observation) => {
                if entry.up.observe(true, health) {
                    info!(backend = name, "backend is up again");
                }
                let (lag, source) = measure_lag(&observation, &heartbeat);
                let in_limit =
                    matches!(lag, Lag::Measured(d) if d <= config.routing.max_replication_lag);
                if entry.rotation.observe(in_limit, rotation) {
                    if in_limit {
                        info!(backend = name, ?lag, "replica back in read rotation");
                    } else {
                        warn!(
                            backend = name,
                            ?lag,
                            "replica leaves read rotation (lag over routing.max_replication_lag, unknown, or replication stopped)"
                        );
                    }
                }
                entry.seen = Some(Seen {
                    reachable: true,
                    read_only: observation.read_only,
                    replicating: observation.replication.is_some(),
                });
                entry.lag = lag;
                entry.gtid = observation.gtid.clone();
                entry.report = BackendReport {
                    version: Some(observation.version),
                    read_only: Some(observation.read_only),
                    replication: observation.replication,
                    lag_source: source,
                    last_error: None,
                };
            }
            Err(error) => {
                if entry.up.observe(false, health) {
                    warn!(backend = name, %error, failures = monitor.failure_threshold, "backend is down");
                }
                entry.seen = Some(Seen {
                    reachable: false,
                    read_only: false,
                    replicating: false,
                });
                entry.lag = Lag::Unknown;
                entry.report.last_error = Some(error.to_string());
            }
        }
        let next = build(&config, &tracked, &topology.load(), &names);
        let current = topology.load();
        if next.primary != current.primary || next.alarm != current.alarm {
            match (&next.primary, &next.alarm) {
                (Some(primary), _) => info!(primary = names[*primary], "primary"),
                (None, Some(alarm)) => warn!(alarm, "no primary: writes are refused"),
                (None, None) => {}
            }
        }
        if **current != next {
            topology.store(next);
        }
        reports.store(Arc::new(tracked.iter().map(|t| t.report.clone()).collect()));
    }
}

/// A replica's lag, and where it came from: unknown unless replication runs
/// and the heartbeat (or, without one, Seconds_Behind_Master) tells.
fn measure_lag(observation: &Observation, heartbeat: &Heartbeat) -> (Lag, LagSource) {
    let Some(replication) = &observation.replication else {
        return (Lag::Unknown, LagSource::None);
    };
    if !replication.io_running || !replication.sql_running {
        return (Lag::Unknown, LagSource::None);
    }
    if heartbeat.enabled.load(Ordering::Relaxed) {
        return match observation.heartbeat {
            Some(seen) => {
                let log = heartbeat.log.lock().unwrap_or_else(|p| p.into_inner());
                (
                    Lag::Measured(log.lag(seen, now_micros())),
                    LagSource::Heartbeat,
                )
            }
            None => (Lag::Unknown, LagSource::Heartbeat),
        };
    }
    match replication.seconds_behind {
        Some(seconds) => (
            Lag::Measured(Duration::from_secs(seconds)),
            LagSource::SecondsBehindMaster,
        ),
        None => (Lag::Unknown, LagSource::SecondsBehindMaster),
    }
}

/// The topology the tracked state describes.
fn build(config: &Config, tracked: &[Tracked], current: &Topology, names: &[String]) -> Topology {
    let seen: Vec<Option<Seen>> = tracked.iter().map(|t| t.seen).collect();
    let discovered = discover(&seen, current.primary, names);
    let backends = config
        .backends
        .iter()
        .zip(tracked)
        .enumerate()
        .map(|(index, (backend, t))| {
            let is_primary = discovered.primary == Some(index);
            BackendState {
                role: if is_primary {
                    Role::Primary
                } else {
                    Role::Replica
                },
                healthy: t.up.state(),
                readable: !is_primary && t.up.state() && t.rotation.state(),
                lag: if is_primary {
                    Lag::Measured(Duration::ZERO)
                } else {
                    t.lag
                },
                gtid: t.gtid.clone(),
                weight: backend.weight,
                backup: backend.backup,
            }
        })
        .collect();
    Topology {
        primary: discovered.primary,
        backends,
        alarm: discovered.alarm,
    }
}
