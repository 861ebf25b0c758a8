//! Logging in to a backend: the greeting, TLS, the handshake response with
//! the client's capabilities and collation, and the password exchange.

use bytes::BytesMut;
use mysql_common::constants::{CapabilityFlags, MariadbCapabilities, StatusFlags};
use mysql_common::packets::{
    AuthPlugin as WireAuthPlugin, AuthSwitchRequest, HandshakePacket, HandshakeResponse, SslRequest,
};
use mysql_common::proto::MySerialize;
use std::os::fd::AsRawFd;

use tokio::net::TcpStream;

use super::{
    BackendConn, BackendError, Endpoint, Greeting, Login, READ_CHUNK, TlsTarget, refusal,
    refusal_or_protocol,
};
use crate::net::Stream;
use crate::protocol::auth::{self, AuthPlugin};
use crate::protocol::response::ok_status;
use crate::protocol::untrusted;

/// The max_packet_size rwsplit announces to backends.
const MAX_PACKET_ANNOUNCED: u32 = 1 << 30;

/// Capabilities rwsplit needs on every backend login, whatever the client said.
const LOGIN_CAPABILITIES: CapabilityFlags = CapabilityFlags::CLIENT_PROTOCOL_41
    .union(CapabilityFlags::CLIENT_SECURE_CONNECTION)
    .union(CapabilityFlags::CLIENT_PLUGIN_AUTH)
    .union(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
    .union(CapabilityFlags::CLIENT_LONG_PASSWORD);

/// Capabilities that change what a server sends, or how it takes the
/// statements it is sent: a backend that lacks one the client negotiated
/// would quietly answer that client in another format or another way.
const RELAYED_AS_NEGOTIATED: CapabilityFlags = CapabilityFlags::CLIENT_FOUND_ROWS
    .union(CapabilityFlags::CLIENT_LOCAL_FILES)
    .union(CapabilityFlags::CLIENT_MULTI_STATEMENTS)
    .union(CapabilityFlags::CLIENT_MULTI_RESULTS)
    .union(CapabilityFlags::CLIENT_PS_MULTI_RESULTS)
    .union(CapabilityFlags::CLIENT_SESSION_TRACK)
    .union(CapabilityFlags::CLIENT_DEPRECATE_EOF);

/// What a client negotiated, of what the backend must honour as
/// negotiated, that this backend's greeting does not offer; `None` when it
/// offers it all.
fn missing_capabilities(
    login: &Login<'_>,
    greeting: &Greeting,
) -> Option<(CapabilityFlags, MariadbCapabilities)> {
    let standard = (login.capabilities & RELAYED_AS_NEGOTIATED) - greeting.capabilities;
    let mariadb = login.mariadb - greeting.mariadb;
    (!standard.is_empty() || !mariadb.is_empty()).then_some((standard, mariadb))
}

impl BackendConn {
    /// Connects and logs in, within the endpoint's connect timeout.
    ///
    /// The login's state (a TLS handshake's among it) lives on the heap
    /// for as long as it runs: held inline, it would size every session
    /// future that may open a connection — most of a session's — at about
    /// 2 KiB more, for the whole life of each client connection.
    pub async fn connect(
        endpoint: &Endpoint,
        login: &Login<'_>,
    ) -> Result<BackendConn, BackendError> {
        Box::pin(crate::timer::timeout(
            endpoint.connect_timeout,
            Self::connect_inner(endpoint, login),
        ))
        .await
        .map_err(|_| BackendError::Timeout(endpoint.connect_timeout))?
    }

    async fn connect_inner(
        endpoint: &Endpoint,
        login: &Login<'_>,
    ) -> Result<BackendConn, BackendError> {
        let tcp = TcpStream::connect(&endpoint.address)
            .await
            .map_err(|source| BackendError::Connect {
                address: endpoint.address.clone(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        let mut conn = BackendConn {
            _registered: endpoint.sockets.register(tcp.as_raw_fd()),
            stream: Stream::Tcp(tcp),
            buf: BytesMut::with_capacity(READ_CHUNK),
            greeting: Greeting {
                version: Vec::new(),
                capabilities: CapabilityFlags::empty(),
                mariadb: MariadbCapabilities::empty(),
                collation: 0,
                thread_id: 0,
            },
            capabilities: CapabilityFlags::empty(),
            mariadb: MariadbCapabilities::empty(),
            status: StatusFlags::SERVER_STATUS_AUTOCOMMIT,
            tracks_state: false,
        };
        let handshake = conn.read_frame().await?;
        let payload = handshake.first_payload();
        if payload.first() == Some(&0xFF) {
            return Err(refusal(payload));
        }
        let greeting: HandshakePacket = untrusted::parse(payload)
            .ok_or_else(|| BackendError::Protocol("bad greeting".into()))?;
        conn.greeting = Greeting {
            version: greeting.server_version_ref().to_vec(),
            capabilities: greeting.capabilities(),
            mariadb: mariadb_capabilities(
                greeting.capabilities(),
                greeting.mariadb_ext_capabilities(),
            ),
            collation: greeting.default_collation(),
            thread_id: greeting.connection_id(),
        };
        let nonce = greeting.nonce();
        let plugin = greeting
            .auth_plugin_name_ref()
            .and_then(AuthPlugin::from_name)
            .unwrap_or(AuthPlugin::NativePassword);
        let mut capabilities =
            (login.capabilities - CapabilityFlags::CLIENT_COMPRESS - CapabilityFlags::CLIENT_SSL)
                | LOGIN_CAPABILITIES;
        if let Some((standard, mariadb)) = missing_capabilities(login, &conn.greeting) {
            return Err(BackendError::MissingCapabilities {
                standard,
                mariadb,
                greeting: Box::new(conn.greeting.clone()),
            });
        }
        if !login.mariadb.is_empty() {
            // Clear "CLIENT_MYSQL", or the server ignores the extended ones.
            capabilities -= CapabilityFlags::CLIENT_LONG_PASSWORD;
        }
        let track_state = login.track_state
            && conn
                .greeting
                .capabilities
                .contains(CapabilityFlags::CLIENT_SESSION_TRACK);
        if track_state {
            capabilities |= CapabilityFlags::CLIENT_SESSION_TRACK;
        }
        conn.mariadb = login.mariadb;
        let mut seq = 1;
        if let Some(tls) = &endpoint.tls {
            capabilities |= CapabilityFlags::CLIENT_SSL;
            (conn, seq) = conn.start_tls(tls, capabilities, login.collation).await?;
        }
        conn.capabilities = capabilities;
        let response = handshake_response(&greeting, login, capabilities, plugin, &nonce);
        conn.send(seq, &response).await?;
        conn.authenticate(login.password, plugin, nonce).await?;
        if track_state {
            conn.track_state().await?;
        }
        Ok(conn)
    }

    /// Sends an SSLRequest and upgrades the stream; returns the upgraded
    /// connection and the next sequence id.
    async fn start_tls(
        mut self,
        tls: &TlsTarget,
        capabilities: CapabilityFlags,
        collation: u8,
    ) -> Result<(BackendConn, u8), BackendError> {
        if !self
            .greeting
            .capabilities
            .contains(CapabilityFlags::CLIENT_SSL)
        {
            return Err(BackendError::TlsUnavailable);
        }
        let mut request = Vec::new();
        SslRequest::new(capabilities, MAX_PACKET_ANNOUNCED, collation)
            .with_mariadb_capabilities(self.mariadb)
            .serialize(&mut request);
        self.send(1, &request).await?;
        if !self.buf.is_empty() {
            return Err(BackendError::Protocol(
                "data before the TLS handshake".into(),
            ));
        }
        let tcp = self
            .stream
            .into_tcp()
            .ok_or_else(|| BackendError::Protocol("TLS requested twice".into()))?;
        let tls_stream = tls
            .connector
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(BackendError::Tls)?;
        let stream = Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls_stream)));
        Ok((BackendConn { stream, ..self }, 2))
    }

    /// Runs the authentication exchange until OK or ERR.
    async fn authenticate(
        &mut self,
        password: &str,
        mut plugin: AuthPlugin,
        mut nonce: Vec<u8>,
    ) -> Result<(), BackendError> {
        loop {
            let frame = self.read_frame().await?;
            let seq = frame.seq().wrapping_add(1);
            let payload = frame.first_payload();
            match payload.first() {
                Some(0x00) => {
                    self.status = ok_status(payload)?;
                    return Ok(());
                }
                Some(0xFF) => return Err(refusal(payload)),
                Some(0xFE) => {
                    let switch: AuthSwitchRequest = untrusted::parse(payload)
                        .ok_or_else(|| BackendError::Protocol("bad auth switch request".into()))?;
                    let name = switch.auth_plugin().as_bytes().to_vec();
                    plugin = AuthPlugin::from_name(&name).ok_or_else(|| {
                        BackendError::UnsupportedPlugin(String::from_utf8_lossy(&name).into_owned())
                    })?;
                    nonce = switch.plugin_data().to_vec();
                    self.send(seq, &plugin.scramble(&nonce, password)).await?;
                }
                Some(0x01) if plugin == AuthPlugin::CachingSha2Password => match payload.get(1) {
                    Some(&auth::SHA2_FAST_AUTH_OK) => {}
                    Some(&auth::SHA2_PERFORM_FULL_AUTH) => {
                        self.sha2_full_auth(seq, password, &nonce).await?
                    }
                    _ => {
                        return Err(BackendError::Protocol(
                            "unexpected caching_sha2_password data".into(),
                        ));
                    }
                },
                _ => {
                    return Err(BackendError::Protocol(
                        "unexpected packet during login".into(),
                    ));
                }
            }
        }
    }

    /// caching_sha2_password full authentication: the password in clear over
    /// TLS, otherwise RSA-encrypted with the key the server sends.
    async fn sha2_full_auth(
        &mut self,
        seq: u8,
        password: &str,
        nonce: &[u8],
    ) -> Result<(), BackendError> {
        let mut clear = password.as_bytes().to_vec();
        clear.push(0);
        if self.stream.is_tls() {
            return self.send(seq, &clear).await;
        }
        self.send(seq, &[auth::SHA2_REQUEST_PUBLIC_KEY]).await?;
        let frame = self.read_frame().await?;
        let key = match frame.first_payload() {
            [0x01, pem @ ..] => pem.to_vec(),
            other => {
                return Err(refusal_or_protocol(
                    other,
                    "expected the server's public key",
                ));
            }
        };
        let xored: Vec<u8> = clear
            .iter()
            .zip(nonce.iter().cycle())
            .map(|(b, n)| b ^ n)
            .collect();
        // mysql_common panics on a malformed key; a backend sending one is
        // broken, so turn that into an error instead of taking rwsplit down.
        let encrypted = std::panic::catch_unwind(|| mysql_common::crypto::encrypt(&xored, &key))
            .map_err(|_| {
                BackendError::Protocol("the server's public key is not a valid RSA key".into())
            })?;
        self.send(frame.seq().wrapping_add(1), &encrypted).await
    }
}

/// The MariaDB extended capabilities in a greeting or handshake response:
/// only present when the CLIENT_MYSQL flag (CLIENT_LONG_PASSWORD's bit) is
/// clear, as MariaDB's server and clients do.
pub fn mariadb_capabilities(
    capabilities: CapabilityFlags,
    extended: MariadbCapabilities,
) -> MariadbCapabilities {
    match capabilities.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) {
        true => MariadbCapabilities::empty(),
        false => extended,
    }
}

