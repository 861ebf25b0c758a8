//! The statements a switchover or failover runs on one backend, with the
//! monitor account over mysql_async, each under a time limit. MariaDB's
//! statements: the plan refuses other servers first.

use std::time::Duration;

use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, Row};

use super::plan::{Activity, ServerState, Source};
use crate::config::Config;
use crate::gtid::GtidPosition;
use crate::topology::check::{Checker, host_and_port, replication};

/// The `MASTER_HEARTBEAT_PERIOD`, in seconds, of the replicas rwsplit
/// points at a primary: a primary alive sends each at least this often,
/// which lets a failover tell a hung primary from one only rwsplit cannot
/// reach (docs/failover.md).
pub const HEARTBEAT_PERIOD: u32 = 1;

/// A statement on a backend failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{server}: {action}: {error}")]
pub struct StepError {
    pub server: String,
    pub action: String,
    pub error: String,
}

/// A connection to one backend for the length of a change.
pub struct Server {
    pub name: String,
    conn: Conn,
    limit: Duration,
}

impl Server {
    /// Logs in to backend `index` with the monitor account; statements
    /// then get `limit` each.
    pub async fn open(config: &Config, index: usize, limit: Duration) -> Result<Server, StepError> {
        let backend = &config.backends[index];
        let name = backend.name.clone();
        let checker = Checker::new(backend, &config.monitor, String::new());
        match checker.connect().await {
            Ok(conn) => Ok(Server { name, conn, limit }),
            Err(error) => Err(StepError {
                server: name,
                action: "connect with the monitor account".into(),
                error: error.to_string(),
            }),
        }
    }

    fn failed(&self, action: &str, error: impl ToString) -> StepError {
        StepError {
            server: self.name.clone(),
            action: action.to_owned(),
            error: error.to_string(),
        }
    }

