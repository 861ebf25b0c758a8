//! The classification table: statements and what they are for routing.
//! docs/routing.md states the rules these rows exercise.

use super::*;
use crate::sql::Hint;
use proptest::prelude::*;

fn r() -> StatementKind {
    StatementKind::Read
}
fn refused() -> StatementKind {
    StatementKind::Refused(crate::sql::classify::KILL_FORMS)
}

fn w() -> StatementKind {
    StatementKind::Write
}
fn prev() -> StatementKind {
    StatementKind::PreviousResult
}
fn vars() -> StatementKind {
    StatementKind::SessionState(SessionChange::Variables)
}
fn pin() -> StatementKind {
    StatementKind::PinsToPrimary
}
fn db(name: &str) -> StatementKind {
    StatementKind::SessionState(SessionChange::Database(name.into()))
}
fn prep(name: &str, reads: bool) -> StatementKind {
    StatementKind::SessionState(SessionChange::Prepare {
        name: name.into(),
        reads,
    })
}
fn dealloc(name: &str) -> StatementKind {
    StatementKind::SessionState(SessionChange::Deallocate(name.into()))
}
fn begin(read_only: bool) -> StatementKind {
    StatementKind::Begin { read_only }
}
fn trx() -> StatementKind {
    StatementKind::Transaction
}
fn temp(name: &str) -> StatementKind {
    StatementKind::CreateTemporaryTable(name.into())
}
fn dropped(names: &[&str]) -> StatementKind {
    StatementKind::DropTables(names.iter().map(|n| n.to_string()).collect())
}
fn exec(name: &str) -> StatementKind {
    StatementKind::ExecutePrepared(name.into())
}

