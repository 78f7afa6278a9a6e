//! The one error type of the vault's API and the one place it becomes a response.
//!
//! Every variant maps to an HTTP status and a **stable code** that clients and
//! tests rely on. Client-facing messages are fixed or sanitized text; internal
//! detail (database errors) goes to the log only, and never holds card data.

use crate::card::CardError;
use crate::relay::RelayError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use paysys_policies::ValueError;

/// An API error: status + stable code + safe message.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not valid JSON (syntax or truncated).
    InvalidJson(String),
    /// Valid JSON of the wrong shape: wrong type, missing or unknown field.
    InvalidRequest(String),
    /// The body is larger than the vault accepts.
    BodyTooLarge,
    /// Card data failed validation.
    Card(CardError),
    /// `merchant_id` is not 1–64 characters of `[A-Za-z0-9_-]`.
    MerchantIdInvalid,
    /// No such token — or one the caller may not see (no existence leak).
    TokenNotFound,
    /// The policy denies this principal this operation.
    Forbidden,
    /// The vault's keys are not in memory.
    Sealed,
    /// The vault is already unsealed.
    AlreadyUnsealed,
    /// The unseal key does not open this vault's key store.
    UnsealKeyInvalid,
    /// No route for this path.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The operation could not be recorded in the audit log, so it did not happen.
    AuditUnavailable,
    /// The caller sent its own request to relay (a body, path, method, destination URL
    /// or headers): relay templates belong to the vault's policy.
    RelayTemplateNotAllowed,
    /// No template of that name at a destination this principal may relay to.
    RelayTemplateUnknown,
    /// A template's value is missing, unknown, or not of its declared type.
    RelayValueInvalid(String),
    /// A value aimed at a card location, or holding a placeholder or a card number.
    RelayCardDataInValue(String),
    /// The destination is not in the policy, or not allowed for this principal.
    RelayDestinationNotAllowed,
    /// The destination did not answer within the timeout.
    RelayTimeout,
    /// The destination could not be reached (connect, TLS, certificate) or broke off.
    RelayUnreachable,
    /// The destination's answer was larger than the vault accepts.
    RelayResponseTooLarge,
    /// Anything else: detail logged, not returned.
    Internal(String),
    /// A custodian share is malformed or its checksum does not match (mistyped or altered).
    ShareInvalid,
    /// This share (same index) was already given in this unseal.
    ShareDuplicate,
    /// The share belongs to another vault (its root KCV is not this vault's).
    ShareForeign,
    /// The share is from another ceremony (split) of this vault than the shares before it.
    ShareMixed,
    /// The threshold was reached but the shares do not rebuild the root key (one is wrong
    /// and none can be left out yet; progress kept), or the rebuilt key did not open the
    /// stored keys.
    UnsealFailed,
    /// A well-formed share of this vault that is not the share recorded for its index at
    /// `init` (its commitment does not match): altered. Refused; progress kept.
    ShareAltered,
    /// This client certificate already gave a share in this unseal attempt; the next share
    /// must come from another custodian. Refused; the first share stays.
    CustodianAlreadySubmitted,
    /// The operation is allowed only on a vault started with `--dev`.
    DevModeRequired,
    /// No such key request.
    RequestNotFound,
    /// The key request was already executed or expired.
    RequestNotPending,
    /// The key request expired before it was approved.
    RequestExpired,
    /// The officer who requested a key operation tried to approve it too.
    ApprovalByRequester,
    /// No key of this kind and version.
    VersionNotFound,
    /// Records (or DEKs, for a KEK) still depend on this key version.
    VersionInUse,
    /// The active version cannot be retired or destroyed; rotate first.
    VersionActive,
    /// The version is already retired or destroyed.
    VersionState,
    /// A re-encryption job is still running; wait for it before another DEK rotation.
    ReencryptionRunning,
    /// `force` is only accepted for a destroy that a second officer approves.
    ForceRequiresApproval,
    /// Another key change got there first; look at the state and try again.
    KeyChangeConflict,
    /// `ttl_sec` is not a whole number of seconds within the allowed range.
    TtlInvalid,
    /// Too many requests of this kind for this merchant; try again later.
    RateLimited,
    /// The stored chain head does not match the record at its `seq`: the vault refuses to
    /// sign a checkpoint of it (run `audit verify`).
    AuditChainBroken,
    /// The checkpoint could not be appended to the checkpoint file; it was not handed out.
    CheckpointUnavailable,
    /// A principal that may create only checkout-bound tokens (`checkout_tokens_only`,
    /// the card intake) sent no `checkout` binding.
    CheckoutBindingRequired,
    /// A principal that may not bind tokens to checkouts sent a `checkout` binding: only
    /// the intake spends the gateway's grants.
    CheckoutBindingForbidden,
    /// `checkout.checkout_id` or `checkout.grant_nonce` is malformed, or
    /// `grant_expires_at` lies further ahead than any grant lives.
    CheckoutBindingInvalid(&'static str),
    /// `reuse: true` with a checkout binding: a bound token is always a new token.
    ReuseNotAllowed,
    /// The grant of the checkout binding has expired.
    GrantExpired,
    /// The grant of the checkout binding has already minted a token; nothing was stored.
    GrantUsed,
}

