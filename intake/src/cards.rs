//! `POST /v1/cards`: a card from the card frame, under a one-time grant, tokenized at
//! the vault for the grant's checkout.
//!
//! The checks, in order, each refused with its stable code before anything reaches the
//! vault:
//!
//! 1. the `Origin` header is the intake's own origin (`origin_forbidden`): only the
//!    frame this intake served posts cards;
//! 2. the body is JSON of the documented shape, at most `--max-body-bytes`
//!    (`body_too_large`, `invalid_json`, `invalid_request`);
//! 3. the grant verifies under one of the gateway's keys and has not expired
//!    (`grant_missing`, `grant_malformed`, `grant_unknown_key`,
//!    `grant_signature_invalid`, `grant_expired`);
//! 4. the page that framed the form (`ancestor_origin`) is the grant's origin
//!    (`grant_origin_mismatch`);
//! 5. this client address has not posted too many cards (`rate_limited`);
//! 6. the card number has 12 to 19 digits and passes Luhn (the vault's codes
//!    `pan_invalid_characters`, `pan_invalid_length`, `pan_luhn_failed`).
//!
//! Then the vault stores the card bound to the checkout and spends the grant's nonce in
//! one transaction; its refusals a buyer can act on pass through with its code
//! (`grant_used`, `card_expired`, `cvc_invalid`, …).

use crate::error::IntakeError;
use crate::vault::{CardForVault, CheckoutBinding, UNSAVED_TOKEN_TTL_SECS};
use crate::Intake;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use paysys_server::json_body::{read_json_body, EmptyBody};
use paysys_server::PeerAddr;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::Zeroizing;

/// A JSON body read with card-safe errors ([`read_json_body`]), the intake's codes.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = IntakeError;
    async fn from_request(req: Request, state: &S) -> Result<Self, IntakeError> {
        read_json_body(req, state, EmptyBody::Refused).await.map(JsonBody)
    }
}

/// An expiry month or year as the frame may send it: a number, or its digits as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrDigits {
    Number(i64),
    Text(String),
}

fn number_or_digits<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    match NumberOrDigits::deserialize(deserializer)? {
        NumberOrDigits::Number(n) => Ok(n),
        NumberOrDigits::Text(text) if (1..=4).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().map_err(|_| serde::de::Error::custom("expected a month or year"))
        }
        NumberOrDigits::Text(_) => Err(serde::de::Error::custom("expected a month or year")),
    }
}

/// `POST /v1/cards` body (widget-spec step 3). Unknown fields are refused. Card fields
/// are read straight into zeroizing wrappers whose `Debug` is redacted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardRequest {
    /// The grant from the frame URL's fragment; absent is `grant_missing`.
    #[serde(default)]
    grant: Option<String>,
    /// `location.ancestorOrigins[0]` as the frame saw it.
    #[serde(default)]
    ancestor_origin: Option<String>,
    number: SecretString,
    #[serde(deserialize_with = "number_or_digits")]
    exp_month: i64,
    #[serde(deserialize_with = "number_or_digits")]
    exp_year: i64,
    #[serde(default)]
    cvc: Option<SecretString>,
    #[serde(default)]
    holder: Option<SecretString>,
}

/// `201` answer: what the frame posts to its page. Never the card number.
#[derive(Debug, Serialize)]
pub struct CardAccepted {
    token: String,
    brand: String,
    last4: String,
    exp_month: i64,
    exp_year: i64,
    checkout_id: String,
}

/// Check a card number's characters, length and Luhn digit as the vault would, with
/// the vault's codes: a mistyped number is answered without a vault round trip.
fn check_card_number(number: &SecretString) -> Result<(), IntakeError> {
    let mut digits = Zeroizing::new(Vec::with_capacity(19));
    for byte in number.expose_secret().bytes() {
        match byte {
            b'0'..=b'9' if digits.len() < 19 => digits.push(byte),
            b'0'..=b'9' => return Err(IntakeError::CardNumber("pan_invalid_length")),
            b' ' | b'-' => {}
            _ => return Err(IntakeError::CardNumber("pan_invalid_characters")),
        }
    }
    if digits.len() < 12 {
        return Err(IntakeError::CardNumber("pan_invalid_length"));
    }
    if !paysys_cardnum::luhn_valid(&digits) {
        return Err(IntakeError::CardNumber("pan_luhn_failed"));
    }
    Ok(())
}

