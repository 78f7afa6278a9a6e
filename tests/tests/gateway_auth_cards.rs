//! End to end over real processes: the gateway authenticates merchants by the Auth
//! header, and reads token metadata from the real vault over mTLS as
//! `spiffe://paysys/gateway` — never a card number. SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_test_support::cards::{MASTERCARD, VISA};
use paysys_test_support::rpc::{auth_header, now_ms};
use paysys_tests::backends;
use paysys_tests::gateway::{start_vault_and_sandbox, GatewayOptions, TestGateway};
use serde_json::{json, Value};

#[tokio::test]
async fn auth_header_missing_wrong_stale_or_body_changed_is_refused() {
    let backend = &backends()[0];
    let (vault, sandbox) = start_vault_and_sandbox(backend, 60_000).await;
    let gateway = TestGateway::start(&vault, &sandbox, backend, GatewayOptions::default()).await;
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"payment.list","params":{}}"#;
    let refused = |v: &Value| v["error"]["code"] == -32504 && v["id"].is_null();

    assert!(refused(&gateway.post(body, None).await.1), "missing header");
    let wrong = auth_header(&gateway.service_id, "not-the-secret", now_ms(), body);
    assert!(refused(&gateway.post(body, Some(wrong)).await.1), "wrong secret");
    let stale = gateway.sign_at(body, now_ms() - 301_000);
    assert!(refused(&gateway.post(body, Some(stale)).await.1), "stale timestamp");
    let signed = gateway.sign(body);
    let changed = br#"{"jsonrpc":"2.0","id":1,"method":"payment.list","params":{"count":2}}"#;
    assert!(refused(&gateway.post(changed, Some(signed.clone())).await.1), "body changed after signing");
    let (status, ok) = gateway.post(body, Some(signed)).await;
    assert_eq!(status, 200);
    assert!(ok["result"]["payments"].is_array(), "{ok}");
    assert!(!gateway.log_text().contains(&gateway.secret), "the secret is never logged");

    gateway.finish().await;
    sandbox.stop().await;
    vault.finish().await;
}

#[tokio::test]
async fn card_get_and_remove_read_the_vault_over_mtls_without_a_card_number() {
    for backend in backends() {
        let (vault, sandbox) = start_vault_and_sandbox(&backend, 60_000).await;
        let gateway = TestGateway::start(&vault, &sandbox, &backend, GatewayOptions::default()).await;
        let token = vault.tokenize(VISA).await;
        let card = gateway.ok("card.get", json!({"card_token": token})).await;
        assert_eq!(card["last4"], "4242");
        assert_eq!(card["bin"], "424242");
        assert_eq!(card["exp_year"], 2031);

        // Another merchant's token is unknown to this one.
        let other = vault
            .call(
                &vault.pki.other_merchant,
                "POST",
                "/v1/tokens",
                Some(json!({"merchant_id": "m_2", "pan": MASTERCARD, "exp_month": 1, "exp_year": 2032})),
            )
            .await;
        assert_eq!(other.status, 201, "{}", other.body);
        let other_token = other.body["token"].as_str().unwrap();
        assert_eq!(gateway.err("card.get", json!({"card_token": other_token})).await["code"], -31400);
        assert_eq!(
            gateway.err("card.get", json!({"card_token": "tok_doesnotexistdoesnotexist"})).await["code"],
            -31400
        );
        assert_eq!(gateway.err("card.get", json!({"card_token": VISA})).await["code"], -31300);

        assert_eq!(gateway.ok("card.remove", json!({"card_token": token})).await["removed"], true);
        assert_eq!(gateway.err("card.get", json!({"card_token": token})).await["code"], -31400);
        let pay = json!({"card_token": token, "amount": 1000, "currency": "UZS", "partner_trans_id": "after-remove"});
        assert_eq!(gateway.err("payment.create", pay).await["code"], -31400);

        let db = gateway.database_bytes().await;
        let log = gateway.log_text();
        for pan in [VISA, MASTERCARD] {
            assert!(!log.contains(pan), "a card number in the gateway's log");
            assert!(!db.windows(pan.len()).any(|w| w == pan.as_bytes()), "a card number in the gateway's database");
        }
        gateway.finish().await;
        sandbox.stop().await;
        vault.finish().await;
    }
}
