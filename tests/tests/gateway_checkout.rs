//! End to end over real processes: the gateway's side of the payment widget next to the
//! real vault (mTLS) and sandbox, on SQLite and PostgreSQL. The grant key made and read
//! by `paysys-gateway grant-key`; merchant settings by `merchant update`; checkouts
//! created, repeated, checked and cancelled over signed JSON-RPC; attempts whose grants
//! the intake's verifier accepts; the browser endpoints' refusals: a token a merchant
//! certificate minted (no checkout binding) is `token_not_for_checkout`, an origin the
//! merchant does not allow gets no CORS, a checkout has five attempts. Afterwards no
//! card number in the gateway's database, log or answers.
//!
//! Paying: the test plays the card intake (a client certificate of
//! `spiffe://paysys/intake` from the test CA) and tokenizes at the real vault with the
//! grant's checkout, nonce and expiry, as the intake does; the gateway then pays the
//! checkout with that token through the vault relay and the sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys::pki::IssueRequest;
use paysys_test_support::cards::{DECLINES, VISA};
use paysys_tests::gateway::{start_vault_and_sandbox, GatewayOptions, TestGateway};
use paysys_tests::{backends, bin_path, Identity, TestVault, GATEWAY_BIN};
use paysys_widget::grant::{GrantClaims, GrantVerifier};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INTAKE: &str = "https://127.0.0.1:8444";
const SHOP: &str = "http://127.0.0.1:9001";
const STRANGER: &str = "http://127.0.0.1:9002";

/// An HTTP answer: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// A browser's POST (with `Origin`) on a fresh connection.
async fn browser_post(base: &str, path: &str, origin: &str, body: Value) -> Answer {
    let addr = base.strip_prefix("http://").unwrap();
    let body = serde_json::to_vec(&body).unwrap();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\norigin: {origin}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&body).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

/// `paysys-gateway grant-key new`, then `grant-key public`: the key file and its
/// public key.
async fn grant_key(dir: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("grant.key");
    let out = tokio::process::Command::new(bin_path(GATEWAY_BIN))
        .args(["grant-key", "new", "--out"])
        .arg(&key)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(public.len(), 64, "{public}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let out = tokio::process::Command::new(bin_path(GATEWAY_BIN))
        .arg("grant-key")
        .arg("public")
        .arg(format!("g1={}", key.display()))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), format!("g1 {public}"));
    // It refuses to overwrite a key.
    let again = tokio::process::Command::new(bin_path(GATEWAY_BIN))
        .args(["grant-key", "new", "--out"])
        .arg(&key)
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    (key, public)
}

