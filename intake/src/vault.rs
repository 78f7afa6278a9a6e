//! The intake's side of the vault: `POST /v1/tokens` over mTLS as
//! `spiffe://paysys/intake`, with the card bound to the grant's checkout
//! (`checkout: {checkout_id, grant_nonce, grant_expires_at}`). The vault's policy lets
//! this principal create checkout-bound tokens and nothing else, and it spends the
//! grant's nonce in the same transaction that stores the card: single use across any
//! number of intake replicas.
//!
//! Connections are kept alive in a small pool (as the gateway's), each reused only
//! while well inside the vault's keep-alive limit.

use crate::error::{IntakeError, VaultRefusal};
use paysys_vault_client::{ClientTls, VaultConnection, VaultResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// How long connecting (TCP + TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the vault may take to answer a tokenization.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept.
const MAX_IDLE: usize = 64;
/// How long an idle connection may be reused: well under the vault's 10 s keep-alive
/// (its header-read timeout), so a reused connection is rarely one the vault is closing.
const POOL_IDLE_LIMIT: Duration = Duration::from_secs(4);
/// How long a token lives when the buyer did not ask to save the card: enough to pay
/// the checkout with it (3-D Secure challenge included), then the vault sweeps it.
pub const UNSAVED_TOKEN_TTL_SECS: i64 = 3600;

/// What ties a token to one checkout, as the vault records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckoutBinding {
    pub checkout_id: String,
    /// The grant's nonce: the vault refuses a second card under it (`grant_used`).
    pub grant_nonce: String,
    /// Unix seconds; the vault refuses the card after it (`grant_expired`).
    pub grant_expires_at: i64,
}

/// A card to tokenize. Borrowed from the request; the card fields stay in their
/// zeroizing wrappers until they are serialised into the vault request.
#[derive(Debug)]
pub struct CardForVault<'a> {
    pub merchant_id: &'a str,
    pub pan: &'a SecretString,
    pub exp_month: i64,
    pub exp_year: i64,
    pub cvc: Option<&'a SecretString>,
    pub cardholder_name: Option<&'a SecretString>,
    /// `None`: the token lives until deleted (a card the buyer saves).
    pub ttl_sec: Option<i64>,
    pub checkout: CheckoutBinding,
}

fn expose<S: Serializer>(secret: &&SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

fn expose_optional<S: Serializer>(secret: &Option<&SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => serializer.serialize_some(secret.expose_secret()),
        None => serializer.serialize_none(),
    }
}

/// The `POST /v1/tokens` body.
#[derive(Serialize)]
struct CreateTokenBody<'a> {
    merchant_id: &'a str,
    #[serde(serialize_with = "expose")]
    pan: &'a SecretString,
    exp_month: i64,
    exp_year: i64,
    #[serde(serialize_with = "expose_optional", skip_serializing_if = "Option::is_none")]
    cvc: Option<&'a SecretString>,
    #[serde(serialize_with = "expose_optional", skip_serializing_if = "Option::is_none")]
    cardholder_name: Option<&'a SecretString>,
    format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_sec: Option<i64>,
    checkout: &'a CheckoutBinding,
}

/// The token the vault issued, as the frame hands it to its page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
}

/// The vault's token API with the intake's client certificate.
#[derive(Debug)]
pub struct VaultTokens {
    tls: ClientTls,
    base_url: String,
    /// Idle connections, each with when it became idle (newest last).
    idle: Mutex<Vec<(VaultConnection, Instant)>>,
}

impl VaultTokens {
    pub fn new(tls: ClientTls, base_url: &str) -> VaultTokens {
        VaultTokens { tls, base_url: base_url.trim_end_matches('/').to_owned(), idle: Mutex::new(Vec::new()) }
    }

