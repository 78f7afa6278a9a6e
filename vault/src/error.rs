//! The one error type of the vault's API and the one place it becomes a response.
//!
//! Every variant maps to an HTTP status and a **stable code** that clients and
//! tests rely on. Client-facing messages are fixed or sanitized text; internal
//! detail (database errors) goes to the log only, and never holds card data.

use crate::card::CardError;
use crate::relay::{RelayError, TemplateError};
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

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
    /// A relay body template is malformed (a placeholder inside a longer string, an
    /// unknown placeholder).
    RelayTemplateInvalid(String),
    /// The destination is not in the policy, or not allowed for this principal.
    RelayDestinationNotAllowed,
    /// The path is not under the destination's `path_prefix`, or is not plain.
    RelayPathNotAllowed,
    /// The template asks for a card field the destination may not receive.
    RelayFieldNotAllowed,
    /// The destination did not answer within the timeout.
    RelayTimeout,
    /// The destination could not be reached (connect, TLS, certificate) or broke off.
    RelayUnreachable,
    /// The destination's answer was larger than the vault accepts.
    RelayResponseTooLarge,
    /// Anything else: detail logged, not returned.
    Internal(String),
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
            ApiError::RelayTemplateInvalid(_) => (StatusCode::BAD_REQUEST, "relay_template_invalid"),
            ApiError::RelayDestinationNotAllowed => (StatusCode::FORBIDDEN, "relay_destination_not_allowed"),
            ApiError::RelayPathNotAllowed => (StatusCode::FORBIDDEN, "relay_path_not_allowed"),
            ApiError::RelayFieldNotAllowed => (StatusCode::FORBIDDEN, "relay_field_not_allowed"),
            ApiError::RelayTimeout => (StatusCode::GATEWAY_TIMEOUT, "relay_timeout"),
            ApiError::RelayUnreachable => (StatusCode::BAD_GATEWAY, "relay_unreachable"),
            ApiError::RelayResponseTooLarge => (StatusCode::BAD_GATEWAY, "relay_response_too_large"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
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
            ApiError::RelayTemplateInvalid(m) => m.clone(),
            ApiError::RelayDestinationNotAllowed => "this client may not relay to that destination".into(),
            ApiError::RelayPathNotAllowed => "the path is not allowed at that destination".into(),
            ApiError::RelayFieldNotAllowed => {
                "the template asks for a card field the destination may not receive".into()
            }
            ApiError::RelayTimeout => "the destination did not answer in time".into(),
            ApiError::RelayUnreachable => "the destination could not be reached".into(),
            ApiError::RelayResponseTooLarge => "the destination's answer is too large".into(),
            ApiError::Internal(_) => "internal error".into(),
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

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        ApiError::RelayTemplateInvalid(e.to_string())
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
