//! The HTTP API (JSON over HTTPS).
//!
//! Acquirer, called with card data only through the vault relay:
//! * `POST /acquirer/v1/authorizations`
//!
//! Acquirer, called by the gateway directly with the acquirer's reference:
//! * `GET  /acquirer/v1/authorizations/{acquirer_ref}`
//! * `POST /acquirer/v1/authorizations/{acquirer_ref}/capture` `{amount?, final?}`
//! * `POST /acquirer/v1/authorizations/{acquirer_ref}/void`
//! * `POST /acquirer/v1/authorizations/{acquirer_ref}/refund` `{amount, refund_reference}`
//! * `GET  /acquirer/v1/inquiry?reference=…`
//! * `GET  /acquirer/v1/ledger?reference=…&acquirer_ref=…&after_seq=…&limit=…`
//!
//! Issuer (for tests and demos): `POST /issuer/v1/balance` `{card: {number}, currency}`.
//! An authorization may carry `three_ds` (the issuer checks its CAVV, else declines `63`).
//!
//! 3-D Secure directory server ([`crate::threeds::ds`], JSON):
//! * `POST /3ds/v2/preq` — PReq → PRes (card ranges; called by the gateway)
//! * `POST /3ds/v2/areq` — AReq → ARes or `Erro` (through the vault relay: carries the card)
//! * `GET  /3ds/v2/results/{threeDSServerTransID}` — the outcome (called by the gateway)
//!
//! 3-D Secure ACS ([`crate::threeds::acs`], HTML forms from the cardholder's browser):
//! * `POST /acs/v2/method` — `threeDSMethodData` → auto-post back to the 3DS Server
//! * `POST /acs/v2/challenge` — `creq`, `threeDSSessionData` → the challenge page
//! * `POST /acs/v2/challenge/submit` — `acsTransID, nonce, otp, threeDSSessionData[, cancel]`
//!   → RReq to the 3DS Server, then the CRes auto-post page
//!
//! And `GET /health`.

use crate::cards::{CardNumber, Expiry};
use crate::error::{redact_digit_runs, ApiError};
use crate::ids;
use crate::issuer::{self, Authorization, Balance, DeclineCode, Refund, ThreeDsClaim};
use crate::store::{Applied, AuthorizeOutcome, LedgerEntry, LedgerFilter, NewAuthorization, Store};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use paysys_server::clock::{now_ms, rfc3339, unix_ms};
use paysys_server::json_body::{read_json_body, EmptyBody, JsonBodyRejection};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// Largest amount: ISO 8583 carries amounts in 12 digits (field 4).
pub const MAX_AMOUNT: i64 = 999_999_999_999;
/// Most ledger entries one request returns.
const MAX_LEDGER_LIMIT: i64 = 1_000;

/// What the handlers share.
#[derive(Debug)]
pub struct Network {
    pub store: Store,
    /// How long the slow test card (4000000000000259) makes the acquirer wait before it
    /// answers an authorization; longer than the gateway's timeout.
    pub auth_delay: Duration,
}

/// The API router (acquirer, issuer, DS and ACS); `max_body_bytes` bounds request bodies.
pub fn router(three_ds: Arc<crate::threeds::ThreeDs>, max_body_bytes: usize) -> Router {
    let network = three_ds.network.clone();
    Router::new()
        .route("/health", get(health))
        .route("/acquirer/v1/authorizations", post(create_authorization))
        .route("/acquirer/v1/authorizations/{acquirer_ref}", get(get_authorization))
        .route("/acquirer/v1/authorizations/{acquirer_ref}/capture", post(capture))
        .route("/acquirer/v1/authorizations/{acquirer_ref}/void", post(void))
        .route("/acquirer/v1/authorizations/{acquirer_ref}/refund", post(refund))
        .route("/acquirer/v1/inquiry", get(inquiry))
        .route("/acquirer/v1/ledger", get(ledger))
        .route("/issuer/v1/balance", post(balance))
        .with_state(network)
        .merge(crate::threeds::router(three_ds))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
}

