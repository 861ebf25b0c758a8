//! Changing which backend is the primary: switchover (the primary works;
//! an operator moves it), failover (the primary has failed; a replica is
//! promoted, by an operator or automatically), and fencing a failed
//! primary when it comes back.
//!
//! | module | owns |
//! |---|---|
//! | [`plan`] | who becomes the primary and who follows: pure decisions over a survey |
//! | [`server`] | the statements run on one backend, each under a time limit |
//! | [`lock`] | the topology lock on a majority of the backends (`failover.lock_quorum`), so that one sidecar changes them at a time |
//! | `watch` | the task that fences strays and starts automatic failovers |
//! | `fence` | `failover.fence_command`, run before a failover promotes anyone |
//!
//! A change is run by [`change`]; [`watch`](mod@watch) fences strays (a failed
//! primary that came back, say: [`fence_strays`]) and, with
//! `failover.auto`, starts failovers. rwsplit changes the servers and
//! the monitor finds the new primary as it finds any (the writable server
//! that does not replicate), so every sidecar watching the same servers
//! converges on it, whichever made the change. Between the fencing of the
//! old primary and the monitor's publication of the new one there is no
//! primary: statements that need one wait for it (`routing.wait_for_primary`)
//! and are refused only past that.

mod fence;
pub mod lock;
pub mod plan;
pub mod server;
mod watch;

pub use watch::watch;

use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{Config, LockQuorum};
use crate::server::Proxy;
use crate::topology::Fence;
use crate::topology::lost::Lost;
use lock::{NotLocked, TopologyLock};
use plan::{Listened, Plan, Refusal, Scene, Source, Surveyed};
use server::{Server, StepError};

/// Whether a change runs in this rwsplit: one at a time.
#[derive(Debug, Default)]
pub struct Changes {
    running: tokio::sync::Mutex<()>,
}

impl Changes {
    /// Whether a change is under way.
    pub fn busy(&self) -> bool {
        self.running.try_lock().is_err()
    }

    /// The right to change the servers in this rwsplit, held until dropped.
    fn start(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, ChangeError> {
        self.running.try_lock().map_err(|_| ChangeError::Busy)
    }
}

/// Which change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Switchover,
    Failover,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Switchover, Kind::Failover];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Switchover => "switchover",
            Kind::Failover => "failover",
        }
    }
}

/// Where the steps of a change are told: the log always, and an operator's
/// `rwsplit switchover` or `failover` when one is waiting.
#[derive(Debug, Default)]
pub struct Progress(Option<UnboundedSender<String>>);

impl Progress {
    pub fn to(lines: UnboundedSender<String>) -> Progress {
        Progress(Some(lines))
    }

    fn step(&self, text: impl Into<String>) {
        let text = text.into();
        info!(step = text.as_str(), "topology change");
        self.send(text);
    }

    fn warn(&self, text: impl Into<String>) {
        let text = text.into();
        warn!(problem = text.as_str(), "topology change");
        self.send(format!("warning: {text}"));
    }

    fn send(&self, line: String) {
        if let Some(lines) = &self.0 {
            // The operator may have gone: the change goes on.
            let _ = lines.send(line);
        }
    }
}

/// Why a change did not happen, or did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("a switchover or failover is already under way in this rwsplit")]
    Busy,
    #[error("there is no backend named `{0}`; the backends are {1}")]
    UnknownBackend(String, String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    NotLocked(#[from] NotLocked),
    #[error("{0}; nothing was changed")]
    Untouched(StepError),
    #[error("{error}; {state}")]
    Halfway { error: StepError, state: String },
}

/// The index of the backend called `name`.
pub fn backend_index(config: &Config, name: &str) -> Result<usize, ChangeError> {
    config
        .backends
        .iter()
        .position(|b| b.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
            ChangeError::UnknownBackend(name.to_owned(), names.join(", "))
        })
}

/// Runs a switchover or failover to backend `to` (or to the best
/// candidate), telling `progress` each step; the summary when it is done.
pub async fn change(
    proxy: &Proxy,
    kind: Kind,
    to: Option<usize>,
    progress: &Progress,
) -> Result<String, ChangeError> {
    let _one = proxy.changes.start()?;
    let result = run(proxy, kind, to, progress).await;
    proxy.metrics.topology_change(kind, result.is_ok());
    result
}

