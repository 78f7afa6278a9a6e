//! The PaySys payment gateway: merchants pay with card **tokens**; the gateway never
//! sees a card number. Authorizations go through the vault's relay (the vault fills in
//! the card data); capture, void, refund and status inquiry go to the acquirer directly
//! by its reference.
//!
//! # Layout
//!
//! * `main.rs` — the `paysys-gateway` binary: parses flags and calls [`cli::main`].
//! * [`account`] — the partner's personal account (web pages): users and roles.
//! * [`cli`] — `serve`, `merchant create` / `update` / `show`, `secret-key`, `sign`.
//! * [`server`] — HTTP(S): `POST /rpc` behind the Auth header, `GET /health`, and the
//!   3-D Secure pages under `/3ds/`.
//! * [`auth`] — the Auth header (HMAC-SHA256 over timestamp and raw body, ±300 s).
//! * [`rpc`] — JSON-RPC 2.0 envelope, batches, named params per method, dispatch, and the
//!   replay guard for calls that move money without an idempotency key.
//! * [`openrpc`] — the `rpc.discover` document.
//! * [`error`] — the API error type and its stable codes, turned into error objects in
//!   one place.
//! * [`payments`] — what each method does: idempotent creation, capture, void, refund,
//!   checks, uncertain-outcome resolution, hold expiry, cards.
//! * [`state`] — the payment state machine and the amount rules, pure.
//! * [`money`] — currencies, ISO 4217 minor units, amount limits.
//! * [`store`] — the persistence module: SQLite or PostgreSQL, chosen by URL; all of the
//!   gateway's SQL is in it.
//! * [`checkout`] — the payment widget's gateway side: checkouts, grants per attempt,
//!   paying a checkout with its intake-made token, customers' saved cards, card-testing
//!   limits; its browser routes (`/checkout/…`, `/widget/…`) in `checkout/routes.rs`.
//! * [`three_ds`] — 3-D Secure 2, the gateway as 3DS Server: the AReq through the vault
//!   relay, the DS's card ranges and results over TLS, challenge and 3DS Method pages,
//!   the CRes/RReq endpoints, and each merchant's `auto` settings.
//! * [`vault`] — the vault seam ([`vault::CardVault`]): relay, token metadata and the
//!   narrow token removal, over mTLS.
//! * [`acquirer`] — the acquirer seam ([`acquirer::Acquirer`]) and its HTTPS client.
//! * [`https`] — a small pool of kept-alive HTTPS connections with deadlines.
//! * [`workers`] — hold expiry, 3-D Secure challenge expiry, resolution by inquiry,
//!   refund retries, deletion of removed cards in the vault, the replay guard's sweep.
//! * [`secrets`] — merchant secrets sealed (AES-256-GCM) under the gateway's key.
//! * [`webhooks`] — signed notifications of payment changes: the outbox (written by
//!   the store with the change), SSRF screening, delivery, the retrying worker, the
//!   `webhook.*` methods.
//! * [`ids`], [`tls`].

#![forbid(unsafe_code)]

pub mod account;
pub mod acquirer;
pub mod auth;
pub mod checkout;
pub mod cli;
pub mod error;
pub mod https;
pub mod ids;
pub mod money;
pub mod openrpc;
pub mod payments;
pub mod rpc;
pub mod secrets;
pub mod server;
pub mod state;
pub mod store;
pub mod three_ds;
pub mod tls;
pub mod vault;
pub mod webhooks;
pub mod workers;

use std::future::Future;
use std::sync::Arc;

/// Serve the API on a bound `listener` (TLS when `tls` is given) until `shutdown`.
/// Workers are started separately ([`workers::run`]).
pub async fn run(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Arc<server::App>,
    max_body_bytes: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_with(listener, tls, app, max_body_bytes, paysys_server::TransportLimits::default(), shutdown).await
}

/// [`run`] under `limits` (the `serve` flags' header, request and idle timeouts and
/// connection cap).
pub async fn run_with(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Arc<server::App>,
    max_body_bytes: usize,
    limits: paysys_server::TransportLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let options = paysys_server::ServeOptions { limits, client_certificates: None };
    let router = server::router(app, max_body_bytes);
    paysys_server::serve_with(listener, tls, router, paysys_server::admit_all, options, shutdown).await
}
