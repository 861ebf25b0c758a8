//! Read/write splitting proven by the servers: each rule is checked with
//! `@@server_id` in the results (db1 = 1 is the primary, db2 = 2 and db3 = 3
//! are replicas), or with the servers' statement counters on a sandbox of
//! the test's own.

mod common;

use std::collections::BTreeSet;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use rwsplit::config::{Config, ReplicaAffinity, ReplicaSelection};
use rwsplit::sandbox::{APP, Sandbox, SandboxOptions};

use common::{TestProxy, program};

const PRIMARY: u32 = 1;

fn is_replica(id: u32) -> bool {
    id == 2 || id == 3
}

/// A proxy over the shared sandbox, and a connection through it with the
/// test tables in place and replicated.
async fn connect(tweak: impl FnOnce(&mut Config)) -> (TestProxy, Conn) {
    let sandbox = common::shared_sandbox();
    let mut admin = Conn::new(sandbox.primary().opts(&APP)).await.unwrap();
    admin
        .query_drop(
            "CREATE DATABASE IF NOT EXISTS routing; CREATE DATABASE IF NOT EXISTS routing2; \
             CREATE TABLE IF NOT EXISTS routing.t (id INT PRIMARY KEY, v VARCHAR(20)); \
             CREATE TABLE IF NOT EXISTS routing2.t2 (id INT PRIMARY KEY); \
             INSERT IGNORE INTO routing.t VALUES (1, 'one'), (2, 'two'), (3, 'three'); \
             INSERT IGNORE INTO routing2.t2 VALUES (1), (2); \
             CREATE FUNCTION IF NOT EXISTS routing.where_am_i() RETURNS INT NO SQL RETURN @@server_id",
        )
        .await
        .unwrap();
    sandbox.sync_replicas().await.unwrap();
    let mut config = common::proxy_config(&sandbox);
    // Every read chooses a replica, so that one connection shows where each
    // rule sends it; session affinity has a test of its own.
    config.routing.replica_affinity = ReplicaAffinity::Statement;
    tweak(&mut config);
    let proxy = common::start_proxy(config);
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts()).db_name(Some("routing"));
    let conn = Conn::new(opts).await.unwrap();
    (proxy, conn)
}