async fn run(
    proxy: &Proxy,
    kind: Kind,
    to: Option<usize>,
    progress: &Progress,
) -> Result<String, ChangeError> {
    let started = Instant::now();
    let config = &proxy.config;
    let limit = config.failover.timeout;
    let old = {
        let topology = proxy.topology.load();
        topology.primary.ok_or_else(|| {
            Refusal::NoPrimary(
                topology
                    .alarm
                    .clone()
                    .unwrap_or_else(|| "none known".into()),
            )
        })?
    };
    progress.step(format!(
        "{}: taking the topology lock on a majority of the {} backends{}",
        kind.name(),
        config.backends.len(),
        match config.failover.lock_quorum {
            LockQuorum::MajorityOfAll => "",
            LockQuorum::MajorityOfRunning => " that answer",
        }
    ));
    let mut lock = TopologyLock::acquire(config, limit).await?;
    progress.step("surveying the backends");
    let (mut servers, mut surveyed) = survey(config, limit).await;
    let (names, addresses) = names_and_addresses(config);
    if kind == Kind::Failover {
        listen(&mut servers, &mut surveyed, &addresses[old], progress).await;
    }
    let scene = Scene {
        names: &names,
        addresses: &addresses,
        surveyed: &surveyed,
    };
    let planned = match kind {
        Kind::Switchover => plan::switchover(scene, old, to),
        Kind::Failover => plan::failover(scene, old, to),
    };
    let plan = match planned {
        Ok(plan) => plan,
        Err(refusal) => {
            lock.release().await;
            return Err(refusal.into());
        }
    };
    progress.step(describe(&plan, &names));
    for &(index, ref why) in &plan.left {
        progress.warn(format!("{} is left as it is: {why}", names[index]));
    }
    let result = match kind {
        Kind::Switchover => switch(proxy, &plan, &mut servers, progress).await,
        Kind::Failover => fail(proxy, &plan, &mut servers, &surveyed[plan.new], progress).await,
    };
    lock.release().await;
    result?;
    progress.step(format!(
        "waiting for the monitor to see {} as the primary",
        names[plan.new]
    ));
    let seen = wait_until(limit, || proxy.topology.primary() == Some(plan.new)).await;
    // A switchover's fence ends when the monitor publishes the new primary;
    // should it not, writes must not wait on it for ever.
    proxy.topology.unfence();
    if !seen {
        progress.warn(format!(
            "the monitor did not see {} as the primary within {limit:?}; `rwsplit status` tells \
             what it sees",
            names[plan.new]
        ));
    }
    Ok(format!(
        "{} is the primary ({} from {} in {:.1} s)",
        names[plan.new],
        kind.name(),
        names[plan.old],
        started.elapsed().as_secs_f64()
    ))
}

/// Fences strays (`plan::strays`): read-only at once, then a replica of
/// the primary if it has nothing the primary lacks. Decided from a survey
/// taken under the topology lock, whatever the caller saw: how many were
/// fenced.
pub async fn fence_strays(proxy: &Proxy) -> Result<usize, ChangeError> {
    let _one = proxy.changes.start()?;
    let config = &proxy.config;
    let limit = config.failover.timeout;
    let mut lock = TopologyLock::acquire(config, limit).await?;
    let (mut servers, surveyed) = survey(config, limit).await;
    let (names, addresses) = names_and_addresses(config);
    let found = plan::strays(Scene {
        names: &names,
        addresses: &addresses,
        surveyed: &surveyed,
    });
    let mut fenced = 0;
    if let Some((primary, strays)) = found {
        for stray in strays {
            let Some(mut server) = servers[stray].take() else {
                continue;
            };
            if let Err(error) = server.set_read_only(true).await {
                warn!(%error, "cannot make the stray read-only");
                continue;
            }
            fenced += 1;
            warn!(
                backend = server.name,
                primary = names[primary],
                "a writable server no replica follows, beside the primary (a primary that came \
                 back after a failover?), is made read-only"
            );
            let Some(new) = servers[primary].as_mut() else {
                continue;
            };
            match rejoin(proxy, (stray, &mut server), (primary, new)).await {
                Ok(()) => info!(
                    backend = server.name,
                    primary = names[primary],
                    "it replicates from the primary"
                ),
                Err(problem) => warn!(problem, "it was not made a replica"),
            }
        }
    }
    lock.release().await;
    Ok(fenced)
}

