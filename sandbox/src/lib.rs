//! The PaySys sandbox: a faithful card network for tests and demos. It plays the
//! acquirer (authorization, capture, void, refund, status inquiry, ledger) and the
//! issuer (balances per test card and currency, ISO 8583 decline codes). The 3-D Secure
//! directory server and ACS will join it as further routes and card-table columns.
//!
//! # Layout
//!
//! * `main.rs` — the `paysys-sandbox` binary: parses flags and calls [`cli::main`].
//! * [`cli`] — the commands (`serve`, `cards`) and their configuration.
//! * [`server`] — the TLS accept loop (HTTP/1.1 and HTTP/2 by ALPN).
//! * [`tls`] — server TLS configuration, optional client-certificate verification.
//! * [`api`] — HTTP handlers and wire types; validation of requests.
//! * [`error`] — the API error type and its stable codes, turned into responses in one place.
//! * [`issuer`] — the issuer's rules as pure functions: screening, holds, capture, void,
//!   refund; decline codes.
//! * [`cards`] — card numbers (secret wrapper, Luhn, masking), expiry, the test-card table.
//! * [`ids`] — acquirer references, auth codes, RRNs.
//! * [`store`] — persistence: SQLite (default, in memory) or PostgreSQL; all SQL is here.
//!
//! The sandbox receives full card numbers (it is the network), but never writes one to
//! its logs or its database: those keep the masked form (first six, last four).

#![forbid(unsafe_code)]

pub mod api;
pub mod cards;
pub mod cli;
pub mod error;
pub mod ids;
pub mod issuer;
pub mod server;
pub mod store;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

/// Serve the sandbox's API on a bound `listener` until `shutdown` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    network: Arc<api::Network>,
    max_body_bytes: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    server::serve_tls(listener, tls, api::router(network, max_body_bytes), shutdown).await
}
