//! The client matrix: one short suite per client library
//! (tests/clients/, README.md there), each run against the primary
//! directly and through rwsplit; the two transcripts must be identical —
//! values and their types, column metadata, affected rows, insert ids,
//! errors, warnings, transactions, prepared statements, a pool of ten
//! workers, reset and change-user, a procedure's OUT parameters,
//! executable comments, and a new connection after pooled ones. Then
//! `mariadb-dump` and the `mariadb` client dump a database through rwsplit,
//! restore it through rwsplit and dump it again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use mysql_async::prelude::Queryable;
use rwsplit::sandbox::Sandbox;

use common::{TestProxy, program};

/// The steps every suite prints, in order.
const STEPS: [&str; 18] = [
    "types",
    "setup",
    "insert",
    "update",
    "error",
    "duplicate",
    "warnings",
    "rollback",
    "commit",
    "prepared",
    "text",
    "procedure",
    "executable",
    "own_write",
    "pool",
    "reset",
    "change_user",
    "fresh_after_pool",
];

/// The sandbox with the `matrix` database, and rwsplit in front of it with
/// its defaults, shared by the tests of this file.
fn servers() -> &'static (Arc<Sandbox>, TestProxy) {
    static SERVERS: OnceLock<(Arc<Sandbox>, TestProxy)> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let sandbox = common::shared_sandbox();
        let setup = sandbox.clone();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move {
                    let mut admin = setup.primary().admin().await.unwrap();
                    for sql in [
                        "CREATE DATABASE IF NOT EXISTS matrix",
                        "CREATE OR REPLACE PROCEDURE matrix.p_out(IN a INT, OUT b INT, OUT c INT) \
                     SET b = a * 2, c = a + 1",
                        "GRANT EXECUTE ON matrix.* TO app",
                    ] {
                        admin.query_drop(sql).await.unwrap();
                    }
                    setup.sync_replicas().await.unwrap();
                })
        })
        .join()
        .unwrap();
        let proxy = common::start_proxy(common::proxy_config(&sandbox));
        (sandbox, proxy)
    })
}

