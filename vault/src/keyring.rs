//! The vault's keys while it is unsealed, and the sealed/unsealed switch.
//!
//! Only wrapped keys are ever stored. Unsealing rebuilds the key hierarchy in memory
//! from the root key; sealing drops it (every key type zeroizes on drop).

use crate::store::{KeyFormat, KeyKind, StoredKey};
use paysys_keys::{AuditKey, CheckpointSigningKey, Dek, FingerprintKey, Kek, KeyError, RootKey};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

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

/// Key states as stored. Only `active` and `decrypt_only` keys are held in memory:
/// a `retired` or `destroyed` version neither encrypts nor decrypts anything.
pub mod state {
    /// Encrypts (wraps) new data; one per kind.
    pub const ACTIVE: &str = "active";
    /// Still opens what is stored under it; seals nothing new.
    pub const DECRYPT_ONLY: &str = "decrypt_only";
    /// Nothing depends on it any more; not loaded at unseal.
    pub const RETIRED: &str = "retired";
    /// Wrapped material erased (crypto-shredding).
    pub const DESTROYED: &str = "destroyed";

    /// Is a key in this state held in memory while unsealed?
    pub fn is_loaded(state: &str) -> bool {
        state == ACTIVE || state == DECRYPT_ONLY
    }
}

/// What a keyring was built from: (kind, version, state, wrapped_by) of every stored key.
/// When the store says something else, another replica (or this one) changed the keys
/// and the keyring is rebuilt.
type Generation = Vec<(KeyKind, i64, String, i64)>;

fn generation_of(stored: &[StoredKey]) -> Generation {
    stored.iter().map(|k| (k.kind, k.version, k.state.clone(), k.wrapped_by)).collect()
}

