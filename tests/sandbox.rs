//! The sandbox: replication works, accounts are right, and no server outlives
//! the process that started it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use rwsplit::sandbox::{APP, MONITOR, SandboxOptions, is_alive};

/// Which role a re-executed copy of this test binary plays (see below).
const CHILD_MODE: &str = "RWSPLIT_SANDBOX_CHILD_MODE";

#[tokio::test]
async fn a_row_written_on_the_primary_is_read_on_every_replica() {
    let sandbox = common::shared_sandbox();
    let marker = format!("row-{}", std::process::id());
    let mut primary = Conn::new(sandbox.primary().opts(&APP)).await.unwrap();
    primary
        .query_drop(
            "CREATE DATABASE IF NOT EXISTS sandbox_test; \
             CREATE TABLE IF NOT EXISTS sandbox_test.rows (id INT AUTO_INCREMENT PRIMARY KEY, marker VARCHAR(64))",
        )
        .await
        .unwrap();
    primary
        .exec_drop(
            "INSERT INTO sandbox_test.rows (marker) VALUES (?)",
            (&marker,),
        )
        .await
        .unwrap();
    sandbox.sync_replicas().await.unwrap();

    assert_eq!(sandbox.replicas().len(), 2);
    for replica in sandbox.replicas() {
        let mut conn = Conn::new(replica.opts(&APP)).await.unwrap();
        let (server_id, found): (u32, Option<String>) = conn
            .exec_first(
                "SELECT @@server_id, (SELECT marker FROM sandbox_test.rows WHERE marker = ?)",
                (&marker,),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            server_id, replica.server_id,
            "connected to the wrong server"
        );
        assert_eq!(
            found.as_deref(),
            Some(marker.as_str()),
            "row missing on {}",
            replica.name
        );
    }
}

#[tokio::test]
async fn replicas_replicate_with_gtid_and_refuse_application_writes() {
    let sandbox = common::shared_sandbox();
    for replica in sandbox.replicas() {
        let mut admin = replica.admin().await.unwrap();
        let status: mysql_async::Row = admin
            .query_first("SHOW SLAVE STATUS")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.get::<String, _>("Using_Gtid").unwrap(), "Slave_Pos");
        assert_eq!(status.get::<String, _>("Slave_IO_Running").unwrap(), "Yes");
        assert_eq!(status.get::<String, _>("Slave_SQL_Running").unwrap(), "Yes");

        let mut app = Conn::new(replica.opts(&APP)).await.unwrap();
        let error = app
            .query_drop("CREATE DATABASE should_not_exist")
            .await
            .expect_err("a replica accepted a write from the application user");
        match error {
            mysql_async::Error::Server(e) => assert_eq!(e.code, 1290, "{e}"),
            other => panic!("unexpected error {other}"),
        }
    }
}

#[tokio::test]
async fn the_monitor_account_can_read_replication_state_and_fence() {
    let sandbox = common::shared_sandbox();
    let replica = &sandbox.replicas()[0];
    let mut monitor = Conn::new(replica.opts(&MONITOR)).await.unwrap();
    let status: Option<mysql_async::Row> = monitor.query_first("SHOW SLAVE STATUS").await.unwrap();
    assert!(status.is_some());
    let grants: Vec<String> = monitor.query("SHOW GRANTS").await.unwrap();
    let all = grants.join("\n");
    for privilege in [
        "READ_ONLY ADMIN",
        "REPLICATION SLAVE ADMIN",
        "SLAVE MONITOR",
        "BINLOG MONITOR",
    ] {
        assert!(all.contains(privilege), "monitor lacks {privilege}: {all}");
    }
}

#[test]
fn a_sandbox_starts_well_under_thirty_seconds() {
    let started = Instant::now();
    let sandbox = common::start_sandbox(SandboxOptions {
        replicas: 1,
        ..Default::default()
    });
    assert!(sandbox.startup() <= started.elapsed());
    assert!(
        sandbox.startup() < Duration::from_secs(20),
        "start-up took {:?}",
        sandbox.startup()
    );
    let pids: Vec<u32> = sandbox.servers().iter().map(|s| s.pid()).collect();
    let dir = sandbox.dir().to_owned();
    drop(sandbox);
    for pid in pids {
        assert!(!is_alive(pid), "server {pid} still running after drop");
    }
    assert!(
        !dir.exists(),
        "temporary directory {} left behind",
        dir.display()
    );
}