/// JSON body extractor ([`paysys_server::json_body`]): every failure gets a stable code,
/// digit runs in parser messages are redacted, and an empty body reads as `{}` (capture
/// and void need none).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json_body(req, state, EmptyBody::EmptyObject).await.map(JsonBody)
    }
}

impl JsonBodyRejection for ApiError {
    const REDACT_DIGIT_RUNS_FROM: usize = crate::error::REDACT_DIGIT_RUNS_FROM;

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

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `POST /acquirer/v1/authorizations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizationRequest {
    merchant_id: String,
    reference: String,
    amount: i64,
    currency: String,
    card: CardData,
    #[serde(default)]
    capture: bool,
    /// The 3-D Secure authentication of this payment: its CAVV must be one the network
    /// issued for this card, amount and currency, unused (else decline `63`).
    #[serde(default)]
    three_ds: Option<ThreeDsData>,
}

/// `three_ds` of an authorization: what the 3DS Server got in the ARes, RReq or results.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThreeDsData {
    /// Accepted as the gateway sends it; the CAVV check does not need it.
    #[serde(default, rename = "version")]
    _version: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "trans_status")]
    _trans_status: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "eci")]
    _eci: Option<serde::de::IgnoredAny>,
    authentication_value: String,
    ds_trans_id: String,
}

impl std::fmt::Debug for ThreeDsData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreeDsData").field("ds_trans_id", &self.ds_trans_id).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardData {
    #[serde(deserialize_with = "card_number")]
    number: CardNumber,
    exp_month: Numeric,
    exp_year: Numeric,
    #[serde(default, deserialize_with = "cvc")]
    cvc: Option<Cvc>,
    /// Accepted as the relay sends it; the sandbox does not check or keep it.
    #[serde(default, rename = "holder")]
    _holder: Option<serde::de::IgnoredAny>,
}

/// A CVC as received: zeroed on drop, `Debug` redacted.
struct Cvc(Zeroizing<String>);

impl std::fmt::Debug for Cvc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cvc([REDACTED])")
    }
}

fn card_number<'de, D: Deserializer<'de>>(d: D) -> Result<CardNumber, D::Error> {
    let raw = Zeroizing::new(String::deserialize(d)?);
    Ok(CardNumber::new(&raw))
}

fn cvc<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cvc>, D::Error> {
    // An empty CVC is how a template renders "no CVC" (the vault consumed it earlier).
    Ok(Option::<String>::deserialize(d)?.filter(|c| !c.is_empty()).map(|c| Cvc(Zeroizing::new(c))))
}

/// A number the relay may render either as JSON number or as a string of digits.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Numeric {
    Number(u32),
    Text(String),
}

impl Numeric {
    fn value(&self) -> Option<u32> {
        match self {
            Numeric::Number(n) => Some(*n),
            Numeric::Text(t) if !t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit()) => {
                t.parse().ok()
            }
            Numeric::Text(_) => None,
        }
    }
}

/// An authorization as the API shows it.
#[derive(Debug, Serialize)]
struct AuthorizationView {
    approved: bool,
    acquirer_ref: String,
    reference: String,
    merchant_id: String,
    status: &'static str,
    amount: i64,
    currency: String,
    captured_amount: i64,
    refunded_amount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_code: Option<String>,
    rrn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    decline_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decline_reason: Option<&'static str>,
    card: CardView,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize)]
struct CardView {
    masked_number: String,
}

impl From<Authorization> for AuthorizationView {
    fn from(a: Authorization) -> Self {
        AuthorizationView {
            approved: a.approved(),
            status: a.status.as_str(),
            decline_code: a.decline_code.map(DeclineCode::as_str),
            decline_reason: a.decline_code.map(DeclineCode::reason),
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
            acquirer_ref: a.acquirer_ref,
            reference: a.reference,
            merchant_id: a.merchant_id,
            amount: a.amount,
            currency: a.currency,
            captured_amount: a.captured_amount,
            refunded_amount: a.refunded_amount,
            auth_code: a.auth_code,
            rrn: a.rrn,
            card: CardView { masked_number: a.masked_pan },
        }
    }
}

async fn create_authorization(
    State(network): State<Arc<Network>>,
    JsonBody(req): JsonBody<AuthorizationRequest>,
) -> Result<Json<AuthorizationView>, ApiError> {
    check_merchant_id(&req.merchant_id)?;
    check_reference(&req.reference)?;
    check_amount(req.amount)?;
    check_currency(&req.currency)?;
    let expiry = match (req.card.exp_month.value(), req.card.exp_year.value()) {
        (Some(month), Some(year)) => Expiry::new(month, year).ok_or(ApiError::InvalidExpiry)?,
        _ => return Err(ApiError::InvalidExpiry),
    };
    let now = time::OffsetDateTime::now_utc();
    let card = &req.card.number;
    let screening = issuer::screen(card, expiry, req.card.cvc.as_ref().map(|c| c.0.as_str()), now.date());
    let balance_key = card.balance_key();
    let currency_numeric = crate::currency::numeric_code(&req.currency);
    let new = NewAuthorization {
        acquirer_ref: ids::new_acquirer_ref(),
        request_digest: request_digest(&req, &balance_key),
        reference: req.reference,
        merchant_id: req.merchant_id,
        masked_pan: card.masked(),
        balance_key,
        currency: req.currency,
        amount: req.amount,
        capture: req.capture,
        decline: screening.decline,
        initial_balance: screening.initial_balance,
        auth_code: ids::new_auth_code(),
        rrn: ids::new_rrn(now),
        now: unix_ms(now),
        three_ds: req.three_ds.map(|t| ThreeDsClaim {
            ds_trans_id: t.ds_trans_id,
            authentication_value: t.authentication_value,
            currency_numeric,
        }),
    };
    match network.store.authorize(&new).await? {
        AuthorizeOutcome::Created(auth) => {
            tracing::info!(
                reference = %auth.reference,
                acquirer_ref = %auth.acquirer_ref,
                merchant_id = %auth.merchant_id,
                card = %auth.masked_pan,
                amount = auth.amount,
                currency = %auth.currency,
                three_ds = new.three_ds.is_some(),
                status = auth.status.as_str(),
                decline_code = auth.decline_code.map(DeclineCode::as_str),
                "authorization"
            );
            if screening.delayed {
                // Recorded and committed already: an inquiry during the wait finds it,
                // exactly like a real network that answered too late.
                tracing::info!(reference = %auth.reference, delay_ms = network.auth_delay.as_millis(), "slow card: answering late");
                tokio::time::sleep(network.auth_delay).await;
            }
            Ok(Json(auth.into()))
        }
        AuthorizeOutcome::Existing(first) if first.request_digest == new.request_digest => {
            tracing::info!(reference = %first.reference, acquirer_ref = %first.acquirer_ref, "authorization replayed");
            Ok(Json(first.into()))
        }
        AuthorizeOutcome::Existing(first) => {
            tracing::info!(reference = %first.reference, "reference reused for a different authorization");
            Err(ApiError::ReferenceConflict)
        }
    }
}

/// Digest of what the gateway asked for, so that a replay can be told from a misuse of
/// the same reference. The card enters as its balance key.
fn request_digest(req: &AuthorizationRequest, balance_key: &str) -> String {
    // Fields cannot contain newlines (validated before), so the encoding is unambiguous.
    let mode = if req.capture { "capture" } else { "hold" };
    let text = format!("{}\n{balance_key}\n{}\n{}\n{mode}", req.merchant_id, req.amount, req.currency);
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

async fn get_authorization(
    State(network): State<Arc<Network>>,
    Path(acquirer_ref): Path<String>,
) -> Result<Json<AuthorizationView>, ApiError> {
    match network.store.find_by_acquirer_ref(&acquirer_ref).await? {
        Some(auth) => Ok(Json(auth.into())),
        None => Err(issuer::OperationError::UnknownAuthorization.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureRequest {
    /// Minor units; all that is still held when absent.
    #[serde(default)]
    amount: Option<i64>,
    /// `true` (default): this capture closes the authorization and releases the rest of
    /// the hold. `false`: the rest stays held for further captures.
    #[serde(default = "final_by_default", rename = "final")]
    final_capture: bool,
}

fn final_by_default() -> bool {
    true
}

async fn capture(
    State(network): State<Arc<Network>>,
    Path(acquirer_ref): Path<String>,
    JsonBody(req): JsonBody<CaptureRequest>,
) -> Result<Json<AuthorizationView>, ApiError> {
    if let Some(amount) = req.amount {
        check_amount(amount)?;
    }
    let applied = network.store.capture(&acquirer_ref, req.amount, req.final_capture, now_ms()).await??;
    let auth = applied.authorization;
    tracing::info!(
        acquirer_ref = %auth.acquirer_ref,
        captured_amount = auth.captured_amount,
        status = auth.status.as_str(),
        "capture"
    );
    Ok(Json(auth.into()))
}

async fn void(
    State(network): State<Arc<Network>>,
    Path(acquirer_ref): Path<String>,
) -> Result<Json<AuthorizationView>, ApiError> {
    let applied = network.store.void(&acquirer_ref, now_ms()).await??;
    tracing::info!(acquirer_ref = %applied.authorization.acquirer_ref, amount = applied.authorization.amount, "void");
    Ok(Json(applied.authorization.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundRequest {
    amount: i64,
    refund_reference: String,
}

#[derive(Debug, Serialize)]
struct RefundView {
    refund_reference: String,
    acquirer_ref: String,
    amount: i64,
    currency: String,
    rrn: String,
    status: &'static str,
    created_at: String,
    authorization: AuthorizationView,
}

fn refund_view(refund: Refund, authorization: Authorization) -> RefundView {
    RefundView {
        refund_reference: refund.refund_reference,
        acquirer_ref: refund.acquirer_ref,
        amount: refund.amount,
        currency: authorization.currency.clone(),
        rrn: refund.rrn,
        status: "refunded",
        created_at: rfc3339(refund.created_at),
        authorization: authorization.into(),
    }
}

async fn refund(
    State(network): State<Arc<Network>>,
    Path(acquirer_ref): Path<String>,
    JsonBody(req): JsonBody<RefundRequest>,
) -> Result<Json<RefundView>, ApiError> {
    check_amount(req.amount)?;
    check_reference(&req.refund_reference)?;
    let now = time::OffsetDateTime::now_utc();
    let Applied { authorization, refund, replayed } = network
        .store
        .refund(&acquirer_ref, req.amount, &req.refund_reference, ids::new_rrn(now), unix_ms(now))
        .await??;
    let refund = refund.ok_or_else(|| ApiError::Internal("refund without a refund row".into()))?;
    tracing::info!(acquirer_ref = %refund.acquirer_ref, refund_reference = %refund.refund_reference, amount = refund.amount, replayed, "refund");
    Ok(Json(refund_view(refund, authorization)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InquiryQuery {
    reference: String,
}

async fn inquiry(
    State(network): State<Arc<Network>>,
    query: Result<Query<InquiryQuery>, QueryRejection>,
) -> Result<Json<AuthorizationView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(redact_digit_runs(&e.body_text())))?;
    check_reference(&query.reference)?;
    match network.store.find_by_reference(&query.reference).await? {
        Some(auth) => Ok(Json(auth.into())),
        None => Err(ApiError::UnknownReference),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    reference: Option<String>,
    acquirer_ref: Option<String>,
    #[serde(default)]
    after_seq: i64,
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
struct LedgerView {
    entries: Vec<LedgerEntryView>,
    /// Pass as `after_seq` to read on.
    next_after_seq: i64,
}

#[derive(Debug, Serialize)]
struct LedgerEntryView {
    seq: i64,
    at: String,
    kind: String,
    acquirer_ref: String,
    reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refund_reference: Option<String>,
    merchant_id: String,
    masked_number: String,
    currency: String,
    amount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    decline_code: Option<String>,
}

impl From<LedgerEntry> for LedgerEntryView {
    fn from(e: LedgerEntry) -> Self {
        LedgerEntryView {
            seq: e.seq,
            at: rfc3339(e.at),
            kind: e.kind,
            acquirer_ref: e.acquirer_ref,
            reference: e.reference,
            refund_reference: e.refund_reference,
            merchant_id: e.merchant_id,
            masked_number: e.masked_pan,
            currency: e.currency,
            amount: e.amount,
            decline_code: e.decline_code,
        }
    }
}

async fn ledger(
    State(network): State<Arc<Network>>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Result<Json<LedgerView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(redact_digit_runs(&e.body_text())))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LEDGER_LIMIT).contains(&limit) || query.after_seq < 0 {
        return Err(ApiError::InvalidRequest(format!("limit must be 1 to {MAX_LEDGER_LIMIT}, after_seq ≥ 0")));
    }
    let filter = LedgerFilter {
        reference: query.reference,
        acquirer_ref: query.acquirer_ref,
        after_seq: query.after_seq,
        limit,
    };
    let entries = network.store.ledger(&filter).await?;
    let next_after_seq = entries.last().map_or(filter.after_seq, |e| e.seq);
    Ok(Json(LedgerView { entries: entries.into_iter().map(Into::into).collect(), next_after_seq }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceRequest {
    card: BalanceCard,
    currency: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceCard {
    #[serde(deserialize_with = "card_number")]
    number: CardNumber,
}

#[derive(Debug, Serialize)]
struct BalanceView {
    card: CardView,
    currency: String,
    balance: i64,
    held: i64,
    available: i64,
}

/// `POST /issuer/v1/balance`: the card number travels in the body, never in a URL that
/// access logs would keep.
async fn balance(
    State(network): State<Arc<Network>>,
    JsonBody(req): JsonBody<BalanceRequest>,
) -> Result<Json<BalanceView>, ApiError> {
    check_currency(&req.currency)?;
    let card = &req.card.number;
    let initial = match card.behavior() {
        Some(crate::cards::CardBehavior::Approve { balance }) => balance,
        Some(crate::cards::CardBehavior::ApproveAfterDelay) => crate::cards::LARGE_BALANCE,
        Some(crate::cards::CardBehavior::Decline(_)) => 0,
        None => return Err(ApiError::InvalidCardNumber),
    };
    let current = network
        .store
        .balance(&card.balance_key(), &req.currency)
        .await?
        .unwrap_or(Balance { balance: initial, held: 0 });
    Ok(Json(BalanceView {
        card: CardView { masked_number: card.masked() },
        currency: req.currency,
        balance: current.balance,
        held: current.held,
        available: current.available(),
    }))
}

fn check_amount(amount: i64) -> Result<(), ApiError> {
    if (1..=MAX_AMOUNT).contains(&amount) {
        Ok(())
    } else {
        Err(ApiError::InvalidAmount)
    }
}

fn check_currency(currency: &str) -> Result<(), ApiError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(ApiError::InvalidCurrency)
    }
}

fn check_merchant_id(id: &str) -> Result<(), ApiError> {
    if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        Ok(())
    } else {
        Err(ApiError::InvalidMerchantId)
    }
}

fn check_reference(reference: &str) -> Result<(), ApiError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-');
    if (1..=64).contains(&reference.len()) && reference.bytes().all(allowed) {
        Ok(())
    } else {
        Err(ApiError::InvalidReference)
    }
}
