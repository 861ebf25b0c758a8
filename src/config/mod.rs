//! Typed configuration (`proxy.yaml`): loading, `${VAR}` substitution and
//! validation that reports every problem with its key path.
//!
//! Loading goes text → [`interpolate`](mod@interpolate) → YAML ([`raw`], unknown keys collected)
//! → [`validate`] → [`Config`]. Only a YAML syntax error stops early; every
//! other mistake is collected so that one run of `rwsplit check-config` shows
//! them all.

mod interpolate;
mod keys;
mod leaves;
mod raw;
mod redact;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use interpolate::{InterpolationError, InterpolationErrorKind, interpolate};

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where applications connect.
    pub listen: ListenConfig,
    /// The HTTP admin API (status, metrics, switchover).
    pub admin: AdminConfig,
    /// Accounts applications log in with; rwsplit logs in to backends as the same user.
    pub users: Vec<UserConfig>,
    /// The MySQL/MariaDB servers behind the proxy.
    pub backends: Vec<BackendConfig>,
    /// Health checks and replication-lag measurement.
    pub monitor: MonitorConfig,
    /// How statements are routed.
    pub routing: RoutingConfig,
    /// Promotion of a replica when the primary fails.
    pub failover: FailoverConfig,
}

/// `listen:` — the client-facing side.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenConfig {
    /// IP address and port to accept MySQL clients on.
    pub address: SocketAddr,
    /// TLS for client connections; `None` means plaintext only.
    pub tls: Option<ListenTlsConfig>,
    /// Client connections served at once; more are refused with ERR 1040.
    pub max_client_connections: usize,
    /// Time a new client has to finish logging in before it is dropped.
    pub handshake_timeout: Duration,
    /// Connections from one address that may be logging in at once; more
    /// are refused with ERR 1040 (see `server::throttle`).
    pub max_logins_per_address: usize,
    /// How much longer each failed login from an address waits for its
    /// answer past the third in a row; zero: no delay.
    pub failed_login_delay: Duration,
    /// Time a client may take to send the rest of a packet it has started.
    pub read_timeout: Duration,
    /// The password plugin offered in the greeting, and the one users
    /// log in with unless they name their own; `None` (`auto`): the one
    /// the primary's flavour defaults to (MariaDB: mysql_native_password,
    /// MySQL 8 and later: caching_sha2_password).
    pub auth_plugin: Option<AuthPluginChoice>,
    /// Largest command packet accepted from a client, in bytes.
    pub max_allowed_packet: usize,
    /// Bytes all clients together may hold in packets over 1 MiB that are
    /// still arriving; at least `max_allowed_packet`.
    pub buffered_packet_budget: usize,
    /// Session threads, each with its own single-threaded runtime.
    pub threads: usize,
    /// Bind each session thread to one CPU of the process's affinity.
    pub pin_threads: bool,
}

/// A password plugin, as a server's account has one: a client that starts
/// with another is switched to it, as a server switches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPluginChoice {
    /// `mysql_native_password`: MariaDB's default, understood by every client.
    NativePassword,
    /// `caching_sha2_password`: MySQL 8's default.
    CachingSha2Password,
}

/// `listen.tls:` — certificate for client connections.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenTlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Refuse logins that do not use TLS.
    pub required: bool,
}

/// `admin:` — the HTTP admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// IP address and port of the admin API (loopback by default).
    pub address: SocketAddr,
    /// Bearer token required on every admin request, when set.
    pub token: Option<String>,
}

/// One entry of `users:`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserConfig {
    /// MySQL user name.
    pub name: String,
    /// Password, used to check client logins and to log in to backends.
    pub password: String,
    /// The plugin the user logs in with (as its account on the servers
    /// has one); `None`: `listen.auth_plugin`.
    pub auth_plugin: Option<AuthPluginChoice>,
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The role a backend is expected to have. The monitor discovers the real
/// one; this is a hint until it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

