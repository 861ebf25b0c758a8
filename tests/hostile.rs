//! rwsplit given hostile input: it prints no secret, ever, and a client
//! cannot hold its memory or a connection by sending slowly or by sending
//! compressed data that inflates a thousandfold.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin as WireAuthPlugin, HandshakePacket};
use rwsplit::protocol::auth::AuthPlugin;
use rwsplit::protocol::compress::compress_into;
use rwsplit::protocol::packet::{HEADER_LEN, put_packet};
use rwsplit::sandbox::APP;

/// Secrets given through the environment, and one written in the file.
const FROM_ENV: [(&str, &str); 4] = [
    ("APP_PASSWORD", "S3cret-App-1"),
    ("MONITOR_PASSWORD", "S3cret-Mon-2"),
    ("ADMIN_TOKEN", "S3cret-Tok-3"),
    ("BROKEN", "S3cret: {[x"),
];
const WRITTEN: &str = "S3cret-Lit-4";

/// A configuration whose `users`, `monitor`, `admin` and `failover`
/// sections hold the secrets, with `broken` in place of the `backends`
/// section.
fn config(broken: &str) -> String {
    format!(
        "listen: {{ address: '127.0.0.1:0' }}\n\
         admin: {{ address: '127.0.0.1:0', token: ${{ADMIN_TOKEN}} }}\n\
         users:\n  - {{ name: app, password: ${{APP_PASSWORD}} }}\n\
         monitor: {{ user: monitor, password: ${{MONITOR_PASSWORD}} }}\n\
         failover: {{ replication_user: repl, replication_password: {WRITTEN} }}\n\
         {broken}\n"
    )
}

/// Twenty ways to break a file.
const BROKEN: [&str; 20] = [
    "backends:\n  - { name: db1, address: '127.0.0.1:1'",
    "backends:\n - name: db1\n   address: x\n  - name: db2",
    "backends:\n\t- { name: db1, address: '127.0.0.1:1' }",
    "backends:\n  - { name: db1, address: ${BROKEN} }",
    "backends: []\nbackends: []",
    "backends:\n  - { name: db1, address: '127.0.0.1:1', adress: x }",
    "backends:\n  - { name: db1, address: 'not an address' }",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }\nrouting: { wait_for_primary: soon }",
    "backends: []",
    "backends:\n  - { name: 'db1, address: 127.0.0.1:1 }",
    "backends:\n  - { name: db1, address: ${UNSET_VARIABLE} }",
    "backends:\n  - { name: db1, address: ${APP_PASSWORD }",
    "backends:\n- name: db1\n    address: x",
    "backends: *nowhere",
    "backends:\n  - { name: ${BROKEN}, address: '127.0.0.1:1' }",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }\nlisten: { address: ${BROKEN} }",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }\nfailover: { auto: maybe }",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }\nadmin: { token: ${ADMIN_TOKEN}, token: x }",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }\nusers: [{ name: app, password: { nested: ${APP_PASSWORD} } }]",
    "backends:\n  - { name: db1, address: '127.0.0.1:1' }]",
];

/// Everything `rwsplit args...` printed, stdout and stderr; it is stopped
/// if it runs for more than 10 s (a configuration it accepted).
fn output(args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rwsplit"));
    command
        .args(args)
        .envs(FROM_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("rwsplit runs");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "rwsplit {args:?} kept running on a broken configuration"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = child.wait_with_output().expect("output");
    assert!(
        !done.status.success(),
        "rwsplit {args:?} accepted a broken configuration"
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    )
}

#[test]
fn no_secret_is_printed_whatever_breaks_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    for (index, broken) in BROKEN.iter().enumerate() {
        let path = dir.path().join(format!("broken-{index}.yaml"));
        std::fs::write(&path, config(broken)).unwrap();
        let path = path.to_str().unwrap();
        for args in [vec!["check-config", path], vec!["serve", "-c", path]] {
            let printed = output(&args);
            assert!(!printed.trim().is_empty(), "{args:?} said nothing");
            for secret in FROM_ENV.iter().map(|(_, value)| *value).chain([WRITTEN]) {
                assert!(
                    !printed.contains(secret),
                    "{args:?} on\n{}\nprinted the secret {secret:?}:\n{printed}",
                    config(broken)
                );
            }
        }
    }
}

