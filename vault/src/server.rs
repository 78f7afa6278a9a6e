//! The vault's side of the shared accept loop ([`paysys_server`]): TLS is mandatory,
//! rustls has verified the client certificate against the client CA and the CRL, and a
//! connection whose certificate names no principal is closed before any request is read
//! (the reason is logged). Each request carries the connection's
//! [`crate::tls::Principal`].

use crate::tls::principal_from_cert;
use axum::Router;
use paysys_server::ServeOptions;
use rustls::ServerConfig;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serve `app` on `listener` over mTLS until `shutdown` completes.
pub async fn serve_mtls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let admit = |cert: Option<&rustls_pki_types::CertificateDer<'_>>| match principal_from_cert(cert?) {
        Ok(principal) => Some(principal),
        Err(refusal) => {
            tracing::info!(reason = %refusal, "client certificate names no principal");
            None
        }
    };
    paysys_server::serve_with(listener, Some(tls), app, admit, options, shutdown).await
}
