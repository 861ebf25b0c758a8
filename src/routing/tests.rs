//! The routing table: (statement kind, session, topology) -> target.

use std::time::Duration;

use super::*;
use crate::sql::SessionChange;
use crate::topology::BackendState;

/// db0 primary, db1 and db2 replicas, db3 a backup replica.
fn topology() -> Topology {
    let replica = BackendState::in_service(Role::Replica);
    Topology {
        primary: Some(0),
        backends: vec![
            BackendState::in_service(Role::Primary),
            replica.clone(),
            replica.clone(),
            BackendState {
                backup: true,
                ..replica
            },
        ],
        alarm: None,
    }
}

/// No statements in flight anywhere.
fn idle(_backend: usize) -> u32 {
    0
}

fn policy(turn: u64) -> ReadPolicy<'static> {
    ReadPolicy {
        selection: ReplicaSelection::RoundRobin,
        primary_serves_reads: false,
        load: &idle,
        turn,
        avoid: 0,
        sticky: None,
    }
}

const PRIMARY: Target = Target::Backend(0);

fn on(kind: StatementKind, session: SessionView) -> Target {
    route(&kind, None, &session, &topology(), &policy(0))
}

fn is_replica(target: Target) -> bool {
    matches!(target, Target::Backend(1 | 2))
}

#[test]
fn kinds_outside_transactions() {
    let none = SessionView::default();
    assert!(is_replica(on(StatementKind::Read, none)));
    assert!(is_replica(on(
        StatementKind::Begin { read_only: true },
        none
    )));
    for kind in [
        StatementKind::Write,
        StatementKind::PinsToPrimary,
        StatementKind::Begin { read_only: false },
        StatementKind::Transaction,
        StatementKind::LockTables,
        StatementKind::UnlockTables,
        StatementKind::CreateTemporaryTable("t".into()),
        StatementKind::DropTables(vec!["t".into()]),
        StatementKind::SessionState(SessionChange::Variables),
        StatementKind::PreviousResult,
    ] {
        assert_eq!(on(kind.clone(), none), PRIMARY, "{kind:?}");
    }
}

#[test]
fn the_previous_statement_decides_for_previous_results() {
    let session = SessionView {
        previous: Some(2),
        ..Default::default()
    };
    assert_eq!(
        on(StatementKind::PreviousResult, session),
        Target::Backend(2)
    );
    let session = SessionView {
        previous: Some(0),
        ..Default::default()
    };
    assert_eq!(on(StatementKind::PreviousResult, session), PRIMARY);
}

#[test]
fn transactions_keep_every_statement_on_their_backend() {
    for backend in [0, 1] {
        let session = SessionView {
            transaction: Some(backend),
            ..Default::default()
        };
        for kind in [
            StatementKind::Read,
            StatementKind::Write,
            StatementKind::Transaction,
            StatementKind::PreviousResult,
        ] {
            assert_eq!(
                on(kind.clone(), session),
                Target::Backend(backend),
                "{kind:?} in a transaction on {backend}"
            );
        }
        let hinted = route(
            &StatementKind::Read,
            Some(Hint::Replica),
            &session,
            &topology(),
            &policy(0),
        );
        assert_eq!(
            hinted,
            Target::Backend(backend),
            "hints do not move statements out of a transaction"
        );
    }
}

#[test]
fn sticky_session_states_send_reads_to_the_primary() {
    let cases = [
        SessionView {
            autocommit_off: true,
            ..Default::default()
        },
        SessionView {
            locked_tables: true,
            ..Default::default()
        },
        SessionView {
            uses_temporary_table: true,
            ..Default::default()
        },
        SessionView {
            pinned: true,
            ..Default::default()
        },
    ];
    for session in cases {
        assert_eq!(on(StatementKind::Read, session), PRIMARY, "{session:?}");
        assert_eq!(
            on(StatementKind::Begin { read_only: true }, session),
            PRIMARY,
            "{session:?}"
        );
    }
}

