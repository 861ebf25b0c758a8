//! The `/status` document: what the admin API answers and what
//! `rwsplit status` prints. One model for both sides, so they cannot drift.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::config::Role;
use crate::server::Proxy;
use crate::topology::Lag;
use crate::topology::check::Replication;
use crate::topology::monitor::LagSource;

/// The whole proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// rwsplit's version.
    pub version: String,
    /// The backend that takes writes, when one is known.
    pub primary: Option<String>,
    /// Why writes are refused (no primary, several writable servers).
    pub alarm: Option<String>,
    /// What `/ready` answers.
    pub ready: bool,
    /// Client connections open now.
    pub client_connections: usize,
    pub backends: Vec<BackendStatus>,
}

/// One backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub address: String,
    /// `primary` or `replica`, as discovered.
    pub role: String,
    /// Answering health checks.
    pub healthy: bool,
    /// In read rotation.
    pub readable: bool,
    /// Measured replication lag; `None` when unknown.
    pub lag_seconds: Option<f64>,
    pub lag_source: LagSource,
    /// GTID position (`gtid_current_pos`) at the last check.
    pub gtid_position: Option<String>,
    pub read_only: Option<bool>,
    /// The server's `@@version`.
    pub server_version: Option<String>,
    pub replication: Option<Replication>,
    /// Connections rwsplit holds to it (in sessions and pooled).
    pub connections: u64,
    /// Commands relayed to it since start.
    pub commands: u64,
    /// Commands running on it now.
    pub in_flight: u32,
    /// The last failed health check, while it fails.
    pub last_error: Option<String>,
    /// Why a replica does not follow its primary, while so.
    #[serde(default)]
    pub replication_alarm: Option<String>,
    /// Transactions it has that the primary lacks, while it is fenced for
    /// them (named in `replication_alarm`).
    #[serde(default)]
    pub lost_transactions: Option<u64>,
}

