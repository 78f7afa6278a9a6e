//! `POST /v1/relay`: send one of the policy's relay templates, filled with a token's
//! card data and the caller's values, to its destination, and answer with what came
//! back, card numbers masked and the CVC removed.
//!
//! The caller names a template (`sandbox_acquirer.authorize`) and supplies only the
//! non-card values, by name; it cannot send a body, path, method or headers of its own,
//! so it can never choose where a card number goes. Order of checks (each refusal is
//! audited): the `relay` operation at all (`forbidden`), the request's shape (a
//! caller-written request is `relay_template_not_allowed`), the template for this
//! principal, the values against their declared types (`relay_card_data_in_value` for a
//! placeholder, a card location or a card number in a value) — all before any token is
//! looked up — then the token and its merchant (`token_not_found` for a token the caller
//! may not see). Only then is the card opened, and only the fields the template places.
//!
//! **Audit before send.** The relay claims the CVC (deleting it in the store, atomically,
//! so exactly one relay of a token ever gets it, across replicas too) and commits a
//! `sending` audit record before any byte leaves, then sends and records the outcome in
//! tasks the request does not own (the answer does not wait for the outcome's record): a caller that hangs up (HTTP/1 EOF, an HTTP/2 reset, its
//! own timeout) cannot stop the outcome being recorded, and the CVC can never be sent
//! twice.

use super::{denial_error, now_ms, Caller, JsonBody, RequestContext, Vault};
use crate::card::merchant_id_valid;
use crate::error::ApiError;
use crate::relay::{mask, template, CardData, RelayMethod};
use crate::store::CardRecord;
use crate::token::looks_like_token;
use axum::extract::State;
use axum::Json;
use paysys_cardnum::redact_digit_runs;
use paysys_policies::{CardField, CheckedValues, Decision, Destination, Operation, RelayTemplate, TemplateRefusal};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

/// `POST /v1/relay` body. Unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    token: String,
    merchant_id: String,
    /// `destination.operation` of a template in the vault's policy.
    template: String,
    /// The template's non-card values, by name.
    #[serde(default)]
    values: Map<String, Value>,
    /// At most `--relay-timeout-max-ms` (also the default).
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Fields of the first relay API, in which the caller wrote the request itself. Any of
/// them is a caller-written template: refused as such, not as a mere unknown field.
const CALLER_TEMPLATE_FIELDS: [&str; 8] = ["body", "path", "method", "destination", "headers", "url", "query", "host"];

/// The relay request from the body, refusing a caller-written one by name.
fn read_request(body: Map<String, Value>) -> Result<RelayRequest, ApiError> {
    if CALLER_TEMPLATE_FIELDS.iter().any(|field| body.contains_key(*field)) {
        return Err(ApiError::RelayTemplateNotAllowed);
    }
    serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::InvalidRequest(redact_digit_runs(&e.to_string(), 12)))
}

/// A template name fit for the audit log (it is caller input).
fn audit_name(name: &str) -> &str {
    let plain = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if plain {
        name
    } else {
        "?"
    }
}

/// What a relay's audit record says it came to: the stable code (or `sending`), the
/// template and, when there was an answer, its status.
fn outcome(code: &str, template: &str, upstream_status: Option<u16>) -> String {
    let template = audit_name(template);
    match upstream_status {
        Some(status) => format!("{code} template={template} upstream_status={status}"),
        None => format!("{code} template={template}"),
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
        | ApiError::RelayTemplateNotAllowed
        | ApiError::RelayTemplateUnknown
        | ApiError::RelayCardDataInValue(_) => "deny",
        _ => "allow",
    };
    let template = req.map_or("", |r| r.template.as_str());
    let merchant = match (card, req) {
        (Some(card), _) => Some(card.merchant_id.as_str()),
        (None, Some(r)) if merchant_id_valid(&r.merchant_id) => Some(r.merchant_id.as_str()),
        _ => None,
    };
    // Only something shaped like a token is written down: never arbitrary input, which
    // could be a card number sent by mistake.
    let token = req.map(|r| r.token.as_str()).filter(|t| looks_like_token(t));
    let event = ctx.event(decision, &outcome(error.code(), template, None), merchant, token, None);
    if let Err(e) = vault.commit(Vec::new(), event).await {
        tracing::warn!(error = %e, code = error.code(), "could not audit a refused relay");
    }
    error
}

