//! A backend connection rwsplit hands a new session from its pool is
//! indistinguishable from a fresh login: what the login derives from the
//! client's capability flags and collation is there again, and nothing a
//! previous session did is left, compared with a direct connection.

mod common;

use std::time::Duration;

use common::{eventually, start_proxy, start_sandbox, within};
use mysql_async::prelude::Queryable;
use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
use rwsplit::backend::conn::{BackendConn, Endpoint, Login};
use rwsplit::sandbox::{APP, Sandbox, SandboxOptions};

/// What a login sets from the handshake, and what a reset may lose.
const LOGIN_STATE: &str = "SELECT @@session.sql_mode, @@session.wait_timeout, \
     @@character_set_client, @@character_set_connection, @@character_set_results, \
     @@collation_connection, DATABASE(), @@autocommit";

/// utf8mb4_general_ci and latin1_swedish_ci.
const COLLATIONS: [u8; 2] = [45, 8];

/// A raw client of `address` logged in with exactly these flags.
async fn login(
    address: &str,
    flags: CapabilityFlags,
    collation: u8,
    db: Option<&str>,
) -> BackendConn {
    let endpoint = Endpoint {
        name: "test".into(),
        address: address.into(),
        tls: None,
        connect_timeout: Duration::from_secs(10),
        sockets: Default::default(),
    };
    let login = Login {
        user: APP.user,
        password: APP.password,
        db,
        capabilities: common::modern_capabilities() | flags,
        mariadb: MariadbCapabilities::empty(),
        collation,
        attributes: None,
        track_state: false,
    };
    within("login", BackendConn::connect(&endpoint, &login))
        .await
        .unwrap_or_else(|e| panic!("cannot log in to {address}: {e}"))
}

async fn values(conn: &mut BackendConn, sql: &str) -> Vec<Option<String>> {
    answer(conn, sql)
        .await
        .unwrap_or_else(|code| panic!("{sql}: error {code}"))
}

/// The row `sql` returns, or its error code.
async fn answer(conn: &mut BackendConn, sql: &str) -> Result<Vec<Option<String>>, u16> {
    match within(sql, conn.query_row(sql)).await {
        Ok(row) => Ok(row
            .into_iter()
            .map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned()))
            .collect()),
        Err(rwsplit::backend::conn::BackendError::Refused(error)) => Err(error.code),
        Err(other) => panic!("{sql}: {other}"),
    }
}