#[test]
fn a_non_empty_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious"), "data").unwrap();
    let error = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(rwsplit::sandbox::Sandbox::start(SandboxOptions {
            replicas: 1,
            dir: Some(dir.path().to_owned()),
            ..Default::default()
        }))
        .expect_err("a non-empty directory was used");
    assert!(error.to_string().contains("is not empty"), "{error}");
    assert!(dir.path().join("precious").exists());
}

/// Runs this test binary again as a child that starts a sandbox, prints its
/// server PIDs and directory, then behaves as `mode` says.
fn spawn_child(test_name: &str, mode: &str) -> (std::process::Child, Vec<u32>, std::path::PathBuf) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MODE, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        // libtest prints "test name ... " without a newline before the test
        // runs, so the marker may follow it on the same line.
        if let Some((_, rest)) = line.split_once("SANDBOX ") {
            let (dir, pids) = rest.split_once(' ').unwrap();
            let pids = pids.split(',').map(|p| p.parse().unwrap()).collect();
            return (child, pids, dir.into());
        }
    }
    panic!(
        "child exited before its sandbox started: {:?}",
        child.wait()
    );
}

/// What a child started by [`spawn_child`] does.
fn child_main(mode: &str) {
    let sandbox = common::start_sandbox(SandboxOptions {
        replicas: 1,
        ..Default::default()
    });
    let pids: Vec<String> = sandbox
        .servers()
        .iter()
        .map(|s| s.pid().to_string())
        .collect();
    println!("SANDBOX {} {}", sandbox.dir().display(), pids.join(","));
    match mode {
        "panic" => panic!("deliberate panic with a running sandbox"),
        _ => std::thread::sleep(Duration::from_secs(120)),
    }
}

/// Waits until the orphaned servers are dead, and reaps them: this test
/// process made itself their subreaper.
fn wait_until_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while pids.iter().any(|&pid| is_alive(pid)) {
        assert!(
            Instant::now() < deadline,
            "servers {pids:?} outlived their sandbox"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in pids {
        // SAFETY: waitpid with a null status pointer is always sound.
        // Blocks until the last thread of the process is gone; returns at
        // once (ECHILD) if it was not re-parented to us.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
    }
}

#[test]
fn servers_do_not_outlive_a_panicking_test() {
    if let Ok(mode) = std::env::var(CHILD_MODE) {
        return child_main(&mode);
    }
    let (mut child, pids, dir) = spawn_child("servers_do_not_outlive_a_panicking_test", "panic");
    assert_eq!(pids.len(), 2);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was meant to panic");
    // Unwinding dropped the sandbox: servers stopped, directory removed.
    for pid in &pids {
        assert!(!is_alive(*pid), "server {pid} outlived the panicking test");
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn servers_do_not_outlive_a_killed_process() {
    if let Ok(mode) = std::env::var(CHILD_MODE) {
        return child_main(&mode);
    }
    // Orphans are re-parented to us instead of to PID 1, so that we can reap
    // them (a container's PID 1 often reaps nothing).
    // SAFETY: prctl with these arguments has no memory-safety preconditions.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    let (mut child, pids, dir) = spawn_child("servers_do_not_outlive_a_killed_process", "hang");
    assert!(pids.iter().all(|&pid| is_alive(pid)));
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    wait_until_gone(&pids);
    // Nothing could remove the directory; this test does.
    std::fs::remove_dir_all(dir).unwrap();
}

/// Several sandboxes starting at once (tests run in parallel) do not
/// disturb each other: concurrent mariadb-install-db runs once failed on
/// each other's temporary files in a shared /tmp.
#[test]
fn sandboxes_start_concurrently() {
    let starts: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                common::start_sandbox(SandboxOptions {
                    replicas: 0,
                    ..Default::default()
                })
            })
        })
        .collect();
    for start in starts {
        let sandbox = start.join().expect("a sandbox started");
        assert_eq!(sandbox.servers().len(), 1);
    }
}
