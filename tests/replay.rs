//! Transaction replay (`routing.transaction_replay`) against real servers:
//! a client's transaction open while its primary is switched over, fenced
//! or killed goes on and commits on the new primary, or, when it cannot be
//! replayed faithfully, is refused. What the tests check is read from the
//! servers themselves: the rows each holds and which server wrote them.

mod common;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use rwsplit::config::Config;
use rwsplit::sandbox::{Sandbox, SandboxOptions};

use common::{TestProxy, admin, ask, caught_up, metrics, start_watched};

/// Held for the whole of each test: each starts servers of its own and
/// times the monitor.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Servers of the test's own, a table `app.t`, and an rwsplit replaying
/// transactions (statements wait up to 10 s for a new primary).
async fn setup() -> (Sandbox, TestProxy) {
    setup_with(|_| {}).await
}

/// [`setup`], with more of rwsplit's configuration changed by `tweak`.
async fn setup_with(tweak: impl FnOnce(&mut Config)) -> (Sandbox, TestProxy) {
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start_watched(&sandbox, |config| {
        config.routing.transaction_replay = true;
        config.routing.wait_for_primary = Duration::from_secs(10);
        tweak(config);
    });
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, writer INT NOT NULL)",
    )
    .await
    .unwrap();
    (sandbox, proxy)
}

/// A client of `proxy` in a transaction on the primary that inserted row 1.
async fn open_transaction(proxy: &TestProxy) -> Conn {
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop(insert(1)).await.unwrap();
    conn
}

fn insert(id: u32) -> String {
    format!("INSERT INTO app.t (id, writer) VALUES ({id}, @@server_id)")
}

/// `(id, writer)` of every row in app.t on server `index`.
async fn rows(sandbox: &Sandbox, index: usize) -> Vec<(u32, u32)> {
    admin(sandbox, index)
        .await
        .query("SELECT id, writer FROM app.t ORDER BY id")
        .await
        .unwrap()
}

