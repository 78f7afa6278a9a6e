//! The one error type of the JSON-RPC API and the one place it becomes an error object.
//!
//! Codes follow JSON-RPC 2.0 (−32xxx) and the regional convention for business errors
//! (−31xxx). Messages are fixed or sanitized text; internal detail goes to the log only.

use crate::money::AmountError;
use crate::state::OperationRefused;
use crate::store::StoreError;
use serde_json::{json, Value};

/// An API error with its stable code.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RpcError {
    /// −32700: the body is not JSON.
    Parse,
    /// −32600: not a JSON-RPC 2.0 request object (or an empty/oversized batch).
    InvalidRequest(String),
    /// −32601: no such method.
    MethodNotFound(String),
    /// −32602: params missing, positional, of the wrong type, or unknown.
    InvalidParams(String),
    /// −32603: an internal failure; the detail is logged, never returned.
    Internal(String),
    /// −32504: the Auth header is missing, stale or does not verify.
    Unauthorized,
    /// −31001: the amount or currency is not accepted.
    Amount(AmountError),
    /// −31002: the acquirer or the vault cannot process it now.
    ProcessingUnavailable,
    /// −31003: no such transaction or refund (for this merchant).
    NotFound,
    /// −31007: a captured payment cannot be voided.
    NotCancellable,
    /// −31008: the payment's state does not allow this operation.
    WrongState(String),
    /// −31010: the idempotency key was used with different params.
    IdempotencyConflict,
    /// −31011: the first request with this key (or another operation on this payment)
    /// is still running.
    InProgress,
    /// −31031: capture more than is held.
    OverCapture { capturable: i64 },
    /// −31032: refund more than captured minus refunded.
    OverRefund { refundable: i64 },
    /// −31033: the hold has expired.
    HoldExpired,
    /// −31020 (`N`), −31021 (`R`), −31022 (`U`, timed out, unavailable): 3-D Secure did
    /// not authenticate the cardholder, so nothing was authorized.
    Authentication(AuthenticationFailure),
    /// −31040: the issuer declined.
    Declined { transaction_id: String, decline_code: String, decline_reason: String },
    /// −31300: not a card token.
    InvalidToken,
    /// −31303: insufficient funds (issuer decline `51`).
    InsufficientFunds { transaction_id: String },
    /// −31400: no such token for this merchant (or removed), or a checkout-bound token
    /// that was not saved for a customer.
    UnknownToken,
    /// −31050: the payment widget is not configured on this gateway (no grant key or no
    /// intake URL); `data.reason` is `widget_unavailable`.
    WidgetUnavailable,
    /// The stored error object of an earlier answer, replayed as it was (idempotency).
    Replayed(Value),
}

/// Why 3-D Secure stopped a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthenticationFailureKind {
    /// −31020: transStatus `N`: not authenticated (wrong code, cancelled, issuer said no).
    NotAuthenticated,
    /// −31021: transStatus `R`: the issuer rejected the authentication.
    Rejected,
    /// −31022: transStatus `U`, the DS/ACS did not answer in time, or the challenge was
    /// not completed in its window.
    TimedOut,
    /// −31022 as well: 3-D Secure was required (`force`) and cannot be performed for
    /// this card (not enrolled, DS refused or unreachable).
    Unavailable,
}

impl AuthenticationFailureKind {
    pub fn code(self) -> i64 {
        match self {
            AuthenticationFailureKind::NotAuthenticated => -31020,
            AuthenticationFailureKind::Rejected => -31021,
            AuthenticationFailureKind::TimedOut | AuthenticationFailureKind::Unavailable => -31022,
        }
    }

    fn message(self) -> &'static str {
        match self {
            AuthenticationFailureKind::NotAuthenticated => "3-D Secure: the cardholder was not authenticated",
            AuthenticationFailureKind::Rejected => "3-D Secure: the issuer rejected the authentication",
            AuthenticationFailureKind::TimedOut => "3-D Secure: the authentication did not complete in time",
            AuthenticationFailureKind::Unavailable => "3-D Secure: authentication is unavailable for this card",
        }
    }

    /// `data.reason`: a stable word for logs and merchants' code.
    pub fn reason(self) -> &'static str {
        match self {
            AuthenticationFailureKind::NotAuthenticated => "not_authenticated",
            AuthenticationFailureKind::Rejected => "rejected",
            AuthenticationFailureKind::TimedOut => "timeout",
            AuthenticationFailureKind::Unavailable => "unavailable",
        }
    }
}

