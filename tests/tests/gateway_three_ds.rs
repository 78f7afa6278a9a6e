//! 3-D Secure 2 end to end over real processes: merchant → gateway (3DS Server) → vault
//! relay (the AReq carries the card number) → sandbox DS/ACS → issuer checking the CAVV.
//! Every outcome of the test-card table, the 3DS Method, the challenge in a real headless
//! Chromium, replays of the CRes and RReq, a CRes for another transaction and an expired
//! challenge — on SQLite and PostgreSQL. Afterwards no card number may be in the
//! gateway's database, log, answers or pages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_gateway::secrets::MerchantSecret;
use paysys_gateway::three_ds::messages::encode_browser_message;
use paysys_test_support::cards::{
    ACS_TIMEOUT, ATTEMPTED, CHALLENGE, FRICTIONLESS, MC_CHALLENGE, MC_FRICTIONLESS, NOT_AUTHENTICATED, REJECTED,
    UNAVAILABLE, UZCARD, VISA,
};
use paysys_tests::browser::{Browser, ReturnSite};
use paysys_tests::gateway::{start_vault_and_sandbox, GatewayOptions, TestGateway};
use paysys_tests::{backends, Backend, TestSandbox, TestVault};
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const ALL_CARDS: [&str; 11] = [
    FRICTIONLESS,
    ATTEMPTED,
    CHALLENGE,
    MC_CHALLENGE,
    MC_FRICTIONLESS,
    NOT_AUTHENTICATED,
    REJECTED,
    UNAVAILABLE,
    ACS_TIMEOUT,
    VISA,
    UZCARD,
];

/// The gateway's AReq deadline in these tests, below the sandbox's delay of the
/// "ACS does not answer" card.
const AREQ_TIMEOUT_MS: u64 = 1_500;
const SLOW_DELAY_MS: u64 = 4_000;
const METHOD_BUDGET_MS: u64 = 1_500;

struct Stack {
    vault: TestVault,
    sandbox: TestSandbox,
    gateway: TestGateway,
    site: ReturnSite,
    /// Every answer and page seen, for the no-PAN scan.
    seen: Mutex<String>,
}

fn three_ds_args(challenge_ttl_sec: u64) -> Vec<String> {
    [
        "--three-ds-timeout-ms".to_owned(),
        AREQ_TIMEOUT_MS.to_string(),
        "--three-ds-method-budget-ms".to_owned(),
        METHOD_BUDGET_MS.to_string(),
        "--three-ds-challenge-ttl-sec".to_owned(),
        challenge_ttl_sec.to_string(),
    ]
    .into()
}

impl Stack {
    async fn start(backend: &Backend) -> Stack {
        let (vault, sandbox) = start_vault_and_sandbox(backend, SLOW_DELAY_MS).await;
        let options = GatewayOptions { extra_args: three_ds_args(600), ..GatewayOptions::default() };
        let gateway = TestGateway::start(&vault, &sandbox, backend, options).await;
        Stack { vault, sandbox, gateway, site: ReturnSite::start().await, seen: Mutex::new(String::new()) }
    }

