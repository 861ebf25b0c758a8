//! rwsplit as a client of its backends: TLS towards a real MariaDB (verified
//! against a CA, unverified, or refused when untrusted), and the
//! caching_sha2_password login paths. MariaDB has no caching_sha2_password
//! server plugin, so for those the backend is a second rwsplit configured
//! with it, in front of MariaDB.

mod common;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use rwsplit::config::{
    AuthPluginChoice, BackendConfig, BackendTlsConfig, Config, ListenTlsConfig, Role, UserConfig,
};
use rwsplit::sandbox::{MONITOR, Sandbox, SandboxOptions};

use common::{TestCerts, TestProxy};

fn tls_sandbox(certs: &TestCerts) -> Sandbox {
    let option = |name: &str, path: &std::path::Path| format!("--{name}={}", path.display());
    common::start_sandbox(SandboxOptions {
        replicas: 0,
        server_args: vec![
            option("ssl-cert", &certs.cert),
            option("ssl-key", &certs.key),
            option("ssl-ca", &certs.ca),
        ],
        ..Default::default()
    })
}

fn with_backend_tls(sandbox: &Sandbox, tls: BackendTlsConfig) -> Config {
    let mut config = common::proxy_config(sandbox);
    config.backends[0].tls = Some(tls);
    config
}

/// The TLS version of the proxy's own connection to the backend.
async fn backend_tls_version(proxy: &TestProxy) -> Result<String, mysql_async::Error> {
    let mut conn = Conn::new(proxy.opts()).await?;
    let row: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await?;
    Ok(row.map(|(_, version)| version).unwrap_or_default())
}

#[tokio::test]
async fn tls_to_the_backend_verified_against_the_ca() {
    let certs = common::test_certs();
    let sandbox = tls_sandbox(&certs);
    let proxy = common::start_proxy(with_backend_tls(
        &sandbox,
        BackendTlsConfig {
            ca: Some(certs.ca.clone()),
            verify: true,
        },
    ));
    let version = backend_tls_version(&proxy)
        .await
        .expect("a verified TLS connection");
    assert!(
        version.starts_with("TLSv1."),
        "backend connection not encrypted: {version:?}"
    );
}

#[tokio::test]
async fn tls_to_the_backend_without_verification() {
    let certs = common::test_certs();
    let sandbox = tls_sandbox(&certs);
    let proxy = common::start_proxy(with_backend_tls(
        &sandbox,
        BackendTlsConfig {
            ca: None,
            verify: false,
        },
    ));
    let version = backend_tls_version(&proxy)
        .await
        .expect("an encrypted connection");
    assert!(version.starts_with("TLSv1."), "{version:?}");
}

#[tokio::test]
async fn an_untrusted_backend_certificate_is_refused() {
    let certs = common::test_certs();
    let other_ca = common::test_certs();
    let sandbox = tls_sandbox(&certs);
    let proxy = common::start_proxy(with_backend_tls(
        &sandbox,
        BackendTlsConfig {
            ca: Some(other_ca.ca.clone()),
            verify: true,
        },
    ));
    // The client can log in to rwsplit; its first statement cannot reach the backend.
    match backend_tls_version(&proxy).await {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!(e.code, 2003, "{}", e.message);
            assert!(e.message.contains("TLS handshake failed"), "{}", e.message);
        }
        other => panic!("an untrusted certificate was accepted: {other:?}"),
    }
}

/// rwsplit `front` whose only backend is rwsplit `back`, which offers
/// caching_sha2_password (and TLS when `certs` is given).
fn chained(certs: Option<&TestCerts>) -> (TestProxy, TestProxy) {
    let sandbox = common::shared_sandbox();
    // The back serves only the primary, so that the front's monitor,
    // which checks it through the back, discovers a primary.
    let mut back = common::primary_only_config(&sandbox);
    back.listen.auth_plugin = Some(AuthPluginChoice::CachingSha2Password);
    back.users.push(UserConfig {
        name: MONITOR.user.into(),
        password: MONITOR.password.into(),
        auth_plugin: None,
    });
    back.listen.tls = certs.map(|c| ListenTlsConfig {
        cert: c.cert.clone(),
        key: c.key.clone(),
        required: true,
    });
    let back = common::start_proxy(back);
    let mut front = common::proxy_config(&sandbox);
    front.backends = vec![BackendConfig {
        name: "back".into(),
        address: back.addr.to_string(),
        role: Some(Role::Primary),
        weight: 1,
        backup: false,
        tls: certs.map(|c| BackendTlsConfig {
            ca: Some(c.ca.clone()),
            verify: true,
        }),
    }];
    (common::start_proxy(front), back)
}

/// A session of the front that has logged in to the back; kept open so
/// that the next session needs a backend login of its own.
async fn session_through(proxy: &TestProxy) -> Conn {
    let mut conn = Conn::new(proxy.opts())
        .await
        .expect("log in to the front rwsplit");
    let one: Option<u8> = conn.query_first("SELECT 1").await.expect("through both");
    assert_eq!(one, Some(1));
    conn
}

#[tokio::test]
async fn caching_sha2_towards_a_backend_with_rsa_then_the_fast_path() {
    let (front, back) = chained(None);
    let _first = session_through(&front).await;
    assert!(
        back.proxy.sha2_cached("app"),
        "the front logged in with full authentication (RSA)"
    );
    // The first session still holds its backend connection: a new login, on the fast path.
    let _second = session_through(&front).await;
    assert_eq!(
        back.proxy.registry.sessions_of("app"),
        2,
        "two backend logins, one per front session (the front's monitor logs in as monitor)"
    );
}

#[tokio::test]
async fn caching_sha2_towards_a_backend_over_tls() {
    let certs = common::test_certs();
    let (front, back) = chained(Some(&certs));
    let _first = session_through(&front).await;
    assert!(
        back.proxy.sha2_cached("app"),
        "full authentication over TLS"
    );
    let _second = session_through(&front).await;
}
