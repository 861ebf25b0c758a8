//! Fidelity at the byte level: the same commands sent straight to MariaDB
//! and through rwsplit must get byte-identical responses — column metadata,
//! rows, warnings, status flags, errors, multi-results — with and without
//! CLIENT_DEPRECATE_EOF and session tracking, and with MariaDB's metadata
//! caching (prepared statements executed twice: the second time the server
//! skips the column definitions) and extended metadata (type names such as
//! `json` and `inet6` in column definitions).
//!
//! Both connections use the same database and temporary tables of their
//! own, so they see the same data without seeing each other's writes.

mod common;

use std::sync::Arc;

use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
use mysql_common::packets::ComStmtExecuteRequestBuilder;
use mysql_common::proto::MySerialize;
use mysql_common::value::Value;
use rwsplit::backend::conn::BackendConn;
use rwsplit::protocol::command::com;
use rwsplit::protocol::packet::{HEADER_LEN, packet_ranges, put_packet};
use rwsplit::protocol::response::Expect;
use rwsplit::sandbox::Sandbox;

use common::{TestProxy, modern_capabilities, raw_client, raw_mariadb_client, within};

const RESULTS: Expect = Expect::Results { cursor: false };

/// The schema and data every comparison reads.
const SETUP: &[&str] = &[
    "CREATE DATABASE IF NOT EXISTS fidelity",
    "CREATE TABLE IF NOT EXISTS fidelity.all_types (
        id INT PRIMARY KEY,
        c_tinyint TINYINT, c_tinyint_u TINYINT UNSIGNED, c_smallint SMALLINT,
        c_mediumint MEDIUMINT, c_int_u INT UNSIGNED, c_bigint BIGINT, c_bigint_u BIGINT UNSIGNED,
        c_decimal DECIMAL(20,6), c_float FLOAT, c_double DOUBLE, c_bit BIT(10), c_bool BOOLEAN,
        c_date DATE, c_datetime DATETIME(6), c_timestamp TIMESTAMP(3) NULL, c_time TIME(2), c_year YEAR,
        c_char CHAR(10), c_varchar VARCHAR(100), c_binary BINARY(4), c_varbinary VARBINARY(20),
        c_tinytext TINYTEXT, c_text TEXT, c_mediumtext MEDIUMTEXT, c_longtext LONGTEXT,
        c_tinyblob TINYBLOB, c_blob BLOB, c_mediumblob MEDIUMBLOB, c_longblob LONGBLOB,
        c_enum ENUM('a','b','c'), c_set SET('x','y','z'), c_json JSON, c_geometry GEOMETRY, c_point POINT,
        c_inet6 INET6, c_uuid UUID, c_inet4 INET4, c_latin1 VARCHAR(20) CHARACTER SET latin1
    )",
    "INSERT IGNORE INTO fidelity.all_types VALUES
        (1, -128, 255, -32768, 8388607, 4294967295, -9223372036854775808, 18446744073709551615,
         12345678901234.123456, 1.5, 2.718281828459045, b'1010101010', TRUE,
         '2024-02-29', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789', '-838:59:59.99', 2155,
         'fixed', 'variable ✓', x'00FF10AB', x'DEADBEEF',
         'tiny', 'text with ''quotes'' and 😀', REPEAT('m', 300), REPEAT('long ', 100),
         x'01', x'0203', x'040506', REPEAT(x'AB', 1000),
         'b', 'x,z', '{\"k\": [1, 2, null]}', ST_GeomFromText('LINESTRING(0 0, 1 1)'), POINT(1.5, -2),
         '2001:db8::ff00:42:8329', '123e4567-e89b-12d3-a456-426614174000', '192.0.2.1', 'café'),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'0', FALSE,
         '1000-01-01', '1000-01-01 00:00:00', '1970-01-02 00:00:01', '00:00:00', 1901,
         '', '', x'00000000', x'', '', '', '', '', x'', x'', x'', x'', 'a', '', '[]',
         ST_GeomFromText('POINT(0 0)'), POINT(0, 0), '::', '00000000-0000-0000-0000-000000000000', '0.0.0.0', '')",
    "CREATE PROCEDURE IF NOT EXISTS fidelity.three_results(IN n INT)
        BEGIN
          SELECT n AS first;
          SELECT id, c_varchar FROM fidelity.all_types ORDER BY id;
          SELECT 'done' AS last, n * 2 AS twice;
        END",
];

