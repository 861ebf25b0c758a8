//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::{Arc, Mutex, Once};

use rwsplit::sandbox::{Sandbox, SandboxOptions};

/// The sandbox shared by the tests of one test binary that only read or that
/// write to their own tables. Started on first use; stopped when the test
/// process exits (an `atexit` hook drops it; if the process is killed, the
/// kernel kills the servers, see `sandbox::process`). Tests that break
/// servers must start their own with [`start_sandbox`].
pub fn shared_sandbox() -> Arc<Sandbox> {
    static SHARED: Mutex<Option<Arc<Sandbox>>> = Mutex::new(None);
    static STOP_AT_EXIT: Once = Once::new();

    extern "C" fn stop_shared() {
        if let Ok(mut shared) = SHARED.lock() {
            shared.take();
        }
    }

    let mut shared = SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(sandbox) = shared.as_ref() {
        return sandbox.clone();
    }
    let sandbox = Arc::new(start_sandbox(SandboxOptions::default()));
    STOP_AT_EXIT.call_once(|| {
        // SAFETY: registering a plain extern "C" function has no preconditions.
        unsafe { libc::atexit(stop_shared) };
    });
    *shared = Some(sandbox.clone());
    sandbox
}

/// Starts a sandbox of its own, from any context (sync or inside a test's
/// runtime), on a runtime that lives only for the start-up.
pub fn start_sandbox(options: SandboxOptions) -> Sandbox {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime for sandbox start-up")
            .block_on(Sandbox::start(options))
    })
    .join()
    .expect("sandbox start-up thread panicked")
    .unwrap_or_else(|e| panic!("sandbox did not start: {e}"))
}

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
use rwsplit::backend::conn::{BackendConn, Endpoint, Login};
use rwsplit::config::Config;
use rwsplit::sandbox::APP;
use rwsplit::server::Proxy;

/// A proxy configuration for `sandbox`: db1 primary, the rest replicas,
/// listening on a free port, the sandbox's accounts.
pub fn proxy_config(sandbox: &Sandbox) -> Config {
    let mut yaml = String::from(
        "listen: { address: '127.0.0.1:0' }\nusers: [{ name: app, password: app }]\nbackends:\n",
    );
    for server in sandbox.servers() {
        let role = if server.server_id == 1 {
            "primary"
        } else {
            "replica"
        };
        yaml.push_str(&format!(
            "  - {{ name: {}, address: '{}', role: {role} }}\n",
            server.name,
            server.address()
        ));
    }
    yaml.push_str("monitor: { user: monitor, password: monitor }\n");
    Config::from_text(&yaml, std::path::Path::new("test.yaml"), |_| None)
        .expect("test config is valid")
}

/// A proxy configuration with the primary as the only backend: for tests of
/// the wire protocol, whose results are compared with a direct connection
/// to the primary byte for byte (with replicas, which server answers can
/// show, e.g. in warnings left over from earlier statements).
pub fn primary_only_config(sandbox: &Sandbox) -> Config {
    let mut config = proxy_config(sandbox);
    config.backends.truncate(1);
    config
}

/// An rwsplit running in this process on its own runtime; stopped (all its
/// tasks dropped) when this is dropped.
pub struct TestProxy {
    pub addr: SocketAddr,
    /// Where its admin API listens.
    pub admin_addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestProxy {
    /// Connection options for the sandbox's application user.
    pub fn opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.addr.port())
            .prefer_socket(false)
            .user(Some(APP.user))
            .pass(Some(APP.password))
            .into()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Starts rwsplit for `config` on 127.0.0.1 and a free port, and waits
/// for the monitor's verdict on every replica (see
/// [`TestProxy::wait_settled`]). Its logs go to the test output when
/// RUST_LOG is set.
pub fn start_proxy(config: Config) -> TestProxy {
    let proxy = start_proxy_unsettled(config);
    proxy.wait_settled();
    proxy
}

/// Starts rwsplit without waiting for the monitor: for tests whose
/// replicas are broken from the start.
pub fn start_proxy_unsettled(config: Config) -> TestProxy {
    if std::env::var_os("RUST_LOG").is_some() {
        // Another test may have installed it already; that one serves.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rwsplit-under-test")
        .enable_all()
        .build()
        .expect("proxy runtime");
    // Bound here rather than in the runtime: this may be called from a
    // test's own runtime, where blocking on another is not allowed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("local addr");
    let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind admin");
    admin.set_nonblocking(true).expect("non-blocking listener");
    let admin_addr = admin.local_addr().expect("admin addr");
    let proxy = Arc::new(Proxy::new(config).expect("proxy starts"));
    let serving = proxy.clone();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let admin = tokio::net::TcpListener::from_std(admin).expect("tokio listener");
        rwsplit::server::start(serving, listener, admin, std::future::pending()).await;
    });
    TestProxy {
        addr,
        admin_addr,
        proxy,
        runtime: Some(runtime),
    }
}

