//! One check of one backend, with mysql_async: is it up, writable,
//! replicating, at which GTID position, and which heartbeat it has.
//!
//! Every call is wrapped in a timeout (mysql_async has none of its own);
//! connections are TCP only. After any failure the connection is dropped
//! and the next check opens a new one.

use std::future::Future;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row, SslOpts};

use super::heartbeat::now_micros;
use super::lag::halfway;
use super::replication::Reading;
use crate::config::{BackendConfig, MonitorConfig};
use crate::gtid::GtidPosition;

/// What one successful check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub version: String,
    pub read_only: bool,
    pub gtid: Option<Reading>,
    /// `None` when the server does not replicate from another.
    pub replication: Option<Replication>,
    /// The server's copy of this rwsplit's heartbeat row.
    pub heartbeat: Option<HeartbeatSeen>,
}

/// A replica's copy of the heartbeat row, and when it was read: the lag is
/// the lag at that moment, however long the rest of the check or the
/// monitor took to get to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatSeen {
    /// The timestamp in the row (rwsplit's clock, microseconds since the
    /// UNIX epoch).
    pub ts: u64,
    /// When the server read it, as well as rwsplit can tell: halfway
    /// between sending the query and its answer (same clock).
    pub at: u64,
}

/// The server's replication status (SHOW REPLICA STATUS).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replication {
    pub io_running: bool,
    pub sql_running: bool,
    pub seconds_behind: Option<u64>,
    /// `host:port` of the server it replicates from.
    pub source: String,
    pub last_error: String,
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the check was still running after monitor.interval ({0:?})")]
    Overdue(Duration),
    #[error("{0}")]
    Failed(String),
}

/// Checks one backend again and again, keeping its connection.
pub struct Checker {
    opts: Opts,
    conn: Option<Watched>,
    connect_timeout: Duration,
    query_timeout: Duration,
    /// `SELECT ts FROM <heartbeat table> WHERE writer = '<this rwsplit>'`.
    heartbeat_query: String,
}

impl Checker {
    pub fn new(
        backend: &BackendConfig,
        monitor: &MonitorConfig,
        heartbeat_query: String,
    ) -> Checker {
        Checker {
            opts: monitor_opts(backend, monitor),
            conn: None,
            connect_timeout: monitor.connect_timeout,
            query_timeout: monitor.query_timeout,
            heartbeat_query,
        }
    }

    /// One check. A failure drops the connection.
    pub async fn check(&mut self) -> Result<Observation, CheckError> {
        let result = self.observe().await;
        if result.is_err() {
            // Dropping is enough: mysql_async closes the socket in the
            // background, and a broken connection must not be reused.
            self.conn = None;
        }
        result
    }

    /// Opens a connection with the monitor account, within the connect timeout.
    pub async fn connect(&self) -> Result<Conn, CheckError> {
        limit(self.connect_timeout, Conn::new(self.opts.clone())).await
    }

    /// Opens the connection checks run on, and learns the server's version.
    async fn open(&self) -> Result<Watched, CheckError> {
        let mut conn = self.connect().await?;
        let version: String = limit(self.query_timeout, conn.query_first("SELECT @@version"))
            .await?
            .ok_or_else(|| CheckError::Failed("no answer to SELECT @@version".into()))?;
        Ok(Watched { conn, version })
    }

    async fn observe(&mut self) -> Result<Observation, CheckError> {
        let query_timeout = self.query_timeout;
        let watched = match self.conn.take() {
            Some(watched) => watched,
            None => self.open().await?,
        };
        let Watched { conn, version } = self.conn.insert(watched);
        let (state_query, status_query) = if crate::backend::is_mariadb(version.as_bytes()) {
            (
                "SELECT @@read_only, @@gtid_current_pos",
                "SHOW SLAVE STATUS",
            )
        } else {
            (
                "SELECT @@read_only, @@global.gtid_executed",
                "SHOW REPLICA STATUS",
            )
        };
        let from = Instant::now();
        let (read_only, gtid): (bool, Option<String>) =
            limit(query_timeout, conn.query_first(state_query))
                .await?
                .ok_or_else(|| CheckError::Failed(format!("no answer to {state_query}")))?;
        let to = Instant::now();
        let status: Option<Row> = limit(query_timeout, conn.query_first(status_query)).await?;
        let replication = status.as_ref().and_then(|row| {
            replication(|name| {
                row.get_opt::<Option<String>, _>(name)
                    .and_then(Result::ok)
                    .flatten()
            })
        });
        let heartbeat = match &replication {
            Some(_) => {
                let sent = now_micros();
                let row = limit(
                    query_timeout,
                    conn.query_first::<u64, _>(self.heartbeat_query.as_str()),
                )
                .await;
                let at = halfway(sent, now_micros());
                row.ok().flatten().map(|ts| HeartbeatSeen { ts, at })
            }
            None => None,
        };
        Ok(Observation {
            version: version.clone(),
            read_only,
            gtid: gtid
                .and_then(|g| GtidPosition::parse(&g))
                .map(|position| Reading { position, from, to }),
            replication,
            heartbeat,
        })
    }
}

