//! Session state changed in forms rwsplit's classifier may not recognise —
//! executable comments, procedures with OUT parameters, `SELECT ... INTO`,
//! prepared and immediate SETs, stored functions, `SET STATEMENT ... FOR`
//! — leaves the session exactly as a direct connection does: each case runs
//! on a fresh connection through rwsplit and on one to the primary, and a
//! read that rwsplit would send to a replica reads the state back from both.

mod common;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Value};
use rwsplit::sandbox::APP;

/// How a case changes the session.
enum Step {
    /// Text statements, one COM_QUERY each.
    Text(&'static str),
    /// A statement prepared with COM_STMT_PREPARE and executed with one
    /// parameter.
    Prepared(&'static str, &'static str),
}

use Step::{Prepared, Text};

/// (what changes the session, the read that shows it)
fn corpus() -> Vec<(Vec<Step>, &'static str)> {
    const TIME: &str = "SELECT @@time_zone, CAST(ts AS CHAR) FROM t WHERE id = 1";
    const MODE: &str = "SELECT @@sql_mode";
    vec![
        // Executable comments, MariaDB's and MySQL's.
        (vec![Text("/*M!100000 SET @v = 1 */")], "SELECT @v"),
        (vec![Text("/*!40101 SET @v = 2 */")], "SELECT @v"),
        (
            vec![Text("/*!40101 SET NAMES latin1 */")],
            "SELECT @@character_set_client, @@character_set_results",
        ),
        (vec![Text("/*!40103 SET TIME_ZONE = '+00:00' */")], TIME),
        (
            vec![Text("/*M!100100 SET SESSION sql_mode = 'ANSI_QUOTES' */")],
            MODE,
        ),
        (
            vec![Text("/*!50003 SET @saved = @@sql_mode */")],
            "SELECT @saved",
        ),
        (
            vec![Text(
                "/*M!999999\\- enable the sandbox mode */ \n\
                 /*!40101 SET @OLD_CHARACTER_SET_CLIENT = @@CHARACTER_SET_CLIENT */",
            )],
            "SELECT @OLD_CHARACTER_SET_CLIENT",
        ),
        (
            vec![Text(
                "/*!40014 SET @OLD_UNIQUE_CHECKS = @@UNIQUE_CHECKS, UNIQUE_CHECKS = 0 */",
            )],
            "SELECT @OLD_UNIQUE_CHECKS, @@unique_checks",
        ),
        (vec![Text("SET @a = 1 /*!, @b = 2 */")], "SELECT @a, @b"),
        (
            vec![Text("/*!40101 SET autocommit = 0 */")],
            "SELECT @@autocommit",
        ),
        (vec![Text("/*!32312 USE statechg2 */")], "SELECT DATABASE()"),
        // Procedures: OUT and INOUT parameters, and what they set inside.
        (vec![Text("CALL p_out(21, @b, @c)")], "SELECT @b, @c"),
        (
            vec![Text("SET @x = 3"), Text("CALL p_inout(@x)")],
            "SELECT @x",
        ),
        (vec![Text("CALL p_set_var()")], "SELECT @from_proc"),
        (vec![Text("CALL p_set_tz()")], TIME),
        (vec![Text("CALL p_mode()")], MODE),
        (vec![Text("CALL p_temp()")], "SELECT COUNT(*) FROM tmp_p"),
        // SELECT ... INTO and assignments inside queries.
        (vec![Text("SELECT 1 INTO @x")], "SELECT @x"),
        (
            vec![Text("SELECT v INTO @a FROM t WHERE id = 1")],
            "SELECT @a",
        ),
        (
            vec![Text("SELECT id, v INTO @i, @w FROM t ORDER BY id LIMIT 1")],
            "SELECT @i, @w",
        ),
        (
            vec![Text("SELECT v FROM t WHERE id = 2 INTO @tail")],
            "SELECT @tail",
        ),
        (
            vec![Text("WITH c AS (SELECT 5 AS n) SELECT n INTO @cte FROM c")],
            "SELECT @cte",
        ),
        (vec![Text("SELECT @y := 5")], "SELECT @y"),
        (
            vec![Text("SELECT @r := v FROM t WHERE id = 1")],
            "SELECT @r",
        ),
        (vec![Text("DO @d := 6")], "SELECT @d"),
        (
            vec![Text("UPDATE t SET v = (@u := v) WHERE id = 3")],
            "SELECT @u",
        ),
        (
            vec![Text("INSERT INTO log (v) VALUES (@ins := 9)")],
            "SELECT @ins",
        ),
        // Prepared SETs, text and binary.
        (
            vec![Text("PREPARE s FROM 'SET @p = 11'"), Text("EXECUTE s")],
            "SELECT @p",
        ),
        (
            vec![
                Text("PREPARE s FROM 'SET time_zone = ?'"),
                Text("SET @tz = '+02:00'"),
                Text("EXECUTE s USING @tz"),
            ],
            TIME,
        ),
        (vec![Prepared("SET @bp = ?", "5")], "SELECT @bp"),
        (
            vec![Prepared("SET SESSION sql_mode = ?", "NO_ZERO_DATE")],
            MODE,
        ),
        (
            vec![Prepared("CALL p_out(?, @b, @c)", "4")],
            "SELECT @b, @c",
        ),
        (vec![Prepared("SELECT ? INTO @bi", "6")], "SELECT @bi"),
        (
            vec![
                Text("SET @sqltext = 'SET @q = 12'"),
                Text("PREPARE s FROM @sqltext"),
                Text("EXECUTE s"),
            ],
            "SELECT @q",
        ),
        // SET STATEMENT ... FOR changes nothing after its statement.
        (vec![Text("SET STATEMENT sql_mode = '' FOR SELECT 1")], MODE),
        (
            vec![Text(
                "SET STATEMENT time_zone = '+06:00' FOR SELECT @st := 1",
            )],
            "SELECT @st, @@time_zone",
        ),
        (
            vec![Text(
                "SET STATEMENT max_statement_time = 100 FOR UPDATE t SET v = v WHERE id = 1",
            )],
            "SELECT @@max_statement_time",
        ),
        // EXECUTE IMMEDIATE.
        (vec![Text("EXECUTE IMMEDIATE 'SET @ei = 13'")], "SELECT @ei"),
        (
            vec![Text("EXECUTE IMMEDIATE 'SET time_zone = \"+07:00\"'")],
            TIME,
        ),
        (
            vec![Text("EXECUTE IMMEDIATE CONCAT('SET @c', 'c = 14')")],
            "SELECT @cc",
        ),
        (
            vec![Text("EXECUTE IMMEDIATE 'SELECT 15 INTO @eii'")],
            "SELECT @eii",
        ),
        (
            vec![Text(
                "EXECUTE IMMEDIATE 'CREATE TEMPORARY TABLE tmp_ei (a INT)'",
            )],
            "SELECT COUNT(*) FROM tmp_ei",
        ),
        (
            vec![Text("EXECUTE IMMEDIATE 'USE statechg2'")],
            "SELECT DATABASE()",
        ),
        (
            vec![Text("EXECUTE IMMEDIATE 'SET @x1 = ?' USING 17")],
            "SELECT @x1",
        ),
        // Stored functions that assign user variables.
        (vec![Text("SELECT f_var()")], "SELECT @from_func"),
        (
            vec![Text("SELECT f_var() FROM t LIMIT 1")],
            "SELECT @from_func",
        ),
        (
            vec![Text("INSERT INTO log (v) VALUES (f_var())")],
            "SELECT @from_func",
        ),
        // Anonymous compound statements.
        (
            vec![Text("BEGIN NOT ATOMIC SET @bna = 18; END")],
            "SELECT @bna",
        ),
        (
            vec![Text("BEGIN NOT ATOMIC SET time_zone = '+08:00'; END")],
            TIME,
        ),
        // SETs in the forms a keyword scan could miss.
        (vec![Text("set @lower = 19")], "SELECT @lower"),
        (vec![Text("/* lead */ SET @lead = 20")], "SELECT @lead"),
        (vec![Text("-- line\nSET @line = 21")], "SELECT @line"),
        (vec![Text("# hash\nSET @hash = 22")], "SELECT @hash"),
        (vec![Text("SET @`odd name` = 23")], "SELECT @`odd name`"),
        (vec![Text("SET @'quoted' = 24")], "SELECT @'quoted'"),
        (vec![Text("SET @v := 25")], "SELECT @v"),
        (vec![Text("SET @@session.time_zone = '+09:00'")], TIME),
        (vec![Text("SET LOCAL time_zone = '+10:00'")], TIME),
        (
            vec![Text(
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            )],
            "SELECT @@tx_isolation",
        ),
        (
            vec![Text("SET CHARACTER SET latin1")],
            "SELECT @@character_set_client, @@character_set_results",
        ),
        (
            vec![Text("SET NAMES utf8mb4 COLLATE utf8mb4_bin")],
            "SELECT @@collation_connection",
        ),
        (vec![Text("SET @m = (SELECT MAX(v) FROM t)")], "SELECT @m"),
        (
            vec![Text("SET @uuid_length = LENGTH(UUID())")],
            "SELECT @uuid_length",
        ),
        (
            vec![Text("SET ROLE statechg_role")],
            "SELECT CURRENT_ROLE()",
        ),
        (
            vec![Text("EXECUTE IMMEDIATE 'SET ROLE statechg_role'")],
            "SELECT CURRENT_ROLE()",
        ),
        (vec![Text("SET autocommit = 0")], "SELECT @@autocommit"),
        (vec![Text("USE statechg2")], "SELECT DATABASE()"),
        // Several statements in one packet.
        (vec![Text("SET @m1 = 1; SET @m2 = 2")], "SELECT @m1, @m2"),
        (vec![Text("SELECT 1; SET @m3 = 3")], "SELECT @m3"),
        (vec![Text("SET @m4 = 4; SET time_zone = '+11:00'")], TIME),
    ]
}

/// The rows `sql` returns, or its error code.
async fn read(conn: &mut Conn, sql: &str) -> Result<Vec<Vec<Value>>, u16> {
    match conn.query::<mysql_async::Row, _>(sql).await {
        Ok(rows) => Ok(rows.into_iter().map(mysql_async::Row::unwrap).collect()),
        Err(mysql_async::Error::Server(e)) => Err(e.code),
        Err(e) => panic!("{sql}: {e}"),
    }
}

async fn run(conn: &mut Conn, step: &Step) {
    match step {
        Text(sql) => {
            // Every result of every statement is read (a multi-statement
            // packet, a procedure's).
            let mut result = conn
                .query_iter(*sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            while !result.is_empty() {
                result
                    .collect::<mysql_async::Row>()
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
        Prepared(sql, value) => conn
            .exec_drop(*sql, (*value,))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    }
}

fn with_db(opts: Opts) -> Opts {
    OptsBuilder::from_opts(opts)
        .db_name(Some("statechg"))
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changed_in_any_form_reads_back_as_on_a_direct_connection() {
    let sandbox = common::shared_sandbox();
    let mut admin = sandbox.servers()[0].admin().await.unwrap();
    for sql in [
        "CREATE DATABASE IF NOT EXISTS statechg",
        "CREATE DATABASE IF NOT EXISTS statechg2",
        "CREATE TABLE IF NOT EXISTS statechg.t (id INT PRIMARY KEY, v INT, \
         ts TIMESTAMP NOT NULL DEFAULT '2026-01-01 12:00:00')",
        "INSERT IGNORE INTO statechg.t (id, v) VALUES (1, 10), (2, 20), (3, 30)",
        "CREATE TABLE IF NOT EXISTS statechg.log (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
        "CREATE OR REPLACE PROCEDURE statechg.p_out(IN a INT, OUT b INT, OUT c INT) \
         SET b = a * 2, c = a + 1",
        "CREATE OR REPLACE PROCEDURE statechg.p_inout(INOUT x INT) SET x = x * 10",
        "CREATE OR REPLACE PROCEDURE statechg.p_set_var() SET @from_proc = 42",
        "CREATE OR REPLACE PROCEDURE statechg.p_set_tz() SET time_zone = '+03:00'",
        "CREATE OR REPLACE PROCEDURE statechg.p_mode() SET sql_mode = 'ANSI_QUOTES'",
        "CREATE OR REPLACE PROCEDURE statechg.p_temp() \
         CREATE TEMPORARY TABLE tmp_p AS SELECT 1 AS a",
        "CREATE OR REPLACE FUNCTION statechg.f_var() RETURNS INT NO SQL \
         BEGIN SET @from_func = 7; RETURN 1; END",
        "CREATE ROLE IF NOT EXISTS statechg_role",
        "GRANT SELECT ON statechg.* TO statechg_role",
        "GRANT statechg_role TO app",
    ] {
        admin
            .query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    sandbox.sync_replicas().await.unwrap();
    let proxy = common::start_proxy(common::proxy_config(&sandbox));
    let direct = with_db(sandbox.primary().opts(&APP));
    let through = with_db(proxy.opts());
    let cases = corpus();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut differences = Vec::new();
    for (steps, check) in &cases {
        let mut answers = Vec::new();
        for opts in [&direct, &through] {
            let mut conn = Conn::new(opts.clone()).await.unwrap();
            for step in steps {
                run(&mut conn, step).await;
            }
            answers.push(read(&mut conn, check).await);
            conn.disconnect().await.unwrap();
        }
        if answers[0] != answers[1] {
            let steps: Vec<&str> = steps
                .iter()
                .map(|s| match s {
                    Text(sql) | Prepared(sql, _) => *sql,
                })
                .collect();
            differences.push(format!(
                "{steps:?} then {check}: directly {:?}, through rwsplit {:?}",
                answers[0], answers[1]
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
