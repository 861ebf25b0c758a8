//! What a switchover or a failover will do, decided from a survey of the
//! servers: pure functions, so that every refusal is tested without a
//! server.

use std::time::Duration;

use crate::gtid::GtidPosition;
use crate::topology::discovery::{the_one_ahead, the_one_followed};

/// One backend as the survey found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Surveyed {
    /// No connection, or a query failed: why.
    Unreachable(String),
    Up(ServerState),
}

impl Surveyed {
    /// Its state, when it answered.
    fn up(&self) -> Option<&ServerState> {
        match self {
            Surveyed::Up(state) => Some(state),
            Surveyed::Unreachable(_) => None,
        }
    }
}

/// What a reachable backend said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// `@@version` names MariaDB (the only dialect changes are written for).
    pub mariadb: bool,
    pub read_only: bool,
    /// `@@gtid_current_pos`: every transaction it has applied.
    pub applied: GtidPosition,
    /// Its replication, when it replicates.
    pub replication: Option<Source>,
}

/// Where a replica replicates from, and how far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `Master_Host:Master_Port`.
    pub address: String,
    pub io_running: bool,
    pub sql_running: bool,
    /// `Gtid_IO_Pos`: every transaction it has received (applied or not).
    pub received: GtidPosition,
    pub last_error: String,
    /// Its `MASTER_HEARTBEAT_PERIOD`: the longest its primary, alive and
    /// connected, stays silent.
    pub heartbeat_period: Duration,
    /// What it has received from its primary so far: it changes with
    /// every event or heartbeat.
    pub activity: Activity,
    /// What a failover heard when it listened to it (see [`LISTENED_PERIOD`]).
    pub listened: Option<Listened>,
}

/// Whether a replica received anything, an event or a heartbeat, from its
/// primary over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listened {
    pub window: Duration,
    pub heard: bool,
}

/// A replica's counters of what it received: `Slave_received_heartbeats`
/// and `Master_Log_File`/`Read_Master_Log_Pos`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    pub heartbeats: u64,
    pub file: String,
    pub position: u64,
}

/// The backends by name and address, and what the survey found, index for
/// index.
#[derive(Debug, Clone, Copy)]
pub struct Scene<'a> {
    pub names: &'a [String],
    pub addresses: &'a [String],
    pub surveyed: &'a [Surveyed],
}

/// Who becomes the primary, and who follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub old: usize,
    pub new: usize,
    /// The old primary's other replicas, reachable: repointed to `new`.
    pub repoint: Vec<usize>,
    /// Backends left as they are, and why (unreachable, replicating from
    /// elsewhere): the operator's to look at.
    pub left: Vec<(usize, String)>,
}

/// Why a change is refused before anything was touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("there is no primary to replace: {0}")]
    NoPrimary(String),
    #[error(
        "the primary {0} does not answer ({1}); a switchover needs it: run `rwsplit failover` \
         to replace a failed primary"
    )]
    PrimaryUnreachable(String, String),
    #[error("the primary {0} answers: use `rwsplit switchover` to replace a working primary")]
    PrimaryAnswers(String),
    #[error(
        "{0} is writable and does not replicate: it is a primary already (another rwsplit may \
         have failed over); rwsplit's monitor will follow it"
    )]
    PrimaryExists(String),
    #[error("{0} is read-only or replicates: it is not a working primary")]
    PrimaryNotWritable(String),
    #[error(
        "{0} still receives from the primary {1} ({2}): the primary is alive and only rwsplit \
         cannot reach it, so promoting another server would split the data"
    )]
    PrimaryStillServes(String, String, String),
    #[error("{0} is not MariaDB: switchover and failover are implemented for MariaDB servers only")]
    NotMariaDb(String),
    #[error("{0} is already the primary")]
    AlreadyPrimary(String),
    #[error("{name} cannot be promoted: {why}")]
    Unfit { name: String, why: String },
    #[error("no replica can be promoted: {0}")]
    NoCandidate(String),
    #[error(
        "the replicas have diverged (none has every transaction the others have): choose the \
         new primary with --to"
    )]
    Diverged,
}

