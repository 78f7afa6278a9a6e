//! Purpose keys derived from the root key with HKDF-SHA256 (RFC 5869), one label per
//! purpose, so a fingerprint key can never verify an audit MAC and vice versa.

use crate::error::KeyError;
use crate::kcv::Kcv;
use crate::material::{KeyMaterial, KEY_LEN};
use ring::{hkdf, hmac};
use std::fmt;

/// A fixed, public salt: HKDF's extract step needs one; the root key is already uniform.
const HKDF_SALT: &[u8] = b"paysys/v1/hkdf-salt";

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

/// HKDF-SHA256(salt, ikm = root, info = label) → 32 bytes.
pub(crate) fn derive(root: &KeyMaterial, label: &[u8]) -> Result<KeyMaterial, KeyError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(root.bytes());
    let info = [label];
    let okm = prk.expand(&info, Len32).map_err(|_| KeyError::Crypto)?;
    let mut out = zeroize::Zeroizing::new([0u8; KEY_LEN]);
    okm.fill(out.as_mut()).map_err(|_| KeyError::Crypto)?;
    KeyMaterial::from_bytes(out.as_ref())
}

/// HMAC-SHA256 with `key`. ring's `hmac::Key` does not zeroize, so it lives only for
/// the duration of one operation; the bytes stay in [`KeyMaterial`].
pub(crate) fn hmac_sign(key: &KeyMaterial, data: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.bytes());
    let tag = hmac::sign(&key, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Constant-time HMAC verification (`ring::hmac::verify`, never `==`).
pub(crate) fn hmac_verify(key: &KeyMaterial, data: &[u8], tag: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.bytes());
    hmac::verify(&key, data, tag).is_ok()
}

/// Key for card fingerprints: HMAC-SHA256 of the PAN, scoped (e.g. per merchant).
pub struct FingerprintKey(KeyMaterial);

impl FingerprintKey {
    pub(crate) fn new(material: KeyMaterial) -> Self {
        FingerprintKey(material)
    }

    /// HMAC-SHA256 over the length-prefixed scope followed by the data, as 64 hex characters.
    pub fn fingerprint(&self, scope: &[u8], data: &[u8]) -> String {
        let mut input = Vec::with_capacity(4 + scope.len() + data.len());
        input.extend_from_slice(&(scope.len() as u32).to_be_bytes());
        input.extend_from_slice(scope);
        input.extend_from_slice(data);
        let tag = hmac_sign(&self.0, &input);
        zeroize::Zeroize::zeroize(&mut input);
        hex::encode(tag)
    }
}

/// Key for the audit log's HMAC chain.
pub struct AuditKey(KeyMaterial);

impl AuditKey {
    pub(crate) fn new(material: KeyMaterial) -> Self {
        AuditKey(material)
    }

    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        hmac_sign(&self.0, data)
    }

    /// Constant-time check of `tag` over `data`.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac_verify(&self.0, data, tag)
    }
}

/// Key for signing short-lived grants issued by the vault.
pub struct GrantKey(KeyMaterial);

impl GrantKey {
    pub(crate) fn new(material: KeyMaterial) -> Self {
        GrantKey(material)
    }

    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        hmac_sign(&self.0, data)
    }

    /// Constant-time check of `tag` over `data`.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac_verify(&self.0, data, tag)
    }
}

macro_rules! debug_by_kcv {
    ($($t:ident),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t)).field("kcv", &Kcv::of(&self.0).to_hex()).finish()
            }
        }
    )*};
}
debug_by_kcv!(FingerprintKey, AuditKey, GrantKey);
