//! Real clients through rwsplit: mysql_async (text and binary protocol,
//! compared with direct connections), the `mariadb` command-line client,
//! PyMySQL, and sysbench.

mod common;

use mysql_async::prelude::Queryable;
use mysql_async::{Column, Conn, Row, Value};
use rwsplit::config::ListenTlsConfig;
use rwsplit::sandbox::APP;

use common::{program, within};

/// Everything a client can observe about one result of a statement.
#[derive(Debug, PartialEq)]
struct Observed {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    affected_rows: u64,
    last_insert_id: Option<u64>,
    warnings: u16,
    info: String,
}

fn describe(column: &Column) -> String {
    format!(
        "{}.{}({}).{}({}) charset={} length={} type={:?} flags={:?} decimals={}",
        column.schema_str(),
        column.table_str(),
        column.org_table_str(),
        column.name_str(),
        column.org_name_str(),
        column.character_set(),
        column.column_length(),
        column.column_type(),
        column.flags(),
        column.decimals()
    )
}

fn server_error(sql: &str, e: mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(e) => format!("{} ({}): {}", e.code, e.state, e.message),
        other => panic!("{sql}: unexpected failure {other}"),
    }
}

/// Runs `sql` (text protocol, or binary with `params`) and records every
/// result set, or the error as code/state/message.
async fn observe(
    conn: &mut Conn,
    sql: &str,
    params: Option<Vec<Value>>,
) -> Result<Vec<Observed>, String> {
    match params {
        None => {
            drain(
                sql,
                conn.query_iter(sql)
                    .await
                    .map_err(|e| server_error(sql, e))?,
            )
            .await
        }
        Some(params) => {
            drain(
                sql,
                conn.exec_iter(sql, params)
                    .await
                    .map_err(|e| server_error(sql, e))?,
            )
            .await
        }
    }
}

async fn drain<P: mysql_async::prelude::Protocol>(
    sql: &str,
    mut result: mysql_async::QueryResult<'_, '_, P>,
) -> Result<Vec<Observed>, String> {
    let mut observed = Vec::new();
    loop {
        let columns = result.columns_ref().iter().map(describe).collect();
        let rows: Vec<Row> = result.collect().await.map_err(|e| server_error(sql, e))?;
        observed.push(Observed {
            columns,
            rows: rows.into_iter().map(Row::unwrap).collect(),
            affected_rows: result.affected_rows(),
            last_insert_id: result.last_insert_id(),
            warnings: result.warnings(),
            info: result.info().into_owned(),
        });
        if result.is_empty() {
            break;
        }
    }
    Ok(observed)
}

const SETUP: &[&str] = &[
    "CREATE DATABASE IF NOT EXISTS clients",
    "CREATE TABLE IF NOT EXISTS clients.items (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2), added DATETIME(3), data BLOB)",
    "INSERT IGNORE INTO clients.items VALUES (1, 'apple', 1.25, '2024-01-02 03:04:05.678', x'0102'), (2, 'pear', NULL, NULL, NULL), (3, 'ü', 0, '2000-01-01', '')",
];

const TEXT: &[&str] = &[
    "SELECT * FROM items ORDER BY id",
    "SELECT COUNT(*), SUM(price), MAX(added) FROM items",
    "SELECT 1; SELECT name FROM items WHERE id = 1",
    "CREATE TEMPORARY TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(3))",
    "INSERT INTO t (v) VALUES ('a'), ('b')",
    "UPDATE t SET v = 'c'",
    "SET sql_mode = ''",
    "INSERT INTO t (v) VALUES ('toolong')",
    "SHOW WARNINGS",
    "SELECT * FROM no_such_table",
    "SELECT id FROM t ORDER BY id",
];

