//! Which backend is the primary: the writable one that does not replicate
//! from another. The configured role is only a starting hint.

/// What the last check of a backend showed, as far as discovery cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The check succeeded.
    pub reachable: bool,
    /// `@@read_only` is on.
    pub read_only: bool,
    /// It replicates from another server.
    pub replicating: bool,
}

/// The outcome of discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub primary: Option<usize>,
    /// Why there is no primary, for operators (and in the error clients get).
    pub alarm: Option<String>,
}

/// Decides the primary from every backend's last check (`None`: not
/// checked yet). `previous` is the primary until now (or the configured
/// hint); `names` are the backends' names, for the alarm text.
///
/// A replica that is writable (`read_only=OFF`) counts as a second writable
/// server: a write sent there would silently diverge it, so the alarm is
/// raised and writes are refused until an operator fixes it.
pub fn discover(seen: &[Option<Seen>], previous: Option<usize>, names: &[String]) -> Discovered {
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

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: Option<Seen> = Some(Seen {
        reachable: true,
        read_only: false,
        replicating: false,
    });
    const REPLICA: Option<Seen> = Some(Seen {
        reachable: true,
        read_only: true,
        replicating: true,
    });
    const DOWN: Option<Seen> = Some(Seen {
        reachable: false,
        read_only: false,
        replicating: false,
    });

    fn names() -> Vec<String> {
        ["db1", "db2", "db3"].map(String::from).to_vec()
    }

    #[test]
    fn the_writable_server_that_does_not_replicate() {
        assert_eq!(
            discover(&[REPLICA, PRIMARY, REPLICA], Some(0), &names()).primary,
            Some(1),
            "the hint loses to the servers"
        );
    }

    #[test]
    fn two_writable_servers_raise_an_alarm() {
        let found = discover(&[PRIMARY, REPLICA, PRIMARY], Some(0), &names());
        assert_eq!(found.primary, None);
        assert!(
            found
                .alarm
                .unwrap()
                .starts_with("db1 and db3 are all writable")
        );
    }

    #[test]
    fn an_unreachable_primary_stays_the_primary() {
        assert_eq!(
            discover(&[DOWN, REPLICA, REPLICA], Some(0), &names()),
            Discovered {
                primary: Some(0),
                alarm: None
            }
        );
        assert_eq!(
            discover(&[None, None, None], Some(0), &names()).primary,
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
        });
        let found = discover(&[fenced, REPLICA, REPLICA], Some(0), &names());
        assert_eq!(found.primary, None);
        assert!(found.alarm.is_some());
    }
}
