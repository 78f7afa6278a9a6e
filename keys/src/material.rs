//! Raw key bytes: 32 bytes that zeroize on drop, never `Clone`, never printed.
//! Nothing outside this crate can reach them.

use crate::error::KeyError;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Length of every symmetric key here: AES-256 and HMAC-SHA256 keys alike.
pub(crate) const KEY_LEN: usize = 32;

/// 256 bits of key material.
pub(crate) struct KeyMaterial(Zeroizing<[u8; KEY_LEN]>);

impl KeyMaterial {
    /// Fresh key bytes from the OS CSPRNG.
    pub(crate) fn random() -> Result<KeyMaterial, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        SystemRandom::new().fill(bytes.as_mut()).map_err(|_| KeyError::Random)?;
        Ok(KeyMaterial(bytes))
    }

    /// Take ownership of bytes (which the caller's `Zeroizing` will wipe).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<KeyMaterial, KeyError> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(KeyError::Crypto);
        }
        out.copy_from_slice(bytes);
        Ok(KeyMaterial(out))
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}
