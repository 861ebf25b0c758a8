//! Loading proxy.yaml: substitution, defaults, and every validation problem.

use std::path::Path;
use std::time::Duration;

use rwsplit::config::{
    AuthPluginChoice, Config, ConfigError, LockQuorum, ReadYourWrites, ReplicaSelection, Role,
};

const MINIMAL: &str = "
users: [{ name: app, password: secret }]
backends: [{ name: db1, address: '127.0.0.1:3306' }]
monitor: { user: monitor, password: m }
";

fn env(name: &str) -> Option<String> {
    match name {
        "APP_PASSWORD" => Some("from-env".to_owned()),
        "PRIMARY" => Some("10.0.0.1:3306".to_owned()),
        "INTERVAL" => Some("250ms".to_owned()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_text(text, Path::new("/etc/rwsplit/proxy.yaml"), env)
}

/// The (path, message) of every problem in `text`.
fn problems(text: &str) -> Vec<(String, String)> {
    match load(text) {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.into_iter().map(|p| (p.path, p.message)).collect()
        }
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.listen.address.to_string(), "127.0.0.1:6033");
    assert_eq!(config.listen.max_client_connections, 4096);
    assert_eq!(config.listen.handshake_timeout, Duration::from_secs(10));
    assert_eq!(config.listen.read_timeout, Duration::from_secs(30));
    assert_eq!(
        config.listen.auth_plugin, None,
        "auto: the primary's flavour"
    );
    assert_eq!(config.listen.max_allowed_packet, 64 << 20);
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(config.listen.threads, cpus, "auto: one per CPU");
    assert_eq!(config.listen.tls, None);
    assert_eq!(config.admin.address.to_string(), "127.0.0.1:6034");
    assert_eq!(config.admin.token, None);
    assert_eq!(config.backends[0].role, None);
    assert_eq!(config.backends[0].weight, 1);
    assert!(!config.backends[0].backup);
    assert_eq!(config.monitor.interval, Duration::from_millis(500));
    assert_eq!(config.monitor.connect_timeout, Duration::from_secs(1));
    assert_eq!(config.monitor.query_timeout, Duration::from_secs(1));
    assert_eq!(config.monitor.failure_threshold, 3);
    assert_eq!(config.monitor.recovery_threshold, 2);
    assert_eq!(config.monitor.heartbeat_table, "rwsplit.heartbeat");
    assert_eq!(config.routing.max_replication_lag, Duration::from_secs(2));
    assert_eq!(
        config.routing.replica_selection,
        ReplicaSelection::RoundRobin
    );
    assert_eq!(config.routing.read_your_writes, ReadYourWrites::Global);
    assert_eq!(config.routing.causal_read_timeout, Duration::from_secs(1));
    assert!(!config.routing.primary_serves_reads);
    assert_eq!(config.routing.session_history_limit, 1000);
    assert!(!config.routing.transaction_replay);
    assert_eq!(config.routing.transaction_replay_max_size, 1 << 20);
    assert!(!config.failover.auto);
    assert_eq!(config.failover.failure_threshold, 3);
    assert_eq!(config.failover.lock_quorum, LockQuorum::MajorityOfAll);
}

#[test]
fn every_key_is_read() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["cert.pem", "key.pem", "ca.pem"] {
        std::fs::write(dir.path().join(file), "x").unwrap();
    }
    let text = "
listen:
  address: '0.0.0.0:7000'
  tls: { cert: cert.pem, key: key.pem, required: true }
  max_client_connections: 10
  handshake_timeout: 3s
  read_timeout: 5s
  auth_plugin: caching_sha2_password
  max_allowed_packet: 16MiB
  threads: 4
admin: { address: '127.0.0.1:7001', token: t0ken }
users:
  - { name: app, password: '${APP_PASSWORD}', auth_plugin: mysql_native_password }
  - { name: reporting, password: '${REPORTING_PASSWORD:-fallback}' }
backends:
  - { name: db1, address: '${PRIMARY}', role: primary }
  - name: db2
    address: 'db2.internal:3306'
    role: replica
    weight: 3
    backup: true
    tls: { ca: ca.pem, verify: false }
monitor:
  user: monitor
  password: m
  interval: ${INTERVAL}
  connect_timeout: 2s
  query_timeout: 3s
  failure_threshold: 5
  recovery_threshold: 4
  heartbeat_table: ops.beat
routing:
  max_replication_lag: 1s 500ms
  replica_selection: least_lag
  read_your_writes: session
  causal_read_timeout: 250ms
  primary_serves_reads: true
  session_history_limit: 20
  transaction_replay: true
  transaction_replay_max_size: 64K
failover: { auto: true, failure_threshold: 7, lock_quorum: majority_of_running }
";
    let config = Config::from_text(text, &dir.path().join("proxy.yaml"), env).unwrap();
    let tls = config.listen.tls.as_ref().unwrap();
    assert_eq!(
        tls.cert,
        dir.path().join("cert.pem"),
        "relative to the config file"
    );
    assert!(tls.required);
    assert_eq!(config.listen.address.to_string(), "0.0.0.0:7000");
    assert_eq!(config.listen.max_client_connections, 10);
    assert_eq!(config.listen.handshake_timeout, Duration::from_secs(3));
    assert_eq!(config.listen.read_timeout, Duration::from_secs(5));
    assert_eq!(
        config.listen.auth_plugin,
        Some(AuthPluginChoice::CachingSha2Password)
    );
    assert_eq!(config.listen.max_allowed_packet, 16 << 20);
    assert_eq!(config.listen.threads, 4);
    assert_eq!(config.admin.token.as_deref(), Some("t0ken"));
    assert_eq!(config.users[0].password, "from-env");
    assert_eq!(
        config.users[0].auth_plugin,
        Some(AuthPluginChoice::NativePassword)
    );
    assert_eq!(config.users[1].password, "fallback");
    assert_eq!(config.backends[0].address, "10.0.0.1:3306");
    assert_eq!(config.backends[0].role, Some(Role::Primary));
    let db2 = &config.backends[1];
    assert_eq!(
        (db2.role, db2.weight, db2.backup),
        (Some(Role::Replica), 3, true)
    );
    let backend_tls = db2.tls.as_ref().unwrap();
    assert_eq!(
        backend_tls.ca.as_deref(),
        Some(dir.path().join("ca.pem").as_path())
    );
    assert!(!backend_tls.verify);
    assert_eq!(config.monitor.interval, Duration::from_millis(250));
    assert_eq!(config.monitor.heartbeat_table, "ops.beat");
    assert_eq!(
        (
            config.monitor.failure_threshold,
            config.monitor.recovery_threshold
        ),
        (5, 4)
    );
    assert_eq!(
        config.routing.max_replication_lag,
        Duration::from_millis(1500)
    );
    assert_eq!(config.routing.replica_selection, ReplicaSelection::LeastLag);
    assert_eq!(config.routing.read_your_writes, ReadYourWrites::Session);
    assert!(config.routing.primary_serves_reads);
    assert_eq!(config.routing.session_history_limit, 20);
    assert!(config.routing.transaction_replay);
    assert_eq!(config.routing.transaction_replay_max_size, 64 << 10);
    assert!(config.failover.auto);
    assert_eq!(config.failover.failure_threshold, 7);
    assert_eq!(config.failover.lock_quorum, LockQuorum::MajorityOfRunning);
}

