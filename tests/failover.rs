//! Switchover and failover against real servers, through the admin API and
//! the `rwsplit` command, with an application writing through the proxy
//! all along. What the tests check is read from the servers themselves:
//! `@@read_only`, `SHOW SLAVE STATUS`, and the rows each one holds.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use rwsplit::config::LockQuorum;
use rwsplit::sandbox::{Sandbox, SandboxOptions};

use common::{TestProxy, admin, ask, caught_up, eventually, metrics, start_watched as start};

/// Held for the whole of each test: each starts servers of its own and
/// times the monitor.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Writes rows 0, 1, 2... through the proxy until told to stop, retrying
/// a row that failed (there is no primary for a moment during a change);
/// what it saw.
struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Written>,
}

struct Written {
    acknowledged: Vec<u32>,
    /// When each acknowledged row was.
    when: Vec<Instant>,
    errors: Vec<String>,
    /// The longest a write took.
    slowest: Duration,
}

impl Writer {
    fn start(proxy: &TestProxy) -> Writer {
        Writer::from(proxy, 0)
    }

    fn from(proxy: &TestProxy, first: u32) -> Writer {
        Writer::writing(proxy, first, false)
    }

    /// A writer of rows `first`, `first + 1`..., with prepared statements
    /// or text ones.
    fn writing(proxy: &TestProxy, first: u32, prepared: bool) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let opts = proxy.opts();
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut when = Vec::new();
            let mut errors = Vec::new();
            let mut slowest = Duration::ZERO;
            let mut conn: Option<Conn> = None;
            let mut id = first;
            while !stopping.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = Conn::new(opts.clone()).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let sent = Instant::now();
                let result = match prepared {
                    true => {
                        let insert = "INSERT INTO app.t (id, writer) VALUES (?, @@server_id)";
                        c.exec_drop(insert, (id,)).await
                    }
                    false => {
                        let insert =
                            format!("INSERT INTO app.t (id, writer) VALUES ({id}, @@server_id)");
                        c.query_drop(insert).await
                    }
                };
                slowest = slowest.max(sent.elapsed());
                match result {
                    Ok(()) => {
                        acknowledged.push(id);
                        when.push(Instant::now());
                        id += 1;
                    }
                    Err(error) => {
                        errors.push(error.to_string());
                        if matches!(error, mysql_async::Error::Io(_)) {
                            conn = None;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            Written {
                acknowledged,
                when,
                errors,
                slowest,
            }
        });
        Writer { stop, task }
    }

    async fn finish(self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the writer")
    }
}

/// The ids in app.t on server `index`.
/// Waits until the monitor marks db1, the first primary, down.
async fn primary_marked_down(proxy: &TestProxy) {
    eventually("the monitor marks the primary down", || async {
        !proxy.proxy.topology.load().backends[0].healthy
    })
    .await;
}

async fn rows(sandbox: &Sandbox, index: usize) -> Vec<u32> {
    admin(sandbox, index)
        .await
        .query("SELECT id FROM app.t ORDER BY id")
        .await
        .unwrap()
}

/// `(read_only, replicates from port, IO and SQL threads running)`.
async fn role(sandbox: &Sandbox, index: usize) -> (bool, Option<(u16, bool)>) {
    let mut conn = admin(sandbox, index).await;
    let read_only: bool = conn
        .query_first("SELECT @@read_only")
        .await
        .unwrap()
        .unwrap();
    let status: Option<Row> = conn.query_first("SHOW SLAVE STATUS").await.unwrap();
    let source = status.map(|row| {
        let text = |name: &str| row.get::<String, _>(name).unwrap_or_default();
        (
            text("Master_Port").parse().unwrap(),
            text("Slave_IO_Running") == "Yes" && text("Slave_SQL_Running") == "Yes",
        )
    });
    (read_only, source)
}

