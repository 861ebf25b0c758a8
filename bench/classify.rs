//! Cost of classifying and routing one statement, in nanoseconds: the
//! statements sysbench sends, and a mixed corpus of everything else.
//!
//!     cargo bench --bench classify            # a table
//!     cargo bench --bench classify -- --json  # one JSON object, for bench/run
//!
//! Each corpus is classified in a loop for a fixed number of rounds; the
//! median of several runs is reported, so that a noisy machine shows up as
//! spread rather than as a wrong number.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rwsplit::config::{ReplicaSelection, Role};
use rwsplit::routing::{ReadPolicy, SessionView, route};
use rwsplit::sql::classify;
use rwsplit::topology::{BackendState, Topology};

/// What sysbench's OLTP scripts send with --db-ps-mode=disable.
const SYSBENCH: &[&str] = &[
    "SELECT c FROM sbtest1 WHERE id=5012",
    "SELECT c FROM sbtest1 WHERE id BETWEEN 4000 AND 4099",
    "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 4000 AND 4099",
    "SELECT c FROM sbtest1 WHERE id BETWEEN 4000 AND 4099 ORDER BY c",
    "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 4000 AND 4099 ORDER BY c",
    "UPDATE sbtest1 SET k=k+1 WHERE id=5012",
    "UPDATE sbtest1 SET c='37813165378-45716318476-43580012683-39546291713-44580434325' WHERE id=5012",
    "DELETE FROM sbtest1 WHERE id=5012",
    "INSERT INTO sbtest1 (id, k, c, pad) VALUES (5012, 4980, '08566691963-88624912351-16662227201', '63188288836-92351140030')",
    "BEGIN",
    "COMMIT",
];

/// Statements of every kind, including those that go to sqlparser.
const MIXED: &[&str] = &[
    "SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created > NOW() - INTERVAL 1 DAY ORDER BY o.id DESC LIMIT 50",
    "SELECT COUNT(*), AVG(price), MAX(updated_at) FROM items WHERE category IN (1, 2, 3) GROUP BY category HAVING COUNT(*) > 10",
    "SELECT JSON_EXTRACT(doc, '$.name') FROM documents WHERE id = 42",
    "SELECT * FROM accounts WHERE id = 7 FOR UPDATE",
    "SELECT SQL_CALC_FOUND_ROWS * FROM posts LIMIT 10",
    "SELECT FOUND_ROWS()",
    "SELECT @@warning_count",
    "SHOW WARNINGS",
    "SHOW TABLES",
    "DESCRIBE items",
    "EXPLAIN SELECT * FROM items WHERE id = 1",
    "WITH recent AS (SELECT * FROM orders WHERE created > '2024-01-01') SELECT COUNT(*) FROM recent",
    "SET NAMES utf8mb4",
    "SET @page = 3",
    "SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_DATE'",
    "SET autocommit = 0",
    "USE shop",
    "START TRANSACTION READ ONLY",
    "/* rwsplit:primary */ SELECT balance FROM accounts WHERE id = 1",
    "/* app: list */ SELECT id, name FROM users WHERE email = 'a@example.com'",
    "INSERT INTO events (kind, at) VALUES ('login', NOW())",
    "CREATE TEMPORARY TABLE tmp_ids (id INT PRIMARY KEY)",
    "SELECT GET_LOCK('job', 10)",
    "CALL refresh_stats()",
];

const ROUNDS: u32 = 20_000;
const RUNS: usize = 7;

/// Median nanoseconds per statement of `work` over `corpus`.
fn measure(corpus: &[&str], work: impl Fn(&str)) -> f64 {
    let mut runs: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ROUNDS {
                for statement in corpus {
                    work(black_box(statement));
                }
            }
            start.elapsed()
        })
        .collect();
    runs.sort();
    runs[RUNS / 2].as_nanos() as f64 / f64::from(ROUNDS) / corpus.len() as f64
}

fn topology() -> Topology {
    Topology {
        primary: Some(0),
        backends: vec![
            BackendState::in_service(Role::Primary),
            BackendState::in_service(Role::Replica),
            BackendState::in_service(Role::Replica),
        ],
        alarm: None,
    }
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let topology = topology();
    let classify_and_route = |statement: &str| {
        let classified = classify(statement);
        let reads = ReadPolicy {
            selection: ReplicaSelection::RoundRobin,
            primary_serves_reads: false,
            load: &|_| 0,
            turn: statement.len() as u64,
            avoid: 0,
            sticky: None,
        };
        black_box(route(
            &classified.kind,
            classified.hint,
            &SessionView::default(),
            &topology,
            &reads,
        ));
    };
    let results = [
        (
            "sysbench",
            "classify",
            measure(SYSBENCH, |s| drop(black_box(classify(s)))),
        ),
        (
            "sysbench",
            "classify+route",
            measure(SYSBENCH, classify_and_route),
        ),
        (
            "mixed",
            "classify",
            measure(MIXED, |s| drop(black_box(classify(s)))),
        ),
        (
            "mixed",
            "classify+route",
            measure(MIXED, classify_and_route),
        ),
        (
            "point select",
            "classify",
            measure(&SYSBENCH[..1], |s| drop(black_box(classify(s)))),
        ),
    ];
    if json {
        let rows: Vec<String> = results
            .iter()
            .map(|(corpus, what, ns)| {
                format!(
                    "{{\"corpus\":\"{corpus}\",\"what\":\"{what}\",\"ns_per_statement\":{ns:.1}}}"
                )
            })
            .collect();
        println!("[{}]", rows.join(","));
    } else {
        println!("{:<14} {:<16} {:>12}", "corpus", "work", "ns/statement");
        for (corpus, what, ns) in results {
            println!("{corpus:<14} {what:<16} {ns:>12.1}");
        }
    }
}
