//! The card intake end to end: the real `paysys-intake` in front of a real vault (SQLite
//! and PostgreSQL), over real TLS and mTLS, with grants the test signs as the gateway
//! would.
//!
//! * A good card under a valid grant becomes a token bound to the grant's checkout; the
//!   same grant again is `grant_used`, and no second card is stored.
//! * Every refusal before the vault (origin, grant, framing origin, body, card number,
//!   address limit) has its stable code and stores nothing; so do the vault's own
//!   refusals (expired card, bad CVC, an intake whose certificate may not bind tokens).
//! * The card frame is served with its CSP (`frame-ancestors` = the `origin` parameter),
//!   never cached.
//! * Afterwards no test card number is in the intake's log or answers, nor in the
//!   vault's database, and the intake's working directory is still empty.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_test_support::cards;
use paysys_test_support::dump::database_dump;
use paysys_tests::intake::{IntakeOptions, IntakeResponse, TestIntake, PAGE_ORIGIN};
use paysys_tests::{backends, TestVault};
use paysys_widget::grant::GrantSigner;
use serde_json::json;

const PAN: &str = cards::VISA;
const PAN_SPACED: &str = "4242 4242 4242 4242";
/// A Visa number that fails Luhn (the last digit changed).
const BAD_LUHN: &str = "4242424242424241";
const CVC: &str = "737";

/// Whether `text` holds a test card number: its digits, or the hex of their ASCII.
fn holds_a_card_number(text: &str) -> bool {
    let hex: String = PAN.bytes().map(|b| format!("{b:02x}")).collect();
    let bad_hex: String = BAD_LUHN.bytes().map(|b| format!("{b:02x}")).collect();
    let digits_only: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    [PAN, BAD_LUHN].iter().any(|pan| text.contains(pan) || digits_only.contains(pan))
        || text.contains(&hex)
        || text.contains(&bad_hex)
}

/// `answer` echoes nothing of the card: no number, no CVC.
fn assert_no_card_in(answer: &IntakeResponse) {
    assert!(!holds_a_card_number(&answer.text), "{}", answer.text);
    assert!(!answer.text.contains(CVC), "{}", answer.text);
}

