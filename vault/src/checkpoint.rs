//! Signed audit checkpoints: the chain head (`seq`, head MAC) signed with the vault's
//! Ed25519 checkpoint key and appended, one JSON line each, to a file outside the database.
//!
//! Why: the HMAC chain proves that the records it has are the ones the vault wrote, but its
//! head is a row in the same database. Someone who can write the database can delete the
//! newest records and move the head back, or restore an older backup, and the chain still
//! verifies. A checkpoint is a signed statement, kept where that person cannot reach
//! (a file a SIEM ships away), that the chain once reached `seq` with this MAC; a later
//! `audit verify --checkpoint FILE` finds the record at `seq` gone or different.
//!
//! * [`Checkpoint`] — the line: what is signed and how ([`Checkpoint::signed_bytes`]), and
//!   [`Checkpoint::check`], which refuses malformed, foreign and forged lines.
//! * [`CheckpointSink`] — emits checkpoints: reads and checks the head, signs, remembers
//!   it in the database, appends it to the file (`O_APPEND`, synced);
//!   [`run_periodic_checkpoints`] does so every interval when the head has moved.
//! * [`verify_checkpoints`] — compares checkpoint lines with a database (through
//!   [`AuditEvidence`]: the store directly, or the officer API) and names what it finds.

use crate::api::{now_ms, rfc3339};
use crate::audit::canonical_bytes;
use crate::keyring::{KeyState, Keyring};
use crate::store::{CheckpointRow, Store, StoreError};
use async_trait::async_trait;
use paysys_keys::{CheckpointVerifyingKey, KeyError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `format` of every checkpoint line this code writes and accepts.
pub const CHECKPOINT_FORMAT: &str = "paysys.audit.checkpoint.v1";

/// The first bytes of what is signed: a purpose and version tag, so a checkpoint signature
/// can never be taken for a signature over anything else.
const SIGNED_TAG: &[u8] = b"paysys/audit-checkpoint/v1";

/// Why a checkpoint was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointReason {
    /// The serve loop's timer (`--audit-checkpoint-interval-secs`), the head having moved.
    Periodic,
    /// `POST /v1/audit/checkpoint` (`paysys-vault audit checkpoint`).
    OnDemand,
    /// The vault stopping (SIGTERM, Ctrl-C), so the last records are covered too.
    Shutdown,
}

impl CheckpointReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointReason::Periodic => "periodic",
            CheckpointReason::OnDemand => "on_demand",
            CheckpointReason::Shutdown => "shutdown",
        }
    }
}

/// One signed checkpoint, exactly as written on its line (field order is the file's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// The vault: its root key's KCV (the same value custodian shares carry).
    pub vault: String,
    /// `ed25519:` + 16 hex characters, naming [`Checkpoint::public_key`].
    pub key_id: String,
    /// The Ed25519 public key (64 hex characters). A verifier compares it with the key it
    /// trusts; a line is never trusted for carrying a key of its own.
    pub public_key: String,
    /// The chain head: sequence number of the newest record…
    pub seq: i64,
    /// …and that record's MAC (64 hex characters).
    pub head_mac: String,
    /// When it was signed (RFC 3339, UTC).
    pub at: String,
    /// `periodic`, `on_demand` or `shutdown`.
    pub reason: String,
    /// Ed25519 signature (128 hex characters) over [`Checkpoint::signed_bytes`].
    pub signature: String,
}

/// Why a checkpoint line was refused. Each has a stable code, printed by `audit verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointRefusal {
    /// Not a JSON checkpoint of this format: unknown format, missing or unknown field,
    /// bad hex, a negative `seq`, a `key_id` that does not name `public_key`.
    Malformed,
    /// Signed with another key than the vault's (another vault, or a key made up to
    /// forge it). The line's own key is never trusted.
    ForeignKey,
    /// The vault's key, but the signature does not verify: the line was edited or forged.
    BadSignature,
}

impl CheckpointRefusal {
    pub fn code(self) -> &'static str {
        match self {
            CheckpointRefusal::Malformed => "checkpoint_malformed",
            CheckpointRefusal::ForeignKey => "checkpoint_foreign_key",
            CheckpointRefusal::BadSignature => "checkpoint_signature_invalid",
        }
    }
}

