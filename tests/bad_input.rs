//! Bad input gets a clear error and harms no one else: each misbehaving
//! client gets the error a MySQL server would send (or is dropped when it
//! cannot be told), and a well-behaved client is served right after.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use rwsplit::config::{Config, ListenTlsConfig};
use rwsplit::protocol::messages::ErrorPacket;
use rwsplit::protocol::packet::put_packet;
use rwsplit::protocol::response::Expect;
use rwsplit::sandbox::{SandboxOptions, send_signal};

use common::{TestProxy, modern_capabilities, raw_client, within};

fn config(tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = common::proxy_config(&common::shared_sandbox());
    config.listen.handshake_timeout = Duration::from_secs(1);
    config.listen.read_timeout = Duration::from_secs(1);
    config.listen.max_allowed_packet = 1 << 20;
    tweak(&mut config);
    config
}

/// A good client is still served.
async fn still_serves(proxy: &TestProxy) {
    let mut conn = within("a good client logs in", Conn::new(proxy.opts()))
        .await
        .unwrap();
    let one: Option<u8> = within("a good client queries", conn.query_first("SELECT 1"))
        .await
        .unwrap();
    assert_eq!(one, Some(1));
}

fn server_error(error: mysql_async::Error) -> mysql_async::ServerError {
    match error {
        mysql_async::Error::Server(e) => e,
        other => panic!("expected a server error, got {other}"),
    }
}

async fn login_error(opts: mysql_async::Opts) -> mysql_async::ServerError {
    server_error(Conn::new(opts).await.expect_err("login should fail"))
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_1045() {
    let proxy = common::start_proxy(config(|_| {}));
    let as_user = |user: &str, password: &str| -> mysql_async::Opts {
        mysql_async::OptsBuilder::from_opts(proxy.opts())
            .user(Some(user))
            .pass(Some(password))
            .into()
    };
    let wrong = login_error(as_user("app", "wrong")).await;
    assert_eq!((wrong.code, wrong.state.as_str()), (1045, "28000"));
    assert_eq!(
        wrong.message,
        "Access denied for user 'app'@'127.0.0.1' (using password: YES)"
    );
    let unknown = login_error(as_user("nobody", "wrong")).await;
    assert_eq!(
        unknown.message,
        "Access denied for user 'nobody'@'127.0.0.1' (using password: YES)"
    );
    let empty = login_error(as_user("app", "")).await;
    assert_eq!(
        empty.message,
        "Access denied for user 'app'@'127.0.0.1' (using password: NO)"
    );
    still_serves(&proxy).await;
}

#[tokio::test]
async fn plaintext_is_refused_when_tls_is_required() {
    let certs = common::test_certs();
    let proxy = common::start_proxy(config(|c| {
        c.listen.tls = Some(ListenTlsConfig {
            cert: certs.cert.clone(),
            key: certs.key.clone(),
            required: true,
        })
    }));
    let error = login_error(proxy.opts()).await;
    assert_eq!((error.code, error.state.as_str()), (3159, "08004"));
    assert!(error.message.contains("requires TLS"), "{}", error.message);
    let tls = mysql_async::SslOpts::default().with_root_certs(vec![certs.ca.clone().into()]);
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts()).ssl_opts(Some(tls));
    // With TLS required, a successful login is itself the proof that TLS was used.
    let mut conn = Conn::new(opts).await.expect("TLS login works");
    let one: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

/// Connects and reads the greeting.
fn raw_connect(proxy: &TestProxy) -> TcpStream {
    let mut tcp = TcpStream::connect(proxy.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut header = [0u8; 4];
    tcp.read_exact(&mut header).unwrap();
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut greeting = vec![0u8; len];
    tcp.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting[0], 10, "protocol version 10");
    tcp
}

/// Reads until the peer closes; returns what it sent and how long it took.
fn read_until_closed(tcp: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) => return (received, started.elapsed()),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (received, started.elapsed());
            }
            Err(e) => panic!("the proxy did not close the connection: {e}"),
        }
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let proxy = common::start_proxy(config(|_| {}));
    let mut tcp = raw_connect(&proxy);
    let (received, waited) = read_until_closed(&mut tcp);
    assert!(received.is_empty());
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    still_serves(&proxy).await;
}

