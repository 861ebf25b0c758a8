//! The monitor: checks every backend each `monitor.interval`, measures
//! replication lag, discovers the primary, and publishes the topology.
//!
//! Each backend has a checking task of its own, so one slow or silent
//! backend never delays the checks of the others; results go to one
//! aggregating task, which owns all state and is the only writer of the
//! topology. A heartbeat task writes rwsplit's clock to the primary every
//! interval (see [`super::heartbeat`] and [`super::lag`]).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::check::{CheckError, Checker, HeartbeatSeen, Observation, Replication};
use super::discovery::{Seen, discover};
use super::health::{Flip, Thresholds};
use super::heartbeat::{Heartbeat, now_micros, write_heartbeats};
use super::lost::LostLog;
use super::replication::{self, Reading};
use super::{BackendState, Lag, Topology, TopologyCell};
use crate::config::{Config, Role};
use crate::gtid::GtidPosition;

/// What the monitor knows about one backend beyond the topology, for
/// `rwsplit status` and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendReport {
    /// `@@version`, once a check succeeded.
    pub version: Option<String>,
    /// `@@read_only` at the last successful check.
    pub read_only: Option<bool>,
    /// Replication threads and source, when the backend replicates.
    pub replication: Option<Replication>,
    pub lag_source: LagSource,
    /// The last failed check's error, while the backend fails.
    pub last_error: Option<String>,
    /// Why a replica does not follow its primary, while so (see
    /// [`super::replication`]).
    pub replication_alarm: Option<String>,
    /// How many transactions it has that the primary lacks, when it was
    /// fenced for them and does not replicate yet (see [`super::lost`]).
    pub lost_transactions: Option<u64>,
    /// Checks failed in a row (0 after a good one).
    pub failed_checks: u32,
}

/// Where a replica's lag comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LagSource {
    /// Not measured: not a replica, or replication is stopped.
    #[default]
    None,
    /// rwsplit's heartbeat row (sub-second).
    Heartbeat,
    /// `Seconds_Behind_Master` (whole seconds), when the heartbeat cannot be
    /// written or is stale.
    SecondsBehindMaster,
}

/// The monitor's report on every backend, published for readers.
pub type Reports = ArcSwap<Vec<BackendReport>>;

/// One check's outcome for one backend.
type CheckResult = (usize, Result<Observation, CheckError>);

/// Starts the monitor's tasks; they run until the returned set is dropped.
pub fn start(
    config: &Config,
    topology: Arc<TopologyCell>,
    reports: Arc<Reports>,
    lost: Arc<LostLog>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let heartbeat = Arc::new(Heartbeat::new());
    let read_heartbeat = heartbeat.read_query(&config.monitor.heartbeat_table);
    let (results, incoming) = mpsc::channel(64);
    for (index, backend) in config.backends.iter().enumerate() {
        let checker = Checker::new(backend, &config.monitor, read_heartbeat.clone());
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
    ));
    let aggregator = Aggregator::new(config.clone(), heartbeat, lost);
    tasks.spawn(aggregator.run(topology, reports, incoming));
    tasks
}

/// Checks one backend every interval, forever. A check still running when
/// the next one is due counts as a failure then (and again each interval it
/// goes on), so a server that hangs is marked down at the pace of the
/// interval, whatever the timeouts: within `(failure_threshold + 1) *
/// interval`.
async fn watch(
    index: usize,
    mut checker: Checker,
    interval: Duration,
    results: mpsc::Sender<CheckResult>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let check = checker.check();
        tokio::pin!(check);
        let result = loop {
            tokio::select! {
                result = &mut check => break result,
                _ = ticks.tick() => {
                    let overdue = (index, Err(CheckError::Overdue(interval)));
                    if results.send(overdue).await.is_err() {
                        return;
                    }
                }
            }
        };
        if results.send((index, result)).await.is_err() {
            return;
        }
    }
}

/// What the aggregator keeps per backend.
#[derive(Debug)]
struct Tracked {
    /// Answering checks, with `monitor.failure_threshold` /
    /// `recovery_threshold` hysteresis.
    up: Flip,
    /// Replicating within the lag limit: leaves at once, returns after
    /// `recovery_threshold` good checks.
    rotation: Flip,
    /// The last check, for primary discovery (`None`: not checked yet).
    seen: Option<Seen>,
    lag: Lag,
    /// Its last few GTID readings, oldest first: the last is its position.
    readings: Vec<Reading>,
    /// Both replication threads running, with `failure_threshold`
    /// hysteresis (a switchover restarts them); cleared by one good check.
    replicating: Flip,
    report: BackendReport,
}