/// Unambiguous encoding: the tag, then each field length-prefixed (u64 BE), `seq` as 8
/// bytes BE and the head MAC as its raw bytes.
fn signed_bytes(
    vault: &str,
    key_id: &str,
    public_key: &str,
    seq: i64,
    head_mac: &[u8],
    at: &str,
    reason: &str,
) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, field: &[u8]) {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field);
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(SIGNED_TAG);
    put(&mut out, CHECKPOINT_FORMAT.as_bytes());
    put(&mut out, vault.as_bytes());
    put(&mut out, key_id.as_bytes());
    put(&mut out, public_key.as_bytes());
    put(&mut out, &seq.to_be_bytes());
    put(&mut out, head_mac);
    put(&mut out, at.as_bytes());
    put(&mut out, reason.as_bytes());
    out
}

impl Checkpoint {
    /// Sign the head (`seq`, `head_mac`) with the keyring's checkpoint key.
    pub fn sign(
        keyring: &Keyring,
        seq: i64,
        head_mac: &[u8],
        at_ms: i64,
        reason: CheckpointReason,
    ) -> Result<Checkpoint, KeyError> {
        let key = keyring.checkpoint_key();
        let public = key.verifying_key();
        let (vault, key_id, public_key) = (keyring.root_kcv(), public.key_id(), public.to_hex());
        let at = rfc3339(at_ms);
        let reason = reason.as_str();
        let signature = key.sign(&signed_bytes(&vault, &key_id, &public_key, seq, head_mac, &at, reason))?;
        Ok(Checkpoint {
            format: CHECKPOINT_FORMAT.to_owned(),
            vault,
            key_id,
            public_key,
            seq,
            head_mac: hex::encode(head_mac),
            at,
            reason: reason.to_owned(),
            signature: hex::encode(signature),
        })
    }

    /// The bytes the signature covers, or `None` if a field is not what it must be.
    pub fn signed_bytes(&self) -> Option<Vec<u8>> {
        let head_mac = hex::decode(&self.head_mac).ok().filter(|m| m.len() == 32)?;
        if self.format != CHECKPOINT_FORMAT || self.seq < 0 {
            return None;
        }
        Some(signed_bytes(&self.vault, &self.key_id, &self.public_key, self.seq, &head_mac, &self.at, &self.reason))
    }

    /// The head MAC's bytes (hex-decoded; empty if malformed, which [`Checkpoint::check`] refuses).
    pub fn head_mac_bytes(&self) -> Vec<u8> {
        hex::decode(&self.head_mac).unwrap_or_default()
    }

    /// The line: one JSON object, no newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parse a line and accept it only if it is signed by `trusted`: the vault's public key
    /// as the verifier knows it (derived from the root key, or from the vault's status, or
    /// given by the auditor) — never the key the line carries.
    pub fn check(line: &str, trusted: &CheckpointVerifyingKey) -> Result<Checkpoint, CheckpointRefusal> {
        let checkpoint: Checkpoint = serde_json::from_str(line).map_err(|_| CheckpointRefusal::Malformed)?;
        let message = checkpoint.signed_bytes().ok_or(CheckpointRefusal::Malformed)?;
        let own_key =
            CheckpointVerifyingKey::from_hex(&checkpoint.public_key).map_err(|_| CheckpointRefusal::Malformed)?;
        if own_key.key_id() != checkpoint.key_id {
            return Err(CheckpointRefusal::Malformed);
        }
        if &own_key != trusted {
            return Err(CheckpointRefusal::ForeignKey);
        }
        let signature = hex::decode(&checkpoint.signature).map_err(|_| CheckpointRefusal::BadSignature)?;
        if !trusted.verify(&message, &signature) {
            return Err(CheckpointRefusal::BadSignature);
        }
        Ok(checkpoint)
    }

    /// `at` in Unix milliseconds (0 if it does not parse; only used for ordering messages).
    fn at_ms(&self) -> i64 {
        paysys_server::clock::parse_rfc3339_ms(&self.at).unwrap_or(0)
    }
}

