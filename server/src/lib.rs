//! The skeleton the vault, the gateway and the sandbox share: how a PaySys service
//! takes a connection (the accept loop below), and the start-up and request plumbing
//! that would otherwise be copied into each (TLS files, logging, shutdown, the clock,
//! JSON bodies).
//!
//! The accept loop:
//!
//! * TLS when a [`ServerConfig`] is given (rustls checks the client certificate when
//!   the configuration asks for one), plain HTTP otherwise (the gateway behind a
//!   TLS-terminating proxy, tests). A client gets [`HANDSHAKE_TIMEOUT`] to finish the
//!   handshake.
//! * `admit` then sees the client's first certificate (`None` without TLS or without
//!   one) and either closes the connection or returns the value every request of the
//!   connection carries as an extension (the vault's principal).
//! * HTTP/1.1 or HTTP/2 by ALPN into the router, under the [`TransportLimits`]: a
//!   deadline for each request head, one for each whole request, an idle limit, and a
//!   cap on connections served at once. A failed `accept` (out of file descriptors,
//!   say) backs off instead of spinning; on `shutdown` the loop stops and open
//!   connections finish on their own tasks.
//! * With a [`ReloadableCrlVerifier`] ([`ServeOptions::client_certificates`]), each
//!   open connection re-checks its client certificate whenever the CRL is reloaded and
//!   closes (after the request in flight) once the certificate is revoked.
//!
//! # Layout
//!
//! * `lib.rs` — [`serve`] / [`serve_with`]: the accept loop and one connection's life.
//! * [`limits`] — [`TransportLimits`], their documented defaults and the `serve` flags.
//! * [`client_auth`] — [`ReloadableCrlVerifier`]: client CA + CRL, reloaded on change or
//!   `SIGHUP`; [`client_auth::mtls_server_config`].
//! * [`tls_files`] — the ring crypto provider; a certificate chain and a private key
//!   read from PEM files.
//! * [`logging`] — `tracing` to stderr under `PAYSYS_LOG`.
//! * [`shutdown`] — the Ctrl-C / SIGTERM future every `serve` stops on.
//! * [`clock`] — Unix milliseconds and RFC 3339, as records and answers carry time.
//! * [`json_body`] — a JSON request body read under the service's own error codes,
//!   card numbers redacted from parser messages, the raw body wiped.

pub mod client_auth;
pub mod clock;
pub mod json_body;
pub mod limits;
pub mod logging;
pub mod rate_limit;
pub mod shutdown;
pub mod tls_files;

pub use client_auth::ReloadableCrlVerifier;
pub use limits::{TransportFlags, TransportLimits};

use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the loop waits after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// An `admit` for services that take every connection the TLS layer let through.
pub fn admit_all(_client_certificate: Option<&CertificateDer<'_>>) -> Option<()> {
    Some(())
}

/// How [`serve_with`] treats connections beyond TLS and admission.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Timeouts and the connection cap.
    pub limits: TransportLimits,
    /// The verifier inside the TLS configuration, when it reloads a CRL: open
    /// connections are closed when their certificate becomes revoked.
    pub client_certificates: Option<Arc<ReloadableCrlVerifier>>,
}