async fn server_of(conn: &mut Conn, sql: &str) -> u32 {
    let row: Row = conn
        .query_first(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap();
    let index = row
        .columns_ref()
        .iter()
        .position(|c| c.name_str() == "@@server_id")
        .unwrap_or(0);
    row.get(index).unwrap()
}

#[tokio::test]
async fn reads_go_to_replicas_and_writes_to_the_primary() {
    let (_proxy, mut conn) = connect(|_| {}).await;
    let mut readers = BTreeSet::new();
    for _ in 0..6 {
        let id = server_of(&mut conn, "SELECT @@server_id").await;
        assert!(is_replica(id), "a read ran on {id}");
        readers.insert(id);
    }
    assert_eq!(readers, BTreeSet::from([2, 3]), "both replicas take reads");
    for write in [
        "SELECT @@server_id FROM t WHERE id = 1 FOR UPDATE",
        "SELECT @@server_id FROM t WHERE id = 1 LOCK IN SHARE MODE",
        "SELECT @@server_id, LAST_INSERT_ID()",
        "SELECT @@server_id, GET_LOCK('routing-test', 0), RELEASE_LOCK('routing-test')",
        "SELECT where_am_i() AS `@@server_id`",
        "/* rwsplit:primary */ SELECT @@server_id",
    ] {
        assert_eq!(server_of(&mut conn, write).await, PRIMARY, "{write}");
    }
    let hinted = server_of(
        &mut conn,
        "/* rwsplit:replica */ SELECT @@server_id, LAST_INSERT_ID()",
    )
    .await;
    assert!(is_replica(hinted), "a replica hint overrides the kind");
    let ids: Vec<u32> = conn
        .query("SELECT @@server_id; SELECT @@server_id")
        .await
        .unwrap();
    assert_eq!(
        ids,
        [PRIMARY],
        "a multi-statement packet runs on the primary"
    );
}

#[tokio::test]
async fn transactions_autocommit_and_locks_keep_statements_on_the_primary() {
    let (_proxy, mut conn) = connect(|_| {}).await;
    conn.query_drop("BEGIN").await.unwrap();
    assert_eq!(
        server_of(&mut conn, "SELECT @@server_id").await,
        PRIMARY,
        "inside BEGIN"
    );
    conn.query_drop("COMMIT").await.unwrap();
    assert!(
        is_replica(server_of(&mut conn, "SELECT @@server_id").await),
        "after COMMIT"
    );

    conn.query_drop("SET autocommit = 0").await.unwrap();
    assert_eq!(
        server_of(&mut conn, "SELECT @@server_id").await,
        PRIMARY,
        "autocommit off"
    );
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!(
        server_of(&mut conn, "SELECT @@server_id").await,
        PRIMARY,
        "still off after COMMIT"
    );
    conn.query_drop("SET autocommit = 1").await.unwrap();
    assert!(
        is_replica(server_of(&mut conn, "SELECT @@server_id").await),
        "autocommit back on"
    );

    conn.query_drop("LOCK TABLES t READ").await.unwrap();
    assert_eq!(
        server_of(&mut conn, "SELECT @@server_id FROM t LIMIT 1").await,
        PRIMARY,
        "under LOCK TABLES"
    );
    conn.query_drop("UNLOCK TABLES").await.unwrap();
    assert!(is_replica(
        server_of(&mut conn, "SELECT @@server_id FROM t LIMIT 1").await
    ));
}

#[tokio::test]
async fn a_read_only_transaction_runs_whole_on_one_replica() {
    let (_proxy, mut conn) = connect(|_| {}).await;
    conn.query_drop("START TRANSACTION READ ONLY")
        .await
        .unwrap();
    let first = server_of(&mut conn, "SELECT @@server_id").await;
    assert!(is_replica(first));
    for _ in 0..5 {
        assert_eq!(
            server_of(&mut conn, "SELECT @@server_id FROM t LIMIT 1").await,
            first
        );
    }
    match conn.query_drop("UPDATE t SET v = 'x' WHERE id = 1").await {
        // The replica's read_only answers first (1290); else 1792.
        Err(mysql_async::Error::Server(e)) => {
            assert!([1290, 1792].contains(&e.code), "{}", e.message)
        }
        other => panic!("a write in a read-only transaction: {other:?}"),
    }
    conn.query_drop("COMMIT").await.unwrap();
}

#[tokio::test]
async fn temporary_tables_are_readable_right_after_creation() {
    let (_proxy, mut conn) = connect(|_| {}).await;
    conn.query_drop("CREATE TEMPORARY TABLE tmp (id INT)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO tmp VALUES (7)").await.unwrap();
    let (id, server): (i32, u32) = conn
        .query_first("SELECT id, @@server_id FROM tmp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((id, server), (7, PRIMARY));
    // Executions of a prepared statement that reads it too.
    let prepared: (i32, u32) = conn
        .exec_first("SELECT id, @@server_id FROM tmp WHERE id = ?", (7,))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(prepared, (7, PRIMARY));
    assert!(
        is_replica(server_of(&mut conn, "SELECT @@server_id FROM t LIMIT 1").await),
        "other reads still on replicas"
    );
    conn.query_drop("DROP TEMPORARY TABLE tmp").await.unwrap();
}

#[tokio::test]
async fn statements_describing_the_previous_one_follow_it() {
    let (_proxy, mut conn) = connect(|_| {}).await;
    for _ in 0..4 {
        let (total, server): (u32, u32) = {
            let rows: Vec<(i32, u32)> = conn
                .query("SELECT SQL_CALC_FOUND_ROWS id, @@server_id FROM t ORDER BY id LIMIT 1")
                .await
                .unwrap();
            let found: (u32, u32) = conn
                .query_first("SELECT FOUND_ROWS(), @@server_id")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(found.1, rows[0].1, "FOUND_ROWS() ran where the SELECT ran");
            found
        };
        assert_eq!(total, 3);
        assert!(is_replica(server));
    }
    // The same with prepared statements.
    let select = conn
        .prep("SELECT SQL_CALC_FOUND_ROWS id FROM t WHERE id > ? LIMIT 1")
        .await
        .unwrap();
    let found = conn.prep("SELECT FOUND_ROWS()").await.unwrap();
    for _ in 0..4 {
        let _: Vec<i32> = conn.exec(&select, (1,)).await.unwrap();
        let total: Option<u32> = conn.exec_first(&found, ()).await.unwrap();
        assert_eq!(total, Some(2));
    }
    // Warnings from a read on a replica are shown by that replica.
    conn.query_drop("SELECT CAST('x' AS INT)").await.unwrap();
    let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].1, 1292);
    conn.query_drop("SELECT CAST('y' AS INT)").await.unwrap();
    let count: Option<u32> = conn.query_first("SELECT @@warning_count").await.unwrap();
    assert_eq!(count, Some(1));
}