/// The unsealed key hierarchy.
///
/// Keys sit behind `Arc`s so that a rebuilt keyring (after a rotation) shares the very
/// same key objects for the versions it keeps: their seal counters carry on, and no key
/// is unwrapped twice. The root key is dropped, and wiped, with the last keyring holding it.
pub struct Keyring {
    root: Arc<RootKey>,
    keks: BTreeMap<u32, Arc<Kek>>,
    active_kek: u32,
    deks: BTreeMap<u32, Arc<Dek>>,
    active_dek: u32,
    /// Seals already added to the store's per-key counters, per DEK version; shared by
    /// every rebuild of this keyring.
    flushed: Arc<Mutex<BTreeMap<u32, u64>>>,
    fingerprint: FingerprintKey,
    audit: AuditKey,
    checkpoint: CheckpointSigningKey,
    generation: Generation,
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

fn version_u32(v: i64, what: &'static str) -> Result<u32, UnsealError> {
    u32::try_from(v).map_err(|_| UnsealError::Inconsistent(what))
}

/// A stored KEK, unwrapped the way its format says: format 1 directly under the root
/// key, format 2 under the wrapping key derived from it.
pub(crate) fn unwrap_stored_kek(root: &RootKey, version: u32, row: &StoredKey) -> Result<Kek, KeyError> {
    match row.format {
        KeyFormat::V1 => root.unwrap_legacy_kek(version, &row.wrapped),
        KeyFormat::V2 => root.unwrap_kek(version, &row.wrapped),
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
                state: state::ACTIVE.into(),
                created_at: now_ms,
                format: KeyFormat::V2,
            },
            StoredKey {
                kind: KeyKind::Dek,
                version: 1,
                wrapped_by: 1,
                wrapped: kek.wrap_dek(&dek)?,
                kcv: dek.kcv().to_hex(),
                state: state::ACTIVE.into(),
                created_at: now_ms,
                format: KeyFormat::V2,
            },
        ];
        Ok((root, stored))
    }

    /// Rebuild the hierarchy from the root key and the stored wrapped keys.
    /// Every wrapped key is authenticated (AES-GCM), so a wrong root key fails here,
    /// before any card data is decrypted.
    pub fn unseal(root: RootKey, stored: &[StoredKey]) -> Result<Keyring, UnsealError> {
        Keyring::build(Arc::new(root), stored, None)
    }

    /// The same root key over a changed key store (after a rotation, retirement or
    /// destruction here or on another replica). Versions kept are shared, not unwrapped again.
    pub fn rebuild(&self, stored: &[StoredKey]) -> Result<Keyring, UnsealError> {
        Keyring::build(self.root.clone(), stored, Some(self))
    }

    /// Does this keyring reflect exactly these stored keys?
    pub fn is_current(&self, stored: &[StoredKey]) -> bool {
        self.generation == generation_of(stored)
    }

    fn build(root: Arc<RootKey>, stored: &[StoredKey], previous: Option<&Keyring>) -> Result<Keyring, UnsealError> {
        if stored.is_empty() {
            return Err(UnsealError::NotInitialized);
        }
        let mut keks = BTreeMap::new();
        let mut active_kek = None;
        for k in stored.iter().filter(|k| k.kind == KeyKind::Kek && state::is_loaded(&k.state)) {
            let version = version_u32(k.version, "KEK version out of range")?;
            let kek = match previous.and_then(|p| p.keks.get(&version)) {
                Some(kek) => kek.clone(),
                None => Arc::new(unwrap_stored_kek(&root, version, k).map_err(|_| UnsealError::WrongRootKey)?),
            };
            if k.state == state::ACTIVE {
                active_kek = Some(version);
            }
            keks.insert(version, kek);
        }
        let mut deks = BTreeMap::new();
        let mut active_dek = None;
        for k in stored.iter().filter(|k| k.kind == KeyKind::Dek && state::is_loaded(&k.state)) {
            let version = version_u32(k.version, "DEK version out of range")?;
            let dek = match previous.and_then(|p| p.deks.get(&version)) {
                Some(dek) => dek.clone(),
                None => {
                    let kek_version = version_u32(k.wrapped_by, "KEK version out of range")?;
                    let kek =
                        keks.get(&kek_version).ok_or(UnsealError::Inconsistent("a DEK is wrapped by a missing KEK"))?;
                    Arc::new(kek.unwrap_dek(version, &k.wrapped).map_err(|_| UnsealError::WrongRootKey)?)
                }
            };
            if k.state == state::ACTIVE {
                active_dek = Some(version);
            }
            deks.insert(version, dek);
        }
        let active_dek = active_dek.ok_or(UnsealError::Inconsistent("no active DEK"))?;
        let active_kek = active_kek.ok_or(UnsealError::Inconsistent("no active KEK"))?;
        let fingerprint = root.derive_fingerprint_key()?;
        let audit = root.derive_audit_key()?;
        let checkpoint = root.derive_checkpoint_key()?;
        let flushed = previous.map(|p| p.flushed.clone()).unwrap_or_default();
        Ok(Keyring {
            root,
            keks,
            active_kek,
            deks,
            active_dek,
            flushed,
            fingerprint,
            audit,
            checkpoint,
            generation: generation_of(stored),
        })
    }

    /// The DEK that seals new card data.
    pub fn active_dek(&self) -> Option<&Dek> {
        self.deks.get(&self.active_dek).map(Arc::as_ref)
    }

    /// A DEK by version, for opening existing records. `None` for a retired or
    /// destroyed version: nothing decrypts with it any more.
    pub fn dek(&self, version: u32) -> Option<&Dek> {
        self.deks.get(&version).map(Arc::as_ref)
    }

    /// The KEK that wraps new DEKs.
    pub fn active_kek(&self) -> Option<&Kek> {
        self.keks.get(&self.active_kek).map(Arc::as_ref)
    }

    /// A KEK by version (active or decrypt-only).
    pub fn kek(&self, version: u32) -> Option<&Kek> {
        self.keks.get(&version).map(Arc::as_ref)
    }

    /// The root key, to wrap a new KEK.
    pub(crate) fn root(&self) -> &RootKey {
        &self.root
    }

    pub fn fingerprint_key(&self) -> &FingerprintKey {
        &self.fingerprint
    }

    pub fn audit_key(&self) -> &AuditKey {
        &self.audit
    }

    /// Signs audit checkpoints (Ed25519); its public half is in `GET /v1/sys/status`.
    pub fn checkpoint_key(&self) -> &CheckpointSigningKey {
        &self.checkpoint
    }

    pub fn root_kcv(&self) -> String {
        self.root.kcv().to_hex()
    }

    /// Seal counts per DEK version in this process (for the AES-GCM per-key limit).
    pub fn dek_encryptions(&self) -> Vec<(u32, u64)> {
        self.deks.iter().map(|(v, d)| (*v, d.encryptions())).collect()
    }

    /// Seals done since the last call, per DEK version, to add to the store's counters.
    /// Marks them as counted; if storing them fails they are under-reported, never doubled.
    pub fn take_unflushed_seals(&self) -> Vec<(i64, i64)> {
        let Ok(mut flushed) = self.flushed.lock() else { return Vec::new() };
        let mut out = Vec::new();
        for (version, dek) in &self.deks {
            let now = dek.encryptions();
            let before = flushed.insert(*version, now).unwrap_or(0);
            if now > before {
                out.push((i64::from(*version), i64::try_from(now - before).unwrap_or(i64::MAX)));
            }
        }
        out
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

    /// Swap in a rebuilt keyring, if still unsealed. Returns false while sealed (a seal
    /// that raced the rebuild wins: keys are not brought back).
    pub fn replace(&self, keyring: Keyring) -> bool {
        match self.current.write() {
            Ok(mut guard) if guard.is_some() => {
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
