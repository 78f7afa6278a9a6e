//! Checkout-bound tokens (the payment widget, issue 13), end to end over real mTLS
//! against the real `paysys-vault` binary, on SQLite and (when configured) PostgreSQL.
//!
//! The card intake (`spiffe://paysys/intake`, dev policy: `tokens.create` only, with
//! `checkout_tokens_only`) tokenizes with the nonce and expiry of the gateway's one-time
//! grant; the vault spends the nonce in the same commit as the card. Here the test plays
//! the intake with a certificate of that principal from the test CA.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys::pki::IssueRequest;
use paysys_tests::{backends, Backend, Identity, TestVault};
use paysys_vault_client::VaultResponse;
use serde_json::{json, Value};
use std::sync::Arc;

const INTAKE: &str = "spiffe://paysys/intake";
const PAN: &str = "4242424242424242";
const CVC: &str = "853";
const CHECKOUT: &str = "chk_4f7Qa9ZbT2mXc8LpR1sVwYe3";

/// A client certificate for the intake principal from the vault's test CA.
fn intake_identity(vault: &TestVault) -> Identity {
    let cert = vault.dir.join("intake.pem");
    let key = vault.dir.join("intake.key");
    vault.pki.ca().issue(&IssueRequest::client(INTAKE)).unwrap().write(&cert, &key).unwrap();
    Identity { principal: INTAKE.to_owned(), cert, key }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A fresh grant nonce: 16 random bytes as 22 characters of unpadded base64url.
fn nonce() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut text: String = (0..21).map(|_| ALPHABET[rand::random::<usize>() % 64] as char).collect();
    // The last character of 16 bytes carries two bits.
    text.push(['A', 'Q', 'g', 'w'][rand::random::<usize>() % 4]);
    text
}

/// The body the intake sends for a grant `(checkout_id, nonce, expires_at)`.
fn bound_request(merchant_id: &str, nonce: &str, expires_at: i64) -> Value {
    json!({
        "merchant_id": merchant_id, "pan": PAN, "exp_month": 12, "exp_year": 2031, "cvc": CVC,
        "cardholder_name": "Ada Lovelace", "format": "opaque", "ttl_sec": 3600,
        "checkout": {"checkout_id": CHECKOUT, "grant_nonce": nonce, "grant_expires_at": expires_at},
    })
}

#[track_caller]
fn assert_refused(r: &VaultResponse, status: u16, code: &str) {
    assert_eq!((r.status, r.error_code()), (status, Some(code)), "{}", r.body);
    let raw = String::from_utf8_lossy(&r.raw);
    assert!(!raw.contains(PAN) && !raw.contains("Ada Lovelace"), "a refusal echoed card data: {raw}");
}

/// Rows in `table` of the vault's database.
async fn rows(vault: &TestVault, table: &str) -> i64 {
    use sqlx::Connection;
    let sql = format!("SELECT count(*) FROM {table}");
    if vault.db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&vault.db.url).await.unwrap();
        sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(&vault.db.url).await.unwrap();
        sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
    }
}