fn assert_refused(answer: &IntakeResponse, status: u16, code: &str) {
    assert_eq!((answer.status, answer.code().as_str()), (status, code), "{}", answer.text);
    assert!(answer.json()["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", answer.text);
    assert_no_card_in(answer);
}

/// The card frame's body for `pan` with every field the frame sends.
fn card(grant: &str, pan: &str) -> serde_json::Value {
    let mut body = TestIntake::card_body(grant, pan);
    body["cvc"] = json!(CVC);
    body
}

/// What must hold after every test: nothing of the card in the intake's log, nothing
/// written to its working directory, nothing of the card in the vault's database.
async fn assert_nothing_kept(intake: &TestIntake, vault: &TestVault) {
    let log = intake.log_text();
    assert!(!log.is_empty(), "the intake logs at trace level in these tests");
    assert!(!holds_a_card_number(&log), "the intake's log holds a card number:\n{log}");
    assert_eq!(intake.files_written(), Vec::<std::path::PathBuf>::new(), "the intake wrote to disk");
    let db = String::from_utf8_lossy(&database_dump(&vault.db.url).await).into_owned();
    assert!(!holds_a_card_number(&db), "the vault's database holds a card number in plain text");
}

#[tokio::test]
async fn every_refusal_before_the_vault_has_its_code_and_stores_nothing() {
    for backend in backends() {
        let mut vault = TestVault::start(&backend).await;
        let intake = TestIntake::start(&vault, IntakeOptions::default()).await;
        let good = intake.grant(&intake.claims("chk_refusals"));

        // Only the frame the intake served may post: the Origin header is its own.
        let body = card(&good, PAN).to_string().into_bytes();
        for origin in [None, Some("https://evil.example"), Some(PAGE_ORIGIN), Some("null")] {
            let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
            let answer = intake.request("POST", "/v1/cards", &headers, Some(body.clone())).await;
            assert_refused(&answer, 403, "origin_forbidden");
        }

        // Grants: missing, malformed, unknown key, tampered, expired.
        let mut no_grant = card("", PAN);
        no_grant.as_object_mut().unwrap().remove("grant");
        assert_refused(&intake.post_card(&no_grant).await, 401, "grant_missing");
        assert_refused(&intake.post_card(&card("", PAN)).await, 401, "grant_missing");
        assert_refused(&intake.post_card(&card("v1.g1.e30", PAN)).await, 401, "grant_malformed");
        let stranger = GrantSigner::from_pkcs8("g9", &GrantSigner::generate_pkcs8().unwrap()).unwrap();
        let unknown = stranger.sign(&intake.claims("chk_refusals"));
        assert_refused(&intake.post_card(&card(&unknown, PAN)).await, 401, "grant_unknown_key");
        // The same key id with other key material: a forged grant.
        let impostor = GrantSigner::from_pkcs8("g1", &GrantSigner::generate_pkcs8().unwrap()).unwrap();
        let forged = impostor.sign(&intake.claims("chk_refusals"));
        assert_refused(&intake.post_card(&card(&forged, PAN)).await, 401, "grant_signature_invalid");
        // Another merchant's claims under the real signature.
        let mut other = intake.claims("chk_refusals");
        other.merchant_id = "m_2".into();
        let (head, signature) = good.rsplit_once('.').unwrap();
        let (prefix, _) = head.rsplit_once('.').unwrap();
        let other_payload = intake.grant(&other);
        let other_payload = other_payload.split('.').nth(2).unwrap();
        let tampered = format!("{prefix}.{other_payload}.{signature}");
        assert_refused(&intake.post_card(&card(&tampered, PAN)).await, 401, "grant_signature_invalid");
        let mut expired = intake.claims("chk_refusals");
        expired.issued_at -= 700;
        expired.expires_at = expired.issued_at + 600;
        assert_refused(&intake.post_card(&card(&intake.grant(&expired), PAN)).await, 401, "grant_expired");

        // A grant used from a page of another origin, or without saying which.
        let mut elsewhere = card(&good, PAN);
        elsewhere["ancestor_origin"] = json!("https://evil.example");
        assert_refused(&intake.post_card(&elsewhere).await, 403, "grant_origin_mismatch");
        elsewhere.as_object_mut().unwrap().remove("ancestor_origin");
        assert_refused(&intake.post_card(&elsewhere).await, 403, "grant_origin_mismatch");

        // Bodies: oversize, not JSON, the wrong shape (a card number where a month goes).
        let mut oversize = card(&good, PAN);
        oversize["holder"] = json!("x".repeat(9 * 1024));
        assert_refused(&intake.post_card(&oversize).await, 413, "body_too_large");
        let origin = intake.url.clone();
        let truncated = format!("{{\"grant\":\"{good}\",\"number\":\"{PAN}");
        let answer = intake.request("POST", "/v1/cards", &[("origin", &origin)], Some(truncated.into_bytes())).await;
        assert_refused(&answer, 400, "invalid_json");
        let mut misplaced = card(&good, PAN);
        misplaced["exp_month"] = json!(PAN);
        assert_refused(&intake.post_card(&misplaced).await, 400, "invalid_request");
        let mut numeric = card(&good, PAN);
        numeric["number"] = json!(4_242_424_242_424_242u64);
        assert_refused(&intake.post_card(&numeric).await, 400, "invalid_request");
        let mut extra = card(&good, PAN);
        extra["pan"] = json!(PAN);
        assert_refused(&intake.post_card(&extra).await, 400, "invalid_request");

        // A mistyped number is refused by the intake with the vault's code.
        assert_refused(&intake.post_card(&card(&good, BAD_LUHN)).await, 422, "pan_luhn_failed");
        assert_refused(&intake.post_card(&card(&good, "4242 4242")).await, 422, "pan_invalid_length");

        // With the vault gone, a good card is refused as unavailable, not lost silently.
        vault.kill().await;
        let answer = intake.post_card(&card(&good, PAN_SPACED)).await;
        assert_refused(&answer, 503, "vault_unavailable");

        assert_nothing_kept(&intake, &vault).await;
        let vault_log = vault.log_text();
        assert!(!holds_a_card_number(&vault_log), "{vault_log}");
        intake.stop().await;
        vault.finish().await;
    }
}

#[tokio::test]
async fn a_card_under_a_valid_grant_becomes_a_token_bound_to_the_checkout_once() {
    for backend in backends() {
        let vault = TestVault::start(&backend).await;
        let intake = TestIntake::start(&vault, IntakeOptions::default()).await;
        let claims = intake.claims("chk_good");
        let grant = intake.grant(&claims);

        let answer = intake.post_card(&card(&grant, PAN_SPACED)).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        let accepted = answer.json();
        let token = accepted["token"].as_str().unwrap().to_owned();
        assert_eq!(accepted["brand"], "visa");
        assert_eq!(accepted["last4"], "4242");
        assert_eq!((accepted["exp_month"].as_i64(), accepted["exp_year"].as_i64()), (Some(12), Some(2031)));
        assert_eq!(accepted["checkout_id"], "chk_good");
        assert_no_card_in(&answer);

        // The vault bound the token to the checkout; a card not saved lives an hour.
        let meta = vault.call(&vault.pki.gateway, "GET", &format!("/v1/tokens/{token}"), None).await;
        assert_eq!(meta.status, 200, "{}", meta.body);
        assert_eq!(meta.body["merchant_id"], "m_1");
        assert_eq!(meta.body["checkout_id"], "chk_good");
        assert!(meta.body["expires_at"].is_string(), "{}", meta.body);

        // The same grant again, even with another card: spent.
        let replay = intake.post_card(&card(&grant, cards::MASTERCARD)).await;
        assert_refused(&replay, 409, "grant_used");
        let replay = intake.post_card(&card(&grant, PAN)).await;
        assert_refused(&replay, 409, "grant_used");

        // A grant that asks to save the card: a token without an expiry.
        let mut saved = intake.claims("chk_saved");
        saved.save_card = true;
        let answer = intake.post_card(&card(&intake.grant(&saved), PAN)).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        let saved_token = answer.json()["token"].as_str().unwrap().to_owned();
        let meta = vault.call(&vault.pki.gateway, "GET", &format!("/v1/tokens/{saved_token}"), None).await;
        assert_eq!((meta.body["checkout_id"].as_str(), meta.body["expires_at"].is_null()), (Some("chk_saved"), true));

        // The vault's own refusals a buyer can act on pass through with their code.
        let mut expired_card = card(&intake.grant(&intake.claims("chk_expired_card")), PAN);
        expired_card["exp_year"] = json!(2020);
        assert_refused(&intake.post_card(&expired_card).await, 422, "card_expired");
        let mut bad_cvc = card(&intake.grant(&intake.claims("chk_bad_cvc")), PAN);
        bad_cvc["cvc"] = json!("12");
        assert_refused(&intake.post_card(&bad_cvc).await, 422, "cvc_invalid");

        // An intake configured with a certificate the vault does not let mint checkout
        // tokens (the gateway's) stores nothing; the buyer sees a generic refusal.
        let misconfigured = TestIntake::start_as(&vault, &vault.pki.gateway, IntakeOptions::default()).await;
        let answer =
            misconfigured.post_card(&card(&misconfigured.grant(&misconfigured.claims("chk_wrong")), PAN)).await;
        assert_refused(&answer, 502, "vault_refused");
        assert!(!answer.text.contains("forbidden"), "the vault's code stays in the log: {}", answer.text);
        assert!(misconfigured.log_text().contains("the vault refused a card"));
        assert_nothing_kept(&misconfigured, &vault).await;
        misconfigured.stop().await;

        assert_nothing_kept(&intake, &vault).await;
        intake.stop().await;
        vault.finish().await;
    }
}

#[tokio::test]
async fn a_burst_of_cards_from_one_address_is_rate_limited() {
    let backend = backends().remove(0);
    let vault = TestVault::start(&backend).await;
    let options = IntakeOptions { address_limit_burst: 3, address_limit_per_minute: 0.01, ..IntakeOptions::default() };
    let intake = TestIntake::start(&vault, options).await;
    // Card testing: valid grants, numbers that go nowhere. Each counts.
    for _ in 0..3 {
        let grant = intake.grant(&intake.claims("chk_burst"));
        assert_refused(&intake.post_card(&card(&grant, BAD_LUHN)).await, 422, "pan_luhn_failed");
    }
    let grant = intake.grant(&intake.claims("chk_burst"));
    assert_refused(&intake.post_card(&card(&grant, PAN)).await, 429, "rate_limited");
    assert_refused(&intake.post_card(&card(&grant, BAD_LUHN)).await, 429, "rate_limited");
    // Refusals before the grant check do not spend the address's allowance, and are
    // still answered for what they are.
    assert_refused(&intake.post_card(&card("", PAN)).await, 401, "grant_missing");
    assert_nothing_kept(&intake, &vault).await;
    intake.stop().await;
    vault.finish().await;
}

#[tokio::test]
async fn the_card_frame_may_be_framed_only_by_the_origin_it_was_asked_for() {
    let backend = backends().remove(0);
    let vault = TestVault::start(&backend).await;
    let intake = TestIntake::start(&vault, IntakeOptions::default()).await;

    let answer = intake.get("/v1/frame?origin=http%3A%2F%2F127.0.0.1%3A8080&lang=uz").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let csp = answer.header("content-security-policy");
    assert!(csp.contains("frame-ancestors http://127.0.0.1:8080;"), "{csp}");
    assert!(csp.contains("connect-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(answer.header("cache-control"), "no-store");
    assert_eq!(answer.header("referrer-policy"), "no-referrer");
    assert_eq!(answer.header("x-content-type-options"), "nosniff");
    assert!(answer.header("content-type").starts_with("text/html"));
    assert!(answer.text.contains("lang=\"uz\""), "{}", answer.text);
    // Its script and style, from the inventory, as the page pins them.
    for name in ["frame.js", "frame.css"] {
        let asset = paysys_widget::pages::asset(name).unwrap();
        assert!(
            answer.text.contains(&format!("src=\"/v1/{name}\""))
                || answer.text.contains(&format!("href=\"/v1/{name}\""))
        );
        assert!(answer.text.contains(&asset.integrity), "{name} pinned by its integrity");
        let served = intake.get(&format!("/v1/{name}")).await;
        assert_eq!((served.status, served.text.as_str()), (200, asset.body), "{name}");
        assert_eq!(served.header("x-content-type-options"), "nosniff");
    }
    for other in ["checkout.js", "paysys.js"] {
        assert_eq!(intake.get(&format!("/v1/{other}")).await.status, 404, "{other} is the gateway's to serve");
    }

    // Not an origin: no frame at all.
    for bad in [
        "",
        "?origin=",
        "?origin=https%3A%2F%2Fshop.example%2Fpay",
        "?origin=*",
        "?origin=https%3A%2F%2Fa.example%20https%3A%2F%2Fb.example",
    ] {
        let answer = intake.get(&format!("/v1/frame{bad}")).await;
        assert_refused(&answer, 400, "origin_invalid");
        assert!(answer.header("content-security-policy").contains("frame-ancestors 'none'"));
    }
    assert_refused(&intake.get("/v1/frame?origin=https%3A%2F%2Fshop.example&lang=xx").await, 400, "lang_invalid");
    let health = intake.get("/health").await;
    assert_eq!((health.status, health.json()), (200, json!({"status": "ok"})));
    assert_refused(&intake.get("/v1/tokens").await, 404, "not_found");

    assert_nothing_kept(&intake, &vault).await;
    intake.stop().await;
    vault.finish().await;
}
