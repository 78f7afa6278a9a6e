//! The PaySys sandbox: a faithful card network for tests and demos. It plays the
//! acquirer (authorization, capture, void, refund, status inquiry, ledger), the issuer
//! (balances per test card and currency, ISO 8583 decline codes, the 3-D Secure CAVV
//! check) and the 3-D Secure 2 directory server and ACS.
//!
//! # Layout
//!
//! * `main.rs` — the `paysys-sandbox` binary: parses flags and calls [`cli::main`].
//! * [`cli`] — the commands (`serve`, `cards`) and their configuration.
//! * [`tls`] — server TLS configuration, optional client-certificate verification.
//! * [`api`] — HTTP handlers and wire types; validation of requests.
//! * [`error`] — the API error type and its stable codes, turned into responses in one place.
//! * [`issuer`] — the issuer's rules as pure functions: screening, holds, capture, void,
//!   refund; decline codes.
//! * [`cards`] — card numbers (secret wrapper, Luhn, masking), expiry, the test-card table
//!   (issuer and 3-D Secure outcomes).
//! * [`currency`] — ISO 4217 alphabetic and numeric codes.
//! * [`ids`] — acquirer references, auth codes, RRNs; 3-D Secure UUIDs, CAVVs, nonces.
//! * [`threeds`] — the 3-D Secure 2 DS and ACS: messages, validation, outcomes, pages,
//!   the RReq client, the challenge expiry sweep.
//! * [`store`] — persistence: SQLite (default `sqlite::memory:`, a temporary file) or
//!   PostgreSQL; all SQL is here.
//!
//! The sandbox receives full card numbers (it is the network), but never writes one to
//! its logs or its database: those keep the masked form (first six, last four).

#![forbid(unsafe_code)]

pub mod api;
pub mod cards;
pub mod cli;
pub mod currency;
pub mod error;
pub mod ids;
pub mod issuer;
pub mod store;
pub mod threeds;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

/// Serve the sandbox's API on a bound `listener` until `shutdown` completes, with the
/// 3-D Secure defaults ([`threeds::ThreeDsConfig::for_port`]).
pub async fn run(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    network: Arc<api::Network>,
    max_body_bytes: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let three_ds = threeds::ThreeDs::new(network, &threeds::ThreeDsConfig::for_port(port))
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    run_with(listener, tls, three_ds, max_body_bytes, paysys_server::ServeOptions::default(), shutdown).await
}

/// Serve the whole API (acquirer, issuer, DS, ACS) on `listener` until `shutdown`
/// completes, under `options` (transport limits; the CRL verifier when clients are
/// checked against one); challenges nobody finishes are ended in the background meanwhile.
pub async fn run_with(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    three_ds: Arc<threeds::ThreeDs>,
    max_body_bytes: usize,
    options: paysys_server::ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = api::router(three_ds.clone(), max_body_bytes);
    tokio::select! {
        served = paysys_server::serve_with(listener, Some(tls), app, paysys_server::admit_all, options, shutdown) => served,
        () = threeds::acs::expire_challenges(three_ds) => Ok(()),
    }
}
