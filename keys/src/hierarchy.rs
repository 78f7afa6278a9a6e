//! The key hierarchy: root key → versioned KEKs → versioned DEKs.
//!
//! The root key exists only in the memory of an unsealed vault. It wraps KEKs; a KEK
//! wraps DEKs; DEKs seal card data. Wrapping is AES-256-GCM with an AAD that binds the
//! purpose and the versions involved, so a wrapped DEK cannot be passed off as another
//! version or as a KEK.

use crate::aead::{self, build_aad};
use crate::derived::{derive, AuditKey, FingerprintKey, GrantKey};
use crate::error::KeyError;
use crate::kcv::Kcv;
use crate::material::{KeyMaterial, KEY_LEN};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

/// The root of the hierarchy.
pub struct RootKey(KeyMaterial);

/// A key-encryption key: wraps DEKs.
pub struct Kek {
    version: u32,
    material: KeyMaterial,
}

/// A data-encryption key: seals card data.
pub struct Dek {
    version: u32,
    material: KeyMaterial,
    encryptions: AtomicU64,
}

impl RootKey {
    pub fn generate() -> Result<RootKey, KeyError> {
        Ok(RootKey(KeyMaterial::random()?))
    }

    /// DEV MODE ONLY: the root key as hex, for the 0600 dev key file. This is the one
    /// place key bytes leave the crate; production vaults never call it.
    pub fn to_dev_key_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.bytes()))
    }

    /// Read a dev root key file's content (64 hex characters, surrounding whitespace ignored).
    pub fn from_dev_key_hex(text: &str) -> Result<RootKey, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(text.trim(), bytes.as_mut()).map_err(|_| KeyError::InvalidKeyEncoding)?;
        Ok(RootKey(KeyMaterial::from_bytes(bytes.as_ref())?))
    }

    /// Rebuild a root key from raw bytes (e.g. recombined custodian shares).
    pub fn from_bytes(bytes: &[u8]) -> Result<RootKey, KeyError> {
        KeyMaterial::from_bytes(bytes).map(RootKey).map_err(|_| KeyError::InvalidKeyEncoding)
    }

    pub fn kcv(&self) -> Kcv {
        Kcv::of(&self.0)
    }

    pub fn wrap_kek(&self, kek: &Kek) -> Result<Vec<u8>, KeyError> {
        aead::seal(&self.0, &build_aad("kek", &[kek.version], &[]), kek.material.bytes())
    }

    pub fn unwrap_kek(&self, version: u32, wrapped: &[u8]) -> Result<Kek, KeyError> {
        let bytes = aead::open(&self.0, &build_aad("kek", &[version], &[]), wrapped)?;
        Ok(Kek { version, material: KeyMaterial::from_bytes(&bytes)? })
    }

    pub fn derive_fingerprint_key(&self) -> Result<FingerprintKey, KeyError> {
        derive(&self.0, b"paysys/v1/fingerprint").map(FingerprintKey::new)
    }

    pub fn derive_audit_key(&self) -> Result<AuditKey, KeyError> {
        derive(&self.0, b"paysys/v1/audit").map(AuditKey::new)
    }

    pub fn derive_grant_key(&self) -> Result<GrantKey, KeyError> {
        derive(&self.0, b"paysys/v1/grant").map(GrantKey::new)
    }
}

impl Kek {
    pub fn generate(version: u32) -> Result<Kek, KeyError> {
        Ok(Kek { version, material: KeyMaterial::random()? })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn kcv(&self) -> Kcv {
        Kcv::of(&self.material)
    }

    pub fn wrap_dek(&self, dek: &Dek) -> Result<Vec<u8>, KeyError> {
        aead::seal(&self.material, &build_aad("dek", &[dek.version, self.version], &[]), dek.material.bytes())
    }

    pub fn unwrap_dek(&self, version: u32, wrapped: &[u8]) -> Result<Dek, KeyError> {
        let bytes = aead::open(&self.material, &build_aad("dek", &[version, self.version], &[]), wrapped)?;
        Ok(Dek { version, material: KeyMaterial::from_bytes(&bytes)?, encryptions: AtomicU64::new(0) })
    }
}

impl Dek {
    pub fn generate(version: u32) -> Result<Dek, KeyError> {
        Ok(Dek { version, material: KeyMaterial::random()?, encryptions: AtomicU64::new(0) })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn kcv(&self) -> Kcv {
        Kcv::of(&self.material)
    }

    /// Seal card data bound to `context` (e.g. token and merchant) and this DEK's version.
    /// Output: `nonce (12) || ciphertext || tag (16)`.
    pub fn seal(&self, plaintext: &[u8], context: &[&[u8]]) -> Result<Vec<u8>, KeyError> {
        self.encryptions.fetch_add(1, Ordering::Relaxed);
        aead::seal(&self.material, &build_aad("data", &[self.version], context), plaintext)
    }

    /// Open what [`Dek::seal`] produced with the same context.
    pub fn open(&self, sealed: &[u8], context: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        aead::open(&self.material, &build_aad("data", &[self.version], context), sealed)
    }

    /// Seals done with this key in this process (for the AES-GCM per-key limit report).
    pub fn encryptions(&self) -> u64 {
        self.encryptions.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootKey").field("kcv", &self.kcv().to_hex()).finish()
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("version", &self.version).field("kcv", &self.kcv().to_hex()).finish()
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dek").field("version", &self.version).field("kcv", &self.kcv().to_hex()).finish()
    }
}
