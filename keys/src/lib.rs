//! `paysys-keys`: the PaySys soft HSM. No I/O.
//!
//! # Layout
//!
//! * `hierarchy.rs` — [`RootKey`] → versioned [`Kek`]s → versioned [`Dek`]s: generation,
//!   wrapping, unwrapping, sealing card data.
//! * `derived.rs` — purpose keys derived from the root key with HKDF-SHA256:
//!   [`FingerprintKey`], [`AuditKey`], [`GrantKey`] (HMAC-SHA256).
//! * `aead.rs` — AES-256-GCM with a fresh random 96-bit nonce per seal and a
//!   length-prefixed AAD (purpose, key versions, caller context).
//! * `kcv.rs` — [`Kcv`], the key check value that identifies a key in output.
//! * `material.rs` — the 32 zeroizing bytes behind every key; private to the crate.
//! * `error.rs` — [`KeyError`], without detail on purpose.
//!
//! Callers hold handles and ask for operations; no key byte crosses the crate boundary
//! except wrapped (and, in development only, [`RootKey::to_dev_key_hex`]). Key types are
//! not `Clone`, their `Debug` prints version and KCV only, and they zeroize on drop.

mod aead;
mod derived;
mod error;
mod hierarchy;
mod kcv;
mod material;

pub use derived::{AuditKey, FingerprintKey, GrantKey};
pub use error::KeyError;
pub use hierarchy::{Dek, Kek, RootKey};
pub use kcv::Kcv;

#[cfg(test)]
mod tests;