/// Statements compared one after another on the same pair of connections,
/// so that state (variables, temporary tables, warnings) builds up alike.
const STATEMENTS: &[&str] = &[
    "SELECT 1",
    "SELECT NULL, 1.5, 'x', -0.0, 1e300, 18446744073709551615",
    "SELECT * FROM all_types ORDER BY id",
    "SELECT id, c_varchar FROM all_types WHERE id = 99999",
    "SELECT 1; SELECT 2, 'two'; DO 3",
    "SELECT 1; SELECT no_such_column; SELECT 3",
    "CALL three_results(21)",
    "SELECT no_such_column",
    "SELECT * FROM no_such_table",
    "SELECT CAST('abc' AS INT), CAST('12x' AS DECIMAL)",
    "SHOW WARNINGS",
    "SHOW ERRORS",
    "SELECT @@warning_count, @@error_count",
    "SET @x = 5, @y = 'five'",
    "SELECT @x, @y",
    "CREATE TEMPORARY TABLE tmp (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(5) NOT NULL)",
    "INSERT INTO tmp (v) VALUES ('a'), ('b'), ('c')",
    "UPDATE tmp SET v = 'z' WHERE id > 1",
    "INSERT INTO tmp (v) VALUES ('toolongvalue')",
    "SET SESSION sql_mode = ''",
    "INSERT INTO tmp (v) VALUES ('toolongvalue')",
    "SHOW WARNINGS",
    "DELETE FROM tmp WHERE id = 1",
    "SELECT LAST_INSERT_ID(), ROW_COUNT()",
    "SELECT SQL_CALC_FOUND_ROWS id FROM all_types ORDER BY id LIMIT 1",
    "SELECT FOUND_ROWS()",
    "BEGIN",
    "SELECT v FROM tmp ORDER BY id",
    "INSERT INTO tmp (v) VALUES ('t')",
    "ROLLBACK",
    "SET autocommit = 0",
    "SELECT 1",
    "COMMIT",
    "SET autocommit = 1",
    "START TRANSACTION READ ONLY",
    "SELECT 2",
    "COMMIT",
    "SET NAMES latin1",
    "SELECT c_varchar, c_latin1, c_text, 'é' FROM all_types ORDER BY id",
    "SET NAMES utf8mb4",
    "SELECT '😀', c_varchar, c_latin1 FROM all_types ORDER BY id",
    "SHOW VARIABLES LIKE 'max_allowed_packet'",
    "SHOW COLUMNS FROM all_types LIKE 'c_t%'",
    "EXPLAIN SELECT * FROM all_types WHERE id = 1",
    "DESCRIBE all_types",
    "SELECT REPEAT('x', 70000), REPEAT('y', 70000)",
    "SELECT JSON_OBJECT('a', 1), ST_AsText(c_point) FROM all_types WHERE id = 1",
    "DO SLEEP(0)",
    "SET @@session.time_zone = '+02:00'",
    "SELECT c_timestamp FROM all_types ORDER BY id",
    // rwsplit keeps the server's state-change tracker on for itself; what
    // the client gets of the session-state changes is what it asked for.
    "USE fidelity",
    "PREPARE ps FROM 'SELECT 1'",
    "EXECUTE ps",
    "DEALLOCATE PREPARE ps",
    "SET STATEMENT sql_mode = '' FOR UPDATE tmp SET v = v",
    "CREATE TEMPORARY TABLE tmp2 (a INT)",
    "DROP TEMPORARY TABLE tmp2",
    "EXECUTE IMMEDIATE 'SET @ei = 1'",
    "SET autocommit = 0",
    "SET autocommit = 1",
    // A client that turns the tracker on itself gets all of it.
    "SET session_track_state_change = 1",
    "SET @z = 1",
    "USE fidelity",
    "SET session_track_state_change = 0",
    "SET @z = 2",
];