#[tokio::test]
async fn session_state_follows_the_session_to_every_server() {
    let (_proxy, mut conn) = connect(|_| {}).await;
    conn.query_drop("SET @v = 42").await.unwrap();
    conn.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    for _ in 0..4 {
        let (v, mode, server): (u32, String, u32) = conn
            .query_first("SELECT @v, @@sql_mode, @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, 42);
        assert!(mode.contains("ANSI_QUOTES"), "{mode}");
        assert!(is_replica(server));
        // ANSI_QUOTES is obeyed: "v" is a column, not a string.
        let value: Option<String> = conn
            .query_first("SELECT \"v\" FROM t WHERE id = 1")
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some("one"));
    }
    conn.query_drop("USE routing2").await.unwrap();
    for _ in 0..4 {
        let (count, server): (u32, u32) = conn
            .query_first("SELECT COUNT(*), @@server_id FROM t2")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count, 2);
        assert!(is_replica(server));
    }
    conn.query_drop("PREPARE sql_select FROM 'SELECT @@server_id'")
        .await
        .unwrap();
    let text_prepared: u32 = conn
        .query_first("EXECUTE sql_select")
        .await
        .unwrap()
        .unwrap();
    assert!(
        is_replica(text_prepared),
        "a text PREPARE of a read executes on a replica"
    );
}

