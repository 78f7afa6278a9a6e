//! Merchant API secrets at rest: AES-256-GCM under the gateway's secret key (a file of
//! 64 hex characters given in the configuration, never in the database), with a fresh
//! random nonce per seal and the service id as AAD, so a copy of the database alone
//! cannot forge requests and a sealed secret moved to another merchant's row fails.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

const AAD_PREFIX: &[u8] = b"paysys-gateway/merchant-secret/v1/";
const NONCE_LEN: usize = 12;

/// Errors of the secret key and sealed secrets. No variant carries key or secret bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The key file could not be read.
    #[error("cannot read the secret key file {path}: {reason}")]
    Read { path: String, reason: String },
    /// The key file does not hold exactly 64 hex characters.
    #[error("the secret key file must hold 64 hex characters (32 bytes)")]
    Format,
    /// A sealed secret is malformed or does not open under this key and service id.
    #[error("a merchant secret does not open under this key")]
    Open,
    /// Sealing failed (not expected with valid inputs).
    #[error("sealing failed")]
    Seal,
}

/// The key merchant secrets are sealed under. Not `Clone`; `Debug` prints nothing of it.
pub struct SecretKey {
    cipher: Aes256Gcm,
    /// HMAC-SHA256 key derived from the same key bytes for checkout client secrets
    /// ([`SecretKey::checkout_secrets`]).
    checkout: ring::hmac::Key,
}

/// Label of the derivation of [`CheckoutSecrets`]' key from the secret key.
const CHECKOUT_SECRET_LABEL: &[u8] = b"paysys-gateway/checkout-client-secret/v1";

/// Derives each checkout's client secret from its id (HMAC-SHA256 under a key derived
/// from the gateway's secret key), so `checkout.create` repeated with the same
/// idempotency key answers the same secret, on any replica, while the database keeps
/// only its hash. `Debug` prints nothing of the key.
#[derive(Clone)]
pub struct CheckoutSecrets {
    key: ring::hmac::Key,
}

impl fmt::Debug for CheckoutSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CheckoutSecrets(HMAC-SHA256, [REDACTED])")
    }
}

impl CheckoutSecrets {
    /// A key of its own (tests, and gateways whose checkouts need not survive a restart).
    pub fn generate() -> CheckoutSecrets {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        CheckoutSecrets { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes.as_ref()) }
    }

    /// `{checkout_id}_secret_{32 base62}`.
    pub fn client_secret(&self, checkout_id: &str) -> Zeroizing<String> {
        const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let tag = ring::hmac::sign(&self.key, checkout_id.as_bytes());
        let tail: String = tag.as_ref().iter().take(32).map(|b| char::from(BASE62[usize::from(*b) % 62])).collect();
        Zeroizing::new(format!("{checkout_id}_secret_{tail}"))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(AES-256-GCM, [REDACTED])")
    }
}

impl SecretKey {
    /// Read a key file: 64 hex characters, surrounding whitespace ignored.
    pub fn from_file(path: &Path) -> Result<SecretKey, SecretError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| SecretError::Read { path: path.display().to_string(), reason: e.to_string() })?,
        );
        SecretKey::from_hex(text.trim())
    }

    /// A key from 64 hex characters.
    pub fn from_hex(hex_text: &str) -> Result<SecretKey, SecretError> {
        let bytes = Zeroizing::new(hex::decode(hex_text).map_err(|_| SecretError::Format)?);
        if bytes.len() != 32 {
            return Err(SecretError::Format);
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretError::Format)?;
        let derived = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes), CHECKOUT_SECRET_LABEL);
        let checkout = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref());
        Ok(SecretKey { cipher, checkout })
    }

    /// The derivation of checkout client secrets under this key.
    pub fn checkout_secrets(&self) -> CheckoutSecrets {
        CheckoutSecrets { key: self.checkout.clone() }
    }

    /// A fresh random key as 64 hex characters (for `paysys-gateway secret-key`).
    pub fn generate_hex() -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Zeroizing::new(hex::encode(bytes.as_ref()))
    }

    /// Seal `secret` for `service_id`: hex of nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, service_id: &str, secret: &MerchantSecret) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad(service_id);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.expose_secret().as_bytes(), aad: &aad })
            .map_err(|_| SecretError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(hex::encode(out))
    }

    /// Open a secret sealed for `service_id`.
    pub fn open(&self, service_id: &str, sealed_hex: &str) -> Result<MerchantSecret, SecretError> {
        let sealed = hex::decode(sealed_hex).map_err(|_| SecretError::Open)?;
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SecretError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = aad(service_id);
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
                .map_err(|_| SecretError::Open)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| SecretError::Open)?;
        Ok(MerchantSecret(Zeroizing::new(text.to_owned())))
    }
}