    /// The first row of `sql`, within `limit`.
    async fn first<T: FromRow + Send + 'static>(
        &mut self,
        sql: &str,
        limit: Duration,
    ) -> Result<Option<T>, StepError> {
        match crate::timer::timeout(limit, self.conn.query_first(sql)).await {
            Ok(Ok(row)) => Ok(row),
            Ok(Err(error)) => Err(self.failed(sql, error)),
            Err(_) => Err(self.failed(sql, format!("no answer within {limit:?}"))),
        }
    }

    /// Runs each statement in turn; the first failure stops.
    async fn run(&mut self, statements: &[&str]) -> Result<(), StepError> {
        for sql in statements {
            let limit = self.limit;
            match crate::timer::timeout(limit, self.conn.query_drop(*sql)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(self.failed(sql, error)),
                Err(_) => return Err(self.failed(sql, format!("no answer within {limit:?}"))),
            }
        }
        Ok(())
    }

    /// What the server says about itself, for the plan.
    pub async fn survey(&mut self) -> Result<ServerState, StepError> {
        let limit = self.limit;
        let (version, read_only, applied): (String, bool, String) = self
            .first(
                "SELECT @@version, @@read_only, IFNULL(@@gtid_current_pos, '')",
                limit,
            )
            .await?
            .ok_or_else(|| self.failed("SELECT @@version", "no row"))?;
        let mariadb = crate::backend::is_mariadb(version.as_bytes());
        let applied = parse_position(&applied).map_err(|e| self.failed("@@gtid_current_pos", e))?;
        let replication = match mariadb {
            true => self.source().await?,
            false => None,
        };
        Ok(ServerState {
            mariadb,
            read_only,
            applied,
            replication,
        })
    }

    /// Its replication source (the default connection's), from SHOW ALL
    /// SLAVES STATUS: SHOW SLAVE STATUS leaves out the heartbeat columns.
    pub async fn source(&mut self) -> Result<Option<Source>, StepError> {
        let limit = self.limit;
        let Some(row) = self.first::<Row>("SHOW ALL SLAVES STATUS", limit).await? else {
            return Ok(None);
        };
        let column = |name: &str| {
            row.get_opt::<Option<String>, _>(name)
                .and_then(Result::ok)
                .flatten()
        };
        // Rows come sorted by connection name: the default one, '', first.
        if column("Connection_name").is_some_and(|name| !name.is_empty()) {
            return Ok(None);
        }
        let Some(status) = replication(column) else {
            return Ok(None);
        };
        let received = parse_position(&column("Gtid_IO_Pos").unwrap_or_default())
            .map_err(|e| self.failed("Gtid_IO_Pos", e))?;
        let number = |name: &str| column(name).and_then(|v| v.parse::<f64>().ok());
        Ok(Some(Source {
            address: status.source,
            io_running: status.io_running,
            sql_running: status.sql_running,
            received,
            last_error: status.last_error,
            heartbeat_period: number("Slave_heartbeat_period")
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .unwrap_or(Duration::MAX),
            activity: Activity {
                heartbeats: number("Slave_received_heartbeats").unwrap_or(0.0) as u64,
                file: column("Master_Log_File").unwrap_or_default(),
                position: number("Read_Master_Log_Pos").unwrap_or(0.0) as u64,
            },
            listened: None,
        }))
    }

    /// `@@gtid_binlog_pos`: every transaction in its binary log.
    pub async fn logged(&mut self) -> Result<GtidPosition, StepError> {
        self.position("gtid_binlog_pos").await
    }

    /// `@@gtid_current_pos`: every transaction it has applied.
    pub async fn applied(&mut self) -> Result<GtidPosition, StepError> {
        self.position("gtid_current_pos").await
    }

    /// `@@gtid_slave_pos`: the last transaction of each domain it applied
    /// as a replica (kept after a promotion).
    pub async fn received(&mut self) -> Result<GtidPosition, StepError> {
        self.position("gtid_slave_pos").await
    }

    async fn position(&mut self, variable: &str) -> Result<GtidPosition, StepError> {
        let limit = self.limit;
        let text: String = self
            .first(&format!("SELECT IFNULL(@@{variable}, '')"), limit)
            .await?
            .unwrap_or_default();
        parse_position(&text).map_err(|e| self.failed(&format!("@@{variable}"), e))
    }

    pub async fn set_read_only(&mut self, on: bool) -> Result<(), StepError> {
        let sql = match on {
            true => "SET GLOBAL read_only = ON",
            false => "SET GLOBAL read_only = OFF",
        };
        self.run(&[sql]).await
    }

    /// Waits up to `timeout` until it has applied `position`.
    pub async fn wait_for(
        &mut self,
        position: &GtidPosition,
        timeout: Duration,
    ) -> Result<(), StepError> {
        let sql = format!(
            "SELECT MASTER_GTID_WAIT('{position}', {:.3})",
            timeout.as_secs_f64()
        );
        // The server's own limit ends the wait; ours is a backstop.
        let answer: Option<i64> = self.first(&sql, timeout + self.limit).await?.flatten();
        match answer {
            Some(0) => Ok(()),
            _ => Err(self.failed(
                &sql,
                format!("it had not applied {position} after {timeout:?}"),
            )),
        }
    }

    /// Stops replicating, forgets its source, and takes writes.
    pub async fn promote(&mut self) -> Result<(), StepError> {
        self.run(&[
            "STOP SLAVE",
            "RESET SLAVE ALL",
            "SET GLOBAL read_only = OFF",
        ])
        .await
    }

    /// Replicates from `address` from where it is, with the account it
    /// replicates with already (CHANGE MASTER keeps what it is not given).
    pub async fn follow(&mut self, address: &str) -> Result<(), StepError> {
        let (host, port) = host_and_port(address);
        let change = format!(
            "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {port}, MASTER_USE_GTID = slave_pos, \
             MASTER_HEARTBEAT_PERIOD = {HEARTBEAT_PERIOD}",
            quote(host)
        );
        self.run(&["STOP SLAVE", &change, "START SLAVE"]).await
    }

    /// Makes a former primary a read-only replica of `address`, starting
    /// after the last transaction of its own binary log.
    pub async fn rejoin(
        &mut self,
        address: &str,
        user: &str,
        password: &str,
    ) -> Result<(), StepError> {
        let (host, port) = host_and_port(address);
        let change = format!(
            "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {port}, MASTER_USER = {}, \
             MASTER_PASSWORD = {}, MASTER_USE_GTID = slave_pos, \
             MASTER_HEARTBEAT_PERIOD = {HEARTBEAT_PERIOD}",
            quote(host),
            quote(user),
            quote(password)
        );
        self.run(&[
            "SET GLOBAL read_only = ON",
            "STOP SLAVE",
            "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos",
            &change,
            "START SLAVE",
        ])
        .await
    }

    /// Takes a named lock for as long as this connection lives (or until
    /// released): whether it was free.
    pub async fn try_lock(&mut self, name: &str) -> Result<bool, StepError> {
        let limit = self.limit;
        let got: Option<Option<i64>> = self
            .first(&format!("SELECT GET_LOCK({}, 0)", quote(name)), limit)
            .await?;
        Ok(got.flatten() == Some(1))
    }

    pub async fn unlock(&mut self, name: &str) -> Result<(), StepError> {
        self.run(&[&format!("DO RELEASE_LOCK({})", quote(name))])
            .await
    }
}

fn parse_position(text: &str) -> Result<GtidPosition, String> {
    GtidPosition::parse(text).ok_or_else(|| format!("cannot read the GTID position `{text}`"))
}

/// A string literal for SQL: quotes and backslashes escaped.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote("127.0.0.1"), "'127.0.0.1'");
        assert_eq!(quote(r"it's \ here"), r"'it\'s \\ here'");
    }
}