impl Tracked {
    fn position(&self) -> Option<&GtidPosition> {
        self.readings.last().map(|reading| &reading.position)
    }
}

/// GTID readings kept per backend: enough that one was taken before the
/// primary's last, however the checks interleave.
const READINGS: usize = 4;

/// Owns every backend's state; turns check results into topologies.
struct Aggregator {
    config: Config,
    names: Vec<String>,
    tracked: Vec<Tracked>,
    heartbeat: Arc<Heartbeat>,
    /// Whether some replica takes reads, once every backend was checked.
    readers: Option<bool>,
    lost: Arc<LostLog>,
}

impl Aggregator {
    fn new(config: Config, heartbeat: Arc<Heartbeat>, lost: Arc<LostLog>) -> Aggregator {
        let tracked = config
            .backends
            .iter()
            .map(|_| Tracked {
                up: Flip::new(true),
                rotation: Flip::new(false),
                seen: None,
                lag: Lag::Unknown,
                readings: Vec::new(),
                replicating: Flip::new(true),
                report: BackendReport::default(),
            })
            .collect();
        Aggregator {
            names: config.backends.iter().map(|b| b.name.clone()).collect(),
            config,
            tracked,
            heartbeat,
            readers: None,
            lost,
        }
    }

    async fn run(
        mut self,
        topology: Arc<TopologyCell>,
        reports: Arc<Reports>,
        mut incoming: mpsc::Receiver<CheckResult>,
    ) {
        while let Some((index, result)) = incoming.recv().await {
            self.absorb(index, result);
            let current = topology.load();
            let next = self.topology(&current);
            self.note_changes(&current, &next);
            if **current != next {
                topology.store(next);
            }
            reports.store(Arc::new(
                self.tracked.iter().map(|t| t.report.clone()).collect(),
            ));
        }
    }

    /// Records one check of backend `index`.
    fn absorb(&mut self, index: usize, result: Result<Observation, CheckError>) {
        let monitor = &self.config.monitor;
        let health = Thresholds {
            to_false: monitor.failure_threshold,
            to_true: monitor.recovery_threshold,
        };
        let rotation = Thresholds {
            to_false: 1,
            to_true: monitor.recovery_threshold,
        };
        let stale = monitor.interval * 2 + monitor.query_timeout;
        let follows = result
            .as_ref()
            .ok()
            .and_then(|o| o.replication.as_ref())
            .and_then(|r| {
                self.config
                    .backends
                    .iter()
                    .position(|b| b.address == r.source)
            });
        let name = &self.names[index];
        let entry = &mut self.tracked[index];
        let observation = match result {
            Ok(observation) => observation,
            Err(error) => {
                if entry.up.observe(false, health) {
                    warn!(backend = name, %error, "backend is down after {} failed checks", health.to_false);
                }
                entry.rotation.observe(false, rotation);
                entry.seen = Some(Seen {
                    reachable: false,
                    read_only: false,
                    replicating: false,
                    follows: None,
                });
                entry.lag = Lag::Unknown;
                entry.report.last_error = Some(error.to_string());
                entry.report.failed_checks += 1;
                return;
            }
        };
        if entry.up.observe(true, health) {
            info!(backend = name, "backend is up again");
        }
        let (lag, source) = measure_lag(&observation, &self.heartbeat, stale);
        let in_limit =
            matches!(lag, Lag::Measured(d) if d <= self.config.routing.max_replication_lag);
        if entry.rotation.observe(in_limit, rotation) && observation.replication.is_some() {
            if in_limit {
                info!(backend = name, ?lag, "replica back in read rotation");
            } else {
                warn!(
                    backend = name,
                    ?lag,
                    "replica leaves read rotation: lag over routing.max_replication_lag, unknown, or replication stopped"
                );
            }
        }
        entry.seen = Some(Seen {
            reachable: true,
            read_only: observation.read_only,
            replicating: observation.replication.is_some(),
            follows,
        });
        let stopped = replication::stopped(observation.replication.as_ref());
        entry.replicating.observe(
            stopped.is_none(),
            Thresholds {
                to_false: monitor.failure_threshold,
                to_true: 1,
            },
        );
        if let Some(reading) = observation.gtid {
            if let Some(last) = entry.readings.last()
                && replication::went_backwards(last, &reading)
            {
                warn!(
                    backend = name,
                    before = %last.position,
                    after = %reading.position,
                    "GTID position went backwards: binary log reset (RESET MASTER) or server restored from an older copy"
                );
            }
            if entry.readings.len() == READINGS {
                entry.readings.remove(0);
            }
            entry.readings.push(reading);
        } else {
            entry.readings.clear();
        }
        entry.lag = lag;
        entry.report = BackendReport {
            version: Some(observation.version),
            read_only: Some(observation.read_only),
            replication: observation.replication,
            lag_source: source,
            last_error: None,
            failed_checks: 0,
            replication_alarm: entry.report.replication_alarm.take(),
            lost_transactions: entry.report.lost_transactions,
        };
    }

