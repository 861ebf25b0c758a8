//! The monitor against real servers that misbehave: stopped replication, a
//! delayed replica, a frozen one, a killed one, two writable servers,
//! broken replication; read-your-writes; and what the checks cost the
//! servers. Each test breaks a sandbox of its own. Where reads
//! ran is read from the servers: `@@server_id` in results (db1 = 1 is the
//! primary) and their `Com_stmt_execute` counters (the monitor never
//! prepares statements, so only the test's reads count there).

mod common;

use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use rwsplit::admin::status::Status;
use rwsplit::config::{Config, ReadYourWrites, ReplicaAffinity};
use rwsplit::sandbox::{APP, Sandbox, SandboxOptions, send_signal};
use rwsplit::topology::Topology;
use rwsplit::topology::monitor::LagSource;

use common::{TestProxy, within};
use rwsplit::protocol::response::Expect;

const INTERVAL: Duration = Duration::from_millis(200);

/// Held for the whole of each test: the tests here time the monitor, and
/// several sandboxes at once on a 2-core machine would blur the timings.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// A proxy over `sandbox` with a fast monitor: checks every 200 ms, down
/// after 3 failures, back after 2 successes, replicas out past 1 s of lag;
/// started once the monitor has a verdict on every replica.
fn start(sandbox: &Sandbox, tweak: impl FnOnce(&mut Config)) -> TestProxy {
    let proxy = start_unsettled(sandbox, tweak);
    proxy.wait_settled();
    proxy
}

/// Like [`start`], without waiting for the monitor.
fn start_unsettled(sandbox: &Sandbox, tweak: impl FnOnce(&mut Config)) -> TestProxy {
    let mut config = common::proxy_config(sandbox);
    config.monitor.interval = INTERVAL;
    config.monitor.query_timeout = Duration::from_millis(500);
    config.monitor.connect_timeout = Duration::from_millis(500);
    config.routing.max_replication_lag = Duration::from_secs(1);
    // Every read chooses again, so that one connection shows which
    // replicas are in rotation.
    config.routing.replica_affinity = ReplicaAffinity::Statement;
    tweak(&mut config);
    common::start_proxy_unsettled(config)
}

