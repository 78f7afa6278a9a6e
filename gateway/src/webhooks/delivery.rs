//! One delivery attempt: a single HTTP/1.1 `POST` over a connection to the screened
//! address ([`Checked::addr`]; kept alive for the next attempt to that same address) — TLS verified against the Mozilla roots with
//! the URL's host as server name — within one deadline for everything (connect,
//! handshake, request, answer). Redirects are not followed (a `3xx` is a failure), no
//! proxy is used, the answer's body is read only up to [`EXCERPT_BYTES`].

use super::destination::Checked;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What is kept of a response body.
pub const EXCERPT_BYTES: usize = 512;
/// The `User-Agent` partners see.
pub const USER_AGENT: &str = "PaySys-Webhooks/1";

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The HTTP status, when one was read.
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    /// A stable word when the attempt failed without a status (or was never made).
    pub error: Option<String>,
    /// The start of the body, printable, digit runs that could be card numbers masked.
    pub excerpt: Option<String>,
}

impl AttemptOutcome {
    /// Only a `2xx` answer delivers.
    pub fn delivered(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }

    /// An attempt that was never made (the destination was refused, the secret would
    /// not open).
    pub fn not_attempted(error: &str) -> AttemptOutcome {
        AttemptOutcome { status_code: None, latency_ms: 0, error: Some(error.to_owned()), excerpt: None }
    }
}

/// The headers of one signed message.
#[derive(Debug, Clone)]
pub struct SignedMessage {
    pub webhook_id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: Bytes,
}

/// The TLS client configuration for endpoints: the Mozilla root store, no client
/// certificate, HTTP/1.1.
pub fn client_tls() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| rustls::ClientConfig::builder());
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// How long a kept-alive connection may sit idle and still be reused.
const IDLE_LIMIT: Duration = Duration::from_secs(20);
/// Idle connections kept per destination.
const MAX_IDLE_PER_DESTINATION: usize = 16;

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
/// The exact address connected to, the host name, TLS.
type PoolKey = (SocketAddr, String, bool);

/// Kept-alive HTTP/1.1 connections, by the exact address connected to, the host name
/// and TLS: a connection is only ever reused for an attempt whose screening returned
/// that very address, so reuse never bypasses the check.
#[derive(Default)]
pub struct ConnectionPool {
    idle: std::sync::Mutex<HashMap<PoolKey, Vec<(Sender, Instant)>>>,
}

impl std::fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionPool")
    }
}

impl ConnectionPool {
    fn take(&self, key: &PoolKey) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        let senders = idle.get_mut(key)?;
        while let Some((sender, since)) = senders.pop() {
            if since.elapsed() < IDLE_LIMIT && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, key: PoolKey, sender: Sender) {
        if let Ok(mut idle) = self.idle.lock() {
            let senders = idle.entry(key).or_default();
            senders.retain(|(s, since)| since.elapsed() < IDLE_LIMIT && !s.is_closed());
            if senders.len() < MAX_IDLE_PER_DESTINATION {
                senders.push((sender, Instant::now()));
            }
        }
    }
}

/// Send `message` to `to` within `timeout`, on a kept-alive connection to the same
/// address when one is idle.
pub async fn send(
    to: &Checked,
    message: &SignedMessage,
    tls: &Arc<rustls::ClientConfig>,
    pool: &ConnectionPool,
    timeout: Duration,
) -> AttemptOutcome {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, exchange(to, message, tls, pool)).await;
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match result {
        Ok(Ok((status, body))) => AttemptOutcome {
            status_code: Some(status),
            latency_ms,
            error: None,
            excerpt: Some(excerpt(&body)).filter(|e| !e.is_empty()),
        },
        Ok(Err(error)) => AttemptOutcome { status_code: None, latency_ms, error: Some(error), excerpt: None },
        Err(_) => AttemptOutcome { status_code: None, latency_ms, error: Some("timeout".into()), excerpt: None },
    }
}