impl ApiError {
    /// HTTP status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::Card(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.code()),
            ApiError::MerchantIdInvalid => (StatusCode::UNPROCESSABLE_ENTITY, "merchant_id_invalid"),
            ApiError::TokenNotFound => (StatusCode::NOT_FOUND, "token_not_found"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Sealed => (StatusCode::SERVICE_UNAVAILABLE, "vault_sealed"),
            ApiError::AlreadyUnsealed => (StatusCode::CONFLICT, "already_unsealed"),
            ApiError::UnsealKeyInvalid => (StatusCode::BAD_REQUEST, "unseal_key_invalid"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::AuditUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
            ApiError::RelayTemplateNotAllowed => (StatusCode::FORBIDDEN, "relay_template_not_allowed"),
            ApiError::RelayTemplateUnknown => (StatusCode::NOT_FOUND, "relay_template_unknown"),
            ApiError::RelayValueInvalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "relay_value_invalid"),
            ApiError::RelayCardDataInValue(_) => (StatusCode::UNPROCESSABLE_ENTITY, "relay_card_data_in_value"),
            ApiError::RelayDestinationNotAllowed => (StatusCode::FORBIDDEN, "relay_destination_not_allowed"),
            ApiError::RelayTimeout => (StatusCode::GATEWAY_TIMEOUT, "relay_timeout"),
            ApiError::RelayUnreachable => (StatusCode::BAD_GATEWAY, "relay_unreachable"),
            ApiError::RelayResponseTooLarge => (StatusCode::BAD_GATEWAY, "relay_response_too_large"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            ApiError::ShareInvalid => (StatusCode::BAD_REQUEST, "share_invalid"),
            ApiError::ShareDuplicate => (StatusCode::CONFLICT, "share_duplicate"),
            ApiError::ShareForeign => (StatusCode::BAD_REQUEST, "share_foreign"),
            ApiError::ShareMixed => (StatusCode::BAD_REQUEST, "share_mixed_splits"),
            ApiError::UnsealFailed => (StatusCode::BAD_REQUEST, "unseal_failed"),
            ApiError::ShareAltered => (StatusCode::BAD_REQUEST, "share_altered"),
            ApiError::CustodianAlreadySubmitted => (StatusCode::CONFLICT, "custodian_already_submitted"),
            ApiError::DevModeRequired => (StatusCode::FORBIDDEN, "dev_mode_required"),
            ApiError::RequestNotFound => (StatusCode::NOT_FOUND, "request_not_found"),
            ApiError::RequestNotPending => (StatusCode::CONFLICT, "request_not_pending"),
            ApiError::RequestExpired => (StatusCode::CONFLICT, "request_expired"),
            ApiError::ApprovalByRequester => (StatusCode::FORBIDDEN, "approval_by_requester"),
            ApiError::VersionNotFound => (StatusCode::NOT_FOUND, "version_not_found"),
            ApiError::VersionInUse => (StatusCode::CONFLICT, "version_in_use"),
            ApiError::VersionActive => (StatusCode::CONFLICT, "version_active"),
            ApiError::VersionState => (StatusCode::CONFLICT, "version_state"),
            ApiError::ReencryptionRunning => (StatusCode::CONFLICT, "reencryption_running"),
            ApiError::ForceRequiresApproval => (StatusCode::CONFLICT, "force_requires_approval"),
            ApiError::KeyChangeConflict => (StatusCode::CONFLICT, "key_change_conflict"),
            ApiError::TtlInvalid => (StatusCode::UNPROCESSABLE_ENTITY, "ttl_sec_invalid"),
            ApiError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::AuditChainBroken => (StatusCode::CONFLICT, "audit_chain_broken"),
            ApiError::CheckpointUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "checkpoint_unavailable"),
            ApiError::CheckoutBindingRequired => (StatusCode::FORBIDDEN, "checkout_binding_required"),
            ApiError::CheckoutBindingForbidden => (StatusCode::FORBIDDEN, "checkout_binding_forbidden"),
            ApiError::CheckoutBindingInvalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "checkout_binding_invalid"),
            ApiError::ReuseNotAllowed => (StatusCode::BAD_REQUEST, "reuse_not_allowed"),
            ApiError::GrantExpired => (StatusCode::UNAUTHORIZED, "grant_expired"),
            ApiError::GrantUsed => (StatusCode::CONFLICT, "grant_used"),
        }
    }

    /// The stable code alone (also written to the audit log as the outcome).
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn client_message(&self) -> String {
        match self {
            ApiError::InvalidJson(m) | ApiError::InvalidRequest(m) => m.clone(),
            ApiError::BodyTooLarge => "the request body is too large".into(),
            ApiError::Card(e) => e.to_string(),
            ApiError::MerchantIdInvalid => "merchant_id must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -".into(),
            ApiError::TokenNotFound => "no such token".into(),
            ApiError::Forbidden => "the policy does not allow this operation for this client".into(),
            ApiError::Sealed => "the vault is sealed".into(),
            ApiError::AlreadyUnsealed => "the vault is already unsealed".into(),
            ApiError::UnsealKeyInvalid => "the key does not unseal this vault".into(),
            ApiError::NotFound => "no such endpoint".into(),
            ApiError::MethodNotAllowed => "method not allowed on this endpoint".into(),
            ApiError::AuditUnavailable => "the audit log could not record this operation; nothing was done".into(),
            ApiError::RelayTemplateNotAllowed => {
                "relay templates belong to the vault's policy: name one with `template` and send only its `values`"
                    .into()
            }
            ApiError::RelayTemplateUnknown => "no such relay template".into(),
            ApiError::RelayValueInvalid(m) | ApiError::RelayCardDataInValue(m) => m.clone(),
            ApiError::RelayDestinationNotAllowed => "this client may not relay to that destination".into(),
            ApiError::RelayTimeout => "the destination did not answer in time".into(),
            ApiError::RelayUnreachable => "the destination could not be reached".into(),
            ApiError::RelayResponseTooLarge => "the destination's answer is too large".into(),
            ApiError::Internal(_) => "internal error".into(),
            ApiError::ShareInvalid => "the share is malformed or mistyped (checksum mismatch)".into(),
            ApiError::ShareDuplicate => "this share was already given".into(),
            ApiError::ShareForeign => "the share belongs to another vault".into(),
            ApiError::ShareMixed => "the share is from another ceremony than the shares given before".into(),
            ApiError::UnsealFailed => "the shares given do not rebuild this vault's root key: one of them is wrong; \
                                       progress is kept, and one more custodian's share lets the vault leave the \
                                       wrong one out"
                .into(),
            ApiError::ShareAltered => {
                "the share is not the one recorded for its index at init (altered); unseal progress is kept".into()
            }
            ApiError::CustodianAlreadySubmitted => {
                "this client certificate already gave a share in this unseal; another custodian must give the next"
                    .into()
            }
            ApiError::DevModeRequired => "only a vault started with --dev accepts this".into(),
            ApiError::RequestNotFound => "no such key request".into(),
            ApiError::RequestNotPending => "the key request was already executed or has expired".into(),
            ApiError::RequestExpired => "the key request expired before it was approved".into(),
            ApiError::ApprovalByRequester => "a key request must be approved by a different officer".into(),
            ApiError::VersionNotFound => "no key of this kind and version".into(),
            ApiError::VersionInUse => "records or keys still depend on this key version".into(),
            ApiError::VersionActive => "the active key version cannot be retired or destroyed; rotate first".into(),
            ApiError::VersionState => "the key version is already retired or destroyed".into(),
            ApiError::ReencryptionRunning => "a re-encryption job is still running".into(),
            ApiError::ForceRequiresApproval => {
                "force is accepted only for a destroy that a second officer approves".into()
            }
            ApiError::KeyChangeConflict => "another key change happened at the same time; try again".into(),
            ApiError::TtlInvalid => {
                format!("ttl_sec must be a whole number of seconds from 1 to {}", crate::api::MAX_TOKEN_TTL_SECS)
            }
            ApiError::RateLimited => "too many removals for this merchant; try again later".into(),
            ApiError::AuditChainBroken => {
                "the audit chain head does not match its record; no checkpoint was signed (run audit verify)".into()
            }
            ApiError::CheckpointUnavailable => "the checkpoint could not be written to the checkpoint file".into(),
            ApiError::CheckoutBindingRequired => {
                "this client may create only checkout-bound tokens: send `checkout`".into()
            }
            ApiError::CheckoutBindingForbidden => "this client may not bind tokens to checkouts".into(),
            ApiError::CheckoutBindingInvalid(m) => (*m).into(),
            ApiError::ReuseNotAllowed => "reuse is not allowed for a checkout-bound token".into(),
            ApiError::GrantExpired => "the checkout grant has expired".into(),
            ApiError::GrantUsed => "the checkout grant was already used; nothing was stored".into(),
        }
    }
}

impl From<CardError> for ApiError {
    fn from(e: CardError) -> Self {
        ApiError::Card(e)
    }
}

impl From<RelayError> for ApiError {
    fn from(e: RelayError) -> Self {
        match e {
            RelayError::Timeout => ApiError::RelayTimeout,
            RelayError::Unreachable(detail) => {
                tracing::warn!(detail = %detail, "relay destination unreachable");
                ApiError::RelayUnreachable
            }
            RelayError::ResponseTooLarge => ApiError::RelayResponseTooLarge,
        }
    }
}

impl From<ValueError> for ApiError {
    fn from(e: ValueError) -> Self {
        // Messages name the value and the rule, never what was sent.
        if e.is_card_data() {
            ApiError::RelayCardDataInValue(e.to_string())
        } else {
            ApiError::RelayValueInvalid(e.to_string())
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(code, detail = %detail, "request failed");
        }
        let body = serde_json::json!({ "error": { "code": code, "message": self.client_message() } });
        (status, Json(body)).into_response()
    }
}