/// Unix seconds now.
fn unix_now() -> i64 {
    paysys_server::clock::now_ms().div_euclid(1000)
}

pub async fn post_card(
    State(intake): State<Arc<Intake>>,
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
    headers: HeaderMap,
    body: Result<JsonBody<CardRequest>, IntakeError>,
) -> Result<(StatusCode, Json<CardAccepted>), IntakeError> {
    let origin = headers.get(axum::http::header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(intake.public_origin.as_str()) {
        tracing::info!(%peer, "card refused: not posted by the intake's own frame");
        return Err(IntakeError::OriginForbidden);
    }
    let JsonBody(card) = body?;
    let claims = intake.grants.verify(card.grant.as_deref().unwrap_or(""), unix_now()).map_err(|e| {
        tracing::info!(%peer, code = e.code(), "card refused: grant");
        IntakeError::Grant(e)
    })?;
    if card.ancestor_origin.as_deref() != Some(claims.origin.as_str()) {
        tracing::info!(%peer, checkout_id = %claims.checkout_id, "card refused: framed by another origin");
        return Err(IntakeError::GrantOriginMismatch);
    }
    if !intake.address_limit.try_take(peer.ip(), std::time::Instant::now()) {
        tracing::info!(%peer, checkout_id = %claims.checkout_id, "card refused: address rate limit");
        return Err(IntakeError::RateLimited);
    }
    check_card_number(&card.number)?;
    let for_vault = CardForVault {
        merchant_id: &claims.merchant_id,
        pan: &card.number,
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        cvc: card.cvc.as_ref(),
        cardholder_name: card.holder.as_ref(),
        ttl_sec: (!claims.save_card).then_some(UNSAVED_TOKEN_TTL_SECS),
        checkout: CheckoutBinding {
            checkout_id: claims.checkout_id.clone(),
            grant_nonce: claims.nonce.clone(),
            grant_expires_at: claims.expires_at,
        },
    };
    let issued = match intake.vault.tokenize(&for_vault).await {
        Ok(issued) => issued,
        Err(e) => {
            tracing::info!(%peer, merchant_id = %claims.merchant_id, checkout_id = %claims.checkout_id,
                attempt_id = %claims.attempt_id, code = e.code(), "card refused");
            return Err(e);
        }
    };
    tracing::info!(merchant_id = %claims.merchant_id, checkout_id = %claims.checkout_id,
        attempt_id = %claims.attempt_id, token = %issued.token, "card tokenized");
    Ok((
        StatusCode::CREATED,
        Json(CardAccepted {
            token: issued.token,
            brand: issued.brand,
            last4: issued.last4,
            exp_month: issued.exp_month,
            exp_year: issued.exp_year,
            checkout_id: claims.checkout_id,
        }),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(number: &str) -> Result<(), &'static str> {
        check_card_number(&SecretString::from(number)).map_err(|e| e.code())
    }

    #[test]
    fn card_numbers_are_checked_with_the_vaults_codes() {
        assert_eq!(check("4242 4242 4242 4242"), Ok(()));
        assert_eq!(check("4242-4242-4242-4242"), Ok(()));
        assert_eq!(check("4242424242424241"), Err("pan_luhn_failed"));
        assert_eq!(check("42424242"), Err("pan_invalid_length"));
        assert_eq!(check("42424242424242424242"), Err("pan_invalid_length"));
        assert_eq!(check("4242x4242"), Err("pan_invalid_characters"));
        assert_eq!(check(""), Err("pan_invalid_length"));
    }

    #[test]
    fn the_body_debug_form_never_shows_the_card() {
        let body: CardRequest = serde_json::from_value(serde_json::json!({
            "grant": "v1.g1.x.y", "ancestor_origin": "https://shop.example", "number": "4242424242424242",
            "exp_month": "12", "exp_year": 2031, "cvc": "987", "holder": "A Buyer"
        }))
        .unwrap();
        let debug = format!("{body:?}");
        assert!(!debug.contains("4242") && !debug.contains("987") && !debug.contains("Buyer"), "{debug}");
        assert_eq!((body.exp_month, body.exp_year), (12, 2031));
        let bad: Result<CardRequest, _> = serde_json::from_value(serde_json::json!({
            "number": "4242424242424242", "exp_month": "twelve", "exp_year": 2031
        }));
        assert!(bad.is_err());
    }
}
