//! `GET /v1/sys/health`, `GET /v1/sys/status`, `GET /v1/sys/seal-status`, `POST /v1/sys/unseal`,
//! `POST /v1/sys/seal`.

use super::{rfc3339, Caller, JsonBody, Vault};
use crate::error::ApiError;
use crate::keyring::{Keyring, UnsealError};
use crate::lifecycle::{self, meta, ShareChecks, ShareOutcome};
use axum::extract::State;
use axum::Json;
use paysys_keys::RootKey;
use paysys_policies::Operation;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Liveness and seal state, for any authenticated client (load balancers included).
pub async fn health(State(vault): State<Arc<Vault>>) -> Json<Value> {
    Json(json!({ "status": "ok", "sealed": vault.keys.is_sealed() }))
}

/// Seal state, key versions with KCVs, and record counts (`keys.status`).
pub async fn status(State(vault): State<Arc<Vault>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::KeysStatus);
    vault.admit_status(&ctx).await?;
    let keys = vault.store.load_keys().await?;
    let counts = vault.store.counts().await?;
    let keyring = vault.keys.get();
    let encryptions = keyring.as_ref().map(|k| k.dek_encryptions()).unwrap_or_default();
    let key_rows: Vec<Value> = keys
        .iter()
        .map(|k| {
            let records = match k.kind {
                crate::store::KeyKind::Dek => {
                    counts.cards_by_dek.iter().find(|(v, _)| *v == k.version).map(|(_, n)| *n).unwrap_or(0)
                }
                crate::store::KeyKind::Kek => 0,
            };
            let seals = encryptions
                .iter()
                .find(|(v, _)| k.kind == crate::store::KeyKind::Dek && i64::from(*v) == k.version)
                .map(|(_, n)| *n);
            json!({
                "kind": k.kind.as_str(),
                "version": k.version,
                "kcv": k.kcv,
                "state": k.state,
                "created_at": rfc3339(k.created_at),
                "wrapped_by": k.wrapped_by,
                "records": records,
                "encryptions_this_process": seals,
            })
        })
        .collect();
    if keyring.is_some() {
        let event = ctx.event("allow", "ok", None, None, None);
        vault.commit(Vec::new(), event).await?;
    }
    Ok(Json(json!({
        "sealed": keyring.is_none(),
        "root_kcv": keyring.as_ref().map(|k| k.root_kcv()),
        // What an auditor needs to check checkpoints, and nothing secret: the public key.
        "audit_checkpoint_key": keyring.as_ref().map(|k| {
            let public = k.checkpoint_key().verifying_key();
            json!({ "algorithm": "Ed25519", "key_id": public.key_id(), "public_key": public.to_hex() })
        }),
        "keys": key_rows,
        "counts": { "cards": counts.cards, "cvcs": counts.cvcs, "audit_records": counts.audit_records },
    })))
}

/// `POST /v1/sys/unseal` body: one custodian share (`pss1-…`), or — only on a vault
/// started with `--dev` — the root key in hex.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    #[serde(default)]
    share: Option<SecretString>,
    #[serde(default)]
    key: Option<SecretString>,
}