fn names_and_addresses(config: &Config) -> (Vec<String>, Vec<String>) {
    config
        .backends
        .iter()
        .map(|b| (b.name.clone(), b.address.clone()))
        .unzip()
}

/// Opens a connection to every backend at once and asks each about
/// itself; the connections are kept for the change.
async fn survey(config: &Config, limit: Duration) -> (Vec<Option<Server>>, Vec<Surveyed>) {
    let mut tasks = JoinSet::new();
    for index in 0..config.backends.len() {
        let config = config.clone();
        tasks.spawn(async move {
            let result = async {
                let mut server = Server::open(&config, index, limit).await?;
                let state = server.survey().await?;
                Ok::<_, StepError>((server, state))
            }
            .await;
            (index, result)
        });
    }
    let mut servers: Vec<Option<Server>> = (0..config.backends.len()).map(|_| None).collect();
    let mut surveyed: Vec<Surveyed> = (0..config.backends.len())
        .map(|_| Surveyed::Unreachable("not surveyed".into()))
        .collect();
    while let Some(done) = tasks.join_next().await {
        let Ok((index, result)) = done else { continue };
        match result {
            Ok((server, state)) => {
                servers[index] = Some(server);
                surveyed[index] = Surveyed::Up(state);
            }
            Err(error) => surveyed[index] = Surveyed::Unreachable(error.error),
        }
    }
    (servers, surveyed)
}

/// Listens to the replicas whose IO thread says they receive from the
/// failed primary at `old`: for twice the longest of their
/// `MASTER_HEARTBEAT_PERIOD`s (up to [`plan::LISTENED_PERIOD`]), it must
/// send each an event or a heartbeat if it is alive. A hung primary
/// sends nothing, and its replicas' IO threads would say they receive
/// until `slave_net_timeout` (60 s); one that only rwsplit cannot reach
/// goes on sending. What each heard goes to [`Source::listened`].
async fn listen(
    servers: &mut [Option<Server>],
    surveyed: &mut [Surveyed],
    old: &str,
    progress: &Progress,
) {
    let followers = |surveyed: &Surveyed| match surveyed {
        Surveyed::Up(state) => state.replication.clone().filter(|source| {
            source.address == old
                && source.io_running
                && source.heartbeat_period <= plan::LISTENED_PERIOD
        }),
        Surveyed::Unreachable(_) => None,
    };
    let before: Vec<Option<Source>> = surveyed.iter().map(followers).collect();
    let Some(window) = before
        .iter()
        .flatten()
        .map(|s| s.heartbeat_period * 2)
        .max()
    else {
        return;
    };
    progress.step(format!(
        "listening {window:?} for events or heartbeats from the failed primary on the replicas \
         whose IO thread still runs"
    ));
    crate::timer::sleep(window).await;
    for ((server, surveyed), before) in servers.iter_mut().zip(surveyed).zip(before) {
        let (Some(server), Surveyed::Up(state), Some(before)) = (server, surveyed, before) else {
            continue;
        };
        let Ok(Some(now)) = server.source().await else {
            continue;
        };
        if let Some(source) = &mut state.replication {
            source.listened = Some(Listened {
                window,
                heard: now.activity != before.activity,
            });
        }
    }
}

fn describe(plan: &Plan, names: &[String]) -> String {
    let followers: Vec<&str> = plan.repoint.iter().map(|&i| names[i].as_str()).collect();
    let mut text = format!("plan: {} becomes the primary", names[plan.new]);
    if !followers.is_empty() {
        text.push_str(&format!(
            "; {} will replicate from it",
            followers.join(", ")
        ));
    }
    text
}

