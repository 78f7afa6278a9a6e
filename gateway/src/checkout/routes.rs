//! The checkout's browser endpoints (no merchant Auth header: the buyer's browser calls
//! them; what they may do is bounded by the unguessable checkout id, the attempt ids
//! the gateway hands out, the client secret for embedded forms, and the card-testing
//! limits):
//!
//! * `GET  /checkout/{id}` — the hosted page ([`paysys_widget::pages::checkout_page`]),
//!   or the screen of a checkout that is over.
//! * `POST /checkout/{id}/attempts` — a new attempt: `{attempt_id, frame_url,
//!   expires_at}`, the grant in the frame URL's fragment.
//! * `POST /checkout/{id}/pay` — pay with the token the card frame handed over.
//! * `GET  /checkout/{id}/return` — where a payment comes back after 3-D Secure: the
//!   signed redirect to the merchant, or the decline screen.
//! * `GET  /checkout/{id}/status` — `{status}` for polling.
//! * `GET  /widget/{asset}` — `checkout.js`, `checkout.css`, `paysys.js` from the
//!   script inventory.
//!
//! Pages carry their CSP, `Cache-Control: no-store`, `nosniff` and `Referrer-Policy:
//! no-referrer`; the hosted page may be framed only by the merchant's allowed origins
//! when it allows that. Cross-origin calls (the embedded form, `paysys.js`) are
//! answered with CORS headers only for the merchant's allowed origins, matched exactly,
//! and need the checkout's client secret.

use super::{sha256_hex, BrowserRequest, PageBrowser};
use crate::auth;
use crate::error::WidgetError;
use crate::payments::{now_ms, Gateway};
use crate::server::App;
use crate::store::{CheckoutRecord, CheckoutStatus, MerchantRecord};
use crate::three_ds::pages as message_pages;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use paysys_widget::pages::{self, Lang, Outcome, OutcomeView, Page};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Where the pages' scripts and styles are served.
pub const ASSET_BASE: &str = "/widget/";
/// The assets `/widget/` serves (the card frame's are the intake's).
const GATEWAY_ASSETS: [&str; 3] = ["checkout.js", "checkout.css", "paysys.js"];

/// The checkout routes, merged into the gateway's router.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/checkout/{checkout_id}", get(checkout_page))
        .route("/checkout/{checkout_id}/attempts", post(attempts).options(preflight))
        .route("/checkout/{checkout_id}/pay", post(pay).options(preflight))
        .route("/checkout/{checkout_id}/return", get(return_page))
        .route("/checkout/{checkout_id}/status", get(status))
        .route("/widget/{asset}", get(widget_asset))
}

/// The gateway's own web origin (from its public URL).
fn own_origin(gateway: &Gateway) -> String {
    url::Url::parse(&gateway.three_ds.public_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| gateway.three_ds.public_url.clone())
}

/// A checkout and its merchant, or the response for a missing one.
async fn load(gateway: &Gateway, checkout_id: &str) -> Result<(CheckoutRecord, MerchantRecord), WidgetError> {
    if !crate::ids::looks_like_checkout_id(checkout_id) {
        return Err(WidgetError::CheckoutUnknown);
    }
    let checkout = gateway.store.checkout(checkout_id).await?.ok_or(WidgetError::CheckoutUnknown)?;
    let checkout = gateway.sync_checkout(checkout).await.map_err(|e| WidgetError::Internal(format!("{e:?}")))?;
    let merchant = gateway.store.merchant(&checkout.merchant_id).await?.ok_or(WidgetError::CheckoutUnknown)?;
    Ok((checkout, merchant))
}

fn static_header(response: &mut Response, name: HeaderName, value: &'static str) {
    response.headers_mut().insert(name, HeaderValue::from_static(value));
}

/// The headers every checkout response carries.
fn no_store(response: &mut Response) {
    static_header(response, header::CACHE_CONTROL, "no-store");
    static_header(response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    static_header(response, header::REFERRER_POLICY, "no-referrer");
}

/// A page with the headers its [`Page::headers`] names (CSP, no-store, no-referrer,
/// nosniff, Permissions-Policy, and `X-Frame-Options: DENY` when nothing may frame it).
fn page_response(status: StatusCode, page: Page) -> Response {
    let headers = page.headers();
    let mut response = (status, page.html).into_response();
    put_headers(&mut response, headers);
    response
}

fn put_headers(response: &mut Response, headers: Vec<(&'static str, String)>) {
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
            response.headers_mut().insert(name, value);
        }
    }
}