/// The HandshakeResponse41 for `login`, with the client's collation.
fn handshake_response(
    greeting: &HandshakePacket<'_>,
    login: &Login<'_>,
    capabilities: CapabilityFlags,
    plugin: AuthPlugin,
    nonce: &[u8],
) -> Vec<u8> {
    let wire_plugin = match plugin {
        AuthPlugin::NativePassword => WireAuthPlugin::MysqlNativePassword,
        AuthPlugin::CachingSha2Password => WireAuthPlugin::CachingSha2Password,
    };
    let response = HandshakeResponse::new(
        Some(plugin.scramble(nonce, login.password)),
        greeting.server_version_parsed().unwrap_or((5, 5, 5)),
        Some(login.user.as_bytes()),
        login.db.map(str::as_bytes),
        Some(wire_plugin),
        capabilities,
        login.attributes.cloned(),
        MAX_PACKET_ANNOUNCED,
    )
    .with_mariadb_ext_capabilities(login.mariadb);
    let mut out = Vec::new();
    response.serialize(&mut out);
    // mysql_common picks the collation from the server version; the client's
    // must be used so that text comes back in the encoding it expects. The
    // collation is byte 8: after capabilities (4) and max packet size (4).
    out[8] = login.collation;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(capabilities: CapabilityFlags, mariadb: MariadbCapabilities) -> Login<'static> {
        Login {
            user: "app",
            password: "app",
            db: None,
            capabilities,
            mariadb,
            collation: 45,
            attributes: None,
            track_state: false,
        }
    }

    fn greeting(capabilities: CapabilityFlags, mariadb: MariadbCapabilities) -> Greeting {
        Greeting {
            version: b"5.5.5-10.11.6-MariaDB".to_vec(),
            capabilities,
            mariadb,
            collation: 45,
            thread_id: 1,
        }
    }

    #[test]
    fn a_backend_must_offer_what_changes_its_answers() {
        let eof = CapabilityFlags::CLIENT_DEPRECATE_EOF;
        let modern = CapabilityFlags::CLIENT_PROTOCOL_41 | eof;
        let caching = MariadbCapabilities::MARIADB_CLIENT_CACHE_METADATA;
        let none = MariadbCapabilities::empty();

        assert_eq!(
            missing_capabilities(&login(modern, caching), &greeting(modern, caching)),
            None
        );
        assert_eq!(
            missing_capabilities(
                &login(modern, caching),
                &greeting(CapabilityFlags::CLIENT_PROTOCOL_41, none)
            ),
            Some((eof, caching)),
            "an older server would end results with EOF packets and send every column definition"
        );
        // Flags that only matter at login (MariaDB servers leave
        // CLIENT_LONG_PASSWORD, "CLIENT_MYSQL", clear) are not required.
        let client = modern | CapabilityFlags::CLIENT_LONG_PASSWORD;
        assert_eq!(
            missing_capabilities(&login(client, none), &greeting(modern, none)),
            None
        );
    }
}
