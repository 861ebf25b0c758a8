//! A local MariaDB primary and replicas with GTID replication, for tests,
//! benchmarks and `rwsplit sandbox` / `rwsplit demo`.
//!
//! Each server runs from the machine's `mariadbd` in its own directory on a
//! free loopback port. Servers are stopped by PID when the [`Sandbox`] is
//! dropped, and killed by the kernel if this process dies first (see
//! [`process`]). Nothing is ever killed by name.

mod process;
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

pub use process::{is_alive, send_signal};
pub use server::{SandboxRole, Server};

/// A MySQL account the sandbox creates on every server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub user: &'static str,
    pub password: &'static str,
}

/// The application account: every privilege except `READ_ONLY ADMIN`, so a
/// write sent to a replica by mistake fails with error 1290 instead of
/// silently diverging the replica.
pub const APP: Account = Account {
    user: "app",
    password: "app",
};
/// The account rwsplit's monitor uses: replication status, promotion,
/// fencing (`read_only`), and the heartbeat schema.
pub const MONITOR: Account = Account {
    user: "monitor",
    password: "monitor",
};
/// The account replicas replicate with.
pub const REPLICATION: Account = Account {
    user: "repl",
    password: "repl",
};

const APP_GRANTS: &str =
    "GRANT ALL PRIVILEGES ON *.* TO {user}; REVOKE READ_ONLY ADMIN ON *.* FROM {user}";
const MONITOR_GRANTS: &str = "GRANT SUPER, RELOAD, PROCESS, SHOW DATABASES, EVENT, SET USER, \
    READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, BINLOG ADMIN, \
    BINLOG MONITOR, SLAVE MONITOR, CONNECTION ADMIN ON *.* TO {user}; \
    GRANT ALL PRIVILEGES ON rwsplit.* TO {user}";
const REPLICATION_GRANTS: &str = "GRANT REPLICATION SLAVE ON *.* TO {user}";

/// Longest Unix socket path Linux accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How to build a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Number of replicas besides the primary.
    pub replicas: usize,
    /// Directory to keep the servers in; `None` uses a temporary directory
    /// removed when the sandbox is dropped. Must be empty or not exist.
    pub dir: Option<PathBuf>,
    /// Extra mariadbd options for every server (TLS certificates, say).
    pub server_args: Vec<String>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            replicas: 2,
            dir: None,
            server_args: Vec::new(),
        }
    }
}

/// Why a sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "{program} was not found (looked in PATH, /usr/sbin, /usr/local/sbin); \
         install MariaDB with `apt-get install mariadb-server` (Debian/Ubuntu) \
         or `dnf install mariadb-server` (Fedora/RHEL)"
    )]
    NotInstalled { program: &'static str },
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox directory {0} is not empty; give an empty or new directory")]
    DirNotEmpty(PathBuf),
    #[error("socket path {0} is longer than {MAX_SOCKET_PATH} bytes; choose a shorter --dir")]
    PathTooLong(PathBuf),
    #[error("mariadb-install-db failed ({status}):\n{output}")]
    InstallFailed { status: String, output: String },
    #[error("{server} exited during start-up ({status}); end of its error log:\n{log_tail}")]
    ServerExited {
        server: String,
        status: String,
        log_tail: String,
    },
    #[error("{server}: timed out waiting for {what}")]
    Timeout { server: String, what: String },
    #[error("{server}: {action} failed: {source}")]
    Sql {
        server: String,
        action: String,
        #[source]
        source: mysql_async::Error,
    },
}

/// Where the sandbox lives; a temporary directory is removed on drop.
#[derive(Debug)]
enum Root {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Root {
    fn path(&self) -> &Path {
        match self {
            Root::Temporary(dir) => dir.path(),
            Root::Kept(path) => path,
        }
    }
}

/// A running primary and its replicas.
#[derive(Debug)]
pub struct Sandbox {
    /// The primary first, then the replicas. Declared before `root` so the
    /// servers stop before their directory is removed.
    servers: Vec<Server>,
    root: Root,
    startup: Duration,
}

impl Sandbox {
    /// Starts a primary and `options.replicas` replicas and waits until every
    /// server answers and every replica's IO and SQL threads run.
    pub async fn start(options: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let started = Instant::now();
        let mariadbd = find_program("mariadbd")?;
        let install_db = find_program("mariadb-install-db")?;
        let root = prepare_root(options.dir)?;
        let template = root.path().join("template");
        tokio::task::spawn_blocking({
            let template = template.clone();
            move || install_template(&install_db, &template)
        })
        .await
        .map_err(|e| {
            io_error(
                "prepare the data directory template",
                std::io::Error::other(e),
            )
        })??;

        let mut servers = Vec::with_capacity(options.replicas + 1);
        for index in 0..=options.replicas {
            let server_id = index as u32 + 1;
            let dir = root.path().join(format!("db{server_id}"));
            check_socket_path(&dir)?;
            copy_dir(&template, &dir.join("data")).map_err(|e| {
                io_error(
                    &format!("copy the data directory into {}", dir.display()),
                    e,
                )
            })?;
            let role = if index == 0 {
                SandboxRole::Primary
            } else {
                SandboxRole::Replica
            };
            let spec = server::ServerSpec {
                name: format!("db{server_id}"),
                server_id,
                role,
                dir,
                mariadbd: &mariadbd,
                extra_args: &options.server_args,
            };
            servers.push(spec.start().await?);
        }
        // The template is only a source of copies.
        for dir in [&template, &template.with_extension("tmp")] {
            std::fs::remove_dir_all(dir).map_err(|e| io_error("remove the template", e))?;
        }

        let accounts = [
            (&APP, APP_GRANTS),
            (&MONITOR, MONITOR_GRANTS),
            (&REPLICATION, REPLICATION_GRANTS),
        ];
        for server in &servers {
            server::create_accounts(server, &accounts).await?;
        }
        let sandbox = Sandbox {
            servers,
            root,
            startup: Duration::ZERO,
        };
        for replica in sandbox.replicas() {
            server::start_replication(replica, sandbox.primary(), &REPLICATION).await?;
        }
        Ok(Sandbox {
            startup: started.elapsed(),
            ..sandbox
        })
    }