/// The connection the survey opened to backend `index` (the plan only
/// names backends that answered it).
fn take(servers: &mut [Option<Server>], index: usize) -> Result<Server, ChangeError> {
    servers[index].take().ok_or_else(|| {
        ChangeError::Untouched(StepError {
            server: format!("backend {index}"),
            action: "survey".into(),
            error: "no connection".into(),
        })
    })
}

/// The switchover's steps once planned: fence, catch up, promote, repoint,
/// and make the old primary a replica. Until the promotion, a failure
/// makes the old primary writable again.
///
/// rwsplit stops sending statements to the old primary before it makes it
/// read-only, and sends them to the new one once it is promoted and the
/// monitor publishes it as the primary; meanwhile sessions wait
/// (`routing.wait_for_primary`).
async fn switch(
    proxy: &Proxy,
    plan: &Plan,
    servers: &mut [Option<Server>],
    progress: &Progress,
) -> Result<(), ChangeError> {
    let config = &proxy.config;
    let (mut old, mut new) = (take(servers, plan.old)?, take(servers, plan.new)?);
    proxy.topology.begin_fence(Fence {
        why: format!(
            "switchover under way: {} is made read-only and {} promoted",
            old.name, new.name
        ),
        successor: None,
    });
    match fence_and_promote(config, &mut old, &mut new, progress).await {
        Ok(()) => proxy.topology.hand_over(plan.new),
        Err(error) => {
            proxy.topology.unfence();
            return Err(error);
        }
    }
    repoint(config, plan, servers, progress).await;
    progress.step(format!("{} replicates from {}", old.name, new.name));
    if let Err(problem) = rejoin(proxy, (plan.old, &mut old), (plan.new, &mut new)).await {
        progress.warn(problem);
    }
    Ok(())
}

/// Makes `old` read-only, lets `new` apply everything `old` wrote, and
/// promotes it; a failure before the promotion makes `old` writable again.
async fn fence_and_promote(
    config: &Config,
    old: &mut Server,
    new: &mut Server,
    progress: &Progress,
) -> Result<(), ChangeError> {
    let limit = config.failover.timeout;
    progress.step(format!(
        "fencing {}: read_only = ON (statements that need the primary wait for {})",
        old.name, new.name
    ));
    old.set_read_only(true)
        .await
        .map_err(ChangeError::Untouched)?;
    let caught_up = async {
        let position = old.logged().await?;
        progress.step(format!(
            "waiting up to {limit:?} for {} to apply {}'s last transactions ({position})",
            new.name, old.name
        ));
        new.wait_for(&position, limit).await
    }
    .await;
    if let Err(error) = caught_up {
        let state = match old.set_read_only(false).await {
            Ok(()) => format!(
                "{} is writable again and nothing else was changed",
                old.name
            ),
            Err(undo) => format!("{} stays read-only: {undo}", old.name),
        };
        return Err(ChangeError::Halfway { error, state });
    }
    promote(new, &old.name, progress).await
}

/// The failover's steps once planned: the new primary applies what it
/// received (as `surveyed`), is promoted, and the other replicas follow
/// it; the old primary is to be fenced when it answers again.
async fn fail(
    proxy: &Proxy,
    plan: &Plan,
    servers: &mut [Option<Server>],
    surveyed: &Surveyed,
    progress: &Progress,
) -> Result<(), ChangeError> {
    let config = &proxy.config;
    let limit = config.failover.timeout;
    let received = match surveyed {
        Surveyed::Up(state) => plan::received(state).clone(),
        Surveyed::Unreachable(_) => Default::default(),
    };
    let mut new = take(servers, plan.new)?;
    let old = &config.backends[plan.old].name;
    if let Some(command) = &config.failover.fence_command {
        progress.step(format!("fencing {old} with failover.fence_command"));
        let address = &config.backends[plan.old].address;
        fence::run(command, old, address, limit, progress)
            .await
            .map_err(ChangeError::Untouched)?;
    }
    progress.step(format!(
        "waiting up to {limit:?} for {} to apply what it received from {old} ({received})",
        new.name
    ));
    new.wait_for(&received, limit)
        .await
        .map_err(ChangeError::Untouched)?;
    cut(proxy, plan.old, progress);
    promote(&mut new, old, progress).await?;
    repoint(config, plan, servers, progress).await;
    progress.step(format!(
        "{old} will be made read-only, and a replica of {} if it can, when it answers again",
        new.name
    ));
    Ok(())
}

