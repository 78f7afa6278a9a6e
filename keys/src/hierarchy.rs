//! The key hierarchy: root key → versioned KEKs → versioned DEKs → card data.
//!
//! Each level only wraps the level below, and every wrap binds the wrapped key's version
//! (and the wrapping key's version) in the AAD, so a stored wrapped key cannot be relabelled
//! as another version or moved under another parent without failing to unwrap.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use crate::aead::{self, PURPOSE_DATA, PURPOSE_DEK_WRAP, PURPOSE_KEK_WRAP, PURPOSE_KEK_WRAP_LEGACY};
use crate::custodian::{self, CustodianShare};
use crate::derived::{self, AuditKey, FingerprintKey, INFO_KEK_WRAP};
use crate::material::{KeyMaterial, KEY_LEN};
use crate::signing::CheckpointSigningKey;
use crate::{Kcv, KeyError};

/// The top of the hierarchy. Exists only in the memory of an unsealed vault. It is used
/// only as HKDF input keying material: for the key that wraps KEKs and for the purpose
/// keys (fingerprint, audit, grant), each under its own label, never as a cipher key
/// itself (except to unwrap, for migration, KEKs stored in key format 1).
///
/// Not `Clone`; `Debug` shows only the KCV; wiped on drop.
pub struct RootKey {
    key: KeyMaterial,
    kcv: Kcv,
}

impl RootKey {
    /// A fresh random root key.
    pub fn generate() -> Result<RootKey, KeyError> {
        Ok(RootKey::from_material(KeyMaterial::generate()?))
    }

    fn from_material(key: KeyMaterial) -> RootKey {
        let kcv = Kcv::of(&key);
        RootKey { key, kcv }
    }

    /// DEV MODE ONLY: the root key as 64 lowercase hex characters, for the 0600 dev key file.
    ///
    /// This is the one place key bytes leave the crate. Production root keys are never
    /// written anywhere; they are rebuilt from custodian shares. The returned string is
    /// wiped when dropped.
    pub fn to_dev_key_hex(&self) -> Zeroizing<String> {
        // Encode into a zeroizing buffer, then copy into a string allocated at its final
        // size, so no growing `String` leaves a stray copy of the hex behind.
        let mut encoded = Zeroizing::new([0u8; 2 * KEY_LEN]);
        let mut out = Zeroizing::new(String::with_capacity(2 * KEY_LEN));
        if hex::encode_to_slice(self.key.expose_secret(), &mut encoded[..]).is_ok() {
            for &c in encoded.iter() {
                out.push(char::from(c));
            }
        }
        out
    }

    /// Reads a dev key file's contents: 64 hex characters, surrounding whitespace ignored.
    /// Anything else is [`KeyError::InvalidKeyEncoding`], without saying which character was bad.
    pub fn from_dev_key_hex(hex: &str) -> Result<RootKey, KeyError> {
        let trimmed = hex.trim();
        if trimmed.len() != 2 * KEY_LEN {
            return Err(KeyError::InvalidKeyEncoding);
        }
        let mut key = KeyMaterial::zeroed();
        hex::decode_to_slice(trimmed, key.expose_secret_mut()).map_err(|_| KeyError::InvalidKeyEncoding)?;
        Ok(RootKey::from_material(key))
    }

    /// Identifies the root key in status output and confirms an unseal used the right key.
    pub fn kcv(&self) -> Kcv {
        self.kcv
    }

    /// Splits the root key into `shares` full-length custodian shares (Shamir's scheme over
    /// GF(2^8)), any `threshold` of which rebuild it with [`RootKey::combine`] and fewer of
    /// which reveal nothing about it. Shares are numbered 1..=`shares`.
    ///
    /// Requires 2 ≤ `threshold` ≤ `shares` (at most 255, since `shares` is a `u8`);
    /// anything else is [`ShareError::InvalidThreshold`](crate::ShareError::InvalidThreshold).
    /// A threshold of 1 is refused because each share would then be the root key itself.
    pub fn split(&self, threshold: u8, shares: u8) -> Result<Vec<CustodianShare>, KeyError> {
        custodian::split_root_key(&self.key, self.kcv, threshold, shares)
    }

