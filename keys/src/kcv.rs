//! Key check values: identify a key in status output and logs without revealing it.
//!
//! KCV = the first 3 bytes of AES-256 encryption of a zero block under the key, the
//! X9.24 convention HSM vendors print during key ceremonies, so officers can compare
//! values across tools.

use crate::material::KeyMaterial;
use aes::cipher::{BlockEncrypt, KeyInit};
use std::fmt;

/// A key check value (3 bytes, shown as 6 lowercase hex characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kcv([u8; 3]);

impl Kcv {
    pub(crate) fn of(key: &KeyMaterial) -> Kcv {
        let cipher = aes::Aes256::new(key.bytes().into());
        let mut block = aes::Block::default();
        cipher.encrypt_block(&mut block);
        Kcv([block[0], block[1], block[2]])
    }

    /// Six lowercase hex characters.
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
        write!(f, "Kcv({})", self.to_hex())
    }
}
