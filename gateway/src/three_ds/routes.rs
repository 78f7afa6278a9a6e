//! The 3DS Server's HTTP endpoints (no merchant Auth header: browsers and the ACS call
//! them; what they may do is bounded by unguessable ids and by reading results from
//! the DS):
//!
//! * `GET  /3ds/challenge/{challenge_id}` — the `next_action` link: posts the CReq to the
//!   ACS; once the authentication is over, sends the browser to the merchant instead.
//! * `POST /3ds/notify` — the CRes from the cardholder's browser (form `cres`,
//!   `threeDSSessionData`); finishes the payment and redirects to the `return_url`.
//! * `POST /3ds/rreq` — the RReq from the ACS (JSON); answered with an RRes.
//! * `GET  /3ds/method/{three_ds_server_trans_id}` — the 3DS Method page for a hidden
//!   iframe on the merchant's checkout; `POST /3ds/method-notification` — its end.

use super::messages;
use super::pages;
use crate::auth;
use crate::error::RpcError;
use crate::payments::{now_ms, Gateway};
use crate::server::App;
use crate::state::PaymentStatus;
use crate::store::{AuthenticationRecord, PaymentRecord};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The 3DS routes, merged into the gateway's router.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/3ds/challenge/{challenge_id}", get(challenge))
        .route("/3ds/notify", post(notify))
        .route("/3ds/rreq", post(rreq))
        .route("/3ds/method/{three_ds_server_trans_id}", get(method_page))
        .route("/3ds/method-notification", post(method_notification))
}

fn id_shaped(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn unknown_link() -> Response {
    pages::message(StatusCode::NOT_FOUND, "Link not valid", "This payment link is unknown or no longer valid.")
}

fn unavailable() -> Response {
    pages::message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "The payment service is busy. Reload this page in a moment.",
    )
}

async fn payment_of(gateway: &Gateway, auth: &AuthenticationRecord) -> Option<PaymentRecord> {
    let id = auth.transaction_id.as_deref()?;
    gateway.store.payment(id).await.ok().flatten()
}

async fn challenge(State(app): State<Arc<App>>, Path(challenge_id): Path<String>) -> Response {
    if !id_shaped(&challenge_id) {
        return unknown_link();
    }
    let gateway = &app.gateway;
    let auth = match gateway.store.authentication_by_challenge(&challenge_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return unknown_link(),
        Err(e) => {
            tracing::error!(error = %e, "reading a challenge failed");
            return unavailable();
        }
    };
    let Some(p) = payment_of(gateway, &auth).await else { return unknown_link() };
    let open = p.status == PaymentStatus::Requires3ds && p.three_ds_expires_at.is_some_and(|at| now_ms() < at);
    if !open {
        // Over (or expired): let the payment catch up, then send the browser on.
        let p = match p.status {
            PaymentStatus::Requires3ds => gateway.complete_authentication(&p.transaction_id).await.unwrap_or(p),
            _ => p,
        };
        return back_to_merchant(&app, &p).await;
    }
    let (Some(acs_url), Some(acs_trans_id)) = (&auth.acs_url, &auth.acs_trans_id) else { return unknown_link() };
    let version = auth.message_version.as_deref().unwrap_or(messages::MESSAGE_VERSION);
    let creq = messages::creq(&auth.three_ds_server_trans_id, acs_trans_id, version);
    pages::auto_post(
        "Verifying your card",
        "Your bank asks you to confirm this payment. Continuing to your bank…",
        acs_url,
        &[("creq", &creq), ("threeDSSessionData", &challenge_id)],
    )
    .unwrap_or_else(unknown_link)
}

#[derive(Debug, Deserialize)]
struct CresForm {
    cres: String,
    #[serde(rename = "threeDSSessionData", default)]
    session_data: Option<String>,
}

async fn notify(
    State(app): State<Arc<App>>,
    form: Result<Form<CresForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let refused = || {
        pages::message(
            StatusCode::BAD_REQUEST,
            "Authentication not recognised",
            "This authentication response does not belong to a payment waiting for it.",
        )
    };
    let Ok(Form(form)) = form else { return refused() };
    let Some(ids) = messages::decode_cres(&form.cres) else { return refused() };
    let Some(session) = form.session_data.filter(|s| id_shaped(s)) else { return refused() };
    let gateway = &app.gateway;
    let auth = match gateway.store.authentication_by_challenge(&session).await {
        Ok(Some(a)) => a,
        Ok(None) => return refused(),
        Err(e) => {
            tracing::error!(error = %e, "reading a challenge failed");
            return unavailable();
        }
    };
    // A CRes for another transaction (or another ACS transaction) changes nothing.
    if ids.three_ds_server_trans_id != auth.three_ds_server_trans_id
        || Some(&ids.acs_trans_id) != auth.acs_trans_id.as_ref()
    {
        tracing::warn!(challenge = %session, "a CRes that does not match its challenge");
        return refused();
    }
    let Some(transaction_id) = auth.transaction_id.clone() else { return refused() };
    let p = finish(gateway, &transaction_id).await;
    match p {
        Some(p) => back_to_merchant(&app, &p).await,
        None => unavailable(),
    }
}