    /// Rebuilds the root key from custodian shares and returns it only if its KCV is
    /// `expected_kcv` (the root KCV recorded at `init`), so a wrong share never yields a
    /// wrong root key. Refuses, in this order, with a [`ShareError`](crate::ShareError):
    /// a share of another vault (`ForeignVault`), shares of different splits
    /// (`MixedSplits`), a repeated index (`Duplicate`), fewer shares than their threshold
    /// (`Insufficient`), and a rebuilt key with another KCV (`KcvMismatch`).
    ///
    /// Because `Insufficient` comes only after every other check, a vault collecting shares
    /// one at a time can call this after each one: `Insufficient` means "accepted, need more".
    ///
    /// `expected_kcv` is the root KCV in the form the shares carry: [`RootKey::kcv`] for
    /// `pss2` shares, the legacy KCV the vault recorded at `init` for `pss1` shares (see
    /// [`CustodianShare::carries_legacy_kcv`]).
    pub fn combine(shares: &[CustodianShare], expected_kcv: &Kcv) -> Result<RootKey, KeyError> {
        Ok(RootKey::from_material(custodian::combine_root_key(shares, expected_kcv)?))
    }

    /// Like [`RootKey::combine`], but a set with more shares than the threshold whose KCV
    /// check fails is searched for `threshold` shares that pass it, so one wrong share
    /// among M + 1 does not sink the unseal. Returns the key and the indices of the shares
    /// left out (empty when every share was used). Refusals are those of `combine`.
    pub fn combine_leaving_out_wrong(
        shares: &[CustodianShare],
        expected_kcv: &Kcv,
    ) -> Result<(RootKey, Vec<u8>), KeyError> {
        let (key, left_out) = custodian::combine_leaving_out_wrong(shares, expected_kcv)?;
        Ok((RootKey::from_material(key), left_out))
    }

    /// The AES-256-GCM key that wraps KEKs: HKDF-SHA256 of the root key, info
    /// `paysys/v1/kek-wrap`. Derived per call and wiped on return, like every cipher state here.
    fn kek_wrapping_key(&self) -> Result<KeyMaterial, KeyError> {
        derived::derive_key(&self.key, INFO_KEK_WRAP)
    }

    /// Wraps `kek` for storage (key format 2): AES-256-GCM under the KEK-wrapping key
    /// derived from the root key, AAD binding purpose `paysys/v2/kek` and the KEK's version.
    pub fn wrap_kek(&self, kek: &Kek) -> Result<Vec<u8>, KeyError> {
        let aad = aead::associated_data(PURPOSE_KEK_WRAP, &[kek.version], &[]);
        aead::seal(&self.kek_wrapping_key()?, &aad, kek.key.expose_secret())
    }

    /// Unwraps a KEK that [`RootKey::wrap_kek`] wrapped as `version`. Fails with
    /// [`KeyError::Crypto`] under a different root key, a different version number, on any
    /// change to `wrapped`, and for a KEK in key format 1 (see [`RootKey::unwrap_legacy_kek`]).
    pub fn unwrap_kek(&self, version: u32, wrapped: &[u8]) -> Result<Kek, KeyError> {
        let aad = aead::associated_data(PURPOSE_KEK_WRAP, &[version], &[]);
        let plaintext = aead::open(&self.kek_wrapping_key()?, &aad, wrapped)?;
        Ok(Kek::from_material(version, KeyMaterial::from_unwrapped(&plaintext)?))
    }

    /// Unwraps a KEK stored in key format 1, by vaults initialized before format 2: sealed
    /// directly under the root key with AAD purpose `paysys/v1/kek`. For reading such a
    /// vault and re-wrapping its KEKs with [`RootKey::wrap_kek`]; nothing wraps this way
    /// any more. Fails like [`RootKey::unwrap_kek`], and for a format-2 KEK.
    pub fn unwrap_legacy_kek(&self, version: u32, wrapped: &[u8]) -> Result<Kek, KeyError> {
        let aad = aead::associated_data(PURPOSE_KEK_WRAP_LEGACY, &[version], &[]);
        let plaintext = aead::open(&self.key, &aad, wrapped)?;
        Ok(Kek::from_material(version, KeyMaterial::from_unwrapped(&plaintext)?))
    }

    /// The card fingerprint key (HKDF-SHA256, info `paysys/v1/fingerprint`).
    pub fn derive_fingerprint_key(&self) -> Result<FingerprintKey, KeyError> {
        FingerprintKey::derive(&self.key)
    }

    /// The audit chain key (HKDF-SHA256, info `paysys/v1/audit`).
    pub fn derive_audit_key(&self) -> Result<AuditKey, KeyError> {
        AuditKey::derive(&self.key)
    }