/// Send on an idle connection to the checked address if there is one (once more on a
/// fresh one if that fails without an answer: the server may have closed it; a repeat
/// is harmless, delivery is at least once), else on a new connection.
async fn exchange(
    to: &Checked,
    message: &SignedMessage,
    tls: &Arc<rustls::ClientConfig>,
    pool: &ConnectionPool,
) -> Result<(u16, Vec<u8>), String> {
    let key = (to.addr, to.host.clone(), to.tls);
    if let Some(sender) = pool.take(&key) {
        if let Ok((status, body, reusable)) = request(sender, to, message).await {
            if let Some(sender) = reusable {
                pool.put(key, sender);
            }
            return Ok((status, body));
        }
    }
    let sender = connect(to, tls).await?;
    let (status, body, reusable) = request(sender, to, message).await?;
    if let Some(sender) = reusable {
        pool.put(key, sender);
    }
    Ok((status, body))
}

/// A new connection to exactly `to.addr` (TLS with the URL's host as server name).
async fn connect(to: &Checked, tls: &Arc<rustls::ClientConfig>) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(to.addr).await.map_err(|_| "connect".to_owned())?;
    let _ = tcp.set_nodelay(true);
    if to.tls {
        let name = rustls::pki_types::ServerName::try_from(to.host.clone()).map_err(|_| "tls_name".to_owned())?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {}", tls_word(&e)))?;
        handshake(TokioIo::new(stream)).await
    } else {
        handshake(TokioIo::new(tcp)).await
    }
}

fn tls_word(e: &std::io::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("certificate") || text.contains("Certificate") {
        "certificate"
    } else {
        "handshake"
    }
}

async fn handshake<S>(io: S) -> Result<Sender, String>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io).await.map_err(|_| "http".to_owned())?;
    // Runs until the connection closes (the sender dropped, or the server hung up).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One request; the status, the start of the body, and the sender back when the
/// connection can carry another request (the body was read to its end).
async fn request(
    mut sender: Sender,
    to: &Checked,
    message: &SignedMessage,
) -> Result<(u16, Vec<u8>, Option<Sender>), String> {
    sender.ready().await.map_err(|_| "connection_closed".to_owned())?;
    let request = hyper::Request::post(to.target())
        .header(hyper::header::HOST, to.host_header())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .header("webhook-id", &message.webhook_id)
        .header("webhook-timestamp", message.timestamp.to_string())
        .header("webhook-signature", &message.signature)
        .body(Full::new(message.body.clone()))
        .map_err(|_| "request".to_owned())?;
    let response = sender.send_request(request).await.map_err(|_| "no_response".to_owned())?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut kept = Vec::new();
    let mut ended = false;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = EXCERPT_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
                // A long answer is not read to its end: the connection is dropped.
                if kept.len() >= EXCERPT_BYTES {
                    break;
                }
            }
            Some(Err(_)) => break,
            None => {
                ended = true;
                break;
            }
        }
    }
    Ok((status, kept, ended.then_some(sender)))
}

/// The stored excerpt: UTF-8 (lossy), control characters as spaces, and every run of
/// 12 or more digits masked, so a partner's echo of a card number is never kept.
pub fn excerpt(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    paysys_cardnum::redact_digit_runs(text.trim(), 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_printable_and_mask_long_digit_runs() {
        let e = excerpt(b"ok\r\n\x00card 4242424242424242 order 12345");
        assert!(!e.contains("4242424242424242"), "{e}");
        assert!(e.contains("order 12345"), "{e}");
        assert!(!e.chars().any(char::is_control));
    }

    #[test]
    fn only_2xx_delivers() {
        let at = |s| AttemptOutcome { status_code: Some(s), latency_ms: 1, error: None, excerpt: None };
        assert!(at(200).delivered() && at(204).delivered());
        assert!(!at(301).delivered() && !at(500).delivered() && !at(199).delivered());
        assert!(!AttemptOutcome::not_attempted("destination_refused").delivered());
    }
}
