//! Which backend is the primary: the writable one that does not replicate
//! from another. The configured role is only a starting hint.
//!
//! When several writable servers do not replicate and the replicas follow
//! exactly one of them, that one is the primary and the others are strays
//! — most often a failed primary that came back after a failover — which
//! the failover watch makes read-only (`failover::watch`); until then the
//! alarm names them. With no replica to tell (a primary and its one
//! replica, failed over), the one whose GTID position holds every other's
//! and more is the primary: one promoted while the others were away has
//! written since, if only rwsplit's heartbeat.

use crate::gtid::GtidPosition;

/// What the last check of a backend showed, as far as discovery cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The check succeeded.
    pub reachable: bool,
    /// `@@read_only` is on.
    pub read_only: bool,
    /// It replicates from another server.
    pub replicating: bool,
    /// The backend it replicates from, when that is one of ours.
    pub follows: Option<usize>,
}

/// The outcome of discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub primary: Option<usize>,
    /// Why there is no primary, for operators (and in the error clients get).
    pub alarm: Option<String>,
}

/// Decides the primary from every backend's last check (`None`: not
/// checked yet) and GTID position (`None`: not known). `previous` is the
/// primary until now (or the configured hint); `names` are the backends'
/// names, for the alarm text.
///
/// A replica that is writable (`read_only=OFF`) counts as a second writable
/// server: a write sent there would silently diverge it, so the alarm is
/// raised and writes are refused until an operator fixes it.
pub fn discover(
    seen: &[Option<Seen>],
    positions: &[Option<&GtidPosition>],
    previous: Option<usize>,
    names: &[String],
) -> Discovered {
    let writable: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_some_and(|s| s.reachable && !s.read_only))
        .map(|(index, _)| index)
        .collect();
    let replicating = |index: usize| seen[index].is_some_and(|s| s.replicating);
    match writable.as_slice() {
        [one] if !replicating(*one) => Discovered {
            primary: Some(*one),
            alarm: None,
        },
        [] | [_] => {
            // The previous primary, if nothing says otherwise: unreachable
            // (down, not demoted) or not checked yet.
            let previous_unknown = previous
                .is_some_and(|p| !seen.get(p).copied().flatten().is_some_and(|s| s.reachable));
            if previous_unknown {
                Discovered {
                    primary: previous,
                    alarm: None,
                }
            } else {
                Discovered {
                    primary: None,
                    alarm: Some(
                        "no primary: no reachable backend is both writable (read_only=OFF) and \
                         not replicating"
                            .into(),
                    ),
                }
            }
        }
        several => {
            if let Some(found) = primary_beside_strays(seen, positions, several, names) {
                return found;
            }
            let names: Vec<&str> = several.iter().map(|&i| names[i].as_str()).collect();
            Discovered {
                primary: None,
                alarm: Some(format!(
                    "{} are all writable (read_only=OFF); writes are refused rather than split \
                     between them. Set read_only=ON on every server but the primary",
                    names.join(" and ")
                )),
            }
        }
    }
}

/// Among several writable servers none of which replicates, the one the
/// replicas follow, when they follow exactly one, or else the one ahead of
/// the others ([`the_one_ahead`]): the primary, the others named in the
/// alarm as strays.
fn primary_beside_strays(
    seen: &[Option<Seen>],
    positions: &[Option<&GtidPosition>],
    writable: &[usize],
    names: &[String],
) -> Option<Discovered> {
    if writable
        .iter()
        .any(|&i| seen[i].is_some_and(|s| s.replicating))
    {
        return None;
    }
    let followed = the_one_followed(writable, |index| {
        seen.iter()
            .flatten()
            .any(|s| s.reachable && s.follows == Some(index))
    });
    let (primary, why) = match followed {
        Some(primary) => (primary, "no replica follows it"),
        None => (
            the_one_ahead(writable, |index| positions[index])?,
            "the primary has every transaction it has and more",
        ),
    };
    let strays: Vec<&str> = writable
        .iter()
        .filter(|&&i| i != primary)
        .map(|&i| names[i].as_str())
        .collect();
    Some(Discovered {
        primary: Some(primary),
        alarm: Some(format!(
            "{} writable beside the primary {}, and {why} (a primary that came back after a \
             failover?): writes go to {}; rwsplit makes it read-only",
            strays.join(" and "),
            names[primary],
            names[primary]
        )),
    })
}