    /// The audit checkpoint signing key (Ed25519 over the HKDF-SHA256 seed with info
    /// `paysys/v1/audit-checkpoint`).
    pub fn derive_checkpoint_key(&self) -> Result<CheckpointSigningKey, KeyError> {
        CheckpointSigningKey::derive(&self.key)
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootKey").field("kcv", &self.kcv.to_hex()).finish_non_exhaustive()
    }
}

/// Key-encryption key: wraps DEKs. Versioned so `rotate kek` can add a new one and re-wrap
/// DEKs while the old one still unwraps what is stored under it.
///
/// Not `Clone`; `Debug` shows only version and KCV; wiped on drop.
pub struct Kek {
    key: KeyMaterial,
    version: u32,
    kcv: Kcv,
}

impl Kek {
    /// A fresh random KEK that will be known as `version`.
    pub fn generate(version: u32) -> Result<Kek, KeyError> {
        Ok(Kek::from_material(version, KeyMaterial::generate()?))
    }

    fn from_material(version: u32, key: KeyMaterial) -> Kek {
        let kcv = Kcv::of(&key);
        Kek { key, version, kcv }
    }

    /// The version this KEK was generated or unwrapped as.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Identifies the KEK in status output.
    pub fn kcv(&self) -> Kcv {
        self.kcv
    }

    /// Wraps `dek` for storage. AAD binds purpose `paysys/v1/dek`, the DEK's version and
    /// this KEK's version.
    pub fn wrap_dek(&self, dek: &Dek) -> Result<Vec<u8>, KeyError> {
        let aad = aead::associated_data(PURPOSE_DEK_WRAP, &[dek.version, self.version], &[]);
        aead::seal(&self.key, &aad, dek.key.expose_secret())
    }

    /// Unwraps a DEK stored as `version`. Fails with [`KeyError::Crypto`] under another KEK
    /// (or this key labelled with another KEK version), a different DEK version number, or on
    /// any change to `wrapped`.
    pub fn unwrap_dek(&self, version: u32, wrapped: &[u8]) -> Result<Dek, KeyError> {
        let aad = aead::associated_data(PURPOSE_DEK_WRAP, &[version, self.version], &[]);
        let plaintext = aead::open(&self.key, &aad, wrapped)?;
        Ok(Dek::from_material(version, KeyMaterial::from_unwrapped(&plaintext)?))
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("version", &self.version).field("kcv", &self.kcv.to_hex()).finish_non_exhaustive()
    }
}

/// Data-encryption key: seals card data with AES-256-GCM.
///
/// Not `Clone`; `Debug` shows only version, KCV and the seal count; wiped on drop.
pub struct Dek {
    key: KeyMaterial,
    version: u32,
    kcv: Kcv,
    /// Seals done with this key in this process. Each seal draws a random 96-bit nonce,
    /// and NIST SP 800-38D §8.3 caps a key at 2^32 such seals
    /// ([`RANDOM_NONCE_SEAL_LIMIT`](crate::RANDOM_NONCE_SEAL_LIMIT)); the vault reports
    /// this so operators rotate in time.
    encryptions: AtomicU64,
}

impl Dek {
    /// A fresh random DEK that will be known as `version`.
    pub fn generate(version: u32) -> Result<Dek, KeyError> {
        Ok(Dek::from_material(version, KeyMaterial::generate()?))
    }

    fn from_material(version: u32, key: KeyMaterial) -> Dek {
        let kcv = Kcv::of(&key);
        Dek { key, version, kcv, encryptions: AtomicU64::new(0) }
    }

    /// The version this DEK was generated or unwrapped as.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Identifies the DEK in status output.
    pub fn kcv(&self) -> Kcv {
        self.kcv
    }

    /// Seals card data. AAD = purpose `paysys/v1/data` + this DEK's version + each context
    /// item length-prefixed (u64 BE length || bytes), so a ciphertext bound to
    /// (token, merchant) cannot be opened with another token's context or another key version.
    ///
    /// Output: `nonce(12) || ciphertext || tag(16)`, a fresh random nonce each call.
    pub fn seal(&self, plaintext: &[u8], context: &[&[u8]]) -> Result<Vec<u8>, KeyError> {
        let aad = aead::associated_data(PURPOSE_DATA, &[self.version], context);
        // Counted before sealing: a nonce drawn is a nonce spent, even if the seal then fails.
        self.encryptions.fetch_add(1, Ordering::Relaxed);
        aead::seal(&self.key, &aad, plaintext)
    }

    /// Opens what [`Dek::seal`] produced with the same `context`. Any failure, including
    /// input shorter than 28 bytes, is [`KeyError::Crypto`].
    pub fn open(&self, sealed: &[u8], context: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let aad = aead::associated_data(PURPOSE_DATA, &[self.version], context);
        aead::open(&self.key, &aad, sealed)
    }