/// Polls the proxy's topology until `done` holds; returns how long it took.
async fn wait_for(proxy: &TestProxy, what: &str, done: impl Fn(&Topology) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if done(&proxy.proxy.topology.load()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting until {what}: {:?}",
            proxy.proxy.topology.load()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn readable(index: usize) -> impl Fn(&Topology) -> bool {
    move |t| t.backends[index].readable
}

fn not_readable(index: usize) -> impl Fn(&Topology) -> bool {
    move |t| !t.backends[index].readable
}

async fn root(sandbox: &Sandbox, index: usize, sql: &str) {
    let mut conn = sandbox.servers()[index].admin().await.unwrap();
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Which protocol a test's reads use.
#[derive(Clone, Copy)]
enum Protocol {
    Binary,
    Text,
}

/// `n` prepared reads through `conn`; how many each server ran (by id).
async fn reads(conn: &mut Conn, n: usize) -> [usize; 4] {
    reads_over(Protocol::Binary, conn, n).await
}

/// `n` reads through `conn` over `protocol`; how many each server ran (by id).
async fn reads_over(protocol: Protocol, conn: &mut Conn, n: usize) -> [usize; 4] {
    const READ: &str = "SELECT @@server_id";
    let mut counts = [0; 4];
    for _ in 0..n {
        let id: Option<u32> = match protocol {
            Protocol::Binary => conn.exec_first(READ, ()).await,
            Protocol::Text => conn.query_first(READ).await,
        }
        .expect("a read");
        counts[id.expect("a row") as usize] += 1;
    }
    counts
}

/// Every server's Com_stmt_execute.
async fn executions(sandbox: &Sandbox) -> Vec<u64> {
    let mut values = Vec::new();
    for index in 0..sandbox.servers().len() {
        values.push(counter(sandbox, index, "Com_stmt_execute").await);
    }
    values
}

async fn executions_since(sandbox: &Sandbox, before: &[u64]) -> Vec<u64> {
    let after = executions(sandbox).await;
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

async fn status(proxy: &TestProxy) -> Status {
    let body = rwsplit::admin::client::get(
        &proxy.admin_addr.to_string(),
        "/status",
        None,
        Duration::from_secs(5),
    )
    .await
    .expect("GET /status");
    serde_json::from_str(&body).expect("a status document")
}

#[tokio::test]
async fn a_replica_whose_sql_thread_stops_serves_no_reads_until_it_restarts() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |_| {});
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("CREATE DATABASE lag; CREATE TABLE lag.t (id INT PRIMARY KEY)")
        .await
        .unwrap();

    root(&sandbox, 2, "STOP SLAVE SQL_THREAD").await;
    for id in 0..20 {
        conn.query_drop(format!("INSERT INTO lag.t VALUES ({id})"))
            .await
            .unwrap();
    }
    let took = wait_for(&proxy, "db3 leaves rotation", not_readable(2)).await;
    let bound = Duration::from_secs(1) + 2 * INTERVAL;
    assert!(
        took <= bound,
        "db3 left rotation after {took:?}, over {bound:?}"
    );

    let before = executions(&sandbox).await;
    assert_eq!(reads(&mut conn, 20).await, [0, 0, 20, 0]);
    assert_eq!(executions_since(&sandbox, &before).await, [0, 20, 0]);
    let row: Option<u32> = conn
        .query_first("SELECT COUNT(*) FROM lag.t")
        .await
        .unwrap();
    assert_eq!(row, Some(20), "reads see every write");

    root(&sandbox, 2, "START SLAVE SQL_THREAD").await;
    wait_for(&proxy, "db3 is back in rotation", readable(2)).await;
    let before = executions(&sandbox).await;
    let counts = reads(&mut conn, 20).await;
    assert_eq!(counts[1], 0);
    assert!(counts[3] > 0, "db3 serves reads again: {counts:?}");
    let delta = executions_since(&sandbox, &before).await;
    assert!(delta[0] == 0 && delta[2] > 0, "{delta:?}");
}

#[tokio::test]
async fn a_delayed_replica_serves_no_reads_and_its_lag_is_measured() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    root(
        &sandbox,
        2,
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3; START SLAVE",
    )
    .await;
    let proxy = start_unsettled(&sandbox, |_| {});
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    wait_for(&proxy, "db2 takes reads", readable(1)).await;
    // The heartbeat writes every interval; after the delay, db3 shows it.
    let lag_of_db3 = |t: &Topology| match t.backends[2].lag {
        rwsplit::topology::Lag::Measured(lag) => lag >= Duration::from_millis(2500),
        rwsplit::topology::Lag::Unknown => false,
    };
    wait_for(&proxy, "db3's lag is measured", lag_of_db3).await;
    assert!(!proxy.proxy.topology.load().backends[2].readable);

    let before = executions(&sandbox).await;
    assert_eq!(reads(&mut conn, 20).await, [0, 0, 20, 0]);
    assert_eq!(executions_since(&sandbox, &before).await, [0, 20, 0]);

    // The truth, measured at the same moments: probe rows written every
    // 50 ms; db3's lag is how long ago the newest probe it has was
    // written. MariaDB applies a second's events together (it times the
    // delay by whole seconds), so the truth is a sawtooth a second wide:
    // the lag reported and the truth are compared on average.
    let (reported, truth) = sample_lag(&sandbox, &proxy, 2).await;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (reported_mean, truth_mean) = (mean(&reported), mean(&truth));
    assert!(
        (reported_mean - truth_mean).abs() <= 0.3,
        "/status says db3 lags {reported_mean:.3} s on average; it lags {truth_mean:.3} s"
    );
    let (low, high) = truth
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), t| (l.min(*t), h.max(*t)));
    for (i, lag) in reported.iter().enumerate() {
        assert!(
            *lag >= low - 0.3 && *lag <= high + 0.3,
            "sample {i}: {lag:.3} s reported, outside the truth's {low:.3}..{high:.3} s\n\
             reported: {reported:.3?}\ntruth: {truth:.3?}"
        );
    }
    let status = status(&proxy).await;
    assert_eq!(status.backends[2].lag_source, LagSource::Heartbeat);
}

