//! `POST /v1/tokens`, `GET /v1/tokens/{token}`, `DELETE /v1/tokens/{token}`, and
//! `POST /v1/tokens/{token}/remove` (the gateway's `tokens.remove_for_merchant`).
//!
//! A token may carry an expiry, given as `ttl_sec` — seconds from now by the vault's
//! clock — rather than as an absolute time: a caller with a skewed clock cannot make a
//! token that is born expired or lives longer than meant, and there is no date text to
//! parse at the card-data boundary. Past it the token reads as not found everywhere
//! ([`crate::store::Store::find_card`]) and the sweeper ([`crate::retention`]) deletes it.
//!
//! A token may be **bound to a checkout** (the payment widget): `checkout` names the
//! checkout and the nonce and expiry of the gateway's one-time grant the card intake
//! verified. Only a principal whose role is `checkout_tokens_only` (the intake) may send
//! one, and it must. The nonce is recorded as spent in the same commit as the card, so
//! one grant mints one token, across intake and vault replicas: a second use is
//! `grant_used` and stores nothing. The vault does not see the grant's signature (the
//! intake checks it); what it adds is single use, which needs the database.

use super::{denial_error, now_ms, rfc3339, Caller, JsonBody, RequestContext, Vault};
use crate::card::{check_cvc, check_expiry, check_holder_name, merchant_id_valid, Pan};
use crate::committer::CommitError;
use crate::error::ApiError;
use crate::store::{CardRecord, CardWrite, CvcRecord, SpentGrant, StoreError};
use crate::token::{generate_token, looks_like_token, TokenFormat};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use paysys_policies::{Decision, Operation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::Zeroizing;

/// How many times a colliding random token is drawn again before giving up.
const TOKEN_ATTEMPTS: usize = 5;

/// Longest `ttl_sec`: ten years. Card expiry dates lie at most a few years ahead, so a
/// longer life keeps nothing usable; the bound also keeps the arithmetic far from
/// overflow. (A token that should live as long as it is needed has no `ttl_sec`.)
pub const MAX_TOKEN_TTL_SECS: i64 = 10 * 366 * 24 * 3600;

/// `POST /v1/tokens` body. Unknown fields are refused so a typo never silently drops data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    merchant_id: String,
    pan: SecretString,
    exp_month: i64,
    exp_year: i64,
    #[serde(default)]
    cardholder_name: Option<SecretString>,
    #[serde(default)]
    cvc: Option<SecretString>,
    #[serde(default = "default_format")]
    format: TokenFormat,
    #[serde(default)]
    reuse: bool,
    /// Seconds the token lives, 1 to [`MAX_TOKEN_TTL_SECS`]; none: until deleted.
    #[serde(default)]
    ttl_sec: Option<i64>,
    /// The checkout the token is bound to; required from a `checkout_tokens_only`
    /// principal, refused from any other.
    #[serde(default)]
    checkout: Option<CheckoutBinding>,
}

/// `checkout` of a `POST /v1/tokens` body: the checkout and the grant that allow this token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBinding {
    /// 1 to 64 characters of `[A-Za-z0-9_-]`.
    checkout_id: String,
    /// The grant's nonce: 22 characters of unpadded base64url (128 random bits).
    grant_nonce: String,
    /// When the grant expires, Unix seconds.
    grant_expires_at: i64,
}

/// The furthest ahead a grant's expiry may lie. Grants live at most 15 minutes; a day
/// leaves room for clock skew and bounds how long a spent grant is kept.
pub const MAX_GRANT_AHEAD_SECS: i64 = 24 * 3600;

/// Length of a grant nonce: 16 bytes in unpadded base64url.
const GRANT_NONCE_LEN: usize = 22;

fn default_format() -> TokenFormat {
    TokenFormat::Opaque
}

/// Token metadata: everything an allowed caller may see. Never the PAN or CVC.
#[derive(Debug, Serialize)]
pub struct TokenMetadata {
    token: String,
    merchant_id: String,
    brand: String,
    bin: String,
    last4: String,
    exp_month: i32,
    exp_year: i32,
    fingerprint: String,
    created_at: String,
    /// RFC 3339; `null` for a token that lives until deleted.
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reused: Option<bool>,
    /// The checkout the token is bound to; absent for a token made without a grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkout_id: Option<String>,
}

