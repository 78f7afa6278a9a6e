//! `GET /v1/audit/verify`, `GET /v1/audit/records`, `POST /v1/audit/checkpoint` and
//! `GET /v1/audit/checkpoints` (policy operation `audit.read`).

use super::{rfc3339, Caller, Vault};
use crate::audit::{record_json, verify_chain, ChainReport};
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointReason};
use crate::error::ApiError;
use axum::extract::{Query, State};
use axum::Json;
use paysys_policies::Operation;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Most records one export page returns.
const MAX_EXPORT_PAGE: i64 = 5_000;

pub async fn verify(State(vault): State<Arc<Vault>>, caller: Caller) -> Result<Json<ChainReport>, ApiError> {
    let ctx = caller.context(Operation::AuditRead);
    let keyring = vault.admit(&ctx).await?;
    let report = verify_chain(vault.store.as_ref(), keyring.audit_key()).await?;
    let outcome = if report.ok { "ok" } else { "chain_broken" };
    vault.commit(Vec::new(), ctx.event("allow", outcome, None, None, None)).await?;
    Ok(Json(report))
}

/// `GET /v1/audit/records` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// Only records after this sequence number (for paging).
    #[serde(default)]
    after_seq: i64,
    /// Only records at or after this time (RFC 3339).
    #[serde(default)]
    since: Option<String>,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    1_000
}

pub async fn records(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    query: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::AuditRead);
    vault.admit(&ctx).await?;
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(crate::card::redact_digit_runs(&e.body_text())))?;
    let since_ms = match &q.since {
        None => i64::MIN,
        Some(text) => paysys_server::clock::parse_rfc3339_ms(text)
            .ok_or_else(|| ApiError::InvalidRequest("since must be an RFC 3339 time".into()))?,
    };
    let limit = q.limit.clamp(1, MAX_EXPORT_PAGE);
    let page = vault.store.audit_records(q.after_seq.max(0), limit).await?;
    // A short page is the last one. Without this an exporter would page forever: each
    // page request appends its own audit record, which the next page would return.
    let next_after_seq =
        if i64::try_from(page.len()).unwrap_or(i64::MAX) >= limit { page.last().map(|r| r.seq) } else { None };
    let records: Vec<Value> = page.iter().filter(|r| r.event.at >= since_ms).map(record_json).collect();
    vault.commit(Vec::new(), ctx.event("allow", "ok", None, None, None)).await?;
    Ok(Json(json!({ "records": records, "next_after_seq": next_after_seq })))
}

/// `POST /v1/audit/checkpoint`: sign the chain head now, append it to the checkpoint file
/// (when the vault has one) and return it. Audited with outcome `ok seq=N`.
pub async fn checkpoint(State(vault): State<Arc<Vault>>, caller: Caller) -> Result<Json<Checkpoint>, ApiError> {
    let ctx = caller.context(Operation::AuditRead);
    let keyring = vault.admit(&ctx).await?;
    let emitted = vault.checkpoints.emit(vault.store.as_ref(), &keyring, CheckpointReason::OnDemand, false).await;
    let checkpoint = match emitted {
        Ok(Some(checkpoint)) => checkpoint,
        Ok(None) => return Err(ApiError::Internal("no checkpoint was signed".into())),
        Err(e) => {
            let error = match e {
                CheckpointError::Sealed => ApiError::Sealed,
                CheckpointError::HeadMismatch(seq) => {
                    tracing::error!(seq, "audit chain head does not match its record: checkpoint refused");
                    ApiError::AuditChainBroken
                }
                CheckpointError::Sink(io) => {
                    tracing::error!(error = %io, "could not append to the checkpoint file");
                    ApiError::CheckpointUnavailable
                }
                other => ApiError::Internal(other.to_string()),
            };
            return Err(vault.refuse(&ctx, error, None, None).await);
        }
    };
    let outcome = format!("ok seq={}", checkpoint.seq);
    vault.commit(Vec::new(), ctx.event("allow", &outcome, None, None, None)).await?;
    Ok(Json(checkpoint))
}

/// `GET /v1/audit/checkpoints` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsQuery {
    /// Only checkpoints of a `seq` after this one (for paging).
    #[serde(default)]
    after_seq: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

/// `GET /v1/audit/checkpoints`: the checkpoints this database remembers signing, by `seq`
/// (`audit verify --checkpoint` uses them to tell a truncation from a rollback).
pub async fn remembered_checkpoints(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    query: Result<Query<CheckpointsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::AuditRead);
    vault.admit(&ctx).await?;
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(crate::card::redact_digit_runs(&e.body_text())))?;
    let limit = q.limit.clamp(1, MAX_EXPORT_PAGE);
    let rows = vault.store.recorded_checkpoints(q.after_seq.max(0), limit).await?;
    let next_after_seq =
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit { rows.last().map(|r| r.seq) } else { None };
    let checkpoints: Vec<Value> = rows
        .iter()
        .map(|r| json!({ "seq": r.seq, "head_mac": hex::encode(&r.head_mac), "at": rfc3339(r.at), "key_id": r.key_id }))
        .collect();
    vault.commit(Vec::new(), ctx.event("allow", "ok", None, None, None)).await?;
    Ok(Json(json!({ "checkpoints": checkpoints, "next_after_seq": next_after_seq })))
}