#[tokio::test]
async fn mysql_async_sees_the_same_as_direct() {
    let sandbox = common::shared_sandbox();
    let proxy = common::start_proxy(common::proxy_config(&sandbox));
    let mut admin = Conn::new(sandbox.primary().opts(&APP)).await.unwrap();
    for statement in SETUP {
        admin.query_drop(*statement).await.unwrap();
    }
    // Reads go to replicas: let them catch up with the set-up first.
    sandbox.sync_replicas().await.unwrap();
    let with_db = |opts: mysql_async::Opts| {
        mysql_async::OptsBuilder::from_opts(opts).db_name(Some("clients"))
    };
    let mut direct = Conn::new(with_db(sandbox.primary().opts(&APP)))
        .await
        .unwrap();
    let mut proxied = Conn::new(with_db(proxy.opts())).await.unwrap();
    for sql in TEXT {
        let expected = observe(&mut direct, sql, None).await;
        let got = within(sql, observe(&mut proxied, sql, None)).await;
        assert_eq!(got, expected, "text protocol: {sql}");
    }
    let binary: &[(&str, Vec<Value>)] = &[
        (
            "SELECT * FROM items WHERE id >= ? ORDER BY id",
            vec![Value::Int(2)],
        ),
        (
            "SELECT ?, ?, ?, ?",
            vec![
                Value::NULL,
                Value::Bytes(b"\xc3\xbc".to_vec()),
                Value::Double(0.5),
                Value::Date(2024, 1, 2, 3, 4, 5, 6),
            ],
        ),
        (
            "INSERT INTO t (v) VALUES (?)",
            vec![Value::Bytes(b"xyz".to_vec())],
        ),
        ("SELECT v FROM t WHERE id > ?", vec![Value::UInt(1)]),
        (
            "SELECT no_such_column FROM t WHERE id = ?",
            vec![Value::Int(1)],
        ),
    ];
    for (sql, params) in binary {
        let expected = observe(&mut direct, sql, Some(params.clone())).await;
        let got = within(sql, observe(&mut proxied, sql, Some(params.clone()))).await;
        assert_eq!(got, expected, "binary protocol: {sql}");
    }
    // A prepared statement used many times, then closed.
    let statement = proxied
        .prep("SELECT name FROM items WHERE id = ?")
        .await
        .unwrap();
    for id in [1, 2, 3, 1] {
        let name: Option<String> = proxied.exec_first(&statement, (id,)).await.unwrap();
        let expected: Option<String> = direct
            .exec_first("SELECT name FROM items WHERE id = ?", (id,))
            .await
            .unwrap();
        assert_eq!(name, expected);
    }
    proxied.close(statement).await.unwrap();
    proxied.ping().await.unwrap();
    proxied.reset().await.unwrap();
    let rows: Vec<u8> = proxied.query("SELECT 1").await.unwrap();
    assert_eq!(rows, [1]);
    proxied.disconnect().await.unwrap();
}

fn mariadb(port: u16, args: &[&str]) -> std::process::Output {
    program("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            APP.user,
            &format!("-p{}", APP.password),
        ])
        .args(args)
        .output()
        .expect("run mariadb")
}

