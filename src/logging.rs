//! Process-wide logging with tracing: human-readable text or JSON lines on
//! stderr, filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// A warning that may repeat many times a second (a flood of connections,
/// a descriptor table full): logged at most once per [`Throttled::EVERY`],
/// with how many times it happened since.
#[derive(Debug, Default)]
pub struct Throttled {
    last: Option<std::time::Instant>,
    since: u64,
}

impl Throttled {
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// Counts one occurrence, and calls `log` with the count when a line
    /// is due.
    pub fn warn(&mut self, log: impl FnOnce(u64)) {
        self.since += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= Self::EVERY)
        {
            log(self.since);
            self.last = Some(now);
            self.since = 0;
        }
    }
}