/// A direct connection and one through rwsplit, with the same capabilities.
struct Pair {
    direct: BackendConn,
    proxied: BackendConn,
}

impl Pair {
    async fn open(sandbox: &Sandbox, proxy: &TestProxy, capabilities: CapabilityFlags) -> Pair {
        Pair::open_with(sandbox, proxy, capabilities, MariadbCapabilities::empty()).await
    }

    /// A pair that also asks for MariaDB's extended capabilities.
    async fn open_with(
        sandbox: &Sandbox,
        proxy: &TestProxy,
        capabilities: CapabilityFlags,
        mariadb: MariadbCapabilities,
    ) -> Pair {
        let primary = sandbox.primary().address();
        let through = proxy.addr.to_string();
        let db = Some("fidelity");
        let pair = Pair {
            direct: raw_mariadb_client(&primary, capabilities, mariadb, db).await,
            proxied: raw_mariadb_client(&through, capabilities, mariadb, db).await,
        };
        assert_eq!(pair.direct.mariadb_capabilities(), mariadb);
        assert_eq!(pair.proxied.mariadb_capabilities(), mariadb);
        pair
    }

    /// Sends `payload` on both and asserts identical responses.
    async fn same(&mut self, payload: &[u8], expect: Expect, what: &str) -> Vec<u8> {
        let (direct, _) = within(what, self.direct.exchange(payload, expect))
            .await
            .unwrap();
        let (proxied, _) = within(what, self.proxied.exchange(payload, expect))
            .await
            .unwrap();
        assert_bytes_eq(&direct, &proxied, what);
        direct
    }

    async fn query(&mut self, sql: &str) -> Vec<u8> {
        let mut payload = vec![com::QUERY];
        payload.extend_from_slice(sql.as_bytes());
        self.same(&payload, RESULTS, sql).await
    }
}

fn assert_bytes_eq(direct: &[u8], proxied: &[u8], what: &str) {
    if direct != proxied {
        let at = direct
            .iter()
            .zip(proxied)
            .position(|(a, b)| a != b)
            .unwrap_or(direct.len().min(proxied.len()));
        let window =
            |b: &[u8]| format!("{:02x?}", &b[at.saturating_sub(8)..(at + 24).min(b.len())]);
        panic!(
            "{what}: responses differ at byte {at} (direct {} bytes, proxied {} bytes)\n direct:  {}\n proxied: {}",
            direct.len(),
            proxied.len(),
            window(direct),
            window(proxied)
        );
    }
}

async fn setup() -> (Arc<Sandbox>, TestProxy) {
    let sandbox = common::shared_sandbox();
    let mut admin = raw_client(&sandbox.primary().address(), modern_capabilities(), None).await;
    for statement in SETUP {
        sql(&mut admin, statement).await;
    }
    let proxy = common::start_proxy(common::primary_only_config(&sandbox));
    (sandbox, proxy)
}

