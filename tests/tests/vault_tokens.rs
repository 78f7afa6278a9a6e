//! Tokenization end to end over real mTLS against the real `paysys-vault` binary, on
//! SQLite and (when configured) PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_tests::{backends, Backend, TestVault, VaultOptions};
use paysys_vault_client::{ClientTls, HttpVersion};
use serde_json::json;

async fn tokenize_read_delete(backend: &Backend) {
    let vault = TestVault::start(backend).await;
    let m = &vault.pki.merchant;
    let created = vault
        .call(
            m,
            "POST",
            "/v1/tokens",
            Some(json!({"merchant_id": "m_1", "pan": "4242 4242-4242 4242", "exp_month": 12, "exp_year": 2031,
                        "cardholder_name": "Ada Lovelace", "cvc": "123", "format": "opaque", "reuse": false})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let b = &created.body;
    let token = b["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tok_") && token.len() >= 26, "{token}");
    assert_eq!(b["brand"], "visa");
    assert_eq!(b["bin"], "424242");
    assert_eq!(b["last4"], "4242");
    assert_eq!(b["exp_month"], 12);
    assert_eq!(b["exp_year"], 2031);
    assert_eq!(b["reused"], false);
    assert_eq!(b["fingerprint"].as_str().unwrap().len(), 64);
    assert!(b["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(!created.raw.windows(16).any(|w| w == b"4242424242424242"));

    let read = vault.call(m, "GET", &format!("/v1/tokens/{token}"), None).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["token"], token.as_str());
    assert_eq!(read.body["last4"], "4242");
    assert!(read.body.get("pan").is_none());

    // reuse: true finds the same card for the same merchant; reuse: false makes a new token.
    let again = vault
        .call(m, "POST", "/v1/tokens", Some(json!({"merchant_id": "m_1", "pan": "4242424242424242", "exp_month": 12, "exp_year": 2031, "reuse": true})))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["token"], token.as_str());
    assert_eq!(again.body["reused"], true);
    let fresh = vault
        .call(m, "POST", "/v1/tokens", Some(json!({"merchant_id": "m_1", "pan": "4242424242424242", "exp_month": 12, "exp_year": 2031, "reuse": false})))
        .await;
    assert_eq!(fresh.status, 201);
    assert_ne!(fresh.body["token"], token.as_str());
    assert_eq!(fresh.body["fingerprint"], b["fingerprint"]);

    // The BIN+last4 format keeps the shape of the card and fails Luhn.
    let fp = vault
        .call(m, "POST", "/v1/tokens", Some(json!({"merchant_id": "m_1", "pan": "378282246310005", "exp_month": 1, "exp_year": 2030, "cvc": "1234", "format": "bin_last4", "reuse": false})))
        .await;
    assert_eq!(fp.status, 201, "{}", fp.body);
    let fp_token = fp.body["token"].as_str().unwrap();
    assert_eq!(fp_token.len(), 15);
    assert!(fp_token.starts_with("378282") && fp_token.ends_with("0005"));
    assert_ne!(fp_token, "378282246310005");
    assert_eq!(fp.body["brand"], "amex");

    let deleted = vault.call(m, "DELETE", &format!("/v1/tokens/{token}"), None).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body["deleted"], true);
    for method in ["GET", "DELETE"] {
        let gone = vault.call(m, method, &format!("/v1/tokens/{token}"), None).await;
        assert_eq!(gone.status, 404);
        assert_eq!(gone.error_code(), Some("token_not_found"));
    }
    vault.finish().await;
}

#[tokio::test]
async fn tokenize_read_delete_on_every_backend() {
    for backend in backends() {
        tokenize_read_delete(&backend).await;
    }
}

