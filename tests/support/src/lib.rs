//! Set-up code the PaySys tests share, written once: the service crates' tests, the
//! store suites and the end-to-end tests (`paysys-tests`) all use it.
//!
//! # Layout
//!
//! * [`postgres`] — a fresh PostgreSQL database per test on the server named by
//!   `PAYSYS_TEST_POSTGRES_URL`, dropped at the end of the test.
//! * [`process`] — start a service process and wait for the line that says where it
//!   listens.
//! * [`rpc`] — the merchant's signed JSON-RPC client for the gateway (`Auth` header,
//!   `POST /rpc`).
//! * [`cards`] — the sandbox's documented test card numbers.
//! * [`dump`] — every byte a database holds, for tests that scan it for card data.
//!
//! This crate depends on no PaySys crate: the services dev-depend on it, and a
//! dependency back would build them twice. What it re-implements (the `Auth` header) is
//! checked against the service's own code by that service's tests.

// Test set-up: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cards;
pub mod dump;
pub mod postgres;
pub mod process;
pub mod rpc;

use std::path::PathBuf;

/// A fresh, unique scratch directory under the system temp dir: `paysys-{tag}-{random}`.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paysys-{tag}-{}-{:016x}", std::process::id(), rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
