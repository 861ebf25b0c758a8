//! The session's backend connections: taken from a pool or opened,
//! brought up to the session's state, and handed back or closed.

use mysql_common::constants::CapabilityFlags;
use tracing::{debug, warn};

use super::Session;
use crate::backend::conn::{BackendConn, BackendError, Login};
use crate::backend::pool::PoolKey;
use crate::protocol::messages::ErrorPacket;

/// Capabilities that only shape the login, not anything a connection sends
/// back afterwards: connections that differ only in these are
/// interchangeable in the pool.
const LOGIN_ONLY: CapabilityFlags = CapabilityFlags::CLIENT_CONNECT_WITH_DB
    .union(CapabilityFlags::CLIENT_CONNECT_ATTRS)
    .union(CapabilityFlags::CLIENT_PLUGIN_AUTH)
    .union(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
    .union(CapabilityFlags::CLIENT_SECURE_CONNECTION)
    .union(CapabilityFlags::CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS);

impl Session {
    /// Makes sure the session holds a connection to backend `target`: from
    /// the pool (moved to the session's database) or newly opened. The
    /// error is what to tell the client.
    pub(super) async fn ensure_backend(&mut self, target: usize) -> Result<(), ErrorPacket> {
        if self.backends[target].is_some() {
            return Ok(());
        }
        let endpoint = &self.proxy.endpoints[target];
        let db = self.identity.db.as_deref();
        let pooled = self.proxy.pools[target].take(&self.pool_key(), db);
        let conn = match pooled {
            Some((mut conn, current)) if current.as_deref() != db => {
                match conn.init_db(db.unwrap_or_default()).await {
                    Ok(()) => conn,
                    Err(BackendError::Refused(error)) => return Err(error),
                    Err(_) => self.connect(target).await?,
                }
            }
            Some((conn, _)) => conn,
            None => self.connect(target).await?,
        };
        // Bring the connection up to the session's state.
        let mut conn = conn;
        if let Err(error) = self.routing.history.replay(&mut conn).await {
            warn!(backend = endpoint.name, %error, "cannot replay the session's state on a new connection");
            return Err(ErrorPacket::backend_unreachable(
                &endpoint.name,
                &endpoint.address,
                &format!("replaying the session's SET/USE/PREPARE history failed: {error}"),
            ));
        }
        debug!(
            backend = endpoint.name,
            thread = conn.thread_id(),
            "backend connection"
        );
        self.registration.set_thread(target, Some(conn.thread_id()));
        self.backends[target] = Some(conn);
        Ok(())
    }

    async fn connect(&self, target: usize) -> Result<BackendConn, ErrorPacket> {
        let endpoint = &self.proxy.endpoints[target];
        let login = Login {
            user: &self.identity.user.name,
            password: &self.identity.user.password,
            db: self.identity.db.as_deref(),
            capabilities: self.backend_capabilities(),
            mariadb: self.identity.mariadb,
            collation: self.identity.collation,
            attributes: self.identity.attributes.as_ref(),
            track_state: true,
        };
        match BackendConn::connect(endpoint, &login).await {
            Ok(conn) => {
                self.proxy.note_greeting(target, conn.greeting());
                Ok(conn)
            }
            Err(BackendError::Refused(error)) => Err(error),
            Err(other) => {
                if let BackendError::MissingCapabilities { greeting, .. } = &other {
                    // Clients that log in from now on are offered only
                    // what this backend speaks too.
                    self.proxy.note_greeting(target, greeting);
                }
                warn!(backend = endpoint.name, error = %other, "cannot open a backend connection");
                Err(ErrorPacket::backend_unreachable(
                    &endpoint.name,
                    &endpoint.address,
                    &other.to_string(),
                ))
            }
        }
    }

    /// Whether the client caches prepared statements' column definitions
    /// (MARIADB_CLIENT_CACHE_METADATA).
    pub(super) fn caches_metadata(&self) -> bool {
        self.identity
            .mariadb
            .contains(mysql_common::constants::MariadbCapabilities::MARIADB_CLIENT_CACHE_METADATA)
    }

    /// The client's capabilities as used towards backends (without the
    /// per-side TLS and compression).
    pub(super) fn backend_capabilities(&self) -> CapabilityFlags {
        self.identity.capabilities - CapabilityFlags::CLIENT_COMPRESS - CapabilityFlags::CLIENT_SSL
    }

    fn pool_key(&self) -> PoolKey {
        PoolKey {
            user: self.identity.user.name.as_str().into(),
            capabilities: (self.backend_capabilities() - LOGIN_ONLY).bits(),
            mariadb: self.identity.mariadb.bits(),
            collation: self.identity.collation,
            home: std::thread::current().id(),
        }
    }

    /// Closes the connection to `target` (its state is unknown).
    pub(super) fn discard(&mut self, target: usize) {
        self.backends[target] = None;
        self.registration.set_thread(target, None);
        self.statements.forget_backend(target);
    }

    /// Hands every held backend connection to its pool (reset in the
    /// background), leaving the session with none.
    pub(super) fn release_backends(&mut self) {
        for index in 0..self.backends.len() {
            self.release_backend(index);
        }
    }

    /// Hands one backend connection (if held) to its pool.
    pub(super) fn release_backend(&mut self, index: usize) {
        let Some(conn) = self.backends[index].take() else {
            return;
        };
        self.registration.set_thread(index, None);
        self.statements.forget_backend(index);
        let proxy = self.proxy.clone();
        let key = self.pool_key();
        tokio::spawn(async move {
            if let Err(error) = proxy.pools[index].put(key, conn).await {
                debug!(%error, "backend connection not reusable; closed");
            }
        });
    }
}