#[tokio::test]
async fn a_truncated_packet_ends_only_that_session() {
    let proxy = common::start_proxy(config(|_| {}));
    // Before login: half a HandshakeResponse, then silence.
    let mut tcp = raw_connect(&proxy);
    tcp.write_all(&[100, 0, 0, 1, 0x0d, 0xa6]).unwrap();
    let (_, waited) = read_until_closed(&mut tcp);
    assert!(waited < Duration::from_secs(5));
    // After login: half a command, then silence (listen.read_timeout).
    let mut conn = raw_client(&proxy.addr.to_string(), modern_capabilities(), None).await;
    conn.write_all(&[50, 0, 0, 0, 0x03, b'S', b'E'])
        .await
        .unwrap();
    let started = Instant::now();
    let end = within("truncated command", conn.read_frame()).await;
    assert!(end.is_err(), "the session is closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    // After login: half a command, then the client closes.
    let mut conn = raw_client(&proxy.addr.to_string(), modern_capabilities(), None).await;
    conn.write_all(&[50, 0, 0, 0, 0x03, b'S', b'E'])
        .await
        .unwrap();
    drop(conn);
    still_serves(&proxy).await;
}

async fn expect_error(conn: &mut rwsplit::backend::conn::BackendConn) -> ErrorPacket {
    let frame = within("an error packet", conn.read_frame())
        .await
        .expect("a response");
    ErrorPacket::parse(frame.first_payload())
        .unwrap_or_else(|| panic!("not an ERR: {:?}", frame.first_payload()))
}

#[tokio::test]
async fn an_oversized_packet_gets_1153_and_the_connection_closes() {
    let proxy = common::start_proxy(config(|_| {}));
    let mut conn = raw_client(&proxy.addr.to_string(), modern_capabilities(), None).await;
    // Announce a 2 MiB command (limit: 1 MiB); send only its start.
    conn.write_all(&[0, 0, 0x20, 0, 0x03, b'S']).await.unwrap();
    let error = expect_error(&mut conn).await;
    assert_eq!(error.code, 1153, "{}", error.message);
    assert!(conn.read_frame().await.is_err(), "closed after the error");
    still_serves(&proxy).await;
}

#[tokio::test]
async fn a_wrong_sequence_id_gets_1156() {
    let proxy = common::start_proxy(config(|_| {}));
    let mut conn = raw_client(&proxy.addr.to_string(), modern_capabilities(), None).await;
    let mut packet = Vec::new();
    put_packet(&mut packet, 5, b"\x03SELECT 1");
    conn.write_all(&packet).await.unwrap();
    let error = expect_error(&mut conn).await;
    assert_eq!(
        (error.code, error.message.as_str()),
        (1156, "Got packets out of order")
    );
    still_serves(&proxy).await;
}

#[tokio::test]
async fn malformed_and_unknown_commands_get_errors_and_the_session_goes_on() {
    let proxy = common::start_proxy(config(|_| {}));
    let mut conn = raw_client(&proxy.addr.to_string(), modern_capabilities(), None).await;
    let cases: &[(&[u8], u16)] = &[
        (b"\x17\x01\x00", 1835),               // COM_STMT_EXECUTE cut short
        (b"", 1835),                           // empty command
        (b"\x99", 1047),                       // unknown command byte
        (b"\x1d", 1047),                       // COM_DAEMON
        (b"\x12\0\0\0\0", 1235),               // COM_BINLOG_DUMP: refused with a reason
        (b"\x17\x63\0\0\0\0\x01\0\0\0", 1243), // unknown statement id
        (b"\xfa\x01\0\0", 1835),               // COM_STMT_BULK_EXECUTE cut short
        (b"\xfa\x63\0\0\0\0\0", 1243),         // bulk, unknown statement id
    ];
    for (payload, code) in cases {
        let (response, scanner) = within("bad command", conn.exchange(payload, Expect::Single))
            .await
            .unwrap();
        assert_eq!(
            scanner.error(),
            Some(*code),
            "{payload:?}: {:?}",
            ErrorPacket::parse(&response[4..])
        );
    }
    let (_, scanner) = conn.exchange(b"\x0e", Expect::Single).await.unwrap();
    assert_eq!(scanner.error(), None, "COM_PING still answered");
}

#[tokio::test]
async fn the_connection_limit_refuses_with_1040() {
    let proxy = common::start_proxy(config(|c| c.listen.max_client_connections = 2));
    let first = Conn::new(proxy.opts()).await.unwrap();
    let second = Conn::new(proxy.opts()).await.unwrap();
    let refused = login_error(proxy.opts()).await;
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (1040, "Too many connections")
    );
    drop(first);
    // The slot frees once the first session has ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Conn::new(proxy.opts()).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("slot never freed: {e}"),
        }
    }
    drop(second);
}

