//! The client-facing side: accepting connections, logging clients in, and
//! running their sessions.
//!
//! | module | owns |
//! |---|---|
//! | [`listener`] | accept loop, connection limit, session threads, graceful shutdown |
//! | [`login`] | greeting, TLS upgrade, password checks |
//! | [`client`] | a logged-in client's packet stream (TLS, compression, timeouts) |
//! | [`session`] | one client's commands, relayed to backends |
//! | [`registry`] | live sessions by connection id, for KILL |

pub mod affinity;
pub mod client;
pub mod listener;
pub mod login;
pub mod registry;
pub mod session;
pub mod throttle;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::backend::conn::{BackendConn, Endpoint, Greeting, Login, TlsTarget};
use crate::backend::pool::Pool;
use crate::backend::sockets::Sockets;
use crate::config::{AuthPluginChoice, Config, UserConfig};
use crate::metrics::Metrics;
use crate::protocol::auth::{AuthPlugin, RsaKey};
use crate::tls::{self, TlsError};
use crate::topology::{Topology, TopologyCell};
use registry::Registry;

fn plugin(choice: AuthPluginChoice) -> AuthPlugin {
    match choice {
        AuthPluginChoice::NativePassword => AuthPlugin::NativePassword,
        AuthPluginChoice::CachingSha2Password => AuthPlugin::CachingSha2Password,
    }
}

/// The plugin a server of this version gives new accounts: MySQL's is
/// caching_sha2_password from 8.0, MariaDB's mysql_native_password.
fn flavour_plugin(version: &[u8]) -> AuthPlugin {
    let major = version
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u32, |n, &c| {
            n.saturating_mul(10).saturating_add(u32::from(c - b'0'))
        });
    if crate::backend::is_mariadb(version) || major < 8 {
        AuthPlugin::NativePassword
    } else {
        AuthPlugin::CachingSha2Password
    }
}

/// Capabilities rwsplit offers clients, before intersecting with what the
/// backends support. Compression and TLS are rwsplit's own, per side.
/// CLIENT_LONG_PASSWORD doubles as "CLIENT_MYSQL": MySQL servers set it,
/// MariaDB servers do not, and only then do MariaDB clients ask for
/// MariaDB's extended capabilities.
const OFFERED: CapabilityFlags = CapabilityFlags::CLIENT_LONG_PASSWORD
    .union(CapabilityFlags::CLIENT_FOUND_ROWS)
    .union(CapabilityFlags::CLIENT_LONG_FLAG)
    .union(CapabilityFlags::CLIENT_CONNECT_WITH_DB)
    .union(CapabilityFlags::CLIENT_LOCAL_FILES)
    .union(CapabilityFlags::CLIENT_IGNORE_SPACE)
    .union(CapabilityFlags::CLIENT_PROTOCOL_41)
    .union(CapabilityFlags::CLIENT_INTERACTIVE)
    .union(CapabilityFlags::CLIENT_TRANSACTIONS)
    .union(CapabilityFlags::CLIENT_SECURE_CONNECTION)
    .union(CapabilityFlags::CLIENT_MULTI_STATEMENTS)
    .union(CapabilityFlags::CLIENT_MULTI_RESULTS)
    .union(CapabilityFlags::CLIENT_PS_MULTI_RESULTS)
    .union(CapabilityFlags::CLIENT_PLUGIN_AUTH)
    .union(CapabilityFlags::CLIENT_CONNECT_ATTRS)
    .union(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
    .union(CapabilityFlags::CLIENT_SESSION_TRACK)
    .union(CapabilityFlags::CLIENT_DEPRECATE_EOF);

/// MariaDB extended capabilities rwsplit offers clients, when the primary
/// has them. Each is relayed as each backend connection negotiates it.
/// Extended metadata adds a type name to column definitions, which rwsplit
/// never reads; progress reports come before a result and pass through
/// (the response scanner knows them from errors); bulk execution is a
/// command of its own, routed as a write (see `session::prepared`); for
/// metadata caching, the column definitions a client holds for each
/// prepared statement are kept in step with each backend's. Unit results
/// of bulk executions (MariaDB 11.5) are not offered.
const OFFERED_MARIADB: MariadbCapabilities = MariadbCapabilities::MARIADB_CLIENT_CACHE_METADATA
    .union(MariadbCapabilities::MARIADB_CLIENT_EXTENDED_METADATA)
    .union(MariadbCapabilities::MARIADB_CLIENT_PROGRESS)
    .union(MariadbCapabilities::MARIADB_CLIENT_STMT_BULK_OPERATIONS);

/// Idle backend connections kept per pool key.
const POOL_MAX_IDLE: usize = 32;
/// Idle backend connections older than this are closed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What clients are told about "the server" in the greeting: the primary's
/// version and collation, so that clients see the real ones, and the
/// capabilities every backend reached so far has in common.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: Vec<u8>,
    pub capabilities: CapabilityFlags,
    pub mariadb: MariadbCapabilities,
    pub collation: u8,
}