/// A proxy whose clients must finish a packet within a second and send
/// none over 1 MiB.
fn strict_proxy() -> common::TestProxy {
    let mut config = common::proxy_config(&common::shared_sandbox());
    config.listen.read_timeout = Duration::from_secs(1);
    config.listen.max_allowed_packet = 1 << 20;
    common::start_proxy(config)
}

fn read_packet(tcp: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 4];
    tcp.read_exact(&mut header).unwrap();
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).unwrap();
    payload
}

/// Logs in over raw TCP with `extra` capabilities; the stream after the OK.
fn raw_login(proxy: &common::TestProxy, extra: CapabilityFlags) -> TcpStream {
    let mut tcp = TcpStream::connect(proxy.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let greeting = read_packet(&mut tcp);
    let greeting: HandshakePacket = ParseBuf(&greeting).parse(()).unwrap();
    let capabilities = common::modern_capabilities() | extra;
    let scramble = AuthPlugin::NativePassword.scramble(&greeting.nonce(), APP.password);
    let payload = common::handshake_response(
        APP.user,
        scramble.as_slice(),
        WireAuthPlugin::MysqlNativePassword,
        capabilities,
    );
    let mut out = Vec::new();
    put_packet(&mut out, 1, &payload);
    tcp.write_all(&out).unwrap();
    assert_eq!(read_packet(&mut tcp)[0], 0x00, "logged in");
    tcp
}

/// How long until the proxy closes `tcp` (reading whatever it sends).
fn until_closed(tcp: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 256];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return started.elapsed(),
            Err(e) => panic!("the proxy did not close the connection: {e}"),
        }
    }
}

/// `listen.read_timeout` bounds a whole packet, not each read: a client
/// that sends a byte every 300 ms is closed a second after its packet
/// began, not kept while each byte comes in time.
#[test]
fn a_packet_sent_a_byte_at_a_time_must_still_arrive_in_time() {
    let proxy = strict_proxy();
    let mut tcp = raw_login(&proxy, CapabilityFlags::empty());
    let started = Instant::now();
    // A 100-byte COM_QUERY, of which the header and then a byte every 300 ms.
    tcp.write_all(&[100, 0, 0, 0]).unwrap();
    let mut sent = 0;
    while tcp.write_all(b"x").is_ok() && started.elapsed() < Duration::from_secs(6) {
        sent += 1;
        tcp.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut probe = [0u8; 64];
        match tcp.read(&mut probe) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let closed = started.elapsed() + until_closed(&mut tcp);
    assert!(
        closed < Duration::from_secs(3),
        "closed {closed:?} after the packet began ({sent} bytes sent one by one)"
    );
}

/// The process's peak resident memory, in KiB (VmHWM), after resetting it.
fn peak_kib(reset: bool) -> u64 {
    if reset {
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// Compressed frames of zeros, each a few KiB on the wire and 16 MiB
/// inflated (the limit is 1 MiB): the proxy reads a frame's announced size
/// before inflating it, refuses the packet with ERR 1153, and its memory
/// does not grow with what the frames would inflate to.
#[test]
fn compressed_data_is_not_inflated_past_the_largest_packet_allowed() {
    let proxy = strict_proxy();
    let mut tcp = raw_login(&proxy, CapabilityFlags::CLIENT_COMPRESS);
    // A packet announcing a 16 MiB chunk (of a larger packet), then zeros.
    let mut zeros = vec![0u8; 0xFF_FFFF];
    zeros[..4].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0x00]);
    let mut frame = BytesMut::new();
    compress_into(&mut frame, 0, &zeros);
    zeros[..4].fill(0);
    let mut more = BytesMut::new();
    compress_into(&mut more, 1, &zeros);
    drop(zeros);
    let before = peak_kib(true);
    tcp.write_all(&frame).unwrap();
    let mut seq = 1u8;
    for _ in 0..12 {
        more[3] = seq;
        seq = seq.wrapping_add(1);
        if tcp.write_all(&more).is_err() {
            break;
        }
    }
    // (Compressed too: its frame header, then the packet.)
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        answer.windows(2).any(|w| w == 1153u16.to_le_bytes()),
        "ERR 1153 in {answer:?}"
    );
    let grown_mib = peak_kib(false).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 8,
        "memory grew {grown_mib} MiB for {} KiB sent",
        (frame.len() + 12 * more.len()) / 1024
    );
}

