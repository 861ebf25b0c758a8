//! Authentication as clients meet it: both password plugins and their
//! paths (caching_sha2_password fast path, full authentication over TLS and
//! with RSA), the switch from a plugin rwsplit does not verify, and
//! COM_CHANGE_USER.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{ChangeUserOpts, Conn};
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin as WireAuthPlugin, AuthSwitchRequest, HandshakePacket};
use rwsplit::config::{AuthPluginChoice, ListenTlsConfig};
use rwsplit::protocol::auth::AuthPlugin;
use rwsplit::protocol::packet::put_packet;
use rwsplit::sandbox::APP;

use common::{TestCerts, TestProxy, program};

fn sha2_proxy(tls: Option<&TestCerts>) -> TestProxy {
    let mut config = common::proxy_config(&common::shared_sandbox());
    config.listen.auth_plugin = Some(AuthPluginChoice::CachingSha2Password);
    config.listen.tls = tls.map(|certs| ListenTlsConfig {
        cert: certs.cert.clone(),
        key: certs.key.clone(),
        required: false,
    });
    common::start_proxy(config)
}

fn with_password(proxy: &TestProxy, password: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::from_opts(proxy.opts())
        .pass(Some(password))
        .into()
}

async fn login_fails_with_1045(opts: mysql_async::Opts) {
    match Conn::new(opts).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1045, "{}", e.message),
        other => panic!("expected access denied, got {other:?}"),
    }
}

#[tokio::test]
async fn caching_sha2_full_authentication_with_rsa_then_the_fast_path() {
    let proxy = sha2_proxy(None);
    assert!(!proxy.proxy.sha2_cached(APP.user));
    login_fails_with_1045(with_password(&proxy, "wrong")).await;
    assert!(
        !proxy.proxy.sha2_cached(APP.user),
        "a failed login caches nothing"
    );
    // First login: not cached, no TLS: the client fetches rwsplit's RSA key
    // and sends the password encrypted with it.
    let mut first = Conn::new(proxy.opts())
        .await
        .expect("full authentication over RSA");
    assert!(
        proxy.proxy.sha2_cached(APP.user),
        "full authentication fills the cache"
    );
    // Later logins use the fast path (a scramble check).
    let mut second = Conn::new(proxy.opts()).await.expect("fast path");
    login_fails_with_1045(with_password(&proxy, "wrong")).await;
    for conn in [&mut first, &mut second] {
        let one: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
}

#[tokio::test]
async fn caching_sha2_full_authentication_over_tls() {
    let certs = common::test_certs();
    let proxy = sha2_proxy(Some(&certs));
    let tls = mysql_async::SslOpts::default().with_root_certs(vec![certs.ca.clone().into()]);
    let opts = |password: &str| {
        mysql_async::OptsBuilder::from_opts(with_password(&proxy, password))
            .ssl_opts(Some(tls.clone()))
    };
    login_fails_with_1045(opts("wrong").into()).await;
    let mut conn = Conn::new(opts(APP.password))
        .await
        .expect("password in clear over TLS");
    assert!(proxy.proxy.sha2_cached(APP.user));
    conn.ping().await.unwrap();
}

fn mariadb(proxy: &TestProxy, args: &[&str]) -> std::process::Output {
    program("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &proxy.port().to_string(),
            "-u",
            APP.user,
            &format!("-p{}", APP.password),
        ])
        .args(args)
        .args(["-e", "SELECT CURRENT_USER()"])
        .output()
        .expect("run mariadb")
}

#[test]
fn the_c_client_switches_from_ed25519_and_speaks_caching_sha2() {
    let proxy = common::start_proxy(common::proxy_config(&common::shared_sandbox()));
    let switched = mariadb(&proxy, &["--default-auth=client_ed25519"]);
    assert!(
        switched.status.success(),
        "{}",
        String::from_utf8_lossy(&switched.stderr)
    );
    assert!(String::from_utf8_lossy(&switched.stdout).contains("app@%"));

    let certs = common::test_certs();
    let proxy = sha2_proxy(Some(&certs));
    let ca = format!("--ssl-ca={}", certs.ca.display());
    let sha2 = mariadb(
        &proxy,
        &["--default-auth=caching_sha2_password", "--ssl", &ca],
    );
    assert!(
        sha2.status.success(),
        "{}",
        String::from_utf8_lossy(&sha2.stderr)
    );
}

