//! The gateway's side of the vault: token metadata, and requests **relayed** by the
//! vault. The gateway names one of the vault's relay templates (its policy fixes the
//! destination, path, body and where card data goes) and supplies only the non-card
//! values; the vault fills in the card data and forwards the request. The gateway never
//! sees a card number; the relay answers with masked bodies.
//!
//! [`CardVault`] is the seam: [`VaultRelay`] speaks the vault's mTLS API; tests may put
//! something else behind it.

use crate::https::{CallError, HttpsPool};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The vault's template for an authorization without 3-D Secure.
pub const AUTHORIZE_TEMPLATE: &str = "sandbox_acquirer.authorize";
/// The vault's template for an authorization with the 3-D Secure proof.
pub const AUTHORIZE_3DS_TEMPLATE: &str = "sandbox_acquirer.authorize_3ds";
/// The vault's template for a 3-D Secure AReq to the directory server.
pub const AREQ_TEMPLATE: &str = "sandbox_ds.areq";

/// A request for the vault to relay: a template of the vault's and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayRequest {
    pub token: String,
    pub merchant_id: String,
    /// `destination.operation` of a template in the vault's policy.
    pub template: &'static str,
    /// The template's non-card values, by name.
    pub values: Map<String, Value>,
}
/// Extra time the gateway gives the vault beyond the relay's own timeout.
const RELAY_MARGIN: Duration = Duration::from_secs(2);

/// The 3-D Secure proof an authorization carries for the issuer to check.
#[derive(Clone, PartialEq, Eq)]
pub struct ThreeDsProof {
    pub message_version: String,
    pub trans_status: String,
    pub eci: Option<String>,
    /// The CAVV: goes from the ARes (or the DS's results) to the authorization in memory.
    pub authentication_value: String,
    pub ds_trans_id: String,
}

impl std::fmt::Debug for ThreeDsProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreeDsProof")
            .field("trans_status", &self.trans_status)
            .field("eci", &self.eci)
            .field("ds_trans_id", &self.ds_trans_id)
            .finish_non_exhaustive()
    }
}

/// An authorization to relay: the acquirer's values without card data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAuthorization {
    pub token: String,
    /// The vault's (and acquirer's) merchant id.
    pub merchant_id: String,
    /// The gateway's reference for the acquirer (the transaction id).
    pub reference: String,
    pub amount: i64,
    pub currency: String,
    /// Authorize and settle in one step (`capture_method = auto`).
    pub capture: bool,
    /// The 3-D Secure result the issuer checks (ECI, CAVV, DS transaction id).
    pub three_ds: Option<ThreeDsProof>,
}

impl RelayAuthorization {
    /// The relay request for this authorization: `authorize`, or `authorize_3ds` with
    /// the proof.
    pub fn relay_request(&self) -> RelayRequest {
        let mut values = Map::new();
        values.insert("reference".into(), json!(self.reference));
        values.insert("amount".into(), json!(self.amount));
        values.insert("currency".into(), json!(self.currency));
        values.insert("capture".into(), json!(self.capture));
        let template = match &self.three_ds {
            None => AUTHORIZE_TEMPLATE,
            Some(proof) => {
                values.insert("three_ds_version".into(), json!(proof.message_version));
                values.insert("trans_status".into(), json!(proof.trans_status));
                if let Some(eci) = &proof.eci {
                    values.insert("eci".into(), json!(eci));
                }
                values.insert("authentication_value".into(), json!(proof.authentication_value));
                values.insert("ds_trans_id".into(), json!(proof.ds_trans_id));
                AUTHORIZE_3DS_TEMPLATE
            }
        };
        RelayRequest { token: self.token.clone(), merchant_id: self.merchant_id.clone(), template, values }
    }
}

/// What became of a relayed authorization.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayOutcome {
    /// The acquirer answered (any HTTP status); its body, masked by the vault.
    Answered { status: u16, body: Value },
    /// The vault has no such token for this merchant.
    TokenNotFound,
    /// Certainly not sent to the acquirer (vault sealed, destination unreachable, vault
    /// unreachable, refused by policy): no authorization exists.
    NotSent(String),
    /// Maybe sent, no answer seen (relay timeout, broken connection): resolve by inquiry.
    Uncertain(String),
}

