//! Token lifecycle (PCI DSS 3.2.1 retention), over real processes and mTLS, on SQLite and
//! PostgreSQL: tokens that expire and are swept, the gateway's narrow removal
//! (`tokens.remove_for_merchant`) attacked with the credentials each party really holds,
//! and `card.remove` at the gateway deleting the card in the vault once no open payment
//! needs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_test_support::cards::{MASTERCARD, VISA};
use paysys_tests::gateway::{start_vault_and_sandbox, GatewayOptions, TestGateway};
use paysys_tests::{backends, Identity, TestVault, VaultOptions};
use paysys_vault_client::VaultResponse;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Tokenize `pan` as `who` for `merchant_id` with `extra` fields (`ttl_sec`, `reuse`, …).
async fn tokenize_as(vault: &TestVault, who: &Identity, merchant_id: &str, pan: &str, extra: Value) -> VaultResponse {
    let mut body = json!({"merchant_id": merchant_id, "pan": pan, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
    if let (Some(obj), Value::Object(more)) = (body.as_object_mut(), extra) {
        obj.extend(more);
    }
    vault.call(who, "POST", "/v1/tokens", Some(body)).await
}

async fn token_for(vault: &TestVault, who: &Identity, merchant_id: &str, pan: &str, extra: Value) -> String {
    let r = tokenize_as(vault, who, merchant_id, pan, extra).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["token"].as_str().unwrap().to_owned()
}

/// `POST /v1/tokens/{token}/remove` as `who`, naming `merchant_id`.
async fn remove_for(vault: &TestVault, who: &Identity, token: &str, merchant_id: &str) -> VaultResponse {
    vault.call(who, "POST", &format!("/v1/tokens/{token}/remove"), Some(json!({"merchant_id": merchant_id}))).await
}

/// The token's metadata as read by its own merchant (`m_1`'s certificate).
async fn read_as_owner(vault: &TestVault, token: &str) -> VaultResponse {
    vault.call(&vault.pki.merchant, "GET", &format!("/v1/tokens/{token}"), None).await
}

/// The vault relays `token`'s card to the sandbox acquirer for the gateway: 200 with the
/// acquirer's answer, or the vault's error. (The relay's request shape lives here only.)
async fn relay_as_gateway(vault: &TestVault, token: &str, reference: &str) -> VaultResponse {
    let body = json!({
        "token": token, "merchant_id": "m_1", "template": "sandbox_acquirer.authorize",
        "values": {"reference": reference, "amount": 1000, "currency": "UZS", "capture": false},
    });
    vault.call(&vault.pki.gateway, "POST", "/v1/relay", Some(body)).await
}

/// Every audit record of `operation`.
async fn audit_records(vault: &TestVault, operation: &str) -> Vec<Value> {
    let r = vault.call(&vault.pki.alice, "GET", "/v1/audit/records?limit=5000", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["records"].as_array().unwrap().iter().filter(|r| r["operation"] == operation).cloned().collect()
}

async fn counts(vault: &TestVault) -> Value {
    let r = vault.call(&vault.pki.alice, "GET", "/v1/sys/status", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["counts"].clone()
}

async fn assert_chain_verifies(vault: &TestVault) {
    let r = vault.call(&vault.pki.alice, "GET", "/v1/audit/verify", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["ok"], true, "{}", r.body);
}

#[tokio::test]
async fn expired_tokens_read_as_not_found_and_are_swept() {
    for backend in backends() {
        let options = VaultOptions { extra_args: vec!["--token-sweep-secs".into(), "1".into()], ..Default::default() };
        let vault = TestVault::start_with(&backend, options).await;
        let merchant = vault.pki.merchant.clone();

        // ttl_sec is bounded and whole; the refusal names the field.
        for bad in [json!(0), json!(-5), json!(10 * 366 * 24 * 3600 + 1), json!(i64::MAX)] {
            let r = tokenize_as(&vault, &merchant, "m_1", VISA, json!({"ttl_sec": bad})).await;
            assert_eq!((r.status, r.error_code()), (422, Some("ttl_sec_invalid")), "{bad}: {}", r.body);
        }
        for bad in [json!(1.5), json!("60")] {
            let r = tokenize_as(&vault, &merchant, "m_1", VISA, json!({"ttl_sec": bad})).await;
            assert_eq!((r.status, r.error_code()), (400, Some("invalid_request")), "{bad}: {}", r.body);
        }

        let before = Instant::now();
        let short = tokenize_as(&vault, &merchant, "m_1", VISA, json!({"ttl_sec": 2})).await;
        assert_eq!(short.status, 201, "{}", short.body);
        let short_token = short.body["token"].as_str().unwrap().to_owned();
        let expires = time::OffsetDateTime::parse(
            short.body["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let created = time::OffsetDateTime::parse(
            short.body["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(expires - created, time::Duration::seconds(2), "{}", short.body);
        let long = token_for(&vault, &merchant, "m_1", MASTERCARD, json!({"ttl_sec": 3600})).await;
        let forever = tokenize_as(&vault, &merchant, "m_1", MASTERCARD, json!({})).await;
        assert_eq!(forever.body["expires_at"], Value::Null, "{}", forever.body);
        let forever = forever.body["token"].as_str().unwrap().to_owned();
        // While it lives, the token reads and is reused like any other.
        let read = read_as_owner(&vault, &short_token).await;
        assert_eq!((read.status, &read.body["expires_at"]), (200, &short.body["expires_at"]), "{}", read.body);
        let again = tokenize_as(&vault, &merchant, "m_1", VISA, json!({"reuse": true, "ttl_sec": 1})).await;
        assert_eq!((again.status, &again.body["token"]), (200, &json!(short_token)), "{}", again.body);
        // …but not for a caller asking for a longer life than it has left.
        let longer = tokenize_as(&vault, &merchant, "m_1", VISA, json!({"reuse": true, "ttl_sec": 600})).await;
        assert_eq!(longer.status, 201, "{}", longer.body);
        let longer = longer.body["token"].as_str().unwrap().to_owned();
        assert_ne!(longer, short_token);

        // Expired: not found for its merchant, for the gateway's reads and relays, for reuse.
        tokio::time::sleep(Duration::from_millis(2_100).saturating_sub(before.elapsed())).await;
        let r = read_as_owner(&vault, &short_token).await;
        assert_eq!((r.status, r.error_code()), (404, Some("token_not_found")), "{}", r.body);
        let r = vault.call(&vault.pki.gateway, "GET", &format!("/v1/tokens/{short_token}"), None).await;
        assert_eq!(r.error_code(), Some("token_not_found"), "{}", r.body);
        let r = relay_as_gateway(&vault, &short_token, "tx_expired").await;
        assert_eq!(r.error_code(), Some("token_not_found"), "{}", r.body);
        let r = tokenize_as(&vault, &merchant, "m_1", VISA, json!({"reuse": true, "ttl_sec": 1})).await;
        assert_ne!(r.body["token"], json!(short_token), "an expired token is never reused: {}", r.body);

        // Swept within a few sweep intervals: the row and its CVC are gone, audited.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let swept = audit_records(&vault, "tokens.expire").await;
            if swept.iter().any(|r| r["token"] == json!(short_token)) {
                break;
            }
            assert!(Instant::now() < deadline, "{short_token} was not swept; log:\n{}", vault.log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let swept = audit_records(&vault, "tokens.expire").await;
        let record = swept.iter().find(|r| r["token"] == json!(short_token)).unwrap();
        assert_eq!(record["principal"], "local:paysys-vault-sweeper", "{record}");
        assert_eq!(record["merchant_id"], "m_1", "{record}");
        assert!(swept.iter().all(|r| r["token"] != json!(long) && r["token"] != json!(forever)));
        for live in [&long, &forever, &longer] {
            assert_eq!(read_as_owner(&vault, live).await.status, 200, "{live} must live on");
        }
        // Nothing of the expired card is left, CVC included: the store holds the three
        // live tokens only (the last reuse attempt got `longer`, which lives long enough).
        let left = counts(&vault).await;
        assert_eq!((&left["cards"], &left["cvcs"]), (&json!(3), &json!(3)), "{left}");
        assert_chain_verifies(&vault).await;
        vault.finish().await;
    }
}

#[tokio::test]
async fn the_gateway_removes_a_token_only_for_the_merchant_that_owns_it() {
    for backend in backends() {
        let vault = TestVault::start(&backend).await;
        let (gateway, merchant, other) =
            (vault.pki.gateway.clone(), vault.pki.merchant.clone(), vault.pki.other_merchant.clone());
        let mine = token_for(&vault, &merchant, "m_1", VISA, json!({})).await;
        let theirs = token_for(&vault, &other, "m_2", VISA, json!({})).await;

        // The gateway's certificate still has no tokens.delete.
        let r = vault.call(&gateway, "DELETE", &format!("/v1/tokens/{mine}"), None).await;
        assert_eq!((r.status, r.error_code()), (403, Some("forbidden")), "{}", r.body);
        // Naming the wrong merchant looks exactly like a missing token, both ways round.
        for (token, named) in [(&mine, "m_2"), (&theirs, "m_1")] {
            let r = remove_for(&vault, &gateway, token, named).await;
            assert_eq!((r.status, r.error_code()), (404, Some("token_not_found")), "{}", r.body);
        }
        let r = remove_for(&vault, &gateway, "tok_doesnotexistdoesnotexist0", "m_1").await;
        assert_eq!(r.error_code(), Some("token_not_found"), "{}", r.body);
        // A card number where the token goes is refused without being looked up or echoed.
        let r = remove_for(&vault, &gateway, VISA, "m_1").await;
        assert_eq!(r.error_code(), Some("token_not_found"), "{}", r.body);
        assert!(!r.body.to_string().contains(VISA));
        // Bad bodies.
        let r = vault.call(&gateway, "POST", &format!("/v1/tokens/{mine}/remove"), Some(json!({}))).await;
        assert_eq!(r.error_code(), Some("invalid_request"), "{}", r.body);
        let r = vault
            .call(&gateway, "POST", &format!("/v1/tokens/{mine}/remove"), Some(json!({"merchant_id": "m_1", "x": 1})))
            .await;
        assert_eq!(r.error_code(), Some("invalid_request"), "{}", r.body);
        let r = remove_for(&vault, &gateway, &mine, "m 1").await;
        assert_eq!(r.error_code(), Some("merchant_id_invalid"), "{}", r.body);

        // A merchant — even for its own token — an officer, and a stranger have no
        // tokens.remove_for_merchant.
        for who in [&merchant, &vault.pki.alice, &vault.pki.stranger] {
            let r = remove_for(&vault, who, &mine, "m_1").await;
            assert_eq!((r.status, r.error_code()), (403, Some("forbidden")), "{}: {}", who.principal, r.body);
        }
        let r = remove_for(&vault, &other, &theirs, "m_2").await;
        assert_eq!(r.error_code(), Some("forbidden"), "{}", r.body);
        // Nothing was deleted by any of that.
        assert_eq!(read_as_owner(&vault, &mine).await.status, 200);
        let r = vault.call(&other, "GET", &format!("/v1/tokens/{theirs}"), None).await;
        assert_eq!(r.status, 200, "{}", r.body);

        // The right merchant: deleted (crypto-shred), and only that token.
        let r = remove_for(&vault, &gateway, &mine, "m_1").await;
        assert_eq!((r.status, &r.body["deleted"]), (200, &json!(true)), "{}", r.body);
        assert_eq!(read_as_owner(&vault, &mine).await.error_code(), Some("token_not_found"));
        assert_eq!(remove_for(&vault, &gateway, &mine, "m_1").await.error_code(), Some("token_not_found"));
        assert_eq!(vault.call(&other, "GET", &format!("/v1/tokens/{theirs}"), None).await.status, 200);

        // Audited: allowed and refused attempts alike, under the narrow operation's name.
        let records = audit_records(&vault, "tokens.remove_for_merchant").await;
        let ok: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "ok").collect();
        assert_eq!(ok.len(), 1, "{records:?}");
        assert_eq!((&ok[0]["token"], &ok[0]["merchant_id"]), (&json!(mine), &json!("m_1")));
        assert_eq!(ok[0]["principal"], "spiffe://paysys/gateway");
        let denied = records.iter().filter(|r| r["decision"] == "deny" && r["outcome"] == "forbidden").count();
        assert_eq!(denied, 4, "{records:?}");
        assert!(records.iter().any(|r| r["outcome"] == "token_not_found" && r["merchant_id"] == "m_2"));
        assert!(!records.iter().any(|r| r.to_string().contains(VISA)), "no card number in the audit log");
        assert_chain_verifies(&vault).await;
        vault.finish().await;
    }
}

#[tokio::test]
async fn the_gateway_certificate_is_rate_limited_per_merchant() {
    for backend in backends() {
        let extra_args = ["--removal-rate-per-sec", "0", "--removal-burst", "3"].map(String::from).to_vec();
        let vault = TestVault::start_with(&backend, VaultOptions { extra_args, ..Default::default() }).await;
        let gateway = vault.pki.gateway.clone();
        let mut tokens = Vec::new();
        for _ in 0..4 {
            tokens.push(token_for(&vault, &vault.pki.merchant, "m_1", VISA, json!({})).await);
        }
        let theirs = token_for(&vault, &vault.pki.other_merchant, "m_2", VISA, json!({})).await;

        // A guess costs as much as a removal: two removals and one miss use up m_1's burst.
        for token in &tokens[..2] {
            assert_eq!(remove_for(&vault, &gateway, token, "m_1").await.status, 200);
        }
        let r = remove_for(&vault, &gateway, "tok_doesnotexistdoesnotexist0", "m_1").await;
        assert_eq!(r.error_code(), Some("token_not_found"), "{}", r.body);
        for token in &tokens[2..] {
            let r = remove_for(&vault, &gateway, token, "m_1").await;
            assert_eq!((r.status, r.error_code()), (429, Some("rate_limited")), "{}", r.body);
            assert_eq!(read_as_owner(&vault, token).await.status, 200, "a refused removal deletes nothing");
        }
        // Another merchant has its own bucket.
        assert_eq!(remove_for(&vault, &gateway, &theirs, "m_2").await.status, 200);
        let limited = audit_records(&vault, "tokens.remove_for_merchant").await;
        assert_eq!(limited.iter().filter(|r| r["outcome"] == "rate_limited").count(), 2, "{limited:?}");
        vault.finish().await;
    }
}

/// Poll until `token` reads as not found for its merchant.
async fn wait_until_deleted(vault: &TestVault, token: &str, gateway: &TestGateway) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = read_as_owner(vault, token).await;
        if r.error_code() == Some("token_not_found") {
            return;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(Instant::now() < deadline, "{token} still in the vault; gateway log:\n{}", gateway.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn card_remove_deletes_the_card_in_the_vault_once_no_open_payment_needs_it() {
    for backend in backends() {
        let (vault, sandbox) = start_vault_and_sandbox(&backend, 60_000).await;
        let gateway = TestGateway::start(&vault, &sandbox, &backend, GatewayOptions::default()).await;
        let merchant = vault.pki.merchant.clone();
        let pay = |token: &str, key: &str, capture_method: &str| {
            json!({"card_token": token, "amount": 150_000, "currency": "UZS", "partner_trans_id": key,
                   "capture_method": capture_method})
        };

        // No open payment (this one is captured): card.remove deletes in the vault at once.
        let paid = token_for(&vault, &merchant, "m_1", VISA, json!({})).await;
        let p = gateway.ok("payment.create", pay(&paid, "o-paid", "auto")).await;
        assert_eq!(p["status"], "captured", "{p}");
        let r = gateway.ok("card.remove", json!({"card_token": paid})).await;
        assert_eq!(r["card_data_deleted"], true, "{r}");
        let read = read_as_owner(&vault, &paid).await;
        assert_eq!((read.status, read.error_code()), (404, Some("token_not_found")), "{}", read.body);
        // A captured payment is refunded by the acquirer's reference, not the card.
        let refund = json!({"transaction_id": p["transaction_id"], "amount": 1000, "partner_refund_id": "rf-paid"});
        assert_eq!(gateway.ok("payment.refund", refund).await["status"], "succeeded");
        assert_eq!(gateway.err("card.get", json!({"card_token": paid})).await["code"], -31400);

        // Open holds: the card stays (and stays relayable) until the hold is captured…
        let held = token_for(&vault, &merchant, "m_1", VISA, json!({})).await;
        let hold = gateway.ok("payment.create", pay(&held, "o-held", "manual")).await;
        assert_eq!(hold["status"], "authorized", "{hold}");
        let r = gateway.ok("card.remove", json!({"card_token": held})).await;
        assert_eq!((&r["removed"], &r["card_data_deleted"]), (&json!(true), &json!(false)), "{r}");
        // …the gateway refuses new payments with it at once…
        let e = gateway.err("payment.create", pay(&held, "o-held-2", "auto")).await;
        assert_eq!(e["code"], -31400, "{e}");
        // …while several worker rounds (200 ms) pass without deleting it.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(read_as_owner(&vault, &held).await.status, 200);
        let relayed = relay_as_gateway(&vault, &held, "tx_still_relayable").await;
        assert_eq!((relayed.status, &relayed.body["status"]), (200, &json!(200)), "{}", relayed.body);
        let captured = gateway.ok("payment.capture", json!({"transaction_id": hold["transaction_id"]})).await;
        assert_eq!(captured["status"], "captured", "{captured}");
        wait_until_deleted(&vault, &held, &gateway).await;

        // …or voided.
        let voided = token_for(&vault, &merchant, "m_1", MASTERCARD, json!({})).await;
        let hold = gateway.ok("payment.create", pay(&voided, "o-void", "manual")).await;
        assert_eq!(hold["status"], "authorized", "{hold}");
        assert_eq!(gateway.ok("card.remove", json!({"card_token": voided})).await["card_data_deleted"], false);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(read_as_owner(&vault, &voided).await.status, 200);
        assert_eq!(
            gateway.ok("payment.void", json!({"transaction_id": hold["transaction_id"]})).await["status"],
            "voided"
        );
        wait_until_deleted(&vault, &voided, &gateway).await;
        assert_eq!(gateway.ok("card.remove", json!({"card_token": voided})).await["card_data_deleted"], true);

        // Every deletion went through the narrow operation, as the gateway.
        let removals = audit_records(&vault, "tokens.remove_for_merchant").await;
        let ok: Vec<&Value> = removals.iter().filter(|r| r["outcome"] == "ok").collect();
        assert_eq!(ok.len(), 3, "{removals:?}");
        assert!(ok.iter().all(|r| r["principal"] == "spiffe://paysys/gateway" && r["merchant_id"] == "m_1"));
        assert!(audit_records(&vault, "tokens.delete").await.is_empty());
        assert_chain_verifies(&vault).await;

        gateway.finish().await;
        sandbox.stop().await;
        vault.finish().await;
    }
}