/// Plans a switchover from the working primary `old` to `to` (or to the
/// most advanced replica that replicates from it, when `None`).
pub fn switchover(scene: Scene, old: usize, to: Option<usize>) -> Result<Plan, Refusal> {
    let primary = match &scene.surveyed[old] {
        Surveyed::Unreachable(why) => {
            return Err(Refusal::PrimaryUnreachable(
                scene.names[old].clone(),
                why.clone(),
            ));
        }
        Surveyed::Up(state) => state,
    };
    if primary.read_only || primary.replication.is_some() {
        return Err(Refusal::PrimaryNotWritable(scene.names[old].clone()));
    }
    mariadb_everywhere(scene)?;
    let fit = |index: usize| fitness(scene, old, index, true);
    let new = choose(scene, old, to, fit, applied)?;
    Ok(followers(scene, old, new))
}

/// Plans a failover from the failed primary `old` to `to` (or to the
/// replica that received most from it, when `None`). The replicas confirm
/// the failure: none of them may still be receiving from `old`.
pub fn failover(scene: Scene, old: usize, to: Option<usize>) -> Result<Plan, Refusal> {
    if let Surveyed::Up(_) = &scene.surveyed[old] {
        return Err(Refusal::PrimaryAnswers(scene.names[old].clone()));
    }
    mariadb_everywhere(scene)?;
    for (index, state) in reachable(scene) {
        if !state.read_only && state.replication.is_none() {
            return Err(Refusal::PrimaryExists(scene.names[index].clone()));
        }
        if let Some(source) = &state.replication
            && source.address == scene.addresses[old]
            && source.io_running
            && source.listened.is_none_or(|listened| listened.heard)
        {
            return Err(Refusal::PrimaryStillServes(
                scene.names[index].clone(),
                scene.names[old].clone(),
                hearing(source),
            ));
        }
    }
    let fit = |index: usize| fitness(scene, old, index, false);
    let new = choose(scene, old, to, fit, received)?;
    Ok(followers(scene, old, new))
}

/// What tells that a replica still hears its primary.
fn hearing(source: &Source) -> String {
    match source.listened {
        Some(listened) => format!("it received from it within {:?}", listened.window),
        None if source.heartbeat_period > LISTENED_PERIOD => format!(
            "its IO thread runs, and its MASTER_HEARTBEAT_PERIOD of {:?} is too long to listen \
             for; see docs/failover.md",
            source.heartbeat_period
        ),
        None => "its IO thread runs".to_owned(),
    }
}

/// The longest `MASTER_HEARTBEAT_PERIOD` a failover listens for, twice
/// that long, to a replica whose IO thread says it still receives from
/// the failed primary: a primary alive sends an event or a heartbeat at
/// least that often, a hung one nothing.
pub const LISTENED_PERIOD: Duration = Duration::from_secs(5);

/// Writable servers that do not replicate and that no replica follows,
/// beside exactly one writable server that replicas do follow — or, when
/// none is followed, that has every transaction the others have and more
/// (the rule of the monitor's discovery): that one, the primary, and the
/// strays (a failed primary that came back after a failover, most often),
/// when there are any. Only MariaDB strays, whose fencing is written for.
pub fn strays(scene: Scene) -> Option<(usize, Vec<usize>)> {
    let followed = |index: usize| {
        reachable(scene).any(|(_, state)| {
            state
                .replication
                .as_ref()
                .is_some_and(|source| source.address == scene.addresses[index])
        })
    };
    let writable: Vec<usize> = reachable(scene)
        .filter(|(_, state)| !state.read_only && state.replication.is_none())
        .map(|(index, _)| index)
        .collect();
    let applied = |index: usize| scene.surveyed[index].up().map(|state| &state.applied);
    let primary =
        the_one_followed(&writable, followed).or_else(|| the_one_ahead(&writable, applied))?;
    let strays: Vec<usize> = reachable(scene)
        .filter(|&(index, state)| writable.contains(&index) && index != primary && state.mariadb)
        .map(|(index, _)| index)
        .collect();
    (!strays.is_empty()).then_some((primary, strays))
}

/// What a server has applied: how far a switchover candidate is.
fn applied(state: &ServerState) -> &GtidPosition {
    &state.applied
}

/// What a replica has received, applied or not: how far a failover
/// candidate will be once it applies its relay log.
pub fn received(state: &ServerState) -> &GtidPosition {
    match &state.replication {
        Some(source) => &source.received,
        None => &state.applied,
    }
}

