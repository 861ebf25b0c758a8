//! Logging a client in: the greeting, an optional TLS upgrade, and the
//! password exchange (also used by COM_CHANGE_USER).
//!
//! Until the client has either asked for TLS or not, packets are read with
//! exact reads straight from the socket, so that no byte of a TLS
//! ClientHello is consumed as MySQL data.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mysql_common::constants::{CapabilityFlags, MariadbCapabilities, StatusFlags};
use mysql_common::packets::{AuthSwitchRequest, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::warn;

use super::Proxy;
use super::client::{ClientConn, ClientError};
use crate::backend::conn::mariadb_capabilities;
use crate::config::UserConfig;
use crate::net::Stream;
use crate::protocol::auth::{self, AuthPlugin};
use crate::protocol::messages::ErrorPacket;
use crate::protocol::packet::{HEADER_LEN, put_packet};
use crate::protocol::untrusted;

/// Largest packet accepted before the client has logged in.
const MAX_LOGIN_PACKET: usize = 64 * 1024;
/// Length of an SSLRequest payload.
const SSL_REQUEST_LEN: usize = 32;

/// Who a logged-in client is, and what it negotiated.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: Arc<UserConfig>,
    /// The database the client selected, if any.
    pub db: Option<String>,
    /// Capabilities both sides support (including SSL and COMPRESS when used).
    pub capabilities: CapabilityFlags,
    /// MariaDB extended capabilities both sides support.
    pub mariadb: MariadbCapabilities,
    pub collation: u8,
    pub attributes: Option<HashMap<String, String>>,
}

/// Why a login did not complete.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// A wrong user or password, not answered yet: see [`deny`].
    #[error("access denied for user '{}'", .1.user)]
    Denied(Box<ClientConn>, Denial),
    #[error("refused: {0}")]
    Refused(&'static str),
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("client connection failed: {0}")]
    Io(#[from] io::Error),
}

/// The ERR a client that gave a wrong user or password is owed.
#[derive(Debug)]
pub struct Denial {
    pub seq: u8,
    pub user: String,
    pub used_password: bool,
}

/// A client that passed authentication, waiting for its final OK.
#[derive(Debug)]
pub struct LoggedIn {
    pub client: ClientConn,
    pub identity: Identity,
    /// Sequence id of the OK (or ERR) that ends the login.
    pub next_seq: u8,
}