    /// Raises and clears each replica's replication alarm, logging each
    /// change once.
    fn judge_replication(&mut self, primary: Option<usize>) {
        let alarms: Vec<Option<String>> = (0..self.tracked.len())
            .map(|index| self.replication_alarm(index, primary))
            .collect();
        for (index, entry) in self.tracked.iter_mut().enumerate() {
            entry.report.lost_transactions =
                self.lost.get(index).and_then(|lost| lost.transactions);
        }
        for ((entry, name), alarm) in self.tracked.iter_mut().zip(&self.names).zip(alarms) {
            if entry.report.replication_alarm == alarm {
                continue;
            }
            match &alarm {
                Some(alarm) => warn!(backend = name, alarm, "replication alarm"),
                None => info!(backend = name, "replication alarm cleared"),
            }
            entry.report.replication_alarm = alarm;
        }
    }

    /// Why replica `index` does not follow the primary, if it does not: its
    /// threads stopped, or it has transactions the primary lacks. Nothing
    /// is said of the primary, of a server that does not answer, or while
    /// the primary does not answer (its replicas then lose it too).
    fn replication_alarm(&self, index: usize, primary: Option<usize>) -> Option<String> {
        let answers = |index: usize| {
            let entry = &self.tracked[index];
            entry.up.state() && entry.seen.is_some_and(|seen| seen.reachable)
        };
        let primary = primary.filter(|&p| p != index && answers(index) && answers(p))?;
        let entry = &self.tracked[index];
        let stopped = replication::stopped(entry.report.replication.as_ref());
        if let Some(lost) = self.lost.get(index) {
            if stopped.is_some() {
                return Some(lost.to_string());
            }
            // It replicates again: reconciled, or rebuilt.
            self.lost.forget(index);
        }
        if !entry.replicating.state() && stopped.is_some() {
            return stopped;
        }
        let theirs = self.tracked[primary].readings.last()?;
        let ours = replication::ahead(theirs, &entry.readings)?;
        let primary = &self.names[primary];
        Some(format!(
            "it has transactions {primary} does not ({ours} against {}): {primary}'s binary log was reset (RESET MASTER) or restored from an older copy, or this server was written to directly; rebuild it from {primary}",
            theirs.position
        ))
    }