#[test]
fn the_classification_table() {
    let table: Vec<(&str, StatementKind)> = vec![
        // Plain reads, as applications and sysbench send them.
        ("SELECT 1", r()),
        ("select c from sbtest1 where id=5012", r()),
        ("SELECT c FROM sbtest1 WHERE id BETWEEN 1 AND 100", r()),
        ("SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 1 AND 100", r()),
        (
            "SELECT c FROM sbtest1 WHERE id BETWEEN 1 AND 100 ORDER BY c",
            r(),
        ),
        (
            "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 1 AND 100 ORDER BY c",
            r(),
        ),
        ("SELECT * FROM t", r()),
        ("  \n\tSELECT * FROM t", r()),
        ("SELECT * FROM t;", r()),
        ("SELECT * FROM t ; ", r()),
        ("SeLeCt * FrOm t", r()),
        (
            "SELECT a, b FROM t1 JOIN t2 ON t1.id = t2.id WHERE t1.x > 5",
            r(),
        ),
        ("SELECT * FROM t WHERE a IN (SELECT b FROM u)", r()),
        (
            "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a)",
            r(),
        ),
        (
            "SELECT COUNT(*), MAX(id), MIN(id), AVG(price) FROM orders",
            r(),
        ),
        ("SELECT CONCAT(first, ' ', last) AS name FROM people", r()),
        (
            "SELECT IFNULL(a, 0), COALESCE(b, c, 0), IF(x > 1, 'y', 'n') FROM t",
            r(),
        ),
        ("SELECT NOW(), CURDATE(), UNIX_TIMESTAMP()", r()),
        (
            "SELECT DATE_FORMAT(created, '%Y-%m') FROM t GROUP BY 1",
            r(),
        ),
        (
            "SELECT CAST(a AS DECIMAL(10, 2)), CONVERT(b, CHAR(20)) FROM t",
            r(),
        ),
        ("SELECT CAST('2024-01-01' AS DATETIME(6))", r()),
        (
            "SELECT JSON_EXTRACT(doc, '$.a'), JSON_UNQUOTE(JSON_EXTRACT(doc, '$.b')) FROM docs",
            r(),
        ),
        ("SELECT ST_AsText(geom), ST_Distance(a, b) FROM places", r()),
        (
            "SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t",
            r(),
        ),
        (
            "SELECT a, RANK() OVER w FROM t WINDOW w AS (ORDER BY a)",
            r(),
        ),
        (
            "SELECT * FROM t WHERE MATCH(body) AGAINST ('rust' IN BOOLEAN MODE)",
            r(),
        ),
        ("SELECT * FROM t LIMIT 10 OFFSET 20", r()),
        ("SELECT * FROM t FORCE INDEX (idx_a) WHERE a = 1", r()),
        ("SELECT * FROM t USE INDEX (idx_a)", r()),
        ("SELECT SQL_NO_CACHE * FROM t", r()),
        ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1", r()),
        ("SELECT 'FOR UPDATE' FROM t", r()),
        ("SELECT \"INTO @x\" FROM t", r()),
        ("SELECT `for`, `into` FROM t", r()),
        ("SELECT * FROM t -- FOR UPDATE\n", r()),
        ("SELECT * FROM t # INTO @x", r()),
        ("SELECT /* GET_LOCK('a', 1) */ 1", r()),
        (
            "SELECT * FROM t WHERE note = 'it''s; INSERT INTO x VALUES (1)'",
            r(),
        ),
        (
            "SELECT * FROM t WHERE note = 'a\\'; DELETE FROM t; -- '",
            r(),
        ),
        ("/* leading */ SELECT 1", r()),
        ("-- a comment\nSELECT 1", r()),
        ("# a hash comment\nSELECT 1", r()),
        ("SELECT/*inline*/1", r()),
        ("(SELECT a FROM t1) UNION (SELECT a FROM t2)", r()),
        ("SELECT a FROM t1 UNION ALL SELECT a FROM t2", r()),
        ("SELECT a FROM t1 EXCEPT SELECT a FROM t2", r()),
        ("SELECT a FROM t1 INTERSECT SELECT a FROM t2", r()),
        ("VALUES (1, 2), (3, 4)", r()),
        ("TABLE t", r()),
        ("SELECT @@server_id, @@hostname, @@version", r()),
        ("SELECT @@session.sql_mode, @@global.read_only", r()),
        // Reads of user variables (see `sql::reads_user_variable`).
        ("SELECT @user_variable", r()),
        ("SELECT @a + @b AS total", r()),
        ("SELECT seq FROM seq_1_to_10", r()),
        (
            "SELECT * FROM information_schema.tables WHERE table_schema = 'x'",
            r(),
        ),
        ("SELECT UUID(), RAND(), SLEEP(0)", r()),
        ("SELECT DATABASE(), USER(), CURRENT_USER(), VERSION()", r()),
        ("SELECT HEX(a), UNHEX('FF'), MD5('x'), SHA2('x', 256)", r()),
        (
            "SELECT GROUP_CONCAT(name ORDER BY name SEPARATOR ', ') FROM t",
            r(),
        ),
        ("SELECT INET6_NTOA(ip), INET_ATON('10.0.0.1')", r()),
        ("SELECT x FROM t WHERE d > NOW() - INTERVAL 1 DAY", r()),
        ("SELECT INTERVAL(5, 1, 10, 100)", r()),
        ("SELECT CASE WHEN a THEN (b) ELSE (c) END FROM t", r()),
        ("SELECT REGEXP_REPLACE(s, '[0-9]', '') FROM t", r()),
        ("SELECT * FROM t PARTITION (p1)", r()),
        ("SELECT * FROM t AS OF TIMESTAMP '2024-01-01 00:00:00'", r()),
        ("SELECT COLUMN_GET(dyn, 'color' AS CHAR) FROM items", r()),
        ("SELECT JSON_TABLE_IS_NOT_A_PREFIX_MATCH FROM t", r()),
        ("HELP 'SELECT'", r()),
        // Describing and explaining reads.
        ("DESCRIBE t", r()),
        ("DESC t", r()),
        ("desc `my table`", r()),
        ("DESCRIBE t col", r()),
        ("EXPLAIN t", r()),
        ("EXPLAIN SELECT * FROM t WHERE a = 1", r()),
        ("EXPLAIN EXTENDED SELECT * FROM t", r()),
        ("EXPLAIN PARTITIONS SELECT * FROM t", r()),
        ("EXPLAIN FORMAT=JSON SELECT * FROM t", r()),
        ("EXPLAIN SELECT * FROM t FOR UPDATE", w()),
        ("EXPLAIN UPDATE t SET a = 1", w()),
        ("EXPLAIN DELETE FROM t", w()),
        ("EXPLAIN INSERT INTO t VALUES (1)", w()),
        ("EXPLAIN FOR CONNECTION 5", w()),
        // SHOW.
        ("SHOW TABLES", r()),
        ("SHOW FULL TABLES FROM db", r()),
        ("SHOW DATABASES", r()),
        ("SHOW COLUMNS FROM t", r()),
        ("SHOW FULL COLUMNS FROM t", r()),
        ("SHOW INDEX FROM t", r()),
        ("SHOW CREATE TABLE t", r()),
        ("SHOW CREATE DATABASE d", r()),
        ("SHOW TABLE STATUS", r()),
        ("SHOW GRANTS", r()),
        ("SHOW COLLATION", r()),
        ("SHOW CHARACTER SET", r()),
        ("SHOW TRIGGERS", r()),
        ("SHOW PROCEDURE STATUS", r()),
        ("show warnings", prev()),
        ("SHOW WARNINGS LIMIT 5", prev()),
        ("SHOW ERRORS", prev()),
        ("SHOW COUNT(*) WARNINGS", prev()),
        ("SHOW MASTER STATUS", w()),
        ("SHOW SLAVE STATUS", w()),
        ("SHOW REPLICA STATUS", w()),
        ("SHOW ALL SLAVES STATUS", w()),
        ("SHOW BINLOG EVENTS", w()),
        ("SHOW BINARY LOGS", w()),
        ("SHOW PROCESSLIST", w()),
        ("SHOW FULL PROCESSLIST", w()),
        ("SHOW STATUS", w()),
        ("SHOW GLOBAL STATUS", w()),
        ("SHOW SESSION STATUS LIKE 'Com_select'", w()),
        ("SHOW VARIABLES LIKE 'read_only'", w()),
        ("SHOW GLOBAL VARIABLES", w()),
        ("SHOW ENGINE INNODB STATUS", w()),
        ("SHOW OPEN TABLES", w()),
        ("SHOW", w()),
        // Reads that need the primary.
        ("SELECT * FROM t FOR UPDATE", w()),
        ("SELECT * FROM t WHERE id = 1 FOR UPDATE NOWAIT", w()),
        ("SELECT * FROM t FOR SHARE", w()),
        ("select * from t for update skip locked", w()),
        ("SELECT * FROM t LOCK IN SHARE MODE", w()),
        ("SELECT * FROM t lock in share mode", w()),
        ("SELECT * FROM t INTO OUTFILE '/tmp/x'", w()),
        ("SELECT * FROM t INTO DUMPFILE '/tmp/x'", w()),
        ("SELECT a INTO @x FROM t", pin()),
        ("SELECT a FROM t INTO @x", pin()),
        ("SELECT a, b INTO @x, @y FROM t LIMIT 1", pin()),
        ("SELECT @rownum := @rownum + 1 FROM t", pin()),
        ("SELECT @x:=1", pin()),
        ("SELECT GET_LOCK('job', 10)", w()),
        ("SELECT RELEASE_LOCK('job')", w()),
        ("SELECT RELEASE_ALL_LOCKS()", w()),
        ("SELECT IS_USED_LOCK('job')", w()),
        ("SELECT IS_FREE_LOCK('job')", w()),
        ("SELECT LAST_INSERT_ID()", w()),
        ("select last_insert_id()", w()),
        ("SELECT @@identity", w()),
        ("SELECT @@last_insert_id", w()),
        ("SELECT NEXT VALUE FOR seq", w()),
        ("SELECT PREVIOUS VALUE FOR seq", w()),
        ("SELECT NEXTVAL(seq)", w()),
        ("SELECT LASTVAL(seq)", w()),
        ("SELECT SETVAL(seq, 10)", w()),
        ("SELECT my_function(a) FROM t", w()),
        ("SELECT mydb.my_function(1)", w()),
        ("SELECT mydb.concat(1)", w()),
        ("SELECT `weird func`(1)", w()),
        ("SELECT LOAD_FILE('/etc/passwd')", w()),
        ("SELECT MASTER_POS_WAIT('bin.1', 4)", w()),
        ("SELECT a FROM t WHERE b = my_udf(c)", w()),
        ("SELECT * FROM t WHERE id = (SELECT LAST_INSERT_ID())", w()),
        ("INSERT INTO t SELECT * FROM u", w()),
        // Describing the previous statement.
        ("SELECT FOUND_ROWS()", prev()),
        ("SELECT found_rows() AS total", prev()),
        ("SELECT ROW_COUNT()", prev()),
        ("SELECT @@warning_count", prev()),
        ("SELECT @@session.warning_count, @@error_count", prev()),
        ("SELECT @@ERROR_COUNT", prev()),
        // Writes and DDL.
        ("INSERT INTO t VALUES (1)", w()),
        ("insert into t (a) values ('x')", w()),
        ("INSERT IGNORE INTO t VALUES (1)", w()),
        (
            "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2",
            w(),
        ),
        ("INSERT INTO t VALUES (1) RETURNING id", w()),
        ("REPLACE INTO t VALUES (1)", w()),
        ("UPDATE t SET a = 1 WHERE id = 2", w()),
        ("UPDATE sbtest1 SET k=k+1 WHERE id=5", w()),
        ("DELETE FROM t WHERE id = 1", w()),
        ("DELETE FROM t RETURNING *", w()),
        ("TRUNCATE TABLE t", w()),
        ("CREATE TABLE t (a INT)", w()),
        ("CREATE OR REPLACE TABLE t (a INT)", w()),
        ("CREATE DATABASE d", w()),
        ("CREATE INDEX i ON t (a)", w()),
        ("CREATE VIEW v AS SELECT 1", w()),
        ("CREATE PROCEDURE p() SELECT 1", w()),
        ("CREATE SEQUENCE s", w()),
        ("ALTER TABLE t ADD COLUMN b INT", w()),
        ("RENAME TABLE a TO b", w()),
        ("DROP DATABASE d", w()),
        ("DROP VIEW v", w()),
        ("DROP INDEX i ON t", w()),
        ("GRANT SELECT ON *.* TO 'u'@'%'", w()),
        ("REVOKE SELECT ON *.* FROM 'u'@'%'", w()),
        ("CREATE USER 'u'@'%'", w()),
        ("LOAD DATA LOCAL INFILE 'x' INTO TABLE t", w()),
        ("LOAD DATA INFILE '/x' INTO TABLE t", w()),
        ("CALL p()", w()),
        ("CALL p(1, @out)", w()),
        ("DO 1", w()),
        ("DO SLEEP(1)", w()),
        ("XA START 'x'", w()),
        ("XA COMMIT 'x'", w()),
        ("HANDLER t OPEN", w()),
        ("ANALYZE TABLE t", w()),
        ("OPTIMIZE TABLE t", w()),
        ("CHECK TABLE t", w()),
        ("CHECKSUM TABLE t", w()),
        ("KILL 5", refused()), // (answered before classification: `sql::kill`)
        ("FLUSH PRIVILEGES", w()),
        ("FLUSH TABLES", w()),
        ("PURGE BINARY LOGS TO 'x'", w()),
        ("CHANGE MASTER TO MASTER_HOST='x'", w()),
        ("START SLAVE", w()),
        ("STOP SLAVE", w()),
        ("INSTALL SONAME 'x'", w()),
        ("BEGIN NOT ATOMIC SELECT 1; END", w()),
        ("WITH c AS (SELECT 1) UPDATE t SET a = 1", w()),
        ("WITH c AS (SELECT 1) DELETE FROM t", w()),
        (
            "WITH RECURSIVE r AS (SELECT 1 UNION SELECT 1) SELECT * FROM r",
            r(),
        ),
        ("WITH c AS (SELECT a FROM t) SELECT * FROM c", r()),
        (
            "WITH c AS (SELECT a FROM t) SELECT * FROM c FOR UPDATE",
            w(),
        ),
        ("WITH c AS (SELECT GET_LOCK('a', 1)) SELECT * FROM c", w()),
        (
            "WITH c AS (SELECT 1) SELECT * FROM c LOCK IN SHARE MODE",
            w(),
        ),
        ("UNKNOWN STATEMENT", w()),
        ("", w()),
        ("   ", w()),
        ("-- only a comment", w()),
        ("/* only a comment */", w()),
        (";", w()),
        ("123", w()),
        ("'a string'", w()),
        // Executable comments run on the server and are read as code.
        ("/*!40101 SET NAMES utf8 */", vars()),
        ("SELECT /*! SQL_NO_CACHE */ 1", r()),
        ("SELECT 1 /*!50000 FOR UPDATE */", w()),
        ("/*M!100100 SELECT GET_LOCK('x', 1) */", w()),
        // Multi-statement packets run on the primary; with session changes
        // the session stays there.
        ("SELECT 1; SELECT 2", w()),
        ("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)", w()),
        ("SELECT 1;\n-- trailing comment", r()),
        ("SET @a = 1; SELECT @a", pin()),
        ("SELECT 1; USE db", pin()),
        ("CREATE TEMPORARY TABLE t (a INT); SELECT 1", pin()),
        ("SELECT 1; BEGIN", pin()),
        ("SELECT ';' ; SELECT 2", w()),
        // Session state.
        ("SET @a = 1", vars()),
        // Executable comments are code (MySQL's and MariaDB's).
        ("/*M!100000 SET @v = 1 */", vars()),
        ("/*!40101 SET NAMES utf8mb4 */", vars()),
        ("/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */", vars()),
        ("/*!40101 SET @a = 1 */ /*!40101 , @b = 2 */", vars()),
        ("SET @a = 1 /*!, @b = SYSDATE() */", pin()),
        // mariadb-dump's first line, which no server runs, then its second.
        (
            "/*M!999999\\- enable the sandbox mode */ \n/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */",
            vars(),
        ),
        ("SET @a = 1, @b = 'x'", vars()),
        ("set @a = -5.5", vars()),
        ("SET @a = @b", vars()),
        ("SET @a = 1 + 2 * @b", vars()),
        ("SET NAMES utf8mb4", vars()),
        ("SET NAMES latin1 COLLATE latin1_swedish_ci", vars()),
        ("SET NAMES DEFAULT", vars()),
        ("SET CHARACTER SET utf8", vars()),
        ("SET CHARSET latin1", vars()),
        ("SET autocommit = 0", vars()),
        ("SET autocommit=1", vars()),
        ("SET autocommit = ON", vars()),
        ("SET SESSION sql_mode = 'ANSI_QUOTES'", vars()),
        ("SET sql_mode = 'STRICT_TRANS_TABLES'", vars()),
        ("SET LOCAL sql_mode = ''", vars()),
        ("SET @@session.sql_mode = 'ANSI'", vars()),
        ("SET @@sql_mode = 'ANSI'", vars()),
        (
            "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')",
            vars(),
        ),
        ("SET time_zone = '+00:00'", vars()),
        (
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            vars(),
        ),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", vars()),
        ("SET TRANSACTION READ ONLY", vars()),
        ("SET ROLE r1", vars()),
        ("SET sql_log_bin = 0", vars()),
        ("SET max_statement_time = 5, net_read_timeout = 60", vars()),
        ("USE db2", db("db2")),
        ("use `my db`", db("my db")),
        ("USE", w()),
        (
            "PREPARE s FROM 'SELECT * FROM t WHERE a = ?'",
            prep("s", true),
        ),
        ("PREPARE s FROM 'UPDATE t SET a = ?'", prep("s", false)),
        (
            "PREPARE s FROM 'SELECT * FROM t FOR UPDATE'",
            prep("s", false),
        ),
        ("PREPARE s FROM \"SELECT 1\"", prep("s", true)),
        ("PREPARE s FROM 'SELECT @v'", prep("s", false)),
        ("PREPARE s FROM 'SELECT ''quoted'''", prep("s", true)),
        ("PREPARE s FROM @sql", prep("s", false)),
        ("PREPARE s FROM CONCAT('SELECT ', 1)", prep("s", false)),
        ("EXECUTE s", exec("s")),
        ("EXECUTE s USING @a, @b", exec("s")),
        ("EXECUTE IMMEDIATE 'SELECT 1'", w()),
        // KILL forms rwsplit does not translate run nowhere.
        ("KILL 12+0", refused()),
        ("/*!KILL 12 */", refused()),
        ("SELECT 1; KILL 12", refused()),
        ("PREPARE s FROM 'KILL 12'", refused()),
        ("EXECUTE IMMEDIATE 'kill query 12'", refused()),
        ("DEALLOCATE PREPARE s", dealloc("s")),
        ("DROP PREPARE s", dealloc("s")),
        // Session changes that cannot be replayed elsewhere.
        ("SET @t = NOW()", pin()),
        ("SET @r = RAND()", pin()),
        ("SET @n = (SELECT COUNT(*) FROM t)", pin()),
        ("SET @f = my_function()", pin()),
        ("SET autocommit = 0, GLOBAL max_connections = 10", pin()),
        ("SET @a := 1, @b = 2", pin()),
        (
            "SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t",
            r(),
        ),
        (
            "SET STATEMENT max_statement_time = 1 FOR UPDATE t SET a = 1",
            w(),
        ),
        // Not session state: the primary only.
        ("SET GLOBAL max_connections = 100", w()),
        ("SET @@global.max_connections = 100", w()),
        ("SET GLOBAL TRANSACTION READ ONLY", w()),
        ("SET PASSWORD = PASSWORD('x')", w()),
        ("SET PASSWORD FOR 'u'@'%' = 'x'", w()),
        ("SET DEFAULT ROLE r1 FOR 'u'@'%'", w()),
        // Transactions.
        ("BEGIN", begin(false)),
        ("begin work", begin(false)),
        ("START TRANSACTION", begin(false)),
        ("START TRANSACTION READ WRITE", begin(false)),
        ("START TRANSACTION READ ONLY", begin(true)),
        ("start transaction read only", begin(true)),
        (
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            begin(true),
        ),
        ("START TRANSACTION WITH CONSISTENT SNAPSHOT", begin(false)),
        ("COMMIT", trx()),
        ("commit work", trx()),
        ("ROLLBACK", trx()),
        ("ROLLBACK TO SAVEPOINT s1", trx()),
        ("SAVEPOINT s1", trx()),
        ("RELEASE SAVEPOINT s1", trx()),
        // Locks.
        ("LOCK TABLES t READ", StatementKind::LockTables),
        ("LOCK TABLE t WRITE, u READ", StatementKind::LockTables),
        ("UNLOCK TABLES", StatementKind::UnlockTables),
        ("unlock table", StatementKind::UnlockTables),
        ("FLUSH TABLES WITH READ LOCK", StatementKind::LockTables),
        ("FLUSH TABLES t1 WITH READ LOCK", StatementKind::LockTables),
        ("LOCK BINLOG", w()),
        // Temporary tables.
        ("CREATE TEMPORARY TABLE tmp (a INT)", temp("tmp")),
        (
            "create temporary table if not exists `Tmp` (a int)",
            temp("Tmp"),
        ),
        (
            "CREATE OR REPLACE TEMPORARY TABLE tmp AS SELECT 1",
            temp("tmp"),
        ),
        ("CREATE TEMPORARY TABLE db.tmp LIKE t", temp("tmp")),
        ("DROP TEMPORARY TABLE tmp", dropped(&["tmp"])),
        (
            "DROP TEMPORARY TABLE IF EXISTS tmp, db.tmp2",
            dropped(&["tmp", "tmp2"]),
        ),
        ("DROP TABLE t1, `t2`", dropped(&["t1", "t2"])),
        ("DROP TABLE IF EXISTS t", dropped(&["t"])),
    ];
    assert!(table.len() >= 200, "only {} rows", table.len());
    for (sql, expected) in table {
        assert_eq!(kind(sql), expected, "classifying {sql:?}");
    }
}