#[tokio::test]
async fn a_frozen_replica_leaves_rotation_and_no_read_fails() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |_| {});
    let frozen = sandbox.servers()[2].pid();
    // Readers that hold connections to both replicas.
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut conn = Conn::new(proxy.opts()).await.unwrap();
        reads(&mut conn, 4).await;
        readers.push(conn);
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut conn| {
            let (done, served) = (done.clone(), served.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    conn.exec_first::<u32, _, _>("SELECT @@server_id", ())
                        .await
                        .expect("no read fails while a replica is frozen");
                    served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();

    send_signal(frozen, libc::SIGSTOP).unwrap();
    let took = wait_for(&proxy, "db3 is down", |t| !t.backends[2].healthy).await;
    let bound = 4 * INTERVAL + Duration::from_millis(300);
    assert!(
        took <= bound,
        "db3 was marked down after {took:?}, over {bound:?}"
    );
    // The readers are stuck on db3 by now (every other read goes there),
    // waiting, not failing. New reads all go to db2.
    let mut fresh = Conn::new(proxy.opts()).await.unwrap();
    let counts = within("reads with db3 frozen", reads(&mut fresh, 20)).await;
    assert_eq!(counts, [0, 0, 20, 0]);

    send_signal(frozen, libc::SIGCONT).unwrap();
    wait_for(&proxy, "db3 is back", |t| {
        t.backends[2].healthy && t.backends[2].readable
    })
    .await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        within("a reader to finish", task).await.unwrap();
    }
    assert!(served.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert!(reads(&mut fresh, 10).await[3] > 0, "db3 serves reads again");
}

#[tokio::test]
async fn a_killed_replica_costs_its_readers_nothing() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |c| {
        // Slow to notice, so that reads meet the dead connection first.
        c.monitor.failure_threshold = 50;
    });
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    let counts = reads(&mut conn, 4).await;
    assert_eq!(counts, [0, 0, 2, 2], "the session holds both replicas");
    // And one that reads with text queries.
    let mut text = Conn::new(proxy.opts()).await.unwrap();
    let counts = reads_over(Protocol::Text, &mut text, 4).await;
    assert_eq!(counts, [0, 0, 2, 2], "the text session holds both replicas");
    let victim = sandbox.servers()[2].pid();
    send_signal(victim, libc::SIGKILL).unwrap();
    while rwsplit::sandbox::is_alive(victim) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        proxy.proxy.topology.load().backends[2].healthy,
        "not noticed yet"
    );
    let counts = reads(&mut conn, 6).await;
    assert_eq!(counts, [0, 0, 6, 0], "the read on db3 ran again on db2");
    let counts = reads_over(Protocol::Text, &mut text, 6).await;
    assert_eq!(
        counts,
        [0, 0, 6, 0],
        "the text read on db3 ran again on db2"
    );
}

#[tokio::test]
async fn with_every_replica_lagging_reads_go_to_the_primary() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |_| {});
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    root(&sandbox, 1, "STOP SLAVE SQL_THREAD").await;
    root(&sandbox, 2, "STOP SLAVE SQL_THREAD").await;
    wait_for(&proxy, "no replica is readable", |t| {
        !t.backends[1].readable && !t.backends[2].readable
    })
    .await;
    let before = executions(&sandbox).await;
    assert_eq!(reads(&mut conn, 10).await, [0, 10, 0, 0]);
    assert_eq!(executions_since(&sandbox, &before).await, [10, 0, 0]);
    root(&sandbox, 1, "START SLAVE SQL_THREAD").await;
    wait_for(&proxy, "db2 is back", readable(1)).await;
    assert_eq!(reads(&mut conn, 4).await, [0, 0, 4, 0]);
}