#[tokio::test]
async fn every_validation_failure_has_its_code() {
    let vault = TestVault::start(&Backend::Sqlite).await;
    let m = &vault.pki.merchant;
    let base = json!({"merchant_id": "m_1", "pan": "4242424242424242", "exp_month": 12, "exp_year": 2031});
    let with = |field: &str, value: serde_json::Value| {
        let mut b = base.clone();
        b[field] = value;
        b
    };
    let cases: Vec<(serde_json::Value, u16, &str)> = vec![
        (with("pan", json!("4242 4242 4242 424x")), 422, "pan_invalid_characters"),
        (with("pan", json!("42424242424")), 422, "pan_invalid_length"),
        (with("pan", json!("42424242424242424242")), 422, "pan_invalid_length"),
        (with("pan", json!("4242424242424241")), 422, "pan_luhn_failed"),
        (with("pan", json!("1234567812345670")), 422, "pan_unsupported_brand"),
        (with("exp_month", json!(13)), 422, "exp_month_invalid"),
        (with("exp_month", json!(0)), 422, "exp_month_invalid"),
        (with("exp_year", json!(31)), 422, "exp_year_invalid"),
        (with("exp_year", json!(2020)), 422, "card_expired"),
        (with("cvc", json!("12")), 422, "cvc_invalid"),
        (with("cvc", json!("1234")), 422, "cvc_invalid"),
        (with("cardholder_name", json!("")), 422, "cardholder_name_invalid"),
        (with("cardholder_name", json!("4242424242424242")), 422, "cardholder_name_invalid"),
        (with("merchant_id", json!("m 1")), 422, "merchant_id_invalid"),
        (with("exp_month", json!("12")), 400, "invalid_request"),
        (with("format", json!("pretty")), 400, "invalid_request"),
        (with("surprise", json!(1)), 400, "invalid_request"),
        (json!({"merchant_id": "m_1", "exp_month": 12, "exp_year": 2031}), 400, "invalid_request"),
        (json!([1, 2, 3]), 400, "invalid_request"),
    ];
    let mut conn = vault.connect(m).await;
    for (body, status, code) in cases {
        let r = conn.call("POST", "/v1/tokens", Some(&body)).await.unwrap();
        assert_eq!((r.status, r.error_code()), (status, Some(code)), "body {body}: {}", r.body);
        assert!(!r.raw.windows(16).any(|w| w == b"4242424242424242"), "card number echoed: {}", r.body);
    }
    // Malformed JSON and an oversized body.
    let r = conn.call_raw("POST", "/v1/tokens", Some(b"{\"merchant_id\": ".to_vec())).await.unwrap();
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_json")));
    let big = format!("{{\"merchant_id\":\"m_1\",\"pan\":\"4242424242424242\",\"pad\":\"{}\"}}", "x".repeat(64 * 1024));
    let r = vault.connect(m).await.call_raw("POST", "/v1/tokens", Some(big.into_bytes())).await.unwrap();
    assert_eq!((r.status, r.error_code()), (413, Some("body_too_large")));
    // Unknown tokens and unknown routes.
    let r = conn.call("GET", "/v1/tokens/tok_doesnotexist0000000000000", None).await.unwrap();
    assert_eq!((r.status, r.error_code()), (404, Some("token_not_found")));
    let r = conn.call("GET", "/v1/tokens/4242424242424242", None).await.unwrap();
    assert_eq!((r.status, r.error_code()), (404, Some("token_not_found")));
    let r = conn.call("GET", "/v1/nothing", None).await.unwrap();
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")));
    let r = conn.call("PUT", "/v1/tokens", None).await.unwrap();
    assert_eq!((r.status, r.error_code()), (405, Some("method_not_allowed")));
    // Nothing was stored by any of these.
    let status = vault.call(&vault.pki.alice, "GET", "/v1/sys/status", None).await;
    assert_eq!(status.body["counts"]["cards"], 0);
    vault.finish().await;
}

#[tokio::test]
async fn http2_is_served_too() {
    let vault = TestVault::start(&Backend::Sqlite).await;
    let tls = ClientTls::new(
        &vault.pki.ca_cert,
        Some((&vault.pki.merchant.cert, &vault.pki.merchant.key)),
        HttpVersion::Http2,
    )
    .unwrap();
    let mut conn = tls.connect(&vault.url).await.unwrap();
    for _ in 0..3 {
        let r = conn
            .call(
                "POST",
                "/v1/tokens",
                Some(&json!({"merchant_id": "m_1", "pan": "5555555555554444", "exp_month": 1, "exp_year": 2030})),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["brand"], "mastercard");
    }
    vault.finish().await;
}

#[tokio::test]
async fn a_sealed_vault_answers_503_until_unsealed() {
    for backend in backends() {
        // Started sealed with `--dev` (the hex-key unseal below is a dev-mode feature; without
        // `--dev` it answers `dev_mode_required`, see vault_key_lifecycle.rs).
        let options = VaultOptions { dev_unseal: false, extra_args: vec!["--dev".into()], ..Default::default() };
        let vault = TestVault::start_with(&backend, options).await;
        let health = vault.call(&vault.pki.merchant, "GET", "/v1/sys/health", None).await;
        assert_eq!(health.body["sealed"], true);
        let r = vault
            .call(
                &vault.pki.merchant,
                "POST",
                "/v1/tokens",
                Some(json!({"merchant_id": "m_1", "pan": "4242424242424242", "exp_month": 12, "exp_year": 2031})),
            )
            .await;
        assert_eq!((r.status, r.error_code()), (503, Some("vault_sealed")));
        let r = vault.call(&vault.pki.merchant, "GET", "/v1/tokens/tok_aaaaaaaaaaaaaaaaaaaaaaaa", None).await;
        assert_eq!((r.status, r.error_code()), (503, Some("vault_sealed")));

        // Merchants cannot unseal; a wrong key is refused; the right key unseals.
        let key = std::fs::read_to_string(&vault.root_key_file).unwrap();
        let r = vault.call(&vault.pki.merchant, "POST", "/v1/sys/unseal", Some(json!({"key": key.trim()}))).await;
        assert_eq!((r.status, r.error_code()), (403, Some("forbidden")));
        let r = vault.call(&vault.pki.alice, "POST", "/v1/sys/unseal", Some(json!({"key": "00".repeat(32)}))).await;
        assert_eq!((r.status, r.error_code()), (400, Some("unseal_key_invalid")));
        let r = vault.call(&vault.pki.alice, "POST", "/v1/sys/unseal", Some(json!({"key": key.trim()}))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let token = vault.tokenize("4242424242424242").await;

        // Sealing again drops the keys: data operations answer vault_sealed.
        let r = vault.call(&vault.pki.alice, "POST", "/v1/sys/seal", None).await;
        assert_eq!(r.status, 200);
        let r = vault.call(&vault.pki.merchant, "GET", &format!("/v1/tokens/{token}"), None).await;
        assert_eq!((r.status, r.error_code()), (503, Some("vault_sealed")));
        assert!(!vault.log_text().contains(key.trim()), "root key in the log");
        vault.finish().await;
    }
}