#[test]
fn hints_come_with_the_kind() {
    assert_eq!(
        classify("/* rwsplit:primary */ SELECT 1"),
        Classified {
            kind: StatementKind::Read,
            hint: Some(Hint::Primary)
        }
    );
    assert_eq!(
        classify("/* rwsplit:replica */ SELECT * FROM t FOR UPDATE"),
        Classified {
            kind: StatementKind::Write,
            hint: Some(Hint::Replica)
        }
    );
    assert_eq!(classify("SELECT 1").hint, None);
}

#[test]
fn plain_reads_skip_the_full_scan() {
    for plain in [
        "SELECT c FROM sbtest1 WHERE id=5012",
        "select distinct c from sbtest1 where id between 1 and 100 order by c",
        "SELECT name, 'platform' FROM forums WHERE intonation = 'x' # note",
        "TABLE t",
    ] {
        assert!(plainly_read(plain.as_bytes()), "{plain:?}");
    }
    for full in [
        "SELECT SUM(k) FROM t",
        "SELECT @a",
        "SELECT 1; SELECT 2",
        "SELECT 1 /*!50100 FOR UPDATE */",
        "SELECT * FROM t FOR UPDATE",
        "select * from t lock in share mode",
        "SELECT 1 INTO @x",
        "SELECT next value for s",
        "SELECT 'FOR' FROM t",
    ] {
        assert!(!plainly_read(full.as_bytes()), "{full:?}");
    }
}