#[tokio::test]
async fn two_writable_servers_refuse_writes_and_raise_the_alarm() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions {
        replicas: 1,
        ..Default::default()
    });
    let proxy = start(&sandbox, |_| {});
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("CREATE DATABASE w; CREATE TABLE w.t (id INT)")
        .await
        .unwrap();
    root(&sandbox, 1, "SET GLOBAL read_only = OFF").await;
    wait_for(&proxy, "the alarm", |t| t.alarm.is_some()).await;

    let error = match conn.query_drop("INSERT INTO w.t VALUES (1)").await {
        Err(mysql_async::Error::Server(error)) => error,
        other => panic!("the write was not refused: {other:?}"),
    };
    assert_eq!(error.code, 1290);
    assert!(
        error.message.contains("db1 and db2 are all writable"),
        "{}",
        error.message
    );
    let status = status(&proxy).await;
    assert_eq!(status.primary, None);
    assert!(status.alarm.unwrap().contains("db1 and db2"));
    assert!(!status.ready);
    let one: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1), "reads still work");

    root(&sandbox, 1, "SET GLOBAL read_only = ON").await;
    wait_for(&proxy, "the primary is back", |t| t.primary == Some(0)).await;
    conn.query_drop("INSERT INTO w.t VALUES (2)").await.unwrap();
    let mut direct = Conn::new(sandbox.primary().opts(&APP)).await.unwrap();
    let rows: Vec<u32> = direct.query("SELECT id FROM w.t").await.unwrap();
    assert_eq!(rows, [2], "only the write after the alarm happened");
}

/// Each backend's replication alarm, from `/status`.
async fn replication_alarms(proxy: &TestProxy) -> Vec<Option<String>> {
    let status = status(proxy).await;
    status
        .backends
        .into_iter()
        .map(|b| b.replication_alarm)
        .collect()
}

/// Polls `/status` until the replication alarms satisfy `done`.
async fn wait_for_alarms(
    proxy: &TestProxy,
    what: &str,
    done: impl Fn(&[Option<String>]) -> bool,
) -> Vec<Option<String>> {
    let started = Instant::now();
    loop {
        let alarms = replication_alarms(proxy).await;
        if done(&alarms) {
            return alarms;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting until {what}: {alarms:?}"
        );
        tokio::time::sleep(INTERVAL / 2).await;
    }
}

/// `GET /ready`: its status code and body.
async fn ready(proxy: &TestProxy) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(proxy.admin_addr)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    let code = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (code, body)
}