fn error_response(error: &WidgetError, cors: Option<&str>) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(error.to_json())).into_response();
    no_store(&mut response);
    if let Some(origin) = cors {
        allow_origin(&mut response, origin);
    }
    response
}

fn json_response(body: Value, cors: Option<&str>) -> Response {
    let mut response = Json(body).into_response();
    no_store(&mut response);
    if let Some(origin) = cors {
        allow_origin(&mut response, origin);
    }
    response
}

fn allow_origin(response: &mut Response, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn unknown_checkout_page() -> Response {
    let mut response = message_pages::message(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "This payment link is unknown or no longer valid.",
    );
    no_store(&mut response);
    response
}

fn unavailable_page() -> Response {
    let mut response = message_pages::message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "The payment service is busy. Reload this page in a moment.",
    );
    no_store(&mut response);
    response
}

fn lang_of(checkout: &CheckoutRecord) -> Lang {
    Lang::parse(&checkout.language).unwrap_or_default()
}

fn exponent_of(currency: &str) -> u32 {
    crate::money::currency(currency).map(|c| u32::from(c.exponent)).unwrap_or(2)
}

// ---- the hosted page ----

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    lang: Option<String>,
}

async fn checkout_page(
    State(app): State<Arc<App>>,
    Path(checkout_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<PageQuery>,
) -> Response {
    let gateway = &app.gateway;
    let (checkout, merchant) = match load(gateway, &checkout_id).await {
        Ok(found) => found,
        Err(WidgetError::CheckoutUnknown) => return unknown_checkout_page(),
        Err(e) => {
            let _ = e.to_json();
            return unavailable_page();
        }
    };
    // The language switch: `?lang=uz|ru|en`, else the checkout's.
    let lang = query.lang.and_then(|l| Lang::parse(&l)).unwrap_or_else(|| lang_of(&checkout));
    let Some(widget) = gateway.widget.ready() else { return unavailable_page() };
    if checkout.status != CheckoutStatus::Open {
        return outcome_response(&app, &checkout, &merchant, lang).await;
    }
    let ancestors: Vec<String> =
        if merchant.widget.allow_checkout_framing { merchant.widget.allowed_origins.clone() } else { Vec::new() };
    let page = pages::checkout_page(&pages::CheckoutView {
        checkout_id: &checkout.checkout_id,
        merchant_name: &merchant.name,
        amount_minor: checkout.amount,
        currency: &checkout.currency,
        exponent: exponent_of(&checkout.currency),
        description: checkout.description.as_deref(),
        lang,
        intake_origin: widget.intake_origin,
        asset_base: ASSET_BASE,
        frame_ancestors: &ancestors,
    });
    page_response(StatusCode::OK, page)
}

/// The screen of a checkout that is not open: paid, being paid, expired, cancelled.
async fn outcome_response(app: &App, checkout: &CheckoutRecord, merchant: &MerchantRecord, lang: Lang) -> Response {
    let return_link = format!("{}/return", app.gateway.checkout_url(&checkout.checkout_id));
    let (outcome, continue_url) = match checkout.status {
        CheckoutStatus::Completed => (Outcome::Success, Some(return_link)),
        CheckoutStatus::Processing => (Outcome::Processing, None),
        CheckoutStatus::Expired => (Outcome::Expired, signed_status_link(app, checkout, merchant)),
        CheckoutStatus::Cancelled => (Outcome::Cancelled, signed_status_link(app, checkout, merchant)),
        CheckoutStatus::Open => (Outcome::Processing, Some(app.gateway.checkout_url(&checkout.checkout_id))),
    };
    outcome_page(checkout, merchant, lang, outcome, continue_url.as_deref())
}

fn outcome_page(
    checkout: &CheckoutRecord,
    merchant: &MerchantRecord,
    lang: Lang,
    outcome: Outcome,
    continue_url: Option<&str>,
) -> Response {
    let page = pages::outcome_page(&OutcomeView {
        merchant_name: &merchant.name,
        amount_minor: checkout.amount,
        currency: &checkout.currency,
        exponent: exponent_of(&checkout.currency),
        lang,
        outcome,
        continue_url,
        asset_base: ASSET_BASE,
    });
    page_response(StatusCode::OK, page)
}

/// The merchant's `cancel_url` (or `return_url`) with the checkout's id, key and
/// final status, signed as 3-D Secure returns are ([`auth::return_signature`] over
/// `{checkout_id}.{status}` and the timestamp).
fn signed_status_link(app: &App, checkout: &CheckoutRecord, merchant: &MerchantRecord) -> Option<String> {
    let target = checkout.cancel_url.as_deref().unwrap_or(&checkout.return_url);
    let mut url = url::Url::parse(target).ok()?;
    let secret = app.secret_key.open(&merchant.service_id, &merchant.secret_sealed).ok()?;
    let status = checkout.status.as_str();
    let ts = now_ms();
    let signature = auth::return_signature(&secret, &checkout.checkout_id, status, ts);
    url.query_pairs_mut()
        .append_pair("checkout_id", &checkout.checkout_id)
        .append_pair("partner_trans_id", &checkout.partner_trans_id)
        .append_pair("status", status)
        .append_pair("ts", &ts.to_string())
        .append_pair("signature", &signature);
    Some(url.to_string())
}

// ---- after the payment ----

async fn return_page(State(app): State<Arc<App>>, Path(checkout_id): Path<String>) -> Response {
    let gateway = &app.gateway;
    let (checkout, merchant) = match load(gateway, &checkout_id).await {
        Ok(found) => found,
        Err(WidgetError::CheckoutUnknown) => return unknown_checkout_page(),
        Err(e) => {
            let _ = e.to_json();
            return unavailable_page();
        }
    };
    let lang = lang_of(&checkout);
    match checkout.status {
        CheckoutStatus::Completed => match signed_return(&app, &checkout, &merchant).await {
            Some(location) => {
                let mut response = StatusCode::SEE_OTHER.into_response();
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                no_store(&mut response);
                response
            }
            None => unavailable_page(),
        },
        CheckoutStatus::Open => {
            // Back from a declined (or unauthenticated) payment: say why, and offer
            // another card on the same checkout.
            let code = match &checkout.transaction_id {
                Some(id) => gateway.store.payment(id).await.ok().flatten().map(|p| super::decline_code(&p)),
                None => None,
            };
            let retry = gateway.checkout_url(&checkout.checkout_id);
            let outcome = Outcome::Declined { code: code.unwrap_or_else(|| "unavailable".into()) };
            outcome_page(&checkout, &merchant, lang, outcome, Some(&retry))
        }
        _ => outcome_response(&app, &checkout, &merchant, lang).await,
    }
}

/// The merchant's `return_url` with the paid payment, signed as 3-D Secure returns
/// are: `transaction_id`, `partner_trans_id` (the checkout's), `status` (the
/// payment's), `ts`, `signature`, and `checkout_id`.
async fn signed_return(app: &App, checkout: &CheckoutRecord, merchant: &MerchantRecord) -> Option<String> {
    let transaction_id = checkout.transaction_id.as_deref()?;
    let payment = app.gateway.store.payment(transaction_id).await.ok().flatten()?;
    let mut url = url::Url::parse(&checkout.return_url).ok()?;
    let secret = app.secret_key.open(&merchant.service_id, &merchant.secret_sealed).ok()?;
    let status = payment.status.as_str();
    let ts = now_ms();
    let signature = auth::return_signature(&secret, transaction_id, status, ts);
    url.query_pairs_mut()
        .append_pair("transaction_id", transaction_id)
        .append_pair("partner_trans_id", &checkout.partner_trans_id)
        .append_pair("checkout_id", &checkout.checkout_id)
        .append_pair("status", status)
        .append_pair("ts", &ts.to_string())
        .append_pair("signature", &signature);
    Some(url.to_string())
}

async fn status(State(app): State<Arc<App>>, Path(checkout_id): Path<String>, headers: HeaderMap) -> Response {
    match load(&app.gateway, &checkout_id).await {
        Ok((checkout, merchant)) => {
            let cors = cross_origin(&app.gateway, &headers).filter(|o| merchant.widget.allowed_origins.contains(o));
            json_response(json!({ "status": checkout.status.as_str() }), cors.as_deref())
        }
        Err(e) => error_response(&e, None),
    }
}

// ---- attempts and payments ----

/// The `Origin` of a cross-origin request (one from another origin than the
/// gateway's); `None` for a same-origin request or one without `Origin`.
fn cross_origin(gateway: &Gateway, headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    (origin != own_origin(gateway)).then(|| origin.to_owned())
}

/// How a browser call reached the checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    /// The hosted page, on the gateway's own origin.
    Hosted,
    /// An embedded form on one of the merchant's allowed origins.
    Embedded(String),
}