fn capability_sets() -> [(&'static str, CapabilityFlags, MariadbCapabilities); 6] {
    let modern = modern_capabilities();
    let classic_eof =
        modern - CapabilityFlags::CLIENT_DEPRECATE_EOF - CapabilityFlags::CLIENT_SESSION_TRACK;
    let none = MariadbCapabilities::empty();
    let cached = MariadbCapabilities::MARIADB_CLIENT_CACHE_METADATA;
    [
        ("modern", modern, none),
        ("classic EOF", classic_eof, none),
        (
            "found rows, no multi-statements",
            (modern | CapabilityFlags::CLIENT_FOUND_ROWS)
                - CapabilityFlags::CLIENT_MULTI_STATEMENTS,
            none,
        ),
        ("modern, metadata cached", modern, cached),
        ("classic EOF, metadata cached", classic_eof, cached),
        // What MariaDB Connector/C (so sysbench) asks for.
        (
            "modern, metadata cached and extended",
            modern,
            cached | MariadbCapabilities::MARIADB_CLIENT_EXTENDED_METADATA,
        ),
    ]
}

/// The comparisons above would pass if rwsplit hid extended metadata from
/// both sides; this one checks that the type names are there.
#[tokio::test]
async fn extended_metadata_names_mariadb_types() {
    let (sandbox, proxy) = setup().await;
    let extended = MariadbCapabilities::MARIADB_CLIENT_EXTENDED_METADATA;
    let mut pair = Pair::open_with(&sandbox, &proxy, modern_capabilities(), extended).await;
    let response = pair
        .query("SELECT c_json, c_inet6, c_uuid, c_point FROM all_types ORDER BY id")
        .await;
    // Each is a key (0: type name, 1: format name) and a length-prefixed value.
    for (what, entry) in [
        ("json", &b"\x01\x04json"[..]),
        ("inet6", b"\x00\x05inet6"),
        ("uuid", b"\x00\x04uuid"),
        ("point", b"\x00\x05point"),
    ] {
        assert!(
            response.windows(entry.len()).any(|w| w == entry),
            "no extended metadata for {what} in {:02x?}",
            response
        );
    }
}

/// Runs `sql` on `conn`; an error fails the test.
async fn sql(conn: &mut BackendConn, sql: &str) -> Vec<u8> {
    let mut payload = vec![com::QUERY];
    payload.extend_from_slice(sql.as_bytes());
    within(sql, conn.run(&payload, RESULTS))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .0
}

/// MariaDB's progress reports (ALTER TABLE, LOAD DATA INFILE...) reach a
/// client that asked for them, before the statement's own answer. How
/// many come depends on time, so this is not a byte comparison.
#[tokio::test]
async fn progress_reports_reach_the_client_before_the_answer() {
    let (sandbox, proxy) = setup().await;
    let mut admin = raw_client(&sandbox.primary().address(), modern_capabilities(), None).await;
    // A server reports every max(global, session) progress_report_time s.
    sql(&mut admin, "SET GLOBAL progress_report_time = 1").await;
    sql(
        &mut admin,
        "CREATE OR REPLACE TABLE fidelity.progress (id INT PRIMARY KEY, v VARCHAR(200))",
    )
    .await;
    let progress = MariadbCapabilities::MARIADB_CLIENT_PROGRESS;
    let through = proxy.addr.to_string();
    let mut client =
        raw_mariadb_client(&through, modern_capabilities(), progress, Some("fidelity")).await;
    assert_eq!(client.mariadb_capabilities(), progress);
    sql(&mut client, "SET SESSION progress_report_time = 1").await;
    // Copying the table must take over a second: grow it until it does.
    let mut rows = 0;
    for more in [300_000, 300_000, 600_000, 1_200_000] {
        sql(
            &mut admin,
            &format!(
                "INSERT INTO fidelity.progress SELECT seq, REPEAT('x', 200) FROM fidelity.seq_{}_to_{}",
                rows + 1,
                rows + more
            ),
        )
        .await;
        rows += more;
        let response = sql(&mut client, "ALTER TABLE progress FORCE, ALGORITHM=COPY").await;
        let packets: Vec<&[u8]> = packet_ranges(&response)
            .map(|packet| &response[packet.start + HEADER_LEN..packet.end])
            .collect();
        let (answer, before) = packets.split_last().expect("a response");
        assert_eq!(answer.first(), Some(&0x00), "the ALTER's own OK comes last");
        assert!(
            before.iter().all(|p| p.starts_with(&[0xFF, 0xFF, 0xFF])),
            "only progress reports come before it"
        );
        if !before.is_empty() {
            sql(&mut client, "SELECT 1").await;
            sql(&mut admin, "DROP TABLE fidelity.progress").await;
            sql(&mut admin, "SET GLOBAL progress_report_time = DEFAULT").await;
            return;
        }
    }
    panic!("no progress report from an ALTER TABLE copying {rows} rows");
}

#[tokio::test]
async fn text_protocol_responses_are_byte_identical() {
    let (sandbox, proxy) = setup().await;
    for (name, capabilities, mariadb) in capability_sets() {
        let mut pair = Pair::open_with(&sandbox, &proxy, capabilities, mariadb).await;
        for sql in STATEMENTS {
            pair.query(&format!("/* {name} */ {sql}")).await;
        }
    }
}

#[tokio::test]
async fn other_commands_are_byte_identical() {
    let (sandbox, proxy) = setup().await;
    for (_, capabilities, mariadb) in capability_sets() {
        let mut pair = Pair::open_with(&sandbox, &proxy, capabilities, mariadb).await;
        pair.same(b"\x04all_types\x00c_%", Expect::FieldList, "COM_FIELD_LIST")
            .await;
        pair.same(b"\x02fidelity", Expect::Single, "COM_INIT_DB")
            .await;
        pair.same(
            b"\x02no_such_db",
            Expect::Single,
            "COM_INIT_DB to a missing database",
        )
        .await;
        pair.same(b"\x1b\x01\x00", Expect::Single, "COM_SET_OPTION off")
            .await;
        pair.query("SELECT 'multi statements are off'").await;
        pair.same(b"\x1b\x00\x00", Expect::Single, "COM_SET_OPTION on")
            .await;
        pair.same(b"\x1f", Expect::Single, "COM_RESET_CONNECTION")
            .await;
        pair.query("SELECT @x, DATABASE()").await;
    }
}

/// COM_STMT_PREPARE responses differ only in the statement id (rwsplit
/// gives its own); everything else must match.
fn mask_statement_id(mut response: Vec<u8>) -> Vec<u8> {
    if response.get(4) == Some(&0x00) {
        response[5..9].copy_from_slice(&[0; 4]);
    }
    response
}

/// The statement id in a PREPARE_OK, or 0 for an ERR.
fn statement_id(response: &[u8]) -> u32 {
    match response.get(4) {
        Some(0x00) => u32::from_le_bytes(response[5..9].try_into().unwrap()),
        _ => 0,
    }
}

async fn prepare(pair: &mut Pair, sql: &str) -> (u32, u32) {
    let mut payload = vec![com::STMT_PREPARE];
    payload.extend_from_slice(sql.as_bytes());
    let (direct, _) = pair
        .direct
        .exchange(&payload, Expect::Prepare)
        .await
        .unwrap();
    let (proxied, _) = pair
        .proxied
        .exchange(&payload, Expect::Prepare)
        .await
        .unwrap();
    let (direct_id, proxied_id) = (statement_id(&direct), statement_id(&proxied));
    assert_bytes_eq(&mask_statement_id(direct), &mask_statement_id(proxied), sql);
    (direct_id, proxied_id)
}

/// Sends a statement command (the id at bytes 1..5) to each side with its own id.
async fn statement_command(
    pair: &mut Pair,
    ids: (u32, u32),
    payload: &[u8],
    expect: Expect,
    what: &str,
) -> Vec<u8> {
    let with_id = |id: u32| {
        let mut p = payload.to_vec();
        p[1..5].copy_from_slice(&id.to_le_bytes());
        p
    };
    let (direct, _) = within(what, pair.direct.exchange(&with_id(ids.0), expect))
        .await
        .unwrap();
    let (proxied, _) = within(what, pair.proxied.exchange(&with_id(ids.1), expect))
        .await
        .unwrap();
    assert_bytes_eq(&direct, &proxied, what);
    direct
}

fn execute_payload(params: &[Value], flags: u8) -> Vec<u8> {
    let (request, _) = ComStmtExecuteRequestBuilder::new(0).build(params);
    let mut payload = Vec::new();
    request.serialize(&mut payload);
    payload[5] = flags;
    payload
}

/// A COM_STMT_BULK_EXECUTE for `INSERT INTO bulk VALUES (?, ?)` (INT,
/// VARCHAR), a row of parameters per (id, value or NULL); with the
/// parameter types when `types`.
fn bulk_payload(rows: &[(i32, Option<&str>)], types: bool) -> Vec<u8> {
    let mut payload = vec![com::STMT_BULK_EXECUTE, 0, 0, 0, 0];
    let flags: u16 = if types { 0x80 } else { 0 };
    payload.extend_from_slice(&flags.to_le_bytes());
    if types {
        payload.extend_from_slice(&[0x03, 0x00, 0xfd, 0x00]);
    }
    for (id, value) in rows {
        payload.push(0);
        payload.extend_from_slice(&id.to_le_bytes());
        match value {
            Some(value) => {
                payload.push(0);
                payload.push(value.len() as u8);
                payload.extend_from_slice(value.as_bytes());
            }
            None => payload.push(1),
        }
    }
    payload
}

#[tokio::test]
async fn bulk_executions_are_byte_identical() {
    let (sandbox, proxy) = setup().await;
    let bulk = MariadbCapabilities::MARIADB_CLIENT_STMT_BULK_OPERATIONS;
    let mut pair = Pair::open_with(&sandbox, &proxy, modern_capabilities(), bulk).await;
    pair.query("CREATE TEMPORARY TABLE bulk (id INT PRIMARY KEY, v VARCHAR(10))")
        .await;
    let ids = prepare(&mut pair, "INSERT INTO bulk VALUES (?, ?)").await;
    let rows = [(1, Some("one")), (2, None), (3, Some("three"))];
    let answer = statement_command(
        &mut pair,
        ids,
        &bulk_payload(&rows, true),
        RESULTS,
        "a bulk insert with types",
    )
    .await;
    assert_eq!(answer.get(4..6), Some(&[0x00, 3][..]), "OK, 3 rows");
    for (payload, what) in [
        (
            bulk_payload(&[(4, Some("four"))], false),
            "the types from before",
        ),
        (
            bulk_payload(&[(1, Some("dup"))], false),
            "a duplicate key: ERR",
        ),
    ] {
        statement_command(&mut pair, ids, &payload, RESULTS, what).await;
    }
    pair.query("SELECT * FROM bulk ORDER BY id").await;
    let unknown = bulk_payload(&[(5, None)], true);
    statement_command(
        &mut pair,
        (9999, 9999),
        &unknown,
        RESULTS,
        "an unknown statement",
    )
    .await;
}

#[tokio::test]
async fn binary_protocol_with_every_parameter_type() {
    let (sandbox, proxy) = setup().await;
    let params = vec![
        Value::NULL,
        Value::Int(-42),
        Value::UInt(u64::MAX),
        Value::Float(1.25),
        Value::Double(-2.5e-10),
        Value::Bytes(b"text \xe2\x9c\x93".to_vec()),
        Value::Bytes(vec![0, 255, 1, 254]),
        Value::Date(2024, 2, 29, 23, 59, 58, 123_456),
        Value::Date(2024, 2, 29, 0, 0, 0, 0),
        Value::Time(true, 1, 2, 3, 4, 5),
        Value::Time(false, 0, 0, 0, 0, 0),
    ];
    let placeholders = vec!["?"; params.len()].join(", ");
    for (name, capabilities, mariadb) in capability_sets() {
        let mut pair = Pair::open_with(&sandbox, &proxy, capabilities, mariadb).await;
        let ids = prepare(&mut pair, &format!("SELECT {placeholders}")).await;
        let what = format!("{name}: execute with every parameter type");
        statement_command(&mut pair, ids, &execute_payload(&params, 0), RESULTS, &what).await;
        // Again, without resending the types.
        let mut again = execute_payload(&params, 0);
        let bound_flag_at = 10 + params.len().div_ceil(8);
        let types_end = bound_flag_at + 1 + 2 * params.len();
        again[bound_flag_at] = 0;
        again.drain(bound_flag_at + 1..types_end);
        let response = statement_command(
            &mut pair,
            ids,
            &again,
            RESULTS,
            &format!("{what}, types not resent"),
        )
        .await;
        if !mariadb.is_empty() {
            // The column count's "metadata follows" byte: the server skipped
            // the definitions, the client holds them from PREPARE_OK.
            assert_eq!(&response[4..6], &[params.len() as u8, 0], "{name}");
        }

        let ids = prepare(
            &mut pair,
            "SELECT * FROM all_types WHERE id >= ? ORDER BY id",
        )
        .await;
        statement_command(
            &mut pair,
            ids,
            &execute_payload(&[Value::Int(1)], 0),
            RESULTS,
            "binary rows of every column type",
        )
        .await;
        statement_command(
            &mut pair,
            ids,
            b"\x1a\0\0\0\0",
            Expect::Single,
            "COM_STMT_RESET",
        )
        .await;
        let ids = prepare(&mut pair, "SELECT no_such_column FROM all_types").await;
        assert_eq!(ids, (0, 0), "a failing PREPARE returns ERR on both sides");
        let ids = prepare(&mut pair, "CALL three_results(?)").await;
        statement_command(
            &mut pair,
            ids,
            &execute_payload(&[Value::Int(5)], 0),
            RESULTS,
            "CALL through a prepared statement",
        )
        .await;
    }
}

#[tokio::test]
async fn cursors_fetch_identically() {
    let (sandbox, proxy) = setup().await;
    for (name, capabilities, mariadb) in capability_sets() {
        let mut pair = Pair::open_with(&sandbox, &proxy, capabilities, mariadb).await;
        let ids = prepare(
            &mut pair,
            "SELECT id, c_varchar, c_blob FROM all_types WHERE id >= ? ORDER BY id",
        )
        .await;
        let what = format!("{name}: execute with a read-only cursor");
        let cursor = Expect::Results { cursor: true };
        statement_command(
            &mut pair,
            ids,
            &execute_payload(&[Value::Int(0)], 1),
            cursor,
            &what,
        )
        .await;
        let fetch = b"\x1c\0\0\0\0\x02\x00\x00\x00";
        for round in 0..2 {
            statement_command(
                &mut pair,
                ids,
                fetch,
                Expect::Fetch,
                &format!("{name}: fetch round {round}"),
            )
            .await;
        }
        // The cursor is exhausted: both sides refuse with the same error. Its
        // text names the statement id the server knows, which through rwsplit
        // is the backend's (see docs/protocol.md), so only the code is compared.
        let with_id = |id: u32| {
            let mut p = fetch.to_vec();
            p[1..5].copy_from_slice(&id.to_le_bytes());
            p
        };
        let (_, direct) = pair
            .direct
            .exchange(&with_id(ids.0), Expect::Fetch)
            .await
            .unwrap();
        let (_, proxied) = pair
            .proxied
            .exchange(&with_id(ids.1), Expect::Fetch)
            .await
            .unwrap();
        assert_eq!(
            (direct.error(), proxied.error()),
            (Some(1421), Some(1421)),
            "{name}: no open cursor"
        );
        statement_command(
            &mut pair,
            ids,
            b"\x1a\0\0\0\0",
            Expect::Single,
            "reset after the cursor",
        )
        .await;
    }
}

#[tokio::test]
async fn a_20_mib_blob_goes_both_ways() {
    let (sandbox, proxy) = setup().await;
    let mut pair = Pair::open(&sandbox, &proxy, modern_capabilities()).await;
    pair.query("CREATE TEMPORARY TABLE big (id INT PRIMARY KEY, b LONGBLOB)")
        .await;
    let blob: Vec<u8> = (0..20 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut insert = b"\x03INSERT INTO big VALUES (1, x'".to_vec();
    for byte in &blob {
        insert.extend_from_slice(format!("{byte:02x}").as_bytes());
    }
    insert.extend_from_slice(b"')");
    assert!(
        insert.len() > 2 * 0xFF_FFFF,
        "the command spans three packets"
    );
    pair.same(&insert, RESULTS, "insert a 20 MiB blob in a 40 MiB command")
        .await;
    let response = pair.query("SELECT b FROM big").await;
    assert!(response.len() > 20 << 20);
    assert!(
        response.windows(1024).any(|w| w == &blob[4096..5120]),
        "the blob came back"
    );
}

/// LOAD DATA LOCAL: the server asks for the file, the client streams it.
async fn load_data(conn: &mut BackendConn, rows: &[u8]) -> Vec<u8> {
    let mut payload = vec![com::QUERY];
    payload.extend_from_slice(
        b"LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE loaded FIELDS TERMINATED BY ','",
    );
    conn.send(0, &payload).await.unwrap();
    let request = conn.read_frame().await.unwrap();
    assert_eq!(
        request.first_payload(),
        b"\xFBrows.csv",
        "LOCAL INFILE request"
    );
    let mut out = Vec::new();
    let mut seq = put_packet(&mut out, request.seq() + 1, rows);
    seq = put_packet(&mut out, seq, b"");
    conn.write_all(&out).await.unwrap();
    let answer = conn.read_frame().await.unwrap();
    assert_eq!(answer.seq(), seq);
    answer.first_payload().to_vec()
}

#[tokio::test]
async fn load_data_local_infile_relays_the_file() {
    let (sandbox, proxy) = setup().await;
    let mut pair = Pair::open(&sandbox, &proxy, modern_capabilities()).await;
    pair.query("CREATE TEMPORARY TABLE loaded (id INT, name VARCHAR(10))")
        .await;
    let rows = b"1,one\n2,two\n3,three is too long\n";
    let direct = within("load direct", load_data(&mut pair.direct, rows)).await;
    let proxied = within("load proxied", load_data(&mut pair.proxied, rows)).await;
    assert_eq!(
        direct, proxied,
        "the final OK (with its warning count) matches"
    );
    pair.query("SHOW WARNINGS").await;
    pair.query("SELECT * FROM loaded ORDER BY id").await;
}

#[tokio::test]
async fn long_data_then_close() {
    let (sandbox, proxy) = setup().await;
    let mut pair = Pair::open(&sandbox, &proxy, modern_capabilities()).await;
    let ids = prepare(&mut pair, "SELECT LENGTH(?), ?").await;
    // Parameter 0 arrives in two COM_STMT_SEND_LONG_DATA packets (no response).
    for chunk in [&b"first half, "[..], b"second half"] {
        for (conn, id) in [(&mut pair.direct, ids.0), (&mut pair.proxied, ids.1)] {
            let mut long_data = vec![com::STMT_SEND_LONG_DATA, 0, 0, 0, 0, 0, 0];
            long_data[1..5].copy_from_slice(&id.to_le_bytes());
            long_data.extend_from_slice(chunk);
            conn.send(0, &long_data).await.unwrap();
        }
    }
    // Execute: types BLOB and LONG; parameter 0's value is the long data.
    let mut execute = vec![
        com::STMT_EXECUTE,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0b00,
        1,
        0xfc,
        0,
        0x03,
        0,
    ];
    execute.extend_from_slice(&7i32.to_le_bytes());
    statement_command(&mut pair, ids, &execute, RESULTS, "execute with long data").await;
    // COM_STMT_CLOSE has no response; afterwards the id is unknown on both
    // (the error text quotes each side's own id, so the codes are compared).
    for (conn, id) in [(&mut pair.direct, ids.0), (&mut pair.proxied, ids.1)] {
        let mut close = vec![com::STMT_CLOSE, 0, 0, 0, 0];
        close[1..5].copy_from_slice(&id.to_le_bytes());
        conn.send(0, &close).await.unwrap();
        let mut again = execute.clone();
        again[1..5].copy_from_slice(&id.to_le_bytes());
        let (_, scanner) = within("execute after close", conn.exchange(&again, RESULTS))
            .await
            .unwrap();
        assert_eq!(scanner.error(), Some(1243), "the statement is closed");
    }
}
