//! What rwsplit shows when it is given bad input: no secret, ever.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Secrets given through the environment, and one written in the file.
const FROM_ENV: [(&str, &str); 4] = [
    ("APP_PASSWORD", "S3cret-App-1"),
    ("MONITOR_PASSWORD", "S3cret-Mon-2"),
    ("ADMIN_TOKEN", "S3cret-Tok-3"),
    ("BROKEN", "S3cret: {[x"),
];
const WRITTEN: &str = "S3cret-Lit-4";

/// A configuration whose `users`, `monitor`, `admin` and `failover`
/// sections hold the secrets, with `broken` in place of the `backends`
/// section.
fn config(broken: &str) -> String {
    format!(
        "listen: {{ address: '127.0.0.1:0' }}\n\
         admin: {{ address: '127.0.0.1:0', token: ${{ADMIN_TOKEN}} }}\n\
         users:\n  - {{ name: app, password: ${{APP_PASSWORD}} }}\n\
         monitor: {{ user: monitor, password: ${{MONITOR_PASSWORD}} }}\n\
         failover: {{ replication_user: repl, replication_password: {WRITTEN} }}\n\
         {broken}\n"
    )
}

/// Twenty ways to break a file.
const BROKEN: [&str; 20] = [
    "backends:\n  - { name: db1, address: '127.0.0.1:1'",
    "backends:\n - name: db1\n   address: x\n  - name: db2",
    "backends:\n\t- { name: db1, address: '127.0.0.1:1' }",
    "backends:\n  - { name: db1, address: ${BROKEN} }",
    "backends: []\nbackends: []",
    "backends:\n  - { name: db1, address: '127.0.0.1:1', adress: x }",
    "backends:\n  - { name: db1, address: 'not an address' }",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }\nrouting: { wait_for_primary: soon }",
    "backends: []",
    "backends:\n  - { name: 'db1, address: 127.0.0.1:1 }",
    "backends:\n  - { name: db1, address: ${UNSET_VARIABLE} }",
    "backends:\n  - { name: db1, address: ${APP_PASSWORD }",
    "backends:\n- name: db1\n    address: x",
    "backends: *nowhere",
    "backends:\n  - { name: ${BROKEN}, address: '127.0.0.1:1' }",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }\nlisten: { address: ${BROKEN} }",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }\nfailover: { auto: maybe }",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }\nadmin: { token: ${ADMIN_TOKEN}, token: x }",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }\nusers: [{ name: app, password: { nested: ${APP_PASSWORD} } }]",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }]",
];

/// Everything `rwsplit args...` printed, stdout and stderr; it is stopped
/// if it runs for more than 10 s (a configuration it accepted).
fn output(args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rwsplit"));
    command
        .args(args)
        .envs(FROM_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("rwsplit runs");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "rwsplit {args:?} kept running on a broken configuration"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = child.wait_with_output().expect("output");
    assert!(
        !done.status.success(),
        "rwsplit {args:?} accepted a broken configuration"
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    )
}

#[test]
fn no_secret_is_printed_whatever_breaks_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    for (index, broken) in BROKEN.iter().enumerate() {
        let path = dir.path().join(format!("broken-{index}.yaml"));
        std::fs::write(&path, config(broken)).unwrap();
        let path = path.to_str().unwrap();
        for args in [vec!["check-config", path], vec!["serve", "-c", path]] {
            let printed = output(&args);
            assert!(!printed.trim().is_empty(), "{args:?} said nothing");
            for secret in FROM_ENV.iter().map(|(_, value)| *value).chain([WRITTEN]) {
                assert!(
                    !printed.contains(secret),
                    "{args:?} on\n{}\nprinted the secret {secret:?}:\n{printed}",
                    config(broken)
                );
            }
        }
    }
}
