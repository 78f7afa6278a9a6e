//! Ed25519 signatures for audit checkpoints: a signing key derived from the root key, and
//! the public key anyone may hold to check what it signed.
//!
//! Asymmetric rather than another HMAC key: a checkpoint is checked by people and systems
//! that must never hold a secret of the vault (an auditor, a SIEM), and an HMAC key that
//! verifies would also forge. Derived rather than generated: every replica and every unseal
//! signs with the same key, so one public key checks a vault's checkpoints for its lifetime.

use std::fmt;

use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::derived::derive_key;
use crate::material::KeyMaterial;
use crate::KeyError;

/// HKDF `info` label of the checkpoint signing seed (independent of the other purpose keys).
pub(crate) const INFO_CHECKPOINT: &[u8] = b"paysys/v1/audit-checkpoint";

/// Length of an Ed25519 public key.
pub const CHECKPOINT_PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const CHECKPOINT_SIGNATURE_LEN: usize = 64;

/// Signs audit checkpoints with Ed25519 (RFC 8032). The 32-byte seed is HKDF-SHA256 of the
/// root key with info `paysys/v1/audit-checkpoint`.
///
/// Not `Clone`; `Debug` shows only the key id; the seed is wiped on drop. ring's key pair
/// (which holds the expanded secret scalar) does not wipe itself, so it is built per
/// signature and dropped at once, like the HMAC states in `derived.rs`.
pub struct CheckpointSigningKey {
    seed: KeyMaterial,
    public: CheckpointVerifyingKey,
}

impl CheckpointSigningKey {
    pub(crate) fn derive(root: &KeyMaterial) -> Result<Self, KeyError> {
        let seed = derive_key(root, INFO_CHECKPOINT)?;
        let public = CheckpointVerifyingKey(public_key_of(seed.expose_secret())?);
        Ok(Self { seed, public })
    }

    /// The Ed25519 signature of `message`. Callers sign an unambiguous encoding that starts
    /// with its own purpose and version tag.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; CHECKPOINT_SIGNATURE_LEN], KeyError> {
        ed25519_sign(self.seed.expose_secret(), message)
    }

    /// The public half: what a verifier needs, and nothing more.
    pub fn verifying_key(&self) -> &CheckpointVerifyingKey {
        &self.public
    }
}

impl fmt::Debug for CheckpointSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigningKey").field("key_id", &self.public.key_id()).finish_non_exhaustive()
    }
}

/// An Ed25519 public key that checks checkpoint signatures. Public, so `Clone` and
/// printable; read from the vault's status or a checkpoint line and compared by value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CheckpointVerifyingKey([u8; CHECKPOINT_PUBLIC_KEY_LEN]);

impl CheckpointVerifyingKey {
    /// A public key from its 32 raw bytes. Anything else is [`KeyError::InvalidKeyEncoding`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        <[u8; CHECKPOINT_PUBLIC_KEY_LEN]>::try_from(bytes)
            .map(CheckpointVerifyingKey)
            .map_err(|_| KeyError::InvalidKeyEncoding)
    }

    /// A public key from 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let mut bytes = [0u8; CHECKPOINT_PUBLIC_KEY_LEN];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| KeyError::InvalidKeyEncoding)?;
        Ok(CheckpointVerifyingKey(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; CHECKPOINT_PUBLIC_KEY_LEN] {
        &self.0
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A short name for the key: `ed25519:` and the first 8 bytes of SHA-256 of the public
    /// key in hex. Printed in checkpoints and status so people can tell keys apart; a
    /// verifier still compares the whole public key.
    pub fn key_id(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let prefix = digest.as_ref().get(..8).unwrap_or_default();
        format!("ed25519:{}", hex::encode(prefix))
    }

    /// Whether `signature` is this key's Ed25519 signature of `message` (a wrong length
    /// is simply not a valid signature).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::ED25519, &self.0).verify(message, signature).is_ok()
    }
}

impl fmt::Debug for CheckpointVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointVerifyingKey({})", self.to_hex())
    }
}

/// The Ed25519 public key of a 32-byte seed.
fn public_key_of(seed: &[u8; 32]) -> Result<[u8; CHECKPOINT_PUBLIC_KEY_LEN], KeyError> {
    let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| KeyError::Crypto)?;
    let mut out = [0u8; CHECKPOINT_PUBLIC_KEY_LEN];
    let public = pair.public_key().as_ref();
    if public.len() != CHECKPOINT_PUBLIC_KEY_LEN {
        return Err(KeyError::Crypto);
    }
    out.copy_from_slice(public);
    Ok(out)
}

