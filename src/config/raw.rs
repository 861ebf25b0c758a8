//! The shape of `proxy.yaml` as written, before validation.
//!
//! Scalar leaves are kept as text (`Scalar`) so that a bad value does not stop
//! deserialization: `validate` converts every leaf to its real type and reports
//! all problems together, each with its key path. docs/configuration.md
//! describes every key.

use serde::Deserialize;

/// A scalar exactly as written in the file (`2s`, `127.0.0.1:3307`, `true`, `5`).
pub type Scalar = Option<String>;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub listen: Option<RawListen>,
    pub admin: Option<RawAdmin>,
    pub users: Option<Vec<RawUser>>,
    pub backends: Option<Vec<RawBackend>>,
    pub monitor: Option<RawMonitor>,
    pub routing: Option<RawRouting>,
    pub failover: Option<RawFailover>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawListen {
    pub address: Scalar,
    pub tls: Option<RawListenTls>,
    pub max_client_connections: Scalar,
    pub handshake_timeout: Scalar,
    pub max_logins_per_address: Scalar,
    pub failed_login_delay: Scalar,
    pub read_timeout: Scalar,
    pub max_allowed_packet: Scalar,
    pub buffered_packet_budget: Scalar,
    pub auth_plugin: Scalar,
    pub threads: Scalar,
    pub pin_threads: Scalar,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawListenTls {
    pub cert: Scalar,
    pub key: Scalar,
    pub required: Scalar,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub address: Scalar,
    pub token: Scalar,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUser {
    pub name: Scalar,
    pub password: Scalar,
    pub auth_plugin: Scalar,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawBackend {
    pub name: Scalar,
    pub address: Scalar,
    pub role: Scalar,
    pub weight: Scalar,
    pub backup: Scalar,
    pub tls: Option<RawBackendTls>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawBackendTls {
    pub ca: Scalar,
    pub verify: Scalar,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawMonitor {
    pub user: Scalar,
    pub password: Scalar,
    pub interval: Scalar,
    pub connect_timeout: Scalar,
    pub query_timeout: Scalar,
    pub failure_threshold: Scalar,
    pub recovery_threshold: Scalar,
    pub heartbeat_table: Scalar,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRouting {
    pub max_replication_lag: Scalar,
    pub replica_selection: Scalar,
    pub replica_affinity: Scalar,
    pub read_your_writes: Scalar,
    pub causal_read_timeout: Scalar,
    pub primary_serves_reads: Scalar,
    pub wait_for_primary: Scalar,
    pub session_history_limit: Scalar,
    pub transaction_replay: Scalar,
    pub transaction_replay_max_size: Scalar,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawFailover {
    pub auto: Scalar,
    pub failure_threshold: Scalar,
    pub replication_user: Scalar,
    pub replication_password: Scalar,
    pub timeout: Scalar,
    pub lock_quorum: Scalar,
    pub fence_command: Scalar,
}
