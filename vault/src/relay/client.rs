//! The relay's HTTPS client.
//!
//! One [`RelayClient`] per vault process, shared by every request: hyper-util's pooled
//! client keeps HTTP/1.1 connections (and their TLS sessions) alive per destination, so
//! a busy gateway costs one handshake per pooled connection, not one per payment.
//!
//! Destinations are verified against the `--relay-ca` bundle **only** (no system
//! roots): a destination is trusted because PaySys decided to trust it, not because
//! some public CA signed it.

use bytes::Buf;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

/// Idle pooled connections kept per destination.
const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// How long an idle pooled connection is kept: less than the 10 s after which a PaySys
/// server (the sandbox) closes an idle HTTP/1.1 connection, so a relay is not sent on a
/// connection the destination is closing at that moment.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// How the relay client is set up (`paysys-vault serve --relay-*`).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// PEM bundle of the CAs destinations' certificates must chain to.
    pub ca: PathBuf,
    /// Client certificate and key presented to destinations that ask for one.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Longest a relay may wait for its destination; also the default.
    pub timeout_max: Duration,
    /// Largest response body accepted from a destination.
    pub max_response_bytes: usize,
}

/// Why a relay got no usable answer. Messages never hold request or response bodies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// No complete answer within the timeout.
    #[error("the destination did not answer in time")]
    Timeout,
    /// TCP connect, TLS handshake (including certificate verification) or the exchange failed.
    #[error("the destination could not be reached: {0}")]
    Unreachable(String),
    /// The response body is larger than `--relay-max-response-bytes`.
    #[error("the destination's response is too large")]
    ResponseTooLarge,
}

/// The HTTP methods a relay may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RelayMethod {
    Post,
    Get,
}

impl From<paysys_policies::TemplateMethod> for RelayMethod {
    fn from(method: paysys_policies::TemplateMethod) -> Self {
        match method {
            paysys_policies::TemplateMethod::Get => RelayMethod::Get,
            paysys_policies::TemplateMethod::Post => RelayMethod::Post,
        }
    }
}

impl RelayMethod {
    fn as_hyper(self) -> hyper::Method {
        match self {
            RelayMethod::Post => hyper::Method::POST,
            RelayMethod::Get => hyper::Method::GET,
        }
    }
}

/// A destination's answer. The body may hold card data until it is masked, so it is
/// zeroized when dropped.
pub struct RelayResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RelayResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayResponse")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body", &format_args!("[{} bytes, REDACTED]", self.body.len()))
            .finish()
    }
}

/// A request body that holds card data: handed to hyper without copying into `Bytes`,
/// and zeroized when hyper drops it.
pub struct SecretBody {
    bytes: Zeroizing<Vec<u8>>,
    pos: usize,
}

impl SecretBody {
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> SecretBody {
        SecretBody { bytes, pos: 0 }
    }
}

impl std::fmt::Debug for SecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBody([{} bytes, REDACTED])", self.bytes.len())
    }
}

impl Buf for SecretBody {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn chunk(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn advance(&mut self, cnt: usize) {
        self.pos = self.pos.saturating_add(cnt).min(self.bytes.len());
    }
}

/// A TLS connection to a destination, as hyper-util's pool wants it.
struct DestinationStream(TokioIo<TlsStream<TcpStream>>);

impl hyper::rt::Read for DestinationStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for DestinationStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}

impl Connection for DestinationStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Opens TLS connections for the pool: TCP to the URI's host and port, then a rustls
/// handshake verifying the certificate for that host against the relay CA.
#[derive(Clone)]
struct DestinationConnector {
    tls: TlsConnector,
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<DestinationStream, io::Error>> + Send>>;

impl tower::Service<Uri> for DestinationConnector {
    type Response = DestinationStream;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
            let host = uri.host().ok_or_else(|| invalid("destination URL has no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host).map_err(|_| invalid("destination host is not a valid name"))?;
            let stream = tls.connect(name, tcp).await?;
            Ok(DestinationStream(TokioIo::new(stream)))
        })
    }
}

/// The relay's pooled HTTPS client.
pub struct RelayClient {
    client: Client<DestinationConnector, Full<SecretBody>>,
    timeout_max: Duration,
    max_response_bytes: usize,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient")
            .field("timeout_max", &self.timeout_max)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl RelayClient {
    /// Build the client: the relay CA is the only trust anchor, HTTP/1.1 only.
    pub fn new(config: &RelayConfig) -> anyhow::Result<RelayClient> {
        use anyhow::Context as _;
        use paysys_server::tls_files::{install_crypto_provider, read_certificates, read_private_key};
        install_crypto_provider();
        let mut roots = RootCertStore::empty();
        for ca in read_certificates(&config.ca)? {
            roots.add(ca).with_context(|| format!("adding a relay CA from {}", config.ca.display()))?;
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let mut tls = match &config.client_identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certificates(cert)?, read_private_key(key)?)
                .context("loading the relay client certificate")?,
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = DestinationConnector { tls: TlsConnector::from(Arc::new(tls)) };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(connector);
        Ok(RelayClient { client, timeout_max: config.timeout_max, max_response_bytes: config.max_response_bytes })
    }

    /// The timeout for a request asking for `requested_ms`: at most `--relay-timeout-max-ms`.
    pub fn timeout_for(&self, requested_ms: Option<u64>) -> Duration {
        requested_ms.map(Duration::from_millis).map_or(self.timeout_max, |t| t.min(self.timeout_max))
    }

    /// Send `body` (JSON, may hold card data) to `url` and read the whole answer, all
    /// within `timeout`.
    pub async fn send(
        &self,
        method: RelayMethod,
        url: &str,
        body: Option<Zeroizing<Vec<u8>>>,
        timeout: Duration,
    ) -> Result<RelayResponse, RelayError> {
        let mut request = hyper::Request::builder()
            .method(method.as_hyper())
            .uri(url)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static("paysys-vault-relay"));
        let has_body = body.is_some();
        if has_body {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let body = SecretBody::new(body.unwrap_or_default());
        let request = request
            .body(Full::new(body))
            .map_err(|_| RelayError::Unreachable("the destination URL is not valid".into()))?;
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(RelayError::Timeout),
        }
    }

    async fn exchange(&self, request: hyper::Request<Full<SecretBody>>) -> Result<RelayResponse, RelayError> {
        let response = self.client.request(request).await.map_err(|e| RelayError::Unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let declared =
            response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_response_bytes as u64) {
            return Err(RelayError::ResponseTooLarge);
        }
        let capacity = declared.map_or(8 * 1024, |len| usize::try_from(len).unwrap_or(0));
        let mut body = Zeroizing::new(Vec::with_capacity(capacity.min(self.max_response_bytes)));
        let mut incoming = response.into_body();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| RelayError::Unreachable(error_chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                if body.len() + data.len() > self.max_response_bytes {
                    return Err(RelayError::ResponseTooLarge);
                }
                // The answer may hold card data until it is masked.
                super::buffer::append(&mut body, &data, self.max_response_bytes);
            }
        }
        Ok(RelayResponse { status, content_type, body })
    }
}

/// An error and its sources on one line (for the log; never holds bodies).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