#[test]
fn hints_override_the_kind() {
    let none = SessionView::default();
    let hinted =
        |kind: StatementKind, hint| route(&kind, Some(hint), &none, &topology(), &policy(0));
    assert_eq!(hinted(StatementKind::Read, Hint::Primary), PRIMARY);
    assert!(is_replica(hinted(StatementKind::Write, Hint::Replica)));
    let autocommit_off = SessionView {
        autocommit_off: true,
        ..Default::default()
    };
    assert_eq!(
        route(
            &StatementKind::Read,
            Some(Hint::Replica),
            &autocommit_off,
            &topology(),
            &policy(0)
        ),
        PRIMARY,
        "a read on a replica would open a transaction there"
    );
    let pinned = SessionView {
        pinned: true,
        ..Default::default()
    };
    assert_eq!(
        route(
            &StatementKind::Read,
            Some(Hint::Replica),
            &pinned,
            &topology(),
            &policy(0)
        ),
        PRIMARY
    );
}

#[test]
fn round_robin_alternates_and_follows_weights() {
    let none = SessionView::default();
    let picks: Vec<Target> = (0..4)
        .map(|turn| {
            route(
                &StatementKind::Read,
                None,
                &none,
                &topology(),
                &policy(turn),
            )
        })
        .collect();
    assert_eq!(
        picks,
        [
            Target::Backend(1),
            Target::Backend(2),
            Target::Backend(1),
            Target::Backend(2)
        ]
    );
    let mut weighted = topology();
    weighted.backends[2].weight = 3;
    let counts = (0..400).fold([0; 4], |mut counts, turn| {
        if let Some(i) = pick_reader(&weighted, &policy(turn)) {
            counts[i] += 1;
        }
        counts
    });
    assert_eq!(counts, [0, 100, 300, 0]);
}

#[test]
fn least_connections_takes_the_least_busy_per_weight() {
    let pick = |topology: &Topology, loads: [u32; 4], turn| {
        let load = |backend: usize| loads[backend];
        let reads = ReadPolicy {
            selection: ReplicaSelection::LeastConnections,
            load: &load,
            ..policy(turn)
        };
        pick_reader(topology, &reads)
    };
    assert_eq!(pick(&topology(), [0, 5, 2, 0], 0), Some(2));
    assert_eq!(pick(&topology(), [0, 1, 9, 0], 0), Some(1));
    let mut weighted = topology();
    weighted.backends[2].weight = 4;
    assert_eq!(pick(&weighted, [0, 1, 3, 0], 0), Some(2), "3/4 < 1/1");
    let ties: Vec<_> = (0..2)
        .map(|turn| pick(&topology(), [0, 1, 1, 0], turn))
        .collect();
    assert_eq!(ties, [Some(1), Some(2)], "ties are shared");
}

#[test]
fn least_lag_takes_the_freshest() {
    let mut lagging = topology();
    lagging.backends[1].lag = Lag::Measured(Duration::from_millis(900));
    lagging.backends[2].lag = Lag::Measured(Duration::from_millis(100));
    let reads = ReadPolicy {
        selection: ReplicaSelection::LeastLag,
        ..policy(0)
    };
    assert_eq!(pick_reader(&lagging, &reads), Some(2));
}

#[test]
fn the_freshest_replica_is_the_least_lagging_one_in_rotation() {
    let mut t = topology();
    t.backends[1].lag = Lag::Measured(Duration::from_millis(900));
    t.backends[2].lag = Lag::Measured(Duration::from_millis(100));
    t.backends[3].lag = Lag::Measured(Duration::from_secs(2));
    assert_eq!(freshest_replica(&t), Some(2));
    t.backends[2].readable = false;
    assert_eq!(freshest_replica(&t), Some(1));
    t.backends[1].healthy = false;
    t.backends[3].lag = Lag::Unknown;
    assert_eq!(freshest_replica(&t), None);
}