async fn the_intake_mints_one_bound_token_per_grant(backend: &Backend) {
    let vault = TestVault::start(backend).await;
    let intake = intake_identity(&vault);
    let (cards_before, grants_before) = (rows(&vault, "cards").await, rows(&vault, "spent_grants").await);
    assert_eq!(grants_before, 0);

    // A bound token for any merchant (the grant names it), its checkout in the answer…
    let n = nonce();
    let created = vault.call(&intake, "POST", "/v1/tokens", Some(bound_request("m_7", &n, now_secs() + 600))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["checkout_id"], CHECKOUT);
    assert_eq!(created.body["merchant_id"], "m_7");
    assert_eq!(created.body["last4"], "4242");
    let token = created.body["token"].as_str().unwrap().to_owned();
    assert!(!String::from_utf8_lossy(&created.raw).contains(PAN));

    // …and in the metadata the gateway reads before paying the checkout.
    let read = vault.call(&vault.pki.gateway, "GET", &format!("/v1/tokens/{token}"), None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["checkout_id"], CHECKOUT);
    assert_eq!(read.body["merchant_id"], "m_7");
    assert!(read.body["expires_at"].is_string(), "ttl_sec was kept: {}", read.body);

    // A token made without a grant has no checkout_id at all.
    let plain = vault.tokenize(PAN).await;
    let plain = vault.call(&vault.pki.merchant, "GET", &format!("/v1/tokens/{plain}"), None).await;
    assert_eq!(plain.status, 200);
    assert!(plain.body.get("checkout_id").is_none(), "{}", plain.body);

    // The same grant again: refused, and no second card.
    let replay = vault.call(&intake, "POST", "/v1/tokens", Some(bound_request("m_7", &n, now_secs() + 600))).await;
    assert_refused(&replay, 409, "grant_used");
    assert_eq!(rows(&vault, "cards").await, cards_before + 2, "the bound card and the merchant's plain one");
    assert_eq!(rows(&vault, "spent_grants").await, 1);

    // Every refusal below stores nothing.
    let cards = rows(&vault, "cards").await;
    let mut unbound = bound_request("m_7", &nonce(), now_secs() + 600);
    unbound.as_object_mut().unwrap().remove("checkout");
    assert_refused(&vault.call(&intake, "POST", "/v1/tokens", Some(unbound)).await, 403, "checkout_binding_required");

    let mut merchant_bound = bound_request("m_1", &nonce(), now_secs() + 600);
    let forbidden = vault.call(&vault.pki.merchant, "POST", "/v1/tokens", Some(merchant_bound.clone())).await;
    assert_refused(&forbidden, 403, "checkout_binding_forbidden");
    merchant_bound["merchant_id"] = json!("m_7");
    let r = vault.call(&vault.pki.gateway, "POST", "/v1/tokens", Some(merchant_bound)).await;
    assert_refused(&r, 403, "forbidden");

    let expired = vault.call(&intake, "POST", "/v1/tokens", Some(bound_request("m_7", &nonce(), now_secs() - 1))).await;
    assert_refused(&expired, 401, "grant_expired");

    let mut reuse = bound_request("m_7", &nonce(), now_secs() + 600);
    reuse["reuse"] = json!(true);
    assert_refused(&vault.call(&intake, "POST", "/v1/tokens", Some(reuse)).await, 400, "reuse_not_allowed");

    let malformed = [
        ("checkout_id", json!("chk/../x")),
        ("checkout_id", json!("c".repeat(65))),
        ("checkout_id", json!("")),
        ("grant_nonce", json!("short")),
        ("grant_nonce", json!(format!("{}=", &nonce()[..21]))),
        ("grant_expires_at", json!(now_secs() + 2 * 86_400)),
    ];
    for (field, value) in malformed {
        let mut body = bound_request("m_7", &nonce(), now_secs() + 600);
        body["checkout"][field] = value.clone();
        let r = vault.call(&intake, "POST", "/v1/tokens", Some(body)).await;
        assert_refused(&r, 422, "checkout_binding_invalid");
    }
    let mut extra = bound_request("m_7", &nonce(), now_secs() + 600);
    extra["checkout"]["attempt_id"] = json!("att_1");
    assert_refused(&vault.call(&intake, "POST", "/v1/tokens", Some(extra)).await, 400, "invalid_request");
    // A bad card with a good grant: the card's own error, and the grant stays unspent.
    let fresh = nonce();
    let mut bad_card = bound_request("m_7", &fresh, now_secs() + 600);
    bad_card["pan"] = json!("4242424242424241");
    assert_refused(&vault.call(&intake, "POST", "/v1/tokens", Some(bad_card)).await, 422, "pan_luhn_failed");
    assert_eq!(rows(&vault, "cards").await, cards);
    assert_eq!(rows(&vault, "spent_grants").await, 1);
    let retry = vault.call(&intake, "POST", "/v1/tokens", Some(bound_request("m_7", &fresh, now_secs() + 600))).await;
    assert_eq!(retry.status, 201, "{}", retry.body);

    // The intake creates tokens and does nothing else.
    for (method, path, body) in [
        ("GET", format!("/v1/tokens/{token}"), None),
        ("DELETE", format!("/v1/tokens/{token}"), None),
        ("POST", format!("/v1/tokens/{token}/remove"), Some(json!({"merchant_id": "m_7"}))),
        (
            "POST",
            "/v1/relay".to_owned(),
            Some(json!({"token": token, "merchant_id": "m_7", "template": "sandbox_acquirer.authorize",
                        "values": {"reference": "r1", "amount": 100, "currency": "UZS", "capture": false}})),
        ),
        ("GET", "/v1/audit/records".to_owned(), None),
        ("GET", "/v1/keys".to_owned(), None),
    ] {
        let r = vault.call(&intake, method, &path, body).await;
        assert_eq!((r.status, r.error_code()), (403, Some("forbidden")), "{method} {path}: {}", r.body);
    }
    let still = vault.call(&vault.pki.gateway, "GET", &format!("/v1/tokens/{token}"), None).await;
    assert_eq!(still.status, 200, "the intake's delete did nothing");

    // Audited as today: the intake's create with its token, and its refusals.
    let records = vault.call(&vault.pki.alice, "GET", "/v1/audit/records?limit=5000", None).await;
    let records = records.body["records"].as_array().unwrap().clone();
    let of_intake = |outcome: &str| {
        records.iter().filter(|r| r["principal"] == INTAKE && r["outcome"] == outcome).cloned().collect::<Vec<_>>()
    };
    let created = of_intake("ok");
    assert!(
        created.iter().any(|r| r["operation"] == "tokens.create"
            && r["token"] == token.as_str()
            && r["merchant_id"] == "m_7"
            && r["decision"] == "allow"),
        "{created:?}"
    );
    for (outcome, decision) in [
        ("grant_used", "allow"),
        ("grant_expired", "allow"),
        ("reuse_not_allowed", "allow"),
        ("checkout_binding_required", "deny"),
    ] {
        let found = of_intake(outcome);
        assert_eq!(found.len(), 1, "{outcome}: {found:?}");
        assert_eq!(found[0]["decision"], decision, "{outcome}");
        assert_eq!(found[0]["operation"], "tokens.create", "{outcome}");
    }
    assert!(records.iter().any(|r| r["principal"] == vault.pki.merchant.principal.as_str()
        && r["outcome"] == "checkout_binding_forbidden"
        && r["decision"] == "deny"));

    // Nowhere in the vault's database either, but as ciphertext.
    let dump = paysys_test_support::dump::database_dump(&vault.db.url).await;
    assert!(!dump.windows(PAN.len()).any(|w| w == PAN.as_bytes()), "the card number is in the database");
    assert!(!dump.windows(12).any(|w| w == b"Ada Lovelace"), "the cardholder name is in the database");

    let log = vault.log_text();
    assert!(!log.contains(PAN), "the card number reached the vault's log");
    vault.finish().await;
}

