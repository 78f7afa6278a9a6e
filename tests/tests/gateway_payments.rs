//! End to end over real processes and mTLS: merchant → gateway → vault relay → sandbox.
//! Payments by token with auto capture, holds, partial capture, refunds, voids, hold
//! expiry, every decline card, the slow card resolved by inquiry without a second
//! authorization, and 50-way concurrency — on SQLite and PostgreSQL. Afterwards no card
//! number may be in the gateway's database, log or responses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_test_support::cards::{DECLINES, LIMITED, SLOW, VISA};
use paysys_tests::gateway::{start_vault_and_sandbox, GatewayOptions, TestGateway};
use paysys_tests::{backends, Backend, TestSandbox, TestVault};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

struct Stack {
    vault: TestVault,
    sandbox: TestSandbox,
    gateway: TestGateway,
    /// Every response body seen, for the no-PAN scan.
    seen: std::sync::Mutex<String>,
}

impl Stack {
    /// Sandbox, vault relaying to it (`--relay-ca`, `--destination-url`), gateway.
    async fn start(backend: &Backend, acquirer_timeout_ms: u64, slow_delay_ms: u64) -> Stack {
        let (vault, sandbox) = start_vault_and_sandbox(backend, slow_delay_ms).await;
        let options = GatewayOptions { acquirer_timeout_ms, worker_interval_ms: 200, ..GatewayOptions::default() };
        let gateway = TestGateway::start(&vault, &sandbox, backend, options).await;
        Stack { vault, sandbox, gateway, seen: std::sync::Mutex::new(String::new()) }
    }

