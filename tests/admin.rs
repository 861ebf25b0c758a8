//! The admin API and `rwsplit status`, against a proxy over the shared
//! sandbox: what operators, probes and Prometheus read.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use rwsplit::admin::client::{AdminClientError, get};
use rwsplit::admin::status::Status;

use common::{TestProxy, program};

fn proxy(token: Option<&str>) -> TestProxy {
    let mut config = common::proxy_config(&common::shared_sandbox());
    config.admin.token = token.map(String::from);
    common::start_proxy(config)
}

async fn fetch(
    proxy: &TestProxy,
    path: &str,
    token: Option<&str>,
) -> Result<String, AdminClientError> {
    get(
        &proxy.admin_addr.to_string(),
        path,
        token,
        Duration::from_secs(5),
    )
    .await
}

fn rwsplit(args: &[&str], token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rwsplit"));
    command.args(args).env_remove("RWSPLIT_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("RWSPLIT_ADMIN_TOKEN", token);
    }
    command.output().expect("run rwsplit")
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_what_ran() {
    let proxy = proxy(None);
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    for _ in 0..10 {
        conn.query_drop("SELECT 1").await.unwrap();
    }
    conn.query_drop("DO 1").await.unwrap();
    // A session counts a statement once the client has its answer: wait
    // until all eleven are counted.
    let counted = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("rwsplit_statement_duration_seconds_count "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n >= 11)
    };
    let mut text = fetch(&proxy, "/metrics", None).await.unwrap();
    for _ in 0..250 {
        if counted(&text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = fetch(&proxy, "/metrics", None).await.unwrap();
    }

    // The reference parser (the Prometheus project's Python client) reads
    // every family; the script prints `name{labels} value` per sample.
    let mut parser = program("python3")
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             for family in text_string_to_metric_families(sys.stdin.read()):\n\
             \x20   for s in family.samples:\n\
             \x20       labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))\n\
             \x20       print(f'{family.type} {s.name}{{{labels}}} {s.value}')\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (scripts/test installs it)");
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let parsed = parser.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "not Prometheus text: {}\n{text}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let samples = String::from_utf8(parsed.stdout).unwrap();
    let value = |line_start: &str| -> f64 {
        samples
            .lines()
            .find_map(|l| l.strip_prefix(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in\n{samples}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(value("counter rwsplit_statements_total{kind=read,route=replica}") >= 10.0);
    assert!(value("counter rwsplit_statements_total{kind=write,route=primary}") >= 1.0);
    assert!(value("histogram rwsplit_statement_duration_seconds_count{}") >= 11.0);
    assert_eq!(value("gauge rwsplit_backend_primary{backend=db1}"), 1.0);
    assert_eq!(value("gauge rwsplit_backend_readable{backend=db2}"), 1.0);
    assert_eq!(value("gauge rwsplit_backend_up{backend=db3}"), 1.0);
    assert_eq!(value("gauge rwsplit_client_connections{}"), 1.0);
    assert!(value("gauge rwsplit_backend_connections{backend=db1}") >= 1.0);
    assert_eq!(value("gauge rwsplit_primary_alarm{}"), 0.0);
}

/// The sessions each session thread runs, from /metrics.
async fn thread_sessions(proxy: &TestProxy) -> Vec<u64> {
    let text = fetch(proxy, "/metrics", None).await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("rwsplit_thread_sessions{thread=\""))
        .map(|l| l.split_once("} ").unwrap().1.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn clients_are_spread_evenly_over_the_session_threads() {
    let mut config = common::proxy_config(&common::shared_sandbox());
    config.listen.threads = 3;
    let proxy = common::start_proxy(config);
    // A burst, as a pool or sysbench opens its connections.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..6 {
        burst.spawn(Conn::new(proxy.opts()));
    }
    let mut conns: Vec<Conn> = burst
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for conn in &mut conns {
        conn.query_drop("SELECT 1").await.unwrap();
    }
    assert_eq!(thread_sessions(&proxy).await, [2, 2, 2]);
    for conn in conns {
        conn.disconnect().await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while thread_sessions(&proxy).await != [0, 0, 0] {
        assert!(
            std::time::Instant::now() < deadline,
            "sessions not counted off"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn status_shows_every_backend_and_the_cli_prints_it() {
    let proxy = proxy(None);
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("SELECT 1").await.unwrap();
    let status: Status =
        serde_json::from_str(&fetch(&proxy, "/status", None).await.unwrap()).unwrap();
    assert_eq!(status.primary.as_deref(), Some("db1"));
    assert!(status.ready && status.alarm.is_none());
    assert_eq!(status.client_connections, 1);
    let roles: Vec<(&str, &str, bool)> = status
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.role.as_str(), b.readable))
        .collect();
    assert_eq!(
        roles,
        [
            ("db1", "primary", false),
            ("db2", "replica", true),
            ("db3", "replica", true)
        ]
    );
    for replica in &status.backends[1..] {
        let replication = replica.replication.as_ref().expect("replicating");
        assert!(replication.io_running && replication.sql_running);
        assert!(replica.lag_seconds.is_some_and(|lag| lag < 1.0));
        assert!(
            replica
                .gtid_position
                .as_deref()
                .is_some_and(|g| g.starts_with("0-1-"))
        );
    }

    let url = format!("http://{}", proxy.admin_addr);
    let table = rwsplit(&["status", "--admin", &url], None);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let table = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("BACKEND  ADDRESS"), "{table}");
    assert!(
        lines[1].starts_with("db1") && lines[1].contains("primary  up"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("db2") && lines[2].contains("replica  reading"),
        "{table}"
    );
    assert!(
        lines[3].starts_with("db3") && lines[3].contains("replica  reading"),
        "{table}"
    );
    assert!(table.contains("primary: db1"), "{table}");

    let json = rwsplit(&["status", "--admin", &url, "--json"], None);
    let parsed: Status = serde_json::from_slice(&json.stdout).expect("--json prints the document");
    assert_eq!(parsed.backends.len(), 3);
}

#[tokio::test]
async fn probes_answer_and_a_token_guards_the_rest() {
    let proxy = proxy(Some("s3cret"));
    assert_eq!(fetch(&proxy, "/health", None).await.unwrap(), "ok\n");
    assert_eq!(fetch(&proxy, "/ready", None).await.unwrap(), "ready\n");
    for path in ["/status", "/metrics"] {
        match fetch(&proxy, path, None).await {
            Err(AdminClientError::Status { status: 401, body }) => {
                assert!(body.contains("admin.token"), "{body}")
            }
            other => panic!("{path} without the token: {other:?}"),
        }
        match fetch(&proxy, path, Some("wrong")).await {
            Err(AdminClientError::Status { status: 401, .. }) => {}
            other => panic!("{path} with a wrong token: {other:?}"),
        }
        fetch(&proxy, path, Some("s3cret")).await.unwrap();
    }
    let url = proxy.admin_addr.to_string();
    let refused = rwsplit(&["status", "--admin", &url], None);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let allowed = rwsplit(&["status", "--admin", &url], Some("s3cret"));
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
}

#[test]
fn status_without_a_running_rwsplit_says_what_to_check() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = rwsplit(&["status", "--admin", &free.to_string()], None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the admin API") && stderr.contains("admin.address"),
        "{stderr}"
    );
}