/// Serve `app` on `listener` until `shutdown` completes with the default
/// [`ServeOptions`] (see [`serve_with`]).
pub async fn serve<E, A>(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
    admit: A,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    E: Clone + Send + Sync + 'static,
    A: Fn(Option<&CertificateDer<'_>>) -> Option<E> + Clone + Send + Sync + 'static,
{
    serve_with(listener, tls, app, admit, ServeOptions::default(), shutdown).await
}

/// Serve `app` on `listener` until `shutdown` completes: over TLS when `tls` is given,
/// each connection admitted by `admit`, under `options` (see the module documentation).
pub async fn serve_with<E, A>(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
    admit: A,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    E: Clone + Send + Sync + 'static,
    A: Fn(Option<&CertificateDer<'_>>) -> Option<E> + Clone + Send + Sync + 'static,
{
    let acceptor = tls.map(TlsAcceptor::from);
    let limits = options.limits;
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut at_capacity = false;
    tokio::pin!(shutdown);
    loop {
        // Over the cap we stop accepting (see `TransportLimits::max_connections`).
        if slots.available_permits() == 0 && !at_capacity {
            tracing::warn!(max_connections = limits.max_connections, "connection limit reached; new connections wait");
        }
        at_capacity = slots.available_permits() == 0;
        let slot = tokio::select! {
            () = &mut shutdown => return Ok(()),
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return Ok(()),
            },
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let admit = admit.clone();
        let client_certificates = options.client_certificates.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                if let Some(extension) = admit(None) {
                    serve_connection(tcp, peer, app, extension, limits, None).await;
                }
                return;
            };
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let chain = stream.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
            let Some(extension) = admit(chain.first()) else {
                tracing::info!(%peer, "client certificate not admitted; closing");
                return;
            };
            let recheck = match client_certificates {
                Some(verifier) if !chain.is_empty() => Some(Recheck { verifier, chain }),
                _ => None,
            };
            serve_connection(stream, peer, app, extension, limits, recheck).await;
        });
    }
}

/// A client certificate chain to verify again whenever the CRL changes.
struct Recheck {
    verifier: Arc<ReloadableCrlVerifier>,
    chain: Vec<CertificateDer<'static>>,
}

impl Recheck {
    /// Completes once the chain no longer verifies after a CRL reload.
    async fn revoked(self) {
        let mut reloads = self.verifier.subscribe();
        // A reload between the handshake and the subscription above would go unseen.
        if !self.verifier.still_trusted(&self.chain) {
            return;
        }
        while reloads.changed().await.is_ok() {
            if !self.verifier.still_trusted(&self.chain) {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

/// Requests in flight on one connection, and since when it has had none.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    changed: Notify,
}

/// Held while a request is in flight.
struct InFlight(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            changed: Notify::new(),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// Completes once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            // Registered before looking, so a change in between is not missed.
            let changed = self.changed.notified();
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                changed.await;
                continue;
            }
            let deadline = *self.idle_since.lock().unwrap_or_else(PoisonError::into_inner) + timeout;
            if deadline <= Instant::now() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = changed => {}
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// The answer to a request that outlived [`TransportLimits::request_timeout`]: the
/// shape of the vault's errors, a stable code, and the connection closed after it.
fn request_timeout_response() -> Response {
    let body = axum::Json(serde_json::json!({
        "error": {"code": "request_timeout", "message": "the request was not completed in time"}
    }));
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::CONNECTION, "close")], body).into_response()
}

/// The address of the connection a request came on (a request extension), for limits
/// per client address. No proxy header is trusted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// HTTP/1.1 or HTTP/2 on one connection, every request carrying `extension`, until the
/// client closes it, a limit closes it, or (with `recheck`) its certificate is revoked.
async fn serve_connection<S, E>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    extension: E,
    limits: TransportLimits,
    recheck: Option<Recheck>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: Clone + Send + Sync + 'static,
{
    let activity = Activity::new();
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(extension.clone());
        req.extensions_mut().insert(PeerAddr(peer));
        let in_flight = requests.begin();
        let app = app.clone();
        async move {
            let _in_flight = in_flight;
            match tokio::time::timeout(limits.request_timeout, app.oneshot(req)).await {
                Ok(answered) => answered,
                Err(_) => Ok(request_timeout_response()),
            }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits::HTTP2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(limits::HTTP2_KEEP_ALIVE_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let revoked = async {
        match recheck {
            Some(recheck) => recheck.revoked().await,
            None => std::future::pending().await,
        }
    };
    let why = tokio::select! {
        served = connection.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        () = activity.idle_for(limits.idle_timeout) => "idle timeout",
        () = revoked => "client certificate revoked",
    };
    tracing::info!(%peer, reason = why, "closing the connection");
    // HTTP/1.1 closes after the response in flight; HTTP/2 sends GOAWAY and lets open
    // streams finish. Each request is bounded by the request timeout, so is this wait.
    connection.as_mut().graceful_shutdown();
    if tokio::time::timeout(limits.request_timeout, connection).await.is_err() {
        tracing::debug!(%peer, "connection did not close in time; dropping it");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::routing::get;
    use axum::Extension;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A plain-HTTP server whose connections `admit` decides on; its one route answers
    /// with the connection's extension, `/slow` after five seconds.
    async fn start_with(
        admit: fn(Option<&CertificateDer<'_>>) -> Option<&'static str>,
        limits: TransportLimits,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|Extension(who): Extension<&'static str>| async move { who })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        let options = ServeOptions { limits, client_certificates: None };
        tokio::spawn(serve_with(listener, None, app, admit, options, std::future::pending()));
        addr
    }

    async fn start(admit: fn(Option<&CertificateDer<'_>>) -> Option<&'static str>) -> SocketAddr {
        start_with(admit, TransportLimits::default()).await
    }

    /// Only the header-read timeout short: what closes a connection is that timeout.
    fn header_timeout_only() -> TransportLimits {
        TransportLimits { header_read_timeout: Duration::from_millis(400), ..TransportLimits::default() }
    }

    fn short_limits() -> TransportLimits {
        TransportLimits {
            header_read_timeout: Duration::from_millis(400),
            request_timeout: Duration::from_millis(400),
            idle_timeout: Duration::from_millis(400),
            max_connections: 16,
        }
    }

    async fn get_root(addr: SocketAddr) -> String {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // A closed connection may reset the write or the read: then nothing was answered.
        let _ = tcp.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").await;
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer).await;
        answer
    }

    /// Read until the server closes `tcp`; what it sent and how long that took. Fails the
    /// test if the connection is still open after `at_most`.
    async fn closed_within(tcp: &mut TcpStream, at_most: Duration) -> (String, Duration) {
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(at_most, tcp.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "still open after {at_most:?}");
        (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
    }

    #[tokio::test]
    async fn every_request_of_an_admitted_connection_carries_its_extension() {
        let addr = start(|cert| cert.is_none().then_some("plain client")).await;
        let answer = get_root(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("plain client"), "{answer}");
    }

    #[tokio::test]
    async fn every_request_carries_the_clients_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/", get(|Extension(PeerAddr(peer)): Extension<PeerAddr>| async move { peer.ip().to_string() }));
        tokio::spawn(serve(listener, None, app, admit_all, std::future::pending()));
        let answer = get_root(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("127.0.0.1"), "{answer}");
    }

    #[tokio::test]
    async fn a_connection_not_admitted_is_closed_before_any_request_is_read() {
        let addr = start(|_| None).await;
        assert_eq!(get_root(addr).await, "", "no answer at all");
    }

    #[tokio::test]
    async fn a_connection_that_never_finishes_its_headers_is_closed_after_the_header_timeout() {
        let addr = start_with(|_| Some("x"), header_timeout_only()).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        silent.write_all(b"GET / HTTP/1.1\r\nhost: test\r\n").await.unwrap();
        let (answer, took) = closed_within(&mut silent, Duration::from_secs(3)).await;
        assert!(took >= Duration::from_millis(300), "closed too early: {took:?}");
        assert!(!answer.contains("200 OK"), "{answer}");
    }

    #[tokio::test]
    async fn trickling_header_bytes_does_not_extend_the_header_timeout() {
        let addr = start_with(|_| Some("x"), header_timeout_only()).await;
        let mut trickle = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let header = b"GET / HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in header {
            if trickle.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), trickle.read_to_end(&mut rest)).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(2_000), "closed only after {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_kept_alive_http1_connection_is_closed_when_idle_by_the_header_timeout() {
        let addr = start_with(|_| Some("kept"), header_timeout_only()).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
        let (answer, took) = closed_within(&mut tcp, Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("kept"), "{answer}");
        assert!(took >= Duration::from_millis(300), "closed too early: {took:?}");
    }

    #[tokio::test]
    async fn an_idle_http2_connection_is_closed() {
        let limits = TransportLimits { header_read_timeout: Duration::from_secs(30), ..short_limits() };
        let addr = start_with(|_| Some("h2"), limits).await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
        let connection = tokio::spawn(connection);
        let request = hyper::Request::get("http://test/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(3), connection).await.unwrap().unwrap().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300), "closed too early: {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_request_over_the_request_timeout_is_answered_503() {
        let addr = start_with(|_| Some("x"), short_limits()).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
        let (answer, took) = closed_within(&mut tcp, Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn over_the_connection_cap_a_client_waits_for_a_free_slot() {
        let limits = TransportLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ..short_limits()
        };
        let addr = start_with(|_| Some("served"), limits).await;
        let holder = TcpStream::connect(addr).await.unwrap();
        // Let the loop accept the holder, so the next connection is the one over the cap.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = tokio::spawn(get_root(addr));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "served while the only slot was taken");
        drop(holder);
        let answer = tokio::time::timeout(Duration::from_secs(3), waiting).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("served"), "{answer}");
    }
}