/// One entry of `backends:`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Unique name used in logs, status output and CLI commands.
    pub name: String,
    /// `host:port`; the host may be a DNS name (resolved on each connect).
    pub address: String,
    /// Expected role, if given.
    pub role: Option<Role>,
    /// Relative share of reads among eligible replicas.
    pub weight: u32,
    /// Serves reads only when no non-backup replica is eligible.
    pub backup: bool,
    /// TLS towards this backend; `None` means plaintext.
    pub tls: Option<BackendTlsConfig>,
}

/// `backends[].tls:` — TLS towards one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendTlsConfig {
    /// PEM file of CA certificates to trust; the system roots are not used.
    pub ca: Option<PathBuf>,
    /// Verify the server certificate (chain and host name).
    pub verify: bool,
}

/// `monitor:` — health checks and lag measurement.
#[derive(Clone, PartialEq)]
pub struct MonitorConfig {
    /// Account the monitor logs in to every backend with.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Time between two checks of a backend.
    pub interval: Duration,
    /// Limit on opening a monitor connection.
    pub connect_timeout: Duration,
    /// Limit on each monitor query.
    pub query_timeout: Duration,
    /// Consecutive failed checks that mark a backend down.
    pub failure_threshold: u32,
    /// Consecutive good checks that bring a backend back.
    pub recovery_threshold: u32,
    /// `schema.table` the heartbeat row is written to on the primary.
    pub heartbeat_table: String,
}

impl fmt::Debug for MonitorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorConfig")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("interval", &self.interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("failure_threshold", &self.failure_threshold)
            .field("recovery_threshold", &self.recovery_threshold)
            .field("heartbeat_table", &self.heartbeat_table)
            .finish()
    }
}

/// How a replica is chosen among the eligible ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaSelection {
    /// In turn, in proportion to `weight`.
    RoundRobin,
    /// Fewest statements in flight, relative to `weight`.
    LeastConnections,
    /// Smallest measured replication lag.
    LeastLag,
}

/// How long a session keeps the replica it reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaAffinity {
    /// A session reads from one replica, chosen by `replica_selection` at
    /// its first read and again whenever that replica leaves rotation.
    Session,
    /// Every read chooses a replica anew.
    Statement,
}

/// Which writes a read must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadYourWrites {
    /// Reads go to any eligible replica.
    Off,
    /// After a write, the session's reads go only to replicas that have
    /// applied it.
    Session,
    /// A read goes only to a replica that has applied every write any
    /// session of this rwsplit had acknowledged when it started (an
    /// application's pool hands one request several connections).
    Global,
}

/// `routing:` — where statements go.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConfig {
    /// Replicas lagging more than this serve no reads.
    pub max_replication_lag: Duration,
    /// Choice among eligible replicas.
    pub replica_selection: ReplicaSelection,
    /// Whether that choice holds for the session or for one statement.
    pub replica_affinity: ReplicaAffinity,
    /// Read-your-writes consistency.
    pub read_your_writes: ReadYourWrites,
    /// How long a read may wait for a replica to catch up in `session` mode.
    pub causal_read_timeout: Duration,
    /// Let the primary serve reads alongside the replicas.
    pub primary_serves_reads: bool,
    /// How long a statement that needs the primary waits for one when
    /// none is known (a switchover or failover under way) before it is
    /// refused; zero refuses at once.
    pub wait_for_primary: Duration,
    /// Session-state commands a session keeps to replay on backend
    /// connections it opens later; past this it stays on the primary.
    pub session_history_limit: usize,
    /// Replay a transaction interrupted by a change of primary on the new
    /// one, when its statements answer there as they did (docs/failover.md).
    pub transaction_replay: bool,
    /// Bytes of statements a transaction may send and still be replayed.
    pub transaction_replay_max_size: usize,
}

/// `failover:` — replacing a failed primary.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverConfig {
    /// Promote a replica automatically when the primary fails.
    pub auto: bool,
    /// Consecutive failed checks of the primary before failover starts.
    pub failure_threshold: u32,
    /// The account a demoted primary replicates with (`None`: the
    /// monitor's); replicas that are repointed keep their own.
    pub replication_user: Option<String>,
    pub replication_password: Option<String>,
    /// Limit on waiting for the new primary to apply what it has, and on
    /// each step of a switchover or failover.
    pub timeout: Duration,
    /// On how many backends a change must hold the topology lock.
    pub lock_quorum: LockQuorum,
    /// Run with `sh -c` before a failover promotes anyone, to make sure
    /// the old primary is stopped (see `failover::fence`).
    pub fence_command: Option<String>,
}

