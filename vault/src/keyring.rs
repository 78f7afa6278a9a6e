//! The vault's keys while it is unsealed, and the sealed/unsealed switch.
//!
//! Only wrapped keys are ever stored. Unsealing rebuilds the key hierarchy in memory
//! from the root key; sealing drops it (every key type zeroizes on drop).

use crate::store::{KeyKind, StoredKey};
use paysys_keys::{AuditKey, Dek, FingerprintKey, Kek, KeyError, RootKey};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Why a root key could not unseal the stored key hierarchy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnsealError {
    /// No keys are stored: run `paysys-vault init` first.
    #[error("the key store is empty; run `paysys-vault init` first")]
    NotInitialized,
    /// A wrapped key did not open under the given root key (wrong key, or tampering).
    #[error("the root key does not open the stored keys")]
    WrongRootKey,
    /// Stored key rows are inconsistent (for example a DEK wrapped by a missing KEK).
    #[error("the key store is inconsistent: {0}")]
    Inconsistent(&'static str),
    /// Deriving a purpose key failed.
    #[error("key derivation failed")]
    Derive(#[from] KeyError),
}

/// The unsealed key hierarchy.
pub struct Keyring {
    root: RootKey,
    keks: BTreeMap<u32, Kek>,
    deks: BTreeMap<u32, Dek>,
    active_dek: u32,
    fingerprint: FingerprintKey,
    audit: AuditKey,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("root_kcv", &self.root.kcv().to_hex())
            .field("keks", &self.keks.keys().collect::<Vec<_>>())
            .field("deks", &self.deks.keys().collect::<Vec<_>>())
            .field("active_dek", &self.active_dek)
            .finish()
    }
}

impl Keyring {
    /// A brand-new hierarchy (root key, KEK 1, DEK 1) and its wrapped form to store.
    pub fn generate(now_ms: i64) -> Result<(RootKey, Vec<StoredKey>), KeyError> {
        let root = RootKey::generate()?;
        let kek = Kek::generate(1)?;
        let dek = Dek::generate(1)?;
        let stored = vec![
            StoredKey {
                kind: KeyKind::Kek,
                version: 1,
                wrapped_by: 0,
                wrapped: root.wrap_kek(&kek)?,
                kcv: kek.kcv().to_hex(),
                state: "active".into(),
                created_at: now_ms,
            },
            StoredKey {
                kind: KeyKind::Dek,
                version: 1,
                wrapped_by: 1,
                wrapped: kek.wrap_dek(&dek)?,
                kcv: dek.kcv().to_hex(),
                state: "active".into(),
                created_at: now_ms,
            },
        ];
        Ok((root, stored))
    }

    /// Rebuild the hierarchy from the root key and the stored wrapped keys.
    /// Every wrapped key is authenticated (AES-GCM), so a wrong root key fails here,
    /// before any card data is decrypted.
    pub fn unseal(root: RootKey, stored: &[StoredKey]) -> Result<Keyring, UnsealError> {
        if stored.is_empty() {
            return Err(UnsealError::NotInitialized);
        }
        let mut keks = BTreeMap::new();
        for k in stored.iter().filter(|k| k.kind == KeyKind::Kek && k.state != "destroyed") {
            let version =
                u32::try_from(k.version).map_err(|_| UnsealError::Inconsistent("KEK version out of range"))?;
            let kek = root.unwrap_kek(version, &k.wrapped).map_err(|_| UnsealError::WrongRootKey)?;
            keks.insert(version, kek);
        }
        let mut deks = BTreeMap::new();
        let mut active_dek = None;
        for k in stored.iter().filter(|k| k.kind == KeyKind::Dek && k.state != "destroyed") {
            let version =
                u32::try_from(k.version).map_err(|_| UnsealError::Inconsistent("DEK version out of range"))?;
            let kek_version =
                u32::try_from(k.wrapped_by).map_err(|_| UnsealError::Inconsistent("KEK version out of range"))?;
            let kek = keks.get(&kek_version).ok_or(UnsealError::Inconsistent("a DEK is wrapped by a missing KEK"))?;
            let dek = kek.unwrap_dek(version, &k.wrapped).map_err(|_| UnsealError::WrongRootKey)?;
            if k.state == "active" {
                active_dek = Some(version);
            }
            deks.insert(version, dek);
        }
        let active_dek = active_dek.ok_or(UnsealError::Inconsistent("no active DEK"))?;
        let fingerprint = root.derive_fingerprint_key()?;
        let audit = root.derive_audit_key()?;
        Ok(Keyring { root, keks, deks, active_dek, fingerprint, audit })
    }

    /// The DEK that seals new card data.
    pub fn active_dek(&self) -> Option<&Dek> {
        self.deks.get(&self.active_dek)
    }

    /// A DEK by version, for opening existing records.
    pub fn dek(&self, version: u32) -> Option<&Dek> {
        self.deks.get(&version)
    }

    pub fn fingerprint_key(&self) -> &FingerprintKey {
        &self.fingerprint
    }

    pub fn audit_key(&self) -> &AuditKey {
        &self.audit
    }

    pub fn root_kcv(&self) -> String {
        self.root.kcv().to_hex()
    }

    /// Seal counts per DEK version in this process (for the AES-GCM per-key limit).
    pub fn dek_encryptions(&self) -> Vec<(u32, u64)> {
        self.deks.iter().map(|(v, d)| (*v, d.encryptions())).collect()
    }
}

/// Sealed (no keys in memory) or unsealed (a [`Keyring`]). Requests take a cheap
/// `Arc` snapshot; sealing drops the vault's reference and the keys are zeroized
/// as soon as in-flight requests finish.
#[derive(Debug, Default)]
pub struct KeyState {
    current: RwLock<Option<Arc<Keyring>>>,
}

impl KeyState {
    /// The unsealed keyring, or `None` while sealed.
    pub fn get(&self) -> Option<Arc<Keyring>> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            // A poisoned lock means a writer panicked mid-update: treat as sealed.
            Err(_) => None,
        }
    }

    pub fn is_sealed(&self) -> bool {
        self.get().is_none()
    }

    /// Install an unsealed keyring. Returns false if one was already installed.
    pub fn install(&self, keyring: Keyring) -> bool {
        match self.current.write() {
            Ok(mut guard) if guard.is_none() => {
                *guard = Some(Arc::new(keyring));
                true
            }
            _ => false,
        }
    }

    /// Drop the keys from memory.
    pub fn seal(&self) {
        let old = match self.current.write() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(old);
    }
}
