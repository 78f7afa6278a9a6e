//! Key check values: a short, public fingerprint of a key for status output and logs.

use std::fmt;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes256;

use crate::material::KeyMaterial;

/// Key check value: the first 3 bytes of AES-256-ECB encryption of a 16-byte zero block
/// under the key (the ANSI X9.24 convention). Lets operators and status output tell keys
/// apart, and confirm a key was entered correctly, without revealing it.
///
/// `Display` and [`Kcv::to_hex`] give 6 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kcv([u8; 3]);

impl Kcv {
    pub(crate) fn of(key: &KeyMaterial) -> Kcv {
        // The AES key schedule lives only for this call.
        let cipher = Aes256::new(key.expose_secret().into());
        let mut block = aes::Block::default();
        cipher.encrypt_block(&mut block);
        Kcv([block[0], block[1], block[2]])
    }

    /// The KCV as stored inside a custodian share.
    pub(crate) fn from_bytes(bytes: [u8; 3]) -> Kcv {
        Kcv(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 3] {
        &self.0
    }

    /// 6 lowercase hex characters, e.g. `dc95c0`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kcv({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcv_of_all_zero_aes256_key() {
        // AES-256(0^32, 0^16) = dc95c078a2408989ad48a21492842087 (FIPS-197 style
        // zero-key vector); the KCV is its first 3 bytes.
        let key = KeyMaterial::zeroed();
        let kcv = Kcv::of(&key);
        assert_eq!(kcv.to_hex(), "dc95c0");
        assert_eq!(kcv.to_string(), "dc95c0");
        assert_eq!(format!("{kcv:?}"), "Kcv(dc95c0)");
    }

    #[test]
    fn kcv_of_fips197_appendix_c3_key() {
        // FIPS-197 C.3: key 000102..1f, plaintext 00112233..ff -> 8ea2b7ca516745bfeafc49904b496089.
        // Not a zero block, so check the block cipher path directly, then the KCV differs from zero key's.
        let mut key = KeyMaterial::zeroed();
        for (i, b) in key.expose_secret_mut().iter_mut().enumerate() {
            *b = i as u8;
        }
        let cipher = Aes256::new(key.expose_secret().into());
        let mut block = aes::Block::clone_from_slice(&hex::decode("00112233445566778899aabbccddeeff").unwrap());
        cipher.encrypt_block(&mut block);
        assert_eq!(hex::encode(block), "8ea2b7ca516745bfeafc49904b496089");
        assert_ne!(Kcv::of(&key).to_hex(), "dc95c0");
    }
}