async fn create_table(proxy: &TestProxy) {
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, writer INT NOT NULL)",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn switchover_under_writes_loses_no_acknowledged_write() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |_| {});
    create_table(&proxy).await;
    // Autocommit writers, text and prepared.
    let writers: Vec<Writer> = (0..8)
        .map(|i| Writer::writing(&proxy, i * 1_000_000, i % 2 == 1))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let lines = ask(&proxy, "/switchover?to=db2").await.unwrap();
    let text = lines.join("\n");
    for step in [
        "taking the topology lock",
        "plan: db2 becomes the primary; db3 will replicate from it",
        "fencing db1: read_only = ON",
        "for db2 to apply db1's last transactions",
        "promoting db2",
        "db3 replicates from db2",
        "db1 replicates from db2",
    ] {
        assert!(text.contains(step), "no `{step}` in:\n{text}");
    }
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("done: db2 is the primary"),
        "{text}"
    );
    assert_eq!(proxy.proxy.topology.primary(), Some(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut acknowledged, mut errors, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
    for writer in writers {
        let written = writer.finish().await;
        acknowledged.extend(written.acknowledged);
        errors.extend(written.errors);
        slowest = slowest.max(written.slowest);
    }
    acknowledged.sort_unstable();
    eprintln!(
        "{} writes, {} refused, the slowest took {slowest:?}",
        acknowledged.len(),
        errors.len()
    );

    // Writes went on, to db2 since the switchover: while there was no
    // primary they waited (routing.wait_for_primary), and one on its way
    // to db1 as it was fenced, refused there as read-only, ran on db2.
    assert!(acknowledged.len() > 10, "{} writes", acknowledged.len());
    assert!(errors.is_empty(), "{errors:?}");
    let last: u32 = admin(&sandbox, 1)
        .await
        .query_first("SELECT writer FROM app.t ORDER BY id DESC LIMIT 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last, 2, "the last write ran on db2 (server id 2)");

    // Every server: the same rows, every acknowledged one; db1 and db3
    // read-only replicas of db2.
    let db2_port = sandbox.servers()[1].port;
    for index in [0, 2] {
        caught_up(&sandbox, 1, index).await;
        assert_eq!(role(&sandbox, index).await, (true, Some((db2_port, true))));
    }
    assert_eq!(role(&sandbox, 1).await, (false, None));
    for index in 0..3 {
        assert_eq!(rows(&sandbox, index).await, acknowledged, "server {index}");
    }

    // And back with the command, which prints each step and exits 0.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rwsplit"))
        .args(["switchover", "--to", "db1", "--admin"])
        .arg(proxy.admin_addr.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("fencing db2"), "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("done: db1 is the primary"),
        "{stdout}"
    );
    assert_eq!(proxy.proxy.topology.primary(), Some(0));
    let db1_port = sandbox.servers()[0].port;
    assert_eq!(role(&sandbox, 1).await, (true, Some((db1_port, true))));
    let metrics = metrics(&proxy).await;
    assert!(
        metrics.contains("rwsplit_topology_changes_total{kind=\"switchover\",result=\"done\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn refused_changes_change_nothing() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |_| {});

    let unknown = ask(&proxy, "/switchover?to=db9").await.unwrap_err();
    assert!(
        unknown.contains("404")
            && unknown.contains("no backend named `db9`; the backends are db1, db2, db3"),
        "{unknown}"
    );
    let already = ask(&proxy, "/switchover?to=db1").await.unwrap();
    assert_eq!(
        already.last().unwrap(),
        "failed: db1 is already the primary"
    );
    let alive = ask(&proxy, "/failover").await.unwrap();
    assert_eq!(
        alive.last().unwrap(),
        "failed: the primary db1 answers: use `rwsplit switchover` to replace a working primary"
    );
    sandbox.servers()[2]
        .admin()
        .await
        .unwrap()
        .query_drop("STOP SLAVE IO_THREAD")
        .await
        .unwrap();
    let stopped = ask(&proxy, "/switchover?to=db3").await.unwrap();
    assert_eq!(
        stopped.last().unwrap(),
        "failed: db3 cannot be promoted: its IO thread is stopped"
    );

    // The command says so too, and exits 1.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rwsplit"))
        .args(["switchover", "--to", "db1", "--admin"])
        .arg(proxy.admin_addr.to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("failed: db1 is already the primary"));

    assert_eq!(role(&sandbox, 0).await, (false, None));
    assert_eq!(proxy.proxy.topology.primary(), Some(0));
    let db1_port = sandbox.servers()[0].port;
    assert_eq!(role(&sandbox, 1).await, (true, Some((db1_port, true))));
    let metrics = metrics(&proxy).await;
    assert!(
        metrics.contains("rwsplit_topology_changes_total{kind=\"switchover\",result=\"failed\"} 3")
            && metrics
                .contains("rwsplit_topology_changes_total{kind=\"failover\",result=\"failed\"} 1")
            && metrics
                .contains("rwsplit_topology_changes_total{kind=\"switchover\",result=\"done\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_killed_primary_is_replaced_and_fenced_when_it_returns() {
    let _serial = one_at_a_time().await;
    let mut sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |config| config.failover.auto = true);
    create_table(&proxy).await;
    let writer = Writer::start(&proxy);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = writer.finish().await.acknowledged;
    // Asynchronous replication: only what the replicas received can
    // survive the primary. The test waits for it so as to check that
    // nothing received is lost on the way.
    caught_up(&sandbox, 0, 1).await;
    caught_up(&sandbox, 0, 2).await;

    sandbox.servers()[0].signal(libc::SIGKILL).unwrap();
    let killed = Instant::now();
    eventually("a replica is promoted", || async {
        matches!(proxy.proxy.topology.primary(), Some(1 | 2))
    })
    .await;
    let new = proxy.proxy.topology.primary().unwrap();
    let other = 3 - new;
    eprintln!("failover to db{} took {:?}", new + 1, killed.elapsed());

    // Writes work again, on the new primary; the other replica follows it.
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("INSERT INTO app.t (id, writer) VALUES (100000, @@server_id)")
        .await
        .unwrap();
    let new_port = sandbox.servers()[new].port;
    assert_eq!(role(&sandbox, new).await, (false, None));
    caught_up(&sandbox, new, other).await;
    assert_eq!(role(&sandbox, other).await, (true, Some((new_port, true))));
    let mut expected = before.clone();
    expected.push(100000);
    assert_eq!(rows(&sandbox, new).await, expected);
    assert_eq!(rows(&sandbox, other).await, expected);

    // The old primary comes back writable, as its configuration says,
    // while the rwsplit that failed over is gone (redeployed, say): another
    // one — without failover.auto — tells it from the new primary by the
    // replica that follows the new one, keeps writing there, makes the old
    // one read-only and a replica of the new one.
    drop(proxy);
    let proxy = start(&sandbox, |_| {});
    sandbox.servers_mut()[0].restart().await.unwrap();
    eventually("the old primary is fenced and replicates", || async {
        role(&sandbox, 0).await == (true, Some((new_port, true)))
    })
    .await;
    // How long two servers were writable, as this rwsplit saw it.
    let metrics = metrics(&proxy).await;
    let writable: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rwsplit_stray_writable_seconds_total "))
        .expect(&metrics)
        .parse()
        .unwrap();
    assert!(writable > 0.0 && writable < 10.0, "{writable}");
    conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("INSERT INTO app.t (id, writer) VALUES (100001, @@server_id)")
        .await
        .unwrap();
    expected.push(100001);
    caught_up(&sandbox, new, 0).await;
    assert_eq!(rows(&sandbox, 0).await, expected);
    eventually("the monitor sees the old primary as a replica", || async {
        let topology = proxy.proxy.topology.load();
        topology.primary == Some(new) && topology.alarm.is_none() && topology.backends[0].readable
    })
    .await;
}

#[tokio::test]
async fn sidecars_watching_the_same_servers_fail_over_once_and_agree() {
    let _serial = one_at_a_time().await;
    let mut sandbox = common::start_sandbox(SandboxOptions::default());
    let sidecars = [
        start(&sandbox, |config| config.failover.auto = true),
        start(&sandbox, |config| config.failover.auto = true),
    ];
    create_table(&sidecars[0]).await;
    caught_up(&sandbox, 0, 1).await;
    caught_up(&sandbox, 0, 2).await;

    sandbox.servers()[0].signal(libc::SIGKILL).unwrap();
    eventually("both sidecars see a new primary", || async {
        sidecars
            .iter()
            .all(|s| matches!(s.proxy.topology.primary(), Some(1 | 2)))
    })
    .await;
    let new = sidecars[0].proxy.topology.primary().unwrap();
    assert_eq!(sidecars[1].proxy.topology.primary(), Some(new));
    let other = 3 - new;
    let new_port = sandbox.servers()[new].port;
    // One promotion: the other replica follows the new primary, which
    // replicates from nobody.
    assert_eq!(role(&sandbox, new).await, (false, None));
    assert_eq!(role(&sandbox, other).await, (true, Some((new_port, true))));

    // Both write to it, and the old primary, back, ends a replica in both
    // views.
    for (n, sidecar) in sidecars.iter().enumerate() {
        let mut conn = Conn::new(sidecar.opts()).await.unwrap();
        conn.query_drop(format!(
            "INSERT INTO app.t (id, writer) VALUES ({n}, @@server_id)"
        ))
        .await
        .unwrap();
    }
    sandbox.servers_mut()[0].restart().await.unwrap();
    eventually("the old primary replicates from the new one", || async {
        role(&sandbox, 0).await == (true, Some((new_port, true)))
    })
    .await;
    caught_up(&sandbox, new, 0).await;
    assert_eq!(rows(&sandbox, 0).await, vec![0, 1]);
    eventually("both sidecars agree on every backend", || async {
        sidecars.iter().all(|s| {
            let topology = s.proxy.topology.load();
            topology.primary == Some(new)
                && topology.alarm.is_none()
                && topology.backends[0].readable
                && topology.backends[other].readable
        })
    })
    .await;
}

#[tokio::test]
async fn a_change_needs_the_topology_lock_on_a_majority() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |_| {});
    // Another rwsplit, mid-change, holds the lock on db2 and db3.
    let mut holders = Vec::new();
    for index in [1, 2] {
        let mut conn = admin(&sandbox, index).await;
        let got: Option<i64> = conn
            .query_first("SELECT GET_LOCK('rwsplit.topology', 0)")
            .await
            .unwrap();
        assert_eq!(got, Some(1));
        holders.push(conn);
    }
    let lines = ask(&proxy, "/switchover").await.unwrap();
    let last = lines.last().unwrap();
    assert!(
        last.starts_with(
            "failed: the topology lock is held on 1 of 3 servers, and a change needs a majority (2)"
        ) && last.contains("db2: take the topology lock: another rwsplit holds it")
            && last.contains("db3: take the topology lock"),
        "{last}"
    );
    assert_eq!(role(&sandbox, 0).await, (false, None));
    assert_eq!(proxy.proxy.topology.primary(), Some(0));

    // Once the other is done, the lock is free (db1's was released too).
    drop(holders);
    let lines = ask(&proxy, "/switchover?to=db3").await.unwrap();
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("done: db3 is the primary"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_switchover_the_target_cannot_catch_up_with_is_undone() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |config| {
        config.failover.timeout = Duration::from_secs(1);
        // A lagging replica stays in rotation: the switchover is what is tested.
        config.routing.max_replication_lag = Duration::from_secs(60);
    });
    create_table(&proxy).await;
    // db2 applies every transaction 30 s late.
    let mut db2 = admin(&sandbox, 1).await;
    db2.query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 30; START SLAVE")
        .await
        .unwrap();
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("INSERT INTO app.t VALUES (1, @@server_id)")
        .await
        .unwrap();

    let lines = ask(&proxy, "/switchover?to=db2").await.unwrap();
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("failed: db2: SELECT MASTER_GTID_WAIT(")
            && last.contains("after 1s; db1 is writable again and nothing else was changed"),
        "{last}"
    );
    assert_eq!(role(&sandbox, 0).await, (false, None));
    let db1_port = sandbox.servers()[0].port;
    assert_eq!(role(&sandbox, 1).await, (true, Some((db1_port, true))));
    assert_eq!(role(&sandbox, 2).await, (true, Some((db1_port, true))));
    // And writes go on to db1.
    conn.query_drop("INSERT INTO app.t VALUES (2, @@server_id)")
        .await
        .unwrap();
    let writer: u32 = admin(&sandbox, 0)
        .await
        .query_first("SELECT writer FROM app.t WHERE id = 2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(writer, 1);
}

/// A primary that only rwsplit cannot reach is left alone: the failover
/// listens to the replicas and hears it still sends them heartbeats.
#[tokio::test]
async fn a_primary_the_replicas_still_hear_is_not_failed_over() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |_| {});
    // As behind a partition between rwsplit and the primary: rwsplit's
    // account can no longer log in to it, while the replicas go on
    // receiving from it (heartbeats, with nothing written).
    let mut primary = admin(&sandbox, 0).await;
    primary
        .query_drop("SET SESSION sql_log_bin = 0; ALTER USER monitor ACCOUNT LOCK")
        .await
        .unwrap();
    let monitors: Vec<u64> = primary
        .query("SELECT id FROM information_schema.processlist WHERE user = 'monitor'")
        .await
        .unwrap();
    for id in monitors {
        // It may have ended meanwhile.
        let _ = primary.query_drop(format!("KILL {id}")).await;
    }
    primary_marked_down(&proxy).await;
    let lines = ask(&proxy, "/failover").await.unwrap();
    primary
        .query_drop("ALTER USER monitor ACCOUNT UNLOCK")
        .await
        .unwrap();
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("failed: db")
            && last.contains("still receives from the primary db1 (it received from it within 2s)"),
        "{last}"
    );
    assert!(
        lines.iter().any(|line| line.contains("listening 2s")),
        "{lines:?}"
    );
    for index in [1, 2] {
        assert!(role(&sandbox, index).await.0, "db{} read-only", index + 1);
    }
    eventually("db1 is the primary again", || async {
        let topology = proxy.proxy.topology.load();
        topology.primary == Some(0) && topology.backends[0].healthy
    })
    .await;
}

