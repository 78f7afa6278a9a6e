//! Payments: what each API method does, between the store, the vault relay and the
//! acquirer. Decisions about amounts and states are [`crate::state`]'s; SQL is
//! [`crate::store`]'s; this module sequences them.
//!
//! Safety rules carried out here:
//!
//! * **One authorization per idempotency key.** The payment row (unique on merchant +
//!   `partner_trans_id`) is committed *before* the relay is called; a duplicate sees the
//!   row and gets the first answer, a conflict or "in progress" — never a second relay.
//! * **Uncertain outcomes are resolved by inquiry**, never by authorizing again: a relay
//!   without an answer leaves the payment `processing`; the resolver asks the acquirer by
//!   the transaction id (the acquirer's `reference`).
//! * **One acquirer operation per payment at a time** (the store's lease), so concurrent
//!   captures can never take more than is held.

use crate::acquirer::{Acquirer, AcquirerAuthorization, AcquirerOutcome};
use crate::error::RpcError;
use crate::ids;
use crate::state::{
    check_transition, plan_capture, plan_expiry, plan_refund, plan_void, AfterExpired, Amounts, ExpiryPlan,
    PaymentStatus,
};
use crate::store::{
    CaptureRecord, CaptureStatus, LedgerKind, LedgerRow, PaymentFilter, PaymentRecord, RefundRecord, RefundStatus,
    Slot, Store,
};
use crate::three_ds::authentication::Plan;
use crate::three_ds::directory::Directory;
use crate::three_ds::messages::BrowserInfo;
use crate::three_ds::{AutoSettings, ThreeDsConfig, ThreeDsMode};
use crate::vault::{CardVault, RelayAuthorization, RelayOutcome, ThreeDsProof, TokenBins, TokenLookup, TokenRemoval};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Timing of the gateway's work.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long the relay waits for the acquirer's authorization answer; also the
    /// deadline of direct acquirer calls.
    pub acquirer_timeout: Duration,
    /// How long a concurrent operation on the same payment waits for its turn.
    pub lease_wait: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig { acquirer_timeout: Duration::from_secs(30), lease_wait: Duration::from_secs(5) }
    }
}

impl GatewayConfig {
    pub(crate) fn ms(d: Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// A lease covering one acquirer call with margin.
    pub(crate) fn operation_lease_ms(&self) -> i64 {
        Self::ms(self.acquirer_timeout) + 10_000
    }

    /// An `authorizing` payment untouched this long lost its caller (a crash): resolve it.
    pub fn stale_authorizing_ms(&self) -> i64 {
        Self::ms(self.acquirer_timeout) + 30_000
    }

    /// How long an unknown reference may still be on its way to the acquirer.
    fn unknown_reference_grace_ms(&self) -> i64 {
        2 * Self::ms(self.acquirer_timeout) + 10_000
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    /// The vault's merchant id (tokens belong to it).
    pub merchant_id: String,
    pub service_id: String,
    /// The name shown to the cardholder (the AReq's `merchantName`).
    pub name: String,
    /// What `three_ds: auto` does for this merchant.
    pub three_ds_auto: AutoSettings,
}

/// `capture_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMethod {
    Auto,
    Manual,
}

impl CaptureMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMethod::Auto => "auto",
            CaptureMethod::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<CaptureMethod> {
        [CaptureMethod::Auto, CaptureMethod::Manual].into_iter().find(|m| m.as_str() == s)
    }
}

/// Validated `payment.create` params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    pub card_token: String,
    pub amount: i64,
    pub currency: String,
    pub partner_trans_id: String,
    pub capture_method: CaptureMethod,
    pub hold_ttl_sec: i64,
    pub after_expired: AfterExpired,
    pub description: Option<String>,
    pub client_ip: Option<String>,
    pub return_url: Option<String>,
    pub three_ds: ThreeDsMode,
    /// From `three_ds.prepare` (the 3DS Method ran, or had its chance).
    pub three_ds_server_trans_id: Option<String>,
    pub browser: Option<BrowserInfo>,
}

impl NewPayment {
    /// SHA-256 over the canonical params: what "the same request" means.
    pub fn digest(&self) -> String {
        let canonical = json!({
            "card_token": self.card_token,
            "amount": self.amount,
            "currency": self.currency,
            "partner_trans_id": self.partner_trans_id,
            "capture_method": self.capture_method.as_str(),
            "hold_ttl_sec": self.hold_ttl_sec,
            "after_expired": self.after_expired.as_str(),
            "description": self.description,
            "client_ip": self.client_ip,
            "return_url": self.return_url,
            "three_ds": self.three_ds.as_str(),
            "three_ds_server_trans_id": self.three_ds_server_trans_id,
            "browser": self.browser,
        });
        digest_hex(canonical.to_string().as_bytes())
    }
}

fn digest_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Which payment `payment.check` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentKey {
    TransactionId(String),
    PartnerTransId(String),
}

pub use paysys_server::clock::{now_ms, rfc3339};

pub(crate) fn ledger_row(
    p: &PaymentRecord,
    kind: LedgerKind,
    from: PaymentStatus,
    to: PaymentStatus,
    amount: i64,
    at: i64,
) -> LedgerRow {
    LedgerRow {
        seq: 0,
        transaction_id: p.transaction_id.clone(),
        at,
        kind,
        from_status: from.as_str().to_owned(),
        to_status: to.as_str().to_owned(),
        amount,
        currency: p.currency.clone(),
        refund_id: None,
    }
}

/// Move `p` to `to`, writing the ledger row; refuses what the machine does not allow.
pub(crate) fn transition(
    p: &mut PaymentRecord,
    to: PaymentStatus,
    kind: LedgerKind,
    amount: i64,
    now: i64,
    ledger: &mut Vec<LedgerRow>,
) -> Result<(), RpcError> {
    let from = p.status;
    check_transition(from, to).map_err(|e| RpcError::Internal(e.to_string()))?;
    ledger.push(ledger_row(p, kind, from, to, amount, now));
    p.status = to;
    p.updated_at = now;
    Ok(())
}

