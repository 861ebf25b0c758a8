//! A connection a session used, brought back to the state of a fresh
//! login before the pool hands it to another session.
//!
//! COM_RESET_CONNECTION clears most of a session — variables, user
//! variables, temporary tables, prepared statements, locks, the open
//! transaction, `LAST_INSERT_ID()`, the session status counters — but not
//! all of what a login sets up or a session can leave behind. Measured on
//! MariaDB 10.11 (docs/protocol.md, "Pooled connections"):
//!
//! - what the login derives from the client's capability flags is lost:
//!   `IGNORE_SPACE` in `sql_mode` (CLIENT_IGNORE_SPACE) and `wait_timeout`
//!   taken from `interactive_timeout` (CLIENT_INTERACTIVE). rwsplit sets
//!   them again after the reset, as the login would.
//! - the current role (`SET ROLE`) and the `SHOW PROFILES` history are
//!   kept. A connection that has either is closed instead of reused.
//! - `init_connect` runs at a login and not at a reset: while the server
//!   has one, connections are closed instead of reused.
//! - the current database is kept: the pool records it, and the next
//!   session selects its own.
//!
//! The reset also turns off the state-change tracker rwsplit keeps on
//! (see [`super::conn::Login::track_state`]); it is turned on again.

use mysql_common::constants::{CapabilityFlags, StatusFlags};

use super::conn::{BackendConn, BackendError};

/// What a session may leave that a reset keeps, read before the reset:
/// the database, the role, profiling and its history, `init_connect`.
const LEFTOVERS: &str = "SELECT DATABASE(), CURRENT_ROLE(), @@session.profiling, \
     (SELECT COUNT(*) FROM information_schema.PROFILING), @@global.init_connect";

/// Resets `conn` and brings it to the state a fresh login with its
/// capabilities would have. Returns its current database; an error when
/// it cannot be made so (the caller closes it).
pub(crate) async fn reset_for_reuse(
    conn: &mut BackendConn,
) -> Result<Option<String>, BackendError> {
    let values = conn.query_row(LEFTOVERS).await?;
    let db = reusable(&values).map_err(BackendError::NotReusable)?;
    conn.reset().await?;
    if let Some(sql) = after_reset(conn.capabilities(), conn.tracks_state()) {
        conn.run_query(&sql).await?;
    }
    if conn.status().contains(StatusFlags::SERVER_STATUS_IN_TRANS) || !conn.buffered().is_empty() {
        return Err(BackendError::Protocol(
            "connection not clean after reset".into(),
        ));
    }
    Ok(db)
}

/// Whether a connection whose [`LEFTOVERS`] are `values` may be reused;
/// if so, its current database.
fn reusable(values: &[Option<Vec<u8>>]) -> Result<Option<String>, &'static str> {
    let [db, role, profiling, profiles, init_connect] = values else {
        return Err("unexpected answer about the session's leftovers");
    };
    // MariaDB says NULL when no role is set, MySQL 'NONE'.
    if role.as_deref().is_some_and(|r| r != b"NONE") {
        return Err("a role is set, which a reset keeps");
    }
    let is = |value: &Option<Vec<u8>>, expected: &[u8]| value.as_deref() == Some(expected);
    if !is(profiling, b"0") || !is(profiles, b"0") {
        return Err("profiling was used, and a reset keeps its history");
    }
    if !init_connect.as_deref().unwrap_or_default().is_empty() {
        return Err("the server has an init_connect, which runs at a login and not at a reset");
    }
    Ok(db
        .as_deref()
        .map(|d| String::from_utf8_lossy(d).into_owned()))
}

/// The statement that gives a reset connection what a login with
/// `capabilities` sets and a reset clears, if any, and turns the
/// state-change tracker on again if it `tracks_state`.
fn after_reset(capabilities: CapabilityFlags, tracks_state: bool) -> Option<String> {
    let mut assignments = Vec::new();
    if tracks_state {
        assignments.push("session_track_state_change = 1");
    }
    if capabilities.contains(CapabilityFlags::CLIENT_IGNORE_SPACE) {
        assignments.push("sql_mode = CONCAT(@@global.sql_mode, ',IGNORE_SPACE')");
    }
    if capabilities.contains(CapabilityFlags::CLIENT_INTERACTIVE) {
        assignments.push("wait_timeout = @@global.interactive_timeout");
    }
    (!assignments.is_empty()).then(|| format!("SET SESSION {}", assignments.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(row: &[Option<&str>]) -> Vec<Option<Vec<u8>>> {
        row.iter()
            .map(|v| v.map(|v| v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_connection_with_what_a_reset_keeps_is_not_reused() {
        let clean = [Some("shop"), None, Some("0"), Some("0"), Some("")];
        assert_eq!(reusable(&values(&clean)), Ok(Some("shop".into())));
        let mut no_db = clean;
        no_db[0] = None;
        assert_eq!(reusable(&values(&no_db)), Ok(None));
        let mut mysql_no_role = clean;
        mysql_no_role[1] = Some("NONE");
        assert!(reusable(&values(&mysql_no_role)).is_ok());

        for (index, value, why) in [
            (1, Some("auditor"), "a role is set"),
            (2, Some("1"), "profiling on"),
            (3, Some("12"), "profiles kept"),
            (4, Some("SET NAMES utf8mb4"), "init_connect"),
        ] {
            let mut row = clean;
            row[index] = value;
            assert!(reusable(&values(&row)).is_err(), "{why}");
        }
        assert!(reusable(&values(&clean[..4])).is_err(), "a short row");
    }

    #[test]
    fn what_the_login_derived_from_the_flags_is_set_again() {
        assert_eq!(
            after_reset(CapabilityFlags::CLIENT_PROTOCOL_41, false),
            None
        );
        assert_eq!(
            after_reset(CapabilityFlags::CLIENT_IGNORE_SPACE, false).as_deref(),
            Some("SET SESSION sql_mode = CONCAT(@@global.sql_mode, ',IGNORE_SPACE')")
        );
        let both = CapabilityFlags::CLIENT_IGNORE_SPACE | CapabilityFlags::CLIENT_INTERACTIVE;
        assert_eq!(
            after_reset(both, true).as_deref(),
            Some(
                "SET SESSION session_track_state_change = 1, \
                 sql_mode = CONCAT(@@global.sql_mode, ',IGNORE_SPACE'), \
                 wait_timeout = @@global.interactive_timeout"
            )
        );
        assert_eq!(
            after_reset(CapabilityFlags::CLIENT_PROTOCOL_41, true).as_deref(),
            Some("SET SESSION session_track_state_change = 1")
        );
    }
}