/// A 3-D Secure failure with what the DS/ACS said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationFailure {
    pub kind: AuthenticationFailureKind,
    pub transaction_id: String,
    pub trans_status: Option<String>,
    pub trans_status_reason: Option<String>,
}

impl RpcError {
    pub fn code(&self) -> i64 {
        match self {
            RpcError::Parse => -32700,
            RpcError::InvalidRequest(_) => -32600,
            RpcError::MethodNotFound(_) => -32601,
            RpcError::InvalidParams(_) => -32602,
            RpcError::Internal(_) => -32603,
            RpcError::Unauthorized => -32504,
            RpcError::Amount(_) => -31001,
            RpcError::ProcessingUnavailable => -31002,
            RpcError::NotFound => -31003,
            RpcError::NotCancellable => -31007,
            RpcError::WrongState(_) => -31008,
            RpcError::IdempotencyConflict => -31010,
            RpcError::InProgress => -31011,
            RpcError::OverCapture { .. } => -31031,
            RpcError::OverRefund { .. } => -31032,
            RpcError::HoldExpired => -31033,
            RpcError::Authentication(f) => f.kind.code(),
            RpcError::Declined { .. } => -31040,
            RpcError::InvalidToken => -31300,
            RpcError::InsufficientFunds { .. } => -31303,
            RpcError::UnknownToken => -31400,
            RpcError::WidgetUnavailable => -31050,
            RpcError::Replayed(v) => v.get("code").and_then(Value::as_i64).unwrap_or(-32603),
        }
    }

    fn message(&self) -> String {
        match self {
            RpcError::Parse => "parse error: the body is not JSON".into(),
            RpcError::InvalidRequest(m) => format!("invalid request: {m}"),
            RpcError::MethodNotFound(m) => format!("method not found: {m}"),
            RpcError::InvalidParams(m) => format!("invalid params: {m}"),
            RpcError::Internal(_) => "internal error".into(),
            RpcError::Unauthorized => "authentication failed".into(),
            RpcError::Amount(e) => e.to_string(),
            RpcError::ProcessingUnavailable => "processing is unavailable; try again later".into(),
            RpcError::NotFound => "not found".into(),
            RpcError::NotCancellable => "the payment is captured and cannot be voided; refund it".into(),
            RpcError::WrongState(status) => format!("not allowed in status {status}"),
            RpcError::IdempotencyConflict => "this idempotency key was used with different params".into(),
            RpcError::InProgress => "a request with this key or on this payment is in progress; retry".into(),
            RpcError::OverCapture { .. } => "the amount exceeds what can be captured".into(),
            RpcError::OverRefund { .. } => "the amount exceeds what can be refunded".into(),
            RpcError::HoldExpired => "the hold has expired".into(),
            RpcError::Authentication(f) => f.kind.message().into(),
            RpcError::Declined { .. } => "declined by the issuer".into(),
            RpcError::InvalidToken => "card_token is not a card token".into(),
            RpcError::InsufficientFunds { .. } => "insufficient funds".into(),
            RpcError::UnknownToken => "unknown card token".into(),
            RpcError::WidgetUnavailable => "the payment widget is not available on this gateway".into(),
            RpcError::Replayed(v) => v.get("message").and_then(Value::as_str).unwrap_or("error").to_owned(),
        }
    }