impl TokenMetadata {
    fn from_record(card: &CardRecord, reused: Option<bool>) -> TokenMetadata {
        TokenMetadata {
            token: card.token.clone(),
            merchant_id: card.merchant_id.clone(),
            brand: card.brand.clone(),
            bin: card.bin.clone(),
            last4: card.last4.clone(),
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            fingerprint: card.fingerprint.clone(),
            created_at: rfc3339(card.created_at),
            expires_at: card.expires_at.map(rfc3339),
            reused,
            checkout_id: card.checkout_id.clone(),
        }
    }
}

/// The sealed card payload: PAN and optional holder name, length-prefixed.
fn card_payload(pan: &Pan, holder: Option<&SecretString>) -> Zeroizing<Vec<u8>> {
    let holder = holder.map(|h| h.expose_secret().as_bytes()).unwrap_or_default();
    let mut out = Zeroizing::new(Vec::with_capacity(2 + pan.len() + holder.len()));
    out.push(pan.len() as u8);
    out.extend_from_slice(pan.expose_digits().as_bytes());
    out.extend_from_slice(holder);
    out
}

/// Today's (year, month) in UTC, for expiry checks.
fn this_month() -> (i32, u8) {
    let now = time::OffsetDateTime::now_utc();
    (now.year(), u8::from(now.month()))
}

