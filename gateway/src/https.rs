//! A small pool of kept-alive HTTPS connections to one service (the vault over mTLS, or
//! the acquirer), built on `paysys-vault-client`'s connection. Every call has a deadline;
//! a call whose answer was not seen is reported as *uncertain*, never silently retried,
//! so the caller can resolve it the safe way (status inquiry, idempotent reference).

use paysys_vault_client::{ClientTls, VaultConnection, VaultResponse};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long connecting (TCP + TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per pool.
const MAX_IDLE: usize = 64;
/// How long a connection may sit idle in the pool and still be reused. PaySys servers
/// close an HTTP/1.1 connection after 10 s without a request (their header-read
/// timeout, `paysys_server::limits::HEADER_READ_TIMEOUT`); reusing one just as the
/// server closes it would make a call *uncertain*, so the pool lets go well before.
const POOL_IDLE_LIMIT: Duration = Duration::from_secs(4);

/// Why a call has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Nothing reached the service (connect or handshake failed).
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request may have reached the service, but no answer was seen in time.
    #[error("outcome unknown: {0}")]
    Uncertain(String),
}

/// Connections to one `https://host:port`.
#[derive(Debug)]
pub struct HttpsPool {
    tls: ClientTls,
    base_url: String,
    /// Idle connections, each with when it became idle.
    idle: Mutex<Vec<(VaultConnection, Instant)>>,
}

impl HttpsPool {
    pub fn new(tls: ClientTls, base_url: &str) -> HttpsPool {
        HttpsPool { tls, base_url: base_url.trim_end_matches('/').to_owned(), idle: Mutex::new(Vec::new()) }
    }

    async fn connection(&self) -> Result<(VaultConnection, bool), CallError> {
        {
            let mut idle = self.idle.lock().await;
            // The newest are at the end: once one is too old, so are all before it.
            while let Some((conn, since)) = idle.pop() {
                if since.elapsed() >= POOL_IDLE_LIMIT {
                    idle.clear();
                } else if !conn.is_closed() {
                    return Ok((conn, true));
                }
            }
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(&self.base_url)).await {
            Ok(Ok(conn)) => Ok((conn, false)),
            Ok(Err(e)) => Err(CallError::NotSent(e.to_string())),
            Err(_) => Err(CallError::NotSent("connect timed out".into())),
        }
    }

    /// Send `body` as JSON and read the answer within `timeout`. When `resend_safe`
    /// (the request is idempotent at the service), a failure on a reused connection that
    /// the server may have closed is retried once on a fresh one.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
        resend_safe: bool,
    ) -> Result<VaultResponse, CallError> {
        let bytes = match body.map(serde_json::to_vec).transpose() {
            Ok(b) => b,
            Err(e) => return Err(CallError::NotSent(e.to_string())),
        };
        let mut attempts = if resend_safe { 2 } else { 1 };
        loop {
            attempts -= 1;
            let (mut conn, reused) = self.connection().await?;
            match tokio::time::timeout(timeout, conn.call_raw(method, path, bytes.clone())).await {
                Ok(Ok(response)) => {
                    let mut idle = self.idle.lock().await;
                    if idle.len() < MAX_IDLE {
                        idle.push((conn, Instant::now()));
                    }
                    return Ok(response);
                }
                Ok(Err(e)) if reused && attempts > 0 => {
                    tracing::debug!(error = %e, "reused connection failed; retrying on a fresh one");
                    continue;
                }
                Ok(Err(e)) => return Err(CallError::Uncertain(e.to_string())),
                Err(_) => return Err(CallError::Uncertain(format!("no answer within {} ms", timeout.as_millis()))),
            }
        }
    }
}