#[tokio::test]
async fn two_backends_fail_over_with_the_lock_of_a_majority_of_those_running() {
    let _serial = one_at_a_time().await;
    let mut sandbox = common::start_sandbox(SandboxOptions {
        replicas: 1,
        ..SandboxOptions::default()
    });
    let of_all = start(&sandbox, |_| {});
    let of_running = start(&sandbox, |config| {
        config.failover.lock_quorum = LockQuorum::MajorityOfRunning;
    });
    create_table(&of_all).await;
    let mut conn = Conn::new(of_all.opts()).await.unwrap();
    conn.query_drop("INSERT INTO app.t (id, writer) VALUES (1, @@server_id)")
        .await
        .unwrap();
    caught_up(&sandbox, 0, 1).await;
    sandbox.servers()[0].signal(libc::SIGKILL).unwrap();

    // By default a change needs the lock on both servers: the replica
    // alone is not a majority of two.
    let refused = ask(&of_all, "/failover").await.unwrap();
    let last = refused.last().unwrap();
    assert!(
        last.starts_with(
            "failed: the topology lock is held on 1 of 2 servers, and a change needs a majority \
             (2); db1: connect with the monitor account"
        ),
        "{last}"
    );
    assert!(role(&sandbox, 1).await.0, "db2 is still read-only");

    // With `lock_quorum: majority_of_running` the replica, the one server
    // that answers, is enough. (The replica must first see its primary
    // gone, which a SIGKILL makes quick.)
    let started = Instant::now();
    let lines = loop {
        let lines = ask(&of_running, "/failover").await.unwrap();
        if lines.last().unwrap().starts_with("done:") {
            break lines;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{lines:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("on a majority of the 2 backends that answer")),
        "{lines:?}"
    );
    assert_eq!(role(&sandbox, 1).await, (false, None));

    // Both rwsplits write to the new primary.
    eventually("the first rwsplit sees db2 as the primary", || async {
        of_all.proxy.topology.primary() == Some(1)
    })
    .await;
    let mut conn = Conn::new(of_all.opts()).await.unwrap();
    conn.query_drop("INSERT INTO app.t (id, writer) VALUES (2, @@server_id)")
        .await
        .unwrap();
    assert_eq!(rows(&sandbox, 1).await, [1, 2]);

    // The old primary comes back writable, and no replica is left to say
    // which of the two is the primary: db2 is, with every transaction db1
    // has and more. Writes stay there, and db1 is fenced and follows it.
    sandbox.servers_mut()[0].restart().await.unwrap();
    let db2_port = sandbox.servers()[1].port;
    eventually("the old primary is fenced and replicates", || async {
        role(&sandbox, 0).await == (true, Some((db2_port, true)))
    })
    .await;
    conn.query_drop("INSERT INTO app.t (id, writer) VALUES (3, @@server_id)")
        .await
        .unwrap();
    caught_up(&sandbox, 1, 0).await;
    assert_eq!(rows(&sandbox, 0).await, [1, 2, 3]);
    eventually("db2 the primary for both, no alarm", || async {
        [&of_all, &of_running].iter().all(|rwsplit| {
            let topology = rwsplit.proxy.topology.load();
            topology.primary == Some(1) && topology.alarm.is_none()
        })
    })
    .await;
}

/// A primary that freezes (a stuck disk, a paused VM) while writers wait
/// on it, and resumes after a failover: the statements it held commit on
/// it when it resumes, but none of those commits may be acknowledged to a
/// client — rwsplit cut its connections to it before promoting a replica.
/// Every acknowledged write is on the new primary.
#[tokio::test]
async fn a_frozen_primary_acknowledges_nothing_after_the_failover() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    // The replicas' IO threads keep saying they receive from it (until
    // slave_net_timeout, 60 s): the failover tells it is hung because
    // its heartbeats stop (MASTER_HEARTBEAT_PERIOD 1 s, as the sandbox
    // and rwsplit set it).
    let proxy = start(&sandbox, |config| config.failover.auto = true);
    create_table(&proxy).await;
    let writers: Vec<Writer> = (0..4)
        .map(|i| Writer::from(&proxy, i * 1_000_000))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sandbox.servers()[0].signal(libc::SIGSTOP).unwrap();
    let frozen = Instant::now();
    eventually("a replica is promoted", || async {
        matches!(proxy.proxy.topology.primary(), Some(1 | 2))
    })
    .await;
    eprintln!(
        "failover from the frozen primary took {:?}",
        frozen.elapsed()
    );
    let new = proxy.proxy.topology.primary().unwrap();
    // The writers go on against the new primary; then the old one resumes
    // and runs what it held.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sandbox.servers()[0].signal(libc::SIGCONT).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut acknowledged = Vec::new();
    for writer in writers {
        let written = writer.finish().await;
        acknowledged.extend(written.acknowledged.into_iter().zip(written.when));
    }
    let on_new: std::collections::BTreeSet<u32> = rows(&sandbox, new).await.into_iter().collect();
    let (missing_before, missing_after): (Vec<&(u32, Instant)>, Vec<_>) = acknowledged
        .iter()
        .filter(|(id, _)| !on_new.contains(id))
        .partition(|(_, when)| *when < frozen + Duration::from_millis(100));
    // With asynchronous replication a write the primary acknowledged just
    // before it froze may not have reached a replica: that loss is the
    // replication's (semi-synchronous replication closes it). What it ran
    // while frozen must never be acknowledged.
    eprintln!("lost to asynchronous replication: {missing_before:?}");
    assert!(
        missing_after.is_empty(),
        "acknowledged after the primary froze, and missing on the new primary db{}: {missing_after:?}",
        new + 1
    );
    assert!(
        acknowledged.len() > 10,
        "the writers wrote: {acknowledged:?}"
    );
}

