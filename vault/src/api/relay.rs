//! `POST /v1/relay`: send a request carrying a token's card data to a destination the
//! policy allows, and answer with what came back, card numbers masked and CVC removed.
//!
//! Order of checks (each refusal is audited): the `relay` operation at all
//! (`forbidden`), the request's shape, the destination for this principal, the path
//! under its prefix, the template and the card fields the destination may receive —
//! all before any token is looked up — then the token and its merchant
//! (`token_not_found` for a token the caller may not see). Only then is the card
//! opened, and only the fields the template names.
//!
//! The CVC is single use: it is read, sent, and deleted in the same transaction as the
//! relay's audit record. Within one process, [`CvcClaims`] makes a concurrent relay of
//! the same token send `null` instead of a second copy.

use super::{denial_error, now_ms, JsonBody, RequestContext, RequestId, Vault};
use crate::card::merchant_id_valid;
use crate::error::ApiError;
use crate::relay::{mask, template, CardData, RelayMethod};
use crate::store::{CardRecord, CardWrite, CvcRecord};
use crate::tls::Principal;
use crate::token::looks_like_token;
use axum::extract::State;
use axum::{Extension, Json};
use paysys_policies::{CardField, Decision, Destination, Operation};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use zeroize::Zeroizing;

/// `POST /v1/relay` body. Unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    token: String,
    merchant_id: String,
    /// A destination name from the policy, never a URL.
    destination: String,
    method: RelayMethod,
    /// Path (and optional plain query) under the destination's `path_prefix`.
    path: String,
    /// The JSON body template; placeholders are whole string values.
    #[serde(default)]
    body: Option<Value>,
    /// At most `--relay-timeout-max-ms` (also the default).
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Tokens whose CVC a relay in this process is sending right now. A second relay of
/// the same token meanwhile sends `null`, as it would once the first has committed.
#[derive(Debug, Default)]
pub struct CvcClaims(Mutex<HashSet<String>>);

/// A claim on a token's CVC, released when dropped.
#[derive(Debug)]
struct CvcClaim<'a> {
    claims: &'a CvcClaims,
    token: String,
}

impl CvcClaims {
    fn claim(&self, token: &str) -> Option<CvcClaim<'_>> {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        held.insert(token.to_owned()).then(|| CvcClaim { claims: self, token: token.to_owned() })
    }
}

impl Drop for CvcClaim<'_> {
    fn drop(&mut self) {
        self.claims.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.token);
    }
}

/// Is `path` a plain origin-form path under the destination's prefix? No `..`, `.`,
/// `//`, percent-escapes, backslashes, fragments or odd characters; an optional query
/// of unreserved characters, `=` and `&` only.
fn path_allowed(destination: &Destination, path: &str) -> bool {
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let plain_path = path_only.starts_with('/')
        && !path_only.contains("//")
        && path_only.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/:@!$'()*+,;=".contains(&b));
    let plain_query = match query {
        None => true,
        Some(q) => !q.is_empty() && q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~=&".contains(&b)),
    };
    plain_path && plain_query && destination.permits_path(path)
}

/// A destination name fit for the audit log (it is caller input).
fn audit_name(name: &str) -> &str {
    let plain = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if plain {
        name
    } else {
        "?"
    }
}

/// What a relay's audit record says it came to: the stable code, the destination and,
/// when there was an answer, its status.
fn outcome(code: &str, destination: &str, upstream_status: Option<u16>) -> String {
    let destination = audit_name(destination);
    match upstream_status {
        Some(status) => format!("{code} destination={destination} upstream_status={status}"),
        None => format!("{code} destination={destination}"),
    }
}

/// Audit a refused relay (no writes) and return its error. A refusal whose audit write
/// fails is still refused.
async fn refuse(
    vault: &Vault,
    ctx: &RequestContext,
    error: ApiError,
    req: Option<&RelayRequest>,
    card: Option<&CardRecord>,
) -> ApiError {
    let decision = match error {
        ApiError::Forbidden
        | ApiError::RelayDestinationNotAllowed
        | ApiError::RelayPathNotAllowed
        | ApiError::RelayFieldNotAllowed => "deny",
        _ => "allow",
    };
    let destination = req.map_or("", |r| r.destination.as_str());
    let merchant = match (card, req) {
        (Some(card), _) => Some(card.merchant_id.as_str()),
        (None, Some(r)) if merchant_id_valid(&r.merchant_id) => Some(r.merchant_id.as_str()),
        _ => None,
    };
    // Only something shaped like a token is written down: never arbitrary input, which
    // could be a card number sent by mistake.
    let token = req.map(|r| r.token.as_str()).filter(|t| looks_like_token(t));
    let event = ctx.event(decision, &outcome(error.code(), destination, None), merchant, token, None);
    if let Err(e) = vault.commit(Vec::new(), event).await {
        tracing::warn!(error = %e, code = error.code(), "could not audit a refused relay");
    }
    error
}

