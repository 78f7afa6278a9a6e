//! `paysys-bench pay`: end-to-end `payment.create` (auto capture) — merchant → gateway
//! → vault relay → sandbox and back — with N concurrent merchants' clients, each on its
//! own kept-alive HTTP/1.1 connection to the gateway, every request signed.

use crate::load::Report;
use anyhow::{ensure, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use paysys::stack::Stack;
use paysys_gateway::secrets::MerchantSecret;
use paysys_vault_client::{ClientTls, HttpVersion};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
struct RpcClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
    service_id: String,
    secret: MerchantSecret,
}

impl RpcClient {
    async fn connect(stack: &Stack) -> anyhow::Result<RpcClient> {
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
}

/// Run `concurrency` clients creating auto-capture payments back to back (each with a
/// fresh `partner_trans_id`, tokens taken round robin), measuring only `duration`.
pub async fn run(
    stack: &Stack,
    tokens: &[String],
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    three_ds: &str,
) -> anyhow::Result<Report> {
    ensure!(!tokens.is_empty(), "no tokens to pay with");
    let three_ds: Arc<str> = Arc::from(three_ds);
    let run_id: u32 = rand::random();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tokens: Arc<Vec<String>> = Arc::new(tokens.to_vec());
    let mut clients = Vec::with_capacity(concurrency);
    for client_no in 0..concurrency {
        let mut client = RpcClient::connect(stack).await?;
        let (measuring, stop, tokens, three_ds) = (measuring.clone(), stop.clone(), tokens.clone(), three_ds.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut first_error: Option<String> = None;
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let token = &tokens[(client_no + n * concurrency) % tokens.len()];
                let body = json!({"jsonrpc": "2.0", "id": n, "method": "payment.create", "params": {
                    "card_token": token, "amount": 1000, "currency": "UZS",
                    "partner_trans_id": format!("bench-{run_id:08x}-{client_no}-{n}"),
                    "three_ds": &*three_ds,
                }});
                let body = serde_json::to_vec(&body).unwrap_or_default();
                let started = Instant::now();
                let outcome = client.call(body).await;
                let took = started.elapsed();
                let ok = matches!(&outcome, Ok(v) if v["result"]["status"] == "captured");
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                        if first_error.is_none() {
                            first_error = Some(match &outcome {
                                Ok(v) => v.to_string(),
                                Err(e) => e.to_string(),
                            });
                        }
                    }
                }
                if let Err(e) = &outcome {
                    // A broken connection cannot be reused: reconnecting is not measured.
                    if first_error.is_none() {
                        first_error = Some(e.to_string());
                    }
                    break;
                }
            }
            (latencies, errors, first_error)
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for client in clients {
        let (l, e, first_error) = client.await?;
        latencies_us.extend(l);
        errors += e;
        if let Some(error) = first_error {
            eprintln!("paysys-bench: a client saw: {error}");
        }
    }
    Ok(Report::new(latencies_us, errors, elapsed))
}
