//! Turns the raw file model into a [`Config`], collecting every problem.
//!
//! Each leaf goes through a small pure parser (`leaves`) that returns the
//! typed value or a message saying what was expected; [`Checker`] records
//! failures with their key path and substitutes the default so that
//! checking can continue.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::leaves::*;
use super::raw::*;
use super::{
    AdminConfig, AuthPluginChoice, BackendConfig, BackendTlsConfig, Config, FailoverConfig,
    ListenConfig, ListenTlsConfig, LockQuorum, MonitorConfig, Problem, ReadYourWrites,
    ReplicaAffinity, ReplicaSelection, Role, RoutingConfig, UserConfig,
};

/// Most backends one rwsplit serves (routing keeps them in a 64-bit set).
const MAX_BACKENDS: usize = 64;

pub(super) fn validate(
    raw: RawConfig,
    unknown_keys: Vec<String>,
    base: &Path,
) -> Result<Config, Vec<Problem>> {
    let mut check = Checker {
        problems: Vec::new(),
        base,
    };
    for path in unknown_keys {
        let message = super::keys::unknown_key_message(&path);
        check.problem(&path, message);
    }
    let config = Config {
        listen: listen(&mut check, raw.listen.unwrap_or_default()),
        admin: admin(&mut check, raw.admin.unwrap_or_default()),
        users: users(&mut check, raw.users),
        backends: backends(&mut check, raw.backends),
        monitor: monitor(&mut check, raw.monitor),
        routing: routing(&mut check, raw.routing.unwrap_or_default()),
        failover: failover(&mut check, raw.failover.unwrap_or_default()),
    };
    if check.problems.is_empty() {
        Ok(config)
    } else {
        Err(check.problems)
    }
}

/// Collects problems while converting leaves.
struct Checker<'a> {
    problems: Vec<Problem>,
    /// Directory relative file paths are resolved against.
    base: &'a Path,
}

impl Checker<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Parses an optional leaf, falling back to `default` when it is absent or bad.
    fn parse<T>(
        &mut self,
        path: &str,
        value: Scalar,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match value {
            None => default,
            Some(text) => parse(text.trim()).unwrap_or_else(|message| {
                self.problem(path, message);
                default
            }),
        }
    }

    /// A leaf that must be present and non-empty.
    fn required(&mut self, path: &str, value: Scalar, what: &str) -> String {
        match value {
            Some(text) if !text.is_empty() => text,
            _ => {
                self.problem(path, format!("missing; expected {what}"));
                String::new()
            }
        }
    }

    /// A file that must exist; relative paths are taken from the config's directory.
    fn file(&mut self, path: &str, value: Scalar, what: &str) -> PathBuf {
        let name = self.required(path, value, what);
        if name.is_empty() {
            return PathBuf::new();
        }
        let file = self.base.join(name);
        if let Err(e) = std::fs::metadata(&file) {
            self.problem(path, format!("cannot read {}: {e}", file.display()));
        }
        file
    }
}

fn listen(check: &mut Checker, raw: RawListen) -> ListenConfig {
    let listen = listen_leaves(check, raw);
    if listen.buffered_packet_budget < listen.max_allowed_packet {
        check.problem(
            "listen.buffered_packet_budget",
            format!(
                "{} bytes is less than listen.max_allowed_packet ({} bytes): a packet of the largest size allowed could never be received; raise it or lower max_allowed_packet",
                listen.buffered_packet_budget, listen.max_allowed_packet
            ),
        );
    }
    listen
}

