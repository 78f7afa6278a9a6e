//! The vault's side of the shared accept loop ([`paysys_server`]): TLS is mandatory,
//! rustls has verified the client certificate against the client CA, and a connection
//! whose certificate names no principal is closed before any request is read. Each
//! request carries the connection's [`crate::tls::Principal`].

use crate::tls::principal_from_cert;
use axum::Router;
use rustls::ServerConfig;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serve `app` on `listener` over mTLS until `shutdown` completes.
pub async fn serve_mtls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    paysys_server::serve(listener, Some(tls), app, |cert| cert.and_then(principal_from_cert), shutdown).await
}