impl ServerInfo {
    /// Used until a backend has answered: a MariaDB 10.11 with every
    /// capability rwsplit offers, but none of MariaDB's extended ones
    /// (which every backend would have to support).
    fn fallback() -> ServerInfo {
        ServerInfo {
            version: b"5.5.5-10.11.0-MariaDB".to_vec(),
            capabilities: OFFERED,
            mariadb: MariadbCapabilities::empty(),
            collation: 45, // utf8mb4_general_ci
        }
    }
}

/// The capabilities a backend's greeting offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offer {
    capabilities: CapabilityFlags,
    mariadb: MariadbCapabilities,
}

impl Offer {
    fn of(greeting: &Greeting) -> Offer {
        Offer {
            capabilities: greeting.capabilities,
            mariadb: greeting.mariadb,
        }
    }

    /// What both offer. A client's statements may go to any backend, so it
    /// may negotiate only what they all speak.
    fn and(self, other: Offer) -> Offer {
        Offer {
            capabilities: self.capabilities & other.capabilities,
            mariadb: self.mariadb & other.mariadb,
        }
    }
}

/// Why rwsplit could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listen.tls: {0}")]
    ListenTls(#[source] TlsError),
    #[error("backends[{index}].tls: {source}")]
    BackendTls {
        index: usize,
        #[source]
        source: TlsError,
    },
    #[error("cannot generate the RSA key for caching_sha2_password")]
    RsaKey,
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Everything sessions share.
pub struct Proxy {
    pub config: Config,
    /// How to reach each backend, in configuration order.
    pub endpoints: Vec<Endpoint>,
    /// Idle connections of each backend, in configuration order.
    pub pools: Vec<Pool>,
    pub registry: Arc<Registry>,
    /// What clients may hold in large packets still arriving, in
    /// [`client::BUDGET_UNIT`]s (`listen.buffered_packet_budget`).
    pub packet_budget: Arc<tokio::sync::Semaphore>,
    /// Logins in progress and failed logins, per source address.
    pub logins: Arc<throttle::LoginGuard>,
    /// Roles, health and lag of the backends, as sessions see them.
    pub topology: Arc<TopologyCell>,
    /// The monitor's details on each backend, for status output.
    pub reports: Arc<crate::topology::monitor::Reports>,
    /// Servers fenced with transactions the primary lacks.
    pub lost: Arc<crate::topology::lost::LostLog>,
    /// Counters for /status and /metrics.
    pub metrics: Metrics,
    /// Switchovers, failovers and fencing: one at a time.
    pub changes: crate::failover::Changes,
    /// The client listener accepts connections.
    pub listening: AtomicBool,
    /// Grows with every read routed (round robin, tie breaks).
    pub turn: AtomicU64,
    /// The writes sessions had acknowledged, for
    /// `routing.read_your_writes: global`.
    pub writes: session::WriteClock,
    /// Present when `listen.tls` is configured.
    pub tls: Option<TlsAcceptor>,
    /// For caching_sha2_password full authentication without TLS.
    pub rsa: RsaKey,
    users: HashMap<String, Arc<UserConfig>>,
    server_info: RwLock<Arc<ServerInfo>>,
    /// What each backend's last greeting offered, once one has been seen.
    offers: Mutex<Vec<Option<Offer>>>,
    /// Users that completed caching_sha2_password full authentication, and
    /// may now use its fast path (MySQL keeps the same cache).
    sha2_cache: Mutex<HashSet<String>>,
}

/// Starts serving `config` until `shutdown` resolves: binds the listen and
/// admin addresses, builds the shared state, and serves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let bind = |address| async move {
        tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| StartError::Bind { address, source })
    };
    let listener = bind(config.listen.address).await?;
    let admin = bind(config.admin.address).await?;
    let proxy = Arc::new(Proxy::new(config)?);
    start(proxy, listener, admin, shutdown).await;
    Ok(())
}

