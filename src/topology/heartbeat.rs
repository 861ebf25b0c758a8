//! The heartbeat writer: every interval, rwsplit's clock goes into this
//! process's row of `monitor.heartbeat_table` on the primary, and the
//! write is remembered in a [`HeartbeatLog`] for the lag computation.
//!
//! Each rwsplit process has its own row (several sidecars watch the same
//! servers, each measuring lag with its own clock). Rows that no writer
//! has touched for a day are removed when the writer (re)connects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use tracing::{info, warn};

use super::TopologyCell;
use super::check::Checker;
use super::lag::HeartbeatLog;
use crate::config::Config;

/// Rows older than this (by their writer's clock) belong to writers gone.
const ABANDONED: Duration = Duration::from_secs(24 * 3600);

/// The heartbeat writes and whether they work; shared by the writer and
/// the aggregator.
#[derive(Debug)]
pub struct Heartbeat {
    /// This process's row key.
    pub writer: String,
    log: Mutex<HeartbeatLog>,
    /// False once the monitor account turned out unable to write: lag then
    /// comes from Seconds_Behind_Master.
    enabled: AtomicBool,
}

impl Heartbeat {
    pub fn new() -> Heartbeat {
        Heartbeat {
            writer: writer_id(),
            log: Mutex::default(),
            enabled: AtomicBool::new(true),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn log(&self) -> MutexGuard<'_, HeartbeatLog> {
        // The log is a plain list of numbers, consistent even after a panic.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The query a replica answers with its copy of this process's row.
    pub fn read_query(&self, table: &str) -> String {
        format!("SELECT ts FROM {table} WHERE writer = '{}'", self.writer)
    }

    fn disable(&self, error: &str) {
        if self.enabled.swap(false, Ordering::Relaxed) {
            warn!(
                %error,
                "the monitor account cannot write the heartbeat table; replication lag falls back \
                 to Seconds_Behind_Master (1 s resolution). Grant it all privileges on the \
                 heartbeat schema (monitor.heartbeat_table) for sub-second lag"
            );
        }
    }

    fn enable(&self) {
        if !self.enabled.swap(true, Ordering::Relaxed) {
            info!("heartbeat writes work again; replication lag is measured from them");
        }
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

/// This rwsplit's row in the heartbeat table: unique per process.
fn writer_id() -> String {
    let mut random = [0u8; 6];
    // The system RNG failing is not recoverable; aws-lc aborts on it itself.
    aws_lc_rs::rand::fill(&mut random).expect("system random number generator");
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("rwsplit-{}-{hex}", std::process::id())
}

/// Microseconds since the UNIX epoch by rwsplit's clock.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Writes the heartbeat to whichever backend is the primary, every
/// interval, forever.
pub async fn write_heartbeats(
    config: Config,
    topology: Arc<TopologyCell>,
    heartbeat: Arc<Heartbeat>,
) {
    let monitor = &config.monitor;
    let mut ticks = tokio::time::interval(monitor.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The connection and the backend it goes to.
    let mut conn: Option<(usize, mysql_async::Conn)> = None;
    loop {
        ticks.tick().await;
        let Some(primary) = topology.primary() else {
            continue;
        };
        if conn.as_ref().is_none_or(|(index, _)| *index != primary) {
            conn = prepare(&config, primary, &heartbeat)
                .await
                .map(|c| (primary, c));
        }
        let Some((_, primary_conn)) = conn.as_mut() else {
            continue;
        };
        let written = now_micros();
        let write = format!(
            "REPLACE INTO {} (writer, ts) VALUES ('{}', {written})",
            monitor.heartbeat_table, heartbeat.writer
        );
        match write_unless_fenced(monitor.query_timeout, primary_conn, write).await {
            Ok(true) => {
                heartbeat.enable();
                heartbeat.log().record(written, now_micros());
            }
            Ok(false) => {}
            Err(error) => {
                if is_permission_error(&error) {
                    heartbeat.disable(&error);
                }
                conn = None;
            }
        }
    }
}

/// Writes the heartbeat unless the server is read-only; whether it wrote.
///
/// The monitor account may write to a read-only server (it needs `READ_ONLY
/// ADMIN` to fence one), and a heartbeat written to a primary that a
/// switchover has just fenced would be a transaction its successor lacks:
/// the old primary could not then replicate from it. So the writer looks
/// first, every time (what is left is the moment between the two
/// statements, which the switchover checks for before it repoints the old
/// primary; see `failover`).
async fn write_unless_fenced(
    limit: Duration,
    conn: &mut mysql_async::Conn,
    write: String,
) -> Result<bool, String> {
    let read_only =
        match crate::timer::timeout(limit, conn.query_first::<bool, _>("SELECT @@read_only")).await
        {
            Ok(Ok(value)) => value.unwrap_or(true),
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err(format!("no answer within {limit:?}")),
        };
    if read_only {
        return Ok(false);
    }
    timed(limit, conn.query_drop(write)).await.map(|()| true)
}

/// Connects to `primary` with the monitor account and makes sure the
/// heartbeat table exists, clearing abandoned rows.
async fn prepare(
    config: &Config,
    primary: usize,
    heartbeat: &Heartbeat,
) -> Option<mysql_async::Conn> {
    let monitor = &config.monitor;
    let table = &monitor.heartbeat_table;
    let schema = table.split('.').next().unwrap_or("rwsplit");
    let checker = Checker::new(&config.backends[primary], monitor, String::new());
    let mut conn = checker.connect().await.ok()?;
    let abandoned = now_micros().saturating_sub(ABANDONED.as_micros() as u64);
    let set_up = format!(
        "CREATE DATABASE IF NOT EXISTS {schema}; \
         CREATE TABLE IF NOT EXISTS {table} \
           (writer VARCHAR(64) PRIMARY KEY, ts BIGINT UNSIGNED NOT NULL); \
         DELETE FROM {table} WHERE ts < {abandoned}"
    );
    match timed(monitor.query_timeout, conn.query_drop(set_up)).await {
        Ok(()) => Some(conn),
        Err(error) => {
            if is_permission_error(&error) {
                heartbeat.disable(&error);
            }
            None
        }
    }
}

/// Whether a failed heartbeat statement failed for lack of rights (or a
/// read-only server) rather than a passing fault.
fn is_permission_error(error: &str) -> bool {
    // 1044/1142: access denied; 1290: read-only; 1227: missing privilege.
    [
        "ERROR 1044 ",
        "ERROR 1142 ",
        "ERROR 1290 ",
        "ERROR 1227 ",
        "denied",
        "read-only",
    ]
    .iter()
    .any(|marker| error.contains(marker))
}

async fn timed(
    duration: Duration,
    call: impl std::future::Future<Output = Result<(), mysql_async::Error>>,
) -> Result<(), String> {
    match crate::timer::timeout(duration, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {duration:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_ids_differ_and_fit_the_column() {
        let (a, b) = (writer_id(), writer_id());
        assert_ne!(a, b);
        assert!(a.len() <= 64 && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn permission_errors_are_told_from_passing_faults() {
        let denied = "ERROR 1142 (42000): INSERT command denied to user 'monitor'@'localhost'";
        assert!(is_permission_error(denied));
        assert!(is_permission_error(
            "ERROR 1290 (HY000): The MariaDB server is running with the --read-only option"
        ));
        assert!(!is_permission_error("no answer within 1s"));
        assert!(!is_permission_error("Input/output error: broken pipe"));
    }
}