fn listen_leaves(check: &mut Checker, raw: RawListen) -> ListenConfig {
    let tls = raw.tls.map(|tls| ListenTlsConfig {
        cert: check.file("listen.tls.cert", tls.cert, "a PEM certificate file"),
        key: check.file("listen.tls.key", tls.key, "a PEM private key file"),
        required: check.parse("listen.tls.required", tls.required, false, boolean),
    });
    ListenConfig {
        address: check.parse("listen.address", raw.address, loopback(6033), socket_addr),
        tls,
        max_client_connections: check.parse(
            "listen.max_client_connections",
            raw.max_client_connections,
            4096,
            positive,
        ),
        handshake_timeout: check.parse(
            "listen.handshake_timeout",
            raw.handshake_timeout,
            Duration::from_secs(10),
            positive_duration,
        ),
        max_logins_per_address: check.parse(
            "listen.max_logins_per_address",
            raw.max_logins_per_address,
            32,
            positive,
        ),
        failed_login_delay: check.parse(
            "listen.failed_login_delay",
            raw.failed_login_delay,
            Duration::from_secs(1),
            duration,
        ),
        read_timeout: check.parse(
            "listen.read_timeout",
            raw.read_timeout,
            Duration::from_secs(30),
            positive_duration,
        ),
        max_allowed_packet: check.parse(
            "listen.max_allowed_packet",
            raw.max_allowed_packet,
            64 << 20,
            packet_size,
        ),
        buffered_packet_budget: check.parse(
            "listen.buffered_packet_budget",
            raw.buffered_packet_budget,
            256 << 20,
            memory_size,
        ),
        auth_plugin: check.parse("listen.auth_plugin", raw.auth_plugin, None, auth_plugin),
        threads: {
            let cpus = available_cpus();
            check.parse("listen.threads", raw.threads, one_per_cpu(cpus), |s| {
                session_threads(s, cpus)
            })
        },
        pin_threads: check.parse("listen.pin_threads", raw.pin_threads, false, boolean),
    }
}

/// The CPUs this process may run on: its CPU affinity and its cgroup's
/// CPU quota, as a container's limit sets them.
fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn one_per_cpu(cpus: usize) -> usize {
    cpus.clamp(1, 1024)
}

/// `listen.threads`: an integer from 1 to 1024, or `auto` for one thread
/// per CPU available (`cpus`), as HAProxy's `nbthread` and MaxScale's
/// `threads=auto` do.
fn session_threads(text: &str, cpus: usize) -> Result<usize, String> {
    if text.eq_ignore_ascii_case("auto") {
        return Ok(one_per_cpu(cpus));
    }
    match text.parse() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!(
            "`{text}` is not a number of threads; expected `auto` or an integer from 1 to 1024"
        )),
    }
}

fn admin(check: &mut Checker, raw: RawAdmin) -> AdminConfig {
    let token = raw.token.filter(|t| {
        let empty = t.is_empty();
        if empty {
            check.problem("admin.token", "empty; remove the key or give a token");
        }
        !empty
    });
    AdminConfig {
        address: check.parse("admin.address", raw.address, loopback(6034), socket_addr),
        token,
    }
}

/// A password plugin by name, or `auto`.
fn auth_plugin(s: &str) -> Result<Option<AuthPluginChoice>, String> {
    one_of(
        s,
        &[
            ("auto", None),
            (
                "mysql_native_password",
                Some(AuthPluginChoice::NativePassword),
            ),
            (
                "caching_sha2_password",
                Some(AuthPluginChoice::CachingSha2Password),
            ),
        ],
    )
}

fn users(check: &mut Checker, raw: Option<Vec<RawUser>>) -> Vec<UserConfig> {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        check.problem(
            "users",
            "no users; expected at least one `{ name, password }`",
        );
    }
    let mut seen = HashSet::new();
    let mut users = Vec::new();
    for (i, user) in raw.into_iter().enumerate() {
        let path = format!("users[{i}]");
        let name = check.required(&format!("{path}.name"), user.name, "a user name");
        if name.chars().count() > 80 {
            check.problem(
                &format!("{path}.name"),
                "longer than 80 characters, the MariaDB limit",
            );
        }
        if !name.is_empty() && !seen.insert(name.clone()) {
            check.problem(
                &format!("{path}.name"),
                format!("duplicate user `{name}`; each user is listed once"),
            );
        }
        let password = check.required(&format!("{path}.password"), user.password, "a password");
        let auth_plugin = check.parse(
            &format!("{path}.auth_plugin"),
            user.auth_plugin,
            None,
            auth_plugin,
        );
        users.push(UserConfig {
            name,
            password,
            auth_plugin,
        });
    }
    users
}

