//! Purpose-separated HMAC keys derived from the root key with HKDF-SHA256, and the two
//! primitives (HKDF, HMAC) they are built on.
//!
//! Derived rather than generated and wrapped: they must be the same in every replica and
//! after every unseal (fingerprints dedup cards, the audit chain is verified offline), and
//! deriving them from the root key means nothing extra has to be stored.

use std::fmt;

use ring::{hkdf, hmac};

use crate::aead::length_prefix;
use crate::material::KeyMaterial;
use crate::{Kcv, KeyError};

/// HKDF `info` labels; each gives an independent key, so a MAC made for one purpose (say, a
/// grant) is never valid for another (an audit record).
pub(crate) const INFO_FINGERPRINT: &[u8] = b"paysys/v1/fingerprint";
pub(crate) const INFO_AUDIT: &[u8] = b"paysys/v1/audit";
/// The AES-256-GCM key that wraps KEKs (key format 2). Before it, the root key itself was
/// that AES key *and* the HKDF input of the keys above; now the root key is only ever an
/// HKDF input, and each of its uses has its own label.
pub(crate) const INFO_KEK_WRAP: &[u8] = b"paysys/v1/kek-wrap";

/// HKDF salt. Empty (RFC 5869 §3.1: the salt is optional): the root key is already 256
/// uniformly random bits, so the extract step has no entropy to concentrate.
const HKDF_SALT: &[u8] = b"";

/// Output length for ring's HKDF, which otherwise only expands to its own key types.
struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (extract then expand) into `out`. The one HKDF path; the RFC 5869 vectors
/// run through it.
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), KeyError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk.expand(&info, OutputLen(out.len())).map_err(|_| KeyError::Crypto)?;
    okm.fill(out).map_err(|_| KeyError::Crypto)
}

/// Derives the 32-byte purpose key `info` from `root`.
pub(crate) fn derive_key(root: &KeyMaterial, info: &[u8]) -> Result<KeyMaterial, KeyError> {
    let mut key = KeyMaterial::zeroed();
    hkdf_sha256(HKDF_SALT, root.expose_secret(), info, key.expose_secret_mut())?;
    Ok(key)
}

/// HMAC-SHA256 over the concatenation of `parts`, fed incrementally so callers never copy
/// secret input (a PAN) into a temporary buffer. The one signing path; the RFC 4231 vectors
/// run through it.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // ring's hmac::Key does not zeroize, so it is built per call instead of being stored.
    let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for part in parts {
        context.update(part);
    }
    let tag = context.sign();
    let mut out = [0u8; 32];
    // HMAC-SHA256 tags are always 32 bytes; zip avoids a panicking copy.
    for (o, t) in out.iter_mut().zip(tag.as_ref()) {
        *o = *t;
    }
    out
}

/// Constant-time HMAC-SHA256 verification (ring compares in constant time; never `==`).
pub(crate) fn hmac_sha256_verify(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), data, tag).is_ok()
}

/// An HMAC-SHA256 key; the body of [`AuditKey`].
struct MacKey {
    key: KeyMaterial,
    kcv: Kcv,
}

impl MacKey {
    fn derive(root: &KeyMaterial, info: &[u8]) -> Result<Self, KeyError> {
        let key = derive_key(root, info)?;
        let kcv = Kcv::of(&key);
        Ok(Self { key, kcv })
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        hmac_sha256(self.key.expose_secret(), &[data])
    }

    fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac_sha256_verify(self.key.expose_secret(), data, tag)
    }
}

/// Key for card fingerprints: lets the vault find an existing token for the same card and
/// merchant without decrypting anything. Derived with HKDF info `paysys/v1/fingerprint`.
///
/// Not `Clone`; `Debug` shows only the KCV; wiped on drop.
pub struct FingerprintKey {
    key: KeyMaterial,
    kcv: Kcv,
}

impl FingerprintKey {
    pub(crate) fn derive(root: &KeyMaterial) -> Result<Self, KeyError> {
        let key = derive_key(root, INFO_FINGERPRINT)?;
        let kcv = Kcv::of(&key);
        Ok(Self { key, kcv })
    }

    /// HMAC-SHA256 over `u64 BE len(scope) || scope || u64 BE len(data) || data`, as 64
    /// lowercase hex characters. Length prefixes keep (scope, data) pairs distinct when
    /// their concatenations coincide, so one merchant's fingerprints never collide with another's.
    pub fn fingerprint(&self, scope: &[u8], data: &[u8]) -> String {
        let tag = hmac_sha256(self.key.expose_secret(), &[&length_prefix(scope), scope, &length_prefix(data), data]);
        hex::encode(tag)
    }