/// Backend connections rwsplit holds open, by backend (db1, db2, db3).
async fn backend_connections(proxy: &TestProxy) -> [u64; 3] {
    let text = common::metrics(proxy).await;
    ["db1", "db2", "db3"].map(|name| {
        let line = format!("rwsplit_backend_connections{{backend=\"{name}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
            .parse()
            .unwrap()
    })
}

#[tokio::test]
async fn a_session_that_only_reads_never_connects_to_the_primary() {
    // A driver's connect: a database, then SET NAMES and SET autocommit.
    let (proxy, mut conn) =
        connect(|c| c.routing.replica_affinity = ReplicaAffinity::Session).await;
    conn.query_drop("SET NAMES utf8mb4").await.unwrap();
    conn.query_drop("SET autocommit = 1").await.unwrap();
    conn.query_drop("SET @v = 42").await.unwrap();
    let (v, value, server): (u32, String, u32) = conn
        .query_first("SELECT @v, v, @@server_id FROM t WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v, value.as_str()), (42, "one"));
    assert!(is_replica(server));
    let [primary, db2, db3] = backend_connections(&proxy).await;
    assert_eq!(
        (primary, db2 + db3),
        (0, 1),
        "the session's one connection is its replica's"
    );

    // A write opens the primary's connection with the session's state.
    conn.query_drop("UPDATE t SET v = v WHERE id = 1")
        .await
        .unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    let (v, charset, server): (u32, String, u32) = conn
        .query_first("SELECT @v, @@character_set_client, @@server_id")
        .await
        .unwrap()
        .unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!((v, charset.as_str(), server), (42, "utf8mb4", PRIMARY));
    // From now on session state runs on the primary first, and still
    // reaches the replica.
    conn.query_drop("SET SESSION time_zone = '+01:00'")
        .await
        .unwrap();
    let (zone, server): (String, u32) = conn
        .query_first("SELECT @@time_zone, @@server_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(zone, "+01:00");
    assert!(is_replica(server));
    // User variables are read where a write (a trigger, a function) may
    // have assigned them since.
    conn.query_drop("SET @w = 7").await.unwrap();
    assert_eq!(
        server_of(&mut conn, "SELECT @w, @@server_id").await,
        PRIMARY
    );
    assert_eq!(backend_connections(&proxy).await[0], 1);
}

#[tokio::test]
async fn prepared_reads_run_on_replicas_and_stay_correct() {
    let (_proxy, mut conn) = connect(|_| {}).await;
    let statement = conn
        .prep("SELECT v, @@server_id FROM t WHERE id = ?")
        .await
        .unwrap();
    let mut servers = BTreeSet::new();
    for round in 0..12 {
        let id = round % 3 + 1;
        let (v, server): (String, u32) = conn.exec_first(&statement, (id,)).await.unwrap().unwrap();
        assert_eq!(v, ["one", "two", "three"][(id - 1) as usize]);
        servers.insert(server);
    }
    assert_eq!(
        servers,
        BTreeSet::from([2, 3]),
        "executions spread over the replicas"
    );
}

/// Executions that do not resend parameter types land on replicas that saw
/// the types only in executions elsewhere, or never: rwsplit adds them.
#[tokio::test]
async fn executions_without_types_work_on_every_replica() {
    use mysql_common::packets::ComStmtExecuteRequestBuilder;
    use mysql_common::proto::MySerialize;
    use rwsplit::protocol::response::Expect;

    let (proxy, _conn) = connect(|_| {}).await;
    let mut raw = common::raw_client(
        &proxy.addr.to_string(),
        common::modern_capabilities(),
        Some("routing"),
    )
    .await;
    let (prepared, _) = raw
        .exchange(
            b"\x16SELECT v, @@server_id FROM t WHERE id = ?",
            Expect::Prepare,
        )
        .await
        .unwrap();
    let id = u32::from_le_bytes(prepared[5..9].try_into().unwrap());
    let (request, _) =
        ComStmtExecuteRequestBuilder::new(id).build(&[mysql_common::value::Value::Int(2)]);
    let mut with_types = Vec::new();
    request.serialize(&mut with_types);
    // The same execution without types: bound flag 0, the two type bytes gone.
    let mut without_types = with_types.clone();
    without_types[11] = 0;
    without_types.drain(12..14);
    let (first, scanner) = raw
        .exchange(&with_types, Expect::Results { cursor: false })
        .await
        .unwrap();
    assert_eq!(scanner.error(), None, "{first:?}");
    for _ in 0..6 {
        let (response, scanner) = raw
            .exchange(&without_types, Expect::Results { cursor: false })
            .await
            .unwrap();
        assert_eq!(
            scanner.error(),
            None,
            "{:?}",
            String::from_utf8_lossy(&response)
        );
        assert!(
            response.windows(3).any(|w| w == b"two"),
            "the parameter arrived"
        );
    }
}

/// MariaDB's bulk executions write on the primary, and one that leaves out
/// the parameter types relies on those the primary saw before.
#[tokio::test]
async fn bulk_executions_run_on_the_primary() {
    use mysql_common::constants::MariadbCapabilities;
    use rwsplit::protocol::response::Expect;

    let (proxy, mut conn) = connect(|_| {}).await;
    conn.query_drop("CREATE OR REPLACE TABLE routing.bulk (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let mut raw = common::raw_mariadb_client(
        &proxy.addr.to_string(),
        common::modern_capabilities(),
        MariadbCapabilities::MARIADB_CLIENT_STMT_BULK_OPERATIONS,
        Some("routing"),
    )
    .await;
    let (prepared, _) = raw
        .exchange(b"\x16INSERT INTO bulk VALUES (?, ?)", Expect::Prepare)
        .await
        .unwrap();
    let id = &prepared[5..9];
    // Two INT parameters; rows of (indicator 0, value) pairs.
    let bulk = |types: bool, rows: std::ops::Range<i32>| {
        let mut payload = vec![0xfa];
        payload.extend_from_slice(id);
        payload.extend_from_slice(if types { &[0x80, 0] } else { &[0, 0] });
        if types {
            payload.extend_from_slice(&[0x03, 0, 0x03, 0]);
        }
        for row in rows {
            for value in [row, row * 10] {
                payload.push(0);
                payload.extend_from_slice(&value.to_le_bytes());
            }
        }
        payload
    };
    for (payload, rows) in [(bulk(true, 1..4), 3), (bulk(false, 4..6), 2)] {
        let (response, scanner) = raw
            .exchange(&payload, Expect::Results { cursor: false })
            .await
            .unwrap();
        assert_eq!(
            scanner.error(),
            None,
            "{:?}",
            String::from_utf8_lossy(&response)
        );
        assert_eq!(
            response.get(4..6),
            Some(&[0x00, rows][..]),
            "OK, {rows} rows"
        );
    }
    let mut primary = common::raw_client(
        &common::shared_sandbox().primary().address(),
        common::modern_capabilities(),
        None,
    )
    .await;
    let sum = primary
        .query_value("SELECT CONCAT(COUNT(*), ' ', SUM(v)) FROM routing.bulk")
        .await
        .unwrap();
    assert_eq!(
        sum.as_deref(),
        Some(&b"5 150"[..]),
        "the primary has every row"
    );
}

#[tokio::test]
async fn one_clients_state_is_never_visible_to_another() {
    let (proxy, mut a) = connect(|_| {}).await;
    a.query_drop("SET @secret2 = 'a'").await.unwrap();
    a.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    let _: Option<u32> = a.query_first("SELECT 1").await.unwrap();
    a.disconnect().await.unwrap();
    for _ in 0..4 {
        let mut b = Conn::new(proxy.opts()).await.unwrap();
        let (secret, mode, server): (Option<String>, String, u32) = b
            .query_first("SELECT @secret2, @@sql_mode, @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(secret, None);
        assert!(!mode.contains("ANSI_QUOTES"));
        assert!(is_replica(server));
    }
}

#[tokio::test]
async fn past_the_history_limit_the_session_stays_on_the_primary() {
    let (_proxy, mut conn) = connect(|c| c.routing.session_history_limit = 3).await;
    for i in 0..3 {
        conn.query_drop(format!("SET @v{i} = {i}")).await.unwrap();
    }
    assert!(
        is_replica(server_of(&mut conn, "SELECT @v2, @@server_id").await),
        "within the limit"
    );
    conn.query_drop("SET @v3 = 3").await.unwrap();
    for _ in 0..3 {
        let (v0, v3, server): (u32, u32, u32) = conn
            .query_first("SELECT @v0, @v3, @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((v0, v3, server), (0, 3, PRIMARY));
    }
}

#[tokio::test]
async fn a_session_change_that_cannot_be_replayed_pins_the_session() {
    let (_proxy, mut conn) = connect(|_| {}).await;
    assert!(is_replica(server_of(&mut conn, "SELECT @@server_id").await));
    conn.query_drop("SELECT @counted := COUNT(*) FROM t")
        .await
        .unwrap();
    let (counted, server): (u32, u32) = conn
        .query_first("SELECT @counted, @@server_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (counted, server),
        (3, PRIMARY),
        "the variable lives on the primary, and so does the session"
    );
}

#[tokio::test]
async fn an_unreachable_replica_sends_reads_to_the_primary() {
    let (_proxy, mut conn) = connect(|config| {
        // A port nothing listens on.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        config.backends.truncate(2);
        config.backends[1].address = dead.to_string();
    })
    .await;
    for _ in 0..3 {
        assert_eq!(server_of(&mut conn, "SELECT @@server_id").await, PRIMARY);
    }
}

/// Logs in to `opts` with database `db`, which must fail; the server's error.
async fn login_error(opts: mysql_async::Opts, db: &str) -> mysql_async::ServerError {
    let opts = mysql_async::OptsBuilder::from_opts(opts).db_name(Some(db));
    match Conn::new(opts).await {
        Err(mysql_async::Error::Server(error)) => error,
        other => panic!("a login to database {db} should fail with a server error: {other:?}"),
    }
}

/// The primary's count of failed logins.
async fn failed_logins(sandbox: &Sandbox) -> u64 {
    let mut admin = sandbox.primary().admin().await.unwrap();
    let row: (String, u64) = admin
        .query_first("SHOW GLOBAL STATUS WHERE Variable_name = 'Aborted_connects'")
        .await
        .unwrap()
        .unwrap();
    row.1
}

#[tokio::test]
async fn a_login_to_a_missing_database_gets_the_servers_error_from_one_try() {
    let sandbox = common::shared_sandbox();
    let direct = login_error(sandbox.primary().opts(&APP), "routing_missing").await;
    assert_eq!((direct.code, direct.state.as_str()), (1049, "42000"));

    // With replicas: one of them refuses first, then the primary has the
    // last word; the client reads what the server said.
    let proxy = common::start_proxy(common::proxy_config(&sandbox));
    let through = login_error(proxy.opts(), "routing_missing").await;
    assert_eq!(
        (through.code, through.state, through.message),
        (direct.code, direct.state.clone(), direct.message.clone())
    );

    // With the primary as the only reader, its answer is final: one login.
    let proxy = common::start_proxy(common::primary_only_config(&sandbox));
    let before = failed_logins(&sandbox).await;
    let through = login_error(proxy.opts(), "routing_missing").await;
    assert_eq!(
        (through.code, through.message),
        (direct.code, direct.message)
    );
    assert_eq!(
        failed_logins(&sandbox).await - before,
        1,
        "the primary is asked once"
    );
}

/// How many of `n` reads each server (by id) ran.
async fn read_servers(conn: &mut Conn, n: usize) -> [usize; 4] {
    let mut counts = [0usize; 4];
    for _ in 0..n {
        counts[server_of(conn, "SELECT @@server_id").await as usize] += 1;
    }
    counts
}

#[tokio::test]
async fn selection_policies_weights_backups_and_the_primary_as_reader() {
    let (_p, mut weighted) = connect(|c| c.backends[2].weight = 3).await;
    let counts = read_servers(&mut weighted, 40).await;
    assert_eq!(counts, [0, 0, 10, 30], "weights 1:3");

    let (_p, mut backup) = connect(|c| c.backends[2].backup = true).await;
    assert_eq!(
        read_servers(&mut backup, 10).await,
        [0, 0, 10, 0],
        "the backup takes no reads"
    );

    let (_p, mut with_primary) = connect(|c| c.routing.primary_serves_reads = true).await;
    let counts = read_servers(&mut with_primary, 30).await;
    assert_eq!(counts, [0, 10, 10, 10], "the primary reads too");

    let (_p, mut least) =
        connect(|c| c.routing.replica_selection = ReplicaSelection::LeastConnections).await;
    let counts = read_servers(&mut least, 10).await;
    assert_eq!(counts[1], 0);
    assert_eq!(counts[2] + counts[3], 10);
    assert!(
        counts[2] > 0 && counts[3] > 0,
        "idle replicas share the reads: {counts:?}"
    );
}

#[tokio::test]
async fn with_session_affinity_each_session_keeps_one_replica() {
    let (proxy, _) = connect(|c| c.routing.replica_affinity = ReplicaAffinity::Session).await;
    let mut used = BTreeSet::new();
    for _ in 0..4 {
        let mut conn = Conn::new(proxy.opts()).await.unwrap();
        let counts = read_servers(&mut conn, 10).await;
        let servers: Vec<usize> = (1..4).filter(|&id| counts[id] > 0).collect();
        assert_eq!(servers.len(), 1, "one session, one replica: {counts:?}");
        assert!(is_replica(servers[0] as u32));
        used.insert(servers[0]);
        // Prepared reads follow the same replica.
        let id: u32 = conn
            .exec_first("SELECT @@server_id", ())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(id as usize, servers[0]);
    }
    assert_eq!(
        used,
        BTreeSet::from([2, 3]),
        "sessions are spread over the replicas"
    );
}

/// The servers' statement counters, per server.
async fn counters(sandbox: &Sandbox, name: &str) -> Vec<u64> {
    let mut values = Vec::new();
    for server in sandbox.servers() {
        let mut admin = server.admin().await.unwrap();
        // A text query: a prepared one would count itself in Com_stmt_execute.
        let row: (String, u64) = admin
            .query_first(format!("SHOW GLOBAL STATUS WHERE Variable_name = '{name}'"))
            .await
            .unwrap()
            .unwrap();
        values.push(row.1);
    }
    values
}

#[test]
fn sysbench_read_only_reads_only_from_replicas() {
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = common::start_proxy(common::proxy_config(&sandbox));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut admin = Conn::new(sandbox.primary().opts(&APP)).await.unwrap();
        admin.query_drop("CREATE DATABASE sbtest").await.unwrap();
    });
    let sysbench = |command: &str, extra: &[&str]| {
        let output = program("sysbench")
            .args([
                "oltp_read_only",
                "--db-driver=mysql",
                "--mysql-host=127.0.0.1",
            ])
            .arg(format!("--mysql-port={}", proxy.port()))
            .args([
                "--mysql-user=app",
                "--mysql-password=app",
                "--mysql-db=sbtest",
                "--tables=1",
                "--table-size=2000",
            ])
            .args(extra)
            .arg(command)
            .output()
            .expect("run sysbench");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    sysbench("prepare", &[]);
    runtime.block_on(async { sandbox.sync_replicas().await.unwrap() });
    let before = runtime.block_on(counters(&sandbox, "Com_stmt_execute"));
    let report = sysbench(
        "run",
        &[
            "--threads=4",
            "--time=5",
            "--skip_trx=on",
            "--mysql-ignore-errors=none",
        ],
    );
    let after = runtime.block_on(counters(&sandbox, "Com_stmt_execute"));
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(delta[0], 0, "the primary served reads: {delta:?}\n{report}");
    assert!(
        delta[1] > 1000 && delta[2] > 1000,
        "both replicas serve the reads: {delta:?}"
    );
}

#[test]
fn prepared_selects_are_executed_by_replicas_per_server_counters() {
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let mut config = common::proxy_config(&sandbox);
    config.routing.replica_affinity = ReplicaAffinity::Statement;
    let proxy = common::start_proxy(config);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut admin = Conn::new(sandbox.primary().opts(&APP)).await.unwrap();
        admin.query_drop("CREATE DATABASE c; CREATE TABLE c.t (id INT PRIMARY KEY); INSERT INTO c.t VALUES (1)").await.unwrap();
        sandbox.sync_replicas().await.unwrap();
        let before_select = counters(&sandbox, "Com_stmt_execute").await;
        let before_insert = counters(&sandbox, "Com_insert").await;
        let mut conn = Conn::new(proxy.opts()).await.unwrap();
        let select = conn.prep("SELECT id FROM c.t WHERE id = ?").await.unwrap();
        for _ in 0..20 {
            let id: Option<i32> = conn.exec_first(&select, (1,)).await.unwrap();
            assert_eq!(id, Some(1));
        }
        conn.query_drop("INSERT INTO c.t VALUES (2)").await.unwrap();
        let executes: Vec<u64> = counters(&sandbox, "Com_stmt_execute").await.iter().zip(&before_select).map(|(a, b)| a - b).collect();
        let inserts: Vec<u64> = counters(&sandbox, "Com_insert").await.iter().zip(&before_insert).map(|(a, b)| a - b).collect();
        assert_eq!(executes, [0, 10, 10], "executions per server");
        assert_eq!(inserts[0], 1, "the insert ran on the primary: {inserts:?}");
    });
}

#[tokio::test]
async fn a_prepared_session_change_pins_the_session() {
    let (_proxy, mut conn) = connect(|_| {}).await;
    let set = conn.prep("SET @chosen = ?").await.unwrap();
    conn.exec_drop(&set, (5,)).await.unwrap();
    for _ in 0..3 {
        let (chosen, server): (u32, u32) = conn
            .query_first("SELECT @chosen, @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (chosen, server),
            (5, PRIMARY),
            "the value exists only where the statement ran"
        );
    }
}

/// With replicas: long data takes the next execution to the primary, and a
/// cursor opened on a replica is fetched from that replica.
#[tokio::test]
async fn long_data_and_cursors_follow_their_statement() {
    use rwsplit::protocol::response::Expect;
    let (proxy, _conn) = connect(|_| {}).await;
    let mut raw = common::raw_client(
        &proxy.addr.to_string(),
        common::modern_capabilities(),
        Some("routing"),
    )
    .await;
    let prepare = |sql: &str| {
        let mut p = vec![0x16];
        p.extend_from_slice(sql.as_bytes());
        p
    };
    let id_of = |response: &[u8]| u32::from_le_bytes(response[5..9].try_into().unwrap());

    // Long data: parameter 0 sent in a COM_STMT_SEND_LONG_DATA, no value in the execution.
    let (prepared, _) = raw
        .exchange(&prepare("SELECT LENGTH(?), @@server_id"), Expect::Prepare)
        .await
        .unwrap();
    let id = id_of(&prepared);
    let mut long_data = vec![0x18];
    long_data.extend_from_slice(&id.to_le_bytes());
    long_data.extend_from_slice(&[0, 0]);
    long_data.extend_from_slice(&[b'z'; 5000]);
    raw.send(0, &long_data).await.unwrap();
    let mut execute = vec![0x17];
    execute.extend_from_slice(&id.to_le_bytes());
    execute.extend_from_slice(&[0, 1, 0, 0, 0, 0b0, 1, 0xfc, 0]);
    let (response, scanner) = raw
        .exchange(&execute, Expect::Results { cursor: false })
        .await
        .unwrap();
    assert_eq!(scanner.error(), None);
    let text = String::from_utf8_lossy(&response);
    // The binary row: LENGTH() is a 4-byte LONG, @@server_id an 8-byte LONGLONG.
    let row = 5000u32
        .to_le_bytes()
        .iter()
        .chain(&1u64.to_le_bytes())
        .copied()
        .collect::<Vec<u8>>();
    assert!(
        response.windows(12).any(|w| w == row),
        "the long data arrived, on the primary: {text} {response:02x?}"
    );

    // A cursor: executed with CURSOR_TYPE_READ_ONLY, fetched two rows at a time.
    let (prepared, _) = raw
        .exchange(
            &prepare("SELECT id, @@server_id FROM t ORDER BY id"),
            Expect::Prepare,
        )
        .await
        .unwrap();
    let id = id_of(&prepared);
    let mut open = vec![0x17];
    open.extend_from_slice(&id.to_le_bytes());
    open.extend_from_slice(&[1, 1, 0, 0, 0]);
    let (_, scanner) = raw
        .exchange(&open, Expect::Results { cursor: true })
        .await
        .unwrap();
    assert_eq!(scanner.error(), None);
    let mut fetch = vec![0x1c];
    fetch.extend_from_slice(&id.to_le_bytes());
    fetch.extend_from_slice(&2u32.to_le_bytes());
    let mut batches = Vec::new();
    loop {
        let (batch, scanner) = raw.exchange(&fetch, Expect::Fetch).await.unwrap();
        assert_eq!(
            scanner.error(),
            None,
            "a fetch went elsewhere than the cursor: {:?}",
            String::from_utf8_lossy(&batch)
        );
        batches.push(row_packets(&batch));
        if scanner.status().is_some_and(|s| {
            s.contains(mysql_common::constants::StatusFlags::SERVER_STATUS_LAST_ROW_SENT)
        }) {
            break;
        }
        assert!(batches.len() < 5, "the cursor never ended");
    }
    assert_eq!(
        batches.iter().sum::<usize>(),
        3,
        "every row of t, through the cursor: {batches:?}"
    );
}

/// Binary row packets (header 0x00) in raw response bytes.
fn row_packets(mut bytes: &[u8]) -> usize {
    let mut rows = 0;
    while bytes.len() >= 4 {
        let len = usize::from(bytes[0]) | usize::from(bytes[1]) << 8 | usize::from(bytes[2]) << 16;
        rows += usize::from(bytes.get(4) == Some(&0x00));
        bytes = &bytes[4 + len..];
    }
    rows
}

/// MariaDB's metadata caching (mysql_async asks for it): a server skips a
/// prepared statement's column definitions while they are the ones it last
/// sent on the connection, and the client uses the ones it holds. One
/// statement run on servers whose columns differ — replicas altered ahead
/// of the primary, as in a rolling schema change — must still decode right
/// on each: rwsplit gives the client the definitions it lacks.
#[tokio::test]
async fn a_prepared_statement_decodes_right_on_servers_whose_columns_differ() {
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let mut primary = Conn::new(sandbox.primary().opts(&APP)).await.unwrap();
    primary
        .query_drop(
            "CREATE DATABASE meta; CREATE TABLE meta.t (id INT PRIMARY KEY, v INT); \
             INSERT INTO meta.t VALUES (1, 7)",
        )
        .await
        .unwrap();
    sandbox.sync_replicas().await.unwrap();
    for replica in &sandbox.servers()[1..] {
        let mut admin = replica.admin().await.unwrap();
        admin
            .query_drop("SET sql_log_bin = 0; ALTER TABLE meta.t MODIFY v VARCHAR(10)")
            .await
            .unwrap();
    }
    let proxy = common::start_proxy(common::proxy_config(&sandbox));
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    let select = conn
        .prep("SELECT v, @@server_id FROM meta.t WHERE id = ?")
        .await
        .unwrap();
    let text = mysql_async::Value::Bytes(b"7".to_vec());
    let skipped_before = counters(&sandbox, "Resultset_metadata_skipped").await;
    let (v, replica): (mysql_async::Value, u32) =
        conn.exec_first(&select, (1,)).await.unwrap().unwrap();
    assert!(is_replica(replica));
    assert_eq!(v, text, "prepared and run on a replica");
    conn.query_drop("BEGIN").await.unwrap();
    let (v, server): (mysql_async::Value, u32) =
        conn.exec_first(&select, (1,)).await.unwrap().unwrap();
    assert_eq!((v, server), (mysql_async::Value::Int(7), PRIMARY));
    conn.query_drop("COMMIT").await.unwrap();
    let (v, server): (mysql_async::Value, u32) =
        conn.exec_first(&select, (1,)).await.unwrap().unwrap();
    assert_eq!((v, server), (text, replica), "back on the replica");
    // Every server skipped the definitions each time (they were what it
    // sent last): those the client got on switching came from rwsplit.
    let skipped = counters(&sandbox, "Resultset_metadata_skipped").await;
    let primary_index = 0;
    let replica_index = replica as usize - 1;
    assert_eq!(skipped[primary_index] - skipped_before[primary_index], 1);
    assert_eq!(skipped[replica_index] - skipped_before[replica_index], 2);
}