/// Complete the authentication (or wait for whoever is completing it) and return the
/// payment as it then is.
async fn finish(gateway: &Gateway, transaction_id: &str) -> Option<PaymentRecord> {
    match gateway.complete_authentication(transaction_id).await {
        Ok(p) => return Some(p),
        Err(RpcError::InProgress) => {}
        Err(e) => {
            tracing::warn!(%transaction_id, error = ?e, "completing an authentication failed");
            return gateway.store.payment(transaction_id).await.ok().flatten();
        }
    }
    // The RReq is being processed (the authorization is under way): wait for it.
    let deadline = tokio::time::Instant::now() + gateway.config.acquirer_timeout + Duration::from_secs(5);
    loop {
        let p = gateway.store.payment(transaction_id).await.ok().flatten()?;
        let busy =
            matches!(p.status, PaymentStatus::Requires3ds | PaymentStatus::Authorizing) && p.lease_until > now_ms();
        if !busy || tokio::time::Instant::now() >= deadline {
            return Some(p);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Send the browser to the merchant's `return_url` with the transaction, its status and
/// a signature (see [`auth::return_signature`]); a result page when there is none.
async fn back_to_merchant(app: &App, p: &PaymentRecord) -> Response {
    let status = p.status.as_str();
    let Some(return_url) = p.return_url.as_deref().and_then(|u| url::Url::parse(u).ok()) else {
        let text = match p.status {
            PaymentStatus::Authorized | PaymentStatus::Captured | PaymentStatus::PartiallyCaptured => {
                "Your payment is confirmed. You may close this window."
            }
            PaymentStatus::Requires3ds | PaymentStatus::Authorizing | PaymentStatus::Processing => {
                "Your payment is being processed. You may close this window."
            }
            _ => "Your payment did not go through. You may close this window.",
        };
        return pages::message(StatusCode::OK, "Payment", text);
    };
    let secret = match app.gateway.store.merchant(&p.merchant_id).await {
        Ok(Some(m)) => app.secret_key.open(&m.service_id, &m.secret_sealed).ok(),
        _ => None,
    };
    let Some(secret) = secret else {
        tracing::error!(transaction_id = %p.transaction_id, "the merchant's secret does not open");
        return unavailable();
    };
    let ts = now_ms();
    let signature = auth::return_signature(&secret, &p.transaction_id, status, ts);
    let mut target = return_url;
    target
        .query_pairs_mut()
        .append_pair("transaction_id", &p.transaction_id)
        .append_pair("partner_trans_id", &p.partner_trans_id)
        .append_pair("status", status)
        .append_pair("ts", &ts.to_string())
        .append_pair("signature", &signature);
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = header::HeaderValue::from_str(target.as_str()) {
        response.headers_mut().insert(header::LOCATION, location);
        response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    }
    response
}

async fn rreq(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let erro = |code: &str, description: &str, id: Option<&str>| {
        (StatusCode::BAD_REQUEST, Json(messages::erro(code, description, "RReq", id))).into_response()
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return erro("101", "the message is not an RReq", None);
    };
    let Some(ids) = messages::read_rreq(&v) else { return erro("201", "a required RReq element is missing", None) };
    let gateway = &app.gateway;
    let id = ids.three_ds_server_trans_id.clone();
    let auth = match gateway.store.authentication(&id).await {
        Ok(Some(a)) => a,
        Ok(None) => return erro("301", "threeDSServerTransID not recognised", Some(&id)),
        Err(e) => {
            tracing::error!(error = %e, "reading an authentication failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(messages::erro("403", "temporarily unavailable", "", Some(&id))),
            )
                .into_response();
        }
    };
    if Some(&ids.acs_trans_id) != auth.acs_trans_id.as_ref() || Some(&ids.ds_trans_id) != auth.ds_trans_id.as_ref() {
        tracing::warn!(three_ds_server_trans_id = %id, "an RReq with ids that do not match the authentication");
        return erro("301", "the transaction ids do not match", Some(&id));
    }
    if let Some(transaction_id) = auth.transaction_id.as_deref() {
        finish(gateway, transaction_id).await;
    }
    Json(messages::rres(&ids)).into_response()
}

async fn method_page(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if !id_shaped(&id) {
        return unknown_link();
    }
    let auth = match app.gateway.store.authentication(&id).await {
        Ok(Some(a)) if a.transaction_id.is_none() => a,
        Ok(_) => return unknown_link(),
        Err(_) => return unavailable(),
    };
    let Some(method_url) = auth.method_url.as_deref() else { return unknown_link() };
    let notification = format!("{}/3ds/method-notification", app.gateway.three_ds.public_url);
    let data = messages::method_data(&id, &notification);
    pages::auto_post("Checking your device", "One moment…", method_url, &[("threeDSMethodData", &data)])
        .unwrap_or_else(unknown_link)
}

#[derive(Debug, Deserialize)]
struct MethodForm {
    #[serde(rename = "threeDSMethodData")]
    data: String,
}

async fn method_notification(
    State(app): State<Arc<App>>,
    form: Result<Form<MethodForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let id = form.ok().and_then(|Form(f)| messages::decode_method_notification(&f.data)).filter(|id| id_shaped(id));
    let Some(id) = id else {
        return pages::message(StatusCode::BAD_REQUEST, "Not recognised", "This device check is not recognised.");
    };
    match app.gateway.method_completed(&id).await {
        Ok(_) => pages::message(StatusCode::OK, "Done", "Device check complete."),
        Err(_) => unavailable(),
    }
}
