//! The one error type of the sandbox's API and the one place it becomes a response:
//! `{"error": {"code", "message"}}` with a stable `code` per variant. Internal detail
//! goes to the log only.

use crate::issuer::OperationError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An API error: HTTP status, stable code, safe message.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not JSON (syntax error or truncated).
    InvalidJson(String),
    /// JSON of the wrong shape (missing or unknown field, wrong type), or a bad query.
    InvalidRequest(String),
    /// The body is larger than accepted.
    BodyTooLarge,
    /// An amount is not an integer between 1 and 999 999 999 999 minor units.
    InvalidAmount,
    /// `currency` is not three upper-case letters (ISO 4217 alphabetic).
    InvalidCurrency,
    /// `exp_month`/`exp_year` are not a month 1–12 and a year (YY or 20YY).
    InvalidExpiry,
    /// `merchant_id` is not 1–64 characters of `[A-Za-z0-9_-]`.
    InvalidMerchantId,
    /// `reference` or `refund_reference` is not 1–64 characters of `[A-Za-z0-9_.:-]`.
    InvalidReference,
    /// A card number that is not 12–19 digits passing Luhn (balance inquiry; an
    /// authorization with such a number is *declined* with `14` instead).
    InvalidCardNumber,
    /// The reference was used before for a different request (merchant, card, amount,
    /// currency or capture differ).
    ReferenceConflict,
    /// No authorization has this `reference` (inquiry).
    UnknownReference,
    /// A capture, void or refund the issuer refused.
    Operation(OperationError),
    /// No route for this path.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
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
            ApiError::InvalidAmount => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
            ApiError::InvalidCurrency => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_currency"),
            ApiError::InvalidExpiry => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_expiry"),
            ApiError::InvalidMerchantId => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_merchant_id"),
            ApiError::InvalidReference => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference"),
            ApiError::InvalidCardNumber => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_card_number"),
            ApiError::ReferenceConflict => (StatusCode::CONFLICT, "reference_conflict"),
            ApiError::UnknownReference => (StatusCode::NOT_FOUND, "unknown_reference"),
            ApiError::Operation(e) => operation_status_and_code(*e),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    /// The stable code alone.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn client_message(&self) -> String {
        match self {
            ApiError::InvalidJson(m) | ApiError::InvalidRequest(m) => m.clone(),
            ApiError::BodyTooLarge => "the request body is too large".into(),
            ApiError::InvalidAmount => "amount must be an integer from 1 to 999999999999 (minor units)".into(),
            ApiError::InvalidCurrency => "currency must be an ISO 4217 alphabetic code such as USD or UZS".into(),
            ApiError::InvalidExpiry => "exp_month must be 1 to 12 and exp_year a year such as 2030".into(),
            ApiError::InvalidMerchantId => "merchant_id must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -".into(),
            ApiError::InvalidReference => "references must be 1 to 64 characters of A-Z, a-z, 0-9, _ . : and -".into(),
            ApiError::InvalidCardNumber => "the card number must be 12 to 19 digits passing the Luhn check".into(),
            ApiError::ReferenceConflict => "this reference was already used for a different authorization".into(),
            ApiError::UnknownReference => "no authorization with this reference".into(),
            ApiError::Operation(e) => e.to_string(),
            ApiError::NotFound => "no such endpoint".into(),
            ApiError::MethodNotAllowed => "method not allowed on this endpoint".into(),
            ApiError::Internal(_) => "internal error".into(),
        }
    }
}

/// Every refusal of the issuer has its own code, so the gateway can tell them apart.
fn operation_status_and_code(e: OperationError) -> (StatusCode, &'static str) {
    match e {
        OperationError::UnknownAuthorization => (StatusCode::NOT_FOUND, "unknown_authorization"),
        OperationError::AuthorizationDeclined => (StatusCode::CONFLICT, "authorization_declined"),
        OperationError::AlreadyCaptured => (StatusCode::CONFLICT, "already_captured"),
        OperationError::AlreadyVoided => (StatusCode::CONFLICT, "already_voided"),
        OperationError::CaptureExceedsAuthorization => {
            (StatusCode::UNPROCESSABLE_ENTITY, "capture_exceeds_authorization")
        }
        OperationError::CannotVoidCaptured => (StatusCode::CONFLICT, "cannot_void_captured"),
        OperationError::NotCaptured => (StatusCode::CONFLICT, "not_captured"),
        OperationError::RefundExceedsCaptured => (StatusCode::UNPROCESSABLE_ENTITY, "refund_exceeds_captured"),
        OperationError::RefundReferenceConflict => (StatusCode::CONFLICT, "refund_reference_conflict"),
    }
}

impl From<OperationError> for ApiError {
    fn from(e: OperationError) -> Self {
        ApiError::Operation(e)
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

/// Replace every run of eight or more digits (single spaces or dashes between them
/// included) with `[digits]`: parser messages may quote a value, and that value may be
/// a card number ([`paysys_cardnum::redact_digit_runs`]).
pub fn redact_digit_runs(text: &str) -> String {
    paysys_cardnum::redact_digit_runs(text, REDACT_DIGIT_RUNS_FROM)
}

/// The shortest run of digits [`redact_digit_runs`] cuts.
pub const REDACT_DIGIT_RUNS_FROM: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs_are_redacted() {
        assert_eq!(
            redact_digit_runs("invalid type: integer `4242424242424242`, expected 12 at line 1"),
            "invalid type: integer `[digits]`, expected 12 at line 1"
        );
    }
}