#[test]
fn temporary_table_mentions() {
    let tables = vec!["tmp".to_owned(), "Other".to_owned()];
    assert!(crate::sql::mentions_any(b"SELECT * FROM TMP", &tables));
    assert!(crate::sql::mentions_any(b"SELECT * FROM db.tmp", &tables));
    assert!(crate::sql::mentions_any(b"SELECT * FROM `other`", &tables));
    assert!(!crate::sql::mentions_any(b"SELECT * FROM tmp2", &tables));
    assert!(!crate::sql::mentions_any(b"SELECT 'tmp'", &tables));
    assert!(!crate::sql::mentions_any(b"SELECT * FROM tmp", &[]));
}

proptest! {
    #[test]
    fn classification_never_panics(text in "\\PC{0,80}") {
        let _ = classify(&text);
    }

    #[test]
    fn sql_like_text_never_panics(
        words in proptest::collection::vec(
            proptest::sample::select(vec![
                "SELECT", "SET", "FROM", "t", "(", ")", ",", ";", "'x'", "@a", "@@b", ":=", "FOR", "UPDATE",
                "INTO", "WITH", "AS", "PREPARE", "s", "EXECUTE", "DROP", "TEMPORARY", "TABLE", "GLOBAL",
                "1", "/*!", "*/", "--", "\n", "NOW", "CREATE", "USE", "START", "TRANSACTION", "READ", "ONLY",
            ]),
            0..20,
        )
    ) {
        let _ = classify(&words.join(" "));
    }
}

