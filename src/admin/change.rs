//! `POST /switchover` and `POST /failover`: a change runs in a task of its
//! own, and its steps are streamed to the caller as lines of text while it
//! goes, the last line beginning with `done:` or `failed:`. A change that
//! cannot start (one already runs, an unknown backend) is answered with
//! 409 or 404 and nothing runs. A caller that goes away does not stop a
//! change once it has started.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use tokio::sync::mpsc;

use crate::failover::{self, ChangeError, Kind, Progress};
use crate::server::Proxy;

/// The query string: `?to=db2`, or nothing for the best candidate.
#[derive(Debug, serde::Deserialize)]
pub struct Target {
    to: Option<String>,
}

pub async fn switchover(proxy: State<Arc<Proxy>>, target: Query<Target>) -> Response {
    start(proxy.0, Kind::Switchover, target.0.to)
}

pub async fn failover(proxy: State<Arc<Proxy>>, target: Query<Target>) -> Response {
    start(proxy.0, Kind::Failover, target.0.to)
}

fn start(proxy: Arc<Proxy>, kind: Kind, to: Option<String>) -> Response {
    let to = match to.map(|name| failover::backend_index(&proxy.config, &name)) {
        None => None,
        Some(Ok(index)) => Some(index),
        Some(Err(error)) => return (StatusCode::NOT_FOUND, format!("{error}\n")).into_response(),
    };
    if proxy.changes.busy() {
        let error = ChangeError::Busy;
        return (StatusCode::CONFLICT, format!("{error}\n")).into_response();
    }
    let (lines, body) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let progress = Progress::to(lines.clone());
        let last = match failover::change(&proxy, kind, to, &progress).await {
            Ok(summary) => format!("done: {summary}"),
            Err(error) => format!("failed: {error}"),
        };
        let _ = lines.send(last);
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::new(Lines(body)),
    )
        .into_response()
}

/// A response body of lines, sent as each arrives.
struct Lines(mpsc::UnboundedReceiver<String>);

impl http_body::Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|line| Ok(Frame::data(Bytes::from(line + "\n")))))
    }
}