#[tokio::test]
async fn checkouts_grants_and_refusals_against_the_real_vault() {
    for backend in backends() {
        let (vault, sandbox) = start_vault_and_sandbox(&backend, 60_000).await;
        let (key, public) = grant_key(&vault.dir).await;
        let options = GatewayOptions {
            extra_args: vec![
                "--intake-url".into(),
                INTAKE.into(),
                "--grant-key".into(),
                format!("g1={}", key.display()),
            ],
            ..GatewayOptions::default()
        };
        let gateway = TestGateway::start(&vault, &sandbox, &backend, options).await;
        let shown =
            gateway.merchant_command(&["update", "--merchant-id", "m_1", "--allowed-origin", SHOP, "--json"]).await;
        let shown: Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(shown["allowed_origins"], json!([SHOP]));
        assert_eq!(shown["card_testing_guard"], true);
        let mut verifier = GrantVerifier::new();
        verifier.add_hex("g1", &public).unwrap();
        let mut seen = String::new();

        let params = json!({"amount": 150000, "currency": "UZS", "partner_trans_id": "e2e-1",
                            "return_url": "https://shop.example/back", "three_ds": "skip"});
        let created = gateway.ok("checkout.create", params.clone()).await;
        let id = created["checkout_id"].as_str().unwrap().to_owned();
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        assert_eq!(created["url"], format!("{}/checkout/{id}", gateway.url));
        assert_eq!(gateway.ok("checkout.create", params).await, created);
        seen.push_str(&created.to_string());

        // The hosted page's attempt: a grant the intake's verifier accepts.
        let attempt = browser_post(&gateway.url, &format!("/checkout/{id}/attempts"), &gateway.url, json!({})).await;
        assert_eq!(attempt.status, 200, "{}", attempt.body);
        let a = attempt.json();
        let frame_url = a["frame_url"].as_str().unwrap();
        assert!(frame_url.starts_with(&format!("{INTAKE}/v1/frame?origin=")), "{frame_url}");
        let grant = frame_url.split_once("#grant=").unwrap().1;
        let now = paysys_test_support::rpc::now_ms() / 1000;
        let claims = verifier.verify(grant, now).unwrap();
        assert_eq!((claims.merchant_id.as_str(), claims.checkout_id.as_str()), ("m_1", id.as_str()));
        assert_eq!(claims.origin, gateway.url);
        seen.push_str(&attempt.body);

        // A token a merchant certificate minted carries no checkout: refused.
        let token = vault.tokenize(VISA).await;
        let attempt_id = a["attempt_id"].as_str().unwrap();
        let pay = browser_post(
            &gateway.url,
            &format!("/checkout/{id}/pay"),
            &gateway.url,
            json!({"attempt_id": attempt_id, "token": token}),
        )
        .await;
        assert_eq!((pay.status, pay.code().as_str()), (403, "token_not_for_checkout"), "{}", pay.body);
        seen.push_str(&pay.body);
        // … and the attempt is not spent by the refusal; the checkout stays open.
        assert_eq!(gateway.ok("checkout.check", json!({"checkout_id": id})).await["status"], "open");

        // The embedded form: the allowed origin with the client secret, and no other.
        let path = format!("/checkout/{id}/attempts");
        let stranger =
            browser_post(&gateway.url, &path, STRANGER, json!({"client_secret": secret, "origin": STRANGER})).await;
        assert_eq!((stranger.status, stranger.code().as_str()), (403, "origin_forbidden"));
        assert!(!stranger.headers.contains_key("access-control-allow-origin"));
        let shop = browser_post(&gateway.url, &path, SHOP, json!({"client_secret": secret, "origin": SHOP})).await;
        assert_eq!(shop.status, 200, "{}", shop.body);
        assert_eq!(shop.headers.get("access-control-allow-origin").map(String::as_str), Some(SHOP));
        let grant = shop.json()["frame_url"].as_str().unwrap().split_once("#grant=").unwrap().1.to_owned();
        assert_eq!(verifier.verify(&grant, now).unwrap().origin, SHOP);

        // Five attempts per checkout.
        for _ in 0..3 {
            assert_eq!(browser_post(&gateway.url, &path, &gateway.url, json!({})).await.status, 200);
        }
        let over = browser_post(&gateway.url, &path, &gateway.url, json!({})).await;
        assert_eq!((over.status, over.code().as_str()), (429, "attempts_exhausted"));

        // Cancelled: checked as such, no more attempts.
        let other = gateway
            .ok(
                "checkout.create",
                json!({"amount": 150000, "currency": "UZS", "partner_trans_id": "e2e-2",
                                          "return_url": "https://shop.example/back"}),
            )
            .await;
        let other_id = other["checkout_id"].as_str().unwrap();
        assert_eq!(gateway.ok("checkout.cancel", json!({"checkout_id": other_id})).await["status"], "cancelled");
        let refused =
            browser_post(&gateway.url, &format!("/checkout/{other_id}/attempts"), &gateway.url, json!({})).await;
        assert_eq!((refused.status, refused.code().as_str()), (410, "checkout_cancelled"));
        assert_eq!(gateway.ok("checkout.check", json!({"partner_trans_id": "e2e-2"})).await["status"], "cancelled");

        let db = gateway.database_bytes().await;
        let log = gateway.log_text();
        assert!(!log.contains(VISA), "a card number in the gateway's log");
        assert!(!db.windows(VISA.len()).any(|w| w == VISA.as_bytes()), "a card number in the gateway's database");
        assert!(!seen.contains(VISA));
        assert!(!log.contains(&secret), "a client secret in the gateway's log");
        gateway.finish().await;
        sandbox.stop().await;
        vault.finish().await;
    }
}