/// The one of `writable` that replicas follow, when exactly one is: the
/// primary, the others strays (the rule for the monitor's view here, and
/// for a failover's fresh survey in `failover::plan::strays`).
pub fn the_one_followed(writable: &[usize], followed: impl Fn(usize) -> bool) -> Option<usize> {
    let mut followed = writable.iter().copied().filter(|&i| followed(i));
    match (followed.next(), followed.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// The one of `writable` whose GTID position includes every other's while
/// none includes its own: a server promoted while the others were away,
/// which has written since. `None` when positions are equal or unknown,
/// or have diverged. (MariaDB positions compare by sequence number within
/// a domain, so a transaction only the other had, lost in a failover, does
/// not count against the promoted one; fencing the other then keeps it.)
pub fn the_one_ahead<'a>(
    writable: &[usize],
    position: impl Fn(usize) -> Option<&'a GtidPosition>,
) -> Option<usize> {
    let ahead = |candidate: usize| {
        let Some(ours) = position(candidate) else {
            return false;
        };
        writable.iter().filter(|&&i| i != candidate).all(|&other| {
            position(other).is_some_and(|theirs| ours.includes(theirs) && !theirs.includes(ours))
        })
    };
    writable.iter().copied().find(|&index| ahead(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: Option<Seen> = Some(Seen {
        reachable: true,
        read_only: false,
        replicating: false,
        follows: None,
    });
    const REPLICA: Option<Seen> = Some(Seen {
        reachable: true,
        read_only: true,
        replicating: true,
        follows: None,
    });
    /// No GTID position known.
    const UNKNOWN: [Option<&GtidPosition>; 3] = [None; 3];
    const DOWN: Option<Seen> = Some(Seen {
        reachable: false,
        read_only: false,
        replicating: false,
        follows: None,
    });

    fn replica_of(index: usize) -> Option<Seen> {
        REPLICA.map(|s| Seen {
            follows: Some(index),
            ..s
        })
    }

    fn names() -> Vec<String> {
        ["db1", "db2", "db3"].map(String::from).to_vec()
    }

    #[test]
    fn the_writable_server_that_does_not_replicate() {
        assert_eq!(
            discover(&[REPLICA, PRIMARY, REPLICA], &UNKNOWN, Some(0), &names()).primary,
            Some(1),
            "the hint loses to the servers"
        );
    }

    #[test]
    fn two_writable_servers_raise_an_alarm() {
        let found = discover(&[PRIMARY, REPLICA, PRIMARY], &UNKNOWN, Some(0), &names());
        assert_eq!(found.primary, None);
        assert!(
            found
                .alarm
                .unwrap()
                .starts_with("db1 and db3 are all writable")
        );
    }

    #[test]
    fn of_two_writable_servers_the_one_the_replicas_follow_is_the_primary() {
        let found = discover(&[PRIMARY, PRIMARY, replica_of(1)], &UNKNOWN, None, &names());
        assert_eq!(found.primary, Some(1));
        assert!(
            found
                .alarm
                .unwrap()
                .starts_with("db1 writable beside the primary db2, and no replica follows it"),
        );
        assert_eq!(
            discover(&[PRIMARY, PRIMARY, REPLICA], &UNKNOWN, None, &names()).primary,
            None,
            "the replica's source is not one of ours: no telling"
        );
        let writable_replica = replica_of(1).map(|s| Seen {
            read_only: false,
            ..s
        });
        assert_eq!(
            discover(
                &[PRIMARY, PRIMARY, writable_replica],
                &UNKNOWN,
                None,
                &names()
            )
            .primary,
            None,
            "a writable replica is an alarm of its own"
        );
        let both_followed = [PRIMARY, PRIMARY, replica_of(0), replica_of(1)];
        let four: Vec<String> = ["db1", "db2", "db3", "db4"].map(String::from).to_vec();
        assert_eq!(
            discover(&both_followed, &[None; 4], None, &four).primary,
            None
        );
    }

    #[test]
    fn an_unreachable_primary_stays_the_primary() {
        assert_eq!(
            discover(&[DOWN, REPLICA, REPLICA], &UNKNOWN, Some(0), &names()),
            Discovered {
                primary: Some(0),
                alarm: None
            }
        );
        assert_eq!(
            discover(&[None, None, None], &UNKNOWN, Some(0), &names()).primary,
            Some(0),
            "before any check: the hint"
        );
    }

    #[test]
    fn a_read_only_former_primary_is_no_primary() {
        let fenced = Some(Seen {
            reachable: true,
            read_only: true,
            replicating: false,
            follows: None,
        });
        let found = discover(&[fenced, REPLICA, REPLICA], &UNKNOWN, Some(0), &names());
        assert_eq!(found.primary, None);
        assert!(found.alarm.is_some());
    }

    #[test]
    fn of_two_writable_servers_the_one_ahead_is_the_primary() {
        let position = |text: &str| GtidPosition::parse(text).unwrap();
        let (old, new) = (position("0-1-10"), position("0-2-25"));
        let two = &names()[..2];
        // A primary and its one replica, failed over: the old primary came
        // back writable, the promoted one has written since.
        let found = discover(&[PRIMARY, PRIMARY], &[Some(&old), Some(&new)], None, two);
        assert_eq!(found.primary, Some(1));
        assert!(found.alarm.unwrap().starts_with(
            "db1 writable beside the primary db2, and the primary has every transaction it \
                 has and more"
        ));
        let nothing_since = discover(&[PRIMARY, PRIMARY], &[Some(&old), Some(&old)], None, two);
        assert_eq!(nothing_since.primary, None, "equal positions: no telling");
        let diverged = position("0-1-10,1-1-3");
        let found = discover(
            &[PRIMARY, PRIMARY],
            &[Some(&diverged), Some(&new)],
            None,
            two,
        );
        assert_eq!(found.primary, None, "each has a domain the other lacks");
        let found = discover(&[PRIMARY, PRIMARY], &[None, Some(&new)], None, two);
        assert_eq!(found.primary, None, "a position not known");
        let followed = discover(
            &[PRIMARY, PRIMARY, replica_of(0)],
            &[Some(&old), Some(&new), Some(&old)],
            None,
            &names(),
        );
        assert_eq!(followed.primary, Some(0), "the replicas' word comes first");
    }
}
