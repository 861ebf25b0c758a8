//! The backend side: connections to MySQL/MariaDB servers and their pools.
//!
//! | module | owns |
//! |---|---|
//! | [`conn`] | one connection: TLS, login as the client's user, packet exchange |
//! | [`fresh`] | a used connection brought back to a fresh login's state |
//! | [`pool`] | idle connections per backend, reset before reuse |
//! | [`sockets`] | the connections open to a backend, counted, and cut when it stops being the primary |

pub mod conn;
mod fresh;
pub mod pool;
pub mod sockets;

/// Whether a server is MariaDB rather than MySQL, by its version
/// (`@@version`, or the greeting's): MariaDB's always says so, with or
/// without the "5.5.5-" it puts before it for old clients.
pub fn is_mariadb(version: &[u8]) -> bool {
    version.windows(7).any(|w| w == b"MariaDB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_is_told_from_mysql_by_its_version() {
        assert!(is_mariadb(b"5.5.5-10.11.6-MariaDB-0+deb12u1"));
        assert!(is_mariadb(b"11.4.2-MariaDB-log"));
        assert!(!is_mariadb(b"8.0.36"));
        assert!(!is_mariadb(b"8.4.0-commercial"));
    }
}