    async fn token(&self, pan: &str) -> String {
        let r = self
            .vault
            .call(
                &self.vault.pki.merchant,
                "POST",
                "/v1/tokens",
                Some(json!({"merchant_id": "m_1", "pan": pan, "exp_month": 12, "exp_year": 2031, "cvc": "123"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    async fn call(&self, method: &str, params: Value) -> Value {
        let v = self.gateway.call(method, params).await;
        self.seen.lock().unwrap().push_str(&v.to_string());
        v
    }

    async fn ok(&self, method: &str, params: Value) -> Value {
        let v = self.call(method, params).await;
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    async fn err(&self, method: &str, params: Value) -> Value {
        let v = self.call(method, params).await;
        assert!(v.get("error").is_some(), "{method}: expected an error, got {v}");
        v["error"].clone()
    }

    async fn ledger_kinds(&self, reference: &str) -> Vec<String> {
        let v = self.sandbox.get(&self.vault.pki.ca_cert, &format!("/acquirer/v1/ledger?reference={reference}")).await;
        v["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
    }

    async fn acquirer_view(&self, reference: &str) -> Value {
        self.sandbox.get(&self.vault.pki.ca_cert, &format!("/acquirer/v1/inquiry?reference={reference}")).await
    }

    /// Poll `payment.check` until `status` (the workers run every 200 ms).
    async fn wait_for_status(&self, transaction_id: &str, status: &str) -> Value {
        for _ in 0..100 {
            let p = self.ok("payment.check", json!({"transaction_id": transaction_id})).await;
            if p["status"] == status {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{transaction_id} never reached {status}");
    }

    /// No card number in the gateway's database, log, or any response.
    async fn assert_no_card_numbers(&self, pans: &[&str]) {
        let db = self.gateway.database_bytes().await;
        let log = self.gateway.log_text();
        let seen = self.seen.lock().unwrap().clone();
        for pan in pans {
            assert!(!db.windows(pan.len()).any(|w| w == pan.as_bytes()), "{pan} in the gateway database");
            assert!(!log.contains(pan), "{pan} in the gateway log");
            assert!(!seen.contains(pan), "{pan} in a gateway response");
        }
    }

    async fn finish(self) {
        let Stack { vault, sandbox, gateway, .. } = self;
        gateway.finish().await;
        sandbox.stop().await;
        vault.finish().await;
    }
}

fn pay(token: &str, amount: i64, key: &str, extra: Value) -> Value {
    let mut p = json!({"card_token": token, "amount": amount, "currency": "UZS", "partner_trans_id": key});
    if let (Some(obj), Value::Object(more)) = (p.as_object_mut(), extra) {
        obj.extend(more);
    }
    p
}

#[tokio::test]
async fn payments_by_token_through_the_vault_relay() {
    for backend in backends() {
        let s = Stack::start(&backend, 5_000, 60_000).await;
        let visa = s.token(VISA).await;

        // Auto capture.
        let r = s.ok("payment.create", pay(&visa, 150_000, "auto-1", json!({}))).await;
        assert_eq!(r["status"], "captured", "{r}");
        assert_eq!(r["card"]["masked_number"], "424242******4242");
        let tx = r["transaction_id"].as_str().unwrap();
        assert_eq!(s.ledger_kinds(tx).await, ["authorization", "capture"]);

        // The relay masks every Luhn-valid 12-digit run, and one RRN in ten passes Luhn:
        // the gateway still reports each RRN whole (read back from the acquirer).
        for i in 0..30 {
            let r = s.ok("payment.create", pay(&visa, 1_000, &format!("rrn-{i}"), json!({}))).await;
            let rrn = r["rrn"].as_str().unwrap_or_default();
            assert!(rrn.len() == 12 && rrn.bytes().all(|b| b.is_ascii_digit()), "{r}");
            let acquirer = s.acquirer_view(r["transaction_id"].as_str().unwrap()).await;
            assert_eq!(acquirer["rrn"], rrn);
        }

        // Hold → partial capture → refund.
        let r = s.ok("payment.create", pay(&visa, 100_000, "hold-1", json!({"capture_method": "manual"}))).await;
        assert_eq!(r["status"], "authorized");
        let tx = r["transaction_id"].as_str().unwrap().to_owned();
        let r = s.ok("payment.capture", json!({"transaction_id": tx, "amount": 60_000})).await;
        assert_eq!((r["status"].as_str(), r["captured_amount"].as_i64()), (Some("captured"), Some(60_000)));
        let rf =
            s.ok("payment.refund", json!({"transaction_id": tx, "amount": 20_000, "partner_refund_id": "r1"})).await;
        assert_eq!(rf["status"], "succeeded");
        let e =
            s.err("payment.refund", json!({"transaction_id": tx, "amount": 40_001, "partner_refund_id": "r2"})).await;
        assert_eq!(e["code"], -31032);
        assert_eq!(s.ledger_kinds(&tx).await, ["authorization", "capture", "release", "refund"]);
        assert_eq!(s.acquirer_view(&tx).await["refunded_amount"], 20_000);

        // Hold → void.
        let r = s.ok("payment.create", pay(&visa, 5_000, "void-1", json!({"capture_method": "manual"}))).await;
        let tx = r["transaction_id"].as_str().unwrap().to_owned();
        assert_eq!(s.ok("payment.void", json!({"transaction_id": tx})).await["status"], "voided");
        assert_eq!(s.ledger_kinds(&tx).await, ["authorization", "void"]);

        // Hold expiry with each after_expired.
        let expiring = |key: &str, after: &str| {
            pay(&visa, 7_000, key, json!({"capture_method": "manual", "hold_ttl_sec": 1, "after_expired": after}))
        };
        let v = s.ok("payment.create", expiring("exp-void", "void")).await;
        let c = s.ok("payment.create", expiring("exp-capture", "capture")).await;
        let v = s.wait_for_status(v["transaction_id"].as_str().unwrap(), "expired").await;
        let c = s.wait_for_status(c["transaction_id"].as_str().unwrap(), "captured").await;
        assert_eq!(c["captured_amount"], 7_000);
        assert_eq!(s.acquirer_view(v["transaction_id"].as_str().unwrap()).await["status"], "voided");
        assert_eq!(s.acquirer_view(c["transaction_id"].as_str().unwrap()).await["status"], "captured");

        // Every decline card, and insufficient funds from the balance.
        for (pan, code) in DECLINES {
            let token = s.token(pan).await;
            let e = s.err("payment.create", pay(&token, 1_000, &format!("decline-{code}"), json!({}))).await;
            assert_eq!((e["code"].as_i64(), e["data"]["decline_code"].as_str()), (Some(-31040), Some(code)), "{pan}");
        }
        let limited = s.token(LIMITED).await;
        s.ok("payment.create", pay(&limited, 600, "limited-1", json!({}))).await;
        let e = s.err("payment.create", pay(&limited, 600, "limited-2", json!({}))).await;
        assert_eq!(e["code"], -31303);

        s.assert_no_card_numbers(&[VISA, LIMITED, DECLINES[0].0]).await;
        s.finish().await;
    }
}

#[tokio::test]
async fn the_slow_card_is_resolved_by_inquiry_without_a_second_authorization() {
    for backend in backends() {
        let s = Stack::start(&backend, 1_000, 4_000).await;
        let slow = s.token(SLOW).await;
        let r = s.ok("payment.create", pay(&slow, 10_000, "slow-1", json!({}))).await;
        assert_eq!(r["status"], "processing", "{r}");
        let tx = r["transaction_id"].as_str().unwrap().to_owned();
        let again = s.ok("payment.create", pay(&slow, 10_000, "slow-1", json!({}))).await;
        assert_eq!(again["transaction_id"], tx.as_str());
        s.wait_for_status(&tx, "captured").await;
        // Past the sandbox's delay: still exactly one authorization.
        tokio::time::sleep(Duration::from_millis(4_500)).await;
        let auths = s.ledger_kinds(&tx).await.into_iter().filter(|k| k == "authorization").count();
        assert_eq!(auths, 1);
        s.assert_no_card_numbers(&[SLOW]).await;
        s.finish().await;
    }
}

#[tokio::test]
async fn fifty_concurrent_captures_and_fifty_concurrent_creates() {
    for backend in backends() {
        let s = Stack::start(&backend, 5_000, 60_000).await;
        let s = Arc::new(s);
        let visa = s.token(VISA).await;
        let r = s.ok("payment.create", pay(&visa, 100_000, "conc-hold", json!({"capture_method": "manual"}))).await;
        let tx = r["transaction_id"].as_str().unwrap().to_owned();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (s, tx) = (s.clone(), tx.clone());
                tokio::spawn(async move {
                    // Each its own request id: identical signed bytes would be one request.
                    let params = json!({"transaction_id": tx, "amount": 3_000, "final": false});
                    let v = s.gateway.call_with_id("payment.capture", params, i).await;
                    s.seen.lock().unwrap().push_str(&v.to_string());
                    v
                })
            })
            .collect();
        let mut captured = 0;
        for t in tasks {
            let v = t.await.unwrap();
            if v.get("result").is_some() {
                captured += 3_000;
            } else {
                assert!([-31031, -31008, -31011].contains(&v["error"]["code"].as_i64().unwrap()), "{v}");
            }
        }
        assert!(captured <= 100_000);
        let view = s.acquirer_view(&tx).await;
        assert_eq!(view["captured_amount"], captured);
        assert!(view["captured_amount"].as_i64().unwrap() <= 100_000);

        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (s, visa) = (s.clone(), visa.clone());
                tokio::spawn(async move { s.call("payment.create", pay(&visa, 2_500, "conc-create", json!({}))).await })
            })
            .collect();
        for t in tasks {
            let v = t.await.unwrap();
            assert!(v.get("result").is_some() || v["error"]["code"] == -31011, "{v}");
        }
        let p = s.ok("payment.check", json!({"partner_trans_id": "conc-create"})).await;
        let kinds = s.ledger_kinds(p["transaction_id"].as_str().unwrap()).await;
        assert_eq!(kinds, ["authorization", "capture"], "exactly one authorization at the sandbox");
        let s = Arc::try_unwrap(s).ok().unwrap();
        s.assert_no_card_numbers(&[VISA]).await;
        s.finish().await;
    }
}

fn rpc_body(method: &str, params: Value, id: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).unwrap()
}

#[tokio::test]
async fn replays_and_retries_never_move_money_twice() {
    for backend in backends() {
        let s = Stack::start(&backend, 5_000, 60_000).await;
        let visa = s.token(VISA).await;
        let r = s.ok("payment.create", pay(&visa, 100_000, "replay-hold", json!({"capture_method": "manual"}))).await;
        let tx = r["transaction_id"].as_str().unwrap().to_owned();

        // A partial capture; the exact same signed bytes again (an attacker who copied
        // them, or the client retrying after a lost answer) get the first answer.
        let body = rpc_body("payment.capture", json!({"transaction_id": tx, "amount": 30_000, "final": false}), 5);
        let header = s.gateway.sign(&body);
        let (_, first) = s.gateway.post(&body, Some(header.clone())).await;
        assert_eq!(first["result"]["captured_amount"], 30_000, "{first}");
        for _ in 0..3 {
            assert_eq!(s.gateway.post(&body, Some(header.clone())).await.1, first, "the same JSON");
        }
        // A second gateway replica on the same database knows the request too.
        let replica = s.gateway.start_replica(&s.vault, &s.sandbox).await;
        assert_eq!(replica.post(&body, Some(header.clone())).await.1, first, "the replica answers as the first");
        assert_eq!(s.acquirer_view(&tx).await["captured_amount"], 30_000, "captured once");
        assert_eq!(s.ok("payment.check", json!({"transaction_id": tx})).await["captured_amount"], 30_000);
        assert_eq!(s.ledger_kinds(&tx).await, ["authorization", "capture"]);

        // partner_capture_id: the same key answers as before (on either replica); the
        // key with another amount is a conflict.
        let keyed = |amount: i64| json!({"transaction_id": tx, "amount": amount, "final": false, "partner_capture_id": "ship-1"});
        let first = s.call("payment.capture", keyed(20_000)).await;
        assert_eq!(first["result"]["captured_amount"], 50_000, "{first}");
        assert_eq!(replica.call("payment.capture", keyed(20_000)).await, first);
        assert_eq!(s.err("payment.capture", keyed(25_000)).await["code"], -31010);
        assert_eq!(replica.call("payment.capture", keyed(25_000)).await["error"]["code"], -31010);
        assert_eq!(s.acquirer_view(&tx).await["captured_amount"], 50_000);

        // A void replayed, to either replica, gets the first answer.
        let r = s.ok("payment.create", pay(&visa, 5_000, "replay-void", json!({"capture_method": "manual"}))).await;
        let void_tx = r["transaction_id"].as_str().unwrap().to_owned();
        let body = rpc_body("payment.void", json!({"transaction_id": void_tx}), 6);
        let header = s.gateway.sign(&body);
        let (_, first) = replica.post(&body, Some(header.clone())).await;
        assert_eq!(first["result"]["status"], "voided", "{first}");
        assert_eq!(s.gateway.post(&body, Some(header)).await.1, first);
        assert_eq!(s.ledger_kinds(&void_tx).await, ["authorization", "void"]);

        replica.finish().await;
        s.assert_no_card_numbers(&[VISA]).await;
        s.finish().await;
    }
}
