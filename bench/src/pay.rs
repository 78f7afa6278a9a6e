//! `paysys-bench pay`: end-to-end `payment.create` (auto capture) — merchant → gateway
//! → vault relay → sandbox and back — with N concurrent merchants' clients, each on its
//! own kept-alive HTTP/1.1 connection to the gateway, every request signed.

use crate::load::{Client, Outcome};
use anyhow::{ensure, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use paysys::stack::Stack;
use paysys_gateway::secrets::MerchantSecret;
use paysys_vault_client::{ClientTls, HttpVersion};
use serde_json::{json, Value};
use std::sync::Arc;

/// The approving test cards with a large balance; each is tokenized several times
/// (`reuse: false`), so the pool has distinct tokens over four brands.
const CARDS: [&str; 4] = ["4242424242424242", "5555555555554444", "8600069195406311", "9860000000000018"];

/// Tokenize `per_card` tokens for each of [`CARDS`] as the stack's merchant.
pub async fn token_pool(stack: &Stack, per_card: usize) -> anyhow::Result<Vec<String>> {
    let merchant = &stack.pki.merchant;
    let tls = ClientTls::new(&stack.pki.ca_cert, Some((&merchant.cert, &merchant.key)), HttpVersion::Http1)?;
    let mut conn = tls.connect(&stack.vault.url).await.context("connecting to the vault")?;
    let mut tokens = Vec::with_capacity(CARDS.len() * per_card);
    for _ in 0..per_card {
        for pan in CARDS {
            let body = json!({"merchant_id": merchant.id, "pan": pan, "exp_month": 12, "exp_year": 2031,
                              "reuse": false});
            let r = conn.call("POST", "/v1/tokens", Some(&body)).await?;
            ensure!(r.status == 201, "tokenize answered {}: {}", r.status, r.body);
            let token = r.body.get("token").and_then(Value::as_str).context("tokenize answer without a token")?;
            tokens.push(token.to_owned());
        }
    }
    Ok(tokens)
}

/// A kept-alive HTTP/1.1 connection to the gateway, signing as the dev merchant.
pub struct RpcClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
    service_id: String,
    secret: MerchantSecret,
}

impl RpcClient {
    pub async fn connect(stack: &Stack) -> anyhow::Result<RpcClient> {
        let gateway = &stack.gateway;
        let host = gateway.url.strip_prefix("http://").context("the bench speaks plain HTTP to the gateway")?;
        let tcp = tokio::net::TcpStream::connect(host).await.context("connecting to the gateway")?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(RpcClient {
            sender,
            host: host.to_owned(),
            service_id: gateway.merchant.service_id.clone(),
            secret: MerchantSecret::from_text(&gateway.merchant.secret),
        })
    }

    /// One signed call; the JSON-RPC response object.
    async fn call(&mut self, body: Vec<u8>) -> anyhow::Result<Value> {
        let auth =
            paysys_gateway::auth::sign(&self.service_id, &self.secret, paysys_gateway::payments::now_ms(), &body);
        let request = hyper::Request::post("/rpc")
            .header("host", &self.host)
            .header("content-type", "application/json")
            .header("auth", auth)
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// An unsigned `GET` (the gateway's `/health`); the response status.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<u16> {
        let request = hyper::Request::get(path).header("host", &self.host).body(Full::new(Bytes::new()))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// A `pay` client: `payment.create` (auto capture) back to back, each with a fresh
/// `partner_trans_id`, tokens taken round robin across all clients.
pub struct Payer {
    rpc: RpcClient,
    tokens: Arc<Vec<String>>,
    three_ds: Arc<str>,
    run_id: u32,
    client_no: usize,
    concurrency: usize,
    n: usize,
}

impl Client for Payer {
    async fn request(&mut self) -> Outcome {
        self.n += 1;
        let token = &self.tokens[(self.client_no + self.n * self.concurrency) % self.tokens.len()];
        let body = json!({"jsonrpc": "2.0", "id": self.n, "method": "payment.create", "params": {
            "card_token": token, "amount": 1000, "currency": "UZS",
            // Letters between the numbers: an all-digit run id joined to the counters by
            // dashes can read as a grouped card number, which the gateway refuses.
            "partner_trans_id": format!("bench-r{:08x}-c{}-n{}", self.run_id, self.client_no, self.n),
            "three_ds": &*self.three_ds,
        }});
        let body = serde_json::to_vec(&body).unwrap_or_default();
        match self.rpc.call(body).await {
            Ok(v) if v["result"]["status"] == "captured" => Outcome::Done,
            Ok(v) => Outcome::Failed(v.to_string()),
            Err(e) => Outcome::Broken(e.to_string()),
        }
    }
}

/// `concurrency` payers over `tokens`, each on its own connection to the gateway.
pub async fn payers(
    stack: &Stack,
    tokens: &[String],
    concurrency: usize,
    three_ds: &str,
) -> anyhow::Result<Vec<Payer>> {
    ensure!(!tokens.is_empty(), "no tokens to pay with");
    let (tokens, three_ds): (Arc<Vec<String>>, Arc<str>) = (Arc::new(tokens.to_vec()), Arc::from(three_ds));
    let run_id: u32 = rand::random();
    let mut payers = Vec::with_capacity(concurrency);
    for client_no in 0..concurrency {
        payers.push(Payer {
            rpc: RpcClient::connect(stack).await?,
            tokens: tokens.clone(),
            three_ds: three_ds.clone(),
            run_id,
            client_no,
            concurrency,
            n: 0,
        });
    }
    Ok(payers)
}