/// Ed25519 signature of `message` under `seed`. The one signing path; the RFC 8032 vectors
/// run through it.
pub(crate) fn ed25519_sign(seed: &[u8; 32], message: &[u8]) -> Result<[u8; CHECKPOINT_SIGNATURE_LEN], KeyError> {
    let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| KeyError::Crypto)?;
    let signature = pair.sign(message);
    let mut out = [0u8; CHECKPOINT_SIGNATURE_LEN];
    if signature.as_ref().len() != CHECKPOINT_SIGNATURE_LEN {
        return Err(KeyError::Crypto);
    }
    out.copy_from_slice(signature.as_ref());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }

    /// RFC 8032 §7.1, TEST 1, 2, 3 and TEST SHA(abc): seed, public key, message, signature.
    #[test]
    fn rfc8032_ed25519_vectors() {
        let cases: [(&str, &str, &str, &str, &str); 4] = [
            (
                "1",
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "2",
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "3",
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
            (
                "SHA(abc)",
                "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
                "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
            ),
        ];
        for (name, seed_hex, public_hex, message_hex, signature_hex) in cases {
            let seed = seed(seed_hex);
            let message = hex::decode(message_hex).unwrap();
            assert_eq!(hex::encode(public_key_of(&seed).unwrap()), public_hex, "case {name} public key");
            let signature = ed25519_sign(&seed, &message).unwrap();
            assert_eq!(hex::encode(signature), signature_hex, "case {name} signature");
            let public = CheckpointVerifyingKey::from_hex(public_hex).unwrap();
            assert!(public.verify(&message, &signature), "case {name} verify");
            let mut bad = signature;
            bad[63] ^= 0x01;
            assert!(!public.verify(&message, &bad), "case {name} altered signature");
            assert!(!public.verify(&message, &signature[..63]), "case {name} truncated signature");
            assert!(!public.verify(b"another message", &signature), "case {name} another message");
        }
    }

    /// The checkpoint key is Ed25519 over HKDF-SHA256(root, `paysys/v1/audit-checkpoint`),
    /// pinned for the all-zero root key so a change to the derivation cannot go unnoticed
    /// (every public key already handed to auditors would stop matching).
    #[test]
    fn checkpoint_key_is_ed25519_of_the_hkdf_seed() {
        let root = KeyMaterial::zeroed();
        let key = CheckpointSigningKey::derive(&root).unwrap();
        let seed = derive_key(&root, INFO_CHECKPOINT).unwrap();
        assert_eq!(key.verifying_key().as_bytes(), &public_key_of(seed.expose_secret()).unwrap());
        assert_eq!(key.sign(b"m").unwrap(), ed25519_sign(seed.expose_secret(), b"m").unwrap());
        assert_eq!(key.verifying_key().to_hex(), PINNED_ZERO_ROOT_PUBLIC_KEY);
        assert_eq!(key.verifying_key().key_id(), PINNED_ZERO_ROOT_KEY_ID);
        // Ed25519 is deterministic: the same message, the same signature.
        assert_eq!(key.sign(b"checkpoint").unwrap(), key.sign(b"checkpoint").unwrap());
    }

    // Computed independently of this crate (Python: HMAC-based HKDF from the RFC 5869
    // text, then `cryptography`'s Ed25519PrivateKey.from_private_bytes and SHA-256).
    const PINNED_ZERO_ROOT_PUBLIC_KEY: &str = "48e70ae6b11209f31fd78d4386bad33cfab56bf63754429f4f32ec2f159606f3";
    const PINNED_ZERO_ROOT_KEY_ID: &str = "ed25519:738faef1e053ca69";

    #[test]
    fn verifying_key_encodings() {
        let key = CheckpointSigningKey::derive(&KeyMaterial::zeroed()).unwrap();
        let public = key.verifying_key();
        assert_eq!(&CheckpointVerifyingKey::from_hex(&public.to_hex()).unwrap(), public);
        assert_eq!(&CheckpointVerifyingKey::from_bytes(public.as_bytes()).unwrap(), public);
        assert_eq!(CheckpointVerifyingKey::from_hex("abcd"), Err(KeyError::InvalidKeyEncoding));
        assert_eq!(CheckpointVerifyingKey::from_hex(&"zz".repeat(32)), Err(KeyError::InvalidKeyEncoding));
        assert_eq!(CheckpointVerifyingKey::from_bytes(&[0u8; 31]), Err(KeyError::InvalidKeyEncoding));
        let id = public.key_id();
        assert!(id.starts_with("ed25519:") && id.len() == 8 + 16, "{id}");
    }
}