/// A client that starts with `sha256_password` (which rwsplit does not
/// verify) is switched to the default plugin with a fresh nonce.
#[test]
fn an_unknown_plugin_gets_an_auth_switch() {
    let proxy = common::start_proxy(common::proxy_config(&common::shared_sandbox()));
    let mut tcp = TcpStream::connect(proxy.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (_, greeting) = read_packet(&mut tcp);
    let greeting: HandshakePacket = ParseBuf(&greeting).parse(()).unwrap();
    let capabilities =
        greeting.capabilities() - CapabilityFlags::CLIENT_SSL - CapabilityFlags::CLIENT_COMPRESS;
    let payload = common::handshake_response(
        APP.user,
        &b"not a sha256 answer"[..],
        WireAuthPlugin::Other(b"sha256_password".as_slice().into()),
        capabilities,
    );
    write_packet(&mut tcp, 1, &payload);
    let (seq, switch) = read_packet(&mut tcp);
    assert_eq!(seq, 2);
    let switch: AuthSwitchRequest = ParseBuf(&switch).parse(()).expect("an AuthSwitchRequest");
    assert_eq!(switch.auth_plugin().as_bytes(), b"mysql_native_password");
    let nonce = switch.plugin_data().to_vec();
    assert_eq!(nonce.len(), 20);
    assert_ne!(nonce, greeting.nonce(), "a fresh nonce");
    write_packet(
        &mut tcp,
        3,
        &AuthPlugin::NativePassword.scramble(&nonce, APP.password),
    );
    let (seq, ok) = read_packet(&mut tcp);
    assert_eq!((seq, ok[0]), (4, 0x00), "logged in: {ok:?}");
}

/// Logs in over raw TCP as the application user, answering the greeting
/// with `plugin`'s scramble and a switch to mysql_native_password if one
/// comes; returns the stream after the OK, the capabilities it used and
/// whether it was switched.
fn raw_login(
    proxy: &TestProxy,
    plugin: WireAuthPlugin<'static>,
) -> (TcpStream, CapabilityFlags, bool) {
    let mut tcp = TcpStream::connect(proxy.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (_, greeting) = read_packet(&mut tcp);
    let greeting: HandshakePacket = ParseBuf(&greeting).parse(()).unwrap();
    let capabilities =
        greeting.capabilities() - CapabilityFlags::CLIENT_SSL - CapabilityFlags::CLIENT_COMPRESS;
    let nonce = greeting.nonce();
    let scramble = match plugin {
        WireAuthPlugin::CachingSha2Password => {
            AuthPlugin::CachingSha2Password.scramble(&nonce, APP.password)
        }
        _ => AuthPlugin::NativePassword.scramble(&nonce, APP.password),
    };
    let payload = common::handshake_response(APP.user, scramble.as_slice(), plugin, capabilities);
    write_packet(&mut tcp, 1, &payload);
    let (mut seq, mut answer) = read_packet(&mut tcp);
    let switched = answer[0] == 0xFE;
    if switched {
        let switch: AuthSwitchRequest = ParseBuf(&answer).parse(()).unwrap();
        assert_eq!(switch.auth_plugin().as_bytes(), b"mysql_native_password");
        let reply = AuthPlugin::NativePassword.scramble(switch.plugin_data(), APP.password);
        write_packet(&mut tcp, seq + 1, &reply);
        (seq, answer) = read_packet(&mut tcp);
    }
    assert_eq!(answer[0], 0x00, "logged in (packet {seq}): {answer:?}");
    (tcp, capabilities, switched)
}

/// A client that starts with caching_sha2_password, or names it in
/// COM_CHANGE_USER, is switched to the user's plugin — MariaDB's default,
/// mysql_native_password — as a MariaDB server switches it; it never
/// needs TLS or an RSA key for that (mysql-connector-python's C
/// extension refuses the RSA exchange).
#[test]
fn clients_are_switched_to_the_users_plugin_at_login_and_change_user() {
    let proxy = common::start_proxy(common::proxy_config(&common::shared_sandbox()));
    let (mut tcp, capabilities, switched) = raw_login(&proxy, WireAuthPlugin::CachingSha2Password);
    assert!(switched, "a caching_sha2_password answer is switched");
    let mut change = vec![0x11];
    change.extend_from_slice(APP.user.as_bytes());
    change.push(0);
    let sha2 = AuthPlugin::CachingSha2Password.scramble(&[7; 20], APP.password);
    change.push(sha2.len() as u8);
    change.extend_from_slice(&sha2);
    change.push(0); // no database
    change.extend_from_slice(&45u16.to_le_bytes());
    change.extend_from_slice(b"caching_sha2_password\0");
    if capabilities.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) {
        change.push(0);
    }
    write_packet(&mut tcp, 0, &change);
    let (seq, switch) = read_packet(&mut tcp);
    let switch: AuthSwitchRequest = ParseBuf(&switch).parse(()).expect("an AuthSwitchRequest");
    assert_eq!(switch.auth_plugin().as_bytes(), b"mysql_native_password");
    let reply = AuthPlugin::NativePassword.scramble(switch.plugin_data(), APP.password);
    write_packet(&mut tcp, seq + 1, &reply);
    let (_, ok) = read_packet(&mut tcp);
    assert_eq!(ok[0], 0x00, "changed user: {ok:?}");
}

fn read_packet(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 4];
    tcp.read_exact(&mut header).unwrap();
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).unwrap();
    (header[3], payload)
}