impl Status {
    /// The proxy's status now.
    pub fn of(proxy: &Proxy) -> Status {
        let topology = proxy.topology.load();
        let reports = proxy.reports.load();
        let backends = proxy
            .config
            .backends
            .iter()
            .zip(&topology.backends)
            .enumerate()
            .map(|(index, (config, state))| {
                let report = reports.get(index).cloned().unwrap_or_default();
                let metrics = &proxy.metrics.backends[index];
                BackendStatus {
                    name: config.name.clone(),
                    address: config.address.clone(),
                    role: match state.role {
                        Role::Primary => "primary",
                        Role::Replica => "replica",
                    }
                    .to_owned(),
                    healthy: state.healthy,
                    readable: state.readable,
                    lag_seconds: match state.lag {
                        Lag::Measured(d) => Some(d.as_secs_f64()),
                        Lag::Unknown => None,
                    },
                    lag_source: report.lag_source,
                    gtid_position: state.gtid.as_ref().map(ToString::to_string),
                    read_only: report.read_only,
                    server_version: report.version,
                    replication: report.replication,
                    connections: metrics.open_connections.load(Ordering::Relaxed),
                    commands: proxy.metrics.commands(index),
                    in_flight: proxy.metrics.in_flight(index),
                    last_error: report.last_error,
                    replication_alarm: report.replication_alarm,
                    lost_transactions: report.lost_transactions,
                }
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            primary: topology
                .primary
                .map(|p| proxy.config.backends[p].name.clone()),
            alarm: topology.alarm.clone(),
            ready: proxy.ready(),
            client_connections: proxy.registry.len(),
            backends,
        }
    }

    /// A readable table, as `rwsplit status` prints it.
    pub fn table(&self) -> String {
        let mut rows = vec![
            [
                "BACKEND", "ADDRESS", "ROLE", "STATE", "LAG", "GTID", "CONNS", "COMMANDS",
            ]
            .map(String::from),
        ];
        for b in &self.backends {
            rows.push([
                b.name.clone(),
                b.address.clone(),
                b.role.clone(),
                state_word(b).to_owned(),
                b.lag_seconds
                    .map_or_else(|| "-".to_owned(), |s| format!("{:.3}s", s)),
                b.gtid_position.clone().unwrap_or_else(|| "-".to_owned()),
                b.connections.to_string(),
                b.commands.to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.summary());
        out
    }

    /// The lines under the table: primary, alarms, errors.
    fn summary(&self) -> String {
        let mut out = match &self.primary {
            Some(primary) => format!("primary: {primary}"),
            None => "primary: none".to_owned(),
        };
        out.push_str(&format!(
            "    clients: {}    ready: {}\n",
            self.client_connections,
            if self.ready { "yes" } else { "no" }
        ));
        if let Some(alarm) = &self.alarm {
            out.push_str(&format!("ALARM: {alarm}\n"));
        }
        for b in &self.backends {
            if let Some(error) = &b.last_error {
                out.push_str(&format!("{}: check failing: {error}\n", b.name));
            }
            if let Some(alarm) = &b.replication_alarm {
                out.push_str(&format!("REPLICATION ALARM: {}: {alarm}\n", b.name));
            } else if let Some(error) = b.replication.as_ref().map(|r| &r.last_error) {
                if !error.is_empty() {
                    out.push_str(&format!("{}: replication error: {error}\n", b.name));
                }
            }
        }
        out
    }
}

/// One word for a backend's state.
fn state_word(b: &BackendStatus) -> &'static str {
    let replicating = b
        .replication
        .as_ref()
        .is_some_and(|r| r.io_running && r.sql_running);
    match (b.healthy, b.role.as_str(), b.readable) {
        (false, _, _) => "down",
        (true, "primary", _) => "up",
        (true, _, true) => "reading",
        (true, _, false) if b.replication.is_some() && !replicating => "stopped",
        (true, _, false) => "lagging",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, role: &str) -> BackendStatus {
        BackendStatus {
            name: name.into(),
            address: "127.0.0.1:3306".into(),
            role: role.into(),
            healthy: true,
            readable: role == "replica",
            lag_seconds: Some(0.012),
            lag_source: LagSource::Heartbeat,
            gtid_position: Some("0-1-42".into()),
            read_only: Some(role == "replica"),
            server_version: Some("10.11.6-MariaDB".into()),
            replication: None,
            connections: 3,
            commands: 1200,
            in_flight: 0,
            last_error: None,
            replication_alarm: None,
            lost_transactions: None,
        }
    }

    #[test]
    fn the_table_lines_up_and_names_problems() {
        let mut down = backend("db3", "replica");
        down.healthy = false;
        down.readable = false;
        down.lag_seconds = None;
        down.last_error = Some("no answer within 1s".into());
        let mut stopped = backend("db4", "replica");
        stopped.replication_alarm = Some("its IO thread has stopped".into());
        let status = Status {
            version: "0.1.0".into(),
            primary: Some("db1".into()),
            alarm: None,
            ready: true,
            client_connections: 5,
            backends: vec![
                backend("db1", "primary"),
                backend("db2", "replica"),
                down,
                stopped,
            ],
        };
        let table = status.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "BACKEND  ADDRESS         ROLE     STATE    LAG     GTID    CONNS  COMMANDS"
        );
        assert_eq!(
            lines[2],
            "db2      127.0.0.1:3306  replica  reading  0.012s  0-1-42  3      1200"
        );
        assert!(lines[3].starts_with("db3      127.0.0.1:3306  replica  down     -  "));
        assert!(table.contains("primary: db1    clients: 5    ready: yes"));
        assert!(table.contains("db3: check failing: no answer within 1s"));
        assert!(table.contains("REPLICATION ALARM: db4: its IO thread has stopped"));
    }

    #[test]
    fn the_document_round_trips() {
        let status = Status {
            version: "0.1.0".into(),
            primary: None,
            alarm: Some("db1 and db2 are all writable".into()),
            ready: false,
            client_connections: 0,
            backends: vec![backend("db1", "primary")],
        };
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
    }
}
