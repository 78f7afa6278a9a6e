//! The ACS's browser-facing routes (HTML forms), the RReq it sends when a challenge
//! ends, and the sweep that ends challenges nobody finished in time.

use super::messages::{base64url_encode, CRes, RReq};
use super::outcome::{self, ChallengeAnswer};
use super::{now_ms, pages, validation, AcsError, ThreeDs};
use crate::ids;
use crate::store::{ChallengeResult, StoreError, ThreeDsTransaction};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How long the ACS waits for the 3DS Server's RRes.
const RREQ_TIMEOUT: Duration = Duration::from_secs(5);
/// Most expired challenges ended per sweep.
const SWEEP_BATCH: i64 = 100;

/// A form body (`application/x-www-form-urlencoded`), or a 400 page.
fn form<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, AcsError> {
    let bytes = body.map_err(|_| AcsError::BadRequest("the form could not be read".into()))?;
    serde_urlencoded::from_bytes(&bytes).map_err(|e| {
        AcsError::BadRequest(format!("the form is incomplete: {}", crate::error::redact_digit_runs(&e.to_string())))
    })
}

/// Empty session data (a hidden field rendered without a value) is no session data.
fn session(data: Option<String>) -> Option<String> {
    data.filter(|d| !d.is_empty())
}

#[derive(Deserialize)]
struct MethodForm {
    #[serde(rename = "threeDSMethodData")]
    method_data: String,
}