#[test]
fn passwords_are_not_printed_in_debug_output() {
    let config = load(MINIMAL).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

/// One broken file per row: the problem's path and a piece of its message.
#[test]
fn each_mistake_is_reported_with_its_key_path() {
    let cases: &[(&str, &str, &str)] = &[
        ("lisen: {}", "lisen", "did you mean `listen`"),
        (
            "listen: { adress: '127.0.0.1:1' }",
            "listen.adress",
            "did you mean `address`",
        ),
        (
            "listen: { address: 'localhost:6033' }",
            "listen.address",
            "not an IP address and port",
        ),
        (
            "listen: { max_client_connections: 0 }",
            "listen.max_client_connections",
            "at least 1",
        ),
        (
            "listen: { handshake_timeout: 10 }",
            "listen.handshake_timeout",
            "with a unit",
        ),
        (
            "routing: { transaction_replay: yes }",
            "routing.transaction_replay",
            "expected true or false",
        ),
        (
            "routing: { transaction_replay_max_size: 1 MB }",
            "routing.transaction_replay_max_size",
            "expected a size such as 16MiB",
        ),
        (
            "listen: { max_allowed_packet: 2G }",
            "listen.max_allowed_packet",
            "out of range",
        ),
        (
            "listen: { max_allowed_packet: 64MiB, buffered_packet_budget: 32MiB }",
            "listen.buffered_packet_budget",
            "less than listen.max_allowed_packet",
        ),
        (
            "listen: { failed_login_delay: soon }",
            "listen.failed_login_delay",
            "not a duration",
        ),
        ("listen: { threads: 0 }", "listen.threads", "from 1 to 1024"),
        (
            "listen: { tls: { key: '/nonexistent/key.pem' } }",
            "listen.tls.cert",
            "missing",
        ),
        (
            "listen: { tls: { cert: '/nonexistent/c.pem', key: '/nonexistent/k.pem' } }",
            "listen.tls.cert",
            "cannot read /nonexistent/c.pem",
        ),
        (
            "listen: { tls: { cert: /dev/null, key: /dev/null, required: yes } }",
            "listen.tls.required",
            "true or false",
        ),
        (
            "admin: { address: ':6034' }",
            "admin.address",
            "not an IP address",
        ),
        ("admin: { token: '' }", "admin.token", "empty"),
        (
            "users: [{ name: app2 }]",
            "users[1].password",
            "missing; expected a password",
        ),
        ("users: [{ password: x }]", "users[1].name", "missing"),
        (
            "users: [{ name: app, password: x }]",
            "users[1].name",
            "duplicate user `app`",
        ),
        (
            "backends: [{ name: db2 }]",
            "backends[1].address",
            "missing; expected host:port",
        ),
        (
            "backends: [{ name: db2, address: db2 }]",
            "backends[1].address",
            "has no port",
        ),
        (
            "backends: [{ name: db2, address: 'db2:0' }]",
            "backends[1].address",
            "not a port number",
        ),
        (
            "backends: [{ name: db2, address: 'db 2:1' }]",
            "backends[1].address",
            "not a valid host",
        ),
        (
            "backends: [{ name: db1, address: 'x:1' }]",
            "backends[1].name",
            "duplicate backend name `db1`",
        ),
        (
            "backends: [{ name: db2, address: '127.0.0.1:3306' }]",
            "backends[1].address",
            "listed twice",
        ),
        (
            "backends: [{ name: 'db/2', address: 'x:1' }]",
            "backends[1].name",
            "characters other than",
        ),
        (
            "backends: [{ name: db2, address: 'x:1', role: leader }]",
            "backends[1].role",
            "not one of: primary, replica",
        ),
        (
            "backends: [{ name: db2, address: 'x:1', weight: 0 }]",
            "backends[1].weight",
            "backup: true",
        ),
        (
            "backends: [{ name: db2, address: 'x:1', backup: maybe }]",
            "backends[1].backup",
            "true or false",
        ),
        (
            "backends: [{ name: db2, address: 'x:1', tls: { ca: /nonexistent/ca.pem } }]",
            "backends[1].tls.ca",
            "cannot read",
        ),
        ("monitor_extra: 1", "monitor_extra", "unknown key"),
        (
            "routing: { max_replication_lag: 0s }",
            "routing.max_replication_lag",
            "is zero",
        ),
        (
            "routing: { max_replication_lag: soon }",
            "routing.max_replication_lag",
            "not a duration",
        ),
        (
            "routing: { replica_selection: fastest }",
            "routing.replica_selection",
            "round_robin, least_connections, least_lag",
        ),
        (
            "routing: { read_your_writes: always }",
            "routing.read_your_writes",
            "not one of: off, session",
        ),
        (
            "routing: { causal_read_timeout: 0ms }",
            "routing.causal_read_timeout",
            "is zero",
        ),
        (
            "routing: { primary_serves_reads: 1 }",
            "routing.primary_serves_reads",
            "true or false",
        ),
        ("failover: { auto: on }", "failover.auto", "true or false"),
        (
            "failover: { lock_quorum: half }",
            "failover.lock_quorum",
            "not one of: majority_of_all, majority_of_running",
        ),
        (
            "failover: { failure_threshold: -2 }",
            "failover.failure_threshold",
            "at least 1",
        ),
        (
            "backends: [{ name: db2, address: '${UNSET_ADDRESS}' }]",
            "line 3",
            "UNSET_ADDRESS is not set",
        ),
        (
            "users: [{ name: u, password: '${1X}' }]",
            "line 2",
            "malformed reference",
        ),
    ];
    for (addition, path, message) in cases {
        let text = merge(MINIMAL, addition);
        let found = problems(&text);
        assert!(
            found.iter().any(|(p, m)| p == path && m.contains(message)),
            "for `{addition}` expected {path}: …{message}…, got {found:?}"
        );
    }
}

/// Adds `addition` to `base`: list items are appended to the base's list of
/// the same name; other sections replace the base's.
fn merge(base: &str, addition: &str) -> String {
    let (key, value) = addition.split_once(": ").unwrap();
    let base_line = base.lines().find(|l| l.starts_with(&format!("{key}:")));
    match (base_line, value.strip_prefix('[')) {
        (Some(line), Some(items)) => {
            let merged = format!("{}, {}", line.trim_end_matches(']'), items);
            base.replace(line, &merged)
        }
        (Some(line), None) => base.replace(line, addition),
        (None, _) => format!("{base}{addition}\n"),
    }
}

#[test]
fn monitor_and_lists_are_required() {
    let found = problems("listen: {}\n");
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["users", "backends", "monitor.user", "monitor.password"]
    );
}