#[test]
fn the_mariadb_client_reports_status_and_sources_files() {
    let sandbox = common::shared_sandbox();
    let proxy = common::start_proxy(common::primary_only_config(&sandbox));
    let status = mariadb(proxy.port(), &["-e", "status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(text.contains("Server:\t\t\tMariaDB"), "{text}");
    assert!(text.contains("Server version:\t\t10.11"), "{text}");
    assert!(
        text.contains(&format!("TCP port:\t\t{}", proxy.port())),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "CREATE DATABASE IF NOT EXISTS cli;\nUSE cli;\nDROP PROCEDURE IF EXISTS p;\n\
         DELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1 AS a; SELECT 2 AS b; END//\nDELIMITER ;\n\
         CALL p();\nSELECT 'x' AS c, NULL AS d, 1.5 AS e;\nSHOW WARNINGS;\nSELECT CAST('q' AS INT) AS w;\nSHOW WARNINGS;\n",
    )
    .unwrap();
    let source = format!("source {}", script.display());
    // Each run starts from the same state, so warnings match too.
    let fresh = || {
        assert!(
            mariadb(
                sandbox.primary().port,
                &["-e", "DROP DATABASE IF EXISTS cli"]
            )
            .status
            .success()
        )
    };
    fresh();
    let through = mariadb(proxy.port(), &["--batch", "-e", &source]);
    fresh();
    let direct = mariadb(sandbox.primary().port, &["--batch", "-e", &source]);
    assert!(
        through.status.success(),
        "{}",
        String::from_utf8_lossy(&through.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&through.stdout),
        String::from_utf8_lossy(&direct.stdout)
    );
    assert!(String::from_utf8_lossy(&through.stdout).contains("Truncated incorrect INTEGER value"));
}

#[test]
fn pymysql_transactions_load_data_and_tls() {
    let sandbox = common::shared_sandbox();
    let certs = common::test_certs();
    // The suite reads its own writes from new connections: primary only.
    let mut config = common::primary_only_config(&sandbox);
    config.listen.tls = Some(ListenTlsConfig {
        cert: certs.cert.clone(),
        key: certs.key.clone(),
        required: false,
    });
    let proxy = common::start_proxy(config);
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/pymysql_suite.py");
    let output = program("python3")
        .args([suite, "--proxy-port", &proxy.port().to_string()])
        .args(["--direct-port", &sandbox.primary().port.to_string()])
        .arg("--ca")
        .arg(&certs.ca)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "PyMySQL suite failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in ["transactions ok", "load data ok", "tls ok", "types ok"] {
        assert!(stdout.contains(check), "missing `{check}` in:\n{stdout}");
    }
}

#[tokio::test]
async fn pymysql_that_only_reads_never_connects_to_the_primary() {
    let sandbox = common::shared_sandbox();
    let proxy = common::start_proxy(common::proxy_config(&sandbox));
    // What PyMySQL does at connect with these: log in with a database, send
    // the init command, then read.
    let script = r#"
import sys, pymysql
conn = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="app",
                       database="mysql", autocommit=True, init_command="SET NAMES utf8mb4")
with conn.cursor() as cur:
    for _ in range(3):
        cur.execute("SELECT @@server_id, @@character_set_client")
        print(*cur.fetchone())
conn.close()
"#;
    let output = program("python3")
        .args(["-c", script, &proxy.port().to_string()])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "PyMySQL failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<&str> = stdout.lines().collect();
    assert_eq!(answers.len(), 3, "{stdout}");
    for answer in answers {
        assert!(
            answer == "2 utf8mb4" || answer == "3 utf8mb4",
            "a replica, with the session's character set: {answer}"
        );
    }
    let metrics = common::metrics(&proxy).await;
    assert!(
        metrics.contains("rwsplit_backend_connections{backend=\"db1\"} 0\n"),
        "no connection to the primary was opened:\n{metrics}"
    );
}

#[test]
fn sysbench_oltp_read_write_runs_without_errors() {
    let sandbox = common::shared_sandbox();
    let proxy = common::start_proxy(common::proxy_config(&sandbox));
    let mut admin = mysql::Connection::open(&sandbox);
    admin.run("DROP DATABASE IF EXISTS sbtest; CREATE DATABASE sbtest");
    let sysbench = |command: &str, extra: &[&str]| {
        program("sysbench")
            .args([
                "oltp_read_write",
                "--db-driver=mysql",
                "--mysql-host=127.0.0.1",
            ])
            .arg(format!("--mysql-port={}", proxy.port()))
            .args([
                "--mysql-user=app",
                "--mysql-password=app",
                "--mysql-db=sbtest",
                "--tables=1",
                "--table-size=1000",
            ])
            .args(extra)
            .arg(command)
            .output()
            .expect("run sysbench")
    };
    let prepare = sysbench("prepare", &[]);
    assert!(
        prepare.status.success(),
        "{}",
        String::from_utf8_lossy(&prepare.stderr)
    );
    // Any error is fatal here, so a clean exit means zero errors. One thread:
    // with several, InnoDB itself picks deadlock victims on this small table
    // (direct connections see the same).
    let strict = sysbench(
        "run",
        &[
            "--threads=1",
            "--time=10",
            "--report-interval=0",
            "--mysql-ignore-errors=none",
        ],
    );
    let report = String::from_utf8_lossy(&strict.stdout);
    assert!(
        strict.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&strict.stderr)
    );
    assert!(count(&report, "transactions:") > 100, "{report}");
    assert_eq!(count(&report, "ignored errors:"), 0, "{report}");
    assert_eq!(count(&report, "reconnects:"), 0, "{report}");
    // Concurrent sessions: only the server's deadlocks may be skipped.
    let concurrent = sysbench(
        "run",
        &[
            "--threads=4",
            "--time=5",
            "--report-interval=0",
            "--mysql-ignore-errors=1213",
        ],
    );
    let report = String::from_utf8_lossy(&concurrent.stdout);
    assert!(
        concurrent.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&concurrent.stderr)
    );
    assert_eq!(count(&report, "reconnects:"), 0, "{report}");
}