#[test]
fn replicas_out_of_rotation_and_down_are_skipped_then_backups_then_the_primary() {
    let none = SessionView::default();
    let read =
        |t: &Topology, reads: &ReadPolicy<'_>| route(&StatementKind::Read, None, &none, t, reads);
    let mut t = topology();
    t.backends[1].readable = false;
    t.backends[2].readable = false;
    assert_eq!(
        read(&t, &policy(0)),
        Target::Backend(3),
        "only the backup is left"
    );
    t.backends[3].healthy = false;
    assert_eq!(
        read(&t, &policy(0)),
        PRIMARY,
        "no replica at all: the primary"
    );
    let serving = ReadPolicy {
        primary_serves_reads: true,
        ..policy(0)
    };
    assert_eq!(read(&t, &serving), PRIMARY);
    let mut healthy = topology();
    healthy.backends[1].healthy = false;
    assert_eq!(read(&healthy, &policy(0)), Target::Backend(2));
    assert_eq!(read(&healthy, &policy(1)), Target::Backend(2));
}

#[test]
fn the_primary_can_serve_reads_too() {
    let serving = ReadPolicy {
        primary_serves_reads: true,
        ..policy(0)
    };
    let picks: std::collections::BTreeSet<_> = (0..6)
        .map(|turn| pick_reader(&topology(), &ReadPolicy { turn, ..serving }))
        .collect();
    assert_eq!(picks, [Some(0), Some(1), Some(2)].into_iter().collect());
}

#[test]
fn without_a_primary_writes_have_nowhere_to_go() {
    let mut t = topology();
    t.primary = None;
    let none = SessionView::default();
    assert_eq!(
        route(&StatementKind::Write, None, &none, &t, &policy(0)),
        Target::NoPrimary
    );
    assert!(
        is_replica(route(&StatementKind::Read, None, &none, &t, &policy(0))),
        "reads still work"
    );
}

#[test]
fn avoided_backends_take_no_reads() {
    let avoiding = |avoid| ReadPolicy { avoid, ..policy(0) };
    for turn in 0..4 {
        let reads = ReadPolicy {
            turn,
            ..avoiding(1 << 1)
        };
        assert_eq!(pick_reader(&topology(), &reads), Some(2));
    }
    assert_eq!(
        pick_reader(&topology(), &avoiding(0b110)),
        Some(3),
        "the backup is left"
    );
    assert_eq!(pick_reader(&topology(), &avoiding(0b1110)), None);
}

#[test]
fn a_sticky_reader_is_kept_while_it_may_take_reads() {
    let sticky = |replica| ReadPolicy {
        sticky: Some(replica),
        ..policy(0)
    };
    for turn in 0..4 {
        let reads = ReadPolicy { turn, ..sticky(2) };
        assert_eq!(pick_reader(&topology(), &reads), Some(2), "turn {turn}");
    }
    let mut t = topology();
    t.backends[2].readable = false;
    assert_eq!(
        pick_reader(&t, &sticky(2)),
        Some(1),
        "out of rotation: another"
    );
    let avoided = ReadPolicy {
        avoid: 1 << 2,
        ..sticky(2)
    };
    assert_eq!(
        pick_reader(&topology(), &avoided),
        Some(1),
        "avoided: another"
    );
    assert_eq!(
        pick_reader(&topology(), &sticky(3)),
        Some(1),
        "a backup is left for a regular replica once one is back"
    );
    let mut regular_down = topology();
    regular_down.backends[1].healthy = false;
    regular_down.backends[2].healthy = false;
    assert_eq!(
        pick_reader(&regular_down, &sticky(3)),
        Some(3),
        "a backup is kept while no regular replica may read"
    );
    assert_eq!(
        pick_reader(&topology(), &sticky(0)),
        Some(1),
        "the primary is no reader unless it serves reads"
    );
}
