//! The officer API for key lifecycle (PCI DSS 3.6–3.7):
//!
//! * `GET /v1/keys` — every KEK and DEK version: KCV, state, age against its
//!   cryptoperiod, records under it, seals against the AES-GCM limit (`keys.status`).
//! * `GET /v1/keys/jobs` — re-encryption jobs and their progress (`keys.status`).
//! * `GET /v1/keys/requests[/{id}]` — key requests (`keys.status`).
//! * `POST /v1/keys/requests` — rotate / retire / destroy: executed at once, or pending a
//!   second officer when the policy puts the operation under dual control.
//! * `POST /v1/keys/requests/{id}/approve` — a different officer approves (`keys.approve`).
//! * `POST /v1/keys/verify-records` — opens every stored record under its DEK inside the
//!   vault and reports only counts: the integrity check after a re-encryption.

use super::{now_ms, rfc3339, Caller, JsonBody, RequestContext, Vault};
use crate::error::ApiError;
use crate::keyring::state;
use crate::lifecycle::{commit_and_refresh, flush_seal_counts, new_request_id, plan_action, KeyAction};
use crate::store::{KeyChange, KeyKind, KeyRequest, ReencryptJob, RequestDecision};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use paysys_policies::Operation;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const DAY_MS: i64 = 24 * 3600 * 1000;

async fn audit_ok(vault: &Vault, ctx: &RequestContext) -> Result<(), ApiError> {
    if !vault.keys.is_sealed() {
        vault.commit(Vec::new(), ctx.event("allow", "ok", None, None, None)).await?;
    }
    Ok(())
}

pub async fn list_keys(State(vault): State<Arc<Vault>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::KeysStatus);
    vault.admit_status(&ctx).await?;
    flush_seal_counts(&vault).await;
    let keys = vault.store.load_keys().await?;
    let usage = vault.store.dek_usage().await?;
    let seals: BTreeMap<i64, i64> = vault.store.seal_counts().await?.into_iter().collect();
    let meta: BTreeMap<String, String> = vault.store.meta().await?.into_iter().collect();
    let config = &vault.lifecycle.config;
    let now = now_ms();
    let limit = paysys_keys::RANDOM_NONCE_SEAL_LIMIT;
    let rows: Vec<Value> = keys
        .iter()
        .map(|k| {
            let (period_days, records) = match k.kind {
                KeyKind::Dek => (
                    config.dek_cryptoperiod_days,
                    usage.iter().find(|u| u.version == k.version).map(|u| u.cards + u.cvcs).unwrap_or(0),
                ),
                KeyKind::Kek => {
                    let deks = keys
                        .iter()
                        .filter(|d| d.kind == KeyKind::Dek && d.state != state::DESTROYED && d.wrapped_by == k.version)
                        .count();
                    (config.kek_cryptoperiod_days, i64::try_from(deks).unwrap_or(i64::MAX))
                }
            };
            let age_days = (now - k.created_at).max(0) / DAY_MS;
            // The cryptoperiod bounds how long a key encrypts; a decrypt-only key is past it by design.
            let in_use = k.state == state::ACTIVE;
            let mut row = json!({
                "kind": k.kind.as_str(),
                "version": k.version,
                "kcv": k.kcv,
                "state": k.state,
                "created_at": rfc3339(k.created_at),
                "age_days": age_days,
                "cryptoperiod_days": period_days,
                "past_due": in_use && age_days >= i64::from(period_days),
                "wrapped_by": k.wrapped_by,
                "records": records,
                // 1: written before key format 2 (legacy KCV; a KEK wrapped under the root
                // key itself), migrated at unseal; 2: current.
                "format": k.format.as_i64(),
            });
            if k.kind == KeyKind::Dek {
                let count = seals.get(&k.version).copied().unwrap_or(0);
                row["encryptions"] = json!(count);
                row["encryption_limit"] = json!(limit);
                // A float, so a key in real use never shows as 0%.
                row["encryption_limit_used_pct"] = json!((count as f64) * 100.0 / (limit as f64));
            }
            row
        })
        .collect();
    let jobs = vault.store.reencrypt_jobs().await?;
    audit_ok(&vault, &ctx).await?;
    Ok(Json(json!({
        "sealed": vault.keys.is_sealed(),
        "root_kcv": meta.get(crate::lifecycle::meta::ROOT_KCV),
        "root_kcv_legacy": meta.get(crate::lifecycle::meta::ROOT_KCV_LEGACY),
        "unseal_mode": meta.get(crate::lifecycle::meta::UNSEAL_MODE),
        "keys": rows,
        "jobs": jobs.iter().take(5).map(job_json).collect::<Vec<_>>(),
    })))
}