/// On how many backends a switchover or failover must hold the topology
/// lock (`failover.lock_quorum`; MaxScale's `cooperative_monitoring_locks`
/// values of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockQuorum {
    /// More than half of all configured backends: a sidecar cut off from
    /// half of them changes nothing. Two backends cannot fail over.
    MajorityOfAll,
    /// More than half of those that answer: two backends can fail over,
    /// and two sidecars on either side of a network split can each promote
    /// a server.
    MajorityOfRunning,
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `backends[1].address`, or `line 4` for text problems.
    pub path: String,
    /// What is wrong and what is expected instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path} has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads, substitutes and validates the file at `path` using the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_text(&text, path, |name| std::env::var(name).ok())
    }

    /// Parses configuration text. `origin` names it in errors; relative TLS
    /// paths are resolved against its directory.
    pub fn from_text(
        text: &str,
        origin: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let written = text;
        let (text, unresolved) = interpolate(text, env);
        let mut problems: Vec<Problem> = unresolved
            .iter()
            .map(|e| Problem {
                path: format!("line {}", e.line),
                message: e.message(),
            })
            .collect();
        let invalid = |problems| ConfigError::Invalid {
            path: origin.to_owned(),
            problems,
        };
        let (raw, unknown) = match parse_yaml(&text) {
            Ok(parsed) => parsed,
            // A bad substitution may be what broke the YAML: report those first.
            Err(_) if !problems.is_empty() => return Err(invalid(problems)),
            Err(message) => {
                return Err(ConfigError::Syntax {
                    path: origin.to_owned(),
                    message: syntax_error(written, &message),
                });
            }
        };
        let base = origin.parent().unwrap_or(Path::new("."));
        match validate::validate(raw, unknown, base) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(invalid(problems)),
            Err(more) => {
                problems.extend(more);
                Err(invalid(problems))
            }
        }
    }
}

/// What to say of a YAML syntax error, `message` being the parser's about
/// the text after substitution: the parser's message about the file as
/// written with its secrets masked, which quotes no value from the
/// environment and no password; or, when only the substituted text is
/// broken, which line and which references broke it.
fn syntax_error(written: &str, message: &str) -> String {
    match parse_yaml(&redact::mask_secrets(written)) {
        Err(masked) => masked,
        Ok(_) => {
            let line = redact::error_line(message);
            let references = line
                .map(|l| redact::references_on(written, l))
                .unwrap_or_default();
            format!(
                "line {}: a value substituted for {} breaks the YAML syntax there; quote the \
                 reference (\"${{NAME}}\") so that any value is read as text",
                line.map_or_else(|| "?".to_owned(), |l| l.to_string()),
                match references.as_slice() {
                    [] => "a ${...} reference".to_owned(),
                    refs => refs.join(", "),
                }
            )
        }
    }
}

impl Config {
    /// What is valid but probably not meant, one line each: said by
    /// `check-config` and logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.admin.address.ip().is_loopback() && self.admin.token.is_none() {
            warnings.push(format!(
                "admin.address {} is reachable from other machines and admin.token is not set: \
                 anyone who can reach it can switch over or fail over; set admin.token, or \
                 listen on 127.0.0.1",
                self.admin.address
            ));
        }
        warnings
    }
}

/// Deserializes the YAML, returning the raw model and the paths of unknown keys.
fn parse_yaml(text: &str) -> Result<(raw::RawConfig, Vec<String>), String> {
    let mut unknown = Vec::new();
    let raw: Option<raw::RawConfig> = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_ignored::deserialize(de, |path| unknown.push(key_path(&path)))
    })
    .map_err(|e| e.to_string())?;
    Ok((raw.unwrap_or_default(), unknown))
}

/// Renders a serde_ignored path as `backends[0].adress`.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => match key_path(parent) {
            prefix if prefix.is_empty() => key.clone(),
            prefix => format!("{prefix}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}
