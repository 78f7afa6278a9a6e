//! The crate's one error type.

/// Why a key operation failed.
///
/// Like ring's `Unspecified`, [`KeyError::Crypto`] deliberately says nothing about *which*
/// check failed (bad tag, wrong length, wrong context, wrong key version): an attacker who
/// can tell those apart learns something about the key or the plaintext. Display texts are
/// fixed strings, safe to log; they never contain key material, plaintext or ciphertext.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A seal, open, wrap or unwrap failed. Covers a wrong key, a wrong key version, a
    /// wrong context, tampered or truncated input, and an unwrapped key of the wrong size.
    #[error("cryptographic operation failed")]
    Crypto,
    /// The operating system's random number generator failed; no key or nonce was made.
    #[error("system random number generator failed")]
    Random,
    /// Key material handed in from outside (the dev root key file) is not 64 hex
    /// characters. Which character was wrong is not reported, so the key never reaches a log.
    #[error("key encoding is invalid (expected 64 hex characters)")]
    InvalidKeyEncoding,
}