pub async fn relay(
    State(vault): State<Arc<Vault>>,
    caller: Caller,
    body: Result<JsonBody<Map<String, Value>>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let ctx = caller.context(Operation::Relay);
    let keyring = vault.keyring()?;
    if !vault.may_attempt(&ctx) {
        return Err(refuse(&vault, &ctx, ApiError::Forbidden, None, None).await);
    }
    let req = match body.and_then(|JsonBody(body)| read_request(body)) {
        Ok(req) => req,
        Err(e) => return Err(refuse(&vault, &ctx, e, None, None).await),
    };
    let (destination, template, values, timeout) = match check_request(&vault, &ctx, &req) {
        Ok(v) => v,
        Err(e) => return Err(refuse(&vault, &ctx, e, Some(&req), None).await),
    };
    let card = match find_card(&vault, &ctx, &req).await {
        Ok(card) => card,
        Err(e) => return Err(refuse(&vault, &ctx, e, Some(&req), None).await),
    };
    if vault.relay.is_none() {
        tracing::warn!("relay requested but the vault was started without --relay-ca");
        return Err(refuse(&vault, &ctx, ApiError::RelayUnreachable, Some(&req), Some(&card)).await);
    }

    // Open the card, and the CVC only if the template places it.
    let dek = dek_for(&keyring, card.dek_version)?;
    let payload = dek
        .open(&card.ciphertext, &[card.token.as_bytes(), card.merchant_id.as_bytes()])
        .map_err(|_| ApiError::Internal("opening card data failed".into()))?;
    let (number, holder) = split_payload(&payload)?;
    let fields = &template.card_fields;
    let mut cvc = None;
    if fields.contains(&CardField::Cvc) {
        // Claimed in the store, atomically (`DELETE … RETURNING`): of two relays of the
        // same token, in this process or in another replica, exactly one gets the CVC and
        // the other sends `null`. A read first, so relaying a token whose CVC is long gone
        // (every payment after the first) costs no write.
        let now = now_ms();
        if vault.store.find_cvc(&card.token, now).await?.is_some() {
            if let Some(record) = vault.store.take_cvc(&card.token, now).await? {
                let plain = dek_for(&keyring, record.dek_version)?
                    .open(&record.ciphertext, &[card.token.as_bytes(), card.merchant_id.as_bytes(), b"cvc"])
                    .map_err(|_| ApiError::Internal("opening the CVC failed".into()))?;
                cvc = Some(Zeroizing::new(String::from_utf8_lossy(&plain).into_owned()));
            }
        }
    }
    let card_data = CardData {
        number,
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        cvc,
        holder: if fields.contains(&CardField::Holder) { holder } else { None },
    };
    let body = template::fill(template, &card.merchant_id, &values, &card_data)
        .map_err(|_| ApiError::Internal("serializing the relay body failed".into()))?;

    // Audit before send: the `sending` record commits before any byte leaves (the CVC,
    // if any, is already claimed). No record, no relay: the CVC is then lost rather
    // than ever sent unaudited.
    let key_version = Some(card.dek_version);
    let sending = ctx.event(
        "allow",
        &outcome("sending", &template.name, None),
        Some(&card.merchant_id),
        Some(&card.token),
        key_version,
    );
    vault.commit(Vec::new(), sending).await?;

    let send = SendAndRecord {
        vault: Arc::clone(&vault),
        ctx,
        template_name: template.name.clone(),
        method: RelayMethod::from(template.method),
        url: format!("{}{}", destination.url, template.path),
        body,
        timeout,
        card: card_data,
        merchant_id: card.merchant_id.clone(),
        token: card.token.clone(),
        key_version,
    };
    // The request does not own the send: if the caller goes away, the task still sends
    // (or times out) and records the outcome.
    match tokio::spawn(send.run()).await {
        Ok(result) => result,
        Err(e) => Err(ApiError::Internal(format!("the relay task failed: {e}"))),
    }
}

/// A relay whose `sending` record is committed: send it and record the outcome.
struct SendAndRecord {
    vault: Arc<Vault>,
    ctx: RequestContext,
    template_name: String,
    method: RelayMethod,
    url: String,
    body: Option<Zeroizing<Vec<u8>>>,
    timeout: std::time::Duration,
    card: CardData,
    merchant_id: String,
    token: String,
    key_version: Option<i64>,
}