/// The payment as the API shows it.
pub fn payment_view(p: &PaymentRecord) -> Value {
    let amounts = Amounts { amount: p.amount, captured: p.captured_amount, refunded: p.refunded_amount };
    let mut v = json!({
        "transaction_id": p.transaction_id,
        "partner_trans_id": p.partner_trans_id,
        "status": p.status.as_str(),
        "amount": p.amount,
        "currency": p.currency,
        "captured_amount": p.captured_amount,
        "refunded_amount": p.refunded_amount,
        "capturable_amount": amounts.capturable(p.status),
        "refundable_amount": amounts.refundable(),
        "capture_method": p.capture_method.as_str(),
        "after_expired": p.after_expired.as_str(),
        "card": { "token": p.card_token, "masked_number": p.masked_card },
        "created_at": rfc3339(p.created_at),
        "updated_at": rfc3339(p.updated_at),
    });
    if let Some(obj) = v.as_object_mut() {
        let mut put = |k: &str, val: Option<Value>| {
            if let Some(val) = val {
                obj.insert(k.to_owned(), val);
            }
        };
        put("auth_code", p.auth_code.clone().map(Value::from));
        put("rrn", p.rrn.clone().map(Value::from));
        put("decline_code", p.decline_code.clone().map(Value::from));
        put("error_code", p.error_code.map(Value::from));
        put("hold_expires_at", p.hold_expires_at.filter(|_| p.status.holds_funds()).map(|t| Value::from(rfc3339(t))));
        put("description", p.description.clone().map(Value::from));
        put("return_url", p.return_url.clone().map(Value::from));
        let (three_ds, next_action) = crate::three_ds::authentication::view(p);
        put("three_ds", three_ds);
        put("next_action", next_action);
    }
    v
}

/// The refund as the API shows it.
pub fn refund_view(r: &RefundRecord) -> Value {
    let mut v = json!({
        "refund_id": r.refund_id,
        "partner_refund_id": r.partner_refund_id,
        "transaction_id": r.transaction_id,
        "amount": r.amount,
        "currency": r.currency,
        "status": r.status.as_str(),
        "created_at": rfc3339(r.created_at),
        "updated_at": rfc3339(r.updated_at),
    });
    if let (Some(obj), Some(rrn)) = (v.as_object_mut(), &r.rrn) {
        obj.insert("rrn".into(), Value::from(rrn.clone()));
    }
    v
}

/// What an operation on a payment settled the payment on, as the API answers it.
///
/// Two levels: the functions that settle a payment return `Result<Settled, RpcError>`.
/// The outer `Err` means the payment could not be settled at all (the store failed, the
/// state machine refused a transition): nothing was decided, nothing is stored as its
/// answer, the caller gets the error. An `Ok` holds the payment's answer, which is
/// either variant: both are stored as the payment's `first_response` and replayed to
/// every repeat of the call.
#[derive(Debug)]
pub(crate) enum Settled {
    /// The payment's view (approved, or still processing).
    View(Value),
    /// The API error the payment ended in (a decline, an unknown token, …).
    Refused(RpcError),
}

impl Settled {
    /// The answer as the JSON-RPC handler returns it.
    pub(crate) fn into_answer(self) -> Result<Value, RpcError> {
        match self {
            Settled::View(view) => Ok(view),
            Settled::Refused(error) => Err(error),
        }
    }

    /// The answer as stored in `first_response`.
    pub(crate) fn stored_response(&self) -> String {
        match self {
            Settled::View(v) => json!({ "result": v }).to_string(),
            Settled::Refused(e) => json!({ "error": e.to_json() }).to_string(),
        }
    }
}

pub(crate) fn stored_response(result: &Result<Value, RpcError>) -> String {
    match result {
        Ok(v) => json!({ "result": v }).to_string(),
        Err(e) => json!({ "error": e.to_json() }).to_string(),
    }
}

fn replay(stored: &str) -> Result<Value, RpcError> {
    let v: Value = serde_json::from_str(stored).map_err(|e| RpcError::Internal(format!("stored response: {e}")))?;
    if let Some(error) = v.get("error") {
        return Err(RpcError::Replayed(error.clone()));
    }
    v.get("result").cloned().ok_or_else(|| RpcError::Internal("stored response without result".into()))
}

/// The gateway's operations.
#[derive(Debug)]
pub struct Gateway {
    pub store: Store,
    pub vault: Arc<dyn CardVault>,
    pub acquirer: Arc<dyn Acquirer>,
    /// The 3-D Secure directory server (card ranges and results; no card data).
    pub directory: Directory,
    pub config: GatewayConfig,
    /// Webhook endpoints' secrets, screening and delivery ([`crate::webhooks`]).
    pub webhooks: crate::webhooks::Webhooks,
    pub three_ds: ThreeDsConfig,
    /// BINs of tokens already looked up for the 3-D Secure decision.
    pub token_bins: TokenBins,
    /// The payment widget: the intake, the grant key, the checkout limits.
    pub widget: crate::checkout::WidgetConfig,
}

impl Gateway {
    // ---- payment.create ----

    /// `payment.create`: a checkout-bound token pays here only once it is saved for a
    /// customer ([`Gateway::refuse_unsaved_checkout_token`]).
    pub async fn create_payment(&self, merchant: &Merchant, req: NewPayment) -> Result<Value, RpcError> {
        self.refuse_unsaved_checkout_token(merchant, &req.card_token).await?;
        self.pay_with_token(merchant, req).await
    }

