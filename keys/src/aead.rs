//! AES-256-GCM with a fresh random 96-bit nonce per seal and an unambiguous AAD.
//!
//! Sealed layout: `nonce (12) || ciphertext || tag (16)`. The AAD names the purpose
//! (data, DEK wrap, KEK wrap), the key versions involved and any caller context, each
//! length-prefixed, so no two different contexts encode to the same bytes.

use crate::error::KeyError;
use crate::material::KeyMaterial;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use ring::rand::{SecureRandom, SystemRandom};

pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;

/// Build the AAD: a domain label, then versions, then context items, all length-prefixed.
pub(crate) fn build_aad(purpose: &str, versions: &[u32], context: &[&[u8]]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + context.iter().map(|c| c.len() + 4).sum::<usize>());
    push_item(&mut aad, b"paysys/v1");
    push_item(&mut aad, purpose.as_bytes());
    for v in versions {
        aad.extend_from_slice(&v.to_be_bytes());
    }
    aad.extend_from_slice(&(context.len() as u32).to_be_bytes());
    for item in context {
        push_item(&mut aad, item);
    }
    aad
}

fn push_item(out: &mut Vec<u8>, item: &[u8]) {
    out.extend_from_slice(&(item.len() as u32).to_be_bytes());
    out.extend_from_slice(item);
}

/// Seal with an explicit nonce (used by the known-answer tests and by [`seal`]).
pub(crate) fn seal_with_nonce(
    key: &KeyMaterial,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let cipher = Aes256Gcm::new(key.bytes().into());
    let ct = cipher.encrypt(Nonce::from_slice(nonce), Payload { msg: plaintext, aad }).map_err(|_| KeyError::Crypto)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Seal with a fresh random nonce.
pub(crate) fn seal(key: &KeyMaterial, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| KeyError::Random)?;
    seal_with_nonce(key, &nonce, aad, plaintext)
}

/// Open `nonce || ciphertext || tag`; any mismatch is the same opaque error.
pub(crate) fn open(key: &KeyMaterial, aad: &[u8], sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
    // Check the length before slicing.
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(KeyError::Crypto);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(key.bytes().into());
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(zeroize::Zeroizing::new)
        .map_err(|_| KeyError::Crypto)
}
