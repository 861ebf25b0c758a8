//! rwsplit: a MySQL/MariaDB read/write-splitting proxy.
//!
//! Module map (see docs/architecture.md for the data flow):
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the `rwsplit` command line: subcommands and their output |
//! | [`config`] | `proxy.yaml`: `${VAR}` substitution, typed model, validation |
//! | [`logging`] | tracing subscriber set-up (text or JSON) |
//! | [`protocol`] | MySQL wire protocol: framing, response scanning, packets |
//! | [`sandbox`] | local MariaDB primary + replicas for tests, demos and benchmarks |

pub mod cli;
pub mod config;
pub mod logging;
pub mod protocol;
pub mod sandbox;