    /// The server started as primary (`db1`).
    pub fn primary(&self) -> &Server {
        &self.servers[0]
    }

    /// The servers started as replicas.
    pub fn replicas(&self) -> &[Server] {
        &self.servers[1..]
    }

    /// Every server, the primary first.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// Every server, to restart one.
    pub fn servers_mut(&mut self) -> &mut [Server] {
        &mut self.servers
    }

    /// The directory holding every server's files.
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// How long [`Sandbox::start`] took.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// Waits until every replica has applied everything the primary has
    /// binary-logged so far.
    pub async fn sync_replicas(&self) -> Result<(), SandboxError> {
        let primary = self.primary();
        let mut conn = primary.admin().await?;
        let position: String = conn
            .query_first("SELECT @@gtid_binlog_pos")
            .await
            .map_err(|source| primary.sql_error("read @@gtid_binlog_pos", source))?
            .unwrap_or_default();
        for replica in self.replicas() {
            let mut conn = replica.admin().await?;
            let waited: Option<i64> = conn
                .exec_first("SELECT MASTER_GTID_WAIT(?, 30)", (position.as_str(),))
                .await
                .map_err(|source| replica.sql_error("MASTER_GTID_WAIT", source))?;
            if waited != Some(0) {
                return Err(SandboxError::Timeout {
                    server: replica.name.clone(),
                    what: format!("GTID position {position} to be applied"),
                });
            }
        }
        Ok(())
    }
}

fn io_error(action: &str, source: std::io::Error) -> SandboxError {
    SandboxError::Io {
        action: action.to_owned(),
        source,
    }
}

/// Finds a MariaDB program in PATH or the usual system directories.
fn find_program(program: &'static str) -> Result<PathBuf, SandboxError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(SandboxError::NotInstalled { program })
}

fn prepare_root(dir: Option<PathBuf>) -> Result<Root, SandboxError> {
    match dir {
        None => tempfile::Builder::new()
            .prefix("rwsplit-sandbox-")
            .tempdir()
            .map(Root::Temporary)
            .map_err(|e| io_error("create a temporary directory", e)),
        Some(dir) => {
            let entries = std::fs::read_dir(&dir).map(|mut d| d.next().is_some());
            match entries {
                Ok(true) => return Err(SandboxError::DirNotEmpty(dir)),
                Ok(false) => {}
                Err(_) => std::fs::create_dir_all(&dir)
                    .map_err(|e| io_error(&format!("create {}", dir.display()), e))?,
            }
            let dir = dir
                .canonicalize()
                .map_err(|e| io_error(&format!("resolve {}", dir.display()), e))?;
            Ok(Root::Kept(dir))
        }
    }
}

fn check_socket_path(server_dir: &Path) -> Result<(), SandboxError> {
    let socket = server_dir.join("mysqld.sock");
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(SandboxError::PathTooLong(socket));
    }
    Ok(())
}

/// Creates an initial data directory once; each server gets a copy.
fn install_template(install_db: &Path, template: &Path) -> Result<(), SandboxError> {
    // A temporary directory of its own: concurrent installs sharing /tmp
    // remove each other's temporary tables and fail.
    let tmpdir = template.with_extension("tmp");
    std::fs::create_dir_all(&tmpdir)
        .map_err(|e| io_error("create the install's temporary directory", e))?;
    let mut command = Command::new(install_db);
    command.args([
        "--no-defaults",
        &format!("--datadir={}", template.display()),
        &format!("--tmpdir={}", tmpdir.display()),
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        "--skip-name-resolve",
        "--innodb-log-file-size=16M",
        "--innodb-buffer-pool-size=32M",
    ]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        command.arg("--user=root");
    }
    let output = command
        .output()
        .map_err(|e| io_error(&format!("run {}", install_db.display()), e))?;
    if !output.status.success() {
        return Err(SandboxError::InstallFailed {
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