    /// How many seals this key has done in this process (for the AES-GCM per-key limit report).
    pub fn encryptions(&self) -> u64 {
        self.encryptions.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dek")
            .field("version", &self.version)
            .field("kcv", &self.kcv.to_hex())
            .field("encryptions", &self.encryptions())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_hex(key: &KeyMaterial) -> String {
        hex::encode(key.expose_secret())
    }

    /// No key type's `Debug` (plain or pretty) contains its key bytes, in hex or as a byte list.
    #[test]
    fn debug_of_every_key_type_prints_no_key_bytes() {
        let root = RootKey::generate().unwrap();
        let kek = Kek::generate(1).unwrap();
        let dek = Dek::generate(2).unwrap();
        let fingerprint_bytes = crate::derived::derive_key(&root.key, crate::derived::INFO_FINGERPRINT).unwrap();
        let audit_bytes = crate::derived::derive_key(&root.key, crate::derived::INFO_AUDIT).unwrap();
        let checkpoint_seed = crate::derived::derive_key(&root.key, crate::signing::INFO_CHECKPOINT).unwrap();
        let cases = [
            (format!("{root:?}|{root:#?}"), key_hex(&root.key), root.kcv),
            (format!("{kek:?}|{kek:#?}"), key_hex(&kek.key), kek.kcv),
            (format!("{dek:?}|{dek:#?}"), key_hex(&dek.key), dek.kcv),
            {
                let k = root.derive_fingerprint_key().unwrap();
                (format!("{k:?}|{k:#?}"), key_hex(&fingerprint_bytes), k.kcv())
            },
            {
                let k = root.derive_audit_key().unwrap();
                (format!("{k:?}|{k:#?}"), key_hex(&audit_bytes), k.kcv())
            },
        ];
        // The checkpoint key shows its (public) key id, never its seed.
        let checkpoint = root.derive_checkpoint_key().unwrap();
        let debug = format!("{checkpoint:?}|{checkpoint:#?}");
        assert!(debug.contains(&checkpoint.verifying_key().key_id()), "{debug}");
        for window in key_hex(&checkpoint_seed).as_bytes().chunks(8) {
            let window = std::str::from_utf8(window).unwrap();
            assert!(!debug.to_lowercase().contains(window), "{debug} contains seed bytes {window}");
        }
        for (debug, hex_key, kcv) in cases {
            assert!(debug.contains("kcv"), "{debug}");
            assert!(debug.contains(&kcv.to_hex()), "{debug}");
            // Any 4-byte window of the key, in hex (either case) or as decimal bytes.
            for window in hex_key.as_bytes().chunks(8) {
                let window = std::str::from_utf8(window).unwrap();
                assert!(!debug.to_lowercase().contains(window), "{debug} contains key bytes {window}");
            }
            let first_byte = u8::from_str_radix(&hex_key[..2], 16).unwrap();
            let second_byte = u8::from_str_radix(&hex_key[2..4], 16).unwrap();
            assert!(!debug.contains(&format!("[{first_byte}, {second_byte}")), "{debug}");
        }
        assert_eq!(format!("{:?}", root.key), "KeyMaterial([REDACTED])");
    }

    #[test]
    fn same_dek_bytes_under_another_version_cannot_open() {
        let dek = Dek::generate(1).unwrap();
        let sealed = dek.seal(b"4242424242424242", &[b"tok", b"m"]).unwrap();
        let relabelled = Dek::from_material(2, KeyMaterial::from_unwrapped(dek.key.expose_secret()).unwrap());
        assert_eq!(relabelled.kcv(), dek.kcv());
        assert_eq!(relabelled.open(&sealed, &[b"tok", b"m"]), Err(KeyError::Crypto));
        assert!(dek.open(&sealed, &[b"tok", b"m"]).is_ok());
    }

    #[test]
    fn same_kek_bytes_under_another_version_cannot_unwrap() {
        let kek = Kek::generate(1).unwrap();
        let dek = Dek::generate(1).unwrap();
        let wrapped = kek.wrap_dek(&dek).unwrap();
        let relabelled = Kek::from_material(2, KeyMaterial::from_unwrapped(kek.key.expose_secret()).unwrap());
        assert!(relabelled.unwrap_dek(1, &wrapped).is_err());
        assert!(kek.unwrap_dek(1, &wrapped).is_ok());
    }

    /// A genuine ciphertext under the right key and AAD, but not 32 bytes long, must not
    /// become a key.
    #[test]
    fn unwrapped_key_of_wrong_length_is_rejected() {
        let root = RootKey::generate().unwrap();
        let kek = Kek::generate(4).unwrap();
        for len in [0, 16, 31, 33, 64] {
            let plaintext = vec![7u8; len];
            let dek_aad = aead::associated_data(PURPOSE_DEK_WRAP, &[9, 4], &[]);
            let wrapped = aead::seal(&kek.key, &dek_aad, &plaintext).unwrap();
            assert_eq!(kek.unwrap_dek(9, &wrapped).err(), Some(KeyError::Crypto), "dek len {len}");
            let kek_aad = aead::associated_data(PURPOSE_KEK_WRAP, &[4], &[]);
            let wrapped = aead::seal(&root.kek_wrapping_key().unwrap(), &kek_aad, &plaintext).unwrap();
            assert_eq!(root.unwrap_kek(4, &wrapped).err(), Some(KeyError::Crypto), "kek len {len}");
            let legacy_aad = aead::associated_data(PURPOSE_KEK_WRAP_LEGACY, &[4], &[]);
            let wrapped = aead::seal(&root.key, &legacy_aad, &plaintext).unwrap();
            assert_eq!(root.unwrap_legacy_kek(4, &wrapped).err(), Some(KeyError::Crypto), "kek len {len}");
        }
    }

    /// What key format 1 stored: the KEK sealed under the root key itself.
    fn wrap_kek_legacy(root: &RootKey, kek: &Kek) -> Vec<u8> {
        let aad = aead::associated_data(PURPOSE_KEK_WRAP_LEGACY, &[kek.version], &[]);
        aead::seal(&root.key, &aad, kek.key.expose_secret()).unwrap()
    }

    /// A format-2 wrap is made under HKDF(root, `paysys/v1/kek-wrap`), not under the root
    /// key: it opens under that derived key with the v2 purpose and nothing else.
    #[test]
    fn keks_are_wrapped_under_the_derived_wrapping_key_not_the_root() {
        let root = RootKey::generate().unwrap();
        let kek = Kek::generate(5).unwrap();
        let wrapped = root.wrap_kek(&kek).unwrap();

        let mut wrapping_key = [0u8; 32];
        derived::hkdf_sha256(b"", root.key.expose_secret(), b"paysys/v1/kek-wrap", &mut wrapping_key).unwrap();
        let wrapping_key = KeyMaterial::from_unwrapped(&wrapping_key).unwrap();
        let aad = aead::associated_data(b"paysys/v2/kek", &[5], &[]);
        assert_eq!(&**aead::open(&wrapping_key, &aad, &wrapped).unwrap(), kek.key.expose_secret());
        // Not under the root key, with either purpose.
        assert!(aead::open(&root.key, &aad, &wrapped).is_err());
        let legacy_aad = aead::associated_data(PURPOSE_KEK_WRAP_LEGACY, &[5], &[]);
        assert!(aead::open(&root.key, &legacy_aad, &wrapped).is_err());
        assert_eq!(root.unwrap_legacy_kek(5, &wrapped).err(), Some(KeyError::Crypto));
    }

    /// A KEK stored by key format 1 opens with `unwrap_legacy_kek` only, and re-wrapped
    /// with `wrap_kek` it is the same KEK.
    #[test]
    fn legacy_keks_unwrap_and_rewrap_into_format_2() {
        let root = RootKey::generate().unwrap();
        let kek = Kek::generate(2).unwrap();
        let dek = Dek::generate(1).unwrap();
        let wrapped_dek = kek.wrap_dek(&dek).unwrap();
        let legacy = wrap_kek_legacy(&root, &kek);
        assert_eq!(root.unwrap_kek(2, &legacy).err(), Some(KeyError::Crypto));
        assert_eq!(root.unwrap_legacy_kek(1, &legacy).err(), Some(KeyError::Crypto), "version is bound");
        let unwrapped = root.unwrap_legacy_kek(2, &legacy).unwrap();
        let rewrapped = root.wrap_kek(&unwrapped).unwrap();
        let again = root.unwrap_kek(2, &rewrapped).unwrap();
        assert_eq!(again.kcv(), kek.kcv());
        assert_eq!(again.unwrap_dek(1, &wrapped_dek).unwrap().kcv(), dek.kcv());
    }

    #[test]
    fn dev_key_hex_is_the_key() {
        let root = RootKey::generate().unwrap();
        assert_eq!(*root.to_dev_key_hex(), key_hex(&root.key));
    }
}