/// Cuts every connection this rwsplit holds to `old`, a primary being
/// replaced, before anyone is promoted: a statement it holds (a frozen
/// server resumes) can then never be acknowledged to a client after the
/// new primary took over. Its client gets ERR 2013: whether it took effect
/// is unknown, as when a server dies under it.
pub(crate) fn cut(proxy: &Proxy, old: usize, progress: &Progress) {
    let cut = proxy.endpoints[old].sockets.cut_all();
    if cut > 0 {
        progress.step(format!(
            "cut rwsplit's {cut} connection(s) to {}: nothing it answers from now on reaches a client",
            proxy.endpoints[old].name
        ));
    }
}

async fn promote(new: &mut Server, old: &str, progress: &Progress) -> Result<(), ChangeError> {
    progress.step(format!(
        "promoting {}: STOP SLAVE, RESET SLAVE ALL, read_only = OFF",
        new.name
    ));
    new.promote().await.map_err(|error| ChangeError::Halfway {
        error,
        state: format!(
            "no backend takes writes now ({old} is fenced or gone): look at {} and run the \
                 change again",
            new.name
        ),
    })
}

/// Points the other replicas at the new primary; a replica that fails is
/// reported, not fatal (the primary has moved already).
async fn repoint(
    config: &Config,
    plan: &Plan,
    servers: &mut [Option<Server>],
    progress: &Progress,
) {
    let address = &config.backends[plan.new].address;
    for &index in &plan.repoint {
        let Some(server) = servers[index].as_mut() else {
            continue;
        };
        progress.step(format!(
            "{} replicates from {}",
            server.name, config.backends[plan.new].name
        ));
        if let Err(error) = server.follow(address).await {
            progress.warn(format!("{error}; repoint it by hand"));
        }
    }
}

/// Makes a former primary, already read-only, a replica of `new` (each
/// with its backend index) — unless it has transactions `new` lacks
/// (written after it was fenced, or never replicated before it failed),
/// which replication would trip over: it is then left read-only and not
/// replicating, for an operator, and what it has is recorded in
/// [`Proxy::lost`] until it replicates. `Err`: why it was not made a
/// replica.
async fn rejoin(
    proxy: &Proxy,
    (old_index, old): (usize, &mut Server),
    (new_index, new): (usize, &mut Server),
) -> Result<(), String> {
    let config = &proxy.config;
    let logged = old.logged().await.map_err(|e| e.to_string())?;
    let applied = new.applied().await.map_err(|e| e.to_string())?;
    let received = new.received().await.map_err(|e| e.to_string())?;
    let lacking = applied.lacks(&received, &logged);
    if !lacking.is_empty() {
        let ranges: Vec<String> = lacking.iter().map(ToString::to_string).collect();
        let problem = format!(
            "{} has transactions {} lacks: {} (its binary log is at {logged}; {} has applied \
             {applied}, and received {received} as a replica); it stays read-only and does not \
             replicate: reconcile it by hand, or rebuild it from {}",
            old.name,
            new.name,
            ranges.join(", "),
            new.name,
            new.name
        );
        proxy.lost.record(old_index, Lost::new(&new.name, &lacking));
        return Err(problem);
    }
    let failover = &config.failover;
    let user = failover
        .replication_user
        .as_deref()
        .unwrap_or(&config.monitor.user);
    let password = failover
        .replication_password
        .as_deref()
        .unwrap_or(&config.monitor.password);
    old.rejoin(&config.backends[new_index].address, user, password)
        .await
        .map_err(|e| e.to_string())?;
    proxy.lost.forget(old_index);
    Ok(())
}

/// Polls `done` every 50 ms until it holds or `limit` passes: whether it held.
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}