/// Greets the client and checks its password. Every refusal but
/// [`LoginError::Denied`] has been sent to the client as an ERR packet when
/// this returns an error; that one is answered by [`deny`], which may wait.
pub async fn login(
    proxy: &Proxy,
    mut tcp: TcpStream,
    peer: SocketAddr,
    connection_id: u32,
) -> Result<LoggedIn, LoginError> {
    let nonce = auth::nonce();
    let offered = proxy.client_capabilities();
    let offered_mariadb = proxy.client_mariadb_capabilities();
    let greeting = greeting(proxy, connection_id, &nonce, offered, offered_mariadb);
    write_packet(&mut tcp, 0, &greeting).await?;

    let (seq, first) = read_exact_packet(&mut tcp).await?;
    let ssl_request = first.len() == SSL_REQUEST_LEN
        && u32::from_le_bytes([first[0], first[1], first[2], first[3]])
            & CapabilityFlags::CLIENT_SSL.bits()
            != 0;
    let listen = &proxy.config.listen;
    let (mut client, seq, payload) = match (&proxy.tls, ssl_request) {
        (Some(acceptor), true) => {
            let tls = acceptor.accept(tcp).await.map_err(LoginError::Tls)?;
            let stream = Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls)));
            let mut client = ClientConn::new(
                stream,
                peer,
                MAX_LOGIN_PACKET,
                listen.read_timeout,
                proxy.packet_budget.clone(),
            );
            let frame = client.read_frame().await?;
            (client, frame.seq(), frame.into_payload().to_vec())
        }
        (None, true) => {
            return Err(LoginError::Refused(
                "client asked for TLS, which is not configured",
            ));
        }
        (_, false) => {
            let client = ClientConn::new(
                Stream::Tcp(tcp),
                peer,
                MAX_LOGIN_PACKET,
                listen.read_timeout,
                proxy.packet_budget.clone(),
            );
            (client, seq, first)
        }
    };
    let mut seq = seq.wrapping_add(1);
    if listen.tls.as_ref().is_some_and(|t| t.required) && !client.is_tls() {
        client
            .send_error(seq, &ErrorPacket::insecure_transport())
            .await?;
        return Err(LoginError::Refused(
            "TLS is required and the client did not use it",
        ));
    }
    let Some(response) = untrusted::parse::<HandshakeResponse>(&payload) else {
        client
            .send_error(seq, &ErrorPacket::bad_handshake())
            .await?;
        return Err(LoginError::Refused("malformed HandshakeResponse"));
    };
    let capabilities = response.capabilities() & offered;
    let mariadb =
        mariadb_capabilities(response.capabilities(), response.mariadb_ext_capabilities())
            & offered_mariadb;
    if !capabilities.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        client
            .send_error(seq, &ErrorPacket::bad_handshake())
            .await?;
        return Err(LoginError::Refused("client does not speak protocol 4.1"));
    }
    let user_name = String::from_utf8_lossy(response.user()).into_owned();
    let user = proxy.user(&user_name);
    let plugin = response.auth_plugin().map(|p| p.as_bytes());
    let accepted = authenticate(
        proxy,
        &mut client,
        user.as_deref(),
        plugin,
        &nonce,
        response.scramble_buf(),
        &mut seq,
    )
    .await?;
    let Some(user) = user.filter(|_| accepted) else {
        let denial = Denial {
            seq,
            user: user_name,
            used_password: !response.scramble_buf().is_empty(),
        };
        return Err(LoginError::Denied(Box::new(client), denial));
    };
    client.set_max_packet(listen.max_allowed_packet);
    let identity = Identity {
        user,
        db: response
            .db_name()
            .map(|d| String::from_utf8_lossy(d).into_owned()),
        capabilities,
        mariadb,
        collation: response.collation(),
        attributes: response.connect_attributes(),
    };
    Ok(LoggedIn {
        client,
        identity,
        next_seq: seq,
    })
}

/// Answers a wrong user or password (`on` a login or a COM_CHANGE_USER)
/// with ERR 1045, after the delay the client's address has earned (see
/// [`super::throttle`]); logged once per interval per address.
pub async fn deny(proxy: &Proxy, client: &mut ClientConn, denial: &Denial, on: &'static str) {
    let peer = client.peer();
    proxy.metrics.login_failures.fetch_add(1, Ordering::Relaxed);
    let failure = proxy.logins.failed(peer.ip());
    if let Some(count) = failure.log {
        let (user, consecutive, delay) = (&denial.user, failure.consecutive, failure.delay);
        warn!(%peer, on, user, count, consecutive, ?delay, "access denied");
    }
    crate::timer::sleep(failure.delay).await;
    let error =
        ErrorPacket::access_denied(&denial.user, &peer.ip().to_string(), denial.used_password);
    // The client may have given up waiting; there is nothing more to do then.
    let _ = client.send_error(denial.seq, &error).await;
}

/// The HandshakeV10 payload.
fn greeting(
    proxy: &Proxy,
    connection_id: u32,
    nonce: &[u8; 20],
    capabilities: CapabilityFlags,
    mariadb: MariadbCapabilities,
) -> Vec<u8> {
    let info = proxy.server_info();
    let mut second_half = nonce[8..].to_vec();
    second_half.push(0);
    let packet = HandshakePacket::new(
        10,
        info.version.clone(),
        connection_id,
        nonce[..8].try_into().unwrap_or_default(),
        Some(second_half),
        capabilities,
        info.collation,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(proxy.default_plugin().name().as_bytes()),
    )
    .with_mariadb_ext_capabilities(mariadb);
    let mut out = Vec::new();
    packet.serialize(&mut out);
    out
}