/// A job as the API shows it, with its progress.
pub fn job_json(job: &ReencryptJob) -> Value {
    let elapsed_ms = (job.finished_at.unwrap_or_else(now_ms) - job.created_at).max(1);
    json!({
        "id": job.id,
        "from_version": job.from_version,
        "to_version": job.to_version,
        "state": job.state,
        "total": job.total,
        "done": job.done,
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
        "finished_at": job.finished_at.map(rfc3339),
        "records_per_second": (job.done as f64) * 1000.0 / (elapsed_ms as f64),
        "error": job.error,
    })
}

pub async fn list_jobs(State(vault): State<Arc<Vault>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::KeysStatus);
    vault.admit_status(&ctx).await?;
    let jobs = vault.store.reencrypt_jobs().await?;
    let usage = vault.store.dek_usage().await?;
    let rows: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mut row = job_json(j);
            row["remaining"] =
                json!(usage.iter().find(|u| u.version == j.from_version).map(|u| u.cards + u.cvcs).unwrap_or(0));
            row
        })
        .collect();
    audit_ok(&vault, &ctx).await?;
    Ok(Json(json!({ "jobs": rows })))
}

fn request_json(r: &KeyRequest) -> Value {
    // A pending request past its expiry is shown as expired; the store row follows when
    // someone tries to approve it.
    let state = if r.state == "pending" && now_ms() > r.expires_at { "expired" } else { r.state.as_str() };
    json!({
        "id": r.id,
        "action": r.action,
        "kind": r.kind,
        "version": r.version,
        "force": r.force,
        "state": state,
        "requested_by": r.requested_by,
        "requested_at": rfc3339(r.requested_at),
        "expires_at": rfc3339(r.expires_at),
        "approved_by": r.approved_by,
        "decided_at": r.decided_at.map(rfc3339),
        "result": r.result,
    })
}

pub async fn list_requests(State(vault): State<Arc<Vault>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::KeysStatus);
    vault.admit_status(&ctx).await?;
    let requests = vault.store.key_requests(100).await?;
    audit_ok(&vault, &ctx).await?;
    Ok(Json(json!({ "requests": requests.iter().map(request_json).collect::<Vec<_>>() })))
}

pub async fn get_request(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::KeysStatus);
    vault.admit_status(&ctx).await?;
    let request = vault.store.key_request(&id).await?.ok_or(ApiError::RequestNotFound)?;
    audit_ok(&vault, &ctx).await?;
    Ok(Json(request_json(&request)))
}

/// `POST /v1/keys/requests` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    action: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    force: bool,
}

/// An audit event for a key request step, naming the request and the key version.
fn request_event(
    ctx: &RequestContext,
    decision: &str,
    outcome: &str,
    request: &str,
    version: Option<i64>,
) -> crate::store::AuditEvent {
    let mut event = ctx.event(decision, outcome, None, None, version);
    // The request id travels in the token column: it is what an auditor follows from
    // request to approval to execution.
    event.token = Some(request.to_owned());
    event
}

pub async fn create_request(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    body: Result<JsonBody<CreateKeyRequest>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let keyring = vault.keyring()?;
    let JsonBody(req) = body?;
    let action = KeyAction::parse(&req.action, req.kind.as_deref(), req.version, req.force)?;
    let ctx = caller.context(action.operation());
    if !vault.may_attempt(&ctx) {
        return Err(vault.refuse(&ctx, ApiError::Forbidden, None, None).await);
    }
    let needs_approval = vault.policy.needs_approval(action.operation());
    let now = now_ms();
    let id = new_request_id();
    let mut request = KeyRequest {
        id: id.clone(),
        action: action.name().into(),
        kind: action.kind().map(|k| k.as_str().to_owned()),
        version: action.version(),
        force: action.force(),
        requested_by: ctx.principal.0.clone(),
        requested_at: now,
        expires_at: now + vault.lifecycle.config.request_ttl_ms,
        state: "pending".into(),
        approved_by: None,
        decided_at: None,
        result: None,
    };
    // Checked now so the officer learns at once; checked again when it executes.
    let (mut change, result) = match plan_action(&vault, &keyring, &action, needs_approval).await {
        Ok(planned) => planned,
        Err(e) => {
            let event = request_event(&ctx, "allow", e.code(), &id, action.version());
            if let Err(audit) = vault.commit(Vec::new(), event).await {
                tracing::warn!(error = %audit, "could not audit a refused key request");
            }
            return Err(e);
        }
    };
    if needs_approval {
        let event = request_event(&ctx, "allow", "pending", &id, action.version());
        let change = KeyChange { insert_request: Some(request.clone()), ..KeyChange::default() };
        commit_and_refresh(&vault, change, event).await?;
        tracing::info!(request = %id, action = action.name(), principal = %ctx.principal.0, "key request pending approval");
        return Ok((StatusCode::ACCEPTED, Json(request_json(&request))));
    }
    request.state = "executed".into();
    request.decided_at = Some(now);
    request.result = Some(result);
    change.insert_request = Some(request.clone());
    let event = request_event(&ctx, "allow", "executed", &id, action.version());
    commit_and_refresh(&vault, change, event).await?;
    tracing::info!(request = %id, action = action.name(), principal = %ctx.principal.0, "key request executed");
    Ok((StatusCode::OK, Json(request_json(&request))))
}