/// Serves on already bound listeners (tests bind port 0 themselves): the
/// monitor, the admin API and the client listener, until `shutdown`.
pub async fn start(
    proxy: Arc<Proxy>,
    listener: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // The monitor runs as long as the proxy serves: dropping the set
    // aborts its tasks.
    let _monitor = crate::topology::monitor::start(
        &proxy.config,
        proxy.topology.clone(),
        proxy.reports.clone(),
        proxy.lost.clone(),
    );
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_address = admin.local_addr().ok();
    tokio::spawn(crate::admin::serve(proxy.clone(), admin, async {
        // Resolves when the sender is dropped too.
        let _ = admin_stopped.await;
    }));
    // Fencing and automatic failover, for as long as the monitor runs.
    let mut failover = tokio::task::JoinSet::new();
    failover.spawn(crate::failover::watch(proxy.clone()));
    for warning in proxy.config.warnings() {
        tracing::warn!("{warning}");
    }
    probe_backends(&proxy).await;
    tracing::info!(
        address = %proxy.config.listen.address,
        admin = ?admin_address,
        backends = proxy.endpoints.len(),
        session_threads = proxy.config.listen.threads,
        read_your_writes = ?proxy.config.routing.read_your_writes,
        "rwsplit is serving"
    );
    proxy.listening.store(true, Ordering::Relaxed);
    listener::serve(proxy.clone(), listener, shutdown).await;
    proxy.listening.store(false, Ordering::Relaxed);
    drop(stop_admin);
    drop(failover);
}

