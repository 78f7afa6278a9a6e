//! Retention (PCI DSS 3.2.1 and 3.3.1): the sweepers that delete cards whose token
//! expired and CVCs past their single-use TTL — and, with the CVCs, the checkout grants
//! spent an hour or more past their expiry.
//!
//! An expired token already reads as not found everywhere; the sweeper removes what is
//! left of it — the card row with its ciphertext, and any CVC (crypto-shred) — in
//! batches, each batch one transaction with **one audit record per card**. Per card
//! rather than per batch so the audit log answers "what happened to token X" the same
//! way for an expiry as for a `DELETE` (the record names the token, its merchant and
//! DEK version); the records of one batch share a request id (`sweep_…`). The records
//! cost one small row per deleted card, written in the same commit as the deletion.
//!
//! Several replicas may sweep the same PostgreSQL database: each batch takes its cards
//! with `FOR UPDATE SKIP LOCKED`, so replicas take disjoint batches and never wait on
//! each other. On SQLite a batch holds the database's write lock.
//!
//! Audit records are signed with the audit key, so a sealed vault does not sweep (its
//! expired tokens still read as not found); it catches up once unsealed.
//!
//! A spent grant ([`crate::store::SpentGrant`]) stops a replay only while the grant could
//! still be accepted; once it has expired, `POST /v1/tokens` refuses it as
//! `grant_expired` anyway. The row is kept [`SPENT_GRANT_MARGIN_MS`] longer, so a clock
//! a little behind on another replica is still covered, then dropped. It holds no card
//! data, so its deletion is not audited.

use crate::api::{now_ms, Vault};
use crate::audit::ChainSigner;
use crate::store::{AuditEvent, ExpiredCard, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// The principal of the sweeper's audit records: the vault itself, no client.
pub const SWEEPER_PRINCIPAL: &str = "local:paysys-vault-sweeper";
/// The operation its audit records name.
pub const EXPIRE_OPERATION: &str = "tokens.expire";

/// How long a spent grant is kept after the grant expired: one hour.
pub const SPENT_GRANT_MARGIN_MS: i64 = 3600 * 1000;

/// How the sweeper runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepConfig {
    /// Time between sweeps.
    pub interval: Duration,
    /// Cards deleted per transaction.
    pub batch: i64,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub deleted: usize,
    pub batches: usize,
}

/// Delete CVCs past their TTL, and spent grants past their expiry and margin, every
/// `every`, forever. An expired CVC is never returned anyway; this removes its ciphertext.
pub async fn run_cvc_sweeper(store: Arc<dyn Store>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = now_ms();
        match store.sweep_expired_cvcs(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "expired CVCs swept"),
            Err(e) => tracing::warn!(error = %e, "CVC sweep failed"),
        }
        match sweep_spent_grants(store.as_ref(), now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "spent checkout grants swept"),
            Err(e) => tracing::warn!(error = %e, "spent grant sweep failed"),
        }
    }
}

/// Delete the spent grants that expired [`SPENT_GRANT_MARGIN_MS`] or more before `now`.
pub async fn sweep_spent_grants(store: &dyn Store, now: i64) -> Result<u64, StoreError> {
    store.sweep_spent_grants(now.saturating_sub(SPENT_GRANT_MARGIN_MS)).await
}

/// Sweep every `config.interval`, forever.
pub async fn run_token_sweeper(vault: Arc<Vault>, config: SweepConfig) {
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep_expired_tokens(&vault, config.batch).await {
            Ok(report) if report.deleted > 0 => {
                tracing::info!(deleted = report.deleted, batches = report.batches, "expired tokens swept");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "token sweep failed"),
        }
    }
}

/// Delete every card whose token expired by now, `batch` per transaction, until a batch
/// comes back short. A no-op while sealed.
pub async fn sweep_expired_tokens(vault: &Vault, batch: i64) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    let batch = batch.max(1);
    loop {
        let Some(keyring) = vault.keys.get() else { return Ok(report) };
        let now = now_ms();
        let request_id = sweep_id();
        let audit = move |card: &ExpiredCard| expiry_event(&request_id, now, card);
        let deleted = vault.store.delete_expired_cards(now, batch, &audit, &ChainSigner(keyring.audit_key())).await?;
        report.deleted += deleted.len();
        if deleted.is_empty() {
            return Ok(report);
        }
        report.batches += 1;
        if i64::try_from(deleted.len()).unwrap_or(i64::MAX) < batch {
            return Ok(report);
        }
    }
}

/// The audit record of one card deleted because its token expired.
fn expiry_event(request_id: &str, now: i64, card: &ExpiredCard) -> AuditEvent {
    AuditEvent {
        at: now,
        request_id: request_id.to_owned(),
        principal: SWEEPER_PRINCIPAL.into(),
        operation: EXPIRE_OPERATION.into(),
        merchant_id: Some(card.merchant_id.clone()),
        token: Some(card.token.clone()),
        decision: "allow".into(),
        outcome: "ok".into(),
        key_version: Some(card.dek_version),
    }
}

fn sweep_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rngs::OsRng.gen();
    format!("sweep_{n:016x}")
}