impl SecretKey {
    /// Seal another secret the gateway keeps (a webhook endpoint's signing secret, say)
    /// under this key: AAD `label ‖ id`, so it opens only for the same purpose and row.
    pub fn seal_labeled(&self, label: &[u8], id: &str, plain: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = [label, id.as_bytes()].concat();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: &aad })
            .map_err(|_| SecretError::Seal)?;
        Ok(hex::encode([nonce.as_slice(), &sealed].concat()))
    }

    /// Open what [`SecretKey::seal_labeled`] sealed for `label` and `id`.
    pub fn open_labeled(&self, label: &[u8], id: &str, sealed_hex: &str) -> Result<Zeroizing<String>, SecretError> {
        let sealed = hex::decode(sealed_hex).map_err(|_| SecretError::Open)?;
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SecretError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = [label, id.as_bytes()].concat();
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
                .map_err(|_| SecretError::Open)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| SecretError::Open)?;
        Ok(Zeroizing::new(text.to_owned()))
    }
}

fn aad(service_id: &str) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    aad.extend_from_slice(service_id.as_bytes());
    aad
}

/// A merchant's API secret (64 hex characters). Read only through `expose_secret`.
pub struct MerchantSecret(Zeroizing<String>);

impl fmt::Debug for MerchantSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MerchantSecret([REDACTED])")
    }
}

impl MerchantSecret {
    /// 32 random bytes as 64 hex characters.
    pub fn generate() -> MerchantSecret {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        MerchantSecret(Zeroizing::new(hex::encode(bytes.as_ref())))
    }

    pub fn from_text(text: &str) -> MerchantSecret {
        MerchantSecret(Zeroizing::new(text.to_owned()))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_hex(&SecretKey::generate_hex()).unwrap()
    }

    #[test]
    fn seal_open_round_trip_bound_to_service_id() {
        let key = key();
        let secret = MerchantSecret::generate();
        let sealed = key.seal("svc_a", &secret).unwrap();
        assert!(!sealed.contains(secret.expose_secret()));
        assert_eq!(key.open("svc_a", &sealed).unwrap().expose_secret(), secret.expose_secret());
        assert!(matches!(key.open("svc_b", &sealed), Err(SecretError::Open)), "AAD binds the service id");
        assert!(SecretKey::from_hex(&SecretKey::generate_hex()).unwrap().open("svc_a", &sealed).is_err());
        let mut tampered = hex::decode(&sealed).unwrap();
        tampered[20] ^= 1;
        assert!(key.open("svc_a", &hex::encode(tampered)).is_err());
        assert!(key.open("svc_a", "00").is_err());
        assert_ne!(key.seal("svc_a", &secret).unwrap(), sealed, "fresh nonce per seal");
    }

    #[test]
    fn debug_is_redacted_and_bad_keys_are_refused() {
        let secret = MerchantSecret::from_text("abc123");
        assert_eq!(format!("{secret:?}"), "MerchantSecret([REDACTED])");
        assert!(!format!("{:?}", key()).contains("0"));
        assert!(matches!(SecretKey::from_hex("abcd"), Err(SecretError::Format)));
        assert!(matches!(SecretKey::from_hex(&"zz".repeat(32)), Err(SecretError::Format)));
    }
}