    fn data(&self) -> Option<Value> {
        match self {
            RpcError::OverCapture { capturable } => Some(json!({ "capturable_amount": capturable })),
            RpcError::OverRefund { refundable } => Some(json!({ "refundable_amount": refundable })),
            RpcError::WrongState(status) => Some(json!({ "status": status })),
            RpcError::WidgetUnavailable => Some(json!({ "reason": "widget_unavailable" })),
            RpcError::Declined { transaction_id, decline_code, decline_reason } => Some(json!({
                "transaction_id": transaction_id,
                "decline_code": decline_code,
                "decline_reason": decline_reason,
            })),
            RpcError::Authentication(f) => Some(json!({
                "transaction_id": f.transaction_id,
                "trans_status": f.trans_status,
                "trans_status_reason": f.trans_status_reason,
                "reason": f.kind.reason(),
            })),
            RpcError::InsufficientFunds { transaction_id } => Some(json!({
                "transaction_id": transaction_id,
                "decline_code": "51",
                "decline_reason": "insufficient funds",
            })),
            _ => None,
        }
    }

    /// The JSON-RPC error object. Internal detail is logged here, once.
    pub fn to_json(&self) -> Value {
        if let RpcError::Internal(detail) = self {
            tracing::error!(detail = %detail, "request failed");
        }
        if let RpcError::Replayed(v) = self {
            return v.clone();
        }
        let mut error = json!({ "code": self.code(), "message": self.message() });
        if let (Some(data), Some(obj)) = (self.data(), error.as_object_mut()) {
            obj.insert("data".into(), data);
        }
        error
    }
}

impl From<AmountError> for RpcError {
    fn from(e: AmountError) -> Self {
        RpcError::Amount(e)
    }
}

impl From<StoreError> for RpcError {
    fn from(e: StoreError) -> Self {
        RpcError::Internal(e.to_string())
    }
}

impl From<OperationRefused> for RpcError {
    fn from(e: OperationRefused) -> Self {
        match e {
            OperationRefused::WrongState(status) => RpcError::WrongState(status.as_str().to_owned()),
            OperationRefused::NotCancellable => RpcError::NotCancellable,
            OperationRefused::OverCapture { capturable } => RpcError::OverCapture { capturable },
            OperationRefused::OverRefund { refundable } => RpcError::OverRefund { refundable },
            OperationRefused::HoldExpired => RpcError::HoldExpired,
        }
    }
}

/// An error of the checkout endpoints the browser calls (`/checkout/{id}/attempts`,
/// `/checkout/{id}/pay`): a stable `code`, an HTTP status, a fixed message; answered
/// as `{"error": {"code", "message"}}` in one place ([`WidgetError::to_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WidgetError {
    /// 503 `widget_unavailable`: no grant key or intake URL configured.
    Unavailable,
    /// 404 `checkout_unknown`.
    CheckoutUnknown,
    /// 410 `checkout_expired`.
    CheckoutExpired,
    /// 410 `checkout_cancelled`.
    CheckoutCancelled,
    /// 409 `checkout_completed`.
    CheckoutCompleted,
    /// 409 `checkout_processing`: a payment on it is running.
    CheckoutProcessing,
    /// 429 `attempts_exhausted`: the checkout has had its attempts.
    AttemptsExhausted,
    /// 429 `rate_limited`: too many attempts from this client address.
    RateLimited,
    /// 403 `card_testing_suspected`: the merchant's card-testing switch is tripped.
    CardTestingSuspected,
    /// 403 `token_not_for_checkout`: the token was not minted for this checkout.
    TokenNotForCheckout,
    /// 404 `attempt_unknown`.
    AttemptUnknown,
    /// 409 `attempt_used`.
    AttemptUsed,
    /// 403 `origin_forbidden`: a cross-origin call from an origin the merchant does not
    /// allow, or an `origin` that is not the caller's.
    OriginForbidden,
    /// 401 `client_secret_invalid`.
    ClientSecretInvalid,
    /// 400 `invalid_request`: the body is not what the endpoint takes.
    InvalidRequest(String),
    /// 503 `processing_unavailable`: the vault or the acquirer cannot be reached now.
    ProcessingUnavailable,
    /// 500 `internal_error`; the detail is logged, never returned.
    Internal(String),
}