fn write_packet(tcp: &mut TcpStream, seq: u8, payload: &[u8]) {
    let mut out = Vec::new();
    put_packet(&mut out, seq, payload);
    tcp.write_all(&out).unwrap();
}

#[tokio::test]
async fn change_user_re_authenticates_and_starts_a_fresh_session() {
    let sandbox = common::shared_sandbox();
    let mut admin = sandbox.primary().admin().await.unwrap();
    admin
        .query_drop("CREATE USER IF NOT EXISTS 'other'@'%' IDENTIFIED BY 'other-pw'; GRANT SELECT ON *.* TO 'other'@'%'")
        .await
        .unwrap();
    let mut config = common::proxy_config(&sandbox);
    config.users.push(rwsplit::config::UserConfig {
        name: "other".into(),
        password: "other-pw".into(),
        auth_plugin: None,
    });
    let proxy = common::start_proxy(config);
    let mut conn = Conn::new(proxy.opts()).await.unwrap();
    conn.query_drop("SET @kept = 'no'").await.unwrap();
    let change = ChangeUserOpts::default()
        .with_user(Some("other".into()))
        .with_pass(Some("other-pw".into()))
        .with_db_name(Some("mysql".into()));
    conn.change_user(change)
        .await
        .expect("change to the other user");
    let (user, db, kept): (String, Option<String>, Option<String>) = conn
        .query_first("SELECT CURRENT_USER(), DATABASE(), @kept")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (user.as_str(), db.as_deref(), kept),
        ("other@%", Some("mysql"), None)
    );

    let wrong = ChangeUserOpts::default()
        .with_user(Some("app".into()))
        .with_pass(Some("wrong".into()));
    match conn.change_user(wrong).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1045, "{}", e.message),
        other => panic!("expected access denied, got {other:?}"),
    }
}

/// The first answer to a caching_sha2_password login with a wrong
/// scramble, for `user`: what a prober sees.
fn first_answer_to_a_wrong_scramble(proxy: &TestProxy, user: &str) -> (u8, Vec<u8>) {
    let mut tcp = TcpStream::connect(proxy.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (_, greeting) = read_packet(&mut tcp);
    let greeting: HandshakePacket = ParseBuf(&greeting).parse(()).unwrap();
    let capabilities =
        greeting.capabilities() - CapabilityFlags::CLIENT_SSL - CapabilityFlags::CLIENT_COMPRESS;
    let wrong = AuthPlugin::CachingSha2Password.scramble(&greeting.nonce(), "not the password");
    let payload = common::handshake_response(
        user,
        wrong.as_slice(),
        WireAuthPlugin::CachingSha2Password,
        capabilities,
    );
    write_packet(&mut tcp, 1, &payload);
    read_packet(&mut tcp)
}

/// Once a user has logged in (and caching_sha2_password's fast path knows
/// it), a wrong fast-path scramble for it is answered exactly as one for
/// a user that does not exist: with a request for full authentication,
/// not an ERR at once, so a prober cannot tell users from non-users.
#[tokio::test]
async fn a_known_and_an_unknown_user_answer_the_same_to_a_wrong_scramble() {
    let proxy = sha2_proxy(None);
    // The first login of `app` is a full authentication; it is cached after.
    Conn::new(proxy.opts())
        .await
        .unwrap()
        .disconnect()
        .await
        .unwrap();
    assert!(proxy.proxy.sha2_cached(APP.user));
    let known = first_answer_to_a_wrong_scramble(&proxy, APP.user);
    let unknown = first_answer_to_a_wrong_scramble(&proxy, "nobody");
    assert_eq!(known, unknown);
    assert_eq!(known, (2, vec![0x01, 0x04]), "perform full authentication");
}