/// A failed primary that comes back with transactions no other server has
/// (acknowledged, never replicated) has diverged from the promoted one,
/// even though the promoted one's GTID sequence numbers have since grown
/// past its own: it is made read-only and left out of replication, not
/// pointed at the new primary.
#[tokio::test]
async fn a_diverged_old_primary_stays_fenced_and_out_of_replication() {
    let _serial = one_at_a_time().await;
    let mut sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |_| {});
    create_table(&proxy).await;
    caught_up(&sandbox, 0, 1).await;
    caught_up(&sandbox, 0, 2).await;
    // Rows 1 to 3 reach only the primary: the replicas stopped listening.
    for index in [1, 2] {
        admin(&sandbox, index)
            .await
            .query_drop("STOP SLAVE IO_THREAD")
            .await
            .unwrap();
    }
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    for id in 1..=3 {
        conn.query_drop(format!("INSERT INTO app.t (id, writer) VALUES ({id}, 1)"))
            .await
            .unwrap();
    }
    drop(conn);
    sandbox.servers()[0].signal(libc::SIGKILL).unwrap();
    primary_marked_down(&proxy).await;
    let lines = ask(&proxy, "/failover").await.unwrap();
    assert!(lines.last().unwrap().starts_with("done:"), "{lines:?}");
    let new = proxy.proxy.topology.primary().unwrap();
    // The new primary writes on, its sequence numbers past db1's.
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    for id in 100..120 {
        conn.query_drop(format!("INSERT INTO app.t (id, writer) VALUES ({id}, 2)"))
            .await
            .unwrap();
    }
    sandbox.servers_mut()[0].restart().await.unwrap();
    eventually("the old primary is fenced", || async {
        role(&sandbox, 0).await.0
    })
    .await;
    // Another round of the watch, at least, and it still does not replicate.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(role(&sandbox, 0).await, (true, None));
    assert_eq!(
        rows(&sandbox, 0).await,
        [1, 2, 3],
        "its rows are kept for an operator"
    );
    assert!(!rows(&sandbox, new).await.contains(&1));

    // What the crash lost is reported, until db1 replicates again.
    let lost = |count: u64| format!("rwsplit_backend_lost_transactions{{backend=\"db1\"}} {count}");
    eventually("the lost transactions are reported", || async {
        metrics(&proxy).await.contains(&lost(3))
    })
    .await;
    let alarm = proxy.proxy.reports.load()[0].replication_alarm.clone();
    let expected = format!("it has 3 transactions db{} lacks (0-1-", new + 1);
    assert!(
        alarm.as_deref().is_some_and(|a| a.starts_with(&expected)),
        "{alarm:?}"
    );
    // An operator rebuilds it (here: skips what it lacks) and starts it.
    let position: String = admin(&sandbox, new)
        .await
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    admin(&sandbox, 0)
        .await
        .query_drop(format!(
            "SET GLOBAL gtid_slave_pos = '{position}'; CHANGE MASTER TO \
             MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'repl', \
             MASTER_PASSWORD = 'repl', MASTER_USE_GTID = slave_pos; START SLAVE",
            sandbox.servers()[new].port
        ))
        .await
        .unwrap();
    eventually("the report clears once it replicates", || async {
        metrics(&proxy).await.contains(&lost(0))
            && proxy.proxy.reports.load()[0].replication_alarm.is_none()
    })
    .await;
}