impl SendAndRecord {
    async fn run(self) -> Result<Json<Value>, ApiError> {
        let SendAndRecord {
            vault,
            ctx,
            template_name,
            method,
            url,
            body,
            timeout,
            card,
            merchant_id,
            token,
            key_version,
        } = self;
        let Some(client) = vault.relay.as_ref() else {
            return Err(ApiError::RelayUnreachable);
        };
        let result = client.send(method, &url, body, timeout).await.map_err(ApiError::from);
        let (code, status) = match &result {
            Ok(response) => ("ok", Some(response.status)),
            Err(e) => (e.code(), None),
        };
        let event =
            ctx.event("allow", &outcome(code, &template_name, status), Some(&merchant_id), Some(&token), key_version);
        // The card has left with its `sending` record in the log, so the caller need not
        // wait for the outcome's: it is recorded by a task of its own (waiting for it cost
        // a second group-commit round per payment: pay c64 −20%). One that cannot be
        // recorded is logged; the caller still gets the answer (the relay happened).
        let name = audit_name(&template_name).to_owned();
        tokio::spawn(async move {
            if let Err(e) = vault.commit(Vec::new(), event).await {
                tracing::error!(error = %e, template = %name, "could not record a relay's outcome");
            }
        });
        let response = result?;
        let cvc_text = card.cvc.as_ref().map(|c| c.as_str());
        let masked = mask::mask_body(&response.body, &card.number, cvc_text);
        Ok(Json(json!({
            "status": response.status,
            "body": masked,
            "content_type": response.content_type.clone().unwrap_or_default(),
        })))
    }
}

/// Checks that need no token: the template for this principal, the values against it,
/// the timeout. Returns the template's destination, the template (both borrowed from the
/// policy), the checked values, the timeout.
fn check_request<'v>(
    vault: &'v Vault,
    ctx: &RequestContext,
    req: &RelayRequest,
) -> Result<(&'v Destination, &'v RelayTemplate, CheckedValues, std::time::Duration), ApiError> {
    if !merchant_id_valid(&req.merchant_id) {
        return Err(ApiError::MerchantIdInvalid);
    }
    let template = vault.policy.relay_template(ctx.principal.as_str(), &req.template).map_err(|e| match e {
        TemplateRefusal::Unknown => ApiError::RelayTemplateUnknown,
        TemplateRefusal::DestinationNotAllowed => ApiError::RelayDestinationNotAllowed,
    })?;
    let destination = vault
        .policy
        .relay_destination(ctx.principal.as_str(), &template.destination)
        .ok_or_else(|| ApiError::Internal("a template without its destination".into()))?;
    let values = template.check_values(&req.values)?;
    if req.timeout_ms == Some(0) {
        return Err(ApiError::InvalidRequest("timeout_ms must be at least 1".into()));
    }
    let timeout = match &vault.relay {
        Some(client) => client.timeout_for(req.timeout_ms),
        None => std::time::Duration::ZERO,
    };
    Ok((destination, template, values, timeout))
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

    #[test]
    fn a_caller_written_request_is_refused_as_such() {
        for field in CALLER_TEMPLATE_FIELDS {
            let mut body = json!({"token": "tok_x", "merchant_id": "m_1", "template": "a.b"});
            body[field] = json!("x");
            let refused = read_request(body.as_object().cloned().unwrap_or_default());
            assert!(matches!(refused, Err(ApiError::RelayTemplateNotAllowed)), "{field}");
        }
        let plain = json!({"token": "tok_x", "merchant_id": "m_1", "template": "a.b", "values": {"x": 1}});
        assert!(read_request(plain.as_object().cloned().unwrap_or_default()).is_ok());
        let typo = json!({"token": "tok_x", "merchant_id": "m_1", "template": "a.b", "value": {}});
        assert!(matches!(
            read_request(typo.as_object().cloned().unwrap_or_default()),
            Err(ApiError::InvalidRequest(_))
        ));
    }

    #[test]
    fn a_shape_error_never_echoes_a_card_number() {
        let body = json!({"token": "tok_x", "merchant_id": "m_1", "template": "a.b", "timeout_ms": "4242424242424242"});
        match read_request(body.as_object().cloned().unwrap_or_default()) {
            Err(ApiError::InvalidRequest(message)) => assert!(!message.contains("4242424242424242"), "{message}"),
            other => panic!("{other:?}"),
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
}
