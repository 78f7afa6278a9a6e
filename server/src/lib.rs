//! The accept loop of the vault, the gateway and the sandbox: one place for how a
//! PaySys service takes a connection.
//!
//! * TLS when a [`ServerConfig`] is given (rustls checks the client certificate when
//!   the configuration asks for one), plain HTTP otherwise (the gateway behind a
//!   TLS-terminating proxy, tests). A client gets [`HANDSHAKE_TIMEOUT`] to finish the
//!   handshake.
//! * `admit` then sees the client's first certificate (`None` without TLS or without
//!   one) and either closes the connection or returns the value every request of the
//!   connection carries as an extension (the vault's principal).
//! * HTTP/1.1 or HTTP/2 by ALPN into the router. A failed `accept` (out of file
//!   descriptors, say) backs off instead of spinning; on `shutdown` the loop stops and
//!   open connections finish on their own tasks.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
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

/// Serve `app` on `listener` until `shutdown` completes: over TLS when `tls` is given,
/// each connection admitted by `admit` (see the module documentation).
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
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
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
        tokio::spawn(async move {
            let Some(acceptor) = acceptor else {
                if let Some(extension) = admit(None) {
                    serve_connection(tcp, peer, app, extension).await;
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
            let certificate = stream.get_ref().1.peer_certificates().and_then(|certs| certs.first());
            let Some(extension) = admit(certificate) else {
                tracing::info!(%peer, "client certificate not admitted; closing");
                return;
            };
            serve_connection(stream, peer, app, extension).await;
        });
    }
}

/// HTTP/1.1 or HTTP/2 on one connection, every request carrying `extension`.
async fn serve_connection<S, E>(stream: S, peer: SocketAddr, app: Router, extension: E)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: Clone + Send + Sync + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(extension.clone());
        app.clone().oneshot(req)
    });
    if let Err(e) = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::routing::get;
    use axum::Extension;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A plain-HTTP server whose connections `admit` decides on; its one route answers
    /// with the connection's extension.
    async fn start(admit: fn(Option<&CertificateDer<'_>>) -> Option<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|Extension(who): Extension<&'static str>| async move { who }));
        tokio::spawn(serve(listener, None, app, admit, std::future::pending()));
        addr
    }

    async fn get_root(addr: SocketAddr) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        // A closed connection may reset the write or the read: then nothing was answered.
        let _ = tcp.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").await;
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer).await;
        answer
    }

    #[tokio::test]
    async fn every_request_of_an_admitted_connection_carries_its_extension() {
        let addr = start(|cert| cert.is_none().then_some("plain client")).await;
        let answer = get_root(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("plain client"), "{answer}");
    }

    #[tokio::test]
    async fn a_connection_not_admitted_is_closed_before_any_request_is_read() {
        let addr = start(|_| None).await;
        assert_eq!(get_root(addr).await, "", "no answer at all");
    }
}