fn backends(check: &mut Checker, raw: Option<Vec<RawBackend>>) -> Vec<BackendConfig> {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        check.problem(
            "backends",
            "no backends; expected at least one `{ name, address }`",
        );
    }
    let backends: Vec<BackendConfig> = raw
        .into_iter()
        .enumerate()
        .map(|(i, backend)| self::backend(check, &format!("backends[{i}]"), backend))
        .collect();
    let mut names = HashSet::new();
    let mut addresses = HashSet::new();
    for (i, backend) in backends.iter().enumerate() {
        if !backend.name.is_empty() && !names.insert(&backend.name) {
            check.problem(
                &format!("backends[{i}].name"),
                format!(
                    "duplicate backend name `{}`; names must be unique",
                    backend.name
                ),
            );
        }
        if !backend.address.is_empty() && !addresses.insert(&backend.address) {
            check.problem(
                &format!("backends[{i}].address"),
                format!(
                    "`{}` is listed twice; each server is one backend",
                    backend.address
                ),
            );
        }
    }
    if backends.len() > MAX_BACKENDS {
        check.problem(
            "backends",
            format!(
                "{} backends; at most {MAX_BACKENDS} are supported",
                backends.len()
            ),
        );
    }
    let primaries = backends
        .iter()
        .filter(|b| b.role == Some(Role::Primary))
        .count();
    if primaries > 1 {
        check.problem(
            "backends",
            format!("{primaries} backends have `role: primary`; at most one may"),
        );
    }
    backends
}

fn backend(check: &mut Checker, path: &str, raw: RawBackend) -> BackendConfig {
    let at = |key: &str| format!("{path}.{key}");
    let name = check.required(&at("name"), raw.name, "a name such as db1");
    if !name.is_empty()
        && !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        check.problem(
            &at("name"),
            format!("`{name}` has characters other than letters, digits, `_`, `.` and `-`"),
        );
    }
    let address = check.required(&at("address"), raw.address, "host:port");
    if !address.is_empty() {
        if let Err(message) = host_port(&address) {
            check.problem(&at("address"), message);
        }
    }
    let tls = raw.tls.map(|tls| BackendTlsConfig {
        ca: tls
            .ca
            .map(|ca| check.file(&at("tls.ca"), Some(ca), "a PEM file of CA certificates")),
        verify: check.parse(&at("tls.verify"), tls.verify, true, boolean),
    });
    BackendConfig {
        role: check.parse(&at("role"), raw.role, None, |s| {
            one_of(s, &[("primary", Role::Primary), ("replica", Role::Replica)]).map(Some)
        }),
        weight: check.parse(&at("weight"), raw.weight, 1, |s| {
            positive(s).map_err(|e| {
                format!("{e}; use `backup: true` for a replica that reads only when no other can")
            })
        }),
        backup: check.parse(&at("backup"), raw.backup, false, boolean),
        name,
        address,
        tls,
    }
}

fn monitor(check: &mut Checker, raw: Option<RawMonitor>) -> MonitorConfig {
    let raw = raw.unwrap_or_default();
    MonitorConfig {
        user: check.required(
            "monitor.user",
            raw.user,
            "the user name of the monitor account",
        ),
        password: check.required(
            "monitor.password",
            raw.password,
            "the password of the monitor account",
        ),
        interval: check.parse(
            "monitor.interval",
            raw.interval,
            Duration::from_millis(500),
            positive_duration,
        ),
        connect_timeout: check.parse(
            "monitor.connect_timeout",
            raw.connect_timeout,
            Duration::from_secs(1),
            positive_duration,
        ),
        query_timeout: check.parse(
            "monitor.query_timeout",
            raw.query_timeout,
            Duration::from_secs(1),
            positive_duration,
        ),
        failure_threshold: check.parse(
            "monitor.failure_threshold",
            raw.failure_threshold,
            3,
            positive,
        ),
        recovery_threshold: check.parse(
            "monitor.recovery_threshold",
            raw.recovery_threshold,
            2,
            positive,
        ),
        heartbeat_table: check.parse(
            "monitor.heartbeat_table",
            raw.heartbeat_table,
            "rwsplit.heartbeat".to_owned(),
            qualified_table,
        ),
    }
}