/// `POST /acs/v2/method`: record the method run, then post back to the 3DS Server.
pub async fn method(State(three_ds): State<Arc<ThreeDs>>, body: Result<Bytes, BytesRejection>) -> Response {
    match run_method(&three_ds, body).await {
        Ok(page) => page,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

async fn run_method(three_ds: &ThreeDs, body: Result<Bytes, BytesRejection>) -> Result<Response, AcsError> {
    let form: MethodForm = form(body)?;
    let data = validation::parse_method_data(&form.method_data).map_err(AcsError::BadRequest)?;
    three_ds.network.store.record_method_run(&data.three_ds_server_trans_id, now_ms()).await?;
    tracing::info!(three_ds_server_trans_id = %data.three_ds_server_trans_id, "3DS Method ran");
    let answer = serde_json::json!({ "threeDSServerTransID": data.three_ds_server_trans_id });
    Ok(pages::method_page(&data.notification_url, &base64url_encode(answer.to_string().as_bytes())))
}

#[derive(Deserialize)]
struct ChallengeForm {
    creq: String,
    #[serde(default, rename = "threeDSSessionData")]
    session_data: Option<String>,
}

/// `POST /acs/v2/challenge`: the challenge page (or, once it is over, the CRes page).
pub async fn challenge(State(three_ds): State<Arc<ThreeDs>>, body: Result<Bytes, BytesRejection>) -> Response {
    match show_challenge(&three_ds, body).await {
        Ok(page) => page,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

async fn show_challenge(three_ds: &Arc<ThreeDs>, body: Result<Bytes, BytesRejection>) -> Result<Response, AcsError> {
    let form: ChallengeForm = form(body)?;
    let session_data = session(form.session_data);
    let creq = validation::parse_creq(&form.creq).map_err(AcsError::BadRequest)?;
    let store = &three_ds.network.store;
    let tx = match store.three_ds_by_acs_id(&creq.acs_trans_id).await? {
        Some(tx) if tx.three_ds_server_trans_id == creq.three_ds_server_trans_id && tx.ares_trans_status == "C" => tx,
        _ => return Err(AcsError::BadRequest("no challenge for this acsTransID and threeDSServerTransID".into())),
    };
    let tx = expire_if_due(three_ds, tx, false).await?;
    if tx.is_final() {
        return Ok(cres_page(&tx, session_data.as_deref()));
    }
    let nonce = ids::new_nonce();
    if !store.set_challenge_nonce(&tx.acs_trans_id, &nonce, now_ms()).await? {
        // It ended between the read and now: show how.
        let tx = reread(three_ds, &tx.acs_trans_id).await?;
        return Ok(cres_page(&tx, session_data.as_deref()));
    }
    tracing::info!(acs_trans_id = %tx.acs_trans_id, card = %tx.masked_pan, "challenge shown");
    let currency = crate::currency::alphabetic_code(&tx.purchase_currency).unwrap_or(&tx.purchase_currency);
    let exponent = u32::try_from(tx.purchase_exponent).unwrap_or(0);
    let amount = format!("{} {currency}", crate::currency::format_amount(tx.purchase_amount, exponent));
    let last4 = tx.masked_pan.get(tx.masked_pan.len().saturating_sub(4)..).unwrap_or("");
    Ok(pages::challenge_page(&pages::ChallengeView {
        merchant_name: &tx.merchant_name,
        amount: &amount,
        last4,
        acs_trans_id: &tx.acs_trans_id,
        nonce: &nonce,
        session_data: session_data.as_deref(),
    }))
}

#[derive(Deserialize)]
struct SubmitForm {
    #[serde(rename = "acsTransID")]
    acs_trans_id: String,
    nonce: String,
    #[serde(default)]
    otp: Option<String>,
    #[serde(default, rename = "threeDSSessionData")]
    session_data: Option<String>,
    #[serde(default)]
    cancel: Option<String>,
}

/// `POST /acs/v2/challenge/submit`: one attempt, then the RReq, then the CRes page.
pub async fn submit(State(three_ds): State<Arc<ThreeDs>>, body: Result<Bytes, BytesRejection>) -> Response {
    match submit_challenge(&three_ds, body).await {
        Ok(page) => page,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

async fn submit_challenge(three_ds: &Arc<ThreeDs>, body: Result<Bytes, BytesRejection>) -> Result<Response, AcsError> {
    use subtle::ConstantTimeEq as _;
    let form: SubmitForm = form(body)?;
    let session_data = session(form.session_data);
    let Some(tx) = three_ds.network.store.three_ds_by_acs_id(&form.acs_trans_id).await? else {
        return Err(AcsError::BadRequest("no challenge for this acsTransID".into()));
    };
    if tx.ares_trans_status != "C" {
        return Err(AcsError::BadRequest("no challenge for this acsTransID".into()));
    }
    // Over already (a second submit, the expiry): the same CRes page, nothing changes.
    if tx.is_final() {
        return Ok(cres_page(&tx, session_data.as_deref()));
    }
    let nonce_ok = tx.challenge_nonce.as_deref().is_some_and(|n| bool::from(n.as_bytes().ct_eq(form.nonce.as_bytes())));
    if !nonce_ok {
        return Err(AcsError::BadRequest("this challenge form is no longer valid; reload the challenge".into()));
    }
    let answer = if challenge_due(&tx) {
        ChallengeAnswer::TimedOut
    } else if form.cancel.is_some() {
        ChallengeAnswer::Cancel
    } else {
        ChallengeAnswer::Code(form.otp.as_deref().unwrap_or(""))
    };
    match end(three_ds, &tx, Some(&form.nonce), answer).await? {
        Some(ended) => {
            send_rreq(three_ds, &ended).await;
            Ok(cres_page(&ended, session_data.as_deref()))
        }
        // Another request ended it first (and sent the RReq): show its outcome.
        None => {
            let tx = reread(three_ds, &tx.acs_trans_id).await?;
            if tx.is_final() {
                Ok(cres_page(&tx, session_data.as_deref()))
            } else {
                Err(AcsError::BadRequest("this challenge form is no longer valid; reload the challenge".into()))
            }
        }
    }
}

async fn reread(three_ds: &ThreeDs, acs_trans_id: &str) -> Result<ThreeDsTransaction, AcsError> {
    three_ds
        .network
        .store
        .three_ds_by_acs_id(acs_trans_id)
        .await?
        .ok_or_else(|| AcsError::Internal("a 3-D Secure transaction disappeared".into()))
}

/// An open challenge whose time is up.
fn challenge_due(tx: &ThreeDsTransaction) -> bool {
    !tx.is_final() && tx.challenge_expires_at.is_some_and(|at| now_ms() >= at)
}

/// End `tx`'s challenge with `answer` (if still open and, with `nonce`, still showing
/// that form). The ended transaction when this call ended it.
async fn end(
    three_ds: &ThreeDs,
    tx: &ThreeDsTransaction,
    nonce: Option<&str>,
    answer: ChallengeAnswer<'_>,
) -> Result<Option<ThreeDsTransaction>, StoreError> {
    let end = outcome::end_challenge(answer);
    let (eci, authentication_value) = if end.status.carries_authentication_value() {
        (outcome::eci(&tx.masked_pan, end.status), Some(ids::new_authentication_value()))
    } else {
        (None, None)
    };
    let result = ChallengeResult {
        trans_status: end.status.as_str().to_owned(),
        trans_status_reason: end.reason.map(str::to_owned),
        eci: eci.map(str::to_owned),
        authentication_value,
        challenge_cancel: end.challenge_cancel.map(str::to_owned),
    };
    let ended = three_ds.network.store.end_challenge(&tx.acs_trans_id, nonce, &result, now_ms()).await?;
    if let Some(ended) = &ended {
        tracing::info!(
            acs_trans_id = %ended.acs_trans_id,
            card = %ended.masked_pan,
            trans_status = %ended.trans_status,
            reason = ended.trans_status_reason.as_deref(),
            challenge_cancel = ended.challenge_cancel.as_deref(),
            "challenge ended"
        );
    }
    Ok(ended)
}

/// `tx` as it stands now: if its challenge is open and its time is up, it is ended
/// (`N` `14`, `challengeCancel` `05`) and the RReq sent — in the background when
/// `rreq_in_background` (the caller is the 3DS Server itself, reading the results).
pub async fn expire_if_due(
    three_ds: &Arc<ThreeDs>,
    tx: ThreeDsTransaction,
    rreq_in_background: bool,
) -> Result<ThreeDsTransaction, StoreError> {
    if !challenge_due(&tx) {
        return Ok(tx);
    }
    match end(three_ds, &tx, None, ChallengeAnswer::TimedOut).await? {
        Some(ended) => {
            if rreq_in_background {
                let three_ds = three_ds.clone();
                let for_rreq = ended.clone();
                tokio::spawn(async move { send_rreq(&three_ds, &for_rreq).await });
            } else {
                send_rreq(three_ds, &ended).await;
            }
            Ok(ended)
        }
        None => Ok(three_ds.network.store.three_ds_by_acs_id(&tx.acs_trans_id).await?.unwrap_or(tx)),
    }
}

/// End the challenges nobody finished in time, forever (every quarter of the TTL, at
/// least every second): each ends `N` `14` and its RReq is sent, as a real ACS does
/// when the cardholder walks away.
pub async fn expire_challenges(three_ds: Arc<ThreeDs>) {
    let period = (three_ds.challenge_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let due = match three_ds.network.store.expired_challenges(now_ms(), SWEEP_BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "expiry sweep failed");
                continue;
            }
        };
        for acs_trans_id in due {
            match three_ds.network.store.three_ds_by_acs_id(&acs_trans_id).await {
                Ok(Some(tx)) => {
                    if let Err(e) = expire_if_due(&three_ds, tx, false).await {
                        tracing::warn!(error = %e, %acs_trans_id, "ending an expired challenge failed");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, %acs_trans_id, "reading an expired challenge failed"),
            }
        }
    }
}

/// Post the RReq of an ended challenge to the AReq's `threeDSServerURL` and check the
/// RRes. A failure is logged; the result stays final (the 3DS Server reads it from the
/// results endpoint anyway).
pub async fn send_rreq(three_ds: &ThreeDs, tx: &ThreeDsTransaction) {
    let rreq = RReq {
        message_type: "RReq",
        message_version: tx.message_version.clone(),
        three_ds_server_trans_id: tx.three_ds_server_trans_id.clone(),
        ds_trans_id: tx.ds_trans_id.clone(),
        acs_trans_id: tx.acs_trans_id.clone(),
        message_category: "01",
        trans_status: tx.trans_status.clone(),
        trans_status_reason: tx.trans_status_reason.clone(),
        eci: tx.eci.clone(),
        authentication_value: tx.authentication_value.clone(),
        authentication_type: "02",
        interaction_counter: "01",
        challenge_cancel: tx.challenge_cancel.clone(),
    };
    let body = match serde_json::to_vec(&rreq) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "RReq not serializable");
            return;
        }
    };
    let id = &tx.three_ds_server_trans_id;
    match three_ds.rreq.post(&tx.three_ds_server_url, "application/json", body, RREQ_TIMEOUT).await {
        Ok(answer) => {
            let results_status = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("resultsStatus").and_then(|s| s.as_str()).map(str::to_owned));
            if answer.status == 200 && results_status.as_deref() == Some("01") {
                tracing::info!(three_ds_server_trans_id = %id, "RReq delivered");
            } else {
                tracing::warn!(
                    three_ds_server_trans_id = %id,
                    status = answer.status,
                    results_status = results_status.as_deref(),
                    "RReq not acknowledged"
                );
            }
        }
        Err(e) => tracing::warn!(three_ds_server_trans_id = %id, error = %e, "RReq not delivered"),
    }
}

/// The page that posts the final CRes to the AReq's `notificationURL`.
fn cres_page(tx: &ThreeDsTransaction, session_data: Option<&str>) -> Response {
    let cres = CRes {
        three_ds_server_trans_id: tx.three_ds_server_trans_id.clone(),
        acs_trans_id: tx.acs_trans_id.clone(),
        message_type: "CRes",
        message_version: tx.message_version.clone(),
        trans_status: tx.trans_status.clone(),
        challenge_completion_ind: "Y",
    };
    match serde_json::to_vec(&cres) {
        Ok(json) => pages::cres_page(&tx.notification_url, &base64url_encode(&json), session_data),
        Err(e) => axum::response::IntoResponse::into_response(AcsError::Internal(e.to_string())),
    }
}
