//! The vault's internal HTTP API (served over mTLS only, see `server.rs`).
//!
//! * `tokens.rs` — tokenize (with an optional expiry; bound to a checkout by a one-time
//!   grant for a `checkout_tokens_only` principal, the card intake), read metadata, delete
//!   (crypto-shred), and the gateway's narrow removal on behalf of a merchant.
//! * `relay.rs` — send a request with a token's card data to an allow-listed destination.
//! * `sys.rs` — health, status, seal and unseal (custodian shares, or the dev key).
//! * `keys.rs` — key lifecycle for officers: versions, requests, approvals, jobs.
//! * `audit.rs` — chain verification, record export, signed checkpoints.
//!
//! Each handler decides by policy, does its work, and appends its audit record in the
//! same commit as its writes; reads append a record too.

mod audit;
mod keys;
mod relay;
mod sys;
mod tokens;

pub use tokens::MAX_TOKEN_TTL_SECS;

use crate::committer::{CommitError, Committer};
use crate::error::ApiError;
use crate::keyring::{KeyState, Keyring};
use crate::store::{AuditEvent, CardWrite, Store, WriteUnit};
use crate::tls::Principal;
use axum::extract::rejection::ExtensionRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::routing::{get, post};
use axum::{Extension, Router};
use paysys_policies::{Decision, DenyReason, Operation, Policy};
use paysys_server::json_body::{read_json_body, EmptyBody, JsonBodyRejection};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Everything a handler needs. Nothing here matters across requests except the
/// unsealed keys, so replicas over one PostgreSQL behave as one vault.
pub struct Vault {
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyState>,
    pub committer: Committer,
    pub policy: Arc<Policy>,
    pub cvc_ttl_ms: i64,
    /// The relay's HTTPS client; `None` when the vault was started without `--relay-ca`
    /// (every relay then answers `relay_unreachable`).
    pub relay: Option<crate::relay::RelayClient>,
    /// Key-lifecycle configuration and the custodian unseal in progress.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// How fast `tokens.remove_for_merchant` may delete each merchant's tokens.
    pub removal_limit: crate::rate_limit::MerchantRateLimiter,
    /// Where signed audit checkpoints go (`--audit-checkpoint-file`).
    pub checkpoints: Arc<crate::checkpoint::CheckpointSink>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("sealed", &self.keys.is_sealed()).finish_non_exhaustive()
    }
}

/// The API router. `max_body_bytes` bounds every request body.
pub fn router(vault: Arc<Vault>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/tokens", post(tokens::create_token))
        .route("/v1/tokens/{token}", get(tokens::get_token).delete(tokens::delete_token))
        .route("/v1/tokens/{token}/remove", post(tokens::remove_token_for_merchant))
        .route("/v1/relay", post(relay::relay))
        .route("/v1/sys/health", get(sys::health))
        .route("/v1/sys/status", get(sys::status))
        .route("/v1/sys/unseal", post(sys::unseal))
        .route("/v1/sys/seal", post(sys::seal))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/records", get(audit::records))
        .route("/v1/audit/checkpoint", post(audit::checkpoint))
        .route("/v1/audit/checkpoints", get(audit::remembered_checkpoints))
        .route("/v1/sys/seal-status", get(sys::seal_status))
        .route("/v1/keys", get(keys::list_keys))
        .route("/v1/keys/jobs", get(keys::list_jobs))
        .route("/v1/keys/requests", get(keys::list_requests).post(keys::create_request))
        .route("/v1/keys/requests/{id}", get(keys::get_request))
        .route("/v1/keys/requests/{id}/approve", post(keys::approve_request))
        .route("/v1/keys/verify-records", post(keys::verify_records))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(attach_request_id))
        .with_state(vault)
}

/// A request id: the caller's `x-request-id` if it is short and plain, else a fresh one.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

async fn attach_request_id(mut req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !v.bytes().all(|b| b.is_ascii_digit())
        })
        .map(str::to_owned);
    let id = given.unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn new_request_id() -> String {
    use rand::Rng;
    let n: u128 = rand::rngs::OsRng.gen();
    format!("req_{n:032x}")
}

/// JSON body extractor ([`paysys_server::json_body`]): every failure gets a stable code,
/// card-number-like digit runs are cut from the parser's message, the raw body is wiped.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json_body(req, state, EmptyBody::Refused).await.map(JsonBody)
    }
}

impl JsonBodyRejection for ApiError {
    const REDACT_DIGIT_RUNS_FROM: usize = crate::card::REDACT_DIGIT_RUNS_FROM;

    fn body_too_large() -> Self {
        ApiError::BodyTooLarge
    }

    fn invalid_request(message: String) -> Self {
        ApiError::InvalidRequest(message)
    }

    fn invalid_json(message: String) -> Self {
        ApiError::InvalidJson(message)
    }
}

pub use paysys_server::clock::{now_ms, rfc3339};

/// One request's context for policy and audit.
#[derive(Debug)]
pub struct RequestContext {
    pub principal: Principal,
    pub request_id: RequestId,
    pub operation: Operation,
}

