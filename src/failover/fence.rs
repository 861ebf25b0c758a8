//! `failover.fence_command`: what an operator wires to their platform to
//! make sure a failed primary is stopped — a pod deleted, a VM powered
//! off through a cloud API — before a failover promotes another server.
//! It runs with `sh -c`, the failed primary named in its environment
//! (`RWSPLIT_FENCE_NAME`, `RWSPLIT_FENCE_ADDRESS`), within
//! `failover.timeout`; what it prints goes to the failover's progress and
//! the log. A command that fails or does not finish in time stops the
//! failover: nothing is promoted while the old primary may still run.

use std::process::Stdio;
use std::time::Duration;

use super::Progress;
use super::server::StepError;

/// Lines of the command's output shown, from each of stdout and stderr.
const SHOWN_LINES: usize = 20;

/// Runs `command` for the failed primary `name` at `address`.
pub(super) async fn run(
    command: &str,
    name: &str,
    address: &str,
    limit: Duration,
    progress: &Progress,
) -> Result<(), StepError> {
    let failed = |error: String| StepError {
        server: name.to_owned(),
        action: "failover.fence_command".to_owned(),
        error,
    };
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("RWSPLIT_FENCE_NAME", name)
        .env("RWSPLIT_FENCE_ADDRESS", address)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot start `sh`: {e}")))?;
    let output = crate::timer::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("did not finish within {limit:?} (killed)")))?
        .map_err(|e| failed(e.to_string()))?;
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        for line in text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(SHOWN_LINES)
        {
            progress.step(format!("fence_command: {line}"));
        }
    }
    match output.status.success() {
        true => Ok(()),
        false => Err(failed(format!("it ended with {}", output.status))),
    }
}
