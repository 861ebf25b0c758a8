//! The backend side: connections to MySQL/MariaDB servers and their pools.
//!
//! | module | owns |
//! |---|---|
//! | [`conn`] | one connection: TLS, login as the client's user, packet exchange |
//! | [`pool`] | idle connections per backend, reset before reuse |

pub mod conn;
pub mod pool;
