//! rwsplit: a MySQL/MariaDB read/write-splitting proxy.
//!
//! Module map (docs/architecture.md has the data flow):
//!
//! | module | owns |
//! |---|---|
//! | [`admin`] | HTTP admin API: /status, /metrics, /health, /ready, /switchover, /failover |
//! | [`cli`] | the `rwsplit` command line: subcommands and their output |
//! | [`config`] | `proxy.yaml`: `${VAR}` substitution, typed model, validation |
//! | [`gtid`] | GTIDs and server positions (MariaDB and MySQL), for read-your-writes |
//! | [`logging`] | tracing subscriber set-up (text or JSON) |
//! | [`metrics`] | counters for /status and /metrics (per session thread), Prometheus text |
//! | [`protocol`] | MySQL wire protocol: pure functions over bytes |
//! | [`net`] | byte streams: TCP or TLS |
//! | [`tls`] | TLS configurations for both sides |
//! | [`server`] | client side: listener, login, sessions, KILL registry |
//! | [`backend`] | backend side: connections and pools |
//! | [`sql`] | what rwsplit reads in SQL text: `classify(text) -> Classified` |
//! | [`routing`] | `route(kind, &SessionView, &Topology, &ReadPolicy) -> Target` |
//! | [`topology`] | the backends' roles, health and lag, as a lock-free snapshot |
//! | [`failover`] | switchover, failover and fencing: plans, steps, the topology lock |
//! | [`sandbox`] | local MariaDB primary + replicas for tests, demos and benchmarks |
//! | [`timer`] | timeouts on session threads, whose runtimes have no timer driver |

// Module docs link the private modules under them: `cargo doc` documents
// private items here (.cargo/config.toml), so those links resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
pub mod backend;
pub mod cli;
pub mod config;
pub mod failover;
pub mod gtid;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod routing;
pub mod sandbox;
pub mod server;
pub mod sql;
pub mod timer;
pub mod tls;
pub mod topology;