fn routing(check: &mut Checker, raw: RawRouting) -> RoutingConfig {
    RoutingConfig {
        max_replication_lag: check.parse(
            "routing.max_replication_lag",
            raw.max_replication_lag,
            Duration::from_secs(2),
            positive_duration,
        ),
        replica_selection: check.parse(
            "routing.replica_selection",
            raw.replica_selection,
            ReplicaSelection::RoundRobin,
            |s| {
                one_of(
                    s,
                    &[
                        ("round_robin", ReplicaSelection::RoundRobin),
                        ("least_connections", ReplicaSelection::LeastConnections),
                        ("least_lag", ReplicaSelection::LeastLag),
                    ],
                )
            },
        ),
        replica_affinity: check.parse(
            "routing.replica_affinity",
            raw.replica_affinity,
            ReplicaAffinity::Session,
            |s| {
                one_of(
                    s,
                    &[
                        ("session", ReplicaAffinity::Session),
                        ("statement", ReplicaAffinity::Statement),
                    ],
                )
            },
        ),
        read_your_writes: check.parse(
            "routing.read_your_writes",
            raw.read_your_writes,
            ReadYourWrites::Global,
            |s| {
                one_of(
                    s,
                    &[
                        ("off", ReadYourWrites::Off),
                        ("session", ReadYourWrites::Session),
                        ("global", ReadYourWrites::Global),
                    ],
                )
            },
        ),
        causal_read_timeout: check.parse(
            "routing.causal_read_timeout",
            raw.causal_read_timeout,
            Duration::from_secs(1),
            positive_duration,
        ),
        primary_serves_reads: check.parse(
            "routing.primary_serves_reads",
            raw.primary_serves_reads,
            false,
            boolean,
        ),
        wait_for_primary: check.parse(
            "routing.wait_for_primary",
            raw.wait_for_primary,
            Duration::from_secs(3),
            duration,
        ),
        session_history_limit: check.parse(
            "routing.session_history_limit",
            raw.session_history_limit,
            1000,
            positive,
        ),
        transaction_replay: check.parse(
            "routing.transaction_replay",
            raw.transaction_replay,
            false,
            boolean,
        ),
        transaction_replay_max_size: check.parse(
            "routing.transaction_replay_max_size",
            raw.transaction_replay_max_size,
            1 << 20,
            packet_size,
        ),
    }
}

fn failover(check: &mut Checker, raw: RawFailover) -> FailoverConfig {
    FailoverConfig {
        auto: check.parse("failover.auto", raw.auto, false, boolean),
        failure_threshold: check.parse(
            "failover.failure_threshold",
            raw.failure_threshold,
            3,
            positive,
        ),
        replication_user: raw.replication_user,
        replication_password: raw.replication_password,
        timeout: check.parse(
            "failover.timeout",
            raw.timeout,
            Duration::from_secs(10),
            positive_duration,
        ),
        lock_quorum: check.parse(
            "failover.lock_quorum",
            raw.lock_quorum,
            LockQuorum::MajorityOfAll,
            |s| {
                one_of(
                    s,
                    &[
                        ("majority_of_all", LockQuorum::MajorityOfAll),
                        ("majority_of_running", LockQuorum::MajorityOfRunning),
                    ],
                )
            },
        ),
        fence_command: raw
            .fence_command
            .filter(|command| !command.trim().is_empty()),
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_threads_are_a_count_or_one_per_cpu() {
        assert_eq!(session_threads("auto", 2), Ok(2));
        assert_eq!(session_threads("AUTO", 4096), Ok(1024));
        assert_eq!(session_threads("3", 2), Ok(3), "a count is taken as given");
        assert!(
            session_threads("0", 2)
                .unwrap_err()
                .contains("`auto` or an integer")
        );
        assert!(session_threads("many", 2).is_err());
    }
}
