//! Key lifecycle for security officers (PCI DSS 3.6–3.7): the custodian unseal
//! ceremony, rotation, re-encryption, retirement and destruction, and the background
//! tasks that keep a replica's keys in step with the store.
//!
//! # Layout
//!
//! * [`LifecycleConfig`] — cryptoperiods, request TTL, unseal timeout, re-encryption pace.
//! * [`Lifecycle`] — that configuration plus this process's custodian unseal progress.
//! * [`KeyAction`] and [`plan_action`] — what a rotate / retire / destroy does to the key
//!   store, as one [`KeyChange`], after checking that it may happen now.
//! * [`refresh_keyring`], [`run_key_sync`] — rebuild the in-memory keyring when the
//!   stored keys change (a rotation here or on another replica), and flush seal counts.
//! * [`run_reencryption`] — the resumable, throttled re-encryption worker.
//!
//! Unseal progress is per process: each replica is unsealed by its custodians. Every
//! key change is committed with its audit record through the committer, and a
//! re-encryption batch moves its records and the job's cursor in one transaction, so
//! a `kill -9` at any point leaves every record readable under exactly one DEK.

use crate::api::{now_ms, Vault};
use crate::committer::CommitError;
use crate::error::ApiError;
use crate::keyring::{state, Keyring, UnsealError};
use crate::store::{AuditEvent, KeyChange, KeyFormat, KeyKind, ReencryptBatch, ReencryptJob, StoreError, StoredKey};
use paysys_keys::{CustodianShare, Dek, Kcv, Kek, KeyError, RootKey, ShareError};
use paysys_policies::Operation;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `vault_meta` names.
pub mod meta {
    /// KCV of the root key in the current (key format 2, HMAC-SHA256) form, hex. Recorded
    /// at `init`, or at the first unseal of a vault initialized before format 2.
    pub const ROOT_KCV: &str = "root_kcv";
    /// KCV of the root key in the legacy (AES of a zero block) form, hex: only vaults
    /// initialized before key format 2 have it (migration 0003 renamed their `root_kcv`);
    /// their `pss1` custodian shares carry it and are checked against it.
    pub const ROOT_KCV_LEGACY: &str = "root_kcv_legacy";
    /// `custodians` or `dev`.
    pub const UNSEAL_MODE: &str = "unseal_mode";
    /// M: shares needed to unseal.
    pub const UNSEAL_THRESHOLD: &str = "unseal_threshold";
    /// N: shares made at `init`.
    pub const UNSEAL_SHARES: &str = "unseal_shares";
    /// Each share's commitment, recorded at `init` (`pss2` vaults):
    /// `index:hex index:hex …`, so the vault recognises each share on its own at unseal.
    pub const SHARE_COMMITMENTS: &str = "share_commitments";

    /// The `unseal_mode` of a vault initialized with custodian shares.
    pub const MODE_CUSTODIANS: &str = "custodians";
    /// The `unseal_mode` of a vault initialized with a dev root key file.
    pub const MODE_DEV: &str = "dev";
}

/// Operator-set limits of the key lifecycle.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// Started with `--dev`: the `{"key": hex}` unseal is accepted.
    pub dev: bool,
    /// Unseal progress older than this is discarded.
    pub unseal_timeout: Duration,
    /// Cryptoperiods after which `GET /v1/keys` flags a version as past due.
    pub kek_cryptoperiod_days: u32,
    pub dek_cryptoperiod_days: u32,
    /// How long a key request waits for its approval.
    pub request_ttl_ms: i64,
    /// Records per re-encryption batch (one transaction each).
    pub reencrypt_batch: i64,
    /// Pause between re-encryption batches, so the vault keeps serving.
    pub reencrypt_pause: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            dev: false,
            unseal_timeout: Duration::from_secs(600),
            kek_cryptoperiod_days: 365,
            dek_cryptoperiod_days: 90,
            request_ttl_ms: 24 * 3600 * 1000,
            reencrypt_batch: 500,
            reencrypt_pause: Duration::from_millis(10),
        }
    }
}

/// What this vault recorded at `init` to check custodian shares against (`vault_meta`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareChecks {
    /// The root KCV `pss2` shares carry.
    pub root_kcv: Option<Kcv>,
    /// The legacy root KCV `pss1` shares carry (vaults initialized before key format 2).
    pub root_kcv_legacy: Option<Kcv>,
    /// Each share's commitment by index; empty for vaults initialized before key format 2.
    pub commitments: BTreeMap<u8, String>,
}

impl ShareChecks {
    /// From the `vault_meta` entries.
    pub fn from_meta(entries: &[(String, String)]) -> ShareChecks {
        let get = |name: &str| entries.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let commitments = get(meta::SHARE_COMMITMENTS)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|entry| entry.split_once(':'))
            .filter_map(|(index, commitment)| Some((index.parse::<u8>().ok()?, commitment.to_owned())))
            .collect();
        ShareChecks {
            root_kcv: get(meta::ROOT_KCV).and_then(Kcv::from_hex),
            root_kcv_legacy: get(meta::ROOT_KCV_LEGACY).and_then(Kcv::from_hex),
            commitments,
        }
    }

    /// The `share_commitments` value recorded at `init` for these shares.
    pub fn commitments_entry(shares: &[CustodianShare]) -> String {
        shares.iter().map(|s| format!("{}:{}", s.index(), s.commitment_hex())).collect::<Vec<_>>().join(" ")
    }

    /// The root KCV a share must carry, in the share's own construction; `None` when this
    /// vault has none in that form (a `pss1` share at a vault initialized after format 2).
    fn root_kcv_for(&self, share: &CustodianShare) -> Option<Kcv> {
        if share.carries_legacy_kcv() {
            self.root_kcv_legacy
        } else {
            self.root_kcv
        }
    }
}