/// The backends that answered, with their state.
fn reachable<'a>(scene: Scene<'a>) -> impl Iterator<Item = (usize, &'a ServerState)> {
    scene
        .surveyed
        .iter()
        .enumerate()
        .filter_map(|(index, surveyed)| surveyed.up().map(|state| (index, state)))
}

fn mariadb_everywhere(scene: Scene) -> Result<(), Refusal> {
    match reachable(scene).find(|(_, state)| !state.mariadb) {
        Some((index, _)) => Err(Refusal::NotMariaDb(scene.names[index].clone())),
        None => Ok(()),
    }
}

/// Whether backend `index` may become the primary in place of `old`, and
/// if not why. A switchover also needs its SQL thread running (it is to
/// catch up); a failover takes a replica whose IO thread has stopped, as
/// it has, the primary being gone.
fn fitness(scene: Scene, old: usize, index: usize, switchover: bool) -> Result<(), String> {
    if index == old {
        return Err("it is the primary being replaced".into());
    }
    let state = match &scene.surveyed[index] {
        Surveyed::Unreachable(why) => return Err(format!("it does not answer ({why})")),
        Surveyed::Up(state) => state,
    };
    let Some(source) = &state.replication else {
        return Err("it does not replicate".into());
    };
    if source.address != scene.addresses[old] {
        return Err(format!(
            "it replicates from {}, not from the primary {} ({})",
            source.address, scene.names[old], scene.addresses[old]
        ));
    }
    if !source.sql_running {
        return Err(match source.last_error.as_str() {
            "" => "its SQL thread is stopped".to_owned(),
            error => format!("its SQL thread is stopped: {error}"),
        });
    }
    if switchover && !source.io_running {
        return Err(match source.last_error.as_str() {
            "" => "its IO thread is stopped".to_owned(),
            error => format!("its IO thread is stopped: {error}"),
        });
    }
    Ok(())
}

/// The new primary: `to` if it is fit, else the fit replica whose
/// position (by `position`) includes every other fit replica's.
fn choose(
    scene: Scene,
    old: usize,
    to: Option<usize>,
    fit: impl Fn(usize) -> Result<(), String>,
    position: fn(&ServerState) -> &GtidPosition,
) -> Result<usize, Refusal> {
    if let Some(to) = to {
        if to == old {
            return Err(Refusal::AlreadyPrimary(scene.names[to].clone()));
        }
        return fit(to).map(|()| to).map_err(|why| Refusal::Unfit {
            name: scene.names[to].clone(),
            why,
        });
    }
    let candidates: Vec<(usize, &ServerState)> =
        reachable(scene).filter(|(i, _)| fit(*i).is_ok()).collect();
    if candidates.is_empty() {
        let reasons: Vec<String> = (0..scene.names.len())
            .filter(|&i| i != old)
            .filter_map(|i| fit(i).err().map(|why| format!("{}: {why}", scene.names[i])))
            .collect();
        return Err(Refusal::NoCandidate(reasons.join("; ")));
    }
    candidates
        .iter()
        .find(|(_, state)| {
            candidates
                .iter()
                .all(|(_, other)| position(state).includes(position(other)))
        })
        .map(|(index, _)| *index)
        .ok_or(Refusal::Diverged)
}