#[tokio::test]
async fn without_a_grant_key_the_widget_is_unavailable() {
    let backend = &backends()[0];
    let (vault, sandbox) = start_vault_and_sandbox(backend, 60_000).await;
    let options =
        GatewayOptions { extra_args: vec!["--intake-url".into(), INTAKE.into()], ..GatewayOptions::default() };
    let gateway = TestGateway::start(&vault, &sandbox, backend, options).await;
    let e = gateway
        .err(
            "checkout.create",
            json!({"amount": 150000, "currency": "UZS", "partner_trans_id": "na-1",
                                       "return_url": "https://shop.example/back"}),
        )
        .await;
    assert_eq!((e["code"].as_i64(), e["data"]["reason"].as_str()), (Some(-31050), Some("widget_unavailable")));
    assert_eq!(gateway.err("checkout.check", json!({"partner_trans_id": "na-1"})).await["code"], -31003);
    gateway.finish().await;
    sandbox.stop().await;
    vault.finish().await;
}

/// A client certificate for the intake principal from the vault's test CA.
fn intake_identity(vault: &TestVault) -> Identity {
    let principal = "spiffe://paysys/intake";
    let (cert, key) = (vault.dir.join("intake.pem"), vault.dir.join("intake.key"));
    vault.pki.ca().issue(&IssueRequest::client(principal)).unwrap().write(&cert, &key).unwrap();
    Identity { principal: principal.to_owned(), cert, key }
}

/// What the intake does with a grant and a card: tokenize at the vault, bound to the
/// grant's checkout and spending its nonce. The vault's answer (status, body).
async fn tokenize_as_intake(vault: &TestVault, intake: &Identity, claims: &GrantClaims, pan: &str) -> (u16, Value) {
    let body = json!({
        "merchant_id": claims.merchant_id, "pan": pan, "exp_month": 12, "exp_year": 2031, "cvc": "123",
        "format": "opaque", "ttl_sec": if claims.save_card { Value::Null } else { json!(3600) },
        "checkout": {"checkout_id": claims.checkout_id, "grant_nonce": claims.nonce,
                     "grant_expires_at": claims.expires_at},
    });
    let body = match body {
        Value::Object(mut map) => {
            map.retain(|_, v| !v.is_null());
            Value::Object(map)
        }
        other => other,
    };
    let r = vault.call(intake, "POST", "/v1/tokens", Some(body)).await;
    (r.status, r.body)
}

