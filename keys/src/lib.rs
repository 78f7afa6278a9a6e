//! The PaySys soft HSM: the key hierarchy, AES-256-GCM sealing, key wrapping, fingerprints
//! and MAC keys. No I/O: the vault stores what this crate hands out (wrapped keys,
//! ciphertexts, KCVs) and hands it back.
//!
//! # Layout
//!
//! * `hierarchy.rs` — [`RootKey`] → versioned [`Kek`]s → versioned [`Dek`]s: generation,
//!   wrapping, unwrapping, and sealing card data.
//! * `aead.rs` — the single AES-256-GCM seal/open path: fresh random nonce per seal, the
//!   unambiguous AAD encoding (purpose, key versions, length-prefixed context), and the
//!   `nonce || ciphertext || tag` format with length checks before any slicing.
//! * `derived.rs` — HKDF-SHA256 purpose keys from the root key ([`FingerprintKey`],
//!   [`AuditKey`], and the KEK-wrapping key inside [`RootKey`]) and the
//!   HKDF/HMAC primitives they use. The root key is only ever an HKDF input.
//! * `signing.rs` — [`CheckpointSigningKey`]: Ed25519 (ring) over an HKDF seed from the root
//!   key, for signed audit checkpoints; [`CheckpointVerifyingKey`] is its public half.
//! * `kcv.rs` — [`Kcv`], the key check value shown in status output: truncated
//!   HMAC-SHA256 of a label, not AES of a zero block (which is AES-GCM's hash key H).
//! * `custodian.rs` — [`CustodianShare`]: the root key split M-of-N for its custodians
//!   ([`RootKey::split`], [`RootKey::combine`]), the shares' text form with vault, ceremony
//!   and checksum fields (`pss2`; `pss1` from before key format 2 is still read), the
//!   per-share commitments a vault records to recognise each share, and the checks that
//!   keep a wrong share from becoming a root key.
//! * `shamir.rs` — Shamir's scheme over GF(2^8): constant-time field arithmetic, split and
//!   interpolation, and why it is written here rather than taken from a crate.
//! * `material.rs` — the boxed, zeroize-on-drop 32-byte buffer inside every key type; the
//!   only place raw key bytes are held.
//! * `error.rs` — [`KeyError`], the crate's one error type, and [`ShareError`], its detail
//!   for custodian shares.
//!
//! # Rules this crate keeps
//!
//! * **Operations, not bytes.** Callers hold handles and ask for `seal`, `open`, `wrap`,
//!   `mac`, `sign`; key bytes leave the crate only wrapped (a public key is not secret). The single exception is
//!   [`RootKey::to_dev_key_hex`], for the dev-mode key file. Custodian shares leave it as
//!   [`CustodianShare::to_text`]; fewer than the threshold reveal nothing about the key.
//! * **Key types and custodian shares are not `Clone`**, their `Debug` prints version and
//!   KCV only (a share: index and check value), and their bytes are wiped on drop. Cipher,
//!   HMAC, signing and digest states are built per operation, so expanded key forms live
//!   only for the call: the AES-GCM cipher's AES key schedule and GHASH key wipe themselves
//!   on drop (the `zeroize` features of `aes`, `aes-gcm`, `ghash` and `polyval`; see
//!   `Cargo.toml` and the workspace's), while ring's HMAC keys, Ed25519 key pairs and
//!   digest contexts do not wipe theirs, so they are never kept.
//! * **AAD always binds context**, so a ciphertext or wrapped key moved to another row,
//!   token, or version fails to open.
//! * **Failures carry no detail**: every seal/open/wrap/unwrap failure is [`KeyError::Crypto`].
//!   Custodian share failures ([`ShareError`]) do say which check failed, because an
//!   officer has to act on it, but never which bytes.
//! * All key types are `Send + Sync`, to be shared through an `Arc`.

#![forbid(unsafe_code)]

mod aead;
mod custodian;
mod derived;
mod error;
mod hierarchy;
mod kcv;
mod material;
mod shamir;
mod signing;

pub use custodian::{CustodianShare, MIN_CUSTODIAN_THRESHOLD};
pub use derived::{AuditKey, FingerprintKey};
pub use error::{KeyError, ShareError};
pub use hierarchy::{Dek, Kek, RootKey};
pub use kcv::Kcv;
pub use signing::{CheckpointSigningKey, CheckpointVerifyingKey, CHECKPOINT_PUBLIC_KEY_LEN, CHECKPOINT_SIGNATURE_LEN};

/// The most seals one [`Dek`] should ever do: with random 96-bit nonces, NIST SP 800-38D
/// §8.3 limits a key to 2^32 invocations so the chance of a nonce collision stays below 2^-32.
/// Compare with [`Dek::encryptions`] (which counts only this process) and rotate well before.
pub const RANDOM_NONCE_SEAL_LIMIT: u64 = 1 << 32;