/// `KILL` is answered by rwsplit with its own connection ids; a form it
/// does not translate never reaches a backend, where it would name a
/// backend's thread: an expression, an executable comment, a statement
/// among others, a prepared or immediate KILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_reaches_no_backend_in_any_form_rwsplit_does_not_translate() {
    use mysql_async::prelude::Queryable;
    let proxy = common::start_proxy(common::proxy_config(&common::shared_sandbox()));
    let mut victim = mysql_async::Conn::new(proxy.opts()).await.unwrap();
    // The victim's backend thread on the primary.
    let backend_id: u64 = victim
        .query_first("SELECT CONNECTION_ID() FROM DUAL WHERE GET_LOCK('hostile', 0) IS NOT NULL")
        .await
        .unwrap()
        .unwrap();
    let mut attacker = mysql_async::Conn::new(proxy.opts()).await.unwrap();
    for sql in [
        format!("KILL {backend_id}+0"),
        format!("KILL CONNECTION ({backend_id})"),
        format!("/*!KILL {backend_id} */"),
        format!("SELECT 1; KILL {backend_id}"),
        format!("PREPARE s FROM 'KILL {backend_id}'"),
        format!("EXECUTE IMMEDIATE 'KILL {backend_id}'"),
    ] {
        match attacker.query_drop(&sql).await {
            Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1235, "{sql}: {}", e.message),
            other => panic!("{sql}: {other:?}"),
        }
    }
    let alive: Option<u8> = victim.query_first("SELECT 1").await.unwrap();
    assert_eq!(alive, Some(1), "the victim's session lives");
}

/// COM_REFRESH with REFRESH_MASTER would run RESET MASTER on the primary
/// and break every replica: refused, like the flags that reset or rotate
/// replication state; the others are relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn com_refresh_cannot_reset_the_binary_log() {
    use mysql_async::prelude::Queryable;
    use rwsplit::backend::conn::BackendError;
    use rwsplit::protocol::response::Expect;
    let sandbox = common::shared_sandbox();
    let proxy = common::start_proxy(common::proxy_config(&sandbox));
    let mut admin = sandbox.primary().admin().await.unwrap();
    admin
        .query_drop("CREATE DATABASE IF NOT EXISTS hostile")
        .await
        .unwrap();
    let position = "SELECT @@gtid_binlog_pos";
    let before: Option<String> = admin.query_first(position).await.unwrap();
    let mut client =
        common::raw_client(&proxy.addr.to_string(), common::modern_capabilities(), None).await;
    for flags in [0x80u8, 0x40, 0x02] {
        match client.run(&[0x07, flags], Expect::Single).await {
            Err(BackendError::Refused(e)) => assert_eq!(e.code, 1235, "{flags:#x}: {}", e.message),
            other => panic!("COM_REFRESH {flags:#x}: {other:?}"),
        }
    }
    client
        .run(&[0x07, 0x04], Expect::Single)
        .await
        .expect("REFRESH_TABLES is relayed");
    let after: Option<String> = admin.query_first(position).await.unwrap();
    assert_eq!(after, before, "the binary log was not reset");
}

