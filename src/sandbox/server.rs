//! One sandbox MariaDB server: its options, start-up, readiness and accounts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::process::ChildProcess;
use super::{Account, SandboxError};

/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long mariadbd may take to shut down cleanly before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Attempts at finding a free port when another process takes ours first.
const PORT_ATTEMPTS: usize = 5;

/// The role a sandbox server is set up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxRole {
    Primary,
    Replica,
}

/// A running sandbox server.
#[derive(Debug)]
pub struct Server {
    /// `db1`, `db2`, ...: the primary is `db1`.
    pub name: String,
    /// `@@server_id`, unique in the sandbox (1 for the primary).
    pub server_id: u32,
    /// The role it was set up in (failover tests may change the real one).
    pub role: SandboxRole,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Its own directory: data, socket, error log.
    pub dir: PathBuf,
    process: ChildProcess,
    /// How it was started, to start it again.
    command: Vec<std::ffi::OsString>,
}

impl Server {
    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends a signal (SIGSTOP, SIGCONT, SIGKILL...) to the server process.
    pub fn signal(&self, signal: libc::c_int) -> std::io::Result<()> {
        self.process.signal(signal)
    }

    /// Stops the server (if it still runs) and starts it again on the same
    /// port with the same options: a crashed primary coming back, say.
    pub async fn restart(&mut self) -> Result<(), SandboxError> {
        self.process.stop();
        self.process = spawn(&self.command)?;
        wait_ready(self).await
    }

    /// Connection options over TCP for `account`.
    pub fn opts(&self, account: &Account) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .prefer_socket(false)
            .user(Some(account.user))
            .pass(Some(account.password))
            .into()
    }

    /// Connection options for `root` over the server's Unix socket, for
    /// administration in tests (stopping replication and such).
    pub fn admin_opts(&self) -> Opts {
        admin_opts(&self.dir)
    }

    /// Opens an administrative connection.
    pub async fn admin(&self) -> Result<Conn, SandboxError> {
        Conn::new(self.admin_opts())
            .await
            .map_err(|source| self.sql_error("connect as root", source))
    }

    /// The path of the server's error log.
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    pub(super) fn sql_error(&self, action: &str, source: mysql_async::Error) -> SandboxError {
        SandboxError::Sql {
            server: self.name.clone(),
            action: action.to_owned(),
            source,
        }
    }
}

/// What is needed to start one server.
pub(super) struct ServerSpec<'a> {
    pub name: String,
    pub server_id: u32,
    pub role: SandboxRole,
    pub dir: PathBuf,
    pub mariadbd: &'a Path,
    pub extra_args: &'a [String],
}

impl ServerSpec<'_> {
    /// Starts the server (datadir already in `dir/data`) and waits until it
    /// accepts connections, retrying on another port if ours was taken.
    pub async fn start(self) -> Result<Server, SandboxError> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let command: Vec<std::ffi::OsString> = std::iter::once(self.mariadbd.into())
                .chain(
                    server_args(&self.dir, port, self.server_id, self.role)
                        .into_iter()
                        .map(Into::into),
                )
                .chain(self.extra_args.iter().map(Into::into))
                .collect();
            let mut server = Server {
                name: self.name.clone(),
                server_id: self.server_id,
                role: self.role,
                port,
                dir: self.dir.clone(),
                process: spawn(&command)?,
                command,
            };
            match wait_ready(&mut server).await {
                Ok(()) => return Ok(server),
                Err(SandboxError::ServerExited { log_tail, .. }) if port_was_taken(&log_tail) => {
                    last_error = Some(format!("port {port} was taken"));
                }
                Err(e) => return Err(e),
            }
        }
        Err(SandboxError::Timeout {
            server: self.name,
            what: format!("a free port ({})", last_error.unwrap_or_default()),
        })
    }
}

