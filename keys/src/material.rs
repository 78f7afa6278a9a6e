//! The 256-bit secret buffer every key type holds.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::KeyError;

/// Length in bytes of every key in the hierarchy (AES-256, HMAC-SHA256 keys).
pub(crate) const KEY_LEN: usize = 32;

/// 32 bytes of secret key material, wiped on drop.
///
/// Boxed so the bytes are written once, on the heap, and never copied again: moving a
/// key handle moves a pointer, not the key, so no stale copy is left on the stack by a move.
/// Not `Clone`; `Debug` is redacted; read only through [`KeyMaterial::expose_secret`],
/// which is crate-private so no byte leaves the crate.
pub(crate) struct KeyMaterial(Box<Zeroizing<[u8; KEY_LEN]>>);

impl KeyMaterial {
    /// A fresh key from the operating system's CSPRNG.
    pub(crate) fn generate() -> Result<Self, KeyError> {
        let mut key = Self::zeroed();
        SystemRandom::new().fill(&mut key.0[..]).map_err(|_| KeyError::Random)?;
        Ok(key)
    }

    /// An all-zero buffer to be filled in place (by a KDF, a hex decoder, or a copy).
    pub(crate) fn zeroed() -> Self {
        Self(Box::new(Zeroizing::new([0u8; KEY_LEN])))
    }

    /// Copies an unwrapped key out of a decrypted buffer. A plaintext that is not exactly
    /// one key long is reported as [`KeyError::Crypto`], like any other unwrap failure.
    pub(crate) fn from_unwrapped(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != KEY_LEN {
            return Err(KeyError::Crypto);
        }
        let mut key = Self::zeroed();
        key.0.copy_from_slice(bytes);
        Ok(key)
    }

    pub(crate) fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(crate) fn expose_secret_mut(&mut self) -> &mut [u8; KEY_LEN] {
        &mut self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial([REDACTED])")
    }
}