pub async fn relay(
    State(vault): State<Arc<Vault>>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    body: Result<JsonBody<RelayRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let ctx = RequestContext { principal, request_id, operation: Operation::Relay };
    let keyring = vault.keyring()?;
    if !vault.may_attempt(&ctx) {
        return Err(refuse(&vault, &ctx, ApiError::Forbidden, None, None).await);
    }
    let req = match body {
        Ok(JsonBody(req)) => req,
        Err(e) => return Err(refuse(&vault, &ctx, e, None, None).await),
    };
    let checked = check_request(&vault, &ctx, &req);
    let (destination, fields, timeout) = match checked {
        Ok(v) => v,
        Err(e) => return Err(refuse(&vault, &ctx, e, Some(&req), None).await),
    };
    let card = match find_card(&vault, &ctx, &req).await {
        Ok(card) => card,
        Err(e) => return Err(refuse(&vault, &ctx, e, Some(&req), None).await),
    };
    let Some(client) = vault.relay.as_ref() else {
        tracing::warn!("relay requested but the vault was started without --relay-ca");
        return Err(refuse(&vault, &ctx, ApiError::RelayUnreachable, Some(&req), Some(&card)).await);
    };

    // Open the card, and the CVC only if the template asks for it.
    let dek = u32::try_from(card.dek_version)
        .ok()
        .and_then(|v| keyring.dek(v))
        .ok_or_else(|| ApiError::Internal("the card's DEK version is not loaded".into()))?;
    let payload = dek
        .open(&card.ciphertext, &[card.token.as_bytes(), card.merchant_id.as_bytes()])
        .map_err(|_| ApiError::Internal("opening card data failed".into()))?;
    let (number, holder) = split_payload(&payload)?;
    let mut used_cvc: Option<CvcRecord> = None;
    let mut cvc = None;
    let _claim = if fields.contains(&CardField::Cvc) {
        let claim = vault.cvc_claims.claim(&card.token);
        if claim.is_some() {
            if let Some(record) = vault.store.find_cvc(&card.token, now_ms()).await? {
                let plain = dek_for(&keyring, record.dek_version)?
                    .open(&record.ciphertext, &[card.token.as_bytes(), card.merchant_id.as_bytes(), b"cvc"])
                    .map_err(|_| ApiError::Internal("opening the CVC failed".into()))?;
                cvc = Some(Zeroizing::new(String::from_utf8_lossy(&plain).into_owned()));
                used_cvc = Some(record);
            }
        }
        claim
    } else {
        None
    };
    let card_data = CardData {
        number,
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        cvc,
        holder: if fields.contains(&CardField::Holder) { holder } else { None },
    };
    let body = match &req.body {
        Some(template) => Some(
            template::fill(template, &card_data)
                .map_err(|_| ApiError::Internal("serializing the relay body failed".into()))?,
        ),
        None => None,
    };
    let url = format!("{}{}", destination.url, req.path);
    let result = client.send(req.method, &url, body, timeout).await;

    // The CVC has been sent (or at least offered): it is gone with the audit record.
    let writes: Vec<CardWrite> =
        used_cvc.iter().map(|r| CardWrite::DeleteCvc { token: r.token.clone(), expires_at: r.expires_at }).collect();
    let key_version = Some(card.dek_version);
    match result {
        Ok(response) => {
            let event = ctx.event(
                "allow",
                &outcome("ok", &req.destination, Some(response.status)),
                Some(&card.merchant_id),
                Some(&card.token),
                key_version,
            );
            let cvc_text = card_data.cvc.as_ref().map(|c| c.as_str());
            let masked = mask::mask_body(&response.body, &card_data.number, cvc_text);
            // Fail closed: no audit record, no answer.
            vault.commit(writes, event).await?;
            Ok(Json(json!({
                "status": response.status,
                "body": masked,
                "content_type": response.content_type.unwrap_or_default(),
            })))
        }
        Err(e) => {
            let error = ApiError::from(e);
            let event = ctx.event(
                "allow",
                &outcome(error.code(), &req.destination, None),
                Some(&card.merchant_id),
                Some(&card.token),
                key_version,
            );
            vault.commit(writes, event).await?;
            Err(error)
        }
    }
}