/// Broken replication raises an alarm in /status, /metrics and /ready
/// (which stays 200: answers still come right, from the primary) until it
/// is fixed: a replica whose SQL thread stopped on a duplicate key, then
/// replicas left ahead of a primary whose binary log was reset (which
/// keep both threads running, receiving nothing). Steady writes raise
/// none, however the monitor's checks interleave with them.
#[tokio::test]
async fn broken_replication_raises_an_alarm_until_it_is_fixed() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |_| {});
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("CREATE DATABASE broken; CREATE TABLE broken.t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let started = Instant::now();
    let mut id = 100;
    while started.elapsed() < 10 * INTERVAL {
        conn.query_drop(format!("INSERT INTO broken.t VALUES ({id})"))
            .await
            .unwrap();
        id += 1;
        let alarms = replication_alarms(&proxy).await;
        assert!(alarms.iter().all(Option::is_none), "{alarms:?}");
    }
    common::caught_up(&sandbox, 0, 2).await;

    root(
        &sandbox,
        2,
        "SET sql_log_bin = 0; INSERT INTO broken.t VALUES (1)",
    )
    .await;
    conn.query_drop("INSERT INTO broken.t VALUES (1)")
        .await
        .unwrap();
    let alarms = wait_for_alarms(&proxy, "db3's alarm", |a| a[2].is_some()).await;
    let alarm = alarms[2].as_deref().unwrap();
    assert!(
        alarm.starts_with("its SQL thread has stopped") && alarm.contains("Duplicate entry"),
        "{alarm}"
    );
    assert_eq!(alarms[..2], [None, None]);
    let metrics = common::metrics(&proxy).await;
    assert!(metrics.contains("rwsplit_backend_replication_alarm{backend=\"db3\"} 1"));
    assert!(metrics.contains("rwsplit_backend_replication_alarm{backend=\"db2\"} 0"));
    let (code, body) = ready(&proxy).await;
    assert_eq!(code, 200);
    assert!(
        body.contains("replication alarm: db3: its SQL thread"),
        "{body}"
    );

    root(
        &sandbox,
        2,
        "SET sql_log_bin = 0; DELETE FROM broken.t WHERE id = 1; START SLAVE",
    )
    .await;
    wait_for_alarms(&proxy, "db3's alarm clears", |a| a[2].is_none()).await;

    root(&sandbox, 0, "RESET MASTER").await;
    let alarms = wait_for_alarms(&proxy, "the replicas' alarms", |a| {
        a[1].is_some() && a[2].is_some()
    })
    .await;
    for alarm in alarms[1..].iter().flatten() {
        assert!(
            alarm.starts_with("it has transactions db1 does not"),
            "{alarm}"
        );
    }
    let topology = proxy.proxy.topology.load();
    assert!(
        !topology.backends[1].readable && !topology.backends[2].readable,
        "their GTIDs would pass for caught up with any new write"
    );
    let status = status(&proxy).await;
    assert!(status.ready && status.primary.as_deref() == Some("db1"));
    conn.query_drop("INSERT INTO broken.t VALUES (2)")
        .await
        .unwrap();
    let rows: Option<u32> = conn
        .query_first("SELECT COUNT(*) FROM broken.t WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(rows, Some(1), "reads see the write: they left the replicas");
}

#[tokio::test]
async fn without_heartbeat_rights_lag_comes_from_seconds_behind_master() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions {
        replicas: 1,
        ..Default::default()
    });
    root(
        &sandbox,
        0,
        "CREATE USER watcher IDENTIFIED BY 'watcher'; \
         GRANT REPLICA MONITOR, BINLOG MONITOR, PROCESS ON *.* TO watcher",
    )
    .await;
    sandbox.sync_replicas().await.unwrap();
    let proxy = start(&sandbox, |c| {
        c.monitor.user = "watcher".into();
        c.monitor.password = "watcher".into();
    });
    let status = status(&proxy).await;
    let db2 = &status.backends[1];
    assert!(db2.readable, "{db2:?}");
    assert_eq!(db2.lag_source, LagSource::SecondsBehindMaster);
    assert_eq!(db2.lag_seconds, Some(0.0));
}

/// Write-then-read `n` times through `conn`; how many reads missed the
/// write just before them.
async fn stale_reads(conn: &mut Conn, table: &str, n: u32) -> u32 {
    let mut stale = 0;
    for id in 1..=n {
        conn.query_drop(format!("INSERT INTO {table} VALUES ({id})"))
            .await
            .unwrap();
        let seen: Option<Option<u32>> = conn
            .query_first(format!("SELECT MAX(id) FROM {table}"))
            .await
            .unwrap();
        if seen != Some(Some(id)) {
            stale += 1;
        }
    }
    stale
}