pub async fn create_token(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    body: Result<JsonBody<CreateTokenRequest>, ApiError>,
) -> Result<(StatusCode, Json<TokenMetadata>), ApiError> {
    let ctx = caller.context(Operation::TokensCreate);
    let keyring = vault.admit(&ctx).await?;
    let req = read_merchant_request(&vault, &ctx, body, |req| &req.merchant_id).await?;
    let merchant = req.merchant_id.as_str();
    if let Decision::Deny(reason) = vault.decide(&ctx, Some(merchant)) {
        // A merchant tokenizing for another merchant is simply forbidden.
        let _ = reason;
        return Err(vault.refuse(&ctx, ApiError::Forbidden, Some(merchant), None).await);
    }
    let now = now_ms();
    let bound_only = vault.policy.checkout_tokens_only(ctx.principal.as_str());
    let grant = match checkout_grant(&req, bound_only, now) {
        Ok(grant) => grant,
        Err(e) => return Err(vault.refuse(&ctx, e, Some(merchant), None).await),
    };
    // A replay is refused before any sealing or commit. Twins racing past this check
    // meet in the store, where the spent-grant insert lets exactly one through.
    if let Some(grant) = &grant {
        if vault.store.grant_spent(&grant.nonce).await? {
            return Err(vault.refuse(&ctx, ApiError::GrantUsed, Some(merchant), None).await);
        }
    }
    let validated = validate_card(&req);
    let (pan, exp_month, exp_year) = match validated {
        Ok(v) => v,
        Err(e) => return Err(vault.refuse(&ctx, e, Some(merchant), None).await),
    };

    let expires_at = match token_expiry(req.ttl_sec, now) {
        Ok(at) => at,
        Err(e) => return Err(vault.refuse(&ctx, e, Some(merchant), None).await),
    };

    let fingerprint = keyring.fingerprint_key().fingerprint(merchant.as_bytes(), pan.expose_digits().as_bytes());
    let dek = keyring.active_dek().ok_or_else(|| ApiError::Internal("no active DEK".into()))?;
    let dek_version = i64::from(dek.version());

    if req.reuse {
        let existing = vault.store.find_card_by_fingerprint(merchant, &fingerprint, now, expires_at).await?;
        if let Some(existing) = existing {
            let mut writes = Vec::new();
            if let Some(cvc) = &req.cvc {
                writes.push(CardWrite::InsertCvc(seal_cvc(&vault, dek, &existing.token, merchant, cvc)?));
            }
            let event = ctx.event("allow", "ok", Some(merchant), Some(&existing.token), Some(dek_version));
            vault.commit(writes, event).await?;
            return Ok((StatusCode::OK, Json(TokenMetadata::from_record(&existing, Some(true)))));
        }
    }

    let payload = card_payload(&pan, req.cardholder_name.as_ref());
    for _ in 0..TOKEN_ATTEMPTS {
        let token = generate_token(req.format, &pan);
        let ciphertext = dek
            .seal(&payload, &[token.as_bytes(), merchant.as_bytes()])
            .map_err(|_| ApiError::Internal("sealing card data failed".into()))?;
        let card = CardRecord {
            token: token.clone(),
            merchant_id: merchant.to_owned(),
            fingerprint: fingerprint.clone(),
            brand: pan.brand().as_str().to_owned(),
            bin: pan.bin().to_owned(),
            last4: pan.last4().to_owned(),
            exp_month: i32::from(exp_month),
            exp_year,
            dek_version,
            ciphertext,
            created_at: now,
            expires_at,
            checkout_id: grant.as_ref().map(|g| g.checkout_id.clone()),
        };
        let mut writes = Vec::with_capacity(3);
        if let Some(grant) = &grant {
            writes.push(CardWrite::SpendGrant(grant.clone()));
        }
        writes.push(CardWrite::InsertCard(card.clone()));
        if let Some(cvc) = &req.cvc {
            writes.push(CardWrite::InsertCvc(seal_cvc(&vault, dek, &token, merchant, cvc)?));
        }
        let event = ctx.event("allow", "ok", Some(merchant), Some(&token), Some(dek_version));
        match vault.commit(writes, event).await {
            Ok(()) => return Ok((StatusCode::CREATED, Json(TokenMetadata::from_record(&card, Some(false))))),
            // A random token collided with an existing one: draw again.
            Err(CommitError::Store(StoreError::Conflict(_))) => continue,
            // The grant minted a token already (a replay, or a concurrent twin that won).
            Err(CommitError::Store(StoreError::GrantUsed)) => {
                return Err(vault.refuse(&ctx, ApiError::GrantUsed, Some(merchant), None).await);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Internal("could not draw a unique token".into()))
}

/// The grant a `POST /v1/tokens` spends, if any, checked against the caller's role:
/// a `checkout_tokens_only` principal must bind (`bound_only`), every other must not.
/// `now` is Unix ms.
fn checkout_grant(req: &CreateTokenRequest, bound_only: bool, now: i64) -> Result<Option<SpentGrant>, ApiError> {
    let binding = match (&req.checkout, bound_only) {
        (None, false) => return Ok(None),
        (None, true) => return Err(ApiError::CheckoutBindingRequired),
        (Some(_), false) => return Err(ApiError::CheckoutBindingForbidden),
        (Some(binding), true) => binding,
    };
    if req.reuse {
        return Err(ApiError::ReuseNotAllowed);
    }
    if !checkout_id_valid(&binding.checkout_id) {
        return Err(ApiError::CheckoutBindingInvalid(
            "checkout.checkout_id must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -",
        ));
    }
    if !grant_nonce_valid(&binding.grant_nonce) {
        return Err(ApiError::CheckoutBindingInvalid(
            "checkout.grant_nonce must be 22 characters of unpadded base64url",
        ));
    }
    if binding.grant_expires_at > now.div_euclid(1000).saturating_add(MAX_GRANT_AHEAD_SECS) {
        return Err(ApiError::CheckoutBindingInvalid(
            "checkout.grant_expires_at lies further ahead than a grant lives",
        ));
    }
    // Bounded above, so the product cannot overflow; a hugely negative one saturates.
    let expires_at = binding.grant_expires_at.saturating_mul(1000);
    if expires_at <= now {
        return Err(ApiError::GrantExpired);
    }
    Ok(Some(SpentGrant {
        nonce: binding.grant_nonce.clone(),
        merchant_id: req.merchant_id.clone(),
        checkout_id: binding.checkout_id.clone(),
        expires_at,
    }))
}

/// A checkout id as the gateway makes them (`chk_…`), or any 1 to 64 characters of
/// `[A-Za-z0-9_-]` (the shape of a merchant id): the vault stores it and hands it back.
fn checkout_id_valid(id: &str) -> bool {
    merchant_id_valid(id)
}

/// 22 characters of the base64url alphabet.
fn grant_nonce_valid(nonce: &str) -> bool {
    nonce.len() == GRANT_NONCE_LEN && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// When a token made at `now` with `ttl_sec` expires (`None`: never).
fn token_expiry(ttl_sec: Option<i64>, now: i64) -> Result<Option<i64>, ApiError> {
    match ttl_sec {
        None => Ok(None),
        Some(ttl) if (1..=MAX_TOKEN_TTL_SECS).contains(&ttl) => Ok(Some(now.saturating_add(ttl * 1000))),
        Some(_) => Err(ApiError::TtlInvalid),
    }
}

fn validate_card(req: &CreateTokenRequest) -> Result<(Pan, u8, i32), ApiError> {
    let pan = Pan::parse(&req.pan)?;
    let (month, year) = check_expiry(req.exp_month, req.exp_year, this_month())?;
    if let Some(cvc) = &req.cvc {
        check_cvc(cvc, pan.brand())?;
    }
    if let Some(name) = &req.cardholder_name {
        check_holder_name(name)?;
    }
    Ok((pan, month, year))
}

fn seal_cvc(
    vault: &Vault,
    dek: &paysys_keys::Dek,
    token: &str,
    merchant: &str,
    cvc: &SecretString,
) -> Result<CvcRecord, ApiError> {
    let ciphertext = dek
        .seal(cvc.expose_secret().as_bytes(), &[token.as_bytes(), merchant.as_bytes(), b"cvc"])
        .map_err(|_| ApiError::Internal("sealing the CVC failed".into()))?;
    Ok(CvcRecord {
        token: token.to_owned(),
        dek_version: i64::from(dek.version()),
        ciphertext,
        expires_at: now_ms() + vault.cvc_ttl_ms,
    })
}

/// The body of a request made for the merchant it names: one that does not parse, or
/// names a malformed merchant id, is refused (audited).
async fn read_merchant_request<T>(
    vault: &Vault,
    ctx: &RequestContext,
    body: Result<JsonBody<T>, ApiError>,
    merchant_id: fn(&T) -> &String,
) -> Result<T, ApiError> {
    let JsonBody(req) = match body {
        Ok(b) => b,
        Err(e) => return Err(vault.refuse(ctx, e, None, None).await),
    };
    if !merchant_id_valid(merchant_id(&req)) {
        return Err(vault.refuse(ctx, ApiError::MerchantIdInvalid, None, None).await);
    }
    Ok(req)
}

/// Look a token up for `ctx`, applying the policy. A token of another merchant is
/// reported exactly like a missing one.
async fn find_visible_card(vault: &Vault, ctx: &RequestContext, token: &str) -> Result<CardRecord, ApiError> {
    vault.admit(ctx).await?;
    if !looks_like_token(token) {
        return Err(vault.refuse(ctx, ApiError::TokenNotFound, None, None).await);
    }
    let card = match vault.store.find_card(token).await? {
        Some(card) => card,
        None => return Err(vault.refuse(ctx, ApiError::TokenNotFound, None, Some(token)).await),
    };
    if let Decision::Deny(reason) = vault.decide(ctx, Some(&card.merchant_id)) {
        let error = denial_error(&reason);
        return Err(vault.refuse(ctx, error, Some(&card.merchant_id), Some(token)).await);
    }
    Ok(card)
}

pub async fn get_token(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<TokenMetadata>, ApiError> {
    let ctx = caller.context(Operation::TokensRead);
    let card = find_visible_card(&vault, &ctx, &token).await?;
    let event = ctx.event("allow", "ok", Some(&card.merchant_id), Some(&card.token), Some(card.dek_version));
    vault.commit(Vec::new(), event).await?;
    Ok(Json(TokenMetadata::from_record(&card, None)))
}

pub async fn delete_token(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ctx = caller.context(Operation::TokensDelete);
    let card = find_visible_card(&vault, &ctx, &token).await?;
    let event = ctx.event("allow", "ok", Some(&card.merchant_id), Some(&card.token), Some(card.dek_version));
    vault.commit(vec![CardWrite::DeleteCard { token: card.token.clone() }], event).await?;
    Ok(Json(serde_json::json!({ "token": card.token, "deleted": true })))
}

/// `POST /v1/tokens/{token}/remove` body: the merchant on whose behalf the caller removes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveForMerchantRequest {
    merchant_id: String,
}

/// `tokens.remove_for_merchant`: delete a token (crypto-shred, as `DELETE` does) for the
/// merchant the caller names, and only if the token is that merchant's — another
/// merchant's token, like a missing or expired one, is `token_not_found`. Each
/// merchant's removals are rate-limited (see [`crate::rate_limit`]); every attempt,
/// refused or not, is audited.
pub async fn remove_token_for_merchant(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    Path(token): Path<String>,
    body: Result<JsonBody<RemoveForMerchantRequest>, ApiError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ctx = caller.context(Operation::TokensRemoveForMerchant);
    vault.admit(&ctx).await?;
    let req = read_merchant_request(&vault, &ctx, body, |req| &req.merchant_id).await?;
    let merchant = req.merchant_id.as_str();
    if let Decision::Deny(reason) = vault.decide(&ctx, Some(merchant)) {
        let error = denial_error(&reason);
        return Err(vault.refuse(&ctx, error, Some(merchant), None).await);
    }
    // Before the lookup, so that guessing at tokens costs the same as removing them.
    if !vault.removal_limit.try_take(merchant, std::time::Instant::now()) {
        return Err(vault.refuse(&ctx, ApiError::RateLimited, Some(merchant), None).await);
    }
    let card = if looks_like_token(&token) { vault.store.find_card(&token).await? } else { None };
    let Some(card) = card.filter(|card| card.merchant_id == merchant) else {
        let named = looks_like_token(&token).then_some(token.as_str());
        return Err(vault.refuse(&ctx, ApiError::TokenNotFound, Some(merchant), named).await);
    };
    let event = ctx.event("allow", "ok", Some(&card.merchant_id), Some(&card.token), Some(card.dek_version));
    vault.commit(vec![CardWrite::DeleteCard { token: card.token.clone() }], event).await?;
    Ok(Json(serde_json::json!({ "token": card.token, "deleted": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(checkout: Option<CheckoutBinding>, reuse: bool) -> CreateTokenRequest {
        CreateTokenRequest {
            merchant_id: "m_1".into(),
            pan: SecretString::from("4242424242424242"),
            exp_month: 12,
            exp_year: 2040,
            cardholder_name: None,
            cvc: None,
            format: TokenFormat::Opaque,
            reuse,
            ttl_sec: None,
            checkout,
        }
    }

    fn binding(checkout_id: &str, nonce: &str, expires_at: i64) -> Option<CheckoutBinding> {
        Some(CheckoutBinding {
            checkout_id: checkout_id.into(),
            grant_nonce: nonce.into(),
            grant_expires_at: expires_at,
        })
    }

    const NONCE: &str = "AAAAAAAAAAAAAAAAAAAAAA";
    const NOW_MS: i64 = 1_800_000_000_000;
    const NOW: i64 = NOW_MS / 1000;

    fn code(result: Result<Option<SpentGrant>, ApiError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn a_binding_is_required_of_the_intake_and_refused_from_others() {
        assert_eq!(code(checkout_grant(&request(None, false), false, NOW_MS)), "ok");
        assert_eq!(code(checkout_grant(&request(None, false), true, NOW_MS)), "checkout_binding_required");
        let bound = request(binding("chk_1", NONCE, NOW + 60), false);
        assert_eq!(code(checkout_grant(&bound, false, NOW_MS)), "checkout_binding_forbidden");
        let grant = checkout_grant(&bound, true, NOW_MS).unwrap().unwrap();
        assert_eq!(
            grant,
            SpentGrant {
                nonce: NONCE.into(),
                merchant_id: "m_1".into(),
                checkout_id: "chk_1".into(),
                expires_at: (NOW + 60) * 1000
            }
        );
        let reused = request(binding("chk_1", NONCE, NOW + 60), true);
        assert_eq!(code(checkout_grant(&reused, true, NOW_MS)), "reuse_not_allowed");
    }

    #[test]
    fn binding_shapes_and_expiry_are_checked() {
        let check = |id: &str, nonce: &str, at: i64| {
            code(checkout_grant(&request(binding(id, nonce, at), false), true, NOW_MS))
        };
        assert_eq!(check(&"c".repeat(64), "abcdefghijklmnopqrst-_", NOW + 1), "ok");
        for id in ["", "chk 1", "chk/1", "chk.1", &"c".repeat(65), "4242424242424242\n"] {
            assert_eq!(check(id, NONCE, NOW + 60), "checkout_binding_invalid", "{id:?}");
        }
        for nonce in
            ["", "AAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAA=", "AAAAAAAAAAAAAAAAAAAA+/"]
        {
            assert_eq!(check("chk_1", nonce, NOW + 60), "checkout_binding_invalid", "{nonce:?}");
        }
        assert_eq!(check("chk_1", NONCE, NOW), "grant_expired");
        assert_eq!(check("chk_1", NONCE, NOW - 1), "grant_expired");
        assert_eq!(check("chk_1", NONCE, i64::MIN), "grant_expired");
        assert_eq!(check("chk_1", NONCE, NOW + MAX_GRANT_AHEAD_SECS), "ok");
        assert_eq!(check("chk_1", NONCE, NOW + MAX_GRANT_AHEAD_SECS + 1), "checkout_binding_invalid");
        assert_eq!(check("chk_1", NONCE, i64::MAX), "checkout_binding_invalid");
    }
}