/// Makes server `index`, a replica, the primary by hand (as an operator or
/// another tool would), once it has everything `old` logged.
async fn promote_by_hand(sandbox: &Sandbox, old: usize, index: usize) {
    caught_up(sandbox, old, index).await;
    admin(sandbox, index)
        .await
        .query_drop("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
        .await
        .unwrap();
}

fn replays(metrics: &str, result: &str) -> u32 {
    let line = format!("rwsplit_transaction_replays_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no {line} in\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_transaction_open_across_a_switchover_commits_on_the_new_primary() {
    let _serial = one_at_a_time().await;
    let (sandbox, proxy) = setup().await;
    // Another rwsplit over the same servers, without replay: what a
    // transaction met before.
    let plain = start_watched(&sandbox, |_| {});

    let mut replayed = Conn::new(proxy.opts()).await.unwrap();
    replayed.query_drop("START TRANSACTION").await.unwrap();
    replayed.query_drop(insert(1)).await.unwrap();
    let seen: Vec<Row> = replayed
        .query("SELECT id FROM app.t WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    let mut not_replayed = Conn::new(plain.opts()).await.unwrap();
    not_replayed.query_drop("BEGIN").await.unwrap();
    not_replayed.query_drop(insert(100)).await.unwrap();

    let lines = ask(&proxy, "/switchover?to=db2").await.unwrap();
    assert!(lines.last().unwrap().starts_with("done:"), "{lines:?}");

    // The transaction moved: its statements ran again on db2 (server id
    // 2), answered as they had on db1, and it goes on there.
    replayed.query_drop(insert(2)).await.unwrap();
    let mine: Vec<u32> = replayed.query("SELECT id FROM app.t").await.unwrap();
    assert_eq!(mine, [1, 2]);
    replayed.query_drop("COMMIT").await.unwrap();
    assert_eq!(rows(&sandbox, 1).await, [(1, 2), (2, 2)]);
    caught_up(&sandbox, 1, 0).await;
    assert_eq!(rows(&sandbox, 0).await, [(1, 2), (2, 2)], "db1 follows db2");
    assert_eq!(replays(&metrics(&proxy).await, "done"), 1);

    // Without replay, the transaction stayed on db1, now read-only.
    let refused = not_replayed.query_drop(insert(101)).await.unwrap_err();
    assert!(refused.to_string().contains("1290"), "{refused}");
    not_replayed.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(replays(&metrics(&plain).await, "done"), 0);
}

#[tokio::test]
async fn a_statement_refused_by_a_fenced_primary_is_replayed_on_the_next_one() {
    let _serial = one_at_a_time().await;
    let (sandbox, proxy) = setup().await;
    let mut conn = open_transaction(&proxy).await;

    // db1 is fenced behind this rwsplit's back (another rwsplit's
    // switchover, an operator): it refuses the next insert with ERR 1290,
    // which the client does not see; the statement waits for the monitor
    // to publish a new primary, then runs there after the transaction.
    admin(&sandbox, 0)
        .await
        .query_drop("SET GLOBAL read_only = 1")
        .await
        .unwrap();
    let next = tokio::spawn(async move {
        let result = conn.query_drop(insert(2)).await;
        (conn, result)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!next.is_finished(), "the insert waits for a new primary");
    promote_by_hand(&sandbox, 0, 1).await;
    let (mut conn, result) = next.await.unwrap();
    result.unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!(rows(&sandbox, 1).await, [(1, 2), (2, 2)]);
    assert_eq!(rows(&sandbox, 0).await, [], "nothing committed on db1");
    assert_eq!(replays(&metrics(&proxy).await, "done"), 1);
}

#[tokio::test]
async fn a_transaction_whose_primary_is_killed_commits_on_the_promoted_replica() {
    let _serial = one_at_a_time().await;
    let (sandbox, proxy) = setup_with(|config| config.failover.auto = true).await;
    caught_up(&sandbox, 0, 1).await;
    caught_up(&sandbox, 0, 2).await;
    let mut conn = open_transaction(&proxy).await;

    sandbox.servers()[0].signal(libc::SIGKILL).unwrap();
    // The next insert finds db1's connection gone before it answered: it
    // cannot have committed anything, so the transaction waits for the
    // failover and is replayed on the promoted replica.
    conn.query_drop(insert(2)).await.unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    let new = proxy.proxy.topology.primary().unwrap();
    assert!(new == 1 || new == 2, "{new}");
    let writer = new as u32 + 1;
    assert_eq!(rows(&sandbox, new).await, [(1, writer), (2, writer)]);
}

#[tokio::test]
async fn a_commit_whose_primary_is_lost_is_not_replayed() {
    let _serial = one_at_a_time().await;
    let (sandbox, proxy) = setup().await;
    let mut conn = open_transaction(&proxy).await;
    sandbox.servers()[0].signal(libc::SIGKILL).unwrap();
    // Whether a COMMIT whose answer was lost took effect is unknown: the
    // client is told the connection was lost, as with a direct one.
    let lost = conn.query_drop("COMMIT").await.unwrap_err();
    assert!(lost.to_string().contains("Lost connection"), "{lost}");
    assert_eq!(replays(&metrics(&proxy).await, "done"), 0);
}

#[tokio::test]
async fn a_transaction_that_answers_differently_on_the_new_primary_is_rolled_back() {
    let _serial = one_at_a_time().await;
    let (sandbox, proxy) = setup().await;
    let mut conn = open_transaction(&proxy).await;
    // What the client saw depends on the server: replayed on db2 it would
    // read 2, not 1.
    let id: Option<u32> = conn.query_first("SELECT @@server_id").await.unwrap();
    assert_eq!(id, Some(1));

    let lines = ask(&proxy, "/switchover?to=db2").await.unwrap();
    assert!(lines.last().unwrap().starts_with("done:"), "{lines:?}");
    let error = conn.query_drop(insert(2)).await.unwrap_err().to_string();
    for part in [
        "2013",
        "db1",
        "db2",
        "statement 3 of 3 answered differently",
        "rolled back",
    ] {
        assert!(error.contains(part), "no `{part}` in {error}");
    }
    assert!(conn.ping().await.is_err(), "the session is closed");
    for index in 0..3 {
        caught_up(&sandbox, 1, index).await;
        assert_eq!(rows(&sandbox, index).await, [], "server {index}");
    }
    let metrics = metrics(&proxy).await;
    assert_eq!(replays(&metrics, "done"), 0);
    assert_eq!(replays(&metrics, "failed"), 1);
}

#[tokio::test]
async fn a_transaction_with_prepared_statements_stays_where_it_is() {
    let _serial = one_at_a_time().await;
    let (sandbox, proxy) = setup().await;
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    // A binary-protocol statement: not replayed (docs/failover.md).
    conn.exec_drop(
        "INSERT INTO app.t (id, writer) VALUES (?, @@server_id)",
        (1,),
    )
    .await
    .unwrap();
    let lines = ask(&proxy, "/switchover?to=db2").await.unwrap();
    assert!(lines.last().unwrap().starts_with("done:"), "{lines:?}");
    let refused = conn.query_drop(insert(2)).await.unwrap_err();
    assert!(refused.to_string().contains("1290"), "{refused}");
    conn.query_drop("ROLLBACK").await.unwrap();
    // The session goes on, on the new primary.
    conn.query_drop(insert(3)).await.unwrap();
    assert_eq!(rows(&sandbox, 1).await, [(3, 2)]);
    assert_eq!(replays(&metrics(&proxy).await, "done"), 0);
}

#[tokio::test]
async fn a_transaction_rolled_back_by_a_deadlock_is_not_replayed() {
    let _serial = one_at_a_time().await;
    let (sandbox, proxy) = setup().await;
    let mut setup = Conn::new(proxy.opts()).await.unwrap();
    setup
        .query_drop("INSERT INTO app.t (id, writer) VALUES (1, 0), (2, 0)")
        .await
        .unwrap();
    let update = |id: u32| format!("UPDATE app.t SET writer = @@server_id WHERE id = {id}");

    // Two transactions lock rows 1 and 2, then each wants the other's.
    let mut first = Conn::new(proxy.opts()).await.unwrap();
    let mut second = Conn::new(proxy.opts()).await.unwrap();
    for (conn, id) in [(&mut first, 1), (&mut second, 2)] {
        conn.query_drop("BEGIN").await.unwrap();
        conn.query_drop(update(id)).await.unwrap();
    }
    let waiting = tokio::spawn(async move {
        let result = first.query_drop(update(2)).await;
        (first, result)
    });
    let mut db1 = admin(&sandbox, 0).await;
    let waits = "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'";
    for tries in 0.. {
        if db1.query_first::<u32, _>(waits).await.unwrap() == Some(1) {
            break;
        }
        assert!(
            tries < 500,
            "the first transaction never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let result = second.query_drop(update(1)).await;
    let (first, first_result) = waiting.await.unwrap();

    // The server rolled one of them back whole (ERR 1213), and says so in
    // no status flags: rwsplit knows it from the error code.
    let (mut victim, mut survivor, error) = match (first_result, result) {
        (Err(error), Ok(())) => (first, second, error),
        (Ok(()), Err(error)) => (second, first, error),
        other => panic!("no single deadlock: {other:?}"),
    };
    assert!(error.to_string().contains("1213"), "{error}");
    survivor.query_drop("COMMIT").await.unwrap();

    let lines = ask(&proxy, "/switchover?to=db2").await.unwrap();
    assert!(lines.last().unwrap().starts_with("done:"), "{lines:?}");
    // The victim has no transaction left to replay: its next statement
    // runs on db2 on its own, as it would on a direct connection.
    victim.query_drop(insert(3)).await.unwrap();
    let on_db2 = rows(&sandbox, 1).await;
    assert_eq!(on_db2.len(), 3, "{on_db2:?}");
    assert_eq!(on_db2[2], (3, 2));
    let metrics = metrics(&proxy).await;
    assert_eq!(replays(&metrics, "done"), 0);
    assert_eq!(replays(&metrics, "failed"), 0);
}

/// A statement that ran slowly the first time (it waited for a lock) and
/// fast on the new primary answers the same: only MariaDB's "slow query"
/// status flag differs, which says how it ran, not what it answered. The
/// transaction is replayed.
#[tokio::test]
async fn a_statement_slow_once_and_fast_on_replay_replays() {
    let _serial = one_at_a_time().await;
    let (sandbox, proxy) = setup().await;
    for index in 0..3 {
        admin(&sandbox, index)
            .await
            .query_drop("SET GLOBAL long_query_time = 0.2")
            .await
            .unwrap();
    }
    let mut setup_conn = Conn::new(proxy.opts()).await.unwrap();
    setup_conn.query_drop(insert(5)).await.unwrap();
    caught_up(&sandbox, 0, 1).await;
    // Row 5 locked on the primary for half a second.
    let mut holder = admin(&sandbox, 0).await;
    holder.query_drop("BEGIN").await.unwrap();
    holder
        .query_drop("SELECT * FROM app.t WHERE id = 5 FOR UPDATE")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        holder.query_drop("COMMIT").await.unwrap();
    });
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("UPDATE app.t SET writer = 50 WHERE id = 5")
        .await
        .unwrap();
    release.await.unwrap();

    let lines = ask(&proxy, "/switchover?to=db2").await.unwrap();
    assert!(lines.last().unwrap().starts_with("done:"), "{lines:?}");
    conn.query_drop(insert(6)).await.unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!(rows(&sandbox, 1).await, [(5, 50), (6, 2)]);
    assert_eq!(replays(&metrics(&proxy).await, "done"), 1);
}
