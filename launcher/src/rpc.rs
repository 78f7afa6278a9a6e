//! `paysys rpc`: call the dev stack's gateway as the dev merchant — the JSON-RPC request
//! signed with the `Auth` header from the credentials in `stack.json` — and print the
//! answer. A newcomer's first payment, and a reference for merchants' own signing code:
//!
//! ```text
//! Auth: {service_id}-{hex HMAC-SHA256(secret, ts + "." + raw_body)}-{ts}     (ts in ms)
//! ```

use crate::stack::Stack;
use anyhow::{ensure, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `Auth` header for `body` sent at `timestamp_ms`.
pub fn auth_header(service_id: &str, secret: &str, timestamp_ms: u128, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp_ms}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &signed);
    format!("{service_id}-{}-{timestamp_ms}", hex::encode(tag.as_ref()))
}

/// The JSON-RPC 2.0 request for `method` with named `params`.
pub fn request_body(method: &str, params: &serde_json::Value) -> anyhow::Result<Vec<u8>> {
    ensure!(params.is_object(), "params must be a JSON object (JSON-RPC named params)");
    Ok(serde_json::to_vec(&serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }))?)
}

/// Send `method(params)` to the stack's gateway as its dev merchant; the response body.
pub async fn call(stack: &Stack, method: &str, params: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let body = request_body(method, params)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("the clock is before 1970")?.as_millis();
    let merchant = &stack.gateway.merchant;
    let request = hyper::Request::post(&stack.gateway.rpc_url)
        .header("content-type", "application/json")
        .header("auth", auth_header(&merchant.service_id, &merchant.secret, now, &body))
        .body(Full::new(Bytes::from(body)))
        .context("building the request")?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client.request(request).await.with_context(|| format!("calling {}", stack.gateway.rpc_url))?;
    let status = response.status();
    let bytes = response.into_body().collect().await.context("reading the answer")?.to_bytes();
    serde_json::from_slice(&bytes).with_context(|| {
        format!("the gateway answered {status} with something other than JSON: {}", String::from_utf8_lossy(&bytes))
    })
}

/// What `paysys checkout` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// Minor units (`150000` UZS is 1,500.00).
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    /// Where the buyer goes after paying, with the signed result.
    pub return_url: String,
    /// `uz`, `ru` or `en`.
    pub language: Option<String>,
}

/// Where a dev checkout returns the buyer unless told otherwise: a page that exists, so
/// the signed result can be read in the address bar.
pub const DEFAULT_RETURN_URL: &str = "https://example.com/paysys-return";

impl CheckoutRequest {
    /// `checkout.create`'s params, with a fresh `partner_trans_id`.
    pub fn params(&self) -> serde_json::Value {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
        let mut params = serde_json::json!({
            "amount": self.amount,
            "currency": self.currency,
            "partner_trans_id": format!("dev-checkout-{millis}-{:04x}", rand::random::<u16>()),
            "return_url": self.return_url,
        });
        if let Some(description) = &self.description {
            params["description"] = description.clone().into();
        }
        if let Some(language) = &self.language {
            params["language"] = language.clone().into();
        }
        params
    }
}

/// `checkout.create` as the dev merchant: the checkout's `url` (the hosted page to open)
/// and the whole result. A JSON-RPC error becomes an error with its code and message.
pub async fn create_checkout(stack: &Stack, request: &CheckoutRequest) -> anyhow::Result<(String, serde_json::Value)> {
    let answer = call(stack, "checkout.create", &request.params()).await?;
    if let Some(error) = answer.get("error") {
        anyhow::bail!(
            "checkout.create failed: {} (code {})",
            error.get("message").and_then(serde_json::Value::as_str).unwrap_or("no message"),
            error
                .get("data")
                .and_then(|d| d.get("code"))
                .or_else(|| error.get("code"))
                .unwrap_or(&serde_json::Value::Null)
        );
    }
    let result = answer.get("result").cloned().context("checkout.create answered without a result")?;
    let url = result.get("url").and_then(serde_json::Value::as_str).context("checkout.create's result has no url")?;
    Ok((url.to_owned(), result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_header_matches_an_independent_hmac() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"sec_1", b"1700000000000.{}", hashlib.sha256).hexdigest())'
        let header = auth_header("svc_1", "sec_1", 1_700_000_000_000, b"{}");
        assert_eq!(header, "svc_1-1a6fee3ecfa01a20db7bf413998308ec5344decf1d5b5e25bd4be3ea14dadece-1700000000000");
    }

    #[test]
    fn a_checkout_request_names_what_checkout_create_takes() {
        let request = CheckoutRequest {
            amount: 150_000,
            currency: "UZS".into(),
            description: Some("Tea".into()),
            return_url: DEFAULT_RETURN_URL.into(),
            language: Some("uz".into()),
        };
        let params = request.params();
        assert_eq!(params["amount"], 150_000);
        assert_eq!(params["currency"], "UZS");
        assert_eq!(params["description"], "Tea");
        assert_eq!(params["language"], "uz");
        assert_eq!(params["return_url"], DEFAULT_RETURN_URL);
        assert!(params["partner_trans_id"].as_str().unwrap().starts_with("dev-checkout-"));
        assert_ne!(params["partner_trans_id"], request.params()["partner_trans_id"], "fresh each time");
        let bare = CheckoutRequest { description: None, language: None, ..request };
        assert!(bare.params().get("description").is_none() && bare.params().get("language").is_none());
    }

    #[test]
    fn params_must_be_named() {
        assert!(request_body("payment.check", &serde_json::json!([1])).is_err());
        let body = request_body("payment.check", &serde_json::json!({"transaction_id": "t"})).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["params"]["transaction_id"], "t");
    }
}
