//! Webhooks end to end (issue 15): the real gateway process (with the development flag
//! that allows a loopback receiver) next to the real vault and sandbox; a receiver on
//! 127.0.0.1 that verifies every signature with RustCrypto's HMAC (not the gateway's
//! ring), fails for a while and recovers; kill -9 of the gateway between the payment's
//! change and the delivery; two replicas on PostgreSQL; manual resend — on SQLite and
//! PostgreSQL. No packet leaves loopback: the refused destinations are refused before
//! any connection (the screening itself is table-tested with a resolver the test
//! controls in `gateway/src/webhooks/destination.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use paysys_test_support::cards::{CHALLENGE, DECLINES, VISA};
use paysys_tests::gateway::{start_vault_and_sandbox, GatewayOptions, TestGateway};
use paysys_tests::{backends, Backend, TestSandbox, TestVault};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One webhook as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
    /// What the receiver answered.
    status: u16,
    /// How many `v1,` signatures `webhook-signature` carried.
    signatures: usize,
}

#[derive(Debug, Default)]
struct ReceiverState {
    /// The endpoint's secrets (after a rotation, either may verify).
    secrets: Vec<String>,
    /// Requests still to fail with 503.
    fail_next: usize,
    /// Fail every request with 503 until cleared.
    down: bool,
    received: Vec<Received>,
    /// Requests whose signature did not verify (must stay empty).
    bad_signatures: Vec<String>,
}

/// An HTTP receiver on 127.0.0.1 that verifies Standard Webhooks signatures by hand:
/// base64(HMAC-SHA256(base64decode(secret after "whsec_"), "{id}.{ts}.{body}")).
#[derive(Debug, Clone)]
struct Receiver {
    url: String,
    state: Arc<Mutex<ReceiverState>>,
}