/// Why no checkpoint was emitted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// No keys in memory: nothing can sign.
    #[error("the vault is sealed")]
    Sealed,
    /// Reading the head or its record failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored head does not match the record at its `seq` (missing, another MAC, or a
    /// MAC that does not verify): the vault will not sign a head it cannot vouch for.
    #[error("the audit chain head does not match its record at seq {0}")]
    HeadMismatch(i64),
    /// Signing failed.
    #[error("signing the checkpoint failed")]
    Sign(#[from] KeyError),
    /// Appending to the checkpoint file failed.
    #[error("writing the checkpoint file failed: {0}")]
    Sink(#[from] std::io::Error),
}

/// Where checkpoints go, and the last head this process signed (so the timer signs only
/// when the head has moved).
#[derive(Debug, Default)]
pub struct CheckpointSink {
    /// The checkpoint file, opened for appending; `None` without `--audit-checkpoint-file`
    /// (on-demand checkpoints are then only returned and remembered in the database).
    file: Option<Arc<Mutex<std::fs::File>>>,
    path: Option<PathBuf>,
    /// The head this process last signed. Held for the whole of [`CheckpointSink::emit`], so
    /// the timer, an officer and the shutdown never sign the same head twice between them.
    last: tokio::sync::Mutex<Option<(i64, Vec<u8>)>>,
}

impl CheckpointSink {
    /// Open (creating it, mode 0640) `path` for appending. `O_APPEND`: every write goes to
    /// the end whatever else writes the file, and nothing already in it is overwritten.
    pub fn open(path: Option<&Path>) -> std::io::Result<CheckpointSink> {
        use std::os::unix::fs::OpenOptionsExt;
        let Some(path) = path else { return Ok(CheckpointSink::default()) };
        let file = std::fs::OpenOptions::new().append(true).create(true).mode(0o640).open(path)?;
        Ok(CheckpointSink {
            file: Some(Arc::new(Mutex::new(file))),
            path: Some(path.to_owned()),
            last: tokio::sync::Mutex::new(None),
        })
    }

    /// Is there a file to write to?
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// The file's path, for the log.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Sign the current head, remember it in the database and append it to the file.
    /// With `only_if_moved`, returns `Ok(None)` when the head is the one this process last
    /// signed (or the log is empty).
    pub async fn emit(
        &self,
        store: &dyn Store,
        keyring: &Keyring,
        reason: CheckpointReason,
        only_if_moved: bool,
    ) -> Result<Option<Checkpoint>, CheckpointError> {
        let mut last = self.last.lock().await;
        let (seq, head_mac) = store.audit_head().await?;
        if only_if_moved && (seq == 0 || last.as_ref() == Some(&(seq, head_mac.clone()))) {
            return Ok(None);
        }
        // Vouch only for a head whose record is there and is genuine: a head row moved by
        // hand must not get a signature.
        if seq > 0 {
            let record = store.audit_records(seq - 1, 1).await?.into_iter().next();
            let genuine = record.is_some_and(|r| {
                r.seq == seq && r.mac == head_mac && keyring.audit_key().verify(&canonical_bytes(&r), &r.mac)
            });
            if !genuine {
                return Err(CheckpointError::HeadMismatch(seq));
            }
        }
        let at = now_ms();
        let checkpoint = Checkpoint::sign(keyring, seq, &head_mac, at, reason)?;
        let row = CheckpointRow { seq, head_mac: head_mac.clone(), at, key_id: checkpoint.key_id.clone() };
        // The database's copy only sharpens the diagnosis (truncated or rolled back); the
        // file is the control, so a failure here does not stop the file write.
        if let Err(e) = store.record_checkpoint(&row).await {
            tracing::warn!(error = %e, seq, "could not remember the checkpoint in the database");
        }
        if let Some(file) = &self.file {
            let file = file.clone();
            let mut line = checkpoint.to_line();
            line.push('\n');
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut file = file.lock().map_err(|_| std::io::Error::other("checkpoint file lock poisoned"))?;
                // One write of the whole line, so lines from concurrent writers never interleave.
                file.write_all(line.as_bytes())?;
                file.sync_data()
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        }
        *last = Some((seq, head_mac));
        tracing::info!(seq, key_id = %checkpoint.key_id, reason = reason.as_str(), "audit checkpoint signed");
        Ok(Some(checkpoint))
    }
}

/// Sign a checkpoint every `every` while unsealed, when the head has moved, forever.
pub async fn run_periodic_checkpoints(
    store: Arc<dyn Store>,
    keys: Arc<KeyState>,
    sink: Arc<CheckpointSink>,
    every: Duration,
) {
    // The first tick one interval after start, not at once: a restart is not news.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(keyring) = keys.get() else { continue };
        if let Err(e) = sink.emit(store.as_ref(), &keyring, CheckpointReason::Periodic, true).await {
            tracing::error!(error = %e, "periodic audit checkpoint failed");
        }
    }
}

