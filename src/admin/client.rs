//! The CLI's side of the admin API: plain HTTP/1 over hyper.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, Uri};
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
    let address = address_of(base)?;
    let request = async {
        let response = send(Method::GET, base, path, token).await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    crate::timer::timeout(timeout, request)
        .await
        .map_err(|_| AdminClientError::Timeout(address, timeout))?
}

/// `POST {base}{path}`, handing each piece of the body to `each` as it
/// arrives: for answers that tell progress while they last. Only the
/// request and the answer's head are bounded by `timeout`.
pub async fn post_streaming(
    base: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
    mut each: impl FnMut(&str),
) -> Result<(), AdminClientError> {
    let address = address_of(base)?;
    let response = crate::timer::timeout(timeout, send(Method::POST, base, path, token))
        .await
        .map_err(|_| AdminClientError::Timeout(address, timeout))??;
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            each(&String::from_utf8_lossy(&data));
        }
    }
    Ok(())
}

/// `base`'s `host:port`, for connecting and for errors.
fn address_of(base: &str) -> Result<String, AdminClientError> {
    let uri = uri_of(base, "")?;
    let authority = uri
        .authority()
        .ok_or_else(|| AdminClientError::BadUrl(base.to_owned()))?;
    Ok(format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    ))
}

fn uri_of(base: &str, path: &str) -> Result<Uri, AdminClientError> {
    let with_scheme = if base.contains("://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let uri: Uri = format!("{}{path}", with_scheme.trim_end_matches('/'))
        .parse()
        .map_err(|_| AdminClientError::BadUrl(base.to_owned()))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(AdminClientError::BadUrl(base.to_owned()));
    }
    Ok(uri)
}

/// Sends one request on a connection of its own; the answer once its head
/// has come, an error for any status but success (with the body, which
/// says why).
async fn send(
    method: Method,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> Result<Response<Incoming>, AdminClientError> {
    let uri = uri_of(base, path)?;
    let address = address_of(base)?;
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|source| AdminClientError::Connect {
            address: address.clone(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    // The connection ends with the response's body or with the caller.
    tokio::spawn(conn);
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(hyper::header::HOST, host);
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|_| AdminClientError::BadUrl(base.to_owned()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.into_body().collect().await?.to_bytes();
    Err(AdminClientError::Status {
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body).trim_end().to_owned(),
    })
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