/// Token metadata as the vault returns it (never the PAN).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TokenMetadata {
    pub token: String,
    pub merchant_id: String,
    pub brand: String,
    pub bin: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub fingerprint: String,
    pub created_at: String,
    /// The checkout the token was minted for through the card intake (a checkout-bound
    /// token); absent for tokens a merchant's certificate created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_id: Option<String>,
}

/// A token lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLookup {
    Found(TokenMetadata),
    NotFound,
    Unavailable(String),
}

/// The vault, as the gateway uses it.
#[async_trait::async_trait]
pub trait CardVault: Send + Sync + std::fmt::Debug {
    /// Relay a request carrying card data; the relay gives up after `timeout`. The
    /// destination must be idempotent on the request's own reference: a request sent on
    /// a stale pooled connection may be sent again.
    async fn relay(&self, request: &RelayRequest, timeout: Duration) -> RelayOutcome;

    /// Relay an authorization to the acquirer.
    async fn relay_authorization(&self, request: &RelayAuthorization, timeout: Duration) -> RelayOutcome {
        self.relay(&request.relay_request(), timeout).await
    }
    /// Token metadata.
    async fn token_metadata(&self, token: &str) -> TokenLookup;

    /// Delete `token`'s card data in the vault on behalf of `merchant_id`
    /// (`tokens.remove_for_merchant`: only a token of that merchant; rate-limited).
    async fn remove_token(&self, token: &str, merchant_id: &str) -> TokenRemoval;
}

/// The vault's mTLS API (`POST /v1/relay`, `GET /v1/tokens/{token}`), with the
/// gateway's client certificate (principal `spiffe://paysys/gateway`).
#[derive(Debug)]
pub struct VaultRelay {
    pool: HttpsPool,
}

impl VaultRelay {
    pub fn new(pool: HttpsPool) -> VaultRelay {
        VaultRelay { pool }
    }
}

fn error_code(body: &Value) -> &str {
    body.get("error").and_then(|e| e.get("code")).and_then(Value::as_str).unwrap_or("")
}