/// Sends `request` to the admin API over raw TCP; the status line of the
/// answer.
fn admin_request(proxy: &common::TestProxy, request: &str) -> String {
    let mut tcp = TcpStream::connect(proxy.admin_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Half-sent HTTP requests cannot pin the admin API's descriptors: past
/// its connection cap more are closed at once, each is closed when its
/// head does not arrive in time, and MySQL clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_admin_requests_are_closed_and_capped() {
    use mysql_async::prelude::Queryable;
    let proxy = common::start_proxy(common::proxy_config(&common::shared_sandbox()));
    let over = rwsplit::admin::MAX_CONNECTIONS + 20;
    let mut pending: Vec<TcpStream> = (0..over)
        .map(|_| {
            let mut tcp = TcpStream::connect(proxy.admin_addr).unwrap();
            tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            tcp
        })
        .collect();
    let mut conn = mysql_async::Conn::new(proxy.opts()).await.unwrap();
    let one: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1), "MySQL clients are served");
    let started = Instant::now();
    let limit = rwsplit::admin::HEADER_TIMEOUT + Duration::from_secs(3);
    for tcp in &mut pending {
        tcp.set_read_timeout(Some(limit)).unwrap();
        let mut byte = [0u8; 1];
        match tcp.read(&mut byte) {
            Ok(_) | Err(_) if started.elapsed() < limit => {}
            other => panic!("a half-sent request was still open after {limit:?}: {other:?}"),
        }
    }
    drop(pending);
    let status = admin_request(
        &proxy,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
}

/// A page open in a browser on the same machine cannot start a
/// switchover: requests with an `Origin`, or naming a host rather than an
/// address (DNS rebinding), are refused; tools are served.
#[test]
fn a_web_page_cannot_change_the_servers() {
    let proxy = common::start_proxy(common::proxy_config(&common::shared_sandbox()));
    let post = |headers: &str| {
        admin_request(
            &proxy,
            &format!(
                "POST /switchover?to=nowhere HTTP/1.1\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    assert_eq!(
        post("Host: 127.0.0.1\r\nOrigin: http://evil.example\r\n"),
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(
        post("Host: evil.example:6034\r\n"),
        "HTTP/1.1 403 Forbidden"
    );
    // A tool: on to the change itself, which knows no backend `nowhere`.
    assert_eq!(post("Host: 127.0.0.1\r\n"), "HTTP/1.1 404 Not Found");
}

/// Connects to `to` from `source`, a loopback address of its own.
async fn connect_from(source: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// The first packet the proxy sends on `tcp`: its greeting, or an ERR.
async fn first_packet(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 4];
    tcp.read_exact(&mut header).await.unwrap();
    let mut payload = vec![0; usize::from(header[0]) | usize::from(header[1]) << 8];
    tcp.read_exact(&mut payload).await.unwrap();
    payload
}

/// Connections from one address that never log in hold at most
/// `listen.max_logins_per_address` login slots; more wait for one, before
/// their greeting, up to `QUEUED_PER_SLOT` times as many, and past that
/// they are refused at once with ERR 1040. A slot given back goes to one
/// that waits. Clients from elsewhere log in and are served meanwhile,
/// more of them than the address may have logging in (a slot is given
/// back at login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_from_one_address_cannot_keep_other_clients_out() {
    use mysql_async::prelude::Queryable;
    use rwsplit::server::throttle::QUEUED_PER_SLOT;
    let mut config = common::proxy_config(&common::shared_sandbox());
    config.listen.max_client_connections = 128;
    config.listen.max_logins_per_address = 4;
    let proxy = common::start_proxy(config);
    let (slots, queued) = (4, 4 * QUEUED_PER_SLOT);
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(connect_from("127.0.0.2", proxy.addr).await);
    }
    let mut firsts = tokio::task::JoinSet::new();
    for mut tcp in flood {
        firsts.spawn(async move {
            let first = rwsplit::timer::timeout(Duration::from_millis(500), first_packet(&mut tcp));
            (first.await.ok(), tcp)
        });
    }
    let (mut greeted, mut waiting, mut refused) = (Vec::new(), Vec::new(), 0);
    while let Some(read) = firsts.join_next().await {
        let (first, tcp) = read.expect("a read");
        match first.as_deref() {
            Some([0x0a, ..]) => greeted.push(tcp),
            Some([0xff, code @ .., _]) if code.len() >= 2 => {
                assert_eq!(u16::from_le_bytes([code[0], code[1]]), 1040);
                refused += 1;
            }
            None => waiting.push(tcp),
            Some(other) => panic!("unexpected first packet {other:?}"),
        }
    }
    assert_eq!(
        (greeted.len(), waiting.len(), refused),
        (slots, queued, 100 - slots - queued)
    );

    drop(greeted.pop());
    let mut next = tokio::task::JoinSet::new();
    for mut tcp in waiting {
        next.spawn(async move { (first_packet(&mut tcp).await, tcp) });
    }
    let greeting = common::within("a waiting connection's greeting", next.join_next()).await;
    let (first, _greeted) = greeting.expect("one").expect("a read");
    assert_eq!(first[0], 0x0a, "a greeting");

    let mut clients = Vec::new();
    for _ in 0..40 {
        let mut conn = common::within("a login", mysql_async::Conn::new(proxy.opts()))
            .await
            .expect("a client from another address logs in");
        let one: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        clients.push(conn);
    }
    let metrics = common::metrics(&proxy).await;
    assert!(
        metrics.contains(&format!(
            "rwsplit_client_connections_refused_total{{reason=\"max_logins_per_address\"}} {refused}"
        )),
        "{metrics}"
    );
    for conn in clients {
        conn.disconnect().await.unwrap();
    }
}

/// An application that opens its whole pool at once, from one address,
/// more connections than `listen.max_logins_per_address` (the default),
/// gets every one of them: those past it wait their turn to log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_opened_all_at_once_logs_in_whole() {
    use mysql_async::prelude::Queryable;
    let config = common::proxy_config(&common::shared_sandbox());
    let burst = 3 * config.listen.max_logins_per_address;
    let proxy = common::start_proxy(config);
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..burst {
        let opts = proxy.opts();
        logins.spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await?;
            let one: Option<u8> = conn.query_first("SELECT 1").await?;
            Ok::<_, mysql_async::Error>((conn, one))
        });
    }
    let mut conns = Vec::new();
    while let Some(login) = common::within("the pool's logins", logins.join_next()).await {
        let (conn, one) = login
            .expect("a task")
            .expect("every connection of the pool logs in");
        assert_eq!(one, Some(1));
        conns.push(conn);
    }
    assert_eq!(conns.len(), burst);
    for conn in conns {
        conn.disconnect().await.unwrap();
    }
}

