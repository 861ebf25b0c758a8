//! The COM_STMT_* commands: statement ids are translated between the
//! client's (rwsplit's) and each backend's; a statement is prepared on a
//! backend the first time it runs there; parameter types are added to an
//! execution that relies on types the backend has not seen.

use super::statements::Statement;
use super::{End, Flow, Session};
use crate::protocol::command::{self, com, set_statement_id, wants_cursor};
use crate::protocol::messages::ErrorPacket;
use crate::protocol::packet::Frame;
use crate::protocol::response::Expect;

impl Session {
    pub(super) async fn prepare(&mut self, frame: Frame, sql: Vec<u8>) -> Result<Flow, End> {
        let target = self.proxy.primary();
        let seq = frame.last_seq().wrapping_add(1);
        if let Err(error) = self.ensure_backend(target).await {
            return self.reply_error(seq, &error).await;
        }
        let id = self.statements.allocate();
        let relayed = self
            .relay_to(target, frame.as_bytes(), Expect::Prepare, Some(id))
            .await?;
        if let Some(ok) = relayed.prepared {
            let statement = Statement {
                sql,
                params: ok.params,
                columns: ok.columns,
                types: None,
                on: vec![(target, ok.statement_id)],
            };
            self.statements.insert(id, statement);
        }
        Ok(Flow::Continue)
    }