#[tokio::test]
async fn read_your_writes_sees_every_write_and_off_does_not() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    root(
        &sandbox,
        0,
        "CREATE DATABASE ryw; CREATE TABLE ryw.off (id INT PRIMARY KEY); \
         CREATE TABLE ryw.asked (id INT PRIMARY KEY); CREATE TABLE ryw.tracked (id INT PRIMARY KEY)",
    )
    .await;
    sandbox.sync_replicas().await.unwrap();
    root(
        &sandbox,
        2,
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 1; START SLAVE",
    )
    .await;
    let session = |c: &mut Config| {
        c.routing.read_your_writes = ReadYourWrites::Session;
        c.routing.max_replication_lag = Duration::from_secs(3);
    };

    let off = start(&sandbox, |c| {
        c.routing.read_your_writes = ReadYourWrites::Off;
        c.routing.max_replication_lag = Duration::from_secs(3);
    });
    let mut conn = Conn::new(off.opts()).await.unwrap();
    let stale = stale_reads(&mut conn, "ryw.off", 200).await;
    assert!(stale > 0, "without read-your-writes some reads are stale");
    drop((conn, off));

    // mysql_async does not ask for CLIENT_SESSION_TRACK: rwsplit asks the
    // primary for @@last_gtid before the first read after each write.
    let proxy = start(&sandbox, session);
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    let selects = counter(&sandbox, 0, "Com_select").await;
    assert_eq!(stale_reads(&mut conn, "ryw.asked", 1000).await, 0);
    let asked = counter(&sandbox, 0, "Com_select").await - selects;
    assert!(
        asked >= 1000,
        "@@last_gtid was asked {asked} times for 1000 writes"
    );
    // A read-only transaction runs on a replica, and sees the writes too.
    for id in 1001..=1100u32 {
        conn.query_drop(format!("INSERT INTO ryw.asked VALUES ({id})"))
            .await
            .unwrap();
        conn.query_drop("START TRANSACTION READ ONLY")
            .await
            .unwrap();
        let (seen, server): (u32, u32) = conn
            .query_first("SELECT MAX(id), @@server_id FROM ryw.asked")
            .await
            .unwrap()
            .unwrap();
        conn.query_drop("COMMIT").await.unwrap();
        assert_eq!(seen, id, "a read-only transaction missed the write");
        assert_ne!(server, 1, "read-only transactions run on replicas");
    }
    drop((conn, proxy));

    // A client with CLIENT_SESSION_TRACK, and the server tracking
    // last_gtid: the GTID comes with each OK packet, nothing is asked.
    root(
        &sandbox,
        0,
        "SET GLOBAL session_track_system_variables = 'last_gtid'",
    )
    .await;
    let proxy = start(&sandbox, session);
    let mut raw = common::raw_client(
        &proxy.addr.to_string(),
        common::modern_capabilities(),
        Some("ryw"),
    )
    .await;
    let selects = counter(&sandbox, 0, "Com_select").await;
    let mut stale = 0;
    for id in 1..=500u32 {
        let insert = format!("\x03INSERT INTO tracked VALUES ({id})");
        let (ok, _) = raw
            .exchange(insert.as_bytes(), Expect::Results { cursor: false })
            .await
            .unwrap();
        assert!(
            ok.windows(9).any(|w| w == b"last_gtid"),
            "the OK packet reports last_gtid"
        );
        let seen = raw
            .query_value("SELECT MAX(id) FROM tracked")
            .await
            .unwrap();
        if seen != Some(id.to_string().into_bytes()) {
            stale += 1;
        }
    }
    assert_eq!(stale, 0);
    let asked = counter(&sandbox, 0, "Com_select").await - selects;
    assert!(
        asked < 250,
        "{asked} selects on the primary: the GTIDs were asked for, not read from OK packets"
    );
    drop((raw, proxy));

    // `global`: one connection writes, another reads (an application's
    // pool hands one request several): the read sees the write. With
    // `session` it may not.
    root(
        &sandbox,
        0,
        "CREATE TABLE ryw.global (id INT PRIMARY KEY); CREATE TABLE ryw.other (id INT PRIMARY KEY)",
    )
    .await;
    sandbox.sync_replicas().await.unwrap();
    for (mode, table) in [
        (ReadYourWrites::Session, "ryw.other"),
        (ReadYourWrites::Global, "ryw.global"),
    ] {
        let proxy = start(&sandbox, |c| {
            c.routing.read_your_writes = mode;
            c.routing.max_replication_lag = Duration::from_secs(3);
        });
        let mut writer = Conn::new(proxy.opts()).await.unwrap();
        let mut reader = Conn::new(proxy.opts()).await.unwrap();
        let mut stale = 0;
        for id in 1..=100u32 {
            writer
                .query_drop(format!("INSERT INTO {table} VALUES ({id})"))
                .await
                .unwrap();
            let seen: Option<Option<u32>> = reader
                .query_first(format!("SELECT MAX(id) FROM {table}"))
                .await
                .unwrap();
            if seen != Some(Some(id)) {
                stale += 1;
            }
        }
        match mode {
            ReadYourWrites::Global => assert_eq!(stale, 0, "global: another session's write"),
            _ => assert!(
                stale > 0,
                "session: another session's writes are not waited for"
            ),
        }
    }
}

