//! The `rwsplit` binary as a user meets it: exit codes, output and help.

use std::path::Path;
use std::process::{Command, Output};

fn rwsplit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rwsplit"))
        .args(args)
        .env_remove("APP_PASSWORD")
        .env_remove("MONITOR_PASSWORD")
        .output()
        .expect("run rwsplit")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn check_config_accepts_the_shipped_proxy_yaml() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.yaml");
    let output = rwsplit(&["check-config", path.to_str().unwrap()]);
    assert_eq!(stdout(&output), "ok\n");
    assert!(output.status.success());
}

#[test]
fn check_config_warns_of_an_open_admin_api_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.yaml");
    std::fs::write(
        &path,
        "admin: { address: '0.0.0.0:6034' }\nusers: [{ name: app, password: app }]\n\
         backends: [{ name: db1, address: '127.0.0.1:3306' }]\n\
         monitor: { user: monitor, password: monitor }\n",
    )
    .unwrap();
    let output = rwsplit(&["check-config", path.to_str().unwrap()]);
    assert!(output.status.success(), "valid, only risky");
    let out = stdout(&output);
    assert!(
        out.contains("warning: admin.address 0.0.0.0:6034 is reachable from other machines"),
        "{out}"
    );
    let shipped = rwsplit(&["check-config", "proxy.yaml"]);
    assert!(
        !stdout(&shipped).contains("warning"),
        "the shipped file is quiet"
    );
}

#[test]
fn check_config_prints_five_mistakes_with_their_paths_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(
        &path,
        "listen: { address: 'nowhere' }\n\
         users: [{ name: app }]\n\
         backends:\n\
         \x20 - { name: db1, address: '127.0.0.1:3307' }\n\
         \x20 - { name: db1, adress: '127.0.0.1:3308' }\n\
         monitor: { user: m, password: m }\n\
         routing: { max_replication_lag: 0s }\n",
    )
    .unwrap();
    let output = rwsplit(&["check-config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("{}: 6 problem(s)", path.display()),
        "{text}"
    );
    for expected in [
        "  backends[1].adress: unknown key `adress`; did you mean `address`?",
        "  listen.address: `nowhere` is not an IP address and port",
        "  users[0].password: missing; expected a password",
        "  backends[1].address: missing; expected host:port",
        "  backends[1].name: duplicate backend name `db1`",
        "  routing.max_replication_lag: `0s` is zero",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "missing {expected:?} in\n{text}"
        );
    }
}

#[test]
fn check_config_names_a_missing_file() {
    let output = rwsplit(&["check-config", "/nonexistent/proxy.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("cannot read config file /nonexistent/proxy.yaml"));
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for subcommand in [
        "serve",
        "demo",
        "check-config",
        "status",
        "switchover",
        "failover",
        "sandbox",
    ] {
        let output = rwsplit(&[subcommand, "--help"]);
        assert!(output.status.success());
        let help = stdout(&output);
        assert!(
            help.contains("Example"),
            "{subcommand} --help has no example:\n{help}"
        );
        assert!(help.contains(&format!("rwsplit {subcommand}")), "{help}");
    }
}

#[test]
fn switchover_without_a_running_rwsplit_says_where_it_looked_and_exits_1() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let admin = format!("http://127.0.0.1:{port}");
    for change in ["switchover", "failover"] {
        let output = rwsplit(&[change, "--admin", &admin]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("cannot reach the admin API at 127.0.0.1:{port}"))
                && stderr.contains("Is rwsplit running"),
            "{stderr}"
        );
    }
}

#[test]
fn docker_compose_yml_is_valid() {
    let output = Command::new("docker-compose")
        .args([
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"),
            "config",
            "-q",
        ])
        .output()
        .expect("docker-compose is not installed; scripts/test installs it");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn serve_names_every_problem_of_a_bad_config_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, "listen: { address: 'nowhere' }\n").unwrap();
    let output = rwsplit(&["serve", "-c", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listen.address"), "{stderr}");
    assert!(stderr.contains("users: no users"), "{stderr}");
}