/// Shares collected so far by this process.
struct UnsealProgress {
    shares: Vec<CustodianShare>,
    /// Who gave each share (for the audit log once the vault is unsealed), same order.
    custodians: Vec<String>,
    started: Instant,
}

/// A share refused while the vault was sealed, kept until the next unseal writes it to
/// the audit log (there is no audit key before that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedShare {
    /// The principal that submitted it.
    pub custodian: String,
    /// The error code it was refused with, or `share_altered` for a share left out.
    pub code: &'static str,
    pub at_ms: i64,
}

/// At most this many refusals wait for the audit log; beyond it the oldest go (they are
/// in the process log too). Bounds what a client flooding the unseal endpoint can hold.
const MAX_PENDING_REFUSALS: usize = 1_000;

/// The lifecycle configuration and this process's unseal progress.
pub struct Lifecycle {
    pub config: LifecycleConfig,
    progress: Mutex<Option<UnsealProgress>>,
    refusals: Mutex<VecDeque<RefusedShare>>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle").field("config", &self.config).field("progress", &self.progress()).finish()
    }
}

/// The outcome of one accepted share.
#[derive(Debug)]
pub enum ShareOutcome {
    /// Accepted; `have` of `need` shares so far.
    Progress { have: usize, need: usize, check_value: String },
    /// The threshold was reached and the KCV matched: the root key. `custodians` gave the
    /// shares that rebuilt it; `left_out` gave shares that were wrong and were left out.
    Complete { root: RootKey, need: usize, check_value: String, custodians: Vec<String>, left_out: Vec<String> },
}

impl Lifecycle {
    pub fn new(config: LifecycleConfig) -> Lifecycle {
        Lifecycle { config, progress: Mutex::new(None), refusals: Mutex::new(VecDeque::new()) }
    }

    /// (shares given, threshold) of the unseal in progress, after applying the timeout.
    pub fn progress(&self) -> (usize, Option<usize>) {
        let Ok(mut guard) = self.progress.lock() else { return (0, None) };
        self.expire(&mut guard);
        match guard.as_ref() {
            Some(p) => (p.shares.len(), p.shares.first().map(|s| usize::from(s.threshold()))),
            None => (0, None),
        }
    }

    fn expire(&self, progress: &mut Option<UnsealProgress>) {
        if progress.as_ref().is_some_and(|p| p.started.elapsed() > self.config.unseal_timeout) {
            tracing::warn!("unseal progress timed out; the shares given so far were discarded");
            *progress = None;
        }
    }

    /// Forget the shares given so far (they are wiped as they drop).
    pub fn reset_progress(&self) {
        if let Ok(mut guard) = self.progress.lock() {
            *guard = None;
        }
    }