impl Caller {
    /// The origin to answer with CORS headers: the embedding page's; none for the
    /// hosted page.
    fn cors(&self) -> Option<&str> {
        match self {
            Caller::Embedded(origin) => Some(origin),
            Caller::Hosted => None,
        }
    }
}

/// What the gateway learns of the buyer's browser from the request, and the page's
/// language as its body names it.
fn browser_request(
    headers: &HeaderMap,
    peer: Option<Extension<paysys_server::PeerAddr>>,
    lang: Option<&str>,
) -> BrowserRequest {
    let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    BrowserRequest {
        client_ip: peer.map(|Extension(p)| p.0.ip().to_string()),
        accept: text(header::ACCEPT),
        user_agent: text(header::USER_AGENT),
        lang: lang.and_then(Lang::parse),
    }
}

/// A refusal before the caller is admitted. CORS headers go only to one of the
/// merchant's allowed origins, and never with `origin_forbidden`: a page the merchant
/// did not allow cannot read why it was refused.
fn refusal(error: &WidgetError, cors: Option<String>, merchant: &MerchantRecord) -> Response {
    let cors = cors.filter(|o| merchant.widget.allowed_origins.contains(o) && *error != WidgetError::OriginForbidden);
    error_response(error, cors.as_deref())
}

/// Parse a small JSON body; never echoes it.
fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, WidgetError> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}").map_err(|_| WidgetError::InvalidRequest("a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|_| WidgetError::InvalidRequest("the body is not the expected JSON".into()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttemptBody {
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    /// The page's language (its switch): the card frame's.
    #[serde(default)]
    lang: Option<String>,
}

async fn attempts(
    State(app): State<Arc<App>>,
    Path(checkout_id): Path<String>,
    peer: Option<Extension<paysys_server::PeerAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gateway = &app.gateway;
    let cors = cross_origin(gateway, &headers);
    let (checkout, merchant) = match load(gateway, &checkout_id).await {
        Ok(found) => found,
        Err(e) => return error_response(&e, None),
    };
    let (caller, request) = match admit_body::<AttemptBody>(gateway, &headers, &checkout, &merchant, &body) {
        Ok(admitted) => admitted,
        Err(e) => return refusal(&e, cors, &merchant),
    };
    let origin = match &caller {
        Caller::Hosted => own_origin(gateway),
        Caller::Embedded(origin) => {
            // The page says which origin it is; it must be the one the browser named.
            if request.origin.as_deref() != Some(origin.as_str()) {
                return error_response(&WidgetError::OriginForbidden, Some(origin));
            }
            origin.clone()
        }
    };
    let cors = caller.cors();
    let client = browser_request(&headers, peer, request.lang.as_deref());
    match gateway.open_checkout_attempt(&checkout, &merchant, &origin, &client).await {
        Ok(issued) => json_response(
            json!({
                "attempt_id": issued.attempt_id,
                "frame_url": issued.frame_url,
                "expires_at": crate::payments::rfc3339(issued.expires_at),
            }),
            cors,
        ),
        Err(e) => error_response(&e, cors),
    }
}

/// Bodies that may carry a client secret.
trait WithClientSecret {
    fn client_secret(&self) -> Option<&str>;
}

impl WithClientSecret for AttemptBody {
    fn client_secret(&self) -> Option<&str> {
        self.client_secret.as_deref()
    }
}

impl WithClientSecret for PayBody {
    fn client_secret(&self) -> Option<&str> {
        self.client_secret.as_deref()
    }
}

/// Admit a call and read its body: same-origin (the hosted page), or cross-origin from
/// one of the merchant's allowed origins (exactly) with the checkout's client secret.
/// The origin check comes first (a forbidden origin learns nothing else), then the
/// body, then the client secret.
fn admit_body<T: serde::de::DeserializeOwned + WithClientSecret>(
    gateway: &Gateway,
    headers: &HeaderMap,
    checkout: &CheckoutRecord,
    merchant: &MerchantRecord,
    body: &Bytes,
) -> Result<(Caller, T), WidgetError> {
    let embedded = cross_origin(gateway, headers);
    if let Some(origin) = &embedded {
        if !merchant.widget.allowed_origins.contains(origin) {
            tracing::info!(checkout_id = %checkout.checkout_id, "a cross-origin checkout call from an origin not allowed");
            return Err(WidgetError::OriginForbidden);
        }
    }
    let request: T = json_body(body)?;
    let Some(origin) = embedded else { return Ok((Caller::Hosted, request)) };
    let given = request.client_secret().ok_or(WidgetError::ClientSecretInvalid)?;
    let digest = sha256_hex(given.as_bytes());
    if !bool::from(digest.as_bytes().ct_eq(checkout.client_secret_hash.as_bytes())) {
        return Err(WidgetError::ClientSecretInvalid);
    }
    Ok((Caller::Embedded(origin), request))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayBody {
    attempt_id: String,
    token: String,
    #[serde(default)]
    browser: Option<PageBrowser>,
    #[serde(default)]
    client_secret: Option<String>,
    /// The page's language: the decline message's.
    #[serde(default)]
    lang: Option<String>,
}

async fn pay(
    State(app): State<Arc<App>>,
    Path(checkout_id): Path<String>,
    peer: Option<Extension<paysys_server::PeerAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gateway = &app.gateway;
    let cors = cross_origin(gateway, &headers);
    let (checkout, merchant) = match load(gateway, &checkout_id).await {
        Ok(found) => found,
        Err(e) => return error_response(&e, None),
    };
    let (caller, request) = match admit_body::<PayBody>(gateway, &headers, &checkout, &merchant, &body) {
        Ok(admitted) => admitted,
        Err(e) => return refusal(&e, cors, &merchant),
    };
    let cors = caller.cors();
    let client = browser_request(&headers, peer, request.lang.as_deref());
    let browser = request.browser.unwrap_or_default();
    match gateway.pay_checkout(&checkout, &merchant, &request.attempt_id, &request.token, &browser, &client).await {
        Ok(mut answer) => {
            if answer.status == "completed" {
                // Straight to the merchant, signed (the `/return` link does the same later).
                let paid = gateway.store.checkout(&checkout.checkout_id).await.ok().flatten();
                if let Some(paid) = paid {
                    if let Some(url) = signed_return(&app, &paid, &merchant).await {
                        answer.redirect_url = Some(url);
                    }
                }
            }
            json_response(answer.to_json(), cors)
        }
        Err(e) => error_response(&e, cors),
    }
}

/// The CORS preflight of the embedded form's calls: allowed only for the merchant's
/// allowed origins.
async fn preflight(State(app): State<Arc<App>>, Path(checkout_id): Path<String>, headers: HeaderMap) -> Response {
    let gateway = &app.gateway;
    let Some(origin) = cross_origin(gateway, &headers) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let merchant = match load(gateway, &checkout_id).await {
        Ok((_, merchant)) => merchant,
        Err(e) => return error_response(&e, None),
    };
    if !merchant.widget.allowed_origins.contains(&origin) {
        return error_response(&WidgetError::OriginForbidden, None);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    allow_origin(&mut response, &origin);
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

// ---- scripts and styles ----

/// A script or style of the inventory, with the headers its [`pages::Asset::headers`]
/// names (loaded cross-origin by merchants' pages, `paysys.js`, with Subresource
/// Integrity, which needs CORS: the assets are public).
async fn widget_asset(Path(name): Path<String>) -> Response {
    let found = GATEWAY_ASSETS.contains(&name.as_str()).then(|| pages::asset(&name)).flatten();
    let Some(asset) = found else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": {"code": "not_found", "message": "no such asset"}})))
            .into_response();
    };
    let mut response = asset.body.into_response();
    put_headers(&mut response, asset.headers());
    response
}
