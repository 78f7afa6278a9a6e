//! The crate's one error type. Like ring's `Unspecified`, a failure to open or unwrap
//! carries no detail: which byte was wrong is exactly what an attacker would like to know.

/// Errors from the soft HSM. Display texts are fixed and never contain key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Sealing, opening, wrapping or unwrapping failed (wrong key, wrong context,
    /// tampered or truncated input). Deliberately without detail.
    #[error("cryptographic operation failed")]
    Crypto,
    /// The operating system's random number generator failed.
    #[error("the random number generator failed")]
    Random,
    /// An encoded key (the dev root key file) is not 64 hex characters.
    #[error("the key encoding is invalid")]
    InvalidKeyEncoding,
}