    /// Identifies the key in status output.
    pub fn kcv(&self) -> Kcv {
        self.kcv
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FingerprintKey").field("kcv", &self.kcv.to_hex()).finish_non_exhaustive()
    }
}

/// Key for the audit log's HMAC chain. Derived with HKDF info `paysys/v1/audit`.
///
/// Not `Clone`; `Debug` shows only the KCV; wiped on drop.
pub struct AuditKey(MacKey);

impl AuditKey {
    pub(crate) fn derive(root: &KeyMaterial) -> Result<Self, KeyError> {
        MacKey::derive(root, INFO_AUDIT).map(AuditKey)
    }

    /// HMAC-SHA256 of `data`.
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        self.0.mac(data)
    }

    /// Whether `tag` is the MAC of `data`, compared in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        self.0.verify(data, tag)
    }

    /// Identifies the key in status output.
    pub fn kcv(&self) -> Kcv {
        self.0.kcv
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey").field("kcv", &self.0.kcv.to_hex()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 4231 §4: HMAC-SHA256 test cases 1–4, 6, 7 (case 5 tests truncation, which we never do).
    #[test]
    fn rfc4231_hmac_sha256_vectors() {
        let cases: [(&str, Vec<u8>, Vec<u8>, &str); 6] = [
            (
                "1",
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                "2",
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            ("3", vec![0xaa; 20], vec![0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            (
                "4",
                unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                "6",
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                "7",
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. \
                  The key needs to be hashed before being used by the HMAC algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (name, key, data, expected) in &cases {
            assert_eq!(hex::encode(hmac_sha256(key, &[data])), *expected, "case {name}");
            // Incremental input gives the same tag (the fingerprint path feeds parts).
            let (head, tail) = data.split_at(data.len() / 2);
            assert_eq!(hex::encode(hmac_sha256(key, &[head, b"", tail])), *expected, "case {name} in parts");
            let tag = unhex(expected);
            assert!(hmac_sha256_verify(key, data, &tag), "case {name} verify");
            let mut bad = tag.clone();
            bad[31] ^= 1;
            assert!(!hmac_sha256_verify(key, data, &bad), "case {name} bad tag");
            assert!(!hmac_sha256_verify(key, data, &tag[..16]), "case {name} truncated tag");
        }
    }

    /// RFC 5869 Appendix A: HKDF-SHA256 test cases 1–3.
    #[test]
    fn rfc5869_hkdf_sha256_vectors() {
        let range = |from: u8, to: u8| (from..=to).collect::<Vec<u8>>();
        let cases = [
            (
                "1",
                vec![0x0b; 22],
                range(0x00, 0x0c),
                range(0xf0, 0xf9),
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            ),
            (
                "2",
                range(0x00, 0x4f),
                range(0x60, 0xaf),
                range(0xb0, 0xff),
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
                 59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
                 cc30c58179ec3e87c14c01d5c1f3434f1d87",
            ),
            (
                "3",
                vec![0x0b; 22],
                vec![],
                vec![],
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            ),
        ];
        for (name, ikm, salt, info, expected) in &cases {
            let mut okm = vec![0u8; expected.len() / 2];
            hkdf_sha256(salt, ikm, info, &mut okm).unwrap();
            assert_eq!(hex::encode(&okm), *expected, "case {name}");
        }
    }

    /// The KEK-wrapping key of root key 00 01 .. 1f, computed outside this crate with
    /// Python (`hmac`, RFC 5869 by hand: PRK = HMAC(0^32, root), OKM = HMAC(PRK, info || 01)).
    #[test]
    fn kek_wrapping_key_known_answer() {
        let mut root = KeyMaterial::zeroed();
        for (i, b) in root.expose_secret_mut().iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(
            hex::encode(derive_key(&root, INFO_KEK_WRAP).unwrap().expose_secret()),
            "505e906b89015d3a0ea8eb3f6de02096b41127818fedae4a92abe44108eaa0a0"
        );
    }

    #[test]
    fn hkdf_refuses_output_longer_than_255_blocks() {
        let mut okm = vec![0u8; 255 * 32 + 1];
        assert_eq!(hkdf_sha256(b"", b"ikm", b"", &mut okm), Err(KeyError::Crypto));
    }

    #[test]
    fn derived_keys_are_hkdf_of_the_root_with_their_label() {
        let root = KeyMaterial::zeroed();
        for info in [INFO_FINGERPRINT, INFO_AUDIT, INFO_KEK_WRAP, crate::signing::INFO_CHECKPOINT] {
            let mut expected = [0u8; 32];
            hkdf_sha256(b"", &[0u8; 32], info, &mut expected).unwrap();
            assert_eq!(derive_key(&root, info).unwrap().expose_secret(), &expected);
        }
    }
}