    /// Tokenize `card`. The vault's refusals a buyer can act on come back as
    /// [`IntakeError::Vault`]; anything else as `VaultRefused` or `VaultUnavailable`.
    pub async fn tokenize(&self, card: &CardForVault<'_>) -> Result<IssuedToken, IntakeError> {
        let body = CreateTokenBody {
            merchant_id: card.merchant_id,
            pan: card.pan,
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            cvc: card.cvc,
            cardholder_name: card.cardholder_name,
            format: "opaque",
            ttl_sec: card.ttl_sec,
            checkout: &card.checkout,
        };
        // Sized once, so serialising never reallocates and leaves a copy behind.
        let mut bytes = Zeroizing::new(Vec::with_capacity(16 * 1024));
        serde_json::to_writer(&mut *bytes, &body).map_err(|_| IntakeError::VaultUnavailable)?;
        let response = self.post_tokens(&bytes).await?;
        match response.status {
            201 => serde_json::from_value::<IssuedToken>(response.body).map_err(|e| {
                tracing::error!(error = %e, "the vault's token answer has an unexpected shape");
                IntakeError::VaultUnavailable
            }),
            _ => {
                let code = response.error_code().unwrap_or("");
                match VaultRefusal::from_code(code) {
                    Some(refusal) => Err(IntakeError::Vault(refusal)),
                    None => Err(IntakeError::VaultRefused(format!("{} {code}", response.status))),
                }
            }
        }
    }

    /// Send the serialised body on a pooled (or new) connection. A failure on a reused
    /// connection (the vault may have just closed it) is tried once more on a fresh
    /// one; should the first have reached the vault after all, the second finds the
    /// grant spent (`grant_used`), never a second card.
    async fn post_tokens(&self, body: &Zeroizing<Vec<u8>>) -> Result<VaultResponse, IntakeError> {
        let mut attempts = 2;
        loop {
            attempts -= 1;
            let (mut connection, reused) = self.connection().await?;
            // paysys-vault-client takes the body by value and hyper frees it after
            // sending; the original here is wiped when `body` is dropped.
            let sent = connection.call_raw("POST", "/v1/tokens", Some(body.to_vec()));
            match tokio::time::timeout(CALL_TIMEOUT, sent).await {
                Ok(Ok(response)) => {
                    let mut idle = self.idle.lock().await;
                    if idle.len() < MAX_IDLE {
                        idle.push((connection, Instant::now()));
                    }
                    return Ok(response);
                }
                Ok(Err(e)) if reused && attempts > 0 => {
                    tracing::debug!(error = %e, "reused vault connection failed; retrying on a fresh one");
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "vault call failed");
                    return Err(IntakeError::VaultUnavailable);
                }
                Err(_) => {
                    tracing::warn!(timeout_ms = CALL_TIMEOUT.as_millis(), "the vault did not answer in time");
                    return Err(IntakeError::VaultUnavailable);
                }
            }
        }
    }

    async fn connection(&self) -> Result<(VaultConnection, bool), IntakeError> {
        {
            let mut idle = self.idle.lock().await;
            while let Some((connection, since)) = idle.pop() {
                if since.elapsed() >= POOL_IDLE_LIMIT {
                    // The newest are at the end: once one is too old, so are all before it.
                    idle.clear();
                } else if !connection.is_closed() {
                    return Ok((connection, true));
                }
            }
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(&self.base_url)).await {
            Ok(Ok(connection)) => Ok((connection, false)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, vault = %self.base_url, "cannot connect to the vault");
                Err(IntakeError::VaultUnavailable)
            }
            Err(_) => {
                tracing::warn!(vault = %self.base_url, "connecting to the vault timed out");
                Err(IntakeError::VaultUnavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_vault_request_carries_the_card_and_the_checkout_binding_exactly() {
        let pan = SecretString::from("4242424242424242");
        let cvc = SecretString::from("123");
        let checkout = CheckoutBinding {
            checkout_id: "chk_1".into(),
            grant_nonce: "bm9uY2U".into(),
            grant_expires_at: 1_800_000_000,
        };
        let body = CreateTokenBody {
            merchant_id: "m_1",
            pan: &pan,
            exp_month: 12,
            exp_year: 2031,
            cvc: Some(&cvc),
            cardholder_name: None,
            format: "opaque",
            ttl_sec: Some(UNSAVED_TOKEN_TTL_SECS),
            checkout: &checkout,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "merchant_id": "m_1", "pan": "4242424242424242", "exp_month": 12, "exp_year": 2031,
                "cvc": "123", "format": "opaque", "ttl_sec": 3600,
                "checkout": {"checkout_id": "chk_1", "grant_nonce": "bm9uY2U", "grant_expires_at": 1_800_000_000i64},
            })
        );
        let saved = CreateTokenBody { ttl_sec: None, cvc: None, ..body };
        let json = serde_json::to_value(&saved).unwrap();
        assert!(json.get("ttl_sec").is_none() && json.get("cvc").is_none() && json.get("cardholder_name").is_none());
    }
}