#[test]
fn at_most_one_primary() {
    let text = merge(
        "users: [{ name: app, password: secret }]\nmonitor: { user: m, password: m }\n",
        "backends: [{ name: a, address: 'a:1', role: primary }, { name: b, address: 'b:1', role: primary }]",
    );
    assert_eq!(
        problems(&text),
        [(
            "backends".to_owned(),
            "2 backends have `role: primary`; at most one may".to_owned()
        )]
    );
}

#[test]
fn five_mistakes_are_reported_together() {
    let text = "
listen: { address: 'nowhere' }
users: [{ name: app }]
backends:
  - { name: db1, address: '127.0.0.1:3307' }
  - { name: db1, adress: '127.0.0.1:3308' }
monitor: { user: m, password: m }
routing: { max_replication_lag: 0s }
";
    let paths: Vec<String> = problems(text).into_iter().map(|(p, _)| p).collect();
    for expected in [
        "backends[1].adress",
        "listen.address",
        "users[0].password",
        "backends[1].name",
        "routing.max_replication_lag",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} not in {paths:?}"
        );
    }
}

#[test]
fn yaml_syntax_errors_say_where() {
    match load("users: [\n  - oops") {
        Err(ConfigError::Syntax { message, .. }) => assert!(message.contains("line"), "{message}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    match load("users: { name: app }\n") {
        Err(ConfigError::Syntax { message, .. }) => {
            assert!(message.contains("line 1"), "{message}")
        }
        other => panic!("expected a type error, got {other:?}"),
    }
}

#[test]
fn the_shipped_proxy_yaml_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.yaml");
    let config =
        Config::from_text(&std::fs::read_to_string(&path).unwrap(), &path, |_| None).unwrap();
    assert_eq!(config.backends.len(), 3);
    assert_eq!(config.backends[0].role, Some(Role::Primary));
}

#[test]
fn an_unreadable_file_is_named() {
    let error = Config::load(Path::new("/nonexistent/proxy.yaml")).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cannot read config file /nonexistent/proxy.yaml")
    );
}
