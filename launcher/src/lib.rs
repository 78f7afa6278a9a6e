//! The PaySys launcher: a development PKI and `paysys up`, which starts the whole stack
//! on embedded defaults (SQLite, a dev-unsealed vault) — one process per service, each
//! from its own binary, as in production.
//!
//! **Everything here is for development and tests.** The CA key and the vault's root
//! key are written to disk; production PKI and custodian unseal live elsewhere.
//!
//! # Layout
//!
//! * [`pki`]: [`CertificateAuthority`](pki::CertificateAuthority) issues server and
//!   client certificates (and, for negative tests, expired, wrong-usage and
//!   foreign-CA ones) from an [`IssueRequest`](pki::IssueRequest);
//!   [`init_dev_pki`](pki::init_dev_pki) writes the stack's certificate files (and an
//!   empty CRL) once and reuses them afterwards;
//!   [`revoke_certificate`](pki::revoke_certificate) (`paysys pki revoke NAME`) adds a
//!   certificate to the CRL.
//! * [`services`]: [`ServiceCommand`](services::ServiceCommand) /
//!   [`spawn_service`](services::spawn_service) start a service binary, wait for its
//!   `… listening on <url>` line and forward its logs; a
//!   [`ServiceProcess`](services::ServiceProcess) is stopped with SIGTERM, and killed if
//!   dropped. `paysys up` starts every service with it, and so do the benchmarks, through
//!   [`up`] ([`start_stack`](up::start_stack), [`start_dev_vault`](up::start_dev_vault)).
//!   The end-to-end tests do not use it: their own harness starts the services, and takes
//!   only certificates from [`pki`].
//! * [`grant_keys`]: the gateway's grant key for the payment widget
//!   (`DIR/grant-keys/g1.pk8`, made once) and its public half for the intake.
//! * [`stack`]: [`Stack`](stack::Stack), the `stack.json` that `paysys up` writes for
//!   scripts, tests and benchmarks (URLs, pids, certificate paths).
//! * [`rpc`]: `paysys rpc`, a signed JSON-RPC call to the stack's gateway as the dev
//!   merchant; `paysys checkout`, a hosted checkout to open in a browser.
//! * [`up`]: `paysys up` itself — PKI, policy, vault init, start, wait for a signal,
//!   stop.
//! * `files.rs`: how the launcher writes files (atomically; keys 0600).
//! * `main.rs`: flags only.
//! * [`dev_webhook`]: `paysys up --webhook-url`, a webhook endpoint for the dev merchant.

#![forbid(unsafe_code)]

pub mod dev_webhook;
mod files;
pub mod grant_keys;
pub mod pki;
pub mod rpc;
pub mod services;
pub mod stack;
#[cfg(test)]
mod temp_dir;
pub mod up;
