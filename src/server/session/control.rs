//! Commands rwsplit answers itself rather than relaying: KILL with the
//! connection ids it gave out, COM_RESET_CONNECTION and COM_CHANGE_USER,
//! which reset the session on every backend it holds.

use mysql_common::constants::StatusFlags;
use mysql_common::packets::AuthSwitchRequest;
use mysql_common::proto::MySerialize;
use tracing::{debug, info, warn};

use super::{End, Flow, Session};
use crate::backend::conn::{BackendConn, Login};
use crate::protocol::auth;
use crate::protocol::change_user::parse_change_user;
use crate::protocol::command::com;
use crate::protocol::messages::{ErrorPacket, ok_payload};
use crate::protocol::packet::Frame;
use crate::protocol::response::Expect;
use crate::server::login::{self, Denial, authenticate};
use crate::server::session::state::RoutingState;
use crate::sql::kill::Kill;

impl Session {
    /// `KILL [QUERY] id`: `id` is an rwsplit connection id. The statement is
    /// stopped on every backend the target session holds; for KILL
    /// CONNECTION the session is then closed. A client may kill only its own
    /// user's sessions.
    pub(super) async fn kill(&mut self, kill: Kill, seq: u8) -> Result<Flow, End> {
        let (id, query) = match kill {
            Kill::Connection(id) => (id, false),
            Kill::Query(id) => (id, true),
            Kill::Unsupported(what) => {
                return self
                    .reply_error(seq, &ErrorPacket::not_supported(what))
                    .await;
            }
        };
        let Some(target) = self.proxy.registry.lookup(id) else {
            return self
                .reply_error(seq, &ErrorPacket::unknown_thread(id))
                .await;
        };
        if *target.user != *self.identity.user.name {
            return self
                .reply_error(seq, &ErrorPacket::not_thread_owner(id))
                .await;
        }
        if !query && id == u64::from(self.registration.id()) {
            // Killing yourself: MySQL answers with this error and closes.
            let _ = self
                .client
                .send_error(seq, &ErrorPacket::connection_killed())
                .await;
            return Err(End::Quit);
        }
        let statement = if query {
            "KILL QUERY"
        } else {
            "KILL CONNECTION"
        };
        for (backend, thread) in &target.threads {
            self.kill_backend_thread(*backend, *thread, statement).await;
        }
        if !query {
            target.abort();
        }
        info!(
            id = self.registration.id(),
            target = id,
            statement,
            "killed"
        );
        self.reply_ok(seq).await
    }

    /// Sends `KILL ... thread` to a backend on a connection of its own,
    /// logged in as this session's user. The thread may have ended already,
    /// which is fine.
    async fn kill_backend_thread(&self, backend: usize, thread: u32, statement: &str) {
        let login = Login {
            user: &self.identity.user.name,
            password: &self.identity.user.password,
            db: None,
            capabilities: self.backend_capabilities(),
            mariadb: self.identity.mariadb,
            collation: self.identity.collation,
            attributes: None,
            track_state: false,
        };
        let endpoint = &self.proxy.endpoints[backend];
        let result = match BackendConn::connect(endpoint, &login).await {
            Ok(mut conn) => {
                let mut payload = vec![com::QUERY];
                payload.extend_from_slice(format!("{statement} {thread}").as_bytes());
                conn.run(&payload, Expect::Single).await.map(drop)
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            debug!(backend = endpoint.name, thread, %error, "backend KILL did not apply");
        }
    }

    /// COM_RESET_CONNECTION: every held backend connection is reset (one
    /// that fails is closed), prepared statements are forgotten.
    pub(super) async fn reset_connection(&mut self, seq: u8) -> Result<Flow, End> {
        for index in 0..self.backends.len() {
            let Some(conn) = self.backends[index].as_mut() else {
                continue;
            };
            // The reset turns off the state-change tracker rwsplit keeps on.
            let tracks_state = conn.tracks_state();
            let reset = match conn.reset().await {
                Ok(()) if tracks_state => conn.track_state().await,
                done => done,
            };
            if let Err(error) = reset {
                warn!(backend = self.proxy.endpoints[index].name, %error, "reset failed; connection closed");
                self.discard(index);
            }
        }
        self.statements.clear();
        self.status = StatusFlags::SERVER_STATUS_AUTOCOMMIT;
        self.routing = RoutingState::new(&self.proxy.config.routing);
        self.reply_ok(seq).await
    }

    /// COM_CHANGE_USER: the new user is authenticated against rwsplit's
    /// users with a fresh nonce (an auth switch), then the session starts
    /// over: backend connections go back to their pools and new ones are
    /// opened as the new user. A failed change closes the session.
    pub(super) async fn change_user(&mut self, frame: Frame) -> Result<Flow, End> {
        let mut seq = frame.last_seq().wrapping_add(1);
        let payload = frame.into_payload();
        let Ok(request) = parse_change_user(&payload, self.identity.capabilities) else {
            return self
                .reply_error(seq, &ErrorPacket::malformed_packet())
                .await;
        };
        let name = String::from_utf8_lossy(request.user).into_owned();
        let user = self.proxy.user(&name);
        // The user's plugin, whatever the client named, as a server
        // switches it to its account's.
        let plugin = self.proxy.account_plugin(user.as_deref());
        let nonce = auth::nonce();
        let mut data = nonce.to_vec();
        data.push(0);
        let mut switch = Vec::new();
        AuthSwitchRequest::new(plugin.name().as_bytes(), data).serialize(&mut switch);
        self.client.send(seq, &switch).await?;
        let answer = self.client.read_frame().await.map_err(End::Client)?;
        seq = answer.last_seq().wrapping_add(1);
        let response = answer.into_payload();
        let accepted = authenticate(
            &self.proxy,
            &mut self.client,
            user.as_deref(),
            Some(plugin.name().as_bytes()),
            &nonce,
            &response,
            &mut seq,
        )
        .await
        .map_err(|_| End::Refused)?;
        let Some(user) = user.filter(|_| accepted) else {
            let denial = Denial {
                seq,
                user: name,
                used_password: !response.is_empty(),
            };
            // Boxed, as the delay's timer is large and rare.
            Box::pin(login::deny(
                &self.proxy,
                &mut self.client,
                &denial,
                "COM_CHANGE_USER",
            ))
            .await;
            return Err(End::Refused);
        };
        self.release_backends();
        self.statements.clear();
        self.status = StatusFlags::SERVER_STATUS_AUTOCOMMIT;
        self.routing = RoutingState::new(&self.proxy.config.routing);
        self.identity.user = user;
        self.identity.db =
            (!request.db.is_empty()).then(|| String::from_utf8_lossy(request.db).into_owned());
        if let Some(collation) = request.collation.and_then(|c| u8::try_from(c).ok()) {
            self.identity.collation = collation;
        }
        if request.attributes.is_some() {
            self.identity.attributes = request.attributes;
        }
        self.registration
            .set_user(self.identity.user.name.as_str().into());
        if self.identity.db.is_some() {
            let primary = self.primary_target();
            if let Err(error) = self.backend_for(primary, false).await {
                let _ = self.client.send_error(seq, &error).await;
                return Err(End::Refused);
            }
        }
        self.client.send(seq, &ok_payload(self.status, 0)).await?;
        Ok(Flow::Continue)
    }
}