/// Runs the password exchange after the client's first answer (`response`,
/// computed with `plugin` over `nonce`). `seq` is the sequence id of the
/// next packet rwsplit sends, and is kept up to date. Returns whether the
/// password was right; `user` is `None` for an unknown user, which gets the
/// same exchange and is then refused, so that nothing tells them apart.
pub async fn authenticate(
    proxy: &Proxy,
    client: &mut ClientConn,
    user: Option<&UserConfig>,
    plugin: Option<&[u8]>,
    nonce: &[u8],
    response: &[u8],
    seq: &mut u8,
) -> Result<bool, LoginError> {
    let account = proxy.account_plugin(user);
    let (plugin, nonce, response) =
        match plugin.map_or(Some(AuthPlugin::NativePassword), AuthPlugin::from_name) {
            Some(plugin) if plugin == account => (plugin, nonce.to_vec(), response.to_vec()),
            _ => {
                // The client started with another plugin than the user's
                // (one rwsplit may not even verify): switch it, with a
                // fresh nonce, as a server does.
                let plugin = account;
                let fresh = auth::nonce();
                let mut data = fresh.to_vec();
                data.push(0);
                let mut switch = Vec::new();
                AuthSwitchRequest::new(plugin.name().as_bytes(), data).serialize(&mut switch);
                client.send(*seq, &switch).await?;
                let frame = client.read_frame().await?;
                *seq = frame.last_seq().wrapping_add(1);
                (plugin, fresh.to_vec(), frame.into_payload().to_vec())
            }
        };
    // An unknown user is checked against a password nobody has.
    let password = user.map_or("\u{0}unknown user", |u| u.password.as_str());
    let accepted = match plugin {
        AuthPlugin::NativePassword => plugin.verify(&nonce, password, &response),
        AuthPlugin::CachingSha2Password => {
            sha2_exchange(proxy, client, user, password, &nonce, &response, seq).await?
        }
    };
    Ok(accepted && user.is_some())
}

/// caching_sha2_password, as MySQL 8 runs it: the fast path for users that
/// have logged in before (a scramble check), otherwise full authentication
/// with the password itself — in clear over TLS, RSA-encrypted without.
async fn sha2_exchange(
    proxy: &Proxy,
    client: &mut ClientConn,
    user: Option<&UserConfig>,
    password: &str,
    nonce: &[u8],
    response: &[u8],
    seq: &mut u8,
) -> Result<bool, LoginError> {
    if response.is_empty() {
        return Ok(false);
    }
    if user.is_some_and(|u| proxy.sha2_cached(&u.name))
        && AuthPlugin::CachingSha2Password.verify(nonce, password, response)
    {
        client.send(*seq, &[0x01, auth::SHA2_FAST_AUTH_OK]).await?;
        *seq = seq.wrapping_add(1);
        return Ok(true);
    }
    // A wrong fast-path scramble gets a full authentication, as an unknown
    // user or one not yet cached does (MySQL 8.4 does the same): answering
    // it with ERR at once would tell a prober the user exists.
    client
        .send(*seq, &[0x01, auth::SHA2_PERFORM_FULL_AUTH])
        .await?;
    let mut frame = client.read_frame().await?;
    if !client.is_tls() && frame.first_payload() == [auth::SHA2_REQUEST_PUBLIC_KEY] {
        let mut key = vec![0x01];
        key.extend_from_slice(proxy.rsa.public_pem().as_bytes());
        client.send(frame.seq().wrapping_add(1), &key).await?;
        frame = client.read_frame().await?;
    }
    *seq = frame.last_seq().wrapping_add(1);
    let sent = frame.into_payload();
    // Without TLS only an RSA-encrypted password is accepted, never one in clear.
    let cleartext = if client.is_tls() {
        Some(sent.to_vec())
    } else {
        proxy.rsa.decrypt_password(&sent, nonce)
    };
    let Some(cleartext) = cleartext else {
        return Ok(false);
    };
    let accepted = user.is_some() && auth::verify_cleartext(password, &cleartext);
    if let (true, Some(user)) = (accepted, user) {
        proxy.sha2_remember(&user.name);
    }
    Ok(accepted)
}

/// Reads one packet with exact reads (no read-ahead); returns its sequence
/// id and payload.
async fn read_exact_packet(tcp: &mut TcpStream) -> Result<(u8, Vec<u8>), LoginError> {
    let mut header = [0u8; HEADER_LEN];
    tcp.read_exact(&mut header).await?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > MAX_LOGIN_PACKET {
        return Err(LoginError::Refused("login packet too large"));
    }
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await?;
    Ok((header[3], payload))
}

async fn write_packet(tcp: &mut TcpStream, seq: u8, payload: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + HEADER_LEN);
    put_packet(&mut out, seq, payload);
    tcp.write_all(&out).await
}