/// Logs in to every backend with the monitor account, all at once, to learn
/// what each offers (and the primary's version) before the first client is
/// greeted. A backend that does not answer now is learnt about when a
/// session first reaches it.
async fn probe_backends(proxy: &Arc<Proxy>) {
    let mut probes = tokio::task::JoinSet::new();
    for backend in 0..proxy.endpoints.len() {
        let proxy = proxy.clone();
        probes.spawn(async move {
            let monitor = &proxy.config.monitor;
            let login = Login {
                user: &monitor.user,
                password: &monitor.password,
                db: None,
                capabilities: OFFERED,
                mariadb: MariadbCapabilities::empty(),
                collation: ServerInfo::fallback().collation,
                attributes: None,
                track_state: false,
            };
            let endpoint = &proxy.endpoints[backend];
            match BackendConn::connect(endpoint, &login).await {
                Ok(conn) => proxy.note_greeting(backend, conn.greeting()),
                Err(error) => tracing::warn!(
                    backend = endpoint.name,
                    %error,
                    "cannot reach the backend to learn its version and capabilities; \
                     clients are offered what the backends reached support until it answers"
                ),
            }
        });
    }
    while probes.join_next().await.is_some() {}
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.config.listen.address)
            .field("endpoints", &self.endpoints)
            .field("sessions", &self.registry.len())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy for unit tests: `listen` as its listen section, one user,
    /// and one backend nothing answers at.
    #[cfg(test)]
    pub(crate) fn for_tests(listen: &str) -> Arc<Proxy> {
        let text = format!(
            "listen: {listen}\n\
             users: [{{ name: app, password: app }}]\n\
             backends: [{{ name: db1, address: '127.0.0.1:1', role: primary }}]\n\
             monitor: {{ user: monitor, password: monitor }}\n"
        );
        let config = Config::from_text(&text, std::path::Path::new("test.yaml"), |_| None)
            .expect("valid config");
        Arc::new(Proxy::new(config).expect("proxy"))
    }

    /// Builds the shared state from a validated configuration.
    pub fn new(config: Config) -> Result<Proxy, StartError> {
        let tls = config
            .listen
            .tls
            .as_ref()
            .map(|t| tls::server_config(&t.cert, &t.key).map(TlsAcceptor::from))
            .transpose()
            .map_err(StartError::ListenTls)?;
        let metrics = Metrics::new(config.backends.len(), config.listen.threads);
        let endpoints = config
            .backends
            .iter()
            .enumerate()
            .map(|(index, backend)| {
                let tls = backend
                    .tls
                    .as_ref()
                    .map(|t| -> Result<TlsTarget, TlsError> {
                        let host = backend
                            .address
                            .rsplit_once(':')
                            .map_or(backend.address.as_str(), |(h, _)| h);
                        Ok(TlsTarget {
                            connector: TlsConnector::from(tls::client_config(
                                t.ca.as_deref(),
                                t.verify,
                            )?),
                            server_name: tls::server_name(host)?,
                        })
                    })
                    .transpose()
                    .map_err(|source| StartError::BackendTls { index, source })?;
                Ok(Endpoint {
                    name: backend.name.clone(),
                    address: backend.address.clone(),
                    tls,
                    connect_timeout: config.monitor.connect_timeout,
                    sockets: Arc::new(Sockets::counting(
                        metrics.backends[index].open_connections.clone(),
                    )),
                })
            })
            .collect::<Result<Vec<_>, StartError>>()?;
        let pools = endpoints
            .iter()
            .map(|_| Pool::new(POOL_MAX_IDLE, POOL_IDLE_TIMEOUT))
            .collect();
        let users = config
            .users
            .iter()
            .map(|u| (u.name.clone(), Arc::new(u.clone())))
            .collect();
        Ok(Proxy {
            metrics,
            listening: AtomicBool::new(false),
            changes: Default::default(),
            turn: AtomicU64::new(0),
            writes: session::WriteClock::default(),
            topology: Arc::new(TopologyCell::new(Topology::from_config(&config))),
            reports: Arc::default(),
            lost: Arc::default(),
            endpoints,
            pools,
            registry: Arc::default(),
            packet_budget: Arc::new(tokio::sync::Semaphore::new(
                config.listen.buffered_packet_budget / client::BUDGET_UNIT,
            )),
            logins: Arc::new(throttle::LoginGuard::new(
                config.listen.max_logins_per_address,
                config.listen.failed_login_delay,
            )),
            tls,
            rsa: RsaKey::generate().map_err(|_| StartError::RsaKey)?,
            users,
            server_info: RwLock::new(Arc::new(ServerInfo::fallback())),
            offers: Mutex::new(vec![None; config.backends.len()]),
            sha2_cache: Mutex::default(),
            config,
        })
    }

    /// Notes what a backend's greeting offers, and from the primary the
    /// version and collation clients are greeted with. Clients are then
    /// offered what every backend reached so far has in common: a backend
    /// that lacked a capability a client negotiated would answer it in
    /// another format (or refuse it, `BackendError::MissingCapabilities`).
    pub fn note_greeting(&self, backend: usize, greeting: &Greeting) {
        let offer = Offer::of(greeting);
        // Held until the new greeting is published: notes are applied one
        // at a time.
        let mut offers = self.offers.lock().unwrap_or_else(|p| p.into_inner());
        offers[backend] = Some(offer);
        let common = offers.iter().flatten().copied().fold(offer, Offer::and);
        let current = self.server_info();
        let primary = Some(backend) == self.primary();
        let info = ServerInfo {
            version: match primary {
                true => greeting.version.clone(),
                false => current.version.clone(),
            },
            capabilities: common.capabilities,
            mariadb: common.mariadb,
            collation: match primary {
                true => greeting.collation,
                false => current.collation,
            },
        };
        if *current != info {
            *self.server_info.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(info);
        }
    }

    pub fn server_info(&self) -> Arc<ServerInfo> {
        self.server_info
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The capabilities offered to clients: what rwsplit relays and the
    /// backends support, plus TLS when configured and compression.
    pub fn client_capabilities(&self) -> CapabilityFlags {
        let mut offered =
            (OFFERED & self.server_info().capabilities) | CapabilityFlags::CLIENT_COMPRESS;
        if self.tls.is_some() {
            offered |= CapabilityFlags::CLIENT_SSL;
        }
        offered
    }

    /// The MariaDB extended capabilities offered to clients: what rwsplit
    /// relays and every backend reached so far supports.
    pub fn client_mariadb_capabilities(&self) -> MariadbCapabilities {
        OFFERED_MARIADB & self.server_info().mariadb
    }

    /// The password plugin named in the greeting: `listen.auth_plugin`,
    /// or the one the primary's flavour defaults to.
    pub fn default_plugin(&self) -> AuthPlugin {
        match self.config.listen.auth_plugin {
            Some(choice) => plugin(choice),
            None => flavour_plugin(&self.server_info().version),
        }
    }

    /// The plugin `user` logs in with (an unknown user: the default), as
    /// a server's account has one: a client that starts with another, or
    /// names another in COM_CHANGE_USER, is switched to it.
    pub fn account_plugin(&self, user: Option<&UserConfig>) -> AuthPlugin {
        match user.and_then(|u| u.auth_plugin) {
            Some(choice) => plugin(choice),
            None => self.default_plugin(),
        }
    }

    pub fn user(&self, name: &str) -> Option<Arc<UserConfig>> {
        self.users.get(name).cloned()
    }

    pub fn sha2_cached(&self, user: &str) -> bool {
        self.sha2_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(user)
    }

    pub fn sha2_remember(&self, user: &str) {
        self.sha2_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_owned());
    }

    /// The backend that takes writes, when one is known.
    pub fn primary(&self) -> Option<usize> {
        self.topology.primary()
    }

    /// Ready for clients: the listener accepts, and the monitor has seen
    /// the primary answer and found no alarm.
    pub fn ready(&self) -> bool {
        let topology = self.topology.load();
        let reports = self.reports.load();
        let confirmed = topology.primary.is_some_and(|p| {
            topology.backends[p].healthy && reports.get(p).is_some_and(|r| r.version.is_some())
        });
        self.listening.load(Ordering::Relaxed) && confirmed && topology.alarm.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting(version: &str, mariadb: MariadbCapabilities) -> Greeting {
        Greeting {
            version: version.as_bytes().to_vec(),
            capabilities: OFFERED,
            mariadb,
            collation: 45,
            thread_id: 1,
        }
    }

    #[test]
    fn the_default_plugin_is_the_flavours() {
        for (version, expected) in [
            (
                "5.5.5-10.11.6-MariaDB-0+deb12u1",
                AuthPlugin::NativePassword,
            ),
            ("11.4.2-MariaDB-log", AuthPlugin::NativePassword),
            ("5.7.44-log", AuthPlugin::NativePassword),
            ("8.0.36", AuthPlugin::CachingSha2Password),
            ("8.4.0-commercial", AuthPlugin::CachingSha2Password),
            ("9.1.0", AuthPlugin::CachingSha2Password),
        ] {
            assert_eq!(flavour_plugin(version.as_bytes()), expected, "{version}");
        }
    }

    #[test]
    fn clients_are_offered_what_every_backend_reached_speaks() {
        let text = "listen: { address: '127.0.0.1:0' }\n\
                    users: [{ name: app, password: app }]\n\
                    backends:\n  \
                      - { name: db1, address: '127.0.0.1:1', role: primary }\n  \
                      - { name: db2, address: '127.0.0.1:2', role: replica }\n\
                    monitor: { user: monitor, password: monitor }\n";
        let config = Config::from_text(text, std::path::Path::new("test.yaml"), |_| None)
            .expect("valid config");
        let proxy = Proxy::new(config).expect("proxy");
        assert_eq!(
            proxy.client_mariadb_capabilities(),
            MariadbCapabilities::empty(),
            "none before a backend has answered"
        );

        proxy.note_greeting(0, &greeting("11.4.2-MariaDB", OFFERED_MARIADB));
        assert_eq!(proxy.client_mariadb_capabilities(), OFFERED_MARIADB);

        // A replica without metadata caching (MariaDB 10.5).
        let older = OFFERED_MARIADB - MariadbCapabilities::MARIADB_CLIENT_CACHE_METADATA;
        proxy.note_greeting(1, &greeting("10.5.27-MariaDB", older));
        assert_eq!(proxy.client_mariadb_capabilities(), older);
        assert_eq!(
            proxy.server_info().version,
            b"11.4.2-MariaDB",
            "the version clients see is the primary's"
        );

        // Upgraded, it offers everything again.
        proxy.note_greeting(1, &greeting("11.4.2-MariaDB", OFFERED_MARIADB));
        assert_eq!(proxy.client_mariadb_capabilities(), OFFERED_MARIADB);
    }
}
