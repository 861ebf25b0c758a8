//! Commands rwsplit answers or translates itself — KILL with the ids it
//! gave out, COM_RESET_CONNECTION, COM_PROCESS_KILL — and backend
//! connection reuse that never carries one client's state to another.

mod common;

use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use rwsplit::protocol::response::Expect;

use common::{TestProxy, modern_capabilities, raw_client, within};

fn proxy() -> TestProxy {
    common::start_proxy(common::proxy_config(&common::shared_sandbox()))
}

fn server_error(result: Result<(), mysql_async::Error>) -> mysql_async::ServerError {
    match result {
        Err(mysql_async::Error::Server(e)) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn kill_query_uses_the_connection_id_the_client_was_given() {
    let proxy = proxy();
    let mut victim = Conn::new(proxy.opts()).await.unwrap();
    let mut killer = Conn::new(proxy.opts()).await.unwrap();
    let victim_id = victim.id();
    let backend_id: u32 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        victim_id, backend_id,
        "clients see rwsplit's ids, not the backend's"
    );
    let started = Instant::now();
    let sleeping = tokio::spawn(async move {
        let interrupted = victim.query_drop("SELECT SLEEP(30)").await;
        (interrupted, victim)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    killer
        .query_drop(format!("KILL QUERY {victim_id}"))
        .await
        .unwrap();
    let (interrupted, mut victim) = within("the query to stop", sleeping).await.unwrap();
    let error = server_error(interrupted);
    assert_eq!(
        (error.code, error.message.as_str()),
        (1317, "Query execution was interrupted")
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The session itself lives on.
    let one: Option<u8> = victim.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test]
async fn kill_connection_closes_the_session_and_its_backend_thread() {
    let sandbox = common::shared_sandbox();
    let proxy = proxy();
    let mut victim = Conn::new(proxy.opts()).await.unwrap();
    let mut killer = Conn::new(proxy.opts()).await.unwrap();
    let backend_id: u32 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    killer
        .query_drop(format!("KILL {}", victim.id()))
        .await
        .unwrap();
    assert!(
        victim.query_drop("SELECT 1").await.is_err(),
        "the killed session is gone"
    );
    let mut admin = sandbox.primary().admin().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin
        .exec_first::<u32, _, _>(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?",
            (backend_id,),
        )
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "backend thread {backend_id} survived KILL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_session_killed_mid_command_leaves_nothing_in_flight() {
    let proxy = proxy();
    let mut victim = Conn::new(proxy.opts()).await.unwrap();
    let mut killer = Conn::new(proxy.opts()).await.unwrap();
    let id = victim.id();
    let running = tokio::spawn(async move { victim.query_drop("SELECT SLEEP(30)").await });
    let in_flight = || -> u32 {
        (0..proxy.proxy.endpoints.len())
            .map(|b| proxy.proxy.metrics.in_flight(b))
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight() == 0 {
        assert!(Instant::now() < deadline, "the SLEEP never went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    killer.query_drop(format!("KILL {id}")).await.unwrap();
    assert!(running.await.unwrap().is_err(), "the killed query failed");
    // least_connections routes by this count: a leak would skew it forever.
    assert_eq!(in_flight(), 0);
}

#[tokio::test]
async fn kill_refuses_unknown_ids_other_users_and_untranslatable_forms() {
    let sandbox = common::shared_sandbox();
    let mut admin = sandbox.primary().admin().await.unwrap();
    admin
        .query_drop("CREATE USER IF NOT EXISTS 'other'@'%' IDENTIFIED BY 'other-pw'; GRANT SELECT ON *.* TO 'other'@'%'")
        .await
        .unwrap();
    let mut config = common::proxy_config(&sandbox);
    config.users.push(rwsplit::config::UserConfig {
        name: "other".into(),
        password: "other-pw".into(),
        auth_plugin: None,
    });
    let proxy = common::start_proxy(config);
    let other_opts = mysql_async::OptsBuilder::from_opts(proxy.opts())
        .user(Some("other"))
        .pass(Some("other-pw"));
    let stranger = Conn::new(other_opts).await.unwrap();
    let mut conn = Conn::new(proxy.opts()).await.unwrap();

    let error = server_error(conn.query_drop("KILL 4000000").await);
    assert_eq!(
        (error.code, error.message.as_str()),
        (1094, "Unknown thread id: 4000000")
    );
    let error = server_error(
        conn.query_drop(format!("KILL QUERY {}", stranger.id()))
            .await,
    );
    assert_eq!(error.code, 1095, "{}", error.message);
    let error = server_error(conn.query_drop("KILL USER other").await);
    assert_eq!(error.code, 1235, "{}", error.message);
    conn.ping().await.expect("the session goes on");
}

#[tokio::test]
async fn com_process_kill_is_translated_too() {
    let proxy = proxy();
    let victim = Conn::new(proxy.opts()).await.unwrap();
    let mut raw = raw_client(&proxy.addr.to_string(), modern_capabilities(), None).await;
    let mut payload = vec![0x0c];
    payload.extend_from_slice(&victim.id().to_le_bytes());
    let (_, scanner) = within("COM_PROCESS_KILL", raw.exchange(&payload, Expect::Single))
        .await
        .unwrap();
    assert_eq!(scanner.error(), None);
    let mut victim = victim;
    assert!(victim.ping().await.is_err(), "killed");
}

#[tokio::test]
async fn reset_connection_clears_the_session() {
    let proxy = proxy();
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("SET @v = 1; CREATE TEMPORARY TABLE IF NOT EXISTS mysql.reset_me (x INT)")
        .await
        .unwrap();
    let statement = conn.prep("SELECT ?").await.unwrap();
    conn.reset().await.unwrap();
    let v: Option<Option<u8>> = conn.query_first("SELECT @v").await.unwrap();
    assert_eq!(v, Some(None), "user variable cleared");
    assert!(
        conn.query_drop("SELECT * FROM mysql.reset_me")
            .await
            .is_err(),
        "temporary table dropped"
    );
    // Prepared statements are gone too: the old id is unknown now.
    let stale: Result<Option<u8>, _> = conn.exec_first(&statement, (1,)).await;
    match stale {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1243, "{}", e.message),
        other => panic!("the statement survived the reset: {other:?}"),
    }
    let again: Option<u8> = conn.exec_first("SELECT ?", (7,)).await.unwrap();
    assert_eq!(again, Some(7));
}

/// Client A leaves state everywhere; a later client that reuses A's backend
/// connection (the same backend thread) sees none of it.
#[tokio::test]
async fn a_pooled_connection_carries_nothing_to_the_next_client() {
    // One session thread: pooled connections stay with the thread that
    // opened them, and this test needs B on A's thread.
    let mut config = common::proxy_config(&common::shared_sandbox());
    config.listen.threads = 1;
    let proxy = common::start_proxy(config);
    let mut a = Conn::new(proxy.opts()).await.unwrap();
    let thread_a: u32 = a
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    a.query_drop(
        "SET @leak = 'a'; SET SESSION sql_mode = 'ANSI_QUOTES'; SET NAMES latin1; \
         CREATE TEMPORARY TABLE mysql.leak (x INT); USE mysql; BEGIN; SELECT 1",
    )
    .await
    .unwrap();
    a.disconnect().await.unwrap();
    // The connection is reset in the background, then pooled.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.proxy.pools[0].idle_count() == 0 {
        assert!(Instant::now() < deadline, "connection never pooled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A client without a database cannot use it (a database cannot be
    // unselected), so it gets a connection of its own.
    let mut c = Conn::new(proxy.opts()).await.unwrap();
    let (thread_c, db): (u32, Option<String>) = c
        .query_first("SELECT CONNECTION_ID(), DATABASE()")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(thread_c, thread_a);
    assert_eq!(db, None);
    // A client asking for another database gets A's connection, moved there.
    let opts =
        mysql_async::OptsBuilder::from_opts(proxy.opts()).db_name(Some("information_schema"));
    let mut b = Conn::new(opts).await.unwrap();
    let (thread_b, leak, mode, charset, db, in_trans): (u32, Option<String>, String, String, Option<String>, u8) = b
        .query_first("SELECT CONNECTION_ID(), @leak, @@sql_mode, @@character_set_client, DATABASE(), @@in_transaction")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(thread_b, thread_a, "B got A's backend connection");
    assert_eq!(leak, None);
    assert!(!mode.contains("ANSI_QUOTES"), "{mode}");
    assert_ne!(charset, "latin1");
    assert_eq!(db.as_deref(), Some("information_schema"));
    assert_eq!(in_trans, 0);
    assert!(
        b.query_drop("SELECT * FROM mysql.leak").await.is_err(),
        "temporary table gone"
    );
}