fn verifies(secret: &str, id: &str, ts: &str, body: &[u8], header: &str) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header.split(' ').any(|s| s == expected)
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/paysys", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let header = |name: &str| {
                                req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
                            };
                            let (id, ts, sig) =
                                (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let mut s = state.lock().unwrap();
                            let status = if !s.secrets.iter().any(|k| verifies(k, &id, &ts, &body, &sig)) {
                                s.bad_signatures.push(id.clone());
                                400
                            } else if s.down {
                                503
                            } else if s.fail_next > 0 {
                                s.fail_next -= 1;
                                503
                            } else {
                                200
                            };
                            let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let signatures = sig.split(' ').filter(|s| s.starts_with("v1,")).count();
                            s.received.push(Received { id, body: parsed, status, signatures });
                            let answer = if status == 200 { "ok" } else { "receiver down for maintenance" };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(answer.as_bytes())))
                                    .unwrap(),
                            )
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Receiver { url, state }
    }

    fn set_secrets(&self, secrets: &[&str]) {
        self.state.lock().unwrap().secrets = secrets.iter().map(|s| (*s).to_owned()).collect();
    }

    fn accepted(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.iter().filter(|r| r.status == 200).cloned().collect()
    }

    /// Accepted deliveries per webhook-id.
    fn accepted_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.accepted() {
            *counts.entry(r.id).or_insert(0) += 1;
        }
        counts
    }

    fn bad_signatures(&self) -> Vec<String> {
        self.state.lock().unwrap().bad_signatures.clone()
    }

    /// Wait until the accepted events' types include every one of `types` (with
    /// multiplicity), then a little longer so that a duplicate would show.
    async fn wait_for_types(&self, types: &[&str]) {
        for _ in 0..300 {
            let seen: Vec<String> =
                self.accepted().iter().map(|r| r.body["type"].as_str().unwrap_or_default().to_owned()).collect();
            let mut missing: Vec<&str> = types.to_vec();
            for t in &seen {
                if let Some(i) = missing.iter().position(|m| m == t) {
                    missing.remove(i);
                }
            }
            if missing.is_empty() {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("webhooks never arrived: wanted {types:?}, accepted {:?}", self.accepted());
    }
}

/// Fast retries for the tests; the loopback receiver needs the development flag.
fn webhook_options(schedule: &str) -> GatewayOptions {
    // A short 3DS Method budget: the challenge payment does not wait 10 s for it.
    let extra_args = [
        "--dev",
        "--webhooks-allow-loopback-http",
        "--webhooks-retry-schedule",
        schedule,
        "--three-ds-method-budget-ms",
        "300",
    ]
    .map(String::from)
    .to_vec();
    GatewayOptions { worker_interval_ms: 100, extra_args, ..GatewayOptions::default() }
}

async fn token(vault: &TestVault, pan: &str) -> String {
    let body = json!({"merchant_id": "m_1", "pan": pan, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
    let r = vault.call(&vault.pki.merchant, "POST", "/v1/tokens", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["token"].as_str().unwrap().to_owned()
}

fn pay(token: &str, amount: i64, key: &str, extra: Value) -> Value {
    let mut p = json!({"card_token": token, "amount": amount, "currency": "UZS", "partner_trans_id": key});
    if let (Some(obj), Value::Object(more)) = (p.as_object_mut(), extra) {
        obj.extend(more);
    }
    p
}

async fn create_endpoint(gateway: &TestGateway, receiver: &Receiver) -> (String, String) {
    let e = gateway.ok("webhook.endpoint.create", json!({"url": receiver.url})).await;
    let secret = e["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{e}");
    receiver.set_secrets(&[&secret]);
    (e["endpoint_id"].as_str().unwrap().to_owned(), secret)
}

async fn start(backend: &Backend, schedule: &str) -> (TestVault, TestSandbox, TestGateway) {
    let (vault, sandbox) = start_vault_and_sandbox(backend, 60_000).await;
    let gateway = TestGateway::start(&vault, &sandbox, backend, webhook_options(schedule)).await;
    (vault, sandbox, gateway)
}

async fn finish(vault: TestVault, sandbox: TestSandbox, gateway: TestGateway) {
    gateway.finish().await;
    sandbox.stop().await;
    vault.finish().await;
}

#[tokio::test]
async fn signed_webhooks_survive_a_failing_receiver_and_arrive_once_each() {
    for backend in backends() {
        let (vault, sandbox, gateway) = start(&backend, "200ms,400ms,600ms,800ms,1s,1s,1s,1s").await;
        let receiver = Receiver::start().await;

        // Refused before any connection: a private address (the dev flag relaxes
        // loopback only), the metadata address, plain http to a public name.
        for (url, reason) in [
            ("https://10.0.0.1/hook", "private"),
            ("https://169.254.169.254/latest/meta-data", "metadata"),
            ("http://[::ffff:10.0.0.1]/", "ipv4_embedded"),
            ("https://2130706433/", "ok-loopback"),
        ] {
            let v = gateway.call("webhook.endpoint.create", json!({"url": url})).await;
            if reason == "ok-loopback" {
                // Loopback is what the dev flag allows; delete it again.
                let id = v["result"]["endpoint_id"].as_str().expect("dev loopback allowed").to_owned();
                gateway.ok("webhook.endpoint.delete", json!({"endpoint_id": id})).await;
                continue;
            }
            assert_eq!(v["error"]["code"], -32602, "{url}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().contains(reason), "{url}: {v}");
        }
        assert_eq!(gateway.ok("webhook.endpoint.list", json!({})).await["endpoints"], json!([]));

        let (endpoint_id, _secret) = create_endpoint(&gateway, &receiver).await;
        let listed = gateway.ok("webhook.endpoint.list", json!({})).await;
        assert_eq!(listed["endpoints"][0]["endpoint_id"], endpoint_id.as_str());
        assert!(listed.get("secret").is_none() && listed["endpoints"][0].get("secret").is_none());

        // The receiver fails its first five requests, then recovers.
        receiver.state.lock().unwrap().fail_next = 5;
        let visa = token(&vault, VISA).await;
        let auto = gateway.ok("payment.create", pay(&visa, 150_000, "auto-1", json!({}))).await;
        let hold =
            gateway.ok("payment.create", pay(&visa, 100_000, "hold-1", json!({"capture_method": "manual"}))).await;
        let hold_tx = hold["transaction_id"].as_str().unwrap().to_owned();
        gateway.ok("payment.capture", json!({"transaction_id": hold_tx, "amount": 60_000})).await;
        let refund = json!({"transaction_id": hold_tx, "amount": 20_000, "partner_refund_id": "r1"});
        gateway.ok("payment.refund", refund).await;
        let void = gateway.ok("payment.create", pay(&visa, 5_000, "void-1", json!({"capture_method": "manual"}))).await;
        gateway.ok("payment.void", json!({"transaction_id": void["transaction_id"]})).await;
        let declined = token(&vault, DECLINES[0].0).await;
        gateway.call("payment.create", pay(&declined, 1_000, "decline-1", json!({}))).await;
        // A 3-D Secure challenge waiting for the cardholder.
        let challenge = token(&vault, CHALLENGE).await;
        let extra = json!({"currency": "USD", "three_ds": "force", "return_url": "https://shop.example/back"});
        let waiting = gateway.ok("payment.create", pay(&challenge, 2_500, "challenge-1", extra)).await;
        assert_eq!(waiting["status"], "requires_3ds", "{waiting}");

        let expected = [
            "payment.captured",
            "payment.authorized",
            "payment.captured",
            "payment.refunded",
            "payment.authorized",
            "payment.voided",
            "payment.failed",
            "payment.requires_3ds",
        ];
        receiver.wait_for_types(&expected).await;
        let counts = receiver.accepted_counts();
        assert!(counts.values().all(|n| *n == 1), "an event was accepted twice: {counts:?}");
        assert_eq!(counts.len(), expected.len(), "{:?}", receiver.accepted());
        assert!(receiver.bad_signatures().is_empty(), "{:?}", receiver.bad_signatures());
        let failed_attempts = receiver.state.lock().unwrap().received.iter().filter(|r| r.status == 503).count();
        assert_eq!(failed_attempts, 5);

        // `data` is the payment as payment.check shows it at that moment.
        let accepted = receiver.accepted();
        let auto_event = accepted.iter().find(|r| r.body["data"]["transaction_id"] == auto["transaction_id"]).unwrap();
        assert_eq!(auto_event.body["type"], "payment.captured");
        assert_eq!(auto_event.body["data"], auto);
        let challenged = accepted.iter().find(|r| r.body["type"] == "payment.requires_3ds").unwrap();
        assert_eq!(challenged.body["data"]["next_action"], waiting["next_action"]);
        let refunded = accepted.iter().find(|r| r.body["type"] == "payment.refunded").unwrap();
        assert_eq!(refunded.body["data"]["refunded_amount"], 20_000);
        assert_eq!(refunded.body["data"]["refund"]["partner_refund_id"], "r1");

        // Visible: every delivery with its attempts, the failed ones with their status
        // and the start of the receiver's answer.
        let list = gateway.ok("webhook.list", json!({"count": 50})).await;
        let items = list["webhooks"].as_array().unwrap();
        assert_eq!(items.len(), expected.len());
        assert!(items.iter().all(|w| w["status"] == "delivered"), "{list}");
        let listed_ids: BTreeSet<&str> = items.iter().map(|w| w["webhook_id"].as_str().unwrap()).collect();
        assert_eq!(listed_ids, counts.keys().map(String::as_str).collect());
        let retried: Vec<&Value> = items.iter().filter(|w| w["attempt_count"].as_i64().unwrap() > 1).collect();
        assert!(!retried.is_empty());
        let first = &retried[0]["attempts"][0];
        assert_eq!(first["status_code"], 503, "{}", retried[0]);
        assert_eq!(first["response_excerpt"], "receiver down for maintenance");
        let only = gateway.ok("webhook.list", json!({"event_type": "payment.voided"})).await;
        assert_eq!(only["webhooks"].as_array().unwrap().len(), 1);
        let e = gateway.call("webhook.list", json!({"status": "lost"})).await;
        assert_eq!(e["error"]["code"], -32602);

        // Resend: the same webhook-id, once more.
        let voided_id = only["webhooks"][0]["webhook_id"].as_str().unwrap().to_owned();
        let r = gateway.ok("webhook.resend", json!({"webhook_id": voided_id})).await;
        assert_eq!(r["resent"], 1);
        for _ in 0..100 {
            if receiver.accepted_counts().get(&voided_id) == Some(&2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(receiver.accepted_counts().get(&voided_id), Some(&2));
        let e = gateway.call("webhook.resend", json!({"webhook_id": "msg_nothing"})).await;
        assert_eq!(e["error"]["code"], -31003);

        // A rotation: both signatures, each verifying under its own secret.
        let rotated = gateway.ok("webhook.endpoint.rotate_secret", json!({"endpoint_id": endpoint_id})).await;
        let new_secret = rotated["secret"].as_str().unwrap().to_owned();
        receiver.set_secrets(&[&new_secret]);
        let hold2 =
            gateway.ok("payment.create", pay(&visa, 1_000, "hold-2", json!({"capture_method": "manual"}))).await;
        receiver.wait_for_types(&[&expected[..], &["payment.authorized"]].concat()).await;
        assert!(receiver.bad_signatures().is_empty(), "the new secret verifies alone");
        let after =
            receiver.accepted().into_iter().find(|r| r.body["data"]["transaction_id"] == hold2["transaction_id"]);
        assert_eq!(after.unwrap().signatures, 2, "the old and the new secret both sign during the overlap");
        assert!(receiver
            .accepted()
            .iter()
            .filter(|r| r.body["data"]["transaction_id"] != hold2["transaction_id"])
            .all(|r| r.signatures == 1));

        // Disabled by the partner: nothing more is sent.
        gateway.ok("webhook.endpoint.update", json!({"endpoint_id": endpoint_id, "enabled": false})).await;
        let before = receiver.state.lock().unwrap().received.len();
        gateway.ok("payment.void", json!({"transaction_id": hold2["transaction_id"]})).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(receiver.state.lock().unwrap().received.len(), before);

        // No card number in the deliveries, the database or the log.
        let db = gateway.database_bytes().await;
        let log = gateway.log_text();
        let bodies: String = receiver.accepted().iter().map(|r| r.body.to_string()).collect();
        for pan in [VISA, DECLINES[0].0] {
            assert!(!bodies.contains(pan));
            assert!(!db.windows(pan.len()).any(|w| w == pan.as_bytes()), "{pan} in the database");
            assert!(!log.contains(pan));
        }
        // The secret is sealed in the database.
        assert!(!db.windows(new_secret.len()).any(|w| w == new_secret.as_bytes()));
        finish(vault, sandbox, gateway).await;
    }
}

#[tokio::test]
async fn a_webhook_survives_kill_9_between_the_payment_and_its_delivery() {
    for backend in backends() {
        let (vault, sandbox, mut gateway) = start(&backend, "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms").await;
        let receiver = Receiver::start().await;
        create_endpoint(&gateway, &receiver).await;
        receiver.state.lock().unwrap().down = true;
        let visa = token(&vault, VISA).await;
        let paid = gateway.ok("payment.create", pay(&visa, 2_000, "kill-1", json!({}))).await;
        // The change is committed with its outbox row; delivery has not succeeded yet.
        let pending = gateway.ok("webhook.list", json!({"status": "pending"})).await;
        assert_eq!(pending["webhooks"].as_array().unwrap().len(), 1, "{pending}");
        let id = pending["webhooks"][0]["webhook_id"].as_str().unwrap().to_owned();

        gateway.kill_and_restart(&vault, &sandbox).await;
        receiver.state.lock().unwrap().down = false;
        receiver.wait_for_types(&["payment.captured"]).await;
        assert_eq!(receiver.accepted_counts(), BTreeMap::from([(id.clone(), 1)]));
        let event = &receiver.accepted()[0];
        assert_eq!(event.body["data"]["transaction_id"], paid["transaction_id"]);
        let delivered = gateway.ok("webhook.list", json!({})).await;
        assert_eq!(delivered["webhooks"][0]["status"], "delivered", "{delivered}");
        finish(vault, sandbox, gateway).await;
    }
}

#[tokio::test]
async fn two_replicas_on_postgresql_deliver_each_event_once() {
    let Some(backend) = backends().into_iter().find(|b| matches!(b, Backend::Postgres(_))) else {
        eprintln!("PAYSYS_TEST_POSTGRES_URL not set: skipped");
        return;
    };
    let (vault, sandbox, gateway) = start(&backend, "200ms,400ms,800ms").await;
    let replica = gateway.start_replica(&vault, &sandbox).await;
    let receiver = Receiver::start().await;
    create_endpoint(&gateway, &receiver).await;
    let visa = token(&vault, VISA).await;
    const PAYMENTS: usize = 40;
    let mut tasks = Vec::new();
    for i in 0..PAYMENTS {
        let client = if i % 2 == 0 { gateway.rpc.clone() } else { replica.rpc.clone() };
        let params = pay(&visa, 1_000 + i as i64, &format!("replica-{i}"), json!({}));
        tasks.push(tokio::spawn(async move { client.ok("payment.create", params).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    receiver.wait_for_types(&["payment.captured"; PAYMENTS]).await;
    let counts = receiver.accepted_counts();
    assert_eq!(counts.len(), PAYMENTS);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let total = receiver.state.lock().unwrap().received.len();
    assert_eq!(total, PAYMENTS, "no event was sent twice by the two replicas");
    replica.finish().await;
    finish(vault, sandbox, gateway).await;
}
