//! The `rwsplit` command line: subcommands, their help, and their output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::admin::status::Status;
use crate::config::{Config, ConfigError};
use crate::failover::Kind;
use crate::logging::LogFormat;
use crate::sandbox::{self, Sandbox, SandboxOptions};
use crate::server;

/// rwsplit — a MySQL/MariaDB proxy that sends writes to the primary and reads
/// to replicas.
#[derive(Debug, Parser)]
#[command(
    name = "rwsplit",
    version,
    after_help = "Log verbosity comes from RUST_LOG (default: info), e.g. RUST_LOG=rwsplit=debug.\n\
                  Configuration reference: docs/configuration.md"
)]
pub struct Cli {
    /// Format of log lines on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    ///
    /// Loads and checks the configuration, then accepts MySQL clients on
    /// listen.address and relays their statements to the backends. Stops
    /// on Ctrl-C or SIGTERM: no new clients are accepted, and open sessions
    /// get 10 seconds to finish.
    #[command(
        after_help = "Example:\n  APP_PASSWORD=secret rwsplit serve -c /etc/rwsplit/proxy.yaml"
    )]
    Serve {
        /// The configuration file.
        #[arg(short, long, default_value = "proxy.yaml")]
        config: PathBuf,
    },

    /// Start a local sandbox and serve it: the quickest way to try rwsplit.
    ///
    /// Starts a MariaDB primary and two replicas (as `rwsplit sandbox`
    /// does), points the configuration's backends at them through the
    /// DB1_ADDRESS, DB2_ADDRESS and DB3_ADDRESS variables, and serves on the
    /// configuration's listen address (127.0.0.1:6033 in the shipped
    /// proxy.yaml). Ctrl-C stops the proxy and the servers.
    #[command(after_help = "Example:\n  rwsplit demo\n  mariadb -h 127.0.0.1 -P 6033 -u app -papp")]
    Demo {
        /// The configuration file (its backends must use ${DB1_ADDRESS}...).
        #[arg(short, long, default_value = "proxy.yaml")]
        config: PathBuf,
    },

    /// Check a configuration file and print every problem in it.
    ///
    /// Reads the file, substitutes ${VAR} and ${VAR:-default} from the
    /// environment, and validates every key. Prints `ok` and exits 0 when the
    /// file is good; otherwise prints each problem with its key path and
    /// exits 1. Nothing is started and no server is contacted.
    #[command(
        after_help = "Example:\n  rwsplit check-config proxy.yaml\n  APP_PASSWORD=secret rwsplit check-config /etc/rwsplit/proxy.yaml"
    )]
    CheckConfig {
        /// Path of the proxy.yaml to check.
        path: PathBuf,
    },

    /// Show the backends as a running rwsplit sees them.
    ///
    /// Asks the admin API of a running rwsplit (admin.address in its
    /// configuration) for its status and prints one line per backend: its
    /// role, state (up, reading, lagging, stopped, down), replication lag,
    /// GTID position, open connections and commands served; then the
    /// primary, and any alarm or failing check.
    #[command(
        after_help = "Examples:\n  rwsplit status\n  rwsplit status --admin http://10.0.0.5:6034 --json\n  RWSPLIT_ADMIN_TOKEN=secret rwsplit status"
    )]
    Status {
        /// Base URL of the admin API.
        #[arg(long, default_value = "http://127.0.0.1:6034")]
        admin: String,
        /// The bearer token, when admin.token is set.
        #[arg(long, env = "RWSPLIT_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print the JSON document of GET /status instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// Move the primary to a replica, with the primary working.
    ///
    /// Asks a running rwsplit (its admin API) to switch over, and prints
    /// each step as it happens: take the topology lock on a majority of the
    /// backends (so that one rwsplit changes the servers at a time), survey
    /// them, fence the primary (read_only = ON), wait for the new primary
    /// to apply everything the old one wrote (up to failover.timeout),
    /// promote it, point the other replicas at it, and make the old primary
    /// its replica. Until the new primary is promoted, a failure makes the
    /// old one writable again. Writes get an error for the moment there is
    /// no primary; reads go on. Exits 0 once the new primary serves.
    #[command(
        after_help = "Examples:\n  rwsplit switchover --to db2\n  rwsplit switchover            # to the most advanced replica\n  rwsplit switchover --admin http://10.0.0.5:6034 --to db3"
    )]
    Switchover {
        /// The backend to promote (a name from the configuration); by
        /// default the replica that has applied the most.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },

    /// Replace a failed primary with a replica.
    ///
    /// Asks a running rwsplit (its admin API) to fail over, and prints each
    /// step: take the topology lock (on a majority of all backends, or with
    /// failover.lock_quorum: majority_of_running of those that answer, which
    /// a primary with a single replica needs), survey the backends, check
    /// that the replicas lost the primary too (when one still receives from
    /// it, the primary is alive and only rwsplit cannot reach it: nothing is
    /// done),
    /// let the new primary apply what it received, promote it and point the
    /// other replicas at it. The old primary is fenced (read_only = ON) when
    /// it answers again, and made a replica if it has nothing the new
    /// primary lacks. With failover.auto, rwsplit does this by itself.
    #[command(after_help = "Examples:\n  rwsplit failover\n  rwsplit failover --to db3")]
    Failover {
        /// The backend to promote; by default the replica that received the
        /// most from the old primary.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },

    /// Start a local MariaDB primary and replicas to try rwsplit against.
    ///
    /// Uses the machine's mariadbd. Each server gets its own directory and a
    /// free port on 127.0.0.1; replicas replicate from the primary with GTID.
    /// Prints the ports and a ready-to-paste `mariadb` command for each server,
    /// then waits. Ctrl-C stops every server and removes the directory (unless
    /// --dir was given).
    #[command(
        after_help = "Examples:\n  rwsplit sandbox\n  rwsplit sandbox --replicas 1 --dir /tmp/my-sandbox"
    )]
    Sandbox {
        /// Number of replicas next to the primary.
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Keep the servers' files in this (empty or new) directory instead of
        /// a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Where a running rwsplit's admin API is, and its token.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Base URL of the admin API.
    #[arg(long, default_value = "http://127.0.0.1:6034")]
    admin: String,
    /// The bearer token, when admin.token is set.
    #[arg(long, env = "RWSPLIT_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            runtime()?.block_on(server::run(config, shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { config } => {
            runtime()?.block_on(run_demo(&config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { path } => Ok(check_config(&path)),
        Command::Status { admin, token, json } => {
            runtime()?.block_on(print_status(&admin, token.as_deref(), json))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Switchover { to, admin } => {
            runtime()?.block_on(run_change(Kind::Switchover, to.as_deref(), &admin))
        }
        Command::Failover { to, admin } => {
            runtime()?.block_on(run_change(Kind::Failover, to.as_deref(), &admin))
        }
        Command::Sandbox { replicas, dir } => {
            runtime()?.block_on(run_sandbox(SandboxOptions {
                replicas,
                dir,
                ..Default::default()
            }))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The main runtime: the monitor, the admin API, signals and the sandbox.
/// Client sessions run on threads of their own (server::listener).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("rwsplit-main")
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!("ok");
            for warning in config.warnings() {
                println!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid { path, problems }) => {
            println!("{}: {} problem(s)", path.display(), problems.len());
            for problem in problems {
                println!("  {problem}");
            }
            ExitCode::FAILURE
        }
        Err(other) => {
            println!("{other}");
            ExitCode::FAILURE
        }
    }
}

async fn print_status(admin: &str, token: Option<&str>, json: bool) -> anyhow::Result<()> {
    let body = crate::admin::client::get(admin, "/status", token, Duration::from_secs(5)).await?;
    if json {
        println!("{}", body.trim_end());
        return Ok(());
    }
    let status: Status = serde_json::from_str(&body)
        .with_context(|| format!("{admin}/status did not answer with rwsplit's status document"))?;
    print!("{}", status.table());
    Ok(())
}

/// Asks for a switchover or failover and prints its steps as they come;
/// success when the last line says it is done.
async fn run_change(kind: Kind, to: Option<&str>, admin: &AdminArgs) -> anyhow::Result<ExitCode> {
    let path = match to {
        Some(name) => format!("/{}?to={}", kind.name(), query_escape(name)),
        None => format!("/{}", kind.name()),
    };
    let mut last = String::new();
    crate::admin::client::post_streaming(
        &admin.admin,
        &path,
        admin.token.as_deref(),
        Duration::from_secs(5),
        |text| {
            print!("{text}");
            last.push_str(text);
        },
    )
    .await?;
    let done = last.lines().last().is_some_and(|l| l.starts_with("done:"));
    Ok(if done {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `name` for a query string: what is not unreserved is percent-encoded.
fn query_escape(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn run_sandbox(options: SandboxOptions) -> anyhow::Result<()> {
    eprintln!(
        "Starting a MariaDB primary and {} replica(s)...",
        options.replicas
    );
    let sandbox = Sandbox::start(options).await?;
    println!("{}", describe(&sandbox));
    println!("Press Ctrl-C to stop the servers.");
    wait_for_shutdown().await?;
    eprintln!("Stopping the servers...");
    drop(sandbox);
    eprintln!("Stopped.");
    Ok(())
}

async fn run_demo(config_path: &std::path::Path) -> anyhow::Result<()> {
    eprintln!("Starting a MariaDB primary and 2 replicas...");
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    let addresses: Vec<(String, String)> = sandbox
        .servers()
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("DB{}_ADDRESS", i + 1), s.address()))
        .collect();
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let config = Config::from_text(&text, config_path, |name| {
        addresses
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    })?;
    let listen = config.listen.address;
    println!("{}", describe(&sandbox));
    println!(
        "\nrwsplit listens on {listen}. Connect with:\n\n  mariadb -h {} -P {} -u {} -p{}\n\nPress Ctrl-C to stop.",
        listen.ip(),
        listen.port(),
        sandbox::APP.user,
        sandbox::APP.password
    );
    server::run(config, shutdown_signal()).await?;
    eprintln!("Stopping the servers...");
    drop(sandbox);
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (logging a failure to listen for them).
async fn shutdown_signal() {
    if let Err(error) = wait_for_shutdown().await {
        tracing::error!(%error, "cannot listen for shutdown signals; stop rwsplit with SIGKILL");
        std::future::pending::<()>().await;
    }
}

/// A readable summary of a running sandbox: servers, ports, commands, accounts.
pub fn describe(sandbox: &Sandbox) -> String {
    let mut out = format!(
        "Sandbox ready in {:.1}s in {}\n\n",
        sandbox.startup().as_secs_f64(),
        sandbox.dir().display()
    );
    for server in sandbox.servers() {
        let role = match server.role {
            sandbox::SandboxRole::Primary => "primary",
            sandbox::SandboxRole::Replica => "replica",
        };
        out.push_str(&format!(
            "  {:<4} {role:<8} {:<16} pid {:<8} mariadb -h 127.0.0.1 -P {} -u {} -p{}\n",
            server.name,
            server.address(),
            server.pid(),
            server.port,
            sandbox::APP.user,
            sandbox::APP.password,
        ));
    }
    out.push_str(&format!(
        "\nAccounts: {}/{} (application), {}/{} (monitor), {}/{} (replication)",
        sandbox::APP.user,
        sandbox::APP.password,
        sandbox::MONITOR.user,
        sandbox::MONITOR.password,
        sandbox::REPLICATION.user,
        sandbox::REPLICATION.password,
    ));
    out
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