pub async fn unseal(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    body: Result<JsonBody<UnsealRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::SysSeal);
    if !vault.may_attempt(&ctx) {
        return Err(ApiError::Forbidden);
    }
    if !vault.keys.is_sealed() {
        return Err(ApiError::AlreadyUnsealed);
    }
    let JsonBody(req) = body?;
    let (root, threshold, custodians) = match (req.share, req.key) {
        (Some(share), None) => {
            let checks = ShareChecks::from_meta(&vault.store.meta().await?);
            if checks.root_kcv.is_none() && checks.root_kcv_legacy.is_none() {
                return Err(ApiError::Internal("no root KCV recorded; re-run init".into()));
            }
            match vault.lifecycle.submit_share(share.expose_secret(), &checks, &ctx.principal.0) {
                Ok(ShareOutcome::Progress { have, need, check_value }) => {
                    tracing::info!(principal = %ctx.principal.0, progress = have, threshold = need, "unseal share accepted");
                    return Ok(Json(json!({
                        "sealed": true,
                        "progress": have,
                        "threshold": need,
                        "share_check_value": check_value,
                    })));
                }
                Ok(ShareOutcome::Complete { root, need, custodians, left_out, .. }) => {
                    for wrong in &left_out {
                        tracing::warn!(principal = %wrong, "a wrong unseal share was left out");
                    }
                    (root, need, custodians)
                }
                Err(e) => {
                    tracing::warn!(principal = %ctx.principal.0, code = e.code(), "unseal share refused");
                    return Err(e);
                }
            }
        }
        (None, Some(key)) => {
            if !vault.lifecycle.config.dev {
                tracing::warn!(principal = %ctx.principal.0, "dev-key unseal refused: the vault was not started with --dev");
                return Err(ApiError::DevModeRequired);
            }
            let root = RootKey::from_dev_key_hex(key.expose_secret()).map_err(|_| ApiError::UnsealKeyInvalid)?;
            (root, 1, vec![ctx.principal.0.clone()])
        }
        _ => return Err(ApiError::InvalidRequest("give exactly one of share or key".into())),
    };
    let stored = vault.store.load_keys().await?;
    let keyring = match Keyring::unseal(root, &stored) {
        Ok(k) => k,
        Err(UnsealError::WrongRootKey) => {
            tracing::warn!(principal = %ctx.principal.0, "unseal attempt with a wrong key");
            return Err(if threshold == 1 { ApiError::UnsealKeyInvalid } else { ApiError::UnsealFailed });
        }
        Err(e) => return Err(ApiError::Internal(e.to_string())),
    };
    if !vault.keys.install(keyring) {
        return Err(ApiError::AlreadyUnsealed);
    }
    tracing::info!(principal = %ctx.principal.0, custodians = custodians.len(), "vault unsealed");
    // One record per custodian who gave a share: who took part is what an auditor asks.
    for custodian in &custodians {
        let mut event = ctx.event("allow", "ok", None, None, None);
        event.operation = "sys.unseal".into();
        event.principal.clone_from(custodian);
        vault.commit(Vec::new(), event).await?;
    }
    // Shares refused (or left out as wrong) while sealed, when there was no audit key.
    for refusal in vault.lifecycle.take_refusals() {
        let mut event = ctx.event("deny", refusal.code, None, None, None);
        event.operation = "sys.unseal".into();
        event.principal = refusal.custodian;
        event.at = refusal.at_ms;
        vault.commit(Vec::new(), event).await?;
    }
    // A vault initialized before key format 2 moves to it now; if that fails it keeps
    // serving (both formats are read) and tries again at the next unseal.
    if let Err(e) = lifecycle::migrate_key_format(&vault).await {
        tracing::error!(code = e.code(), "key format migration failed; the vault serves with format-1 keys");
    }
    Ok(Json(json!({ "sealed": false, "progress": threshold, "threshold": threshold })))
}

/// `GET /v1/sys/seal-status`: sealed?, unseal progress and threshold (`sys.seal`).
/// Answers while sealed too (it is what custodians look at), so it is not audited then.
pub async fn seal_status(State(vault): State<Arc<Vault>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::SysSeal);
    if !vault.may_attempt(&ctx) {
        return Err(ApiError::Forbidden);
    }
    let meta: std::collections::BTreeMap<String, String> = vault.store.meta().await?.into_iter().collect();
    let (progress, in_progress_threshold) = vault.lifecycle.progress();
    let threshold =
        in_progress_threshold.or_else(|| meta.get(meta::UNSEAL_THRESHOLD).and_then(|t| t.parse::<usize>().ok()));
    Ok(Json(json!({
        "sealed": vault.keys.is_sealed(),
        "progress": progress,
        "threshold": threshold,
        "shares": meta.get(meta::UNSEAL_SHARES).and_then(|t| t.parse::<usize>().ok()),
        "unseal_mode": meta.get(meta::UNSEAL_MODE),
        "root_kcv": meta.get(meta::ROOT_KCV),
        "root_kcv_legacy": meta.get(meta::ROOT_KCV_LEGACY),
        "dev": vault.lifecycle.config.dev,
    })))
}

pub async fn seal(State(vault): State<Arc<Vault>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::SysSeal);
    vault.admit(&ctx).await?;
    let event = ctx.event("allow", "ok", None, None, None);
    vault.commit(Vec::new(), event).await?;
    vault.keys.seal();
    vault.lifecycle.reset_progress();
    tracing::warn!(principal = %ctx.principal.0, "vault sealed: keys dropped from memory");
    Ok(Json(json!({ "sealed": true })))
}