    pub(super) async fn execute(
        &mut self,
        mut frame: Frame,
        statement: u32,
        flags: u8,
    ) -> Result<Flow, End> {
        let seq = frame.last_seq().wrapping_add(1);
        let Some(id) = self.statements.resolve(statement) else {
            let error = ErrorPacket::unknown_statement(statement, "mysqld_stmt_execute");
            return self.reply_error(seq, &error).await;
        };
        let target = self.proxy.primary();
        let (backend_id, fresh) = match self.prepared_on(id, target).await? {
            Ok(prepared) => prepared,
            Err(error) => return self.reply_error(seq, &error).await,
        };
        let statement = self
            .statements
            .get_mut(id)
            .ok_or(End::Violation("internal error: statement vanished"))?;
        let layout = command::execute_layout(frame.first_payload(), statement.params);
        if let Some((start, end)) = layout.and_then(|l| l.types) {
            statement.types = Some(frame.first_payload()[start..end].to_vec());
        }
        // The client may rely on types sent in an earlier execution, which a
        // backend that just prepared the statement has not seen: add them.
        let missing_types = match (fresh, layout, &statement.types) {
            (true, Some(layout), Some(types)) if layout.types.is_none() => {
                Some((layout, types.clone()))
            }
            _ => None,
        };
        let frame = match missing_types {
            Some((layout, types)) => {
                let mut payload = command::with_types(&frame.into_payload(), layout, &types);
                set_statement_id(&mut payload, backend_id);
                Frame::from_payload(0, &payload)
            }
            None => {
                set_statement_id(frame.first_payload_mut(), backend_id);
                frame
            }
        };
        let expect = Expect::Results {
            cursor: wants_cursor(flags),
        };
        self.relay_to(target, frame.as_bytes(), expect, None)
            .await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn fetch(&mut self, frame: Frame, statement: u32) -> Result<Flow, End> {
        self.statement_command(frame, statement, Expect::Fetch, "mysqld_stmt_fetch")
            .await
    }

    pub(super) async fn reset_statement(
        &mut self,
        frame: Frame,
        statement: u32,
    ) -> Result<Flow, End> {
        self.statement_command(frame, statement, Expect::Single, "mysqld_stmt_reset")
            .await
    }

    /// COM_STMT_FETCH / COM_STMT_RESET: relayed to the backend holding the
    /// statement.
    async fn statement_command(
        &mut self,
        mut frame: Frame,
        statement: u32,
        expect: Expect,
        name: &str,
    ) -> Result<Flow, End> {
        let seq = frame.last_seq().wrapping_add(1);
        let target = self.proxy.primary();
        let backend_id = self
            .statements
            .resolve(statement)
            .and_then(|id| self.statements.get(id))
            .and_then(|s| s.id_on(target));
        let Some(backend_id) = backend_id.filter(|_| self.backends[target].is_some()) else {
            return self
                .reply_error(seq, &ErrorPacket::unknown_statement(statement, name))
                .await;
        };
        set_statement_id(frame.first_payload_mut(), backend_id);
        self.relay_to(target, frame.as_bytes(), expect, None)
            .await?;
        Ok(Flow::Continue)
    }

    /// COM_STMT_SEND_LONG_DATA has no response; an unknown statement is
    /// reported by the server at the next execution, so it is dropped here.
    pub(super) async fn send_long_data(
        &mut self,
        mut frame: Frame,
        statement: u32,
    ) -> Result<Flow, End> {
        let target = self.proxy.primary();
        let Some(id) = self.statements.resolve(statement) else {
            return Ok(Flow::Continue);
        };
        let (backend_id, _) = match self.prepared_on(id, target).await? {
            Ok(prepared) => prepared,
            Err(_) => return Ok(Flow::Continue),
        };
        set_statement_id(frame.first_payload_mut(), backend_id);
        self.send_only(target, frame.as_bytes()).await?;
        Ok(Flow::Continue)
    }

    /// COM_STMT_CLOSE has no response: the statement is closed on every
    /// backend that has it.
    pub(super) async fn close_statement(
        &mut self,
        frame: Frame,
        statement: u32,
    ) -> Result<Flow, End> {
        let Some(removed) = self
            .statements
            .resolve(statement)
            .and_then(|id| self.statements.remove(id))
        else {
            return Ok(Flow::Continue);
        };
        let mut payload = frame.first_payload().to_vec();
        for (backend, backend_id) in removed.on {
            if self.backends[backend].is_some() {
                set_statement_id(&mut payload, backend_id);
                let frame = Frame::from_payload(0, &payload);
                self.send_only(backend, frame.as_bytes()).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// The statement's id on `target`, preparing it there first if needed;
    /// the flag says whether it was just prepared.
    async fn prepared_on(
        &mut self,
        id: u32,
        target: usize,
    ) -> Result<Result<(u32, bool), ErrorPacket>, End> {
        let Some(statement) = self.statements.get(id) else {
            return Err(End::Violation("internal error: statement vanished"));
        };
        if let (Some(backend_id), true) = (statement.id_on(target), self.backends[target].is_some())
        {
            return Ok(Ok((backend_id, false)));
        }
        let mut request = vec![com::STMT_PREPARE];
        request.extend_from_slice(&statement.sql);
        if let Err(error) = self.ensure_backend(target).await {
            return Ok(Err(error));
        }
        let Some(backend) = self.backends[target].as_mut() else {
            return Err(End::Violation("internal error: no backend connection"));
        };
        match backend.run(&request, Expect::Prepare).await {
            Ok((_, mut scanner)) => match scanner.take_prepare_ok() {
                Some(ok) => {
                    if let Some(statement) = self.statements.get_mut(id) {
                        statement.on.push((target, ok.statement_id));
                    }
                    Ok(Ok((ok.statement_id, true)))
                }
                None => Err(End::Violation("internal error: PREPARE_OK not seen")),
            },
            Err(crate::backend::conn::BackendError::Refused(error)) => Ok(Err(error)),
            Err(error) => {
                let name = self.proxy.endpoints[target].name.clone();
                self.discard(target);
                Err(End::BackendLost {
                    backend: name,
                    error: error.to_string(),
                })
            }
        }
    }

    /// Sends packets that get no response.
    async fn send_only(&mut self, target: usize, request: &[u8]) -> Result<(), End> {
        let Some(backend) = self.backends[target].as_mut() else {
            return Ok(());
        };
        if let Err(error) = super::relay::send_only(backend, request).await {
            let name = self.proxy.endpoints[target].name.clone();
            self.discard(target);
            return Err(End::BackendLost {
                backend: name,
                error: error.to_string(),
            });
        }
        Ok(())
    }
}