    /// Refusals recorded since the last call, oldest first, for the audit log.
    pub fn take_refusals(&self) -> Vec<RefusedShare> {
        match self.refusals.lock() {
            Ok(mut refusals) => refusals.drain(..).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn record_refusal(&self, custodian: &str, code: &'static str) {
        if let Ok(mut refusals) = self.refusals.lock() {
            if refusals.len() >= MAX_PENDING_REFUSALS {
                refusals.pop_front();
            }
            refusals.push_back(RefusedShare { custodian: custodian.to_owned(), code, at_ms: now_ms() });
        }
    }

    /// Take one custodian share from `custodian` (the client certificate's principal).
    ///
    /// How a bad share is handled, so that it never costs the other custodians their turn:
    ///
    /// * malformed or mistyped (`share_invalid`), another vault's (`share_foreign`), another
    ///   ceremony's (`share_mixed_splits`), a repeat of a share already given
    ///   (`share_duplicate`), or a second share from the same principal
    ///   (`custodian_already_submitted`): refused, progress kept;
    /// * altered — well formed, right vault, valid checksum, but not the share recorded at
    ///   `init`: on a vault with share commitments (initialized with key format 2) it is
    ///   recognised on its own and refused (`share_altered`), progress kept;
    /// * on a vault without commitments (initialized before key format 2, `pss1` shares) a
    ///   wrong share can only show when M shares fail to rebuild the root key: the answer
    ///   is `unseal_failed`, but the shares are kept, and with one more the vault looks for
    ///   M that do rebuild it and leaves the wrong one out.
    ///
    /// Only the timeout (or a seal) discards progress. Every refusal, and every share left
    /// out, is written to the audit log at the next unseal.
    pub fn submit_share(&self, text: &str, checks: &ShareChecks, custodian: &str) -> Result<ShareOutcome, ApiError> {
        let outcome = self.accept_share(text, checks, custodian);
        match &outcome {
            Err(e) => self.record_refusal(custodian, e.code()),
            Ok(ShareOutcome::Complete { left_out, .. }) => {
                for wrong in left_out {
                    self.record_refusal(wrong, "share_altered");
                }
            }
            Ok(ShareOutcome::Progress { .. }) => {}
        }
        outcome
    }

    fn accept_share(&self, text: &str, checks: &ShareChecks, custodian: &str) -> Result<ShareOutcome, ApiError> {
        let share = CustodianShare::parse(text).map_err(|e| share_error(&e))?;
        let check_value = share.check_value().to_hex();
        let expected = checks.root_kcv_for(&share).ok_or(ApiError::ShareForeign)?;
        if share.vault_kcv() != expected {
            return Err(ApiError::ShareForeign);
        }
        if !checks.commitments.is_empty() {
            let recorded = checks.commitments.get(&share.index());
            if !recorded.is_some_and(|commitment| share.matches_commitment(commitment)) {
                return Err(ApiError::ShareAltered);
            }
        }
        let mut guard = self.progress.lock().map_err(|_| ApiError::Internal("unseal state poisoned".into()))?;
        self.expire(&mut guard);
        let progress = guard.get_or_insert_with(|| UnsealProgress {
            shares: Vec::new(),
            custodians: Vec::new(),
            started: Instant::now(),
        });
        // Split knowledge means M *people*: one certificate holding two shares is refused
        // before its second share is looked at any further.
        if progress.custodians.iter().any(|c| c == custodian) {
            return Err(ApiError::CustodianAlreadySubmitted);
        }
        progress.shares.push(share);
        progress.custodians.push(custodian.to_owned());
        let need = progress.shares.first().map(|s| usize::from(s.threshold())).unwrap_or(0);
        match RootKey::combine_leaving_out_wrong(&progress.shares, &expected) {
            Ok((root, left_out_indices)) => {
                let mut custodians = Vec::new();
                let mut left_out = Vec::new();
                for (share, who) in progress.shares.iter().zip(std::mem::take(&mut progress.custodians)) {
                    if left_out_indices.contains(&share.index()) {
                        left_out.push(who);
                    } else {
                        custodians.push(who);
                    }
                }
                *guard = None;
                Ok(ShareOutcome::Complete { root, need, check_value, custodians, left_out })
            }
            Err(KeyError::Share(ShareError::Insufficient)) => {
                Ok(ShareOutcome::Progress { have: progress.shares.len(), need, check_value })
            }
            // Which share is wrong cannot be told yet: keep them all (this one may be the
            // right one) and let one more share settle it.
            Err(KeyError::Share(ShareError::KcvMismatch)) => Err(ApiError::UnsealFailed),
            Err(e) => {
                // Refused: take this share back out, keep the others.
                progress.shares.pop();
                progress.custodians.pop();
                if progress.shares.is_empty() {
                    *guard = None;
                }
                Err(share_error(&e))
            }
        }
    }
}

/// A refused share as an API error.
fn share_error(e: &KeyError) -> ApiError {
    match e {
        KeyError::Share(ShareError::Malformed | ShareError::Checksum) => ApiError::ShareInvalid,
        KeyError::Share(ShareError::Duplicate) => ApiError::ShareDuplicate,
        KeyError::Share(ShareError::ForeignVault) => ApiError::ShareForeign,
        KeyError::Share(ShareError::MixedSplits) => ApiError::ShareMixed,
        KeyError::Share(ShareError::KcvMismatch) => ApiError::UnsealFailed,
        _ => ApiError::Internal("share check failed".into()),
    }
}

/// A key operation an officer can request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    RotateKek,
    RotateDek,
    Retire { kind: KeyKind, version: i64 },
    Destroy { kind: KeyKind, version: i64, force: bool },
}

impl KeyAction {
    /// From the request body's fields.
    pub fn parse(action: &str, kind: Option<&str>, version: Option<i64>, force: bool) -> Result<KeyAction, ApiError> {
        let kind = match kind.unwrap_or("dek") {
            "dek" => KeyKind::Dek,
            "kek" => KeyKind::Kek,
            _ => return Err(ApiError::InvalidRequest("kind must be \"dek\" or \"kek\"".into())),
        };
        let need_version = || version.ok_or_else(|| ApiError::InvalidRequest("version is required".into()));
        let action = match action {
            "rotate_kek" => KeyAction::RotateKek,
            "rotate_dek" => KeyAction::RotateDek,
            "retire" => KeyAction::Retire { kind, version: need_version()? },
            "destroy" => KeyAction::Destroy { kind, version: need_version()?, force },
            _ => {
                return Err(ApiError::InvalidRequest("action must be rotate_kek, rotate_dek, retire or destroy".into()))
            }
        };
        if force && !matches!(action, KeyAction::Destroy { .. }) {
            return Err(ApiError::InvalidRequest("force applies to destroy only".into()));
        }
        Ok(action)
    }

    /// The policy operation that governs it.
    pub fn operation(&self) -> Operation {
        match self {
            KeyAction::RotateKek | KeyAction::RotateDek => Operation::KeysRotate,
            KeyAction::Retire { .. } => Operation::KeysRetire,
            KeyAction::Destroy { .. } => Operation::KeysDestroy,
        }
    }

    /// `rotate_kek`, `rotate_dek`, `retire`, `destroy`.
    pub fn name(&self) -> &'static str {
        match self {
            KeyAction::RotateKek => "rotate_kek",
            KeyAction::RotateDek => "rotate_dek",
            KeyAction::Retire { .. } => "retire",
            KeyAction::Destroy { .. } => "destroy",
        }
    }