#[tokio::test]
async fn a_checkout_is_paid_with_the_token_the_vault_minted_for_its_grant() {
    for backend in backends() {
        let (vault, sandbox) = start_vault_and_sandbox(&backend, 60_000).await;
        let (key, public) = grant_key(&vault.dir).await;
        let options = GatewayOptions {
            extra_args: vec![
                "--intake-url".into(),
                INTAKE.into(),
                "--grant-key".into(),
                format!("g1={}", key.display()),
            ],
            ..GatewayOptions::default()
        };
        let gateway = TestGateway::start(&vault, &sandbox, &backend, options).await;
        let intake = intake_identity(&vault);
        let mut verifier = GrantVerifier::new();
        verifier.add_hex("g1", &public).unwrap();
        let now = paysys_test_support::rpc::now_ms() / 1000;
        let attempt = |id: String| {
            let url = gateway.url.clone();
            async move {
                let a = browser_post(&url, &format!("/checkout/{id}/attempts"), &url, json!({})).await;
                assert_eq!(a.status, 200, "{}", a.body);
                a.json()
            }
        };
        let claims_of = |a: &Value| {
            let grant = a["frame_url"].as_str().unwrap().split_once("#grant=").unwrap().1.to_owned();
            verifier.verify(&grant, now).unwrap()
        };
        let pay = |id: &str, attempt_id: &str, token: &str| {
            let (url, path) = (gateway.url.clone(), format!("/checkout/{id}/pay"));
            let body = json!({"attempt_id": attempt_id, "token": token});
            async move { browser_post(&url, &path, &url, body).await }
        };

        let created = gateway
            .ok(
                "checkout.create",
                json!({"amount": 150000, "currency": "UZS", "partner_trans_id": "pay-1",
                                          "return_url": "https://shop.example/back", "three_ds": "skip",
                                          "customer_id": "cust-1", "save_card": true}),
            )
            .await;
        let id = created["checkout_id"].as_str().unwrap().to_owned();

        // A declined card, then a good one: each attempt a grant of its own.
        let a1 = attempt(id.clone()).await;
        let c1 = claims_of(&a1);
        assert!(c1.save_card);
        let (status, minted) = tokenize_as_intake(&vault, &intake, &c1, DECLINES[0].0).await;
        assert_eq!(status, 201, "{minted}");
        assert_eq!(minted["checkout_id"], id.as_str(), "the vault bound the token to the checkout");
        let declined_token = minted["token"].as_str().unwrap().to_owned();
        // The grant is spent: a second card with it is refused by the vault.
        let (status, replay) = tokenize_as_intake(&vault, &intake, &c1, VISA).await;
        assert_eq!((status, replay["error"]["code"].as_str()), (409, Some("grant_used")), "{replay}");
        let r = pay(&id, a1["attempt_id"].as_str().unwrap(), &declined_token).await;
        assert_eq!(r.json()["status"], "declined", "{}", r.body);
        assert_eq!(r.json()["decline"]["code"], DECLINES[0].1);

        let a2 = attempt(id.clone()).await;
        let (status, minted) = tokenize_as_intake(&vault, &intake, &claims_of(&a2), VISA).await;
        assert_eq!(status, 201, "{minted}");
        let token = minted["token"].as_str().unwrap().to_owned();
        // Paid on another checkout, the token is refused.
        let other = gateway
            .ok(
                "checkout.create",
                json!({"amount": 1000, "currency": "UZS", "partner_trans_id": "pay-other",
                                          "return_url": "https://shop.example/back", "three_ds": "skip"}),
            )
            .await;
        let other_id = other["checkout_id"].as_str().unwrap().to_owned();
        let other_attempt = attempt(other_id.clone()).await;
        let r = pay(&other_id, other_attempt["attempt_id"].as_str().unwrap(), &token).await;
        assert_eq!((r.status, r.code().as_str()), (403, "token_not_for_checkout"));
        // On its own checkout it pays.
        let r = pay(&id, a2["attempt_id"].as_str().unwrap(), &token).await;
        let answer = r.json();
        assert_eq!(answer["status"], "completed", "{}", r.body);
        assert!(answer["redirect_url"].as_str().unwrap().starts_with("https://shop.example/back?"), "{answer}");
        let checked = gateway.ok("checkout.check", json!({"partner_trans_id": "pay-1"})).await;
        assert_eq!(checked["status"], "completed");
        assert_eq!(checked["payment"]["partner_trans_id"], "pay-1/2");
        assert_eq!(checked["payment"]["status"], "captured");

        // Saved for the customer; payment.create takes the saved token, not the declined one.
        let cards = gateway.ok("card.list", json!({"customer_id": "cust-1"})).await;
        assert_eq!(cards["cards"].as_array().unwrap().len(), 1, "{cards}");
        assert_eq!(cards["cards"][0]["token"], token.as_str());
        assert_eq!(cards["cards"][0]["masked_number"], "424242******4242");
        let again = json!({"card_token": token, "amount": 5000, "currency": "UZS", "partner_trans_id": "later-1",
                           "three_ds": "skip"});
        assert_eq!(gateway.ok("payment.create", again).await["status"], "captured");
        let unsaved = json!({"card_token": declined_token, "amount": 5000, "currency": "UZS",
                             "partner_trans_id": "later-2", "three_ds": "skip"});
        assert_eq!(gateway.err("payment.create", unsaved).await["code"], -31400);

        let db = gateway.database_bytes().await;
        let log = gateway.log_text();
        for pan in [VISA, DECLINES[0].0] {
            assert!(!log.contains(pan), "a card number in the gateway's log");
            assert!(!db.windows(pan.len()).any(|w| w == pan.as_bytes()), "a card number in the gateway's database");
        }
        gateway.finish().await;
        sandbox.stop().await;
        vault.finish().await;
    }
}