/// While a killed primary is not replaced (failover.auto off), the
/// replicas that had everything it sent keep taking reads: their IO
/// threads reconnecting neither makes their lag unknown nor raises a
/// replication alarm, and a read that should wait for the writes
/// acknowledged before (read_your_writes: global) goes to the freshest
/// replica instead of asking a primary that cannot answer. Reads and
/// logins, old sessions and new, get no error and the rows written.
#[tokio::test]
async fn reads_go_on_while_a_dead_primary_is_not_replaced() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |_| {});
    create_table(&proxy).await;
    let mut writer = Conn::new(proxy.opts()).await.unwrap();
    writer
        .query_drop("INSERT INTO app.t (id, writer) VALUES (1, 1), (2, 1)")
        .await
        .unwrap();
    let mut reader = Conn::new(proxy.opts()).await.unwrap();
    let read = async |conn: &mut Conn| -> Result<Vec<u32>, mysql_async::Error> {
        conn.query("SELECT id FROM app.t ORDER BY id").await
    };
    assert_eq!(read(&mut reader).await.unwrap(), [1, 2]);
    writer
        .query_drop("INSERT INTO app.t (id, writer) VALUES (3, 1)")
        .await
        .unwrap();
    caught_up(&sandbox, 0, 1).await;
    caught_up(&sandbox, 0, 2).await;

    sandbox.servers()[0].signal(libc::SIGKILL).unwrap();
    let killed = Instant::now();
    let mut errors = Vec::new();
    let mut reads = 0;
    // Past the monitor's judgement of the primary (failure_threshold
    // checks of 200 ms) and of the replicas' IO threads.
    while killed.elapsed() < Duration::from_secs(4) {
        for conn in [&mut writer, &mut reader] {
            match read(conn).await {
                Ok(ids) => assert_eq!(ids, [1, 2, 3]),
                Err(error) => errors.push(error.to_string()),
            }
            reads += 1;
        }
        let opts = mysql_async::OptsBuilder::from_opts(proxy.opts()).db_name(Some("app"));
        match Conn::new(opts).await {
            Ok(mut fresh) => match read(&mut fresh).await {
                Ok(ids) => assert_eq!(ids, [1, 2, 3]),
                Err(error) => errors.push(error.to_string()),
            },
            Err(error) => errors.push(format!("login: {error}")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = &errors[..errors.len().min(3)];
    assert!(
        errors.is_empty(),
        "{} of {reads} reads failed, first: {first:?}",
        errors.len()
    );
    let topology = proxy.proxy.topology.load();
    assert!(!topology.backends[0].healthy, "the primary is down");
    for replica in [1, 2] {
        assert!(
            topology.backends[replica].readable,
            "db{} takes reads",
            replica + 1
        );
    }
    let metrics = metrics(&proxy).await;
    for replica in ["db2", "db3"] {
        let clear = format!("rwsplit_backend_replication_alarm{{backend=\"{replica}\"}} 0");
        assert!(metrics.contains(&clear), "{metrics}");
    }
}

/// `failover.fence_command` runs before a failover promotes anyone, told
/// which server failed; what it prints is in the failover's output. One
/// that fails stops the failover: nothing is promoted.
#[tokio::test]
async fn a_failover_runs_the_fence_command_first_and_stops_if_it_fails() {
    let _serial = one_at_a_time().await;
    let sandbox = common::start_sandbox(SandboxOptions::default());
    let proxy = start(&sandbox, |config| {
        config.failover.fence_command = Some("echo no power switch here >&2; exit 3".into());
    });
    sandbox.servers()[0].signal(libc::SIGKILL).unwrap();
    primary_marked_down(&proxy).await;
    let lines = ask(&proxy, "/failover").await.unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains("fence_command: no power switch here"),
        "{text}"
    );
    assert!(
        lines.last().unwrap().starts_with(
            "failed: db1: failover.fence_command: it ended with exit status: 3; nothing was changed"
        ),
        "{text}"
    );
    for index in [1, 2] {
        assert!(
            role(&sandbox, index).await.0,
            "db{} still read-only",
            index + 1
        );
    }
    drop(proxy);

    let fenced = sandbox.dir().join("fenced");
    let command = format!(
        "echo \"$RWSPLIT_FENCE_NAME $RWSPLIT_FENCE_ADDRESS\" > {}; echo powered off",
        fenced.display()
    );
    // Started while the primary is dead: its replicas' lag is unknown to
    // it (it never wrote a heartbeat), so it does not wait for a verdict.
    let config = common::watched_config(&sandbox, |config| {
        config.failover.fence_command = Some(command)
    });
    let proxy = common::start_proxy_unsettled(config);
    primary_marked_down(&proxy).await;
    let lines = ask(&proxy, "/failover").await.unwrap();
    let text = lines.join("\n");
    assert!(lines.last().unwrap().starts_with("done:"), "{text}");
    let fencing = text.find("fence_command: powered off").expect(&text);
    let promoting = text.find("promoting").expect(&text);
    assert!(
        fencing < promoting,
        "fenced before anyone is promoted:\n{text}"
    );
    let written = std::fs::read_to_string(&fenced).unwrap();
    assert_eq!(
        written.trim(),
        format!("db1 127.0.0.1:{}", sandbox.servers()[0].port)
    );
}