/// What `audit verify --checkpoint` found. Codes are stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `checkpoint_malformed`, `checkpoint_foreign_key`, `checkpoint_signature_invalid`
    /// (a line refused), `audit_truncated` or `audit_rolled_back`.
    pub code: &'static str,
    /// `FILE:LINE` of a refused line, or of the newest checkpoint behind the finding.
    pub at_line: String,
    pub message: String,
}

/// The checkpoint part of `audit verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    /// Non-empty lines read.
    pub lines: usize,
    /// Lines that verified under the vault's key.
    pub valid: usize,
    /// Valid checkpoints whose record is in the database with the signed MAC.
    pub matched: usize,
    /// The newest matching checkpoint: (`seq`, `at`).
    pub newest_matched: Option<(i64, String)>,
    pub findings: Vec<Finding>,
}

/// Where [`verify_checkpoints`] reads the database: the store itself (offline) or the
/// officer API.
#[async_trait]
pub trait AuditEvidence: Send {
    /// (`seq`, `mac`) of the audit records with `seq > after_seq`, ascending, at most `limit`.
    async fn record_macs(&mut self, after_seq: i64, limit: i64) -> anyhow::Result<Vec<(i64, Vec<u8>)>>;
    /// (`seq`, `head_mac`) of the checkpoints the database remembers with `seq > after_seq`,
    /// ascending, at most `limit`.
    async fn remembered_checkpoints(&mut self, after_seq: i64, limit: i64) -> anyhow::Result<Vec<(i64, Vec<u8>)>>;
}

/// [`AuditEvidence`] straight from a store (offline verify with the dev root key file).
pub struct StoreEvidence<'a>(pub &'a dyn Store);

impl std::fmt::Debug for StoreEvidence<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreEvidence")
    }
}

#[async_trait]
impl AuditEvidence for StoreEvidence<'_> {
    async fn record_macs(&mut self, after_seq: i64, limit: i64) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
        Ok(self.0.audit_records(after_seq, limit).await?.into_iter().map(|r| (r.seq, r.mac)).collect())
    }

    async fn remembered_checkpoints(&mut self, after_seq: i64, limit: i64) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
        Ok(self.0.recorded_checkpoints(after_seq, limit).await?.into_iter().map(|c| (c.seq, c.head_mac)).collect())
    }
}

/// Rows read per round trip while verifying.
const EVIDENCE_PAGE: i64 = 5_000;

/// One valid checkpoint as the comparison needs it.
#[derive(Debug)]
struct Signed {
    head_mac: Vec<u8>,
    at: String,
    at_ms: i64,
    line: String,
}