    /// The topology the tracked state describes. A replica with a
    /// replication alarm takes no reads: one ahead of its primary would
    /// pass for caught up with any write (read-your-writes compares GTIDs).
    fn topology(&mut self, current: &Topology) -> Topology {
        let seen: Vec<Option<Seen>> = self.tracked.iter().map(|t| t.seen).collect();
        let positions: Vec<Option<&GtidPosition>> =
            self.tracked.iter().map(Tracked::position).collect();
        let discovered = discover(&seen, &positions, current.primary, &self.names);
        self.judge_replication(discovered.primary);
        let backends = self
            .config
            .backends
            .iter()
            .zip(&self.tracked)
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
                    readable: !is_primary
                        && t.up.state()
                        && t.rotation.state()
                        && t.report.replication_alarm.is_none(),
                    lag: if is_primary {
                        Lag::Measured(Duration::ZERO)
                    } else {
                        t.lag
                    },
                    gtid: t.position().cloned(),
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

    /// Logs changes of the primary, of the alarm, and whether any replica
    /// takes reads: once per change, never per query.
    fn note_changes(&mut self, current: &Topology, next: &Topology) {
        if next.primary != current.primary || next.alarm != current.alarm {
            match (next.primary, &next.alarm) {
                (Some(primary), None) => info!(primary = self.names[primary], "primary"),
                (Some(primary), Some(alarm)) => {
                    warn!(
                        primary = self.names[primary],
                        alarm, "primary, with an alarm"
                    )
                }
                (None, Some(alarm)) => warn!(alarm, "no primary: writes are refused"),
                (None, None) => {}
            }
        }
        if self.tracked.iter().any(|t| t.seen.is_none()) {
            return;
        }
        let readers = next.backends.iter().any(|b| b.readable);
        match (self.readers, readers) {
            (Some(true) | None, false) => warn!(
                "no replica can take reads (down, lagging or not replicating); reads go to the primary"
            ),
            (Some(false), true) => info!("replicas take reads again"),
            _ => {}
        }
        self.readers = Some(readers);
    }
}

/// A replica's lag, and where it came from: unknown unless it applies
/// what it receives and the heartbeat tells (or, when the monitor cannot
/// write it or its last write is older than `stale`, Seconds_Behind_Master).
///
/// A replica whose IO thread is down (reconnecting to a primary that
/// died, say) is measured by the heartbeat alone, stale or not: it lacks
/// what was written after it lost the primary, and its lag grows from the
/// first write it lacks. One that has the last write rwsplit made is as
/// current as anything rwsplit knows of, and keeps taking reads.
fn measure_lag(
    observation: &Observation,
    heartbeat: &Heartbeat,
    stale: Duration,
) -> (Lag, LagSource) {
    let Some(replication) = &observation.replication else {
        return (Lag::Unknown, LagSource::None);
    };
    if !replication.sql_running {
        return (Lag::Unknown, LagSource::None);
    }
    let now = now_micros();
    let log = heartbeat.log();
    if heartbeat.enabled() {
        let measured = |seen: HeartbeatSeen| {
            let lag = log.lag(seen.ts, seen.at);
            (Lag::Measured(lag), LagSource::Heartbeat)
        };
        match (log.latest(), observation.heartbeat) {
            // Before the first write: wait for it rather than flap between
            // two sources.
            (None, _) => return (Lag::Unknown, LagSource::Heartbeat),
            (Some(latest), seen) if now.saturating_sub(latest) <= stale.as_micros() as u64 => {
                return seen.map_or((Lag::Unknown, LagSource::Heartbeat), measured);
            }
            (Some(_), Some(seen)) if !replication.io_running => return measured(seen),
            // Writes stopped working (the primary is unreachable, say): the
            // replica's own view is all there is.
            (Some(_), _) => {}
        }
    }
    match replication.seconds_behind {
        Some(seconds) => (
            Lag::Measured(Duration::from_secs(seconds)),
            LagSource::SecondsBehindMaster,
        ),
        None => (Lag::Unknown, LagSource::SecondsBehindMaster),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicating() -> Observation {
        Observation {
            version: "10.11.6-MariaDB".into(),
            read_only: true,
            gtid: None,
            replication: Some(Replication {
                io_running: true,
                sql_running: true,
                seconds_behind: Some(7),
                source: "127.0.0.1:3306".into(),
                last_error: String::new(),
            }),
            heartbeat: None,
        }
    }

    #[test]
    fn the_lag_is_the_lag_when_the_row_was_read() {
        let heartbeat = Heartbeat::new();
        // Whole milliseconds, so that the halves below are exact.
        let now = now_micros() / 1000 * 1000;
        // Writes every 200 ms over the last two seconds, answered at once.
        for ago in (0..10).rev() {
            let written = now - ago * 200_000;
            heartbeat.log().record(written, written);
        }
        let write = |ago: u64| now - ago * 200_000;
        // Read a second ago, showing the write made 1.4 s ago; the writes
        // made since the read are not held against the replica.
        let observation = Observation {
            heartbeat: Some(HeartbeatSeen {
                ts: write(7),
                at: now - 1_000_000,
            }),
            ..replicating()
        };
        let stale = Duration::from_secs(1);
        assert_eq!(
            measure_lag(&observation, &heartbeat, stale),
            (
                Lag::Measured(Duration::from_millis(300)),
                LagSource::Heartbeat
            )
        );
    }

    #[test]
    fn once_heartbeat_writes_stop_the_lag_is_seconds_behind_master() {
        let heartbeat = Heartbeat::new();
        let written = now_micros() - 10_000_000;
        heartbeat.log().record(written, written);
        let observation = Observation {
            heartbeat: Some(HeartbeatSeen {
                ts: written,
                at: written,
            }),
            ..replicating()
        };
        assert_eq!(
            measure_lag(&observation, &heartbeat, Duration::from_secs(1)),
            (
                Lag::Measured(Duration::from_secs(7)),
                LagSource::SecondsBehindMaster
            )
        );
    }
}