pub async fn approve_request(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::KeysApprove);
    let keyring = vault.keyring()?;
    if !vault.may_attempt(&ctx) {
        return Err(vault.refuse(&ctx, ApiError::Forbidden, None, Some(&id)).await);
    }
    let Some(mut request) = vault.store.key_request(&id).await? else {
        return Err(vault.refuse(&ctx, ApiError::RequestNotFound, None, None).await);
    };
    let refuse = |error: ApiError, decision: &'static str| {
        let event = request_event(&ctx, decision, error.code(), &id, request.version);
        let vault = vault.clone();
        async move {
            if let Err(e) = vault.commit(Vec::new(), event).await {
                tracing::warn!(error = %e, "could not audit a refused approval");
            }
            error
        }
    };
    if request.state != "pending" {
        return Err(refuse(ApiError::RequestNotPending, "allow").await);
    }
    if ctx.principal.0 == request.requested_by {
        return Err(refuse(ApiError::ApprovalByRequester, "deny").await);
    }
    if !vault.policy.may_approve(&ctx.principal.0, &request.requested_by) {
        return Err(refuse(ApiError::Forbidden, "deny").await);
    }
    let now = now_ms();
    if now > request.expires_at {
        let change = KeyChange {
            decide_request: Some(RequestDecision {
                id: id.clone(),
                state: "expired".into(),
                approved_by: None,
                decided_at: now,
                result: Some("expired before approval".into()),
            }),
            ..KeyChange::default()
        };
        let event = request_event(&ctx, "allow", "request_expired", &id, request.version);
        commit_and_refresh(&vault, change, event).await?;
        return Err(ApiError::RequestExpired);
    }
    let action = KeyAction::parse(&request.action, request.kind.as_deref(), request.version, request.force)?;
    let (mut change, result) = match plan_action(&vault, &keyring, &action, true).await {
        Ok(planned) => planned,
        Err(e) => return Err(refuse(e, "allow").await),
    };
    change.decide_request = Some(RequestDecision {
        id: id.clone(),
        state: "executed".into(),
        approved_by: Some(ctx.principal.0.clone()),
        decided_at: now,
        result: Some(result.clone()),
    });
    let event = request_event(&ctx, "allow", "executed", &id, request.version);
    commit_and_refresh(&vault, change, event).await?;
    tracing::info!(request = %id, action = %request.action, approver = %ctx.principal.0, "key request approved and executed");
    request.state = "executed".into();
    request.approved_by = Some(ctx.principal.0.clone());
    request.decided_at = Some(now);
    request.result = Some(result);
    Ok(Json(request_json(&request)))
}

/// Records read per page by the integrity check.
const VERIFY_PAGE: i64 = 1_000;

/// Open every card and CVC under its DEK, inside the vault; report counts only.
pub async fn verify_records(State(vault): State<Arc<Vault>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::KeysStatus);
    let keyring = vault.admit(&ctx).await?;
    let mut by_version = serde_json::Map::new();
    let (mut opened, mut failed) = (0i64, 0i64);
    for usage in vault.store.dek_usage().await? {
        let dek = u32::try_from(usage.version).ok().and_then(|v| keyring.dek(v));
        let (mut ok, mut bad) = (0i64, 0i64);
        let mut cursor = String::new();
        loop {
            let page = vault.store.cards_for_reencrypt(usage.version, &cursor, VERIFY_PAGE).await?;
            let Some(last) = page.last() else { break };
            cursor = last.token.clone();
            for card in &page {
                let opens = dek.is_some_and(|d| {
                    d.open(&card.ciphertext, &[card.token.as_bytes(), card.merchant_id.as_bytes()]).is_ok()
                });
                if opens {
                    ok += 1;
                } else {
                    bad += 1;
                }
            }
        }
        opened += ok;
        failed += bad;
        by_version.insert(usage.version.to_string(), json!({ "cards": usage.cards, "opened": ok, "failed": bad }));
    }
    let outcome = if failed == 0 { "ok" } else { "records_unreadable" };
    vault.commit(Vec::new(), ctx.event("allow", outcome, None, None, None)).await?;
    Ok(Json(json!({ "ok": failed == 0, "opened": opened, "failed": failed, "by_dek_version": by_version })))
}