impl TestProxy {
    /// Waits until the monitor has a verdict on every replica: in read
    /// rotation, or failing its checks (an unreachable address). Tests
    /// that route reads start from there rather than from the moment
    /// before the first checks, when no replica is trusted yet.
    pub fn wait_settled(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let topology = self.proxy.topology.load();
            let reports = self.proxy.reports.load();
            let settled = topology
                .backends
                .iter()
                .enumerate()
                .all(|(index, backend)| {
                    topology.primary == Some(index)
                        || backend.readable
                        || reports.get(index).is_some_and(|r| r.last_error.is_some())
                });
            if settled {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the monitor did not settle within 30 s: {topology:?} {reports:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The payload of a HandshakeResponse41 logging `user` in with `auth`,
/// computed for `plugin`, asking for `capabilities`.
pub fn handshake_response(
    user: &str,
    auth: &[u8],
    plugin: mysql_common::packets::AuthPlugin<'_>,
    capabilities: CapabilityFlags,
) -> Vec<u8> {
    use mysql_common::proto::MySerialize;
    let response = mysql_common::packets::HandshakeResponse::new(
        Some(auth),
        (10, 11, 0),
        Some(user.as_bytes()),
        None::<&[u8]>,
        Some(plugin),
        capabilities,
        None,
        1 << 24,
    );
    let mut payload = Vec::new();
    response.serialize(&mut payload);
    payload
}

/// Capabilities a typical modern client asks for.
pub fn modern_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_LOCAL_FILES
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_SESSION_TRACK
}

/// A raw protocol client (rwsplit's own backend side) logged in to
/// `address` as the application user, for byte-level comparisons.
pub async fn raw_client(
    address: &str,
    capabilities: CapabilityFlags,
    db: Option<&str>,
) -> BackendConn {
    raw_mariadb_client(address, capabilities, MariadbCapabilities::empty(), db).await
}

/// [`raw_client`] asking for MariaDB's extended capabilities too.
pub async fn raw_mariadb_client(
    address: &str,
    capabilities: CapabilityFlags,
    mariadb: MariadbCapabilities,
    db: Option<&str>,
) -> BackendConn {
    let endpoint = Endpoint {
        name: "test".into(),
        address: address.into(),
        tls: None,
        connect_timeout: Duration::from_secs(10),
        sockets: Default::default(),
    };
    let login = Login {
        user: APP.user,
        password: APP.password,
        db,
        capabilities,
        mariadb,
        collation: 45,
        attributes: None,
        track_state: false,
    };
    BackendConn::connect(&endpoint, &login)
        .await
        .unwrap_or_else(|e| panic!("raw client cannot log in to {address}: {e}"))
}

/// Runs `future` with a limit, so that a protocol bug fails a test instead
/// of hanging it.
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    rwsplit::timer::timeout(Duration::from_secs(30), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A test CA and a server certificate it signed for localhost/127.0.0.1,
/// as PEM files in a temporary directory.
pub struct TestCerts {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub fn test_certs() -> TestCerts {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rwsplit test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    TestCerts {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("cert.pem", cert.pem()),
        key: write("key.pem", key.serialize_pem()),
        _dir: dir,
    }
}

/// Runs an external program, failing loudly (not skipping) when it is
/// missing: `scripts/test` installs every program the tests use.
pub fn program(name: &str) -> std::process::Command {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed; scripts/test installs it (apt-get / pip)"
    );
    std::process::Command::new(name)
}

// Switchover, failover and transaction replay: a proxy watching servers
// closely, its admin API, and the servers' own view.

/// A proxy over `sandbox` with a fast monitor (checks every 200 ms) and
/// the sandbox's replication account for failover.
pub fn start_watched(sandbox: &Sandbox, tweak: impl FnOnce(&mut Config)) -> TestProxy {
    start_proxy(watched_config(sandbox, tweak))
}

/// The configuration [`start_watched`] starts a proxy with.
pub fn watched_config(sandbox: &Sandbox, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = proxy_config(sandbox);
    config.monitor.interval = Duration::from_millis(200);
    config.monitor.query_timeout = Duration::from_millis(500);
    config.monitor.connect_timeout = Duration::from_millis(500);
    config.failover.replication_user = Some("repl".into());
    config.failover.replication_password = Some("repl".into());
    tweak(&mut config);
    config
}

/// `POST /{what}` on the proxy's admin API: the lines it streamed.
pub async fn ask(proxy: &TestProxy, path: &str) -> Result<Vec<String>, String> {
    let mut text = String::new();
    rwsplit::admin::client::post_streaming(
        &proxy.admin_addr.to_string(),
        path,
        None,
        Duration::from_secs(5),
        |piece| text.push_str(piece),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(text.lines().map(str::to_owned).collect())
}

pub async fn admin(sandbox: &Sandbox, index: usize) -> Conn {
    sandbox.servers()[index].admin().await.unwrap()
}

/// Waits until `check` holds, up to 30 s.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until server `index` has applied everything `source` has logged.
pub async fn caught_up(sandbox: &Sandbox, source: usize, index: usize) {
    let position: String = admin(sandbox, source)
        .await
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    let waited: Option<i64> = admin(sandbox, index)
        .await
        .exec_first("SELECT MASTER_GTID_WAIT(?, 30)", (position,))
        .await
        .unwrap();
    assert_eq!(waited, Some(0), "{index} did not catch up with {source}");
}

pub async fn metrics(proxy: &TestProxy) -> String {
    rwsplit::admin::client::get(
        &proxy.admin_addr.to_string(),
        "/metrics",
        None,
        Duration::from_secs(5),
    )
    .await
    .expect("GET /metrics")
}
