//! The CLI's side of the admin API: one plain-HTTP GET over hyper.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;

/// Why a request to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("`{0}` is not an admin URL; expected something like http://127.0.0.1:6034")]
    BadUrl(String),
    #[error(
        "cannot reach the admin API at {address}: {source}. Is rwsplit running, and is \
         admin.address this one?"
    )]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin API at {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("HTTP error talking to the admin API: {0}")]
    Http(#[from] hyper::Error),
    #[error("the admin API answered {status}: {body}")]
    Status { status: u16, body: String },
}

/// The body of `GET {base}{path}`, with a bearer token when given.
pub async fn get(
    base: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<String, AdminClientError> {
    let with_scheme = if base.contains("://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let uri: Uri = format!("{}{path}", with_scheme.trim_end_matches('/'))
        .parse()
        .map_err(|_| AdminClientError::BadUrl(base.to_owned()))?;
    if uri.scheme_str() != Some("http") {
        return Err(AdminClientError::BadUrl(base.to_owned()));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| AdminClientError::BadUrl(base.to_owned()))?
        .clone();
    let address = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let request = async {
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|source| AdminClientError::Connect {
                address: address.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        let connection = tokio::spawn(conn);
        let mut request = Request::get(uri.clone()).header(hyper::header::HOST, authority.as_str());
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|_| AdminClientError::BadUrl(base.to_owned()))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        connection.abort();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            Ok(body)
        } else {
            Err(AdminClientError::Status {
                status: status.as_u16(),
                body: body.trim_end().to_owned(),
            })
        }
    };
    crate::timer::timeout(timeout, request)
        .await
        .map_err(|_| AdminClientError::Timeout(address.clone(), timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_urls_are_named() {
        for bad in ["https://127.0.0.1:6034", "ftp://x", "http://"] {
            let error = get(bad, "/status", None, Duration::from_secs(1))
                .await
                .unwrap_err();
            assert!(
                matches!(error, AdminClientError::BadUrl(_)),
                "{bad}: {error}"
            );
        }
    }
}