proptest! {
    // Enough cases to meet the rare shapes, such as an executable
    // comment's version number running into a keyword.
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The fast path says a read is plain only where the full token scan
    /// finds a plain read too.
    #[test]
    fn a_plain_read_is_one_for_the_full_scan(
        parts in proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    "FROM", "t", "c", "1", "2.5e3", "(", ")", ",", ";", "=", "'x'", "'FOR UPDATE'", "\"",
                    "`for`", "@a", "@@warning_count", ":=", ":", "FOR", "for", "UPDATE", "SHARE", "LOCK",
                    "IN", "INTO", "NEXT", "PREVIOUS", "VALUE", "INSERT", "REPLACE", "SELECT", "NOW",
                    "GET_LOCK", "/*!50100", "/*M!", "/*", "*/", "--", "#", "\n", "x.f", "WHERE", "é",
                ]),
                proptest::sample::select(vec![" ", "", "\n"]),
            ),
            0..16,
        )
    ) {
        let text: String = std::iter::once("SELECT ")
            .chain(parts.iter().flat_map(|&(part, gap)| [part, gap]))
            .collect();
        if plainly_read(text.as_bytes()) {
            let mut tokens = Lexer::new(&text);
            let scan = scan_read(tokens.next(), tokens);
            prop_assert_eq!(scan.kind, StatementKind::Read, "{:?}", text);
            prop_assert_eq!(scan.more, Some(false), "{:?}", text);
        }
    }
}