/// The connection a [`Checker`] keeps, and its server's version, read
/// once when it opened: the version cannot change while the connection
/// lasts, and it says which GTID variable and status statement the server
/// has (MariaDB's or MySQL's).
struct Watched {
    conn: Conn,
    version: String,
}

/// Runs a mysql_async call with a time limit.
async fn limit<T>(
    duration: Duration,
    call: impl Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, CheckError> {
    match crate::timer::timeout(duration, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(CheckError::Failed(error.to_string())),
        Err(_) => Err(CheckError::Timeout(duration)),
    }
}

/// Reads SHOW SLAVE STATUS (MariaDB) or SHOW REPLICA STATUS (MySQL 8)
/// through `column`; `None` when the server is not set up to replicate.
pub fn replication(column: impl Fn(&str) -> Option<String>) -> Option<Replication> {
    let either = |mariadb: &str, mysql: &str| column(mariadb).or_else(|| column(mysql));
    let host = either("Master_Host", "Source_Host").filter(|h| !h.is_empty())?;
    let port = either("Master_Port", "Source_Port").unwrap_or_default();
    let yes = |value: Option<String>| value.is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let last_error = [
        either("Last_IO_Error", "Last_IO_Error"),
        either("Last_SQL_Error", "Last_SQL_Error"),
    ]
    .into_iter()
    .flatten()
    .filter(|e| !e.is_empty())
    .collect::<Vec<_>>()
    .join("; ");
    Some(Replication {
        io_running: yes(either("Slave_IO_Running", "Replica_IO_Running")),
        sql_running: yes(either("Slave_SQL_Running", "Replica_SQL_Running")),
        seconds_behind: either("Seconds_Behind_Master", "Seconds_Behind_Source")
            .and_then(|s| s.parse().ok()),
        source: format!("{host}:{port}"),
        last_error,
    })
}

/// `host:port` (or `[v6]:port`, or a host alone) split, 3306 by default.
pub fn host_and_port(address: &str) -> (&str, u16) {
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "3306"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port.parse().unwrap_or(3306))
}

/// Connection options for the monitor account: TCP only, the backend's TLS
/// settings, no statement cache.
fn monitor_opts(backend: &BackendConfig, monitor: &MonitorConfig) -> Opts {
    let (host, port) = host_and_port(&backend.address);
    let mut builder = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .prefer_socket(false)
        .user(Some(monitor.user.as_str()))
        .pass(Some(monitor.password.as_str()))
        .stmt_cache_size(0);
    if let Some(tls) = &backend.tls {
        let mut ssl = SslOpts::default().with_danger_accept_invalid_certs(!tls.verify);
        if let Some(ca) = &tls.ca {
            ssl = ssl.with_root_certs(vec![ca.clone().into()]);
        }
        builder = builder.ssl_opts(Some(ssl));
    }
    builder.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn columns(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn mariadb_and_mysql_column_names() {
        let mariadb = replication(columns(&[
            ("Master_Host", "10.0.0.1"),
            ("Master_Port", "3306"),
            ("Slave_IO_Running", "Yes"),
            ("Slave_SQL_Running", "No"),
            ("Seconds_Behind_Master", "7"),
            ("Last_SQL_Error", "Duplicate entry"),
        ]));
        assert_eq!(
            mariadb,
            Some(Replication {
                io_running: true,
                sql_running: false,
                seconds_behind: Some(7),
                source: "10.0.0.1:3306".into(),
                last_error: "Duplicate entry".into(),
            })
        );
        let mysql = replication(columns(&[
            ("Source_Host", "db1"),
            ("Source_Port", "3306"),
            ("Replica_IO_Running", "Yes"),
            ("Replica_SQL_Running", "Yes"),
        ]))
        .unwrap();
        assert!(mysql.io_running && mysql.sql_running);
        assert_eq!(mysql.seconds_behind, None, "NULL lag stays unknown");
        assert_eq!(
            replication(columns(&[("Master_Host", "")])),
            None,
            "not set up to replicate"
        );
        assert_eq!(replication(columns(&[])), None);
    }
}