/// Starts `command` (a mariadbd and its arguments), its output discarded.
fn spawn(command: &[std::ffi::OsString]) -> Result<ChildProcess, SandboxError> {
    let mut process = Command::new(&command[0]);
    process
        .args(&command[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    ChildProcess::spawn(process, STOP_GRACE).map_err(|source| SandboxError::Io {
        action: format!("start {}", command[0].to_string_lossy()),
        source,
    })
}

/// mariadbd options for a small, fast, disposable server.
pub(super) fn server_args(dir: &Path, port: u16, server_id: u32, role: SandboxRole) -> Vec<String> {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut args = vec![
        "--no-defaults".to_owned(),
        format!("--datadir={}", path("data")),
        format!("--socket={}", path("mysqld.sock")),
        format!("--pid-file={}", path("mysqld.pid")),
        format!("--log-error={}", path("error.log")),
        format!("--tmpdir={}", dir.display()),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--server-id={server_id}"),
        // Replication: GTID, row-based, every change logged so a replica can
        // become a primary.
        format!("--log-basename=db{server_id}"),
        "--log-bin".to_owned(),
        "--binlog-format=ROW".to_owned(),
        "--log-slave-updates=ON".to_owned(),
        "--gtid-strict-mode=ON".to_owned(),
        "--skip-slave-start".to_owned(),
        // Small and fast: three servers share two cores in tests.
        "--innodb-buffer-pool-size=32M".to_owned(),
        "--innodb-log-file-size=16M".to_owned(),
        "--innodb-flush-log-at-trx-commit=2".to_owned(),
        "--sync-binlog=0".to_owned(),
        "--key-buffer-size=1M".to_owned(),
        "--aria-pagecache-buffer-size=1M".to_owned(),
        "--performance-schema=OFF".to_owned(),
        "--skip-name-resolve".to_owned(),
        "--max-connections=500".to_owned(),
        // Large enough for the 20 MiB values the protocol tests send.
        "--max-allowed-packet=64M".to_owned(),
        "--character-set-server=utf8mb4".to_owned(),
        "--collation-server=utf8mb4_general_ci".to_owned(),
        "--local-infile=ON".to_owned(),
    ];
    if role == SandboxRole::Replica {
        args.push("--read-only=ON".to_owned());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // mariadbd refuses to run as root unless told to.
        args.push("--user=root".to_owned());
    }
    args
}

pub(super) fn admin_opts(dir: &Path) -> Opts {
    OptsBuilder::default()
        .socket(Some(dir.join("mysqld.sock").display().to_string()))
        .user(Some("root"))
        .into()
}

/// Waits until the server accepts a connection on its socket.
async fn wait_ready(server: &mut Server) -> Result<(), SandboxError> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = server.process.try_wait() {
            return Err(SandboxError::ServerExited {
                server: server.name.clone(),
                status: status.to_string(),
                log_tail: log_tail(&server.error_log()),
            });
        }
        if let Ok(conn) = Conn::new(server.admin_opts()).await {
            // Closing politely is best effort; the connection was only a probe.
            let _ = conn.disconnect().await;
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(SandboxError::Timeout {
                server: server.name.clone(),
                what: format!(
                    "accepting connections (see {})",
                    server.error_log().display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates the sandbox accounts on one server without binary-logging them,
/// so every server has the same accounts and no server has extra GTIDs.
pub(super) async fn create_accounts(
    server: &Server,
    accounts: &[(&Account, &str)],
) -> Result<(), SandboxError> {
    let mut conn = server.admin().await?;
    let mut statements = vec!["SET SESSION sql_log_bin = 0".to_owned()];
    for (account, grants) in accounts {
        statements.push(format!(
            "CREATE USER '{}'@'%' IDENTIFIED BY '{}'",
            account.user, account.password
        ));
        for grant in grants.split(';').filter(|g| !g.trim().is_empty()) {
            statements.push(grant.replace("{user}", &format!("'{}'@'%'", account.user)));
        }
    }
    for statement in &statements {
        conn.query_drop(statement)
            .await
            .map_err(|source| server.sql_error(statement, source))?;
    }
    conn.disconnect()
        .await
        .map_err(|source| server.sql_error("disconnect", source))
}

/// Points a replica at the primary and waits until both threads run.
pub(super) async fn start_replication(
    replica: &Server,
    primary: &Server,
    account: &Account,
) -> Result<(), SandboxError> {
    let mut conn = replica.admin().await?;
    let change = format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{}', \
         MASTER_PASSWORD='{}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
         MASTER_HEARTBEAT_PERIOD={}",
        primary.port,
        account.user,
        account.password,
        crate::failover::server::HEARTBEAT_PERIOD
    );
    for statement in [change.as_str(), "START SLAVE"] {
        conn.query_drop(statement)
            .await
            .map_err(|source| replica.sql_error(statement, source))?;
    }
    let started = Instant::now();
    loop {
        let status: Option<mysql_async::Row> = conn
            .query_first("SHOW SLAVE STATUS")
            .await
            .map_err(|source| replica.sql_error("SHOW SLAVE STATUS", source))?;
        let column = |name: &str| -> String {
            status
                .as_ref()
                .and_then(|row| row.get_opt::<String, _>(name))
                .and_then(Result::ok)
                .unwrap_or_default()
        };
        if column("Slave_IO_Running") == "Yes" && column("Slave_SQL_Running") == "Yes" {
            break;
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(SandboxError::Timeout {
                server: replica.name.clone(),
                what: format!(
                    "replication threads to run (IO: {}, SQL: {}, last IO error: {})",
                    column("Slave_IO_Running"),
                    column("Slave_SQL_Running"),
                    column("Last_IO_Error")
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.disconnect()
        .await
        .map_err(|source| replica.sql_error("disconnect", source))
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16, SandboxError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| SandboxError::Io {
            action: "find a free port on 127.0.0.1".to_owned(),
            source,
        })
}

fn port_was_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("Do you already have another")
}

/// The last lines of a log file, for error messages.
pub(super) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_read_only_and_primaries_are_not() {
        let dir = Path::new("/tmp/x");
        let replica = server_args(dir, 3307, 2, SandboxRole::Replica);
        let primary = server_args(dir, 3306, 1, SandboxRole::Primary);
        assert!(replica.contains(&"--read-only=ON".to_owned()));
        assert!(!primary.iter().any(|a| a.starts_with("--read-only")));
        for args in [&replica, &primary] {
            assert_eq!(args[0], "--no-defaults", "must come first to be honoured");
            for needed in [
                "--log-bin",
                "--binlog-format=ROW",
                "--log-slave-updates=ON",
                "--gtid-strict-mode=ON",
            ] {
                assert!(args.contains(&needed.to_owned()), "{needed} missing");
            }
        }
        assert!(replica.contains(&"--port=3307".to_owned()));
        assert!(replica.contains(&"--server-id=2".to_owned()));
    }

    #[test]
    fn taken_ports_are_recognised() {
        assert!(port_was_taken(
            "[ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use"
        ));
        assert!(!port_was_taken("[ERROR] Aborting"));
    }
}
