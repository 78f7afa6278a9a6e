//! The PaySys HTTPS client: a generic JSON client over one kept-alive TLS connection
//! (HTTP/1.1 keep-alive, or one HTTP/2 connection), with an optional client certificate
//! for mTLS. Nothing in it is specific to one API: it sends a method, a path and a JSON
//! body, and returns the status and the JSON answer.
//!
//! # Layout
//!
//! * [`ClientTls`] — the TLS configuration: the given CA as the only root (no system
//!   roots), an optional client certificate (the caller's identity, its principal at the
//!   vault), ring as the crypto provider.
//! * [`VaultConnection`] — one live connection; [`VaultConnection::call`] sends a JSON
//!   request and returns a [`VaultResponse`]: status, JSON body and the stable error code
//!   of an error answer.
//!
//! # Who uses it
//!
//! The gateway, for the vault (relay, token metadata, token removal) and for the acquirer
//! and the 3-D Secure directory server, through its connection pool; the vault's officer
//! commands (`operator`, `keys`, `audit`); the end-to-end tests and the benchmarks.
//!
//! It is the one crate the gateway and the vault both link, so wire types the two share
//! belong here: the gateway must not depend on the vault's crates, which can decrypt card
//! data. Answers from the vault never contain a card number, so neither does anything
//! here.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Client errors. None carries request bodies (which may hold card data).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A certificate or key file could not be read or parsed.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The base URL is not `https://host:port`.
    #[error("bad vault URL: {0}")]
    Url(String),
    /// TCP connect or TLS handshake failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The request failed on the wire (including a TLS alert from the server after it
    /// rejected our certificate).
    #[error("request: {0}")]
    Request(String),
    /// The response body is not JSON.
    #[error("response is not JSON: {0}")]
    Json(String),
}

/// HTTP version to speak over TLS (the vault offers both by ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

/// TLS settings for talking to the vault.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    version: HttpVersion,
}

fn read_pem(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| ClientError::Credentials(format!("{}: {e}", path.display())))
}

impl ClientTls {
    /// Trust only `ca` and present the certificate `cert` with `key` (PEM files).
    pub fn new(ca: &Path, identity: Option<(&Path, &Path)>, version: HttpVersion) -> Result<ClientTls, ClientError> {
        paysys_server::tls_files::install_crypto_provider();
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut read_pem(ca)?.as_slice()) {
            let cert = cert.map_err(|e| ClientError::Credentials(format!("{}: {e}", ca.display())))?;
            roots.add(cert).map_err(|e| ClientError::Credentials(e.to_string()))?;
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => {
                let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut read_pem(cert)?.as_slice())
                    .collect::<Result<_, _>>()
                    .map_err(|e| ClientError::Credentials(format!("{}: {e}", cert.display())))?;
                let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut read_pem(key)?.as_slice())
                    .map_err(|e| ClientError::Credentials(format!("{}: {e}", key.display())))?
                    .ok_or_else(|| ClientError::Credentials(format!("no key in {}", key.display())))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| ClientError::Credentials(e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match version {
            HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
            HttpVersion::Http2 => vec![b"h2".to_vec()],
        };
        Ok(ClientTls { config: Arc::new(config), version })
    }

    /// Open a connection to `base_url` (`https://host:port`).
    pub async fn connect(&self, base_url: &str) -> Result<VaultConnection, ClientError> {
        let hostport = base_url
            .strip_prefix("https://")
            .map(|rest| rest.trim_end_matches('/'))
            .ok_or_else(|| ClientError::Url(base_url.to_owned()))?;
        let host = hostport.rsplit_once(':').map(|(h, _)| h).unwrap_or(hostport);
        let server_name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(|e| ClientError::Url(format!("{base_url}: {e}")))?;
        let tcp = TcpStream::connect(hostport).await.map_err(|e| ClientError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(self.config.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let io = TokioIo::new(tls);
        let sender = match self.version {
            HttpVersion::Http1 => {
                let (sender, conn) = http1::handshake(io).await.map_err(|e| ClientError::Connect(e.to_string()))?;
                tokio::spawn(conn);
                Sender::Http1(sender)
            }
            HttpVersion::Http2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| ClientError::Connect(e.to_string()))?;
                tokio::spawn(conn);
                Sender::Http2(sender)
            }
        };
        Ok(VaultConnection { sender, authority: hostport.to_owned() })
    }
}

#[derive(Debug)]
enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// A response: status and body (JSON when the vault answered; raw bytes kept too).
#[derive(Debug, Clone)]
pub struct VaultResponse {
    pub status: u16,
    pub body: serde_json::Value,
    pub raw: Bytes,
}

impl VaultResponse {
    /// The stable error code of an error response, if any.
    pub fn error_code(&self) -> Option<&str> {
        self.body.get("error")?.get("code")?.as_str()
    }
}

/// One kept-alive connection to the vault.
#[derive(Debug)]
pub struct VaultConnection {
    sender: Sender,
    authority: String,
}

impl VaultConnection {
    /// Whether the connection is gone (the server closed it, say): not worth reusing.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    /// Send a JSON request (`body` already serialized, or `None`) and read the response.
    pub async fn call_raw(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<VaultResponse, ClientError> {
        let has_body = body.is_some();
        let mut builder = hyper::Request::builder().method(method).header("accept", "application/json");
        builder = match &self.sender {
            Sender::Http1(_) => builder.uri(path).header("host", &self.authority),
            Sender::Http2(_) => builder.uri(format!("https://{}{path}", self.authority)),
        };
        if has_body {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let response = match &mut self.sender {
            Sender::Http1(s) => {
                s.ready().await.map_err(|e| ClientError::Request(e.to_string()))?;
                s.send_request(request).await
            }
            Sender::Http2(s) => {
                s.ready().await.map_err(|e| ClientError::Request(e.to_string()))?;
                s.send_request(request).await
            }
        }
        .map_err(|e| ClientError::Request(describe(&e)))?;
        let status = response.status().as_u16();
        let raw = response.into_body().collect().await.map_err(|e| ClientError::Request(e.to_string()))?.to_bytes();
        let body = if raw.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&raw).map_err(|e| ClientError::Json(e.to_string()))?
        };
        Ok(VaultResponse { status, body, raw })
    }

    /// Send `body` as JSON.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<VaultResponse, ClientError> {
        let bytes = body.map(serde_json::to_vec).transpose().map_err(|e| ClientError::Request(e.to_string()))?;
        self.call_raw(method, path, bytes).await
    }
}

/// A hyper error with its cause chain (the TLS alert is in the source).
fn describe(e: &hyper::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