#[async_trait::async_trait]
impl CardVault for VaultRelay {
    async fn relay(&self, request: &RelayRequest, timeout: Duration) -> RelayOutcome {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let body = json!({
            "token": request.token,
            "merchant_id": request.merchant_id,
            "template": request.template,
            "values": request.values,
            "timeout_ms": timeout_ms,
        });
        // The acquirer is idempotent on `reference` and the DS on threeDSServerTransID,
        // so re-sending on a stale pooled connection can never authorize twice.
        match self.pool.call("POST", "/v1/relay", Some(&body), timeout + RELAY_MARGIN, true).await {
            Err(CallError::NotSent(e)) => RelayOutcome::NotSent(e),
            Err(CallError::Uncertain(e)) => RelayOutcome::Uncertain(e),
            Ok(response) if response.status == 200 => {
                let status = response.body.get("status").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok());
                match status {
                    Some(status) => RelayOutcome::Answered {
                        status,
                        body: response.body.get("body").cloned().unwrap_or(Value::Null),
                    },
                    None => RelayOutcome::Uncertain("relay answer without an upstream status".into()),
                }
            }
            Ok(response) => match error_code(&response.body) {
                "token_not_found" => RelayOutcome::TokenNotFound,
                "relay_timeout" => RelayOutcome::Uncertain("relay_timeout".into()),
                // Refused before anything was sent: the vault records a relay (and its
                // `sending` audit record) before any byte leaves, so these never follow a send.
                "relay_unreachable"
                | "vault_sealed"
                | "forbidden"
                | "invalid_request"
                | "invalid_json"
                | "relay_destination_not_allowed"
                | "relay_template_not_allowed"
                | "relay_template_unknown"
                | "relay_value_invalid"
                | "relay_card_data_in_value"
                | "audit_unavailable" => RelayOutcome::NotSent(error_code(&response.body).to_owned()),
                // Anything else (an internal error after forwarding?): do not assume.
                other => RelayOutcome::Uncertain(format!("vault answered {} {other}", response.status)),
            },
        }
    }

    async fn token_metadata(&self, token: &str) -> TokenLookup {
        let path = format!("/v1/tokens/{token}");
        match self.pool.call("GET", &path, None, Duration::from_secs(10), true).await {
            Err(e) => TokenLookup::Unavailable(e.to_string()),
            Ok(r) if r.status == 200 => match serde_json::from_value::<TokenMetadata>(r.body) {
                Ok(meta) => TokenLookup::Found(meta),
                Err(e) => TokenLookup::Unavailable(format!("unexpected token metadata: {e}")),
            },
            Ok(r) if error_code(&r.body) == "token_not_found" => TokenLookup::NotFound,
            Ok(r) => TokenLookup::Unavailable(format!("vault answered {} {}", r.status, error_code(&r.body))),
        }
    }

    async fn remove_token(&self, token: &str, merchant_id: &str) -> TokenRemoval {
        let path = format!("/v1/tokens/{token}/remove");
        let body = json!({ "merchant_id": merchant_id });
        // Idempotent: sent again, it finds the token gone (`token_not_found`).
        match self.pool.call("POST", &path, Some(&body), Duration::from_secs(10), true).await {
            Err(e) => TokenRemoval::Failed(format!("vault unreachable: {e}")),
            Ok(r) if r.status == 200 => TokenRemoval::Removed,
            Ok(r) if error_code(&r.body) == "token_not_found" => TokenRemoval::NotFound,
            Ok(r) if error_code(&r.body).is_empty() => TokenRemoval::Failed(format!("vault answered {}", r.status)),
            Ok(r) => TokenRemoval::Failed(error_code(&r.body).to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authorization_names_a_template_and_sends_no_card_field() {
        let mut request = RelayAuthorization {
            token: "tok_x".into(),
            merchant_id: "m_1".into(),
            reference: "tx_1".into(),
            amount: 1000,
            currency: "UZS".into(),
            capture: true,
            three_ds: None,
        };
        let relay = request.relay_request();
        assert_eq!(relay.template, AUTHORIZE_TEMPLATE);
        assert_eq!(
            Value::Object(relay.values),
            json!({"reference": "tx_1", "amount": 1000, "currency": "UZS", "capture": true})
        );
        request.three_ds = Some(ThreeDsProof {
            message_version: "2.2.0".into(),
            trans_status: "Y".into(),
            eci: None,
            authentication_value: "AAAB".into(),
            ds_trans_id: "d".into(),
        });
        let relay = request.relay_request();
        assert_eq!(relay.template, AUTHORIZE_3DS_TEMPLATE);
        assert!(relay.values.get("eci").is_none(), "an absent ECI is left out, not null");
        assert_eq!(relay.values["authentication_value"], "AAAB");
    }
}

/// Most tokens [`TokenBins`] remembers; when full it starts over.
const TOKEN_BINS_MAX: usize = 100_000;

/// The owner, BIN and checkout binding of tokens already looked up (for the 3-D Secure
/// decision, or to refuse a checkout-bound token in `payment.create`), so a saved card
/// paid with again costs no vault call. Safe to keep: a token's card and binding never
/// change (a new card is a new token), a removed token is refused before the lookup,
/// and a token deleted in the vault fails at the relay all the same. Only the BIN,
/// never more.
#[derive(Debug, Default)]
pub struct TokenBins {
    entries: std::sync::RwLock<std::collections::HashMap<String, TokenFacts>>,
}

/// What [`TokenBins`] keeps of one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub merchant_id: String,
    pub bin: String,
    pub checkout_id: Option<String>,
}

impl TokenBins {
    /// `(merchant_id, bin)` of `token`, if looked up before.
    pub fn get(&self, token: &str) -> Option<(String, String)> {
        self.facts(token).map(|f| (f.merchant_id, f.bin))
    }

    /// Everything kept of `token`, if looked up before.
    pub fn facts(&self, token: &str) -> Option<TokenFacts> {
        self.entries.read().ok()?.get(token).cloned()
    }

    /// Keep what `meta` says of its token.
    pub fn put(&self, meta: &TokenMetadata) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= TOKEN_BINS_MAX {
                entries.clear();
            }
            let facts = TokenFacts {
                merchant_id: meta.merchant_id.clone(),
                bin: meta.bin.clone(),
                checkout_id: meta.checkout_id.clone(),
            };
            entries.insert(meta.token.clone(), facts);
        }
    }
}

/// What became of a token removal at the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRemoval {
    /// The card data is deleted.
    Removed,
    /// The vault has no such token for this merchant: deleted already (or expired).
    NotFound,
    /// Not done (vault unreachable or sealed, `rate_limited`, refused by policy): try later.
    Failed(String),
}