/// Wrong passwords from one address are answered at once three times,
/// then each one step of `listen.failed_login_delay` later than the last;
/// the right password is answered at once and clears the count. A guess
/// waiting for its answer keeps its login slot, so the address cannot
/// open more connections to guess faster. COM_CHANGE_USER counts too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_from_one_address_are_answered_ever_later() {
    use mysql_async::prelude::Queryable;
    let step = Duration::from_millis(600);
    let mut config = common::proxy_config(&common::shared_sandbox());
    config.listen.failed_login_delay = step;
    config.listen.max_logins_per_address = 2;
    let proxy = common::start_proxy(config);
    let wrong = || -> mysql_async::Opts {
        mysql_async::OptsBuilder::from_opts(proxy.opts())
            .pass(Some("wrong"))
            .into()
    };
    let guess = || async {
        let started = Instant::now();
        let error = mysql_async::Conn::new(wrong()).await.map(drop).unwrap_err();
        match error {
            mysql_async::Error::Server(e) => assert_eq!(e.code, 1045),
            other => panic!("expected access denied, got {other}"),
        }
        started.elapsed()
    };
    let answered = |took: Duration, after: u32| {
        assert!(
            took >= step * after && took < step * after + step / 2,
            "answered after {took:?}, expected {:?}",
            step * after
        );
    };
    for after in [0, 0, 0, 1, 2] {
        answered(guess().await, after);
    }
    let started = Instant::now();
    let mut conn = mysql_async::Conn::new(proxy.opts()).await.unwrap();
    answered(started.elapsed(), 0);
    for _ in 0..3 {
        answered(guess().await, 0);
    }

    // The address's two slots taken by guesses waiting one and two steps:
    // a third connection waits for the first of them to be answered.
    let (first, second) = (guess(), guess());
    let crowded = async {
        tokio::time::sleep(step / 4).await;
        let started = Instant::now();
        let conn = mysql_async::Conn::new(proxy.opts()).await;
        (
            conn.expect("logs in once a slot is free"),
            started.elapsed(),
        )
    };
    let (_, _, (_crowded, took)) = tokio::join!(first, second, crowded);
    assert!(
        took >= step / 2 && took < step + step / 2,
        "logged in after {took:?}, expected about {:?}",
        step * 3 / 4
    );

    let failures = |proxy: &common::TestProxy| {
        proxy
            .proxy
            .metrics
            .login_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(failures(&proxy), 10);
    let wrong_user = mysql_async::ChangeUserOpts::default().with_pass(Some("wrong".into()));
    assert!(conn.change_user(wrong_user).await.is_err());
    assert_eq!(failures(&proxy), 11, "COM_CHANGE_USER counts");
    let fresh = mysql_async::Conn::new(proxy.opts()).await;
    let mut fresh = fresh.expect("the right password still logs in");
    let one: Option<u8> = fresh.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

/// A COM_QUERY packet `SELECT LENGTH('xx…')` of `len` bytes in all, and
/// how many `x` it holds.
fn length_query(len: usize) -> (Vec<u8>, usize) {
    let mut query = b"\x03SELECT LENGTH('".to_vec();
    let xs = len - HEADER_LEN - query.len() - 2;
    query.resize(query.len() + xs, b'x');
    query.extend_from_slice(b"')");
    let mut packet = Vec::new();
    put_packet(&mut packet, 0, &query);
    (packet, xs)
}

/// Reads the answer to a `length_query`: the one value of its one row.
fn read_length(tcp: &mut TcpStream) -> usize {
    let columns = read_packet(tcp);
    assert_eq!(columns, [1], "one column, not an error: {columns:?}");
    read_packet(tcp);
    let row = read_packet(tcp);
    read_packet(tcp);
    String::from_utf8_lossy(&row[1..]).parse().unwrap()
}

/// Slow senders of large packets cannot make rwsplit hold more than
/// `listen.buffered_packet_budget` in unfinished packets: one that would
/// go past it is refused at once with ERR 1041, while those within it,
/// and small commands from everyone, are served; once they have arrived,
/// their room is free for the next.
#[test]
fn large_packets_still_arriving_share_a_budget() {
    const BUDGET: usize = 4 << 20;
    let mut config = common::proxy_config(&common::shared_sandbox());
    config.listen.max_allowed_packet = BUDGET;
    config.listen.buffered_packet_budget = BUDGET;
    let proxy = common::start_proxy(config);
    let budget = &proxy.proxy.packet_budget;
    let unit = rwsplit::server::client::BUDGET_UNIT;
    let left_after = |reserved: usize| {
        let expected = (BUDGET - reserved) / unit;
        let started = Instant::now();
        while budget.available_permits() != expected {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "budget never {expected}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let size = 1_800_000;
    let begin = || {
        let mut tcp = raw_login(&proxy, CapabilityFlags::empty());
        let (packet, xs) = length_query(size);
        tcp.write_all(&packet[..64 * 1024]).unwrap();
        (tcp, packet, xs)
    };
    let (mut first, first_packet, xs) = begin();
    let (mut second, second_packet, _) = begin();
    let reserved = 2 * (size - HEADER_LEN).div_ceil(unit) * unit;
    left_after(reserved);

    let (mut third, _, _) = begin();
    let refused = read_packet(&mut third);
    assert_eq!(
        (refused[0], u16::from_le_bytes([refused[1], refused[2]])),
        (0xff, 1041)
    );
    until_closed(&mut third);
    let mut small = raw_login(&proxy, CapabilityFlags::empty());
    let (query, small_xs) = length_query(100);
    small.write_all(&query).unwrap();
    assert_eq!(
        read_length(&mut small),
        small_xs,
        "small commands are served"
    );

    first.write_all(&first_packet[64 * 1024..]).unwrap();
    second.write_all(&second_packet[64 * 1024..]).unwrap();
    assert_eq!(read_length(&mut first), xs);
    assert_eq!(read_length(&mut second), xs);
    left_after(0);
    let (mut fourth, fourth_packet, _) = begin();
    fourth.write_all(&fourth_packet[64 * 1024..]).unwrap();
    assert_eq!(read_length(&mut fourth), xs, "the budget is free again");
}