/// Samples replica `index`'s lag for 3 s, every 50 ms: as `/status`
/// reports it, and the truth from probe rows written every 50 ms.
async fn sample_lag(sandbox: &Sandbox, proxy: &TestProxy, index: usize) -> (Vec<f64>, Vec<f64>) {
    root(
        sandbox,
        0,
        "CREATE DATABASE truth; CREATE TABLE truth.probe (id INT PRIMARY KEY)",
    )
    .await;
    let mut primary = sandbox.primary().admin().await.unwrap();
    let writes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let written = writes.clone();
    let writer = tokio::spawn(async move {
        for id in 0..400 {
            written.lock().unwrap().push(Instant::now());
            primary
                .query_drop(format!("INSERT INTO truth.probe VALUES ({id})"))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut replica = sandbox.servers()[index].admin().await.unwrap();
    let started = Instant::now();
    while newest_probe(&mut replica).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no probe arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The truth is known from now on; /status still shows the last check,
    // which may have read the replica before now (while it applied the
    // CREATE TABLE, say, and lagged more). Two new checks later, the one
    // shown read the replica after now.
    let lag_now = async || status(proxy).await.backends[index].lag_seconds;
    let mut shown = lag_now().await;
    for _ in 0..2 {
        while lag_now().await == shown {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the lag was not measured again"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shown = lag_now().await;
    }
    let (mut reported, mut truth) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        let applied = newest_probe(&mut replica).await.expect("probes");
        let now = Instant::now();
        truth.push((now - writes.lock().unwrap()[applied]).as_secs_f64());
        let lag = status(proxy).await.backends[index].lag_seconds;
        reported.push(lag.expect("the lag is known"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.abort();
    (reported, truth)
}

async fn newest_probe(replica: &mut Conn) -> Option<usize> {
    replica
        .query_first::<Option<usize>, _>("SELECT MAX(id) FROM truth.probe")
        .await
        .ok()
        .flatten()
        .flatten()
}

/// A global status counter of server `index`.
async fn counter(sandbox: &Sandbox, index: usize, name: &str) -> u64 {
    let mut conn = sandbox.servers()[index].admin().await.unwrap();
    let (_, value): (String, u64) = conn
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .await
        .unwrap()
        .unwrap();
    value
}

/// A server's `Questions` and `Com_show_slave_status`, read over `conn`
/// (one statement, counted in `Questions` itself) — not with [`counter`],
/// whose new connection would add its own statements to `Questions`.
async fn statements(conn: &mut Conn) -> (u64, u64) {
    let rows: Vec<(String, u64)> = conn
        .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_show_slave_status')")
        .await
        .unwrap();
    let value = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("{name} in {rows:?}"))
            .1
    };
    (value("Questions"), value("Com_show_slave_status"))
}

/// What every sidecar costs every server, per interval (docs/monitor.md):
/// a replica answers three statements a check; the primary two, and two
/// more for the heartbeat (`SELECT @@read_only`, then the write). Each
/// check runs exactly one `SHOW SLAVE STATUS`, so the servers' own counters
/// give the checks made and the statements they cost, with no one else
/// connected.
#[tokio::test]
async fn an_interval_costs_a_replica_three_statements_and_the_primary_four() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let _proxy = start(&sandbox, |_| {});
    // Past the first check of each connection, which also asks @@version.
    tokio::time::sleep(3 * INTERVAL).await;
    let mut admins = Vec::new();
    for server in sandbox.servers() {
        admins.push(server.admin().await.unwrap());
    }
    let mut before = Vec::new();
    for admin in &mut admins {
        before.push(statements(admin).await);
    }
    tokio::time::sleep(15 * INTERVAL).await;
    for (index, admin) in admins.iter_mut().enumerate() {
        let (questions, checks) = statements(admin).await;
        // Less the test's own second SHOW GLOBAL STATUS.
        let questions = questions - before[index].0 - 1;
        let checks = checks - before[index].1;
        assert!(checks >= 10, "db{}: {checks} checks in 3 s", index + 1);
        let per_check = if index == 0 { 4 } else { 3 };
        // A check or heartbeat under way at either reading may be counted
        // in part.
        let expected = per_check * checks;
        assert!(
            questions.abs_diff(expected) <= 4,
            "db{}: {questions} statements for {checks} checks, not {expected}",
            index + 1
        );
    }
}