impl RequestContext {
    /// The audit event for this request.
    pub fn event(
        &self,
        decision: &str,
        outcome: &str,
        merchant_id: Option<&str>,
        token: Option<&str>,
        key_version: Option<i64>,
    ) -> AuditEvent {
        AuditEvent {
            at: now_ms(),
            request_id: self.request_id.0.clone(),
            principal: self.principal.0.clone(),
            operation: self.operation.as_str().to_owned(),
            merchant_id: merchant_id.map(str::to_owned),
            token: token.map(str::to_owned),
            decision: decision.to_owned(),
            outcome: outcome.to_owned(),
            key_version,
        }
    }
}

/// Who makes a request: the principal its client certificate names and the id
/// `attach_request_id` gave it, taken from the request's extensions (a missing one is
/// axum's `Extension` rejection). Every handler takes one and makes it a
/// [`RequestContext`] for its operation.
#[derive(Debug)]
pub struct Caller {
    pub principal: Principal,
    pub request_id: RequestId,
}

impl Caller {
    /// This caller's request as `operation`.
    pub fn context(self, operation: Operation) -> RequestContext {
        RequestContext { principal: self.principal, request_id: self.request_id, operation }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ExtensionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Extension(principal) = Extension::<Principal>::from_request_parts(parts, state).await?;
        let Extension(request_id) = Extension::<RequestId>::from_request_parts(parts, state).await?;
        Ok(Caller { principal, request_id })
    }
}

impl Vault {
    /// The unsealed keys, or `vault_sealed`.
    pub fn keyring(&self) -> Result<Arc<Keyring>, ApiError> {
        self.keys.get().ok_or(ApiError::Sealed)
    }

    /// The unsealed keys for a request its principal may attempt at all. While sealed:
    /// `vault_sealed` (there is no audit key to record anything with). A principal the
    /// policy never gives this operation: `forbidden`, audited. Every handler that
    /// needs the keys opens with this.
    pub async fn admit(&self, ctx: &RequestContext) -> Result<Arc<Keyring>, ApiError> {
        let keyring = self.keyring()?;
        if !self.may_attempt(ctx) {
            return Err(self.refuse(ctx, ApiError::Forbidden, None, None).await);
        }
        Ok(keyring)
    }

    /// The policy check of a read-only officer endpoint, which also answers while
    /// sealed: `forbidden` if the policy never gives the principal this operation,
    /// audited when the vault is unsealed.
    pub async fn admit_status(&self, ctx: &RequestContext) -> Result<(), ApiError> {
        if !self.may_attempt(ctx) {
            if self.keys.is_sealed() {
                return Err(ApiError::Forbidden);
            }
            return Err(self.refuse(ctx, ApiError::Forbidden, None, None).await);
        }
        Ok(())
    }

    /// Does the policy give this principal this operation at all (for some merchant)?
    /// Checked before anything else so a principal without the operation always gets
    /// `forbidden`, whatever it asks about.
    pub fn may_attempt(&self, ctx: &RequestContext) -> bool {
        self.policy.allows_operation(ctx.principal.as_str(), ctx.operation)
    }

    /// The policy decision for a concrete merchant.
    pub fn decide(&self, ctx: &RequestContext, merchant_id: Option<&str>) -> Decision {
        self.policy.decide(ctx.principal.as_str(), ctx.operation, merchant_id)
    }

    /// Commit writes with their audit record; maps commit failures to API errors.
    pub async fn commit(&self, writes: Vec<CardWrite>, audit: AuditEvent) -> Result<(), CommitError> {
        self.committer.commit(WriteUnit { writes, audit }).await
    }

    /// Record a refused request (no writes) and return its error. If even the audit
    /// write fails the caller still gets the original refusal.
    pub async fn refuse(
        &self,
        ctx: &RequestContext,
        error: ApiError,
        merchant_id: Option<&str>,
        token: Option<&str>,
    ) -> ApiError {
        // Refusals by policy are denials; the rest were allowed and failed.
        let decision = match error {
            ApiError::Forbidden | ApiError::CheckoutBindingRequired | ApiError::CheckoutBindingForbidden => "deny",
            _ => "allow",
        };
        let event = ctx.event(decision, error.code(), merchant_id, token, None);
        if let Err(e) = self.commit(Vec::new(), event).await {
            tracing::warn!(error = %e, code = error.code(), "could not audit a refused request");
        }
        error
    }
}

/// A denial as an API error: a merchant-scope denial looks exactly like a missing token.
pub fn denial_error(reason: &DenyReason) -> ApiError {
    match reason {
        DenyReason::MerchantScope => ApiError::TokenNotFound,
        _ => ApiError::Forbidden,
    }
}

impl From<CommitError> for ApiError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Sealed => ApiError::Sealed,
            CommitError::Store(store) => {
                tracing::error!(error = %store, "commit failed");
                ApiError::AuditUnavailable
            }
            CommitError::Stopped => ApiError::AuditUnavailable,
        }
    }
}