/// Compare checkpoint lines (`(FILE:LINE, text)`) with the database.
///
/// A valid checkpoint *matches* when the record at its `seq` is at or below the chain head
/// (`head_seq`, as stored) and carries the signed MAC. One that does not is a finding:
/// * `audit_truncated` — the database remembers this checkpoint, yet the records it signed
///   are gone (its `seq` is beyond the head) or were replaced (another MAC at that `seq`):
///   records were deleted and the head moved back.
/// * `audit_rolled_back` — the database has never heard of this checkpoint: it is older
///   than the checkpoint, an older copy restored (and perhaps written to since).
///
/// Someone able to edit the database can also delete its memory of checkpoints, turning
/// a truncation into what looks like a rollback; either way verify fails. Lines refused by
/// [`Checkpoint::check`] are findings too and take no part in the comparison.
pub async fn verify_checkpoints(
    lines: &[(String, String)],
    trusted: &CheckpointVerifyingKey,
    head_seq: i64,
    evidence: &mut dyn AuditEvidence,
) -> anyhow::Result<CheckpointReport> {
    let mut report = CheckpointReport::default();
    // (seq, head_mac) → the earliest line that signed it.
    let mut signed: BTreeMap<(i64, Vec<u8>), Signed> = BTreeMap::new();
    for (at_line, text) in lines {
        if text.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        match Checkpoint::check(text.trim(), trusted) {
            Ok(c) => {
                report.valid += 1;
                let head_mac = c.head_mac_bytes();
                let at_ms = c.at_ms();
                signed.entry((c.seq, head_mac.clone())).or_insert(Signed {
                    head_mac,
                    at: c.at,
                    at_ms,
                    line: at_line.clone(),
                });
            }
            Err(refusal) => report.findings.push(Finding {
                code: refusal.code(),
                at_line: at_line.clone(),
                message: match refusal {
                    CheckpointRefusal::Malformed => "not a checkpoint line of this format".into(),
                    CheckpointRefusal::ForeignKey => "signed with another key than this vault's".into(),
                    CheckpointRefusal::BadSignature => "the signature does not verify: edited or forged".into(),
                },
            }),
        }
    }

    // The record MAC at every signed seq up to the head, read a page at a time.
    let wanted: BTreeSet<i64> = signed.keys().map(|(seq, _)| *seq).filter(|s| *s >= 1 && *s <= head_seq).collect();
    let mut found: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    let mut covered_to = 0;
    for &seq in &wanted {
        if seq <= covered_to {
            continue;
        }
        let last_wanted = wanted.range(seq..).next_back().copied().unwrap_or(seq);
        let page = evidence.record_macs(seq - 1, (last_wanted - seq + 1).min(EVIDENCE_PAGE)).await?;
        covered_to = page.last().map_or(head_seq, |(s, _)| *s);
        for (s, mac) in page {
            if wanted.contains(&s) {
                found.insert(s, mac);
            }
        }
    }

    let mut lost: Vec<(&(i64, Vec<u8>), &Signed)> = Vec::new();
    for (key, s) in &signed {
        let (seq, _) = key;
        // Seq 0 is the empty log, whose "MAC" is 32 zero bytes.
        let genuine = if *seq == 0 { s.head_mac == [0u8; 32] } else { found.get(seq) == Some(&s.head_mac) };
        if *seq <= head_seq && genuine {
            report.matched += 1;
            // `signed` is in seq order, so the last match is the newest.
            report.newest_matched = Some((*seq, s.at.clone()));
        } else {
            lost.push((key, s));
        }
    }
    if lost.is_empty() {
        return Ok(report);
    }

    // Which of the lost checkpoints the database remembers.
    let (low, high) =
        (lost.iter().map(|(k, _)| k.0).min().unwrap_or(0), lost.iter().map(|(k, _)| k.0).max().unwrap_or(0));
    let mut remembered: BTreeSet<(i64, Vec<u8>)> = BTreeSet::new();
    let mut after = low - 1;
    loop {
        let page = evidence.remembered_checkpoints(after, EVIDENCE_PAGE).await?;
        let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= EVIDENCE_PAGE;
        let last_seq = page.last().map(|(s, _)| *s);
        remembered.extend(page);
        match last_seq {
            // A full page may end in the middle of one seq's rows (a fork): read that seq again.
            Some(s) if full && s <= high && s - 1 > after => after = s - 1,
            Some(s) if full && s <= high => after = s,
            _ => break,
        }
    }

    let (truncated, rolled_back): (Vec<_>, Vec<_>) = lost.into_iter().partition(|(k, _)| remembered.contains(*k));
    if let Some(newest) = newest_of(&truncated) {
        let (seq, s) = newest;
        let how = if seq > head_seq {
            format!("the chain head is at seq {head_seq}, below it")
        } else {
            format!("the record at seq {seq} has another MAC")
        };
        report.findings.push(Finding {
            code: "audit_truncated",
            at_line: s.line.clone(),
            message: format!(
                "{} checkpoint(s) signed records the database no longer has, though it remembers them \
                 (seq {} to {}); the newest, seq {seq} signed {}: {how}. Records were deleted and the head moved back.",
                truncated.len(),
                truncated.iter().map(|(k, _)| k.0).min().unwrap_or(seq),
                seq,
                s.at
            ),
        });
    }
    if let Some((seq, s)) = newest_of(&rolled_back) {
        report.findings.push(Finding {
            code: "audit_rolled_back",
            at_line: s.line.clone(),
            message: format!(
                "the database is older than {} checkpoint(s) (seq {} to {seq}); the newest, seq {seq} signed {}: \
                 the database has never seen it and its chain head is at seq {head_seq}. An older copy of the \
                 database was restored.",
                rolled_back.len(),
                rolled_back.iter().map(|(k, _)| k.0).min().unwrap_or(seq),
                s.at
            ),
        });
    }
    Ok(report)
}