    /// Create and run a payment with a token: `payment.create`'s work, and a checkout's
    /// payment ([`crate::checkout`]) after its own token check.
    pub(crate) async fn pay_with_token(&self, merchant: &Merchant, req: NewPayment) -> Result<Value, RpcError> {
        if self.store.token_removed(&merchant.merchant_id, &req.card_token).await? {
            return Err(RpcError::UnknownToken);
        }
        let plan = self.plan_authentication(merchant, &req).await?;
        let now = now_ms();
        let digest = req.digest();
        let mut p = PaymentRecord {
            transaction_id: ids::new_transaction_id(),
            merchant_id: merchant.merchant_id.clone(),
            partner_trans_id: req.partner_trans_id.clone(),
            request_digest: digest.clone(),
            card_token: req.card_token.clone(),
            amount: req.amount,
            currency: req.currency.clone(),
            capture_method: req.capture_method,
            hold_ttl_sec: req.hold_ttl_sec,
            after_expired: req.after_expired,
            description: req.description.clone(),
            client_ip: req.client_ip.clone(),
            return_url: req.return_url.clone(),
            status: PaymentStatus::Created,
            captured_amount: 0,
            refunded_amount: 0,
            acquirer_ref: None,
            auth_code: None,
            rrn: None,
            masked_card: None,
            decline_code: None,
            error_code: None,
            hold_expires_at: None,
            first_response: None,
            lease_until: now + self.config.operation_lease_ms(),
            needs_sync: false,
            three_ds: None,
            three_ds_expires_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut ledger =
            vec![ledger_row(&p, LedgerKind::Created, PaymentStatus::Created, PaymentStatus::Created, p.amount, now)];
        let amount = p.amount;
        if plan == Plan::Skip {
            transition(&mut p, PaymentStatus::Authorizing, LedgerKind::Authorizing, amount, now, &mut ledger)?;
        } else {
            transition(&mut p, PaymentStatus::Requires3ds, LedgerKind::Requires3ds, amount, now, &mut ledger)?;
            // The 3DS Method's budget, then the AReq; the lease covers the authorization too.
            let step = GatewayConfig::ms(self.three_ds.method_budget + self.three_ds.areq_timeout) + 5_000;
            p.three_ds_expires_at = Some(now + step);
            p.lease_until = now + step + self.config.operation_lease_ms();
        }
        // A prepared authentication is claimed before the payment exists, so that two
        // payments can never share one.
        let claimed = match &plan {
            Plan::Authenticate { prepared: Some(auth), .. } => {
                let id = auth.three_ds_server_trans_id.clone();
                if !self.store.claim_authentication(&id, &p.transaction_id, now).await? {
                    return Err(RpcError::InvalidParams("three_ds_server_trans_id is used by another payment".into()));
                }
                Some(id)
            }
            _ => None,
        };
        match self.store.insert_payment(&p, &ledger).await {
            Ok(Slot::Inserted) => {}
            other => {
                if let Some(id) = &claimed {
                    self.store.unclaim_authentication(id, &p.transaction_id).await?;
                }
                if let Slot::Existing(existing) = other? {
                    return self.replay_create(existing, &digest).await;
                }
            }
        }
        match plan {
            Plan::Skip => self.authorize(&mut p, None).await,
            Plan::Authenticate { prepared, method_url } => {
                self.authenticate(merchant, p, &req, prepared, method_url).await
            }
            Plan::Unavailable => {
                let kind = crate::error::AuthenticationFailureKind::Unavailable;
                self.fail_authentication(&mut p, kind, None, Vec::new()).await?.into_answer()
            }
        }
    }

    /// Relay the authorization of a leased payment in `authorizing` (with the 3-D Secure
    /// proof when it has one), apply the answer, save, and give the lease back.
    pub(crate) async fn authorize(
        &self,
        p: &mut PaymentRecord,
        three_ds: Option<ThreeDsProof>,
    ) -> Result<Value, RpcError> {
        let relay = RelayAuthorization {
            token: p.card_token.clone(),
            merchant_id: p.merchant_id.clone(),
            reference: p.transaction_id.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            capture: p.capture_method == CaptureMethod::Auto,
            three_ds,
        };
        let outcome = self.vault.relay_authorization(&relay, self.config.acquirer_timeout).await;
        let outcome = self.unmask_rrn(outcome).await;
        let now = now_ms();
        let mut ledger = Vec::new();
        let result = match self.apply_relay_outcome(p, outcome, now, &mut ledger) {
            Ok(r) => r,
            Err(e) => {
                // Leave the row for the resolver rather than guess.
                tracing::error!(transaction_id = %p.transaction_id, error = ?e, "could not apply the relay outcome");
                return Err(e);
            }
        };
        if p.first_response.is_none() {
            p.first_response = Some(result.stored_response());
        }
        self.store.save_and_release(p, &ledger, None).await?;
        result.into_answer()
    }

    /// The vault masks every Luhn-valid 12–19-digit run in a relay answer, and one RRN
    /// in ten passes Luhn. Such an answer's RRN is read again from the acquirer directly
    /// (by its reference, no card data); if that fails the RRN is left out rather than
    /// stored masked.
    async fn unmask_rrn(&self, outcome: RelayOutcome) -> RelayOutcome {
        let RelayOutcome::Answered { status: 200, mut body } = outcome else { return outcome };
        let masked = body.get("rrn").and_then(Value::as_str).is_some_and(|rrn| !is_rrn(rrn));
        if !masked {
            return RelayOutcome::Answered { status: 200, body };
        }
        let acquirer_ref = body.get("acquirer_ref").and_then(Value::as_str).unwrap_or_default().to_owned();
        let rrn = match self.acquirer.authorization(&acquirer_ref).await {
            AcquirerOutcome::Done(view) => {
                view.get("rrn").and_then(Value::as_str).filter(|r| is_rrn(r)).map(Value::from)
            }
            _ => None,
        };
        if let Some(obj) = body.as_object_mut() {
            match rrn {
                Some(rrn) => obj.insert("rrn".into(), rrn),
                None => obj.remove("rrn"),
            };
        }
        RelayOutcome::Answered { status: 200, body }
    }

    async fn replay_create(&self, existing: PaymentRecord, digest: &str) -> Result<Value, RpcError> {
        if existing.request_digest != digest {
            return Err(RpcError::IdempotencyConflict);
        }
        match &existing.first_response {
            None => Err(RpcError::InProgress),
            // A payment that was still processing answers with where it is now.
            Some(_) if existing.status == PaymentStatus::Processing => self.check_payment_record(existing).await,
            Some(stored) => {
                let first = replay(stored)?;
                let first_status = first.get("status").and_then(Value::as_str);
                // A payment that was processing, or waiting for its cardholder's 3-D
                // Secure challenge, answers with where it is now.
                if first_status == Some(PaymentStatus::Processing.as_str())
                    || first_status == Some(PaymentStatus::Requires3ds.as_str())
                {
                    return self.check_payment_record(existing).await;
                }
                Ok(first)
            }
        }
    }

    /// Turn what the relay said into the payment's next state and the API answer.
    fn apply_relay_outcome(
        &self,
        p: &mut PaymentRecord,
        outcome: RelayOutcome,
        now: i64,
        ledger: &mut Vec<LedgerRow>,
    ) -> Result<Settled, RpcError> {
        match outcome {
            RelayOutcome::Answered { status: 200, body } => match AcquirerAuthorization::from_json(&body) {
                Some(auth) => self.apply_authorization(p, &auth, now, ledger),
                None => {
                    tracing::warn!(transaction_id = %p.transaction_id, "acquirer answer of unexpected shape");
                    transition(p, PaymentStatus::Processing, LedgerKind::Processing, p.amount, now, ledger)?;
                    Ok(Settled::View(payment_view(p)))
                }
            },
            RelayOutcome::Answered { status, body } if status >= 500 => {
                tracing::warn!(transaction_id = %p.transaction_id, status, code = %error_code(&body), "acquirer error");
                transition(p, PaymentStatus::Processing, LedgerKind::Processing, p.amount, now, ledger)?;
                Ok(Settled::View(payment_view(p)))
            }
            RelayOutcome::Answered { status, body } => {
                tracing::warn!(transaction_id = %p.transaction_id, status, code = %error_code(&body), "acquirer refused");
                self.fail(p, RpcError::ProcessingUnavailable, now, ledger)
            }
            RelayOutcome::TokenNotFound => self.fail(p, RpcError::UnknownToken, now, ledger),
            RelayOutcome::NotSent(reason) => {
                tracing::warn!(transaction_id = %p.transaction_id, %reason, "authorization not relayed");
                self.fail(p, RpcError::ProcessingUnavailable, now, ledger)
            }
            RelayOutcome::Uncertain(reason) => {
                tracing::warn!(transaction_id = %p.transaction_id, %reason, "authorization outcome unknown: processing");
                transition(p, PaymentStatus::Processing, LedgerKind::Processing, p.amount, now, ledger)?;
                Ok(Settled::View(payment_view(p)))
            }
        }
    }

    pub(crate) fn fail(
        &self,
        p: &mut PaymentRecord,
        error: RpcError,
        now: i64,
        ledger: &mut Vec<LedgerRow>,
    ) -> Result<Settled, RpcError> {
        p.error_code = Some(error.code());
        transition(p, PaymentStatus::Failed, LedgerKind::Failed, 0, now, ledger)?;
        Ok(Settled::Refused(error))
    }

    /// Apply the acquirer's authorization (from the relay or an inquiry).
    fn apply_authorization(
        &self,
        p: &mut PaymentRecord,
        auth: &AcquirerAuthorization,
        now: i64,
        ledger: &mut Vec<LedgerRow>,
    ) -> Result<Settled, RpcError> {
        p.acquirer_ref = Some(auth.acquirer_ref.clone());
        p.rrn = auth.rrn.clone();
        p.masked_card = auth.masked_number.clone();
        if !auth.approved {
            let code = auth.decline_code.clone().unwrap_or_else(|| "05".into());
            p.decline_code = Some(code.clone());
            let error = if code == "51" {
                RpcError::InsufficientFunds { transaction_id: p.transaction_id.clone() }
            } else {
                RpcError::Declined {
                    transaction_id: p.transaction_id.clone(),
                    decline_code: code,
                    decline_reason: auth.decline_reason.clone().unwrap_or_default(),
                }
            };
            return self.fail(p, error, now, ledger);
        }
        p.auth_code = auth.auth_code.clone();
        if auth.captured_amount > 0 {
            p.captured_amount = auth.captured_amount.min(p.amount);
            transition(p, PaymentStatus::Captured, LedgerKind::Capture, p.captured_amount, now, ledger)?;
        } else {
            p.hold_expires_at = Some(now + p.hold_ttl_sec * 1000);
            transition(p, PaymentStatus::Authorized, LedgerKind::Authorized, p.amount, now, ledger)?;
        }
        Ok(Settled::View(payment_view(p)))
    }

    /// Resolve an authorization whose outcome is unknown by status inquiry (never by
    /// authorizing again). The caller holds the lease; this saves and gives it back.
    pub async fn resolve_authorization(&self, mut p: PaymentRecord) -> Result<PaymentRecord, RpcError> {
        let now = now_ms();
        let mut ledger = Vec::new();
        let outcome = self.acquirer.inquiry(&p.transaction_id).await;
        let result = match outcome {
            AcquirerOutcome::Done(body) => match AcquirerAuthorization::from_json(&body) {
                Some(auth) => {
                    if p.status == PaymentStatus::Authorizing {
                        let amount = p.amount;
                        transition(
                            &mut p,
                            PaymentStatus::Processing,
                            LedgerKind::Processing,
                            amount,
                            now,
                            &mut ledger,
                        )?;
                    }
                    Some(self.apply_authorization(&mut p, &auth, now, &mut ledger)?)
                }
                None => None,
            },
            AcquirerOutcome::Refused { status: 404, .. }
                if now - p.created_at > self.config.unknown_reference_grace_ms() =>
            {
                // The acquirer never saw it, and nothing can still be on its way: no money moved.
                if p.status == PaymentStatus::Authorizing {
                    let amount = p.amount;
                    transition(&mut p, PaymentStatus::Processing, LedgerKind::Processing, amount, now, &mut ledger)?;
                }
                Some(self.fail(&mut p, RpcError::ProcessingUnavailable, now, &mut ledger)?)
            }
            other => {
                tracing::debug!(transaction_id = %p.transaction_id, outcome = ?other, "still unresolved");
                None
            }
        };
        if let Some(result) = &result {
            tracing::info!(transaction_id = %p.transaction_id, status = %p.status, "resolved by inquiry");
            if p.first_response.is_none() {
                p.first_response = Some(result.stored_response());
            }
        }
        self.store.save_and_release(&mut p, &ledger, None).await?;
        Ok(p)
    }

    // ---- payment.check / payment.list ----

    pub async fn check_payment(&self, merchant: &Merchant, key: &PaymentKey) -> Result<Value, RpcError> {
        let p = self.find_payment(merchant, key).await?;
        self.check_payment_record(p).await
    }

    pub(crate) async fn check_payment_record(&self, p: PaymentRecord) -> Result<Value, RpcError> {
        let now = now_ms();
        let unresolved = p.status == PaymentStatus::Processing
            || p.status == PaymentStatus::Requires3ds
            || p.needs_sync
            || (p.status == PaymentStatus::Authorizing && now - p.updated_at > self.config.stale_authorizing_ms());
        if unresolved && self.store.try_lease(&p.transaction_id, now, now + self.config.operation_lease_ms()).await? {
            if let Some(fresh) = self.store.payment(&p.transaction_id).await? {
                let resolved = self.resolve(fresh).await?;
                return Ok(payment_view(&resolved));
            }
        }
        Ok(payment_view(&p))
    }

    /// Resolve whatever is open about a leased payment; gives the lease back.
    pub async fn resolve(&self, p: PaymentRecord) -> Result<PaymentRecord, RpcError> {
        if p.status == PaymentStatus::Requires3ds {
            self.settle_authentication(p).await
        } else if matches!(p.status, PaymentStatus::Processing | PaymentStatus::Authorizing) {
            self.resolve_authorization(p).await
        } else if p.needs_sync {
            let mut p = p;
            let synced = self.sync_with_acquirer(&mut p).await;
            match synced {
                Ok(ledger) => self.store.save_and_release(&mut p, &ledger, None).await?,
                Err(_) => {
                    self.store.release_lease(&p.transaction_id).await?;
                    p.lease_until = 0;
                }
            }
            Ok(p)
        } else {
            self.store.release_lease(&p.transaction_id).await?;
            Ok(p)
        }
    }

    async fn find_payment(&self, merchant: &Merchant, key: &PaymentKey) -> Result<PaymentRecord, RpcError> {
        let found = match key {
            PaymentKey::TransactionId(id) => self.store.payment(id).await?,
            PaymentKey::PartnerTransId(id) => self.store.payment_by_partner_id(&merchant.merchant_id, id).await?,
        };
        // Another merchant's payment is reported exactly like a missing one.
        found.filter(|p| p.merchant_id == merchant.merchant_id).ok_or(RpcError::NotFound)
    }

    pub async fn list_payments(&self, filter: &PaymentFilter) -> Result<Value, RpcError> {
        let payments = self.store.list_payments(filter).await?;
        Ok(json!({
            "payments": payments.iter().map(payment_view).collect::<Vec<_>>(),
            "count": payments.len(),
            "offset": filter.offset,
        }))
    }

    // ---- leases ----

    /// Take the payment's lease, waiting up to `lease_wait` for a concurrent operation.
    pub(crate) async fn lease(&self, transaction_id: &str) -> Result<PaymentRecord, RpcError> {
        let deadline = tokio::time::Instant::now() + self.config.lease_wait;
        let mut pause = Duration::from_millis(5);
        loop {
            let now = now_ms();
            if self.store.try_lease(transaction_id, now, now + self.config.operation_lease_ms()).await? {
                return self.store.payment(transaction_id).await?.ok_or(RpcError::NotFound);
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(RpcError::InProgress);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Lease the payment and settle anything open about it first.
    async fn lease_settled(&self, transaction_id: &str) -> Result<PaymentRecord, RpcError> {
        let mut p = self.lease(transaction_id).await?;
        if p.needs_sync {
            match self.sync_with_acquirer(&mut p).await {
                Ok(ledger) => {
                    // Keep holding the lease: the caller goes on with the payment.
                    self.store.save_payment(&p, &ledger, None).await?;
                }
                Err(e) => {
                    self.store.release_lease(transaction_id).await?;
                    return Err(e);
                }
            }
        }
        Ok(p)
    }

    /// Read the acquirer's view of the authorization and take it over (after an
    /// operation whose answer was not seen). Returns the ledger rows.
    async fn sync_with_acquirer(&self, p: &mut PaymentRecord) -> Result<Vec<LedgerRow>, RpcError> {
        let Some(acquirer_ref) = p.acquirer_ref.clone() else {
            p.needs_sync = false;
            return Ok(Vec::new());
        };
        let auth = match self.acquirer.authorization(&acquirer_ref).await {
            AcquirerOutcome::Done(body) => AcquirerAuthorization::from_json(&body),
            other => {
                tracing::warn!(transaction_id = %p.transaction_id, outcome = ?other, "sync with the acquirer failed");
                None
            }
        };
        let Some(auth) = auth else { return Err(RpcError::ProcessingUnavailable) };
        let now = now_ms();
        let to = match auth.status.as_str() {
            "authorized" => PaymentStatus::Authorized,
            "partially_captured" => PaymentStatus::PartiallyCaptured,
            "captured" | "partially_refunded" | "refunded" => PaymentStatus::Captured,
            "voided" if p.hold_expires_at.is_some_and(|at| now >= at) => PaymentStatus::Expired,
            "voided" => PaymentStatus::Voided,
            other => return Err(RpcError::Internal(format!("acquirer status {other:?} during sync"))),
        };
        let mut ledger = Vec::new();
        let captured_delta = auth.captured_amount - p.captured_amount;
        p.captured_amount = auth.captured_amount.clamp(p.captured_amount, p.amount);
        if to != p.status {
            transition(p, to, LedgerKind::Sync, captured_delta, now, &mut ledger)?;
        } else if captured_delta != 0 {
            ledger.push(ledger_row(p, LedgerKind::Sync, p.status, p.status, captured_delta, now));
        }
        p.needs_sync = false;
        p.updated_at = now;
        Ok(ledger)
    }

    // ---- payment.capture / payment.void ----

    /// `payment.capture`; idempotent on `partner_capture_id` when one is given (the
    /// same key and params answer as the first time; other params → −31010).
    pub async fn capture(
        &self,
        merchant: &Merchant,
        transaction_id: &str,
        amount: Option<i64>,
        final_capture: bool,
        partner_capture_id: Option<&str>,
    ) -> Result<Value, RpcError> {
        self.find_payment(merchant, &PaymentKey::TransactionId(transaction_id.to_owned())).await?;
        let Some(key) = partner_capture_id else {
            return self.capture_hold(transaction_id, amount, final_capture).await.map(|(result, _)| result)?;
        };
        let now = now_ms();
        let digest = digest_hex(
            json!({"transaction_id": transaction_id, "amount": amount, "final": final_capture,
                   "partner_capture_id": key})
            .to_string()
            .as_bytes(),
        );
        let mut record = CaptureRecord {
            merchant_id: merchant.merchant_id.clone(),
            partner_capture_id: key.to_owned(),
            transaction_id: transaction_id.to_owned(),
            request_digest: digest.clone(),
            status: CaptureStatus::Running,
            first_response: None,
            created_at: now,
            updated_at: now,
        };
        if let Slot::Existing(existing) = self.store.insert_capture(&record).await? {
            if existing.request_digest != digest {
                return Err(RpcError::IdempotencyConflict);
            }
            // A first call still running holds the payment's lease at most this long.
            let running_for_ms = self.config.operation_lease_ms() + GatewayConfig::ms(self.config.lease_wait);
            return match (existing.status, &existing.first_response) {
                (CaptureStatus::Answered, Some(stored)) => replay(stored),
                (CaptureStatus::Running, _) if now - existing.updated_at < running_for_ms => Err(RpcError::InProgress),
                // The first call's outcome was not seen (or its caller died): never send
                // the capture again; answer with the payment as the acquirer has it.
                _ => self.capture_outcome_unseen(existing).await,
            };
        }
        let (result, attempt) = match self.capture_hold(transaction_id, amount, final_capture).await {
            Ok(done) => done,
            Err(e) => {
                self.store.delete_capture(&record.merchant_id, key).await?;
                return Err(e);
            }
        };
        match attempt {
            CaptureAttempt::NotSent => self.store.delete_capture(&record.merchant_id, key).await?,
            CaptureAttempt::Unseen => {
                record.status = CaptureStatus::Unknown;
                record.updated_at = now_ms();
                self.store.save_capture(&record).await?;
            }
            CaptureAttempt::Answered => {
                record.status = CaptureStatus::Answered;
                record.first_response = Some(stored_response(&result));
                record.updated_at = now_ms();
                self.store.save_capture(&record).await?;
            }
        }
        result
    }

    /// A keyed capture whose first call did not see the acquirer's answer: read the
    /// acquirer's view of the payment, answer with it and keep that as the answer.
    async fn capture_outcome_unseen(&self, mut record: CaptureRecord) -> Result<Value, RpcError> {
        let mut p = self.lease(&record.transaction_id).await?;
        let synced = self.sync_with_acquirer(&mut p).await;
        let ledger = match synced {
            Ok(ledger) => ledger,
            Err(e) => {
                self.store.release_lease(&p.transaction_id).await?;
                return Err(e);
            }
        };
        self.store.save_and_release(&mut p, &ledger, None).await?;
        let result = Ok(payment_view(&p));
        record.status = CaptureStatus::Answered;
        record.first_response = Some(stored_response(&result));
        record.updated_at = now_ms();
        self.store.save_capture(&record).await?;
        result
    }

    /// Capture from a payment's hold. The outer error: nothing was attempted. The
    /// inner result is the API answer, with what became of the attempt.
    async fn capture_hold(
        &self,
        transaction_id: &str,
        amount: Option<i64>,
        final_capture: bool,
    ) -> Result<(Result<Value, RpcError>, CaptureAttempt), RpcError> {
        let mut p = self.lease_settled(transaction_id).await?;
        let now = now_ms();
        let amounts = Amounts { amount: p.amount, captured: p.captured_amount, refunded: p.refunded_amount };
        let plan = match plan_capture(p.status, amounts, p.hold_expires_at, now, amount, final_capture) {
            Ok(plan) => plan,
            Err(refused) => {
                self.store.release_lease(transaction_id).await?;
                return Ok((Err(refused.into()), CaptureAttempt::Answered));
            }
        };
        let acquirer_ref = p.acquirer_ref.clone().unwrap_or_default();
        let outcome = self.acquirer.capture(&acquirer_ref, plan.amount, plan.close).await;
        let now = now_ms();
        let mut ledger = Vec::new();
        let (result, attempt) = match outcome {
            AcquirerOutcome::Done(_) => {
                p.captured_amount += plan.amount;
                match transition(&mut p, plan.to, LedgerKind::Capture, plan.amount, now, &mut ledger) {
                    Ok(()) => {
                        if plan.released > 0 {
                            ledger.push(ledger_row(&p, LedgerKind::Release, plan.to, plan.to, plan.released, now));
                        }
                        (Ok(payment_view(&p)), CaptureAttempt::Answered)
                    }
                    // Captured at the acquirer but not recordable here: leave the
                    // payment (and its lease) for the sync rather than forget it.
                    Err(e) => return Ok((Err(e), CaptureAttempt::Unseen)),
                }
            }
            other => {
                let attempt = match &other {
                    AcquirerOutcome::NotSent(_) => CaptureAttempt::NotSent,
                    _ => CaptureAttempt::Answered,
                };
                let result = self.operation_failed(&mut p, other, &mut ledger).await;
                // An unknown outcome whose sync failed too: nobody knows yet.
                let attempt = if p.needs_sync { CaptureAttempt::Unseen } else { attempt };
                (result, attempt)
            }
        };
        if let Err(e) = self.store.save_and_release(&mut p, &ledger, None).await {
            // The capture was sent: its key must not be freed for a second one.
            let attempt = if attempt == CaptureAttempt::NotSent { attempt } else { CaptureAttempt::Unseen };
            return Ok((Err(e.into()), attempt));
        }
        Ok((result, attempt))
    }

    pub async fn void(&self, merchant: &Merchant, transaction_id: &str) -> Result<Value, RpcError> {
        self.find_payment(merchant, &PaymentKey::TransactionId(transaction_id.to_owned())).await?;
        let mut p = self.lease_settled(transaction_id).await?;
        let amounts = Amounts { amount: p.amount, captured: p.captured_amount, refunded: p.refunded_amount };
        let plan = match plan_void(p.status, amounts) {
            Ok(plan) => plan,
            Err(refused) => {
                self.store.release_lease(transaction_id).await?;
                return Err(refused.into());
            }
        };
        let acquirer_ref = p.acquirer_ref.clone().unwrap_or_default();
        let outcome = self.acquirer.void(&acquirer_ref).await;
        let now = now_ms();
        let mut ledger = Vec::new();
        let result = match outcome {
            AcquirerOutcome::Done(_) => {
                transition(&mut p, plan.to, LedgerKind::Void, plan.released, now, &mut ledger)?;
                Ok(payment_view(&p))
            }
            other => self.operation_failed(&mut p, other, &mut ledger).await,
        };
        self.store.save_and_release(&mut p, &ledger, None).await?;
        result
    }

    /// A capture or void the acquirer did not confirm: refused, not sent, or unknown
    /// (then read its view back, now or by the resolver).
    async fn operation_failed(
        &self,
        p: &mut PaymentRecord,
        outcome: AcquirerOutcome,
        ledger: &mut Vec<LedgerRow>,
    ) -> Result<Value, RpcError> {
        match outcome {
            AcquirerOutcome::Done(_) => Err(RpcError::Internal("operation_failed called on success".into())),
            AcquirerOutcome::NotSent(reason) => {
                tracing::warn!(transaction_id = %p.transaction_id, %reason, "acquirer unreachable");
                Err(RpcError::ProcessingUnavailable)
            }
            AcquirerOutcome::Refused { status, code } => {
                tracing::warn!(transaction_id = %p.transaction_id, status, %code, "acquirer refused; syncing");
                // Our view and the acquirer's differ: take the acquirer's.
                if let Ok(rows) = self.sync_with_acquirer(p).await {
                    ledger.extend(rows);
                } else {
                    p.needs_sync = true;
                }
                Err(match code.as_str() {
                    "capture_exceeds_authorization" => {
                        RpcError::OverCapture { capturable: (p.amount - p.captured_amount).max(0) }
                    }
                    _ => RpcError::WrongState(p.status.as_str().to_owned()),
                })
            }
            AcquirerOutcome::Uncertain(reason) => {
                tracing::warn!(transaction_id = %p.transaction_id, %reason, "acquirer outcome unknown; syncing");
                match self.sync_with_acquirer(p).await {
                    Ok(rows) => {
                        ledger.extend(rows);
                        Ok(payment_view(p))
                    }
                    Err(_) => {
                        p.needs_sync = true;
                        Err(RpcError::ProcessingUnavailable)
                    }
                }
            }
        }
    }

    // ---- payment.refund / refund.check ----

    pub async fn refund(
        &self,
        merchant: &Merchant,
        transaction_id: &str,
        amount: i64,
        partner_refund_id: &str,
    ) -> Result<Value, RpcError> {
        let payment = self.find_payment(merchant, &PaymentKey::TransactionId(transaction_id.to_owned())).await?;
        let now = now_ms();
        let digest = digest_hex(
            json!({"transaction_id": transaction_id, "amount": amount, "partner_refund_id": partner_refund_id})
                .to_string()
                .as_bytes(),
        );
        let mut refund = RefundRecord {
            refund_id: ids::new_refund_id(),
            transaction_id: transaction_id.to_owned(),
            merchant_id: merchant.merchant_id.clone(),
            partner_refund_id: partner_refund_id.to_owned(),
            request_digest: digest.clone(),
            amount,
            currency: payment.currency.clone(),
            status: RefundStatus::Pending,
            rrn: None,
            error_code: None,
            first_response: None,
            created_at: now,
            updated_at: now,
        };
        if let Slot::Existing(existing) = self.store.insert_refund(&refund).await? {
            if existing.request_digest != digest {
                return Err(RpcError::IdempotencyConflict);
            }
            return match (&existing.first_response, existing.status) {
                (_, RefundStatus::Pending) | (None, _) => Err(RpcError::InProgress),
                (_, RefundStatus::Processing) => Ok(refund_view(&existing)),
                (Some(stored), _) => replay(stored),
            };
        }
        let mut p = match self.lease_settled(transaction_id).await {
            Ok(p) => p,
            Err(e) => {
                // Nothing was attempted: a retry with this key starts afresh.
                self.store.delete_refund(&refund.refund_id).await?;
                return Err(e);
            }
        };
        let in_flight = self.store.refunds_in_flight(transaction_id).await?;
        let amounts = Amounts { amount: p.amount, captured: p.captured_amount, refunded: p.refunded_amount };
        if let Err(refused) = plan_refund(p.status, amounts, in_flight, amount) {
            let error: RpcError = refused.into();
            refund.status = RefundStatus::Failed;
            refund.error_code = Some(error.code());
            refund.first_response = Some(stored_response(&Err(error.clone())));
            refund.updated_at = now_ms();
            self.store.save_and_release(&mut p, &[], Some(&refund)).await?;
            return Err(error);
        }
        let acquirer_ref = p.acquirer_ref.clone().unwrap_or_default();
        let outcome = self.acquirer.refund(&acquirer_ref, amount, &refund.refund_id).await;
        let (result, ledger) = self.apply_refund_outcome(&mut p, &mut refund, outcome);
        if let RefundStatus::Pending = refund.status {
            // Certainly not sent: forget the attempt so a retry starts afresh.
            self.store.delete_refund(&refund.refund_id).await?;
            self.store.release_lease(transaction_id).await?;
            return result;
        }
        refund.first_response = Some(stored_response(&result));
        self.store.save_and_release(&mut p, &ledger, Some(&refund)).await?;
        result
    }

    fn apply_refund_outcome(
        &self,
        p: &mut PaymentRecord,
        refund: &mut RefundRecord,
        outcome: AcquirerOutcome,
    ) -> (Result<Value, RpcError>, Vec<LedgerRow>) {
        let now = now_ms();
        refund.updated_at = now;
        match outcome {
            AcquirerOutcome::Done(body) => {
                refund.status = RefundStatus::Succeeded;
                refund.rrn = body.get("rrn").and_then(Value::as_str).map(str::to_owned);
                p.refunded_amount = (p.refunded_amount + refund.amount).min(p.captured_amount);
                p.updated_at = now;
                let mut row = ledger_row(p, LedgerKind::Refund, p.status, p.status, refund.amount, now);
                row.refund_id = Some(refund.refund_id.clone());
                (Ok(refund_view(refund)), vec![row])
            }
            AcquirerOutcome::Refused { status, code } => {
                tracing::warn!(transaction_id = %p.transaction_id, status, %code, "acquirer refused the refund");
                let error = match code.as_str() {
                    "refund_exceeds_captured" => {
                        RpcError::OverRefund { refundable: p.captured_amount - p.refunded_amount }
                    }
                    _ => RpcError::WrongState(p.status.as_str().to_owned()),
                };
                refund.status = RefundStatus::Failed;
                refund.error_code = Some(error.code());
                (Err(error), Vec::new())
            }
            AcquirerOutcome::NotSent(reason) => {
                tracing::warn!(transaction_id = %p.transaction_id, %reason, "refund not sent");
                (Err(RpcError::ProcessingUnavailable), Vec::new())
            }
            AcquirerOutcome::Uncertain(reason) => {
                tracing::warn!(transaction_id = %p.transaction_id, %reason, "refund outcome unknown: processing");
                refund.status = RefundStatus::Processing;
                (Ok(refund_view(refund)), Vec::new())
            }
        }
    }

    /// Send a `processing` refund again (the acquirer is idempotent on its reference).
    pub async fn retry_refund(&self, refund: RefundRecord) -> Result<RefundRecord, RpcError> {
        let now = now_ms();
        if !self.store.try_lease(&refund.transaction_id, now, now + self.config.operation_lease_ms()).await? {
            return Ok(refund);
        }
        let Some(mut p) = self.store.payment(&refund.transaction_id).await? else {
            return Err(RpcError::NotFound);
        };
        let mut refund = refund;
        let acquirer_ref = p.acquirer_ref.clone().unwrap_or_default();
        let outcome = self.acquirer.refund(&acquirer_ref, refund.amount, &refund.refund_id).await;
        let (_, ledger) = match outcome {
            AcquirerOutcome::NotSent(_) | AcquirerOutcome::Uncertain(_) => {
                self.store.release_lease(&p.transaction_id).await?;
                return Ok(refund);
            }
            other => self.apply_refund_outcome(&mut p, &mut refund, other),
        };
        self.store.save_and_release(&mut p, &ledger, Some(&refund)).await?;
        Ok(refund)
    }

    pub async fn check_refund(
        &self,
        merchant: &Merchant,
        refund_id: Option<&str>,
        partner_refund_id: Option<&str>,
    ) -> Result<Value, RpcError> {
        let found = match (refund_id, partner_refund_id) {
            (Some(id), _) => self.store.refund(id).await?,
            (None, Some(id)) => self.store.refund_by_partner_id(&merchant.merchant_id, id).await?,
            (None, None) => None,
        };
        let refund = found.filter(|r| r.merchant_id == merchant.merchant_id).ok_or(RpcError::NotFound)?;
        let refund = if refund.status == RefundStatus::Processing { self.retry_refund(refund).await? } else { refund };
        Ok(refund_view(&refund))
    }

    // ---- hold expiry ----

    /// Apply `after_expired` to a leased payment whose hold is up; gives the lease back.
    pub async fn expire_hold(&self, mut p: PaymentRecord) -> Result<PaymentRecord, RpcError> {
        let amounts = Amounts { amount: p.amount, captured: p.captured_amount, refunded: p.refunded_amount };
        let after = p.after_expired;
        let Some(plan) = plan_expiry(p.status, amounts, after) else {
            self.store.release_lease(&p.transaction_id).await?;
            return Ok(p);
        };
        let acquirer_ref = p.acquirer_ref.clone().unwrap_or_default();
        let outcome = match plan {
            ExpiryPlan::Capture { amount } => self.acquirer.capture(&acquirer_ref, amount, true).await,
            ExpiryPlan::Release { .. } => self.acquirer.void(&acquirer_ref).await,
        };
        let now = now_ms();
        let mut ledger = Vec::new();
        match (outcome, plan) {
            (AcquirerOutcome::Done(_), ExpiryPlan::Capture { amount }) => {
                p.captured_amount += amount;
                transition(&mut p, PaymentStatus::Captured, LedgerKind::ExpireCapture, amount, now, &mut ledger)?;
            }
            (AcquirerOutcome::Done(_), ExpiryPlan::Release { released, to }) => {
                transition(&mut p, to, LedgerKind::ExpireRelease, released, now, &mut ledger)?;
            }
            (AcquirerOutcome::NotSent(reason), _) => {
                tracing::warn!(transaction_id = %p.transaction_id, %reason, "hold expiry: acquirer unreachable");
            }
            (other, _) => {
                tracing::warn!(transaction_id = %p.transaction_id, outcome = ?other, "hold expiry: syncing");
                match self.sync_with_acquirer(&mut p).await {
                    Ok(rows) => ledger.extend(rows),
                    Err(_) => p.needs_sync = true,
                }
            }
        }
        tracing::info!(transaction_id = %p.transaction_id, status = %p.status, "hold expired");
        self.store.save_and_release(&mut p, &ledger, None).await?;
        Ok(p)
    }

    // ---- cards ----

    pub async fn card_get(&self, merchant: &Merchant, token: &str) -> Result<Value, RpcError> {
        if self.store.token_removed(&merchant.merchant_id, token).await? {
            return Err(RpcError::UnknownToken);
        }
        match self.vault.token_metadata(token).await {
            TokenLookup::Found(meta) if meta.merchant_id == merchant.merchant_id => Ok(json!({
                "card_token": meta.token,
                "brand": meta.brand,
                "bin": meta.bin,
                "last4": meta.last4,
                "exp_month": meta.exp_month,
                "exp_year": meta.exp_year,
                "fingerprint": meta.fingerprint,
                "created_at": meta.created_at,
            })),
            TokenLookup::Found(_) | TokenLookup::NotFound => Err(RpcError::UnknownToken),
            TokenLookup::Unavailable(reason) => {
                tracing::warn!(%reason, "token metadata unavailable");
                Err(RpcError::ProcessingUnavailable)
            }
        }
    }

    /// Remove a saved card: the gateway refuses the token for this merchant from now on
    /// (`card.get`, `payment.create` → −31400), and the card data is deleted in the
    /// vault — at once when no open payment needs it ([`PaymentStatus::needs_card`]),
    /// else by the worker once the last such payment closes. The `removed_tokens` row is
    /// the durable record of that pending deletion. The gateway holds no `tokens.delete`
    /// at the vault: it uses `tokens.remove_for_merchant`, which deletes only a token of
    /// the merchant it names.
    pub async fn card_remove(&self, merchant: &Merchant, token: &str) -> Result<Value, RpcError> {
        let merchant_id = &merchant.merchant_id;
        // This request claims the deletion in the vault (as the worker claims it), so the
        // two never delete the same card side by side; a claim held elsewhere answers
        // "not deleted yet", and the holder finishes it.
        let now = now_ms();
        let claimed_until = now + REMOVAL_CLAIM_MS;
        let claimed = if self.store.token_removed(merchant_id, token).await? {
            self.store.claim_vault_removal(merchant_id, token, now, claimed_until).await?
        } else {
            self.card_get(merchant, token).await?;
            self.store.remove_token(merchant_id, token, now, claimed_until).await?
        };
        let pending = self.store.removed_token(merchant_id, token).await?.is_some_and(|r| r.vault_deleted_at.is_none());
        let deleted = if !pending {
            true
        } else if !claimed {
            false
        } else if self.store.card_needed_by_open_payment(merchant_id, token).await? {
            self.store.release_vault_removal(merchant_id, token).await?;
            false
        } else {
            self.delete_card_in_vault(merchant_id, token).await?
        };
        Ok(json!({ "card_token": token, "removed": true, "card_data_deleted": deleted }))
    }

    /// Ask the vault to delete a removed token's card and record the answer: done (also
    /// when the vault has it no more), or failed with a back-off. `Ok(true)` when done.
    pub async fn delete_card_in_vault(&self, merchant_id: &str, token: &str) -> Result<bool, RpcError> {
        let outcome = self.vault.remove_token(token, merchant_id).await;
        let now = now_ms();
        match outcome {
            TokenRemoval::Removed | TokenRemoval::NotFound => {
                self.store.vault_removal_done(merchant_id, token, now).await?;
                tracing::info!(merchant_id, card_token = token, "removed card deleted in the vault");
                Ok(true)
            }
            TokenRemoval::Failed(reason) => {
                let attempts = self.store.removed_token(merchant_id, token).await?.map_or(0, |r| r.vault_attempts);
                let retry_at = now + removal_backoff_ms(attempts);
                tracing::warn!(merchant_id, card_token = token, %reason, attempts, "deleting a removed card failed");
                self.store.vault_removal_failed(merchant_id, token, &reason, retry_at).await?;
                Ok(false)
            }
        }
    }
}

/// How long a claim on deleting a removed card in the vault lasts (a request's or the
/// worker's); a holder that crashed gives it back by letting it run out.
pub const REMOVAL_CLAIM_MS: i64 = 60_000;

/// Wait before the next attempt to delete a removed card after `failures` failures:
/// 1 s, doubling, at most an hour (a rate-limited merchant's removals spread out).
fn removal_backoff_ms(failures: i64) -> i64 {
    let exponent = u32::try_from(failures.clamp(0, 12)).unwrap_or(12);
    (1_000i64 << exponent).min(3_600_000)
}

/// What became of a capture sent (or not) to the acquirer, for its idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaptureAttempt {
    /// Certainly not sent: the key is free again.
    NotSent,
    /// Sent, and neither its answer nor the acquirer's view afterwards was seen.
    Unseen,
    /// The answer is final (a success, a refusal, or the acquirer's view after an
    /// unseen answer).
    Answered,
}

/// An RRN as the acquirer issues it: 12 digits (a masked one has `*`).
fn is_rrn(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn error_code(body: &Value) -> String {
    body.get("error").and_then(|e| e.get("code")).and_then(Value::as_str).unwrap_or("").to_owned()
}
