//! The relay: the vault sends a request carrying card data to an allow-listed
//! destination on the gateway's behalf, so the gateway never holds a card number.
//!
//! * [`client`] — the HTTPS client: rustls (ring) verifying the destination against
//!   `--relay-ca` only, optional client certificate, HTTP/1.1 keep-alive pool, timeout
//!   and response-size limit.
//! * [`template`] — the policy's templates filled on the parsed JSON tree (card data at
//!   the places the policy chose, the caller's checked values by name), never by
//!   splicing text.
//! * [`buffer`] — zeroizing buffers that grow without leaving copies behind, for the
//!   filled body and the answer.
//! * [`mask`] — what comes back is masked: card numbers to BIN+last4, the CVC removed.
//!
//! The HTTP handler (`api/relay.rs`) decides by policy, picks the template, and records
//! the relay in the audit log before anything is sent.

pub mod buffer;
pub mod client;
pub mod mask;
pub mod template;

pub use client::{RelayClient, RelayConfig, RelayError, RelayMethod, RelayResponse};
pub use template::CardData;
