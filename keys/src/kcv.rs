//! Key check values: a short, public fingerprint of a key for status output and logs.
//!
//! # Why HMAC-SHA256 and not AES of a zero block
//!
//! The classic X9.24 KCV, the first bytes of AES_K(0^128), is exactly the GHASH key
//! H = AES_K(0^128) of AES-GCM under K. Every key in the hierarchy (the root key too, until
//! key format 2) is an AES-GCM key, so a status page showing AES_K(0) showed 24 bits of
//! each key's authentication subkey. A KCV is now the first 3 bytes of
//! HMAC-SHA256(K, "paysys/v1/kcv"): a PRF of the key with no algebraic relation to AES, so
//! it says nothing about any AES output under K (CMAC of a zero block would have been
//! the other standard choice, but it is still computed with AES under K, the same
//! primitive the key serves, and would add a crate for no gain).
//!
//! The old construction survives as [`Kcv::legacy_of`] for one purpose only: custodian
//! shares of vaults initialized before this change (`pss1`) carry the root KCV in that
//! form and were handed out with check values in that form, so they are checked with it.
//! The root key of such a vault is no longer an AES key once migrated (its KEKs are
//! re-wrapped under a derived key), so the legacy root KCV no longer names a GHASH key in use.

use std::fmt;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes256;

use crate::derived::hmac_sha256;
use crate::material::KeyMaterial;

/// The HMAC message of a KCV. Every other HMAC the crate computes starts with a u64
/// length prefix (fingerprints) or is made with a key that is never a KCV's key, so no
/// other tag can coincide with a KCV by construction.
const KCV_LABEL: &[u8] = b"paysys/v1/kcv";

/// Key check value: the first 3 bytes of HMAC-SHA256(key, `paysys/v1/kcv`). Lets
/// operators and status output tell keys apart, and confirm a key was entered correctly,
/// without revealing it (see the module docs for why not AES of a zero block).
///
/// `Display` and [`Kcv::to_hex`] give 6 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kcv([u8; 3]);

impl Kcv {
    pub(crate) fn of(key: &KeyMaterial) -> Kcv {
        let tag = hmac_sha256(key.expose_secret(), &[KCV_LABEL]);
        Kcv([tag[0], tag[1], tag[2]])
    }

    /// The pre-format-2 KCV: the first 3 bytes of AES-256-ECB of a zero block under the key
    /// (ANSI X9.24). Only for custodian shares in the `pss1` text form; see the module docs.
    pub(crate) fn legacy_of(key: &KeyMaterial) -> Kcv {
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

    /// Reads a KCV as printed or stored: 6 hex characters, either case. `None` otherwise.
    pub fn from_hex(text: &str) -> Option<Kcv> {
        let mut bytes = [0u8; 3];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Kcv(bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 3] {
        &self.0
    }

    /// 6 lowercase hex characters, e.g. `39110f`.
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

    fn key_from_hex(hex_key: &str) -> KeyMaterial {
        KeyMaterial::from_unwrapped(&hex::decode(hex_key).unwrap()).unwrap()
    }

    /// Known answers computed outside this crate:
    /// `python3 -c 'import hmac,hashlib; print(hmac.new(KEY, b"paysys/v1/kcv", hashlib.sha256).hexdigest())'`
    /// and `printf paysys/v1/kcv | openssl dgst -sha256 -mac HMAC -macopt hexkey:KEY`.
    #[test]
    fn kcv_is_truncated_hmac_sha256_of_the_label() {
        let cases = [
            // all-zero key -> 39110f22e16ed1dbf67be176f2d174f0…
            ("0000000000000000000000000000000000000000000000000000000000000000", "39110f"),
            // 00 01 .. 1f -> 16b7bdcdfb5aed20907cc4b290d14161…
            ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "16b7bd"),
            // the McGrew–Viega test case 15 key -> 69160e3695862377109f1a7326470708…
            ("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "69160e"),
        ];
        for (key, expected) in cases {
            let kcv = Kcv::of(&key_from_hex(key));
            assert_eq!(kcv.to_hex(), expected, "key {key}");
            assert_eq!(kcv.to_string(), expected);
            assert_eq!(format!("{kcv:?}"), format!("Kcv({expected})"));
        }
    }

    /// The new KCV shares no bytes with AES_K(0^128), the GCM hash key H, for the zero key
    /// (whose H is the FIPS-197-style vector dc95c078a2408989ad48a21492842087).
    #[test]
    fn kcv_is_not_the_gcm_hash_key() {
        let key = KeyMaterial::zeroed();
        assert_eq!(Kcv::legacy_of(&key).to_hex(), "dc95c0");
        assert_ne!(Kcv::of(&key), Kcv::legacy_of(&key));
    }

    #[test]
    fn legacy_kcv_of_fips197_appendix_c3_key() {
        // FIPS-197 C.3: key 000102..1f, plaintext 00112233..ff -> 8ea2b7ca516745bfeafc49904b496089.
        // Not a zero block, so check the block cipher path directly; the zero-block KCV of
        // this key (openssl enc -aes-256-ecb -K 0001..1f -nopad of 16 zero bytes) is f29000b6….
        let key = key_from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        let cipher = Aes256::new(key.expose_secret().into());
        let mut block = aes::Block::clone_from_slice(&hex::decode("00112233445566778899aabbccddeeff").unwrap());
        cipher.encrypt_block(&mut block);
        assert_eq!(hex::encode(block), "8ea2b7ca516745bfeafc49904b496089");
        assert_eq!(Kcv::legacy_of(&key).to_hex(), "f29000");
    }

    #[test]
    fn from_hex_reads_what_to_hex_writes() {
        let kcv = Kcv::of(&KeyMaterial::zeroed());
        assert_eq!(Kcv::from_hex(&kcv.to_hex()), Some(kcv));
        assert_eq!(Kcv::from_hex("39110F"), Some(kcv));
        for bad in ["", "39110", "39110f0", "zz110f"] {
            assert_eq!(Kcv::from_hex(bad), None, "{bad:?}");
        }
    }
}