async fn run(conn: &mut BackendConn, sql: &str) {
    let mut payload = vec![3u8];
    payload.extend_from_slice(sql.as_bytes());
    within(
        sql,
        conn.run(
            &payload,
            rwsplit::protocol::response::Expect::Results { cursor: false },
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn connection_id(conn: &mut BackendConn) -> String {
    values(conn, "SELECT CONNECTION_ID()").await[0]
        .clone()
        .expect("an id")
}

/// A primary alone, whose `interactive_timeout` differs from its
/// `wait_timeout` (so that CLIENT_INTERACTIVE shows), a second database
/// and a role the application user may take.
async fn servers() -> Sandbox {
    let sandbox = start_sandbox(SandboxOptions {
        replicas: 0,
        ..SandboxOptions::default()
    });
    let mut admin = sandbox.servers()[0].admin().await.expect("admin");
    for sql in [
        "SET GLOBAL interactive_timeout = 1234",
        "CREATE DATABASE pooled",
        "CREATE DATABASE other",
        "CREATE TABLE pooled.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
        "CREATE SEQUENCE pooled.s",
        "CREATE ROLE auditor",
        "GRANT SELECT ON pooled.* TO auditor",
        "GRANT auditor TO app",
    ] {
        admin
            .query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    sandbox
}

/// A proxy with one session thread, so that consecutive clients share a
/// pool (pools are per thread), and the primary alone.
fn proxy(sandbox: &Sandbox) -> common::TestProxy {
    let mut config = common::proxy_config(sandbox);
    config.listen.threads = 1;
    start_proxy(config)
}

/// Waits until no session is left and every connection the proxy holds
/// to the primary is idle in its pool: a released connection has been
/// reset and pooled, or closed.
async fn settled(proxy: &common::TestProxy) {
    eventually(
        "the sessions ended and their connections settled",
        || async {
            let open = proxy.proxy.endpoints[0].sockets.open();
            proxy.proxy.registry.is_empty() && open == proxy.proxy.pools[0].idle_count() as u64
        },
    )
    .await;
}

async fn pooled(proxy: &common::TestProxy, count: usize) {
    eventually("the connection is back in its pool", || async {
        proxy.proxy.pools[0].idle_count() >= count
    })
    .await;
}

/// For every combination of the flags and handshake values a server
/// derives session state from, a reused connection shows what a fresh
/// direct login shows, after a session that changed all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_connection_is_a_fresh_login_for_every_flag_combination() {
    let sandbox = servers().await;
    let proxy = proxy(&sandbox);
    let direct = sandbox.servers()[0].address();
    let through = proxy.addr.to_string();
    let ignore_space = CapabilityFlags::CLIENT_IGNORE_SPACE;
    let interactive = CapabilityFlags::CLIENT_INTERACTIVE;
    let mut checked = 0;
    for flags in [
        CapabilityFlags::empty(),
        ignore_space,
        interactive,
        ignore_space | interactive,
    ] {
        for collation in COLLATIONS {
            for db in [None, Some("pooled")] {
                let case = format!("{flags:?}, collation {collation}, database {db:?}");
                let expected =
                    values(&mut login(&direct, flags, collation, db).await, LOGIN_STATE).await;

                let mut first = login(&through, flags, collation, db).await;
                assert_eq!(
                    values(&mut first, LOGIN_STATE).await,
                    expected,
                    "fresh: {case}"
                );
                let id = connection_id(&mut first).await;
                for sql in [
                    "SET SESSION sql_mode = 'ANSI_QUOTES'",
                    "SET SESSION wait_timeout = 7",
                    "SET NAMES koi8r",
                    "SET autocommit = 0",
                ] {
                    run(&mut first, sql).await;
                }
                if db.is_some() {
                    run(&mut first, "USE other").await;
                }
                let idle = proxy.proxy.pools[0].idle_count();
                drop(first);
                pooled(&proxy, idle + 1).await;

                let mut second = login(&through, flags, collation, db).await;
                assert_eq!(connection_id(&mut second).await, id, "reused: {case}");
                assert_eq!(
                    values(&mut second, LOGIN_STATE).await,
                    expected,
                    "reused: {case}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 16);
}

/// What one session does that the next one could observe, each checked on
/// the next session's connection against a fresh direct login. Where the
/// server's reset keeps something (a role, the profiling history), rwsplit
/// does not reuse the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_a_previous_session_reaches_the_next() {
    let sandbox = servers().await;
    let proxy = proxy(&sandbox);
    let direct = sandbox.servers()[0].address();
    let through = proxy.addr.to_string();
    let flags = CapabilityFlags::empty();
    // (what the previous session did, what the next one reads)
    let cases: &[(&[&str], &str)] = &[
        (&["SET ROLE auditor"], "SELECT CURRENT_ROLE()"),
        (
            &["SET profiling = 1", "SELECT 'a secret'"],
            "SELECT COUNT(*), @@profiling FROM information_schema.PROFILING",
        ),
        (&["SET @secret = 'x'"], "SELECT @secret"),
        (
            &["SET SESSION time_zone = '+05:00'"],
            "SELECT @@session.time_zone",
        ),
        (
            &["CREATE TEMPORARY TABLE pooled.tmp (a INT)"],
            "SELECT COUNT(*) FROM pooled.tmp",
        ),
        (
            &["PREPARE p FROM 'SELECT 1'"],
            "SHOW SESSION STATUS LIKE 'Prepared_stmt_count'",
        ),
        (
            &["SELECT GET_LOCK('pooled', 0)"],
            "SELECT IS_USED_LOCK('pooled') IS NULL",
        ),
        (
            &["INSERT INTO pooled.t (v) VALUES (1)"],
            "SELECT LAST_INSERT_ID()",
        ),
        (&["SELECT NEXTVAL(pooled.s)"], "SELECT LASTVAL(pooled.s)"),
        (
            &["SET autocommit = 0", "INSERT INTO pooled.t (v) VALUES (2)"],
            "SELECT @@in_transaction, (SELECT COUNT(*) FROM pooled.t WHERE v = 2)",
        ),
        (&["SELECT 1/0"], "SELECT @@warning_count"),
        (
            &["SELECT 1", "SELECT 2"],
            "SHOW SESSION STATUS LIKE 'Com_select'",
        ),
        (&["SET SESSION sql_mode = ''"], "SELECT @@session.sql_mode"),
    ];
    for (done, read) in cases {
        let mut reference = login(&direct, flags, 45, None).await;
        // Counters count what rwsplit itself sends a connection it opens,
        // so a reused one is compared with a fresh one through rwsplit.
        let expected = if read.contains("STATUS") {
            let mut fresh = login(&through, flags, 45, None).await;
            answer(&mut fresh, read).await
        } else {
            answer(&mut reference, read).await
        };
        let mut previous = login(&through, flags, 45, None).await;
        for sql in *done {
            run(&mut previous, sql).await;
        }
        drop(previous);
        settled(&proxy).await;
        let mut next = login(&through, flags, 45, None).await;
        assert_eq!(
            answer(&mut next, read).await,
            expected,
            "after {done:?}, {read}"
        );
        drop(next);
        settled(&proxy).await;
    }
}

/// A pooled connection its server closed meanwhile (killed here; a
/// restarted or dead server does the same) is not handed to the next
/// session: it gets a connection that works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_server_closed_is_not_handed_out() {
    let sandbox = servers().await;
    let proxy = proxy(&sandbox);
    let through = proxy.addr.to_string();
    let flags = CapabilityFlags::empty();
    let mut first = login(&through, flags, 45, None).await;
    let id = connection_id(&mut first).await;
    drop(first);
    pooled(&proxy, 1).await;
    let mut admin = sandbox.servers()[0].admin().await.unwrap();
    admin.query_drop(format!("KILL {id}")).await.unwrap();
    eventually("the server closed it", || async {
        let threads: Vec<u64> = sandbox.servers()[0]
            .admin()
            .await
            .unwrap()
            .query("SELECT ID FROM information_schema.PROCESSLIST")
            .await
            .unwrap();
        !threads.contains(&id.parse().unwrap())
    })
    .await;
    let mut next = login(&through, flags, 45, None).await;
    let other = connection_id(&mut next).await;
    assert_ne!(other, id, "a new connection");
    assert_eq!(values(&mut next, "SELECT 1").await, [Some("1".to_owned())]);
}