    async fn token(&self, pan: &str) -> String {
        let body = json!({"merchant_id": "m_1", "pan": pan, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
        let r = self.vault.call(&self.vault.pki.merchant, "POST", "/v1/tokens", Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    fn saw(&self, text: &str) {
        self.seen.lock().unwrap().push_str(text);
    }

    async fn call_on(&self, gateway: &TestGateway, method: &str, params: Value) -> Value {
        let v = gateway.call(method, params).await;
        self.saw(&v.to_string());
        v
    }

    async fn ok(&self, method: &str, params: Value) -> Value {
        let v = self.call_on(&self.gateway, method, params).await;
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    async fn err(&self, method: &str, params: Value) -> Value {
        let v = self.call_on(&self.gateway, method, params).await;
        assert!(v.get("error").is_some(), "{method}: expected an error, got {v}");
        v["error"].clone()
    }

    async fn pay(&self, pan: &str, id: &str, extra: Value) -> Value {
        let token = self.token(pan).await;
        self.pay_with(&token, id, extra).await
    }

    async fn pay_with(&self, token: &str, id: &str, extra: Value) -> Value {
        let mut params = json!({
            "card_token": token,
            "amount": 2_500,
            "currency": "USD",
            "partner_trans_id": id,
            "three_ds": "force",
            "return_url": self.site.url,
        });
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        self.gateway.call("payment.create", params).await
    }

    async fn check(&self, transaction_id: &str) -> Value {
        self.ok("payment.check", json!({"transaction_id": transaction_id})).await
    }

    /// The DS's results of an authentication (the test reads the sandbox directly).
    async fn ds_results(&self, three_ds_server_trans_id: &str) -> Value {
        self.sandbox.get(&self.vault.pki.ca_cert, &format!("/3ds/v2/results/{three_ds_server_trans_id}")).await
    }
}

impl Stack {
    async fn finish(self) {
        let Stack { vault, sandbox, gateway, .. } = self;
        gateway.finish().await;
        sandbox.stop().await;
        vault.finish().await;
    }
}

fn result_status(v: &Value) -> &str {
    v["result"]["status"].as_str().unwrap_or_default()
}

async fn frictionless(s: &Stack) {
    // Y, with the Visa ECI; the full CAVV went to the issuer and is not kept.
    let v = s.pay(FRICTIONLESS, "fy-1", json!({})).await;
    assert_eq!(result_status(&v), "captured", "{v}");
    let three_ds = &v["result"]["three_ds"];
    assert_eq!(three_ds["trans_status"], "Y", "{v}");
    assert_eq!(three_ds["eci"], "05");
    assert_eq!(three_ds["version"], "2.2.0");
    assert_eq!(three_ds["challenge"], false);
    assert_eq!(three_ds["method_completion"], "N", "the range has a 3DS Method the merchant did not run");
    let masked = three_ds["authentication_value"].as_str().unwrap();
    assert!(masked.starts_with("****") && masked.len() == 8, "{masked}");
    assert!(v["result"].get("next_action").is_none());
    let id = three_ds["three_ds_server_trans_id"].as_str().unwrap();
    let ds = s.ds_results(id).await;
    let cavv = ds["authenticationValue"].as_str().unwrap().to_owned();
    assert!(cavv.ends_with(&masked[4..]), "{ds}");
    assert!(!String::from_utf8_lossy(&s.gateway.database_bytes().await).contains(&cavv), "the CAVV stays after use");
    assert!(!v.to_string().contains(&cavv));
    s.saw(&v.to_string());

    // A: attempted, ECI 06.
    let v = s.pay(ATTEMPTED, "fa-1", json!({})).await;
    assert_eq!(result_status(&v), "captured", "{v}");
    assert_eq!(v["result"]["three_ds"]["trans_status"], "A");
    assert_eq!(v["result"]["three_ds"]["eci"], "06");

    // Mastercard ECIs.
    let v = s.pay(MC_FRICTIONLESS, "fmc-1", json!({"capture_method": "manual"})).await;
    assert_eq!(result_status(&v), "authorized", "{v}");
    assert_eq!(v["result"]["three_ds"]["eci"], "02");

    // Cards outside the table are frictionless Y when forced, and under auto too.
    let v = s.pay(VISA, "fv-1", json!({})).await;
    assert_eq!(v["result"]["three_ds"]["trans_status"], "Y", "{v}");
    let v = s.pay(VISA, "fv-2", json!({"three_ds": "auto"})).await;
    assert_eq!(v["result"]["three_ds"]["trans_status"], "Y", "{v}");
    let v = s.pay(VISA, "fv-3", json!({"three_ds": "skip"})).await;
    assert_eq!(result_status(&v), "captured");
    assert!(v["result"].get("three_ds").is_none(), "{v}");

    // A domestic card the DS does not enroll: auto pays without, force refuses.
    let v = s.pay(UZCARD, "fu-1", json!({"three_ds": "auto"})).await;
    assert_eq!(result_status(&v), "captured", "{v}");
    assert!(v["result"].get("three_ds").is_none(), "{v}");
    let v = s.pay(UZCARD, "fu-2", json!({})).await;
    assert_eq!(v["error"]["code"], -31022, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "unavailable");
    s.saw(&v.to_string());
}

async fn failures(s: &Stack) {
    for (pan, id, code, status, reason) in [
        (NOT_AUTHENTICATED, "n-1", -31020, "N", "not_authenticated"),
        (REJECTED, "r-1", -31021, "R", "rejected"),
        (UNAVAILABLE, "u-1", -31022, "U", "timeout"),
    ] {
        let token = s.token(pan).await;
        let v = s.pay_with(&token, id, json!({})).await;
        let warnings: Vec<String> =
            s.gateway.log_text().lines().filter(|l| l.contains("WARN")).map(str::to_owned).collect();
        assert_eq!(v["error"]["code"], code, "{pan}: {v}\ngateway warnings: {warnings:#?}");
        assert_eq!(v["error"]["data"]["trans_status"], status, "{v}");
        assert_eq!(v["error"]["data"]["reason"], reason, "{v}");
        s.saw(&v.to_string());
        let tx = v["error"]["data"]["transaction_id"].as_str().unwrap().to_owned();
        let p = s.check(&tx).await;
        assert_eq!(p["status"], "failed", "{p}");
        assert_eq!(p["error_code"], code);
        assert_eq!(p["three_ds"]["trans_status"], status);
        assert!(p.get("auth_code").is_none(), "nothing was authorized: {p}");
        // The same request again answers the same, and authorizes nothing.
        assert_eq!(s.pay_with(&token, id, json!({})).await, v);
    }
    // The ACS does not answer in time: the gateway gives up at its AReq deadline.
    let started = Instant::now();
    let v = s.pay(ACS_TIMEOUT, "t-1", json!({})).await;
    assert_eq!(v["error"]["code"], -31022, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "timeout");
    assert!(started.elapsed() < Duration::from_millis(SLOW_DELAY_MS), "waited for the ACS");
}

async fn idempotency_and_bad_input(s: &Stack) {
    let token = s.token(NOT_AUTHENTICATED).await;
    let params = json!({"card_token": token, "amount": 700, "currency": "USD", "partner_trans_id": "idem-n",
        "three_ds": "force"});
    let first = s.gateway.call("payment.create", params.clone()).await;
    let again = s.gateway.call("payment.create", params.clone()).await;
    assert_eq!(first, again, "a repeat answers as the first");
    let mut other = params.clone();
    other["three_ds"] = json!("skip");
    assert_eq!(s.gateway.call("payment.create", other).await["error"]["code"], -31010);

    let token = s.token(FRICTIONLESS).await;
    let base = json!({"card_token": token, "amount": 700, "currency": "USD", "partner_trans_id": "bad-1"});
    for (extra, what) in [
        (json!({"three_ds": "sometimes"}), "three_ds"),
        (json!({"three_ds": 1}), "expected a string"),
        (json!({"return_url": "javascript:alert(1)"}), "return_url"),
        (json!({"return_url": "/relative"}), "return_url"),
        (json!({"three_ds_server_trans_id": "nope"}), "three_ds_server_trans_id"),
        (json!({"three_ds_server_trans_id": "8a880dc0-d2d2-4067-bcb1-b08d1690b26e"}), "three_ds_server_trans_id"),
        (json!({"browser": {"accept_header": "text/html"}}), "user_agent"),
        (
            json!({"browser": {"accept_header": "a", "user_agent": "b", "language": "en", "color_depth": 7,
                "screen_height": 1, "screen_width": 1, "tz_offset_min": 0}}),
            "color_depth",
        ),
    ] {
        let mut params = base.clone();
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let e = s.err("payment.create", params).await;
        assert_eq!(e["code"], -32602, "{what}: {e}");
        assert!(e["message"].as_str().unwrap().contains(what), "{what}: {e}");
    }
    // Nothing was recorded for refused params.
    assert_eq!(s.err("payment.check", json!({"partner_trans_id": "bad-1"})).await["code"], -31003);

    // Browser and ACS endpoints refuse what they do not recognise.
    let (status, _, body) = s.gateway.request("GET", "/3ds/challenge/0123456789abcdef", "text/plain", b"").await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) =
        s.gateway.request("POST", "/3ds/notify", "application/x-www-form-urlencoded", b"cres=AAAA").await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = s.gateway.request("POST", "/3ds/rreq", "application/json", b"{not json").await;
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["errorCode"], "101");
    let rreq = json!({"messageType": "RReq", "messageVersion": "2.2.0",
        "threeDSServerTransID": "8a880dc0-d2d2-4067-bcb1-b08d1690b26e", "dsTransID": "d", "acsTransID": "a",
        "transStatus": "Y"});
    let (status, _, body) =
        s.gateway.request("POST", "/3ds/rreq", "application/json", rreq.to_string().as_bytes()).await;
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["errorCode"], "301");
}

async fn method_budget(s: &Stack) {
    // Prepared but the 3DS Method never ran: the AReq waits out the budget, then says N.
    let token = s.token(FRICTIONLESS).await;
    let prepared = s.ok("three_ds.prepare", json!({"card_token": token})).await;
    assert_eq!(prepared["enrolled"], true, "{prepared}");
    assert!(prepared["method"]["page_url"].as_str().unwrap().contains("/3ds/method/"));
    let id = prepared["three_ds_server_trans_id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let v = s
        .ok(
            "payment.create",
            json!({"card_token": token, "amount": 900, "currency": "USD", "partner_trans_id": "mb-1",
                "three_ds_server_trans_id": id}),
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(METHOD_BUDGET_MS / 2), "no wait for the method");
    assert_eq!(v["three_ds"]["method_completion"], "N", "{v}");
    assert_eq!(v["three_ds"]["three_ds_server_trans_id"], id.as_str());
    // A prepared authentication serves one payment only.
    let e = s
        .err(
            "payment.create",
            json!({"card_token": token, "amount": 900, "currency": "USD", "partner_trans_id": "mb-2",
                "three_ds_server_trans_id": id}),
        )
        .await;
    assert_eq!(e["code"], -32602, "{e}");
    // ... but the same payment asked again answers as before.
    let again = s
        .ok(
            "payment.create",
            json!({"card_token": token, "amount": 900, "currency": "USD", "partner_trans_id": "mb-1",
                "three_ds_server_trans_id": id}),
        )
        .await;
    assert_eq!(again["transaction_id"], v["transaction_id"]);
    // Not for another card, and not enrolled cards have no method.
    let other = s.token(VISA).await;
    let e = s
        .err(
            "payment.create",
            json!({"card_token": other, "amount": 900, "currency": "USD", "partner_trans_id": "mb-3",
                "three_ds_server_trans_id": id}),
        )
        .await;
    assert_eq!(e["code"], -32602);
    let uz = s.ok("three_ds.prepare", json!({"card_token": s.token(UZCARD).await})).await;
    assert_eq!(uz["enrolled"], false, "{uz}");
    assert!(uz["method"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_ds_outcomes_on_every_database() {
    for backend in backends() {
        let s = Stack::start(&backend).await;
        frictionless(&s).await;
        failures(&s).await;
        idempotency_and_bad_input(&s).await;
        method_budget(&s).await;
        no_card_numbers(&s, "").await;
        s.finish().await;
    }
}

/// Open the challenge link, type `code` on the ACS page, land back at the shop; the
/// query the shop received.
async fn challenge_in_browser(s: &Stack, browser: &Browser, url: &str, code: &str) -> Vec<(String, String)> {
    browser.client.goto(url).await.unwrap();
    let otp = browser.wait_for("#otp").await;
    let acs_page = browser.client.source().await.unwrap();
    s.saw(&acs_page);
    otp.send_keys(code).await.unwrap();
    browser.wait_for("#submit").await.click().await.unwrap();
    let landed = browser.wait_for_url("the shop's return page", |u| u.starts_with(&s.site.url)).await;
    browser.wait_for("#returned").await;
    assert!(landed.contains("signature="), "{landed}");
    s.site.last_query().unwrap()
}

fn query<'a>(q: &'a [(String, String)], key: &str) -> &'a str {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {key} in {q:?}"))
}

fn check_signature(s: &Stack, q: &[(String, String)]) {
    let secret = MerchantSecret::from_text(&s.gateway.secret);
    let ts: i64 = query(q, "ts").parse().unwrap();
    let expected = paysys_gateway::auth::return_signature(&secret, query(q, "transaction_id"), query(q, "status"), ts);
    assert_eq!(query(q, "signature"), expected, "the return signature does not verify");
    let forged = paysys_gateway::auth::return_signature(&secret, query(q, "transaction_id"), "captured", ts);
    assert_ne!(query(q, "signature"), forged);
}

async fn challenges(s: &Stack, browser: &Browser) -> (String, String) {
    // The right code: Y, then the hold is authorized with the Visa ECI.
    let token = s.token(CHALLENGE).await;
    let v = s.pay_with(&token, "c-1", json!({"capture_method": "manual"})).await;
    assert_eq!(result_status(&v), "requires_3ds", "{v}");
    let next = &v["result"]["next_action"];
    assert_eq!(next["type"], "redirect");
    let url = next["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&s.gateway.url), "{url}");
    assert!(v["result"].get("auth_code").is_none());
    let tx = v["result"]["transaction_id"].as_str().unwrap().to_owned();
    // Asking again while the cardholder is at the ACS answers where the payment is.
    let again = s.pay_with(&token, "c-1", json!({"capture_method": "manual"})).await;
    assert_eq!(again["result"]["transaction_id"], tx.as_str(), "{again}");
    assert_eq!(again["result"]["next_action"], v["result"]["next_action"]);
    let q = challenge_in_browser(s, browser, &url, "123456").await;
    assert_eq!(query(&q, "transaction_id"), tx);
    assert_eq!(query(&q, "partner_trans_id"), "c-1");
    assert_eq!(query(&q, "status"), "authorized");
    check_signature(s, &q);
    let p = s.check(&tx).await;
    assert_eq!(p["status"], "authorized", "{p}");
    assert_eq!(p["three_ds"]["trans_status"], "Y");
    assert_eq!(p["three_ds"]["eci"], "05");
    assert_eq!(p["three_ds"]["challenge"], true);
    assert!(p.get("next_action").is_none(), "{p}");
    let captured = s.ok("payment.capture", json!({"transaction_id": tx})).await;
    assert_eq!(captured["status"], "captured");

    // A wrong code: N, the payment fails with −31020 and the shop hears "failed".
    let v = s.pay(CHALLENGE, "c-2", json!({})).await;
    let tx_n = v["result"]["transaction_id"].as_str().unwrap().to_owned();
    let q = challenge_in_browser(s, browser, v["result"]["next_action"]["url"].as_str().unwrap(), "000000").await;
    assert_eq!(query(&q, "status"), "failed");
    check_signature(s, &q);
    let p = s.check(&tx_n).await;
    assert_eq!((p["status"].as_str(), p["error_code"].as_i64()), (Some("failed"), Some(-31020)), "{p}");
    assert_eq!(p["three_ds"]["trans_status"], "N");

    // Mastercard: ECI 02, auto capture.
    let v = s.pay(MC_CHALLENGE, "c-3", json!({})).await;
    let q = challenge_in_browser(s, browser, v["result"]["next_action"]["url"].as_str().unwrap(), "123456").await;
    assert_eq!(query(&q, "status"), "captured");
    let p = s.check(query(&q, "transaction_id")).await;
    assert_eq!(p["three_ds"]["eci"], "02", "{p}");
    (tx, url)
}

/// Replays change nothing: the old challenge link, the same CRes and RReq again, a CRes
/// for another transaction.
async fn replays(s: &Stack, browser: &Browser, tx: &str, url: &str) {
    let before = s.check(tx).await;
    browser.client.goto(url).await.unwrap();
    browser.wait_for_url("the shop again", |u| u.starts_with(&s.site.url)).await;
    let q = s.site.last_query().unwrap();
    assert_eq!(query(&q, "status"), "captured", "the old link shows where the payment is");
    let challenge_id = url.rsplit('/').next().unwrap();
    let id = before["three_ds"]["three_ds_server_trans_id"].as_str().unwrap();
    let ds = s.ds_results(id).await;
    let acs_trans_id = ds["acsTransID"].as_str().unwrap();
    let cres = encode_browser_message(&json!({"messageType": "CRes", "messageVersion": "2.2.0",
        "threeDSServerTransID": id, "acsTransID": acs_trans_id, "transStatus": "Y", "challengeCompletionInd": "Y"}));
    let form = format!("cres={cres}&threeDSSessionData={challenge_id}");
    for _ in 0..2 {
        let (status, location, _) =
            s.gateway.request("POST", "/3ds/notify", "application/x-www-form-urlencoded", form.as_bytes()).await;
        assert_eq!(status, 303);
        assert!(location.starts_with(&s.site.url) && location.contains("status=captured"), "{location}");
    }
    let rreq = json!({"messageType": "RReq", "messageVersion": "2.2.0", "threeDSServerTransID": id,
        "dsTransID": ds["dsTransID"], "acsTransID": acs_trans_id, "messageCategory": "01", "transStatus": "Y",
        "eci": "05", "authenticationValue": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "authenticationType": "02",
        "interactionCounter": "01"});
    let (status, _, body) =
        s.gateway.request("POST", "/3ds/rreq", "application/json", rreq.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["resultsStatus"], "01");
    let after = s.check(tx).await;
    assert_eq!(before, after, "a replayed CRes or RReq changed the payment");

    // A CRes of this transaction posted with another challenge's session: refused.
    let v = s.pay(CHALLENGE, "c-4", json!({})).await;
    let other_url = v["result"]["next_action"]["url"].as_str().unwrap();
    let other_session = other_url.rsplit('/').next().unwrap();
    let form = format!("cres={cres}&threeDSSessionData={other_session}");
    let (status, _, body) =
        s.gateway.request("POST", "/3ds/notify", "application/x-www-form-urlencoded", form.as_bytes()).await;
    assert_eq!(status, 400, "{body}");
    let other_tx = v["result"]["transaction_id"].as_str().unwrap();
    assert_eq!(s.check(other_tx).await["status"], "requires_3ds");
    // An RReq naming the right transaction with a made-up ACS id: refused.
    let mut forged = rreq.clone();
    forged["acsTransID"] = json!("00000000-0000-4000-8000-00000000000a");
    let (status, _, _) =
        s.gateway.request("POST", "/3ds/rreq", "application/json", forged.to_string().as_bytes()).await;
    assert_eq!(status, 400);
}

async fn method_in_browser(s: &Stack, browser: &Browser) {
    let token = s.token(FRICTIONLESS).await;
    let prepared = s.ok("three_ds.prepare", json!({"card_token": token})).await;
    let page = prepared["method"]["page_url"].as_str().unwrap();
    browser.client.goto(page).await.unwrap();
    browser.wait_for_url("the method notification", |u| u.contains("/3ds/method-notification")).await;
    s.saw(&browser.client.source().await.unwrap());
    let started = Instant::now();
    let v = s
        .ok(
            "payment.create",
            json!({"card_token": token, "amount": 900, "currency": "USD", "partner_trans_id": "mY-1",
                "three_ds_server_trans_id": prepared["three_ds_server_trans_id"]}),
        )
        .await;
    assert_eq!(v["three_ds"]["method_completion"], "Y", "{v}");
    assert_eq!(v["status"], "captured");
    assert!(started.elapsed() < Duration::from_millis(METHOD_BUDGET_MS), "waited although the method ran");
}

async fn expired_challenge(s: &Stack, backend: &Backend, browser: &Browser) {
    let options = GatewayOptions { extra_args: three_ds_args(2), ..GatewayOptions::default() };
    let short = TestGateway::start(&s.vault, &s.sandbox, backend, options).await;
    let token = s.token(CHALLENGE).await;
    let params = json!({"card_token": token, "amount": 900, "currency": "USD", "partner_trans_id": "x-1",
        "three_ds": "force", "return_url": s.site.url});
    let v = s.call_on(&short, "payment.create", params).await;
    assert_eq!(v["result"]["status"], "requires_3ds", "{v}");
    let tx = v["result"]["transaction_id"].as_str().unwrap().to_owned();
    let url = v["result"]["next_action"]["url"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let p = s.call_on(&short, "payment.check", json!({"transaction_id": tx})).await;
    assert_eq!(p["result"]["status"], "expired", "{p}");
    assert_eq!(p["result"]["error_code"], -31022);
    assert!(p["result"].get("next_action").is_none());
    browser.client.goto(&url).await.unwrap();
    browser.wait_for_url("the shop after expiry", |u| u.starts_with(&s.site.url)).await;
    assert_eq!(query(&s.site.last_query().unwrap(), "status"), "expired");
    no_card_numbers(s, &short.log_text()).await;
    short.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_ds_challenges_in_a_real_browser() {
    let Some(browser) = Browser::start().await else { return };
    for backend in backends() {
        let s = Stack::start(&backend).await;
        let (tx, url) = challenges(&s, &browser).await;
        replays(&s, &browser, &tx, &url).await;
        method_in_browser(&s, &browser).await;
        expired_challenge(&s, &backend, &browser).await;
        no_card_numbers(&s, "").await;
        s.finish().await;
    }
    browser.close().await;
}

/// No card number in the gateway's database, log, answers or the pages the browser saw.
async fn no_card_numbers(s: &Stack, extra: &str) {
    let db = String::from_utf8_lossy(&s.gateway.database_bytes().await).into_owned();
    let log = s.gateway.log_text();
    let seen = s.seen.lock().unwrap().clone();
    for pan in ALL_CARDS {
        for (what, text) in
            [("database", &db), ("log", &log), ("answers and pages", &seen), ("other log", &extra.to_owned())]
        {
            assert!(!text.contains(pan), "card number in the gateway's {what}");
        }
    }
    assert!(!log.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_ds_auto_settings_per_merchant_from_the_cli() {
    for backend in backends() {
        let s = Stack::start(&backend).await;
        // The default, as `merchant show` prints it.
        let shown: Value =
            serde_json::from_str(&s.gateway.merchant_command(&["show", "--merchant-id", "m_1", "--json"]).await)
                .unwrap();
        assert_eq!(
            shown["three_ds_auto"],
            json!({"proceed_on": ["not_enrolled", "ds_unavailable"], "min_amounts": {}})
        );
        assert!(shown.get("secret").is_none(), "{shown}");
        // No DS failure may proceed; USD from 50.00 up is authenticated.
        let updated = s
            .gateway
            .merchant_command(&[
                "update",
                "--merchant-id",
                "m_1",
                "--three-ds-auto-proceed-on",
                "none",
                "--three-ds-auto-min-amount",
                "USD=5000",
                "--json",
            ])
            .await;
        let updated: Value = serde_json::from_str(&updated).unwrap();
        assert_eq!(updated["three_ds_auto"], json!({"proceed_on": [], "min_amounts": {"USD": 5000}}));
        let text = s.gateway.merchant_command(&["show", "--merchant-id", "m_1"]).await;
        assert!(text.contains("proceeds without 3-D Secure on: none") && text.contains("USD=5000"), "{text}");
        // Bad settings are refused, and change nothing.
        for bad in [["--three-ds-auto-proceed-on", "always"], ["--three-ds-auto-min-amount", "USD=-1"]] {
            let out = tokio::process::Command::new(paysys_tests::bin_path(paysys_tests::GATEWAY_BIN))
                .args(["merchant", "update", "--merchant-id", "m_1", "--database-url", &s.gateway.db.url])
                .args(bad)
                .output()
                .await
                .unwrap();
            assert!(!out.status.success(), "{bad:?}");
        }

        let auto = json!({"three_ds": "auto", "amount": 6_000});
        // Not enrolled, and this merchant allows no fallback: the payment fails.
        let v = s.pay(UZCARD, "cli-uz", auto.clone()).await;
        assert_eq!(v["error"]["code"], -31022, "{v}");
        assert_eq!(v["error"]["data"]["reason"], "unavailable");
        s.saw(&v.to_string());
        // Below the USD minimum: no 3-D Secure at all, so the not-enrolled card is paid.
        let v = s.pay(UZCARD, "cli-uz-small", json!({"three_ds": "auto", "amount": 4_000})).await;
        assert_eq!(result_status(&v), "captured", "{v}");
        assert!(v["result"].get("three_ds").is_none(), "{v}");
        // The same amount in EUR is authenticated: the minimum is USD's only.
        let v = s.pay(FRICTIONLESS, "cli-eur", json!({"three_ds": "auto", "amount": 4_000, "currency": "EUR"})).await;
        assert_eq!(v["result"]["three_ds"]["trans_status"], "Y", "{v}");
        let v = s.pay(FRICTIONLESS, "cli-usd", json!({"three_ds": "auto", "amount": 6_000})).await;
        assert_eq!(v["result"]["three_ds"]["trans_status"], "Y", "{v}");
        s.saw(&v.to_string());
        no_card_numbers(&s, "").await;
        s.finish().await;
    }
}