/// The plan once `new` is chosen: every other reachable replica of `old`
/// follows it; the rest are left alone, with the reason.
fn followers(scene: Scene, old: usize, new: usize) -> Plan {
    let mut repoint = Vec::new();
    let mut left = Vec::new();
    for (index, surveyed) in scene.surveyed.iter().enumerate() {
        if index == old || index == new {
            continue;
        }
        match surveyed {
            Surveyed::Unreachable(why) => left.push((index, format!("it does not answer ({why})"))),
            Surveyed::Up(ServerState {
                replication: Some(source),
                ..
            }) if source.address == scene.addresses[old] => repoint.push(index),
            Surveyed::Up(ServerState {
                replication: Some(source),
                ..
            }) => left.push((index, format!("it replicates from {}", source.address))),
            Surveyed::Up(_) => left.push((index, "it does not replicate".into())),
        }
    }
    Plan {
        old,
        new,
        repoint,
        left,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = "127.0.0.1:3307";

    fn position(text: &str) -> GtidPosition {
        GtidPosition::parse(text).unwrap()
    }

    fn primary() -> Surveyed {
        Surveyed::Up(ServerState {
            mariadb: true,
            read_only: false,
            applied: position("0-1-100"),
            replication: None,
        })
    }

    /// A replica of the primary that applied `applied` and received
    /// `received`, with its IO thread running or not.
    fn replica(applied: &str, received: &str, io_running: bool) -> Surveyed {
        Surveyed::Up(ServerState {
            mariadb: true,
            read_only: true,
            applied: position(applied),
            replication: Some(Source {
                address: PRIMARY.into(),
                io_running,
                sql_running: true,
                received: position(received),
                last_error: String::new(),
                heartbeat_period: Duration::from_secs(1),
                activity: Activity::default(),
                listened: None,
            }),
        })
    }

    fn down() -> Surveyed {
        Surveyed::Unreachable("Connection refused".into())
    }

    fn plan(
        kind: fn(Scene, usize, Option<usize>) -> Result<Plan, Refusal>,
        surveyed: &[Surveyed],
        to: Option<usize>,
    ) -> Result<Plan, Refusal> {
        let names: Vec<String> = (1..=surveyed.len()).map(|i| format!("db{i}")).collect();
        let addresses: Vec<String> = (0..surveyed.len())
            .map(|i| format!("127.0.0.1:{}", 3307 + i))
            .collect();
        let scene = Scene {
            names: &names,
            addresses: &addresses,
            surveyed,
        };
        kind(scene, 0, to)
    }

    #[test]
    fn switchover_goes_to_the_most_advanced_replica() {
        let servers = [
            primary(),
            replica("0-1-98", "0-1-100", true),
            replica("0-1-99", "0-1-99", true),
        ];
        assert_eq!(
            plan(switchover, &servers, None),
            Ok(Plan {
                old: 0,
                new: 2,
                repoint: vec![1],
                left: vec![],
            }),
            "applied counts for a switchover: the new primary catches up from the old"
        );
        assert_eq!(plan(switchover, &servers, Some(1)).unwrap().new, 1);
    }

    #[test]
    fn switchover_refusals_name_the_server_and_the_reason() {
        let healthy = replica("0-1-100", "0-1-100", true);
        assert!(matches!(
            plan(switchover, &[down(), healthy.clone()], None),
            Err(Refusal::PrimaryUnreachable(name, _)) if name == "db1"
        ));
        assert_eq!(
            plan(switchover, &[primary(), healthy.clone()], Some(0)),
            Err(Refusal::AlreadyPrimary("db1".into()))
        );
        let stopped = replica("0-1-90", "0-1-90", false);
        assert_eq!(
            plan(switchover, &[primary(), stopped.clone()], Some(1)),
            Err(Refusal::Unfit {
                name: "db2".into(),
                why: "its IO thread is stopped".into()
            })
        );
        let Err(Refusal::NoCandidate(reasons)) =
            plan(switchover, &[primary(), stopped, down()], None)
        else {
            panic!("no candidate expected");
        };
        assert_eq!(
            reasons,
            "db2: its IO thread is stopped; db3: it does not answer (Connection refused)"
        );
        let Surveyed::Up(mut mysql) = primary() else {
            unreachable!()
        };
        mysql.mariadb = false;
        assert_eq!(
            plan(switchover, &[Surveyed::Up(mysql), healthy], None),
            Err(Refusal::NotMariaDb("db1".into()))
        );
    }

    #[test]
    fn unreachable_and_foreign_replicas_are_left_alone() {
        let Surveyed::Up(mut elsewhere) = replica("0-1-1", "0-1-1", true) else {
            unreachable!()
        };
        elsewhere.replication.as_mut().unwrap().address = "10.0.0.9:3306".into();
        let servers = [
            primary(),
            replica("0-1-100", "0-1-100", true),
            down(),
            Surveyed::Up(elsewhere),
        ];
        let plan = plan(switchover, &servers, None).unwrap();
        assert_eq!((plan.new, plan.repoint), (1, vec![]));
        assert_eq!(
            plan.left,
            vec![
                (2, "it does not answer (Connection refused)".to_owned()),
                (3, "it replicates from 10.0.0.9:3306".to_owned()),
            ]
        );
    }

    #[test]
    fn failover_goes_to_the_replica_that_received_most() {
        let servers = [
            down(),
            replica("0-1-99", "0-1-99", false),
            replica("0-1-97", "0-1-100", false),
        ];
        assert_eq!(
            plan(failover, &servers, None),
            Ok(Plan {
                old: 0,
                new: 2,
                repoint: vec![1],
                left: vec![],
            }),
            "received counts: the relay log is applied before promotion"
        );
    }

    #[test]
    fn failover_needs_the_replicas_to_have_lost_the_primary() {
        assert_eq!(
            plan(
                failover,
                &[primary(), replica("0-1-1", "0-1-1", false)],
                None
            ),
            Err(Refusal::PrimaryAnswers("db1".into()))
        );
        assert_eq!(
            plan(
                failover,
                &[
                    down(),
                    replica("0-1-1", "0-1-1", false),
                    replica("0-1-1", "0-1-1", true)
                ],
                None
            ),
            Err(Refusal::PrimaryStillServes(
                "db3".into(),
                "db1".into(),
                "its IO thread runs".into()
            ))
        );
        // A hung primary: the IO thread still runs, but nothing came.
        let mut silent = replica("0-1-1", "0-1-1", true);
        let mut heard = silent.clone();
        for (surveyed, heard) in [(&mut silent, false), (&mut heard, true)] {
            if let Surveyed::Up(state) = surveyed {
                state.replication.as_mut().unwrap().listened = Some(Listened {
                    window: Duration::from_secs(2),
                    heard,
                });
            }
        }
        let scene = [down(), replica("0-1-1", "0-1-1", false), silent];
        assert!(
            plan(failover, &scene, None).is_ok(),
            "a silent replica lost it too"
        );
        let scene = [down(), replica("0-1-1", "0-1-1", false), heard];
        assert_eq!(
            plan(failover, &scene, None),
            Err(Refusal::PrimaryStillServes(
                "db3".into(),
                "db1".into(),
                "it received from it within 2s".into()
            ))
        );
        let Surveyed::Up(mut promoted) = primary() else {
            unreachable!()
        };
        promoted.applied = position("0-2-101");
        assert_eq!(
            plan(
                failover,
                &[
                    down(),
                    Surveyed::Up(promoted),
                    replica("0-1-1", "0-1-1", false)
                ],
                None
            ),
            Err(Refusal::PrimaryExists("db2".into())),
            "another rwsplit failed over first"
        );
    }

    #[test]
    fn a_writable_server_no_replica_follows_is_a_stray() {
        let Surveyed::Up(mut followed) = replica("0-1-1", "0-1-1", true) else {
            unreachable!()
        };
        followed.replication.as_mut().unwrap().address = "127.0.0.1:3308".into();
        let stray = |servers: &[Surveyed]| {
            let names: Vec<String> = (1..=servers.len()).map(|i| format!("db{i}")).collect();
            let addresses: Vec<String> = (0..servers.len())
                .map(|i| format!("127.0.0.1:{}", 3307 + i))
                .collect();
            strays(Scene {
                names: &names,
                addresses: &addresses,
                surveyed: servers,
            })
        };
        // db1 came back writable; db3 follows db2, promoted meanwhile.
        let servers = [primary(), primary(), Surveyed::Up(followed.clone())];
        assert_eq!(stray(&servers), Some((1, vec![0])));
        assert_eq!(
            stray(&[primary(), replica("0-1-1", "0-1-1", true)]),
            None,
            "one primary, followed"
        );
        assert_eq!(
            stray(&[primary(), primary(), down()]),
            None,
            "no replica to tell which is the primary, nor a position"
        );
        let Surveyed::Up(mut promoted) = primary() else {
            unreachable!()
        };
        promoted.applied = position("0-2-150");
        assert_eq!(
            stray(&[primary(), Surveyed::Up(promoted)]),
            Some((1, vec![0])),
            "no replica, but db2 has every transaction db1 has and more"
        );
        assert_eq!(
            stray(&[down(), primary(), Surveyed::Up(followed)]),
            None,
            "a promoted primary alone, its predecessor gone"
        );
    }

    #[test]
    fn diverged_replicas_are_not_chosen_between() {
        let servers = [
            down(),
            replica("0-1-5,1-3-9", "0-1-5,1-3-9", false),
            replica("0-1-6", "0-1-6", false),
        ];
        assert_eq!(plan(failover, &servers, None), Err(Refusal::Diverged));
        assert_eq!(plan(failover, &servers, Some(2)).unwrap().new, 2);
    }
}