/// The checkpoint with the highest seq (then the latest time) among `lost`.
fn newest_of<'a>(lost: &[(&'a (i64, Vec<u8>), &'a Signed)]) -> Option<(i64, &'a Signed)> {
    lost.iter().max_by_key(|(k, s)| (k.0, s.at_ms)).map(|(k, s)| (k.0, *s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        let (root, stored) = Keyring::generate(0).unwrap();
        Keyring::unseal(root, &stored).unwrap()
    }

    fn trusted(keyring: &Keyring) -> CheckpointVerifyingKey {
        keyring.checkpoint_key().verifying_key().clone()
    }

    fn mac(n: u8) -> Vec<u8> {
        vec![n; 32]
    }

    #[test]
    fn a_signed_line_checks_and_any_edit_is_refused() {
        let vault = keyring();
        let key = trusted(&vault);
        let checkpoint = Checkpoint::sign(&vault, 42, &mac(7), 1_780_000_000_123, CheckpointReason::Periodic).unwrap();
        let line = checkpoint.to_line();
        assert!(!line.contains('\n'));
        assert_eq!(Checkpoint::check(&line, &key), Ok(checkpoint.clone()));
        assert_eq!(checkpoint.format, CHECKPOINT_FORMAT);
        assert_eq!(checkpoint.vault, vault.root_kcv());
        assert_eq!(checkpoint.key_id, key.key_id());

        type Edit = fn(&mut Checkpoint);
        let edits: [(&str, Edit); 6] = [
            ("seq", |c| c.seq += 1),
            ("head_mac", |c| c.head_mac = hex::encode(mac(8))),
            ("at", |c| c.at = "2030-01-01T00:00:00Z".into()),
            ("reason", |c| c.reason = "on_demand".into()),
            ("vault", |c| c.vault = "000000".into()),
            ("signature", |c| c.signature = c.signature.replace('a', "b").replace('1', "2")),
        ];
        for (what, edit) in edits {
            let mut edited = checkpoint.clone();
            edit(&mut edited);
            assert_eq!(Checkpoint::check(&edited.to_line(), &key), Err(CheckpointRefusal::BadSignature), "{what}");
        }

        // Signed by another vault (or a key made up by a forger): the line's own key is not trusted.
        let other = keyring();
        let forged = Checkpoint::sign(&other, 42, &mac(7), 1_780_000_000_123, CheckpointReason::Periodic).unwrap();
        assert_eq!(Checkpoint::check(&forged.to_line(), &key), Err(CheckpointRefusal::ForeignKey));
        // …nor does claiming the vault's key over the other key's signature help.
        let mut claimed = forged.clone();
        claimed.public_key = key.to_hex();
        claimed.key_id = key.key_id();
        assert_eq!(Checkpoint::check(&claimed.to_line(), &key), Err(CheckpointRefusal::BadSignature));

        let mut wrong_id = checkpoint.clone();
        wrong_id.key_id = "ed25519:0000000000000000".into();
        let mut format = checkpoint.clone();
        format.format = "paysys.audit.checkpoint.v2".into();
        let mut negative = checkpoint.clone();
        negative.seq = -1;
        let extra = line.replacen('{', "{\"note\":\"x\",", 1);
        for (what, text) in [
            ("not json", "hello".to_owned()),
            ("truncated", line[..line.len() - 2].to_owned()),
            ("unknown field", extra),
            ("key id of another key", wrong_id.to_line()),
            ("another format", format.to_line()),
            ("negative seq", negative.to_line()),
        ] {
            assert_eq!(Checkpoint::check(&text, &key), Err(CheckpointRefusal::Malformed), "{what}");
        }
    }

    /// An in-memory database: record MACs by seq, and remembered checkpoints.
    #[derive(Debug, Default)]
    struct Memory {
        records: BTreeMap<i64, Vec<u8>>,
        remembered: BTreeSet<(i64, Vec<u8>)>,
    }

    #[async_trait]
    impl AuditEvidence for Memory {
        async fn record_macs(&mut self, after_seq: i64, limit: i64) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
            let n = usize::try_from(limit).unwrap();
            Ok(self.records.range(after_seq + 1..).take(n).map(|(s, m)| (*s, m.clone())).collect())
        }

        async fn remembered_checkpoints(&mut self, after_seq: i64, limit: i64) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
            let n = usize::try_from(limit).unwrap();
            Ok(self.remembered.iter().filter(|(s, _)| *s > after_seq).take(n).cloned().collect())
        }
    }

    fn lines(vault: &Keyring, heads: &[(i64, u8)]) -> Vec<(String, String)> {
        heads
            .iter()
            .enumerate()
            .map(|(i, (seq, m))| {
                let c = Checkpoint::sign(vault, *seq, &mac(*m), 1_780_000_000_000 + *seq, CheckpointReason::Periodic)
                    .unwrap();
                (format!("f:{}", i + 1), c.to_line())
            })
            .collect()
    }

    fn codes(report: &CheckpointReport) -> Vec<&'static str> {
        report.findings.iter().map(|f| f.code).collect()
    }

    #[tokio::test]
    async fn checkpoints_are_matched_or_named_truncated_or_rolled_back() {
        let vault = keyring();
        let key = trusted(&vault);
        let mut db = Memory::default();
        for seq in 1..=10 {
            db.records.insert(seq, mac(u8::try_from(seq).unwrap()));
        }
        let signed = lines(&vault, &[(3, 3), (7, 7), (10, 10)]);
        db.remembered.extend([(3, mac(3)), (7, mac(7)), (10, mac(10))]);

        let report = verify_checkpoints(&signed, &key, 10, &mut db).await.unwrap();
        assert_eq!((report.lines, report.valid, report.matched), (3, 3, 3));
        assert_eq!(report.newest_matched.as_ref().map(|(s, _)| *s), Some(10));
        assert!(report.findings.is_empty(), "{report:?}");

        // Truncated: records 8..10 deleted, head moved back to 7; the database remembers seq 10.
        let mut truncated = Memory { records: db.records.clone(), remembered: db.remembered.clone() };
        truncated.records.retain(|s, _| *s <= 7);
        let report = verify_checkpoints(&signed, &key, 7, &mut truncated).await.unwrap();
        assert_eq!(codes(&report), ["audit_truncated"], "{report:?}");
        assert_eq!(report.findings[0].at_line, "f:3");
        assert_eq!(report.matched, 2);
        // …and written again past it: seq 10 now has another MAC.
        for seq in 8..=12 {
            truncated.records.insert(seq, mac(100 + u8::try_from(seq).unwrap()));
        }
        let report = verify_checkpoints(&signed, &key, 12, &mut truncated).await.unwrap();
        assert_eq!(codes(&report), ["audit_truncated"], "{report:?}");
        assert!(report.findings[0].message.contains("another MAC"), "{report:?}");

        // Rolled back: an older copy that never saw the checkpoint of seq 10 (nor seq 7).
        let mut restored = Memory::default();
        for seq in 1..=5 {
            restored.records.insert(seq, mac(u8::try_from(seq).unwrap()));
        }
        restored.remembered.insert((3, mac(3)));
        let report = verify_checkpoints(&signed, &key, 5, &mut restored).await.unwrap();
        assert_eq!(codes(&report), ["audit_rolled_back"], "{report:?}");
        assert!(report.findings[0].message.contains("2 checkpoint(s) (seq 7 to 10"), "{report:?}");

        // A forged line is a finding of its own and proves nothing about the database.
        let mut with_forgery = signed.clone();
        let mut forged: Checkpoint = serde_json::from_str(&signed[2].1).unwrap();
        forged.seq = 99;
        with_forgery.push(("f:4".into(), forged.to_line()));
        with_forgery.push(("f:5".into(), String::new()));
        let report = verify_checkpoints(&with_forgery, &key, 10, &mut db).await.unwrap();
        assert_eq!(codes(&report), ["checkpoint_signature_invalid"], "{report:?}");
        assert_eq!((report.lines, report.valid, report.matched), (4, 3, 3));
    }
}