fn suites() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs `command` with `PORT TABLE VARIANT` appended; its output.
fn transcript(mut command: Command, port: u16, table: &str, variant: &str) -> Vec<String> {
    let output = command
        .args([&port.to_string(), table, variant])
        .output()
        .unwrap_or_else(|e| panic!("{variant}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{variant} on port {port} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// Runs one suite directly and through rwsplit and compares them.
fn compare(name: &str, variant: &str, command: impl Fn() -> Command) {
    let (sandbox, proxy) = servers();
    let table = format!("t_{name}_{}", variant.replace('-', "_"));
    let direct = transcript(command(), sandbox.primary().port, &table, variant);
    let through = transcript(command(), proxy.port(), &table, variant);
    let steps: Vec<String> = direct
        .iter()
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name} {variant}: {e}: {line}"));
            json["step"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(steps, STEPS, "{name} {variant}: every step ran");
    for (step, (direct, through)) in STEPS.iter().zip(direct.iter().zip(&through)) {
        assert_eq!(
            direct, through,
            "{name} {variant}, step {step}: directly, then through rwsplit"
        );
    }
    assert_eq!(direct.len(), through.len());
}

#[test]
fn python_pymysql_connector_and_mysqlclient() {
    let script = suites().join("python/suite.py");
    for variant in ["pymysql", "connector-pure", "connector-c", "mysqlclient"] {
        compare("python", variant, || {
            let mut command = program("python3");
            command.arg(&script);
            command
        });
    }
}

#[test]
fn node_mysql2_and_mysql() {
    let dir = suites().join("node");
    assert!(
        dir.join("node_modules/mysql2").is_dir() && dir.join("node_modules/mysql").is_dir(),
        "the node drivers are not installed; scripts/test installs them (npm ci in {})",
        dir.display()
    );
    for variant in ["mysql2-query", "mysql2-execute", "mysql"] {
        compare("node", variant, || {
            let mut command = program("node");
            command.arg(dir.join("suite.js"));
            command
        });
    }
}

#[test]
fn java_mariadb_connector_j() {
    let jar = Path::new("/usr/share/java/mariadb-java-client.jar");
    assert!(
        jar.is_file(),
        "MariaDB Connector/J is not installed; scripts/test installs it (libmariadb-java)"
    );
    for variant in ["server-prepares", "client-prepares"] {
        compare("java", variant, || {
            let mut command = program("java");
            command
                .arg("-cp")
                .arg(jar)
                .arg(suites().join("java/Suite.java"));
            command
        });
    }
}

#[test]
fn php_mysqli_and_pdo() {
    for variant in ["mysqli", "pdo-emulated", "pdo-native"] {
        compare("php", variant, || {
            let mut command = program("php");
            command.arg(suites().join("php/suite.php"));
            command
        });
    }
}

#[test]
fn go_sql_driver() {
    // Built once, in GOPATH mode against Debian's copy of the driver.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-client-suite");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
    let build = program("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(suites().join("go/suite.go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", &cache)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "go build failed (scripts/test installs golang-go and \
         golang-github-go-sql-driver-mysql-dev): {}",
        String::from_utf8_lossy(&build.stderr)
    );
    for variant in ["prepared", "interpolated"] {
        compare("go", variant, || Command::new(&out));
    }
}

/// `mariadb-dump` of a database through rwsplit is the dump a direct
/// connection gives; restored through rwsplit with the `mariadb` client
/// into another database and dumped again, it is the same (the header
/// and footer lines, which name the host and the time, aside).
#[test]
fn mariadb_dump_and_restore_round_trip() {
    let (sandbox, proxy) = servers();
    let primary = sandbox.primary().port;
    let through = proxy.port();
    let sql = |port: u16, db: &str, input: Option<&[u8]>| {
        let mut command = program("mariadb");
        command.args([
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            "app",
            "-papp",
            db,
        ]);
        run_with_input(command, input)
    };
    sql(
        primary,
        "",
        Some(
            b"CREATE DATABASE IF NOT EXISTS dump_src; CREATE OR REPLACE DATABASE dump_dst;
              CREATE OR REPLACE TABLE dump_src.items (id INT PRIMARY KEY, name VARCHAR(40) CHARACTER SET utf8mb4,
                price DECIMAL(10,2), seen TIMESTAMP NOT NULL DEFAULT '2026-01-01 00:00:00', data BLOB);
              INSERT INTO dump_src.items VALUES (1, 'caf\xc3\xa9', 3.50, '2026-05-01 10:00:00', x'00ff'),
                (2, 'tea ''green''', 2.00, '2026-05-02 11:00:00', NULL);
              CREATE OR REPLACE VIEW dump_src.cheap AS SELECT id, name FROM dump_src.items WHERE price < 3;",
        ),
    );
    let dump = |port: u16, db: &str| {
        let mut command = program("mariadb-dump");
        command.args([
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            "app",
            "-papp",
            "--routines",
            "--single-transaction",
            db,
        ]);
        let text = String::from_utf8_lossy(&run_with_input(command, None)).into_owned();
        text.lines()
            .filter(|line| {
                !line.starts_with("-- MariaDB dump")
                    && !line.starts_with("-- Host:")
                    && !line.starts_with("-- Dump completed")
                    && !line.starts_with("-- Server version")
            })
            .map(|line| line.replace("dump_dst", "dump_src"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let direct = dump(primary, "dump_src");
    let proxied = dump(through, "dump_src");
    assert_eq!(direct, proxied, "a dump through rwsplit is the direct one");
    assert!(proxied.contains("INSERT INTO `items` VALUES"), "{proxied}");
    assert!(
        proxied.starts_with("/*M!999999\\- enable the sandbox mode */"),
        "{proxied}"
    );
    let file = dump_file(through, "dump_src");
    sql(through, "dump_dst", Some(&file));
    assert_eq!(
        dump(through, "dump_dst"),
        proxied,
        "restored through rwsplit, the database dumps the same"
    );
}

/// The raw dump of `db` through `port`, as a restore reads it.
fn dump_file(port: u16, db: &str) -> Vec<u8> {
    let mut command = program("mariadb-dump");
    command.args([
        "-h",
        "127.0.0.1",
        "-P",
        &port.to_string(),
        "-u",
        "app",
        "-papp",
        "--routines",
        db,
    ]);
    run_with_input(command, None)
}

fn run_with_input(mut command: Command, input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input).unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
