//! The PaySys card vault: the only process that ever sees a card number.
//!
//! # Layout
//!
//! * `main.rs` — the `paysys-vault` binary: parses flags and calls into this library.
//! * [`cli`] — the commands (`init`, `serve`, `policy check`, `audit …`) and their
//!   configuration. `serve` loads the configuration and ends in the library [`run`], which
//!   serves the API on a bound listener until shutdown.
//! * `officer_cli.rs` — `operator …`, `keys …` and `audit checkpoint`: officer clients of
//!   the API over mTLS.
//! * [`server`] — [`run`]: the API on a bound listener over the shared mTLS accept loop
//!   (a connection whose certificate names no principal is closed), and the background
//!   tasks a serving vault starts.
//! * [`tls`] — server TLS configuration and the [`tls::Principal`] from a client certificate.
//! * [`api`] — HTTP handlers: tokens (`api/tokens.rs`), relay (`api/relay.rs`), sys
//!   (`api/sys.rs`), key lifecycle (`api/keys.rs`) and audit (`api/audit.rs`).
//! * [`relay`] — the relay to allow-listed destinations: pooled HTTPS client, JSON-safe
//!   placeholder substitution, masking of the answer.
//! * [`error`] — the API error type and its stable codes, turned into responses in one place.
//! * [`card`] — PAN, expiry and CVC validation; brand by BIN range.
//! * [`token`] — random token generation (opaque and BIN+last4 formats).
//! * [`keyring`] — the unsealed key hierarchy and the sealed/unsealed switch.
//! * [`lifecycle`] — custodian unseal, rotation, re-encryption, retirement, dual control.
//! * [`committer`] — group commit of writes with their audit records.
//! * [`retention`] — the sweepers that delete cards whose token expired, in audited
//!   batches, CVCs past their TTL, and spent checkout grants an hour past their expiry.
//! * [`rate_limit`] — the per-merchant token bucket of the gateway's narrow token removal.
//! * [`audit`] — the HMAC chain over audit records.
//! * [`checkpoint`] — signed checkpoints of the chain head, appended to a file outside the
//!   database, and `audit verify --checkpoint`'s comparison of them with the database.
//! * [`store`] — persistence behind one trait: SQLite (default) and PostgreSQL.

pub mod api;
pub mod audit;
pub mod card;
pub mod checkpoint;
pub mod cli;
pub mod committer;
pub mod error;
pub mod keyring;
pub mod lifecycle;
mod officer_cli;
pub mod rate_limit;
pub mod relay;
pub mod retention;
pub mod server;
pub mod store;
pub mod tls;
pub mod token;

pub use server::run;