/// The same grant sent eight times at once: exactly one token.
async fn concurrent_twins_of_one_grant_mint_one_token(backend: &Backend) {
    const TWINS: usize = 8;
    let vault = TestVault::start(backend).await;
    let intake = intake_identity(&vault);
    let cards = rows(&vault, "cards").await;
    let body = bound_request("m_7", &nonce(), now_secs() + 600);
    let start = Arc::new(tokio::sync::Barrier::new(TWINS));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TWINS {
        let mut connection = vault.connect(&intake).await;
        let (body, start) = (body.clone(), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            connection.call("POST", "/v1/tokens", Some(&body)).await.unwrap()
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let r = done.unwrap();
        outcomes.push((r.status, r.error_code().map(str::to_owned)));
    }
    let created = outcomes.iter().filter(|(status, _)| *status == 201).count();
    let used = outcomes.iter().filter(|o| **o == (409, Some("grant_used".to_owned()))).count();
    assert_eq!((created, used), (1, TWINS - 1), "{outcomes:?}");
    assert_eq!(rows(&vault, "cards").await, cards + 1);
    assert_eq!(rows(&vault, "spent_grants").await, 1);
    vault.finish().await;
}

#[tokio::test]
async fn the_intake_mints_one_bound_token_per_grant_on_every_backend() {
    for backend in backends() {
        the_intake_mints_one_bound_token_per_grant(&backend).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_twins_of_one_grant_mint_one_token_on_every_backend() {
    for backend in backends() {
        concurrent_twins_of_one_grant_mint_one_token(&backend).await;
    }
}