impl WidgetError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            WidgetError::Unavailable => "widget_unavailable",
            WidgetError::CheckoutUnknown => "checkout_unknown",
            WidgetError::CheckoutExpired => "checkout_expired",
            WidgetError::CheckoutCancelled => "checkout_cancelled",
            WidgetError::CheckoutCompleted => "checkout_completed",
            WidgetError::CheckoutProcessing => "checkout_processing",
            WidgetError::AttemptsExhausted => "attempts_exhausted",
            WidgetError::RateLimited => "rate_limited",
            WidgetError::CardTestingSuspected => "card_testing_suspected",
            WidgetError::TokenNotForCheckout => "token_not_for_checkout",
            WidgetError::AttemptUnknown => "attempt_unknown",
            WidgetError::AttemptUsed => "attempt_used",
            WidgetError::OriginForbidden => "origin_forbidden",
            WidgetError::ClientSecretInvalid => "client_secret_invalid",
            WidgetError::InvalidRequest(_) => "invalid_request",
            WidgetError::ProcessingUnavailable => "processing_unavailable",
            WidgetError::Internal(_) => "internal_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            WidgetError::InvalidRequest(_) => 400,
            WidgetError::ClientSecretInvalid => 401,
            WidgetError::CardTestingSuspected | WidgetError::TokenNotForCheckout | WidgetError::OriginForbidden => 403,
            WidgetError::CheckoutUnknown | WidgetError::AttemptUnknown => 404,
            WidgetError::CheckoutCompleted | WidgetError::CheckoutProcessing | WidgetError::AttemptUsed => 409,
            WidgetError::CheckoutExpired | WidgetError::CheckoutCancelled => 410,
            WidgetError::AttemptsExhausted | WidgetError::RateLimited => 429,
            WidgetError::Internal(_) => 500,
            WidgetError::Unavailable | WidgetError::ProcessingUnavailable => 503,
        }
    }

    fn message(&self) -> String {
        match self {
            WidgetError::Unavailable => "the payment widget is not available".into(),
            WidgetError::CheckoutUnknown => "no such checkout".into(),
            WidgetError::CheckoutExpired => "the checkout has expired".into(),
            WidgetError::CheckoutCancelled => "the checkout was cancelled".into(),
            WidgetError::CheckoutCompleted => "the checkout is paid".into(),
            WidgetError::CheckoutProcessing => "a payment on this checkout is in progress".into(),
            WidgetError::AttemptsExhausted => "no more payment attempts on this checkout".into(),
            WidgetError::RateLimited => "too many attempts; try again later".into(),
            WidgetError::CardTestingSuspected => "payments are paused for this merchant".into(),
            WidgetError::TokenNotForCheckout => "the card was not entered for this checkout".into(),
            WidgetError::AttemptUnknown => "no such attempt on this checkout".into(),
            WidgetError::AttemptUsed => "this attempt was used".into(),
            WidgetError::OriginForbidden => "this origin may not use this checkout".into(),
            WidgetError::ClientSecretInvalid => "the client secret does not match".into(),
            WidgetError::InvalidRequest(m) => format!("invalid request: {m}"),
            WidgetError::ProcessingUnavailable => "processing is unavailable; try again later".into(),
            WidgetError::Internal(_) => "internal error".into(),
        }
    }

    /// `{"error": {"code", "message"}}`. Internal detail is logged here, once.
    pub fn to_json(&self) -> Value {
        if let WidgetError::Internal(detail) = self {
            tracing::error!(detail = %detail, "checkout request failed");
        }
        json!({ "error": { "code": self.code(), "message": self.message() } })
    }
}

impl From<StoreError> for WidgetError {
    fn from(e: StoreError) -> Self {
        WidgetError::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(RpcError::Unauthorized.code(), -32504);
        assert_eq!(RpcError::IdempotencyConflict.code(), -31010);
        let declined = RpcError::Declined {
            transaction_id: "tx_1".into(),
            decline_code: "05".into(),
            decline_reason: "do not honor".into(),
        };
        let j = declined.to_json();
        assert_eq!(j["code"], -31040);
        assert_eq!(j["data"]["decline_code"], "05");
        let internal = RpcError::Internal("database is on fire at /var/lib".into()).to_json();
        assert_eq!(internal["message"], "internal error");
        assert!(internal.get("data").is_none());
    }
}