#[tokio::test]
async fn a_client_leaving_mid_result_set_loses_its_backend_connection() {
    let sandbox = common::shared_sandbox();
    let proxy = common::start_proxy(config(|_| {}));
    let mut conn = raw_client(&proxy.addr.to_string(), modern_capabilities(), None).await;
    let (response, _) = conn
        .exchange(
            b"\x03/* rwsplit:primary */ SELECT CONNECTION_ID()",
            Expect::Results { cursor: false },
        )
        .await
        .unwrap();
    let thread = thread_id_from(&response);
    // A large result the client never reads, then it disconnects.
    conn.send(
        0,
        b"\x03/* rwsplit:primary */ SELECT REPEAT('x', 1000000) FROM mysql.seq_1_to_200",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(conn);
    // Its backend connection is closed, not returned to the pool.
    let mut admin = sandbox.primary().admin().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Option<u32> = admin
            .exec_first(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?",
                (thread,),
            )
            .await
            .unwrap();
        if alive.is_none() {
            break;
        }
        if Instant::now() >= deadline {
            let row: Option<(String, Option<String>, Option<String>, f64)> = admin
                .exec_first("SELECT COMMAND, STATE, INFO, TIME_MS FROM information_schema.PROCESSLIST WHERE ID = ?", (thread,))
                .await
                .unwrap();
            panic!("backend thread {thread} still connected: {row:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.proxy.pools[0].idle_count(), 0, "nothing was pooled");
    still_serves(&proxy).await;
}

/// The value of `SELECT CONNECTION_ID()` from a raw text result: the row
/// is the packet after the column count and the column definition.
fn thread_id_from(response: &[u8]) -> u32 {
    let mut rest = response;
    let mut packets = Vec::new();
    while rest.len() >= 4 {
        let len = usize::from(rest[0]) | usize::from(rest[1]) << 8 | usize::from(rest[2]) << 16;
        packets.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    let row = packets[2];
    std::str::from_utf8(&row[1..]).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_backend_killed_mid_query_gives_2013_and_the_proxy_goes_on() {
    let sandbox = common::start_sandbox(SandboxOptions {
        replicas: 1,
        ..Default::default()
    });
    let mut config = common::proxy_config(&sandbox);
    config.monitor.connect_timeout = Duration::from_secs(2);
    let proxy = common::start_proxy(config);
    let mut victim = Conn::new(proxy.opts()).await.unwrap();
    let mut bystander = Conn::new(proxy.opts()).await.unwrap();
    let query = tokio::spawn(async move {
        victim
            .query_drop("/* rwsplit:primary */ SELECT SLEEP(20)")
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_signal(sandbox.primary().pid(), libc::SIGKILL).unwrap();
    let error = within("the victim's error", query)
        .await
        .unwrap()
        .expect_err("the query cannot succeed");
    let error = server_error(error);
    assert_eq!(error.code, 2013);
    assert!(
        error.message.contains("Lost connection to backend db1"),
        "{}",
        error.message
    );
    // Another session: writes get a clear error; reads still work on the replica.
    let error = server_error(bystander.query_drop("DO 1").await.expect_err("no primary"));
    assert!(
        [2003, 2013].contains(&error.code),
        "{} {}",
        error.code,
        error.message
    );
    let one: Option<u8> = bystander
        .query_first("SELECT 1")
        .await
        .expect("reads go to the replica");
    assert_eq!(one, Some(1));
    // New clients can still log in to rwsplit, and are told the same.
    let mut newcomer = raw_client(&proxy.addr.to_string(), modern_capabilities(), None).await;
    let (response, scanner) = newcomer
        .exchange(b"\x03DO 1", Expect::Results { cursor: false })
        .await
        .unwrap();
    assert_eq!(scanner.error(), Some(2003));
    let error = ErrorPacket::parse(&response[4..]).unwrap();
    assert!(
        error.message.contains("Can't connect to backend db1"),
        "{}",
        error.message
    );
}