/// The number after `label` in a sysbench report.
fn count(report: &str, label: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` in\n{report}"));
    line.split_whitespace()
        .nth(label.split_whitespace().count())
        .unwrap()
        .parse()
        .unwrap()
}

/// A tiny synchronous admin helper over the `mariadb` client, for set-up.
mod mysql {
    use rwsplit::sandbox::Sandbox;

    pub struct Connection {
        port: u16,
    }

    impl Connection {
        pub fn open(sandbox: &Sandbox) -> Connection {
            Connection {
                port: sandbox.primary().port,
            }
        }

        pub fn run(&mut self, sql: &str) {
            let output = super::mariadb(self.port, &["-e", sql]);
            assert!(
                output.status.success(),
                "{sql}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[tokio::test]
async fn compressed_clients_see_the_same_as_direct() {
    let sandbox = common::shared_sandbox();
    let proxy = common::start_proxy(common::proxy_config(&sandbox));
    let mut admin = Conn::new(sandbox.primary().opts(&APP)).await.unwrap();
    for statement in SETUP {
        admin.query_drop(*statement).await.unwrap();
    }
    // Reads go to replicas: let them catch up with the set-up first.
    sandbox.sync_replicas().await.unwrap();
    let direct_opts =
        mysql_async::OptsBuilder::from_opts(sandbox.primary().opts(&APP)).db_name(Some("clients"));
    let compressed = mysql_async::OptsBuilder::from_opts(proxy.opts())
        .db_name(Some("clients"))
        .compression(Some(mysql_async::Compression::fast()));
    let mut direct = Conn::new(direct_opts).await.unwrap();
    let mut proxied = Conn::new(compressed).await.unwrap();
    let statements = [
        "SELECT * FROM items ORDER BY id",
        "SELECT REPEAT('abc', 100000), REPEAT(x'00', 20)",
        "SELECT 1; SELECT 2",
        "SELECT no_such_column",
        // Answers rwsplit rewrites (the state-change tracker's entry out),
        // the last packet of a response among them.
        "SET @compressed = 1",
        "SELECT 1; SET @compressed = 2",
        "SELECT @compressed",
    ];
    for sql in statements {
        let expected = observe(&mut direct, sql, None).await;
        let got = within(sql, observe(&mut proxied, sql, None)).await;
        assert_eq!(got, expected, "compressed: {sql}");
    }
    // Several result sets, however the backend's bytes happen to arrive:
    // no compressed frame may end between two of them (mysql_async would
    // renumber the packets there).
    let sql = "SELECT 1; SELECT 2; SELECT REPEAT('x', 70000)";
    let expected = observe(&mut direct, sql, None).await;
    for _ in 0..100 {
        let got = within(sql, observe(&mut proxied, sql, None)).await;
        assert_eq!(got, expected, "compressed: {sql}");
    }
    // A command over 16 MiB, compressed.
    let big = "x".repeat(17 << 20);
    let length: Option<u64> = proxied
        .exec_first("SELECT LENGTH(?)", (big.as_str(),))
        .await
        .unwrap();
    assert_eq!(length, Some(17 << 20));
    let cli = mariadb(proxy.port(), &["-C", "-e", "SELECT 'compressed cli' AS c"]);
    assert!(
        String::from_utf8_lossy(&cli.stdout).contains("compressed cli"),
        "{cli:?}"
    );
}

#[tokio::test]
async fn com_statistics_is_relayed() {
    let sandbox = common::shared_sandbox();
    let proxy = common::start_proxy(common::proxy_config(&sandbox));
    let mut conn =
        common::raw_client(&proxy.addr.to_string(), common::modern_capabilities(), None).await;
    let (response, _) = within(
        "COM_STATISTICS",
        conn.exchange(b"\x09", rwsplit::protocol::response::Expect::Single),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&response[4..]);
    assert!(
        text.starts_with("Uptime: ") && text.contains("Threads: "),
        "{text}"
    );
}
