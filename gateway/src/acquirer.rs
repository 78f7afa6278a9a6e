//! Calls the gateway makes to the acquirer directly, by the acquirer's reference:
//! capture, void, refund, status inquiry. None carries card data.
//!
//! [`Acquirer`] is the seam; [`SandboxAcquirer`] speaks the sandbox's HTTPS API.

use crate::https::{CallError, HttpsPool};
use serde_json::{json, Value};
use std::time::Duration;

/// What the acquirer said.
#[derive(Debug, Clone, PartialEq)]
pub enum AcquirerOutcome {
    /// 2xx with its JSON body.
    Done(Value),
    /// An error answer with its stable code (`unknown_reference`, `already_captured`…).
    Refused { status: u16, code: String },
    /// Nothing reached the acquirer.
    NotSent(String),
    /// No answer seen: the operation may or may not have happened.
    Uncertain(String),
}

/// An authorization as the acquirer reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AcquirerAuthorization {
    pub approved: bool,
    pub acquirer_ref: String,
    pub status: String,
    pub amount: i64,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    pub auth_code: Option<String>,
    pub rrn: Option<String>,
    pub decline_code: Option<String>,
    pub decline_reason: Option<String>,
    pub masked_number: Option<String>,
}

impl AcquirerAuthorization {
    /// Read the acquirer's authorization JSON; `None` if it does not have that shape.
    pub fn from_json(v: &Value) -> Option<AcquirerAuthorization> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(AcquirerAuthorization {
            approved: v.get("approved")?.as_bool()?,
            acquirer_ref: text("acquirer_ref")?,
            status: text("status")?,
            amount: v.get("amount")?.as_i64()?,
            captured_amount: v.get("captured_amount").and_then(Value::as_i64).unwrap_or(0),
            refunded_amount: v.get("refunded_amount").and_then(Value::as_i64).unwrap_or(0),
            auth_code: text("auth_code"),
            rrn: text("rrn"),
            decline_code: text("decline_code"),
            decline_reason: text("decline_reason"),
            masked_number: v
                .get("card")
                .and_then(|c| c.get("masked_number"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// The acquirer, as the gateway uses it.
#[async_trait::async_trait]
pub trait Acquirer: Send + Sync + std::fmt::Debug {
    async fn capture(&self, acquirer_ref: &str, amount: i64, close: bool) -> AcquirerOutcome;
    async fn void(&self, acquirer_ref: &str) -> AcquirerOutcome;
    async fn refund(&self, acquirer_ref: &str, amount: i64, refund_reference: &str) -> AcquirerOutcome;
    /// Status inquiry by the gateway's reference (`Refused 404 unknown_reference` when
    /// the acquirer never saw it).
    async fn inquiry(&self, reference: &str) -> AcquirerOutcome;
    /// The authorization by the acquirer's reference.
    async fn authorization(&self, acquirer_ref: &str) -> AcquirerOutcome;
}

/// The sandbox acquirer's HTTPS API.
#[derive(Debug)]
pub struct SandboxAcquirer {
    pool: HttpsPool,
    timeout: Duration,
}

impl SandboxAcquirer {
    pub fn new(pool: HttpsPool, timeout: Duration) -> SandboxAcquirer {
        SandboxAcquirer { pool, timeout }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>, resend_safe: bool) -> AcquirerOutcome {
        match self.pool.call(method, path, body.as_ref(), self.timeout, resend_safe).await {
            Err(CallError::NotSent(e)) => AcquirerOutcome::NotSent(e),
            Err(CallError::Uncertain(e)) => AcquirerOutcome::Uncertain(e),
            Ok(r) if (200..300).contains(&r.status) => AcquirerOutcome::Done(r.body),
            Ok(r) if r.status >= 500 => AcquirerOutcome::Uncertain(format!("acquirer answered {}", r.status)),
            Ok(r) => {
                AcquirerOutcome::Refused { status: r.status, code: r.error_code().unwrap_or("unknown").to_owned() }
            }
        }
    }
}

/// Acquirer references are ours or the acquirer's random ids; refuse anything that
/// could change the path.
fn path_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[async_trait::async_trait]
impl Acquirer for SandboxAcquirer {
    async fn capture(&self, acquirer_ref: &str, amount: i64, close: bool) -> AcquirerOutcome {
        if !path_safe(acquirer_ref) {
            return AcquirerOutcome::NotSent("bad acquirer reference".into());
        }
        let path = format!("/acquirer/v1/authorizations/{acquirer_ref}/capture");
        // Not idempotent at the acquirer: never re-sent.
        self.send("POST", &path, Some(json!({"amount": amount, "final": close})), false).await
    }

    async fn void(&self, acquirer_ref: &str) -> AcquirerOutcome {
        if !path_safe(acquirer_ref) {
            return AcquirerOutcome::NotSent("bad acquirer reference".into());
        }
        let path = format!("/acquirer/v1/authorizations/{acquirer_ref}/void");
        self.send("POST", &path, None, false).await
    }

    async fn refund(&self, acquirer_ref: &str, amount: i64, refund_reference: &str) -> AcquirerOutcome {
        if !path_safe(acquirer_ref) {
            return AcquirerOutcome::NotSent("bad acquirer reference".into());
        }
        let path = format!("/acquirer/v1/authorizations/{acquirer_ref}/refund");
        let body = json!({"amount": amount, "refund_reference": refund_reference});
        // Idempotent on refund_reference.
        self.send("POST", &path, Some(body), true).await
    }

    async fn inquiry(&self, reference: &str) -> AcquirerOutcome {
        if !path_safe(reference) {
            return AcquirerOutcome::NotSent("bad reference".into());
        }
        self.send("GET", &format!("/acquirer/v1/inquiry?reference={reference}"), None, true).await
    }

    async fn authorization(&self, acquirer_ref: &str) -> AcquirerOutcome {
        if !path_safe(acquirer_ref) {
            return AcquirerOutcome::NotSent("bad acquirer reference".into());
        }
        self.send("GET", &format!("/acquirer/v1/authorizations/{acquirer_ref}"), None, true).await
    }
}
