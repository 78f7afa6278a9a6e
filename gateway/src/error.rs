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
    /// −31400: no such token for this merchant (or removed).
    UnknownToken,
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
            RpcError::Replayed(v) => v.get("message").and_then(Value::as_str).unwrap_or("error").to_owned(),
        }
    }

    fn data(&self) -> Option<Value> {
        match self {
            RpcError::OverCapture { capturable } => Some(json!({ "capturable_amount": capturable })),
            RpcError::OverRefund { refundable } => Some(json!({ "refundable_amount": refundable })),
            RpcError::WrongState(status) => Some(json!({ "status": status })),
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
