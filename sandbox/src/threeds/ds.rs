//! The directory server's routes (JSON): PReq → PRes, AReq → ARes (or `Erro`), and
//! the results of a transaction.

use super::messages::{
    ARes, Erro, ErrorCode, PRes, Results, TransStatus, ACS_REFERENCE_NUMBER, CARD_RANGES_SERIAL, DS_REFERENCE_NUMBER,
};
use super::{now_ms, outcome, validation, DsError, ThreeDs};
use crate::ids;
use crate::store::{ThreeDsInsert, ThreeDsTransaction};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, DsError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            DsError::BodyTooLarge
        } else {
            DsError::Erro(Box::new(Erro::from_ds(ErrorCode::MessageNotRecognised, "the message could not be read")))
        }
    })
}

/// `POST /3ds/v2/preq`: the enrolled card ranges.
pub async fn preq(
    State(three_ds): State<Arc<ThreeDs>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PRes>, DsError> {
    let preq = validation::parse_preq(&body_bytes(body)?).map_err(DsError::Erro)?;
    Ok(Json(PRes {
        message_type: "PRes",
        message_version: preq.message_version,
        three_ds_server_trans_id: preq.three_ds_server_trans_id,
        ds_trans_id: ids::new_uuid(),
        serial_num: CARD_RANGES_SERIAL,
        card_range_data: outcome::card_ranges(&format!("{}/acs/v2/method", three_ds.public_url)),
    }))
}

/// A stored ARes, sent again exactly as first sent.
fn ares_response(ares: String) -> Response {
    let mut response = (StatusCode::OK, ares).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `POST /3ds/v2/areq` (through the vault's relay: it carries the card number).
pub async fn areq(
    State(three_ds): State<Arc<ThreeDs>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, DsError> {
    let req = validation::parse_areq(&body_bytes(body)?).map_err(DsError::Erro)?;
    if !outcome::is_enrolled(&req.card) {
        let mut erro = Erro::from_ds(ErrorCode::CardNotEnrolled, "acctNumber");
        erro.three_ds_server_trans_id = Some(req.three_ds_server_trans_id.clone());
        erro.message_version.clone_from(&req.message_version);
        return Err(DsError::Erro(Box::new(erro)));
    }
    let store = &three_ds.network.store;
    // Idempotent: the same threeDSServerTransID is answered with the stored ARes (no
    // second CAVV). The insert below settles concurrent duplicates the same way.
    if let Some(first) = store.three_ds_by_server_id(&req.three_ds_server_trans_id).await? {
        tracing::info!(three_ds_server_trans_id = %first.three_ds_server_trans_id, "AReq repeated: stored ARes");
        return Ok(ares_response(first.ares));
    }
    let now = time::OffsetDateTime::now_utc();
    let decision = outcome::decide(&req.card, req.card_expiry, now.date());
    let status = decision.status;
    let masked_pan = req.card.masked();
    let (eci, authentication_value) = if status.carries_authentication_value() {
        (outcome::eci(&masked_pan, status), Some(ids::new_authentication_value()))
    } else {
        (None, None)
    };
    let challenge = status == TransStatus::Challenge;
    let ares = ARes {
        message_type: "ARes",
        message_version: req.message_version.clone(),
        three_ds_server_trans_id: req.three_ds_server_trans_id.clone(),
        ds_trans_id: ids::new_uuid(),
        acs_trans_id: ids::new_uuid(),
        acs_reference_number: ACS_REFERENCE_NUMBER,
        ds_reference_number: DS_REFERENCE_NUMBER,
        trans_status: status.as_str(),
        trans_status_reason: decision.reason,
        eci,
        authentication_value: authentication_value.clone(),
        acs_url: challenge.then(|| format!("{}/acs/v2/challenge", three_ds.public_url)),
        acs_challenge_mandated: challenge.then_some("N"),
        authentication_type: challenge.then_some("02"),
    };
    let ares_json = serde_json::to_string(&ares).map_err(|e| DsError::Internal(e.to_string()))?;
    let now_ms = now_ms();
    let ttl_ms = i64::try_from(three_ds.challenge_ttl.as_millis()).unwrap_or(i64::MAX);
    let record = ThreeDsTransaction {
        three_ds_server_trans_id: ares.three_ds_server_trans_id,
        ds_trans_id: ares.ds_trans_id,
        acs_trans_id: ares.acs_trans_id,
        message_version: ares.message_version,
        card_key: req.card.balance_key(),
        masked_pan,
        purchase_amount: req.purchase_amount,
        purchase_currency: req.purchase_currency,
        purchase_exponent: i64::from(req.purchase_exponent),
        merchant_name: req.merchant_name,
        three_ds_server_url: req.three_ds_server_url,
        notification_url: req.notification_url,
        ares: ares_json,
        ares_trans_status: status.as_str().to_owned(),
        trans_status: status.as_str().to_owned(),
        trans_status_reason: decision.reason.map(str::to_owned),
        eci: eci.map(str::to_owned),
        authentication_value,
        challenge_cancel: None,
        cavv_used: false,
        challenge_nonce: None,
        challenge_expires_at: challenge.then(|| now_ms.saturating_add(ttl_ms)),
        method_completed: false,
        created_at: now_ms,
        updated_at: now_ms,
    };
    match store.insert_three_ds(&record).await? {
        ThreeDsInsert::Created(created) => {
            tracing::info!(
                three_ds_server_trans_id = %created.three_ds_server_trans_id,
                ds_trans_id = %created.ds_trans_id,
                card = %created.masked_pan,
                amount = created.purchase_amount,
                currency = %created.purchase_currency,
                trans_status = %created.trans_status,
                reason = created.trans_status_reason.as_deref(),
                method_completed = created.method_completed,
                "AReq"
            );
            if decision.delayed {
                // Recorded already (the results say U 14 at once), answered too late:
                // the ACS that does not answer in time.
                tracing::info!(delay_ms = three_ds.network.auth_delay.as_millis(), "slow ACS card: answering late");
                tokio::time::sleep(three_ds.network.auth_delay).await;
            }
            Ok(ares_response(created.ares))
        }
        ThreeDsInsert::Existing(first) => Ok(ares_response(first.ares)),
    }
}

/// The results view of a transaction.
pub fn results_of(tx: &ThreeDsTransaction) -> Results {
    Results {
        three_ds_server_trans_id: tx.three_ds_server_trans_id.clone(),
        ds_trans_id: tx.ds_trans_id.clone(),
        acs_trans_id: tx.acs_trans_id.clone(),
        message_version: tx.message_version.clone(),
        trans_status: tx.trans_status.clone(),
        trans_status_reason: tx.trans_status_reason.clone(),
        eci: tx.eci.clone(),
        authentication_value: tx.authentication_value.clone(),
        challenge_cancel: tx.challenge_cancel.clone(),
        is_final: tx.is_final(),
    }
}

/// `GET /3ds/v2/results/{threeDSServerTransID}` (the gateway, directly). A challenge
/// whose time ran out is ended here if the expiry sweep has not done it yet.
pub async fn results(State(three_ds): State<Arc<ThreeDs>>, Path(id): Path<String>) -> Result<Json<Results>, DsError> {
    let Some(tx) = three_ds.network.store.three_ds_by_server_id(&id).await? else {
        return Err(DsError::UnknownTransaction);
    };
    let tx = super::acs::expire_if_due(&three_ds, tx, true).await?;
    Ok(Json(results_of(&tx)))
}