    pub fn kind(&self) -> Option<KeyKind> {
        match self {
            KeyAction::Retire { kind, .. } | KeyAction::Destroy { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub fn version(&self) -> Option<i64> {
        match self {
            KeyAction::Retire { version, .. } | KeyAction::Destroy { version, .. } => Some(*version),
            _ => None,
        }
    }

    pub fn force(&self) -> bool {
        matches!(self, KeyAction::Destroy { force: true, .. })
    }
}

fn key_failure(_: KeyError) -> ApiError {
    ApiError::Internal("a key operation failed".into())
}

fn u32_version(v: i64) -> Result<u32, ApiError> {
    u32::try_from(v).map_err(|_| ApiError::Internal("key version out of range".into()))
}

/// What `action` would change now, or why it may not happen. Checked when a request is
/// made (so an officer learns at once) and again when it executes.
///
/// `approved` says whether a second officer approves it (needed for a forced destroy).
pub async fn plan_action(
    vault: &Vault,
    keyring: &Keyring,
    action: &KeyAction,
    approved: bool,
) -> Result<(KeyChange, String), ApiError> {
    let stored = vault.store.load_keys().await?;
    let now = now_ms();
    let max_version = |kind: KeyKind| stored.iter().filter(|k| k.kind == kind).map(|k| k.version).max().unwrap_or(0);
    let mut change = KeyChange::default();
    match action {
        KeyAction::RotateKek => {
            let version = max_version(KeyKind::Kek) + 1;
            let kek = Kek::generate(u32_version(version)?).map_err(key_failure)?;
            change.insert_keys.push(StoredKey {
                kind: KeyKind::Kek,
                version,
                wrapped_by: 0,
                wrapped: keyring.root().wrap_kek(&kek).map_err(key_failure)?,
                kcv: kek.kcv().to_hex(),
                state: state::ACTIVE.into(),
                created_at: now,
                format: KeyFormat::V2,
            });
            for old in stored.iter().filter(|k| k.kind == KeyKind::Kek && k.state == state::ACTIVE) {
                change.update_keys.push(StoredKey { state: state::DECRYPT_ONLY.into(), ..old.clone() });
            }
            // Every DEK that still has material moves under the new KEK; no card data is touched.
            let mut rewrapped = 0;
            for dek_row in stored.iter().filter(|k| k.kind == KeyKind::Dek && k.state != state::DESTROYED) {
                let parent = keyring
                    .kek(u32_version(dek_row.wrapped_by)?)
                    .ok_or_else(|| ApiError::Internal("a DEK is wrapped by a KEK that is not loaded".into()))?;
                let dek = parent.unwrap_dek(u32_version(dek_row.version)?, &dek_row.wrapped).map_err(key_failure)?;
                change.update_keys.push(StoredKey {
                    wrapped: kek.wrap_dek(&dek).map_err(key_failure)?,
                    wrapped_by: version,
                    ..dek_row.clone()
                });
                rewrapped += 1;
            }
            Ok((change, format!("kek v{version} ({}) active; {rewrapped} DEKs rewrapped", kek.kcv())))
        }
        KeyAction::RotateDek => {
            let jobs = vault.store.reencrypt_jobs().await?;
            if jobs.iter().any(|j| j.state == "running") {
                return Err(ApiError::ReencryptionRunning);
            }
            let kek = keyring.active_kek().ok_or_else(|| ApiError::Internal("no active KEK".into()))?;
            let version = max_version(KeyKind::Dek) + 1;
            let dek = Dek::generate(u32_version(version)?).map_err(key_failure)?;
            change.insert_keys.push(StoredKey {
                kind: KeyKind::Dek,
                version,
                wrapped_by: i64::from(kek.version()),
                wrapped: kek.wrap_dek(&dek).map_err(key_failure)?,
                kcv: dek.kcv().to_hex(),
                state: state::ACTIVE.into(),
                created_at: now,
                format: KeyFormat::V2,
            });
            let usage = vault.store.dek_usage().await?;
            let mut from = None;
            for old in stored.iter().filter(|k| k.kind == KeyKind::Dek && k.state == state::ACTIVE) {
                change.update_keys.push(StoredKey { state: state::DECRYPT_ONLY.into(), ..old.clone() });
                from = Some(old.version);
            }
            let from = from.ok_or_else(|| ApiError::Internal("no active DEK".into()))?;
            let total = usage.iter().find(|u| u.version == from).map(|u| u.cards + u.cvcs).unwrap_or(0);
            change.start_job = Some((from, version, total, now));
            Ok((change, format!("dek v{version} ({}) active; re-encrypting {total} records from v{from}", dek.kcv())))
        }
        KeyAction::Retire { kind, version } | KeyAction::Destroy { kind, version, .. } => {
            let row =
                stored.iter().find(|k| k.kind == *kind && k.version == *version).ok_or(ApiError::VersionNotFound)?;
            if row.state == state::ACTIVE {
                return Err(ApiError::VersionActive);
            }
            let destroying = matches!(action, KeyAction::Destroy { .. });
            if row.state == state::DESTROYED || (!destroying && row.state == state::RETIRED) {
                return Err(ApiError::VersionState);
            }
            let dependents = match kind {
                KeyKind::Dek => {
                    let usage = vault.store.dek_usage().await?;
                    let records = usage.iter().find(|u| u.version == *version).map(|u| u.cards + u.cvcs).unwrap_or(0);
                    let job = vault
                        .store
                        .reencrypt_jobs()
                        .await?
                        .iter()
                        .any(|j| j.state == "running" && (j.from_version == *version || j.to_version == *version));
                    records + i64::from(job)
                }
                KeyKind::Kek => {
                    let deks = stored
                        .iter()
                        .filter(|k| k.kind == KeyKind::Dek && k.state != state::DESTROYED && k.wrapped_by == *version)
                        .count();
                    i64::try_from(deks).unwrap_or(i64::MAX)
                }
            };
            let label = format!("{} v{version}", kind.as_str());
            if !destroying {
                if dependents > 0 {
                    return Err(ApiError::VersionInUse);
                }
                change.update_keys.push(StoredKey { state: state::RETIRED.into(), ..row.clone() });
                return Ok((change, format!("{label} retired")));
            }
            if dependents > 0 {
                // A KEK with DEKs under it is never destroyed: the DEKs (and the vault's
                // unseal) would go with it. A DEK only with `force` and a second officer.
                if !action.force() || *kind == KeyKind::Kek {
                    return Err(ApiError::VersionInUse);
                }
                if !approved {
                    return Err(ApiError::ForceRequiresApproval);
                }
            }
            change.update_keys.push(StoredKey { state: state::DESTROYED.into(), wrapped: Vec::new(), ..row.clone() });
            Ok((change, format!("{label} destroyed ({dependents} dependent records crypto-shredded)")))
        }
    }
}

/// Commit a key change with its audit record, then bring the keyring up to date.
pub async fn commit_and_refresh(vault: &Vault, change: KeyChange, audit: AuditEvent) -> Result<(), ApiError> {
    match vault.committer.commit_key_change(change, audit).await {
        Ok(()) => {}
        Err(CommitError::Store(StoreError::Conflict(detail))) => {
            tracing::info!(%detail, "key change lost a race");
            return Err(ApiError::KeyChangeConflict);
        }
        Err(e) => return Err(e.into()),
    }
    refresh_keyring(vault).await
}

/// Moves whatever is still in key format 1 to format 2, once the vault is unsealed:
/// every KEK that still has material is unwrapped the old way (directly under the root
/// key) and re-wrapped under the derived KEK-wrapping key; every KEK and DEK gets its KCV
/// recomputed; and the format-2 root KCV is recorded beside the legacy one. All of it in
/// one transaction with one `keys.migrate` audit record, so a crash leaves either the old
/// rows or the new ones, and the vault reads both.
///
/// Rows are updated only while still in format 1, so two replicas unsealed at once migrate
/// once (the loser's change conflicts and is dropped). Destroyed keys have no material
/// left to compute a KCV from and keep theirs. Returns what was migrated, or `None` when
/// there was nothing to do. The unwrapped keys are the ones already in memory, so the
/// keyring itself does not change.
pub async fn migrate_key_format(vault: &Vault) -> Result<Option<String>, ApiError> {
    let keyring = vault.keyring()?;
    let stored = vault.store.load_keys().await?;
    let checks = ShareChecks::from_meta(&vault.store.meta().await?);
    let root = keyring.root();
    let mut change = KeyChange::default();
    let mut keks = BTreeMap::new();
    for row in stored.iter().filter(|k| k.kind == KeyKind::Kek && !k.wrapped.is_empty()) {
        let version = u32_version(row.version)?;
        let kek = crate::keyring::unwrap_stored_kek(root, version, row)
            .map_err(|_| ApiError::Internal(format!("kek v{version} does not unwrap under the root key")))?;
        if row.format == KeyFormat::V1 {
            change.migrate_keys.push(StoredKey {
                wrapped: root.wrap_kek(&kek).map_err(key_failure)?,
                kcv: kek.kcv().to_hex(),
                format: KeyFormat::V2,
                ..row.clone()
            });
        }
        keks.insert(row.version, kek);
    }
    for row in stored.iter().filter(|k| k.kind == KeyKind::Dek && k.format == KeyFormat::V1 && !k.wrapped.is_empty()) {
        let version = u32_version(row.version)?;
        let Some(kek) = keks.get(&row.wrapped_by) else {
            tracing::warn!(
                dek = version,
                kek = row.wrapped_by,
                "a DEK's KEK has no material: its KCV stays in format 1"
            );
            continue;
        };
        let dek = kek
            .unwrap_dek(version, &row.wrapped)
            .map_err(|_| ApiError::Internal(format!("dek v{version} does not unwrap under its KEK")))?;
        change.migrate_keys.push(StoredKey { kcv: dek.kcv().to_hex(), format: KeyFormat::V2, ..row.clone() });
    }
    if checks.root_kcv != Some(root.kcv()) {
        change.set_meta.push((meta::ROOT_KCV.to_owned(), root.kcv().to_hex()));
    }
    if change.migrate_keys.is_empty() && change.set_meta.is_empty() {
        return Ok(None);
    }
    let summary = format!(
        "{} KEKs re-wrapped under the derived wrapping key, {} KCVs recomputed, root KCV {}",
        change.migrate_keys.iter().filter(|k| k.kind == KeyKind::Kek).count(),
        change.migrate_keys.len(),
        root.kcv()
    );
    let mut event = worker_event("keys.migrate", "key_format_2".into(), "ok", 0);
    event.principal = "local:paysys-vault-migrate".into();
    event.key_version = None;
    match vault.committer.commit_key_change(change, event).await {
        Ok(()) => {}
        Err(CommitError::Store(StoreError::Conflict(detail))) => {
            tracing::info!(%detail, "key format migration done by another replica");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    tracing::warn!(%summary, "migrated the key store to key format 2");
    Ok(Some(summary))
}

/// Rebuild the keyring if the stored keys changed. No-op while sealed.
pub async fn refresh_keyring(vault: &Vault) -> Result<(), ApiError> {
    let Some(keyring) = vault.keys.get() else { return Ok(()) };
    let stored = vault.store.load_keys().await?;
    if keyring.is_current(&stored) {
        return Ok(());
    }
    match keyring.rebuild(&stored) {
        Ok(rebuilt) => {
            vault.keys.replace(rebuilt);
            tracing::info!("keyring rebuilt after a key change");
            Ok(())
        }
        Err(e @ (UnsealError::NotInitialized | UnsealError::WrongRootKey | UnsealError::Inconsistent(_))) => {
            Err(ApiError::Internal(e.to_string()))
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// Every `every`: rebuild the keyring if another replica changed the keys, and add this
/// process's seal counts to the store.
pub async fn run_key_sync(vault: Arc<Vault>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = refresh_keyring(&vault).await {
            tracing::warn!(code = e.code(), "keyring refresh failed");
        }
        flush_seal_counts(&vault).await;
    }
}

/// Add this process's new seal counts to the store's per-DEK counters.
pub async fn flush_seal_counts(vault: &Vault) {
    let Some(keyring) = vault.keys.get() else { return };
    let deltas = keyring.take_unflushed_seals();
    if let Err(e) = vault.store.add_seals(&deltas).await {
        tracing::warn!(error = %e, "could not record seal counts");
    }
}

/// The audit event of a background lifecycle step (no request, no officer).
fn worker_event(operation: &str, request_id: String, outcome: &str, key_version: i64) -> AuditEvent {
    AuditEvent {
        at: now_ms(),
        request_id,
        principal: "local:paysys-vault-reencrypt".into(),
        operation: operation.into(),
        merchant_id: None,
        token: None,
        decision: "allow".into(),
        outcome: outcome.into(),
        key_version: Some(key_version),
    }
}

/// Move card records of running re-encryption jobs to their new DEK, batch by batch,
/// forever. Picks up a job left running by a killed process as soon as the vault is
/// unsealed: the job and its cursor are in the store.
pub async fn run_reencryption(vault: Arc<Vault>) {
    let idle = Duration::from_millis(500);
    loop {
        let pause = match reencrypt_step(&vault).await {
            Ok(true) => vault.lifecycle.config.reencrypt_pause,
            Ok(false) => idle,
            Err(e) => {
                if !matches!(e, ApiError::Sealed) {
                    tracing::warn!(code = e.code(), "re-encryption batch failed; retrying");
                }
                idle
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// One batch of the running job, if any. `Ok(true)`: there may be more to do now.
pub async fn reencrypt_step(vault: &Vault) -> Result<bool, ApiError> {
    let keyring = vault.keyring()?;
    let jobs = vault.store.reencrypt_jobs().await?;
    let Some(job) = jobs.into_iter().find(|j| j.state == "running") else { return Ok(false) };
    let (Some(from), Some(to)) =
        (keyring.dek(u32_version(job.from_version)?), keyring.dek(u32_version(job.to_version)?))
    else {
        // A replica that has not seen the rotation yet, or a source DEK gone.
        refresh_keyring(vault).await?;
        let keyring = vault.keyring()?;
        if keyring.dek(u32_version(job.to_version)?).is_some() && keyring.dek(u32_version(job.from_version)?).is_none()
        {
            finish_job(vault, &job, "failed", Some("the source DEK is no longer available".into())).await?;
        }
        return Ok(false);
    };
    let limit = vault.lifecycle.config.reencrypt_batch.max(1);
    let cards = vault.store.cards_for_reencrypt(job.from_version, &job.cursor, limit).await?;
    let cvcs =
        if cards.is_empty() { vault.store.cvcs_for_reencrypt(job.from_version, limit).await? } else { Vec::new() };
    if cards.is_empty() && cvcs.is_empty() {
        let usage = vault.store.dek_usage().await?;
        let left = usage.iter().find(|u| u.version == job.from_version).map(|u| u.cards + u.cvcs).unwrap_or(0);
        if left == 0 {
            finish_job(vault, &job, "done", None).await?;
            return Ok(false);
        }
        if job.cursor.is_empty() {
            // Records left that are neither found by token nor as CVCs: should not happen.
            finish_job(vault, &job, "failed", Some(format!("{left} records could not be found"))).await?;
            return Ok(false);
        }
        // Cards written under the old DEK behind the cursor (a replica that had not yet
        // seen the rotation): one more pass from the start.
        let batch = ReencryptBatch {
            job_id: job.id,
            from_version: job.from_version,
            to_version: job.to_version,
            cards: Vec::new(),
            cvcs: Vec::new(),
            cursor: String::new(),
            now: now_ms(),
        };
        let change = KeyChange { reencrypt: Some(batch), ..KeyChange::default() };
        let event = worker_event("keys.reencrypt", format!("job_{}", job.id), "rescan", job.to_version);
        commit_and_refresh(vault, change, event).await?;
        return Ok(true);
    }
    let mut batch = ReencryptBatch {
        job_id: job.id,
        from_version: job.from_version,
        to_version: job.to_version,
        cards: Vec::with_capacity(cards.len()),
        cvcs: Vec::with_capacity(cvcs.len()),
        cursor: cards.last().map(|c| c.token.clone()).unwrap_or_else(|| job.cursor.clone()),
        now: now_ms(),
    };
    for card in &cards {
        let context: [&[u8]; 2] = [card.token.as_bytes(), card.merchant_id.as_bytes()];
        let Ok(plaintext) = from.open(&card.ciphertext, &context) else {
            let error = format!("card {} does not open under dek v{}", card.token, job.from_version);
            finish_job(vault, &job, "failed", Some(error)).await?;
            return Ok(false);
        };
        batch.cards.push((card.token.clone(), to.seal(&plaintext, &context).map_err(key_failure)?));
    }
    for (cvc, merchant) in &cvcs {
        let context: [&[u8]; 3] = [cvc.token.as_bytes(), merchant.as_bytes(), b"cvc"];
        let Ok(plaintext) = from.open(&cvc.ciphertext, &context) else {
            let error = format!("the CVC of {} does not open under dek v{}", cvc.token, job.from_version);
            finish_job(vault, &job, "failed", Some(error)).await?;
            return Ok(false);
        };
        batch.cvcs.push((cvc.token.clone(), to.seal(&plaintext, &context).map_err(key_failure)?));
    }
    let moved = batch.cards.len() + batch.cvcs.len();
    let change = KeyChange { reencrypt: Some(batch), ..KeyChange::default() };
    let event = worker_event("keys.reencrypt", format!("job_{}", job.id), "ok", job.to_version);
    match vault.committer.commit_key_change(change, event).await {
        Ok(()) => {}
        // The job was finished elsewhere (another replica): nothing to do.
        Err(CommitError::Store(StoreError::Conflict(_))) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    tracing::debug!(job = job.id, moved, "re-encryption batch committed");
    Ok(true)
}

async fn finish_job(vault: &Vault, job: &ReencryptJob, outcome: &str, error: Option<String>) -> Result<(), ApiError> {
    if let Some(e) = &error {
        tracing::error!(job = job.id, error = %e, "re-encryption job failed");
    } else {
        tracing::info!(job = job.id, from = job.from_version, to = job.to_version, "re-encryption job done");
    }
    let change = KeyChange { finish_job: Some((job.id, outcome.into(), error, now_ms())), ..KeyChange::default() };
    let event = worker_event("keys.reencrypt", format!("job_{}", job.id), outcome, job.to_version);
    vault.committer.commit_key_change(change, event).await.map_err(ApiError::from)
}

/// A fresh request id: `kreq_` + 32 hex characters.
pub fn new_request_id() -> String {
    use rand::Rng;
    let n: u128 = rand::rngs::OsRng.gen();
    format!("kreq_{n:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifecycle(timeout: Duration) -> Lifecycle {
        Lifecycle::new(LifecycleConfig { unseal_timeout: timeout, ..LifecycleConfig::default() })
    }

    /// What `init` records, for these shares of `root`.
    fn checks_for(root: &RootKey, shares: &[CustodianShare]) -> ShareChecks {
        ShareChecks {
            root_kcv: Some(root.kcv()),
            root_kcv_legacy: None,
            commitments: ShareChecks::from_meta(&[(
                meta::SHARE_COMMITMENTS.to_owned(),
                ShareChecks::commitments_entry(shares),
            )])
            .commitments,
        }
    }

    fn texts(shares: &[CustodianShare]) -> Vec<String> {
        shares.iter().map(|s| s.to_text().to_string()).collect()
    }

    /// `text` with the first byte of its value changed and the checksum recomputed: what a
    /// custodian (or whoever altered a share on paper) could hand in on purpose.
    fn altered(text: &str) -> String {
        let mut fields: Vec<String> = text.split('-').map(str::to_owned).collect();
        let mut value = hex::decode(&fields[5]).unwrap();
        value[0] ^= 0x5a;
        fields[5] = hex::encode(&value);
        let domain: &[u8] = if fields[0] == "pss1" {
            b"paysys/v1/custodian-share-checksum"
        } else {
            b"paysys/v2/custodian-share-checksum"
        };
        let number = |f: &str| f[1..].parse::<u8>().unwrap();
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(domain);
        context.update(&hex::decode(&fields[1]).unwrap());
        context.update(&hex::decode(&fields[2]).unwrap());
        context.update(&[number(&fields[3]), number(&fields[4])]);
        context.update(&value);
        fields[6] = hex::encode(&context.finish().as_ref()[..4]);
        let text = fields.join("-");
        assert!(CustodianShare::parse(&text).is_ok(), "the altered share passes its checksum");
        text
    }

    #[test]
    fn shares_accumulate_to_the_threshold_and_refusals_keep_progress() {
        let root = RootKey::generate().unwrap();
        let split = root.split(3, 5).unwrap();
        let checks = checks_for(&root, &split);
        let shares = texts(&split);
        let other = RootKey::generate().unwrap().split(2, 2).unwrap()[0].to_text().to_string();
        let unseal = lifecycle(Duration::from_secs(600));

        assert!(matches!(
            unseal.submit_share(&shares[0], &checks, "alice"),
            Ok(ShareOutcome::Progress { have: 1, need: 3, .. })
        ));
        assert!(matches!(unseal.submit_share(&shares[0], &checks, "bob"), Err(ApiError::ShareDuplicate)));
        assert!(matches!(unseal.submit_share(&other, &checks, "bob"), Err(ApiError::ShareForeign)));
        assert!(matches!(unseal.submit_share("pss1-nonsense", &checks, "bob"), Err(ApiError::ShareInvalid)));
        assert_eq!(unseal.progress(), (1, Some(3)));
        assert!(matches!(unseal.submit_share(&shares[4], &checks, "bob"), Ok(ShareOutcome::Progress { have: 2, .. })));
        match unseal.submit_share(&shares[2], &checks, "carol") {
            Ok(ShareOutcome::Complete { root: rebuilt, need: 3, custodians, left_out, .. }) => {
                assert_eq!(rebuilt.kcv(), root.kcv());
                assert_eq!(custodians, ["alice", "bob", "carol"]);
                assert!(left_out.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(unseal.progress(), (0, None));
        let refused: Vec<(String, &str)> = unseal.take_refusals().into_iter().map(|r| (r.custodian, r.code)).collect();
        assert_eq!(
            refused,
            [("bob".into(), "share_duplicate"), ("bob".into(), "share_foreign"), ("bob".into(), "share_invalid")]
        );
        assert!(unseal.take_refusals().is_empty(), "taken once");
    }

    /// Split knowledge is M people: one principal's second share of the same attempt is
    /// refused, whatever share it is, and its first share stays.
    #[test]
    fn one_principal_gives_at_most_one_share_per_attempt() {
        let root = RootKey::generate().unwrap();
        let split = root.split(2, 3).unwrap();
        let checks = checks_for(&root, &split);
        let shares = texts(&split);
        let unseal = lifecycle(Duration::from_secs(600));
        assert!(matches!(unseal.submit_share(&shares[0], &checks, "alice"), Ok(ShareOutcome::Progress { .. })));
        for share in &shares[1..] {
            assert!(matches!(unseal.submit_share(share, &checks, "alice"), Err(ApiError::CustodianAlreadySubmitted)));
        }
        assert_eq!(unseal.progress(), (1, Some(2)));
        assert!(matches!(
            unseal.submit_share(&shares[2], &checks, "bob"),
            Ok(ShareOutcome::Complete { ref custodians, .. }) if custodians == &["alice", "bob"]
        ));
        // A new attempt: alice may give a share again.
        assert!(matches!(unseal.submit_share(&shares[1], &checks, "alice"), Ok(ShareOutcome::Progress { .. })));
        let codes: Vec<&str> = unseal.take_refusals().iter().map(|r| r.code).collect();
        assert_eq!(codes, ["custodian_already_submitted", "custodian_already_submitted"]);
    }

    /// With commitments (key format 2) an altered share is recognised on its own: refused,
    /// nobody's progress lost, and the right shares still unseal.
    #[test]
    fn an_altered_share_is_refused_on_its_own_and_progress_survives() {
        let root = RootKey::generate().unwrap();
        let split = root.split(3, 5).unwrap();
        let checks = checks_for(&root, &split);
        let shares = texts(&split);
        let unseal = lifecycle(Duration::from_secs(600));
        assert!(unseal.submit_share(&shares[0], &checks, "alice").is_ok());
        assert!(matches!(unseal.submit_share(&altered(&shares[1]), &checks, "bob"), Err(ApiError::ShareAltered)));
        // A share of another ceremony of the same key: right vault, valid checksum, not recorded.
        let other_ceremony = root.split(3, 5).unwrap()[3].to_text().to_string();
        assert!(matches!(unseal.submit_share(&other_ceremony, &checks, "bob"), Err(ApiError::ShareAltered)));
        assert_eq!(unseal.progress(), (1, Some(3)));
        assert!(unseal.submit_share(&shares[1], &checks, "bob").is_ok());
        assert!(matches!(unseal.submit_share(&altered(&shares[2]), &checks, "carol"), Err(ApiError::ShareAltered)));
        assert_eq!(unseal.progress(), (2, Some(3)));
        match unseal.submit_share(&shares[2], &checks, "carol") {
            Ok(ShareOutcome::Complete { root: rebuilt, custodians, left_out, .. }) => {
                assert_eq!(rebuilt.kcv(), root.kcv());
                assert_eq!(custodians, ["alice", "bob", "carol"]);
                assert!(left_out.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let refused: Vec<(String, &str)> = unseal.take_refusals().into_iter().map(|r| (r.custodian, r.code)).collect();
        assert_eq!(
            refused,
            [("bob".into(), "share_altered"), ("bob".into(), "share_altered"), ("carol".into(), "share_altered")]
        );
    }

    /// Shares of a vault initialized before key format 2 (the `pss1` shares the fixture
    /// vault was made with): no commitments, so a wrong share shows only when M shares fail
    /// to rebuild the key. Progress is kept, and one more share lets the vault leave the
    /// wrong one out.
    #[test]
    fn without_commitments_a_wrong_share_is_left_out_once_one_more_arrives() {
        const LEGACY: [&str; 3] = [
            "pss1-d255db-4fc4274a-m2-x1-fd35f721f6680189d931c19f6bc9a8917681d64dd9a71f1a68e5d28ec7732cb6-40e45ae1",
            "pss1-d255db-4fc4274a-m2-x2-5b951d459212f0bef377559edd090f168ac7a1036bdd5152964c251fe06a6a74-f7f0d77e",
            "pss1-d255db-4fc4274a-m2-x3-39f5b29047cd565a1cbcd06846499b6bde0c8c3905026b6a352b8199fd94a1c3-740254bc",
        ];
        let checks =
            ShareChecks { root_kcv: None, root_kcv_legacy: Kcv::from_hex("d255db"), commitments: BTreeMap::new() };
        let unseal = lifecycle(Duration::from_secs(600));
        assert!(matches!(unseal.submit_share(LEGACY[0], &checks, "alice"), Ok(ShareOutcome::Progress { .. })));
        assert!(matches!(unseal.submit_share(&altered(LEGACY[1]), &checks, "bob"), Err(ApiError::UnsealFailed)));
        assert_eq!(unseal.progress(), (2, Some(2)), "kept: which of the two is wrong cannot be told yet");
        match unseal.submit_share(LEGACY[2], &checks, "carol") {
            Ok(ShareOutcome::Complete { root, custodians, left_out, .. }) => {
                let right = RootKey::combine(
                    &[CustodianShare::parse(LEGACY[0]).unwrap(), CustodianShare::parse(LEGACY[1]).unwrap()],
                    &Kcv::from_hex("d255db").unwrap(),
                )
                .unwrap();
                assert_eq!(root.kcv(), right.kcv());
                assert_eq!(custodians, ["alice", "carol"]);
                assert_eq!(left_out, ["bob"]);
            }
            other => panic!("{other:?}"),
        }
        let refused: Vec<(String, &str)> = unseal.take_refusals().into_iter().map(|r| (r.custodian, r.code)).collect();
        assert_eq!(refused, [("bob".into(), "unseal_failed"), ("bob".into(), "share_altered")]);
        // A pss1 share at a vault that recorded no legacy KCV is another vault's.
        let new_vault = ShareChecks { root_kcv: Kcv::from_hex("d255db"), ..ShareChecks::default() };
        assert!(matches!(unseal.submit_share(LEGACY[0], &new_vault, "alice"), Err(ApiError::ShareForeign)));
    }

    #[test]
    fn progress_times_out() {
        let root = RootKey::generate().unwrap();
        let share = root.split(2, 2).unwrap()[0].to_text().to_string();
        let unseal = lifecycle(Duration::from_millis(20));
        let checks = ShareChecks { root_kcv: Some(root.kcv()), ..ShareChecks::default() };
        assert!(unseal.submit_share(&share, &checks, "alice").is_ok());
        assert_eq!(unseal.progress().0, 1);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(unseal.progress(), (0, None));
    }

    #[test]
    fn key_actions_parse() {
        assert_eq!(KeyAction::parse("rotate_kek", None, None, false).unwrap(), KeyAction::RotateKek);
        assert_eq!(
            KeyAction::parse("destroy", Some("kek"), Some(2), true).unwrap(),
            KeyAction::Destroy { kind: KeyKind::Kek, version: 2, force: true }
        );
        assert_eq!(KeyAction::parse("retire", None, Some(1), false).unwrap().operation(), Operation::KeysRetire);
        assert!(KeyAction::parse("retire", None, None, false).is_err());
        assert!(KeyAction::parse("rotate_dek", None, None, true).is_err());
        assert!(KeyAction::parse("rotate", None, None, false).is_err());
        assert!(KeyAction::parse("retire", Some("root"), Some(1), false).is_err());
    }
}