/// Checks that need no token: destination, method and body, path, template and fields,
/// timeout. Returns the destination, the fields the template asks for, the timeout.
fn check_request(
    vault: &Vault,
    ctx: &RequestContext,
    req: &RelayRequest,
) -> Result<(Destination, std::collections::BTreeSet<CardField>, std::time::Duration), ApiError> {
    if !merchant_id_valid(&req.merchant_id) {
        return Err(ApiError::MerchantIdInvalid);
    }
    let destination = vault
        .policy
        .relay_destination(ctx.principal.as_str(), &req.destination)
        .cloned()
        .ok_or(ApiError::RelayDestinationNotAllowed)?;
    if req.method == RelayMethod::Get && req.body.is_some() {
        return Err(ApiError::InvalidRequest("a GET relay takes no body".into()));
    }
    if req.timeout_ms == Some(0) {
        return Err(ApiError::InvalidRequest("timeout_ms must be at least 1".into()));
    }
    if !path_allowed(&destination, &req.path) {
        return Err(ApiError::RelayPathNotAllowed);
    }
    let fields = match &req.body {
        Some(body) => template::placeholders(body)?,
        None => Default::default(),
    };
    if fields.iter().any(|field| !destination.permits_field(*field)) {
        return Err(ApiError::RelayFieldNotAllowed);
    }
    let timeout = match &vault.relay {
        Some(client) => client.timeout_for(req.timeout_ms),
        None => std::time::Duration::ZERO,
    };
    Ok((destination, fields, timeout))
}

/// The token's card if this caller may relay it for the merchant it named. Another
/// merchant's token, or one outside the caller's scope, is `token_not_found`.
async fn find_card(vault: &Vault, ctx: &RequestContext, req: &RelayRequest) -> Result<CardRecord, ApiError> {
    if !looks_like_token(&req.token) {
        return Err(ApiError::TokenNotFound);
    }
    let card = vault.store.find_card(&req.token).await?.ok_or(ApiError::TokenNotFound)?;
    if card.merchant_id != req.merchant_id {
        return Err(ApiError::TokenNotFound);
    }
    if let Decision::Deny(reason) = vault.decide(ctx, Some(&card.merchant_id)) {
        return Err(denial_error(&reason));
    }
    Ok(card)
}

fn dek_for(keyring: &crate::keyring::Keyring, version: i64) -> Result<&paysys_keys::Dek, ApiError> {
    u32::try_from(version)
        .ok()
        .and_then(|v| keyring.dek(v))
        .ok_or_else(|| ApiError::Internal("a DEK version is not loaded".into()))
}

/// The sealed card payload (see `tokens.rs`): PAN length, PAN, then the holder name.
fn split_payload(payload: &[u8]) -> Result<(Zeroizing<String>, Option<Zeroizing<String>>), ApiError> {
    let malformed = || ApiError::Internal("the card payload is malformed".into());
    let (&len, rest) = payload.split_first().ok_or_else(malformed)?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(malformed());
    }
    let (pan, holder) = rest.split_at(len);
    let pan = Zeroizing::new(std::str::from_utf8(pan).map_err(|_| malformed())?.to_owned());
    let holder = match holder {
        [] => None,
        bytes => Some(Zeroizing::new(std::str::from_utf8(bytes).map_err(|_| malformed())?.to_owned())),
    };
    Ok((pan, holder))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquirer() -> Destination {
        let policy = paysys_policies::Policy::from_toml(paysys_policies::DEV_POLICY).unwrap();
        policy.relay_destination("spiffe://paysys/gateway", "sandbox_acquirer").cloned().unwrap()
    }

    #[test]
    fn only_plain_paths_under_the_prefix_are_allowed() {
        let d = acquirer();
        for ok in ["/acquirer/v1/authorizations", "/acquirer/v1/inquiry?reference=tx_1", "/acquirer/x"] {
            assert!(path_allowed(&d, ok), "{ok}");
        }
        for bad in [
            "/acquirer/../issuer/v1/balance",
            "/acquirer/./v1",
            "/acquirer//v1",
            "//evil.example/acquirer/",
            "/acquirer/%2e%2e/issuer",
            "/acquirer\\..\\issuer",
            "/acquirer/v1#frag",
            "/acquirer/v1?x=1?y=2",
            "/acquirer/v1?x=/../../issuer",
            "/acquirer/v1?",
            "/acquirer/v1 HTTP/1.1\r\nHost: evil",
            "/issuer/v1/balance",
            "/acquirer",
            "acquirer/v1",
            "/acquirer/{{card.number}}",
            "",
        ] {
            assert!(!path_allowed(&d, bad), "{bad}");
        }
    }

    #[test]
    fn payload_splits_into_pan_and_holder() {
        let mut payload = vec![16u8];
        payload.extend_from_slice(b"4242424242424242A HOLDER");
        let (pan, holder) = split_payload(&payload).unwrap();
        assert_eq!((pan.as_str(), holder.as_deref().map(String::as_str)), ("4242424242424242", Some("A HOLDER")));
        assert!(split_payload(&[20, b'4']).is_err());
        assert!(split_payload(&[]).is_err());
    }

    #[test]
    fn claims_are_exclusive_until_dropped() {
        let claims = CvcClaims::default();
        let first = claims.claim("tok_a");
        assert!(first.is_some());
        assert!(claims.claim("tok_a").is_none());
        assert!(claims.claim("tok_b").is_some());
        drop(first);
        assert!(claims.claim("tok_a").is_some());
    }
}
