//! The ACS's HTTP client: posts the RReq to the 3DS Server's `threeDSServerURL`, over
//! `http://` (the dev gateway listens in plain HTTP on loopback) or `https://` (rustls,
//! ring provider). One connection per request, HTTP/1.1: an RReq is sent once per
//! challenge, so there is nothing worth pooling.
//!
//! HTTPS servers are verified against the `--rreq-ca` bundle only (no system roots, as
//! the vault's relay does): without it, `https://` RReqs fail and are logged. The end-to-
//! end tests use the same client as a small browser stand-in.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a request got no answer. Never holds a request body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// Not an absolute `http://` or `https://` URL with a host.
    #[error("unsupported URL")]
    Url,
    /// No complete answer within the timeout.
    #[error("no answer in time")]
    Timeout,
    /// TCP connect, TLS handshake (certificate verification included) or the exchange failed.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The response body is larger than 1 MiB.
    #[error("response too large")]
    ResponseTooLarge,
}

/// An answer: status, headers, body.
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl OutboundResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP/1.1 client for `http://` and `https://` URLs.
#[derive(Clone)]
pub struct OutboundClient {
    tls: TlsConnector,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient").finish_non_exhaustive()
    }
}

impl OutboundClient {
    /// HTTPS servers must chain to a CA in the PEM bundle `ca` (none: `https://` fails).
    pub fn new(ca: Option<&Path>) -> anyhow::Result<OutboundClient> {
        use anyhow::Context as _;
        paysys_server::tls_files::install_crypto_provider();
        let mut roots = RootCertStore::empty();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.with_context(|| format!("parsing {}", ca.display()))?;
                roots.add(cert).with_context(|| format!("adding a CA from {}", ca.display()))?;
            }
            anyhow::ensure!(!roots.is_empty(), "no certificate in {}", ca.display());
        }
        let mut config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(OutboundClient { tls: TlsConnector::from(Arc::new(config)) })
    }

    /// `POST` `body` with `content_type` to `url`; the whole exchange within `timeout`.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<OutboundResponse, OutboundError> {
        self.send(hyper::Method::POST, url, Some(content_type), body, timeout).await
    }

    /// `GET` `url` within `timeout`.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<OutboundResponse, OutboundError> {
        self.send(hyper::Method::GET, url, None, Vec::new(), timeout).await
    }

    async fn send(
        &self,
        method: hyper::Method,
        url: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<OutboundResponse, OutboundError> {
        let uri: Uri = url.parse().map_err(|_| OutboundError::Url)?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(OutboundError::Url),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or(OutboundError::Url)?.to_owned();
        let authority = uri.authority().ok_or(OutboundError::Url)?.as_str().to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, HeaderValue::from_str(&authority).map_err(|_| OutboundError::Url)?)
            .header(USER_AGENT, "paysys-sandbox-acs");
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|_| OutboundError::Url)?;
        let exchange = async {
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(unreachable)?;
            let _ = tcp.set_nodelay(true);
            if https {
                let name = ServerName::try_from(host).map_err(|_| OutboundError::Url)?;
                let tls = self.tls.connect(name, tcp).await.map_err(unreachable)?;
                exchange(TokioIo::new(tls), request).await
            } else {
                exchange(TokioIo::new(tcp), request).await
            }
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| OutboundError::Timeout)?
    }
}

fn unreachable(e: impl std::fmt::Display) -> OutboundError {
    OutboundError::Unreachable(e.to_string())
}

/// One request on a fresh HTTP/1.1 connection over `io`.
async fn exchange<I>(io: I, request: hyper::Request<Full<Bytes>>) -> Result<OutboundResponse, OutboundError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(unreachable)?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(unreachable)?;
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            OutboundError::ResponseTooLarge
        } else {
            OutboundError::Unreachable(e.to_string())
        }
    })?;
    Ok(OutboundResponse { status, headers: parts.headers, body: body.to_bytes() })
}
