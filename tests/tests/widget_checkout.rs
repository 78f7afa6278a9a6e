//! The payment widget end to end in a real headless Chromium: the real vault (mTLS),
//! sandbox (card network, 3-D Secure DS and ACS), card intake and gateway, on SQLite and
//! PostgreSQL.
//!
//! * The hosted page (`/checkout/{id}`): a frictionless card, a challenge card with the
//!   right code, a decline then a good card on the same checkout, an expired and a
//!   cancelled checkout. The buyer lands at the shop with a signed result that verifies;
//!   `checkout.check` agrees each time.
//! * Saved cards: a checkout with `customer_id` and `save_card` keeps the card; it is in
//!   `card.list` and pays through `payment.create`; another customer with the same card
//!   gets a token of its own; the same customer again keeps the one card.
//! * The embedded form (`paysys.js`) on a partner page served from another loopback
//!   origin: allowed, it pays; not allowed, CORS refuses the attempt, the card frame
//!   refuses to be framed (`frame-ancestors`), and messages from the wrong window or
//!   origin are ignored.
//! * A screenshot of each state the buyer sees (phone-sized window) under the test's
//!   scratch directory, copied to `PAYSYS_SCREENSHOT_DIR` when it is set.
//! * Afterwards no test card number in the gateway's database, the gateway's and the
//!   intake's logs, the answers and page sources the test saw, nor the vault's database;
//!   and nothing in the intake's working directory.
//!
//! The browser tests take turns (one Chromium at a time: CI machines are small). Without
//! chromedriver they are skipped with a message, unless `PAYSYS_REQUIRE_BROWSER=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use fantoccini::elements::Element;
use fantoccini::Locator;
use http_body_util::Full;
use paysys_gateway::secrets::MerchantSecret;
use paysys_test_support::cards::{CHALLENGE, FRICTIONLESS, MASTERCARD, VISA};
use paysys_test_support::dump::database_dump;
use paysys_tests::browser::{Browser, ReturnSite};
use paysys_tests::gateway::{start_vault_and_sandbox, GatewayOptions, TestGateway};
use paysys_tests::intake::{IntakeOptions, TestIntake};
use paysys_tests::{backends, bin_path, scratch_dir, Backend, TestSandbox, TestVault, GATEWAY_BIN};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The generic decline (`05`, do not honor) of the sandbox's table.
const DECLINED: &str = "4000000000000002";
/// A Visa number that fails the Luhn check (the frame refuses it before sending).
const BAD_LUHN: &str = "4242424242424241";
/// Every number the tests type, for the scans.
const TYPED_CARDS: [&str; 6] = [FRICTIONLESS, CHALLENGE, VISA, DECLINED, BAD_LUHN, MASTERCARD];
/// A phone-sized window for the screenshots (an iPhone 12-14's CSS pixels).
const PHONE: (u32, u32) = (390, 844);
/// How long anything in the browser may take on a loaded two-core machine.
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(150);

/// One Chromium at a time across the tests of this file.
static BROWSER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- the stack ----

/// Vault, sandbox, intake and gateway wired as `paysys up` wires them: the gateway
/// signs grants with a key made by `paysys-gateway grant-key new`, the intake trusts its
/// public half.
struct Stack {
    backend: &'static str,
    vault: TestVault,
    sandbox: TestSandbox,
    intake: TestIntake,
    gateway: TestGateway,
    site: ReturnSite,
    screens: Screens,
    /// Every answer and page source the test saw, for the no-card scan.
    seen: Mutex<String>,
}

impl Stack {
    async fn start(backend: &Backend, test: &str) -> Stack {
        let (vault, sandbox) = start_vault_and_sandbox(backend, 60_000).await;
        let key = vault.dir.join("grant-gw.key");
        let out = tokio::process::Command::new(bin_path(GATEWAY_BIN))
            .args(["grant-key", "new", "--out"])
            .arg(&key)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let public = vault.dir.join("grant-gw.pub");
        std::fs::write(&public, String::from_utf8(out.stdout).unwrap()).unwrap();
        let intake_options = IntakeOptions {
            extra_args: vec!["--grant-public-key".into(), format!("gw={}", public.display())],
            ..IntakeOptions::default()
        };
        let intake = TestIntake::start(&vault, intake_options).await;
        let options = GatewayOptions {
            extra_args: vec![
                "--intake-url".into(),
                intake.url.clone(),
                "--grant-key".into(),
                format!("gw={}", key.display()),
            ],
            ..GatewayOptions::default()
        };
        let gateway = TestGateway::start(&vault, &sandbox, backend, options).await;
        Stack {
            backend: backend.name(),
            vault,
            sandbox,
            intake,
            gateway,
            site: ReturnSite::start().await,
            screens: Screens::new(&format!("{test}-{}", backend.name())),
            seen: Mutex::new(String::new()),
        }
    }

    fn saw(&self, text: &str) {
        self.seen.lock().unwrap().push_str(text);
        self.seen.lock().unwrap().push('\n');
    }

    async fn ok(&self, method: &str, params: Value) -> Value {
        let v = self.gateway.call(method, params).await;
        self.saw(&v.to_string());
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// `checkout.create` for 1,500.00 UZS returning to the shop, with `extra` params.
    async fn create_checkout(&self, partner_trans_id: &str, extra: Value) -> Value {
        let mut params = json!({
            "amount": 150_000, "currency": "UZS", "partner_trans_id": partner_trans_id,
            "return_url": self.site.url, "description": "Order 1042: a teapot and two cups",
        });
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let created = self.ok("checkout.create", params).await;
        assert_eq!(created["status"], "open", "{created}");
        created
    }

    async fn check(&self, checkout_id: &str) -> Value {
        self.ok("checkout.check", json!({"checkout_id": checkout_id})).await
    }

    /// The browser's page source (and the card frame's, when inside it) into `seen`.
    async fn saw_page(&self, b: &Browser) {
        let source = b.client.source().await.unwrap();
        self.saw(&source);
    }

    /// Verify the signed return the shop received for a paid checkout; its query.
    fn check_paid_return(&self, checkout_id: &str) -> Vec<(String, String)> {
        let q = self.site.last_query().expect("the shop saw no return");
        assert_eq!(query(&q, "checkout_id"), checkout_id, "{q:?}");
        let secret = MerchantSecret::from_text(&self.gateway.secret);
        let ts: i64 = query(&q, "ts").parse().unwrap();
        let tx = query(&q, "transaction_id");
        let expected = paysys_gateway::auth::return_signature(&secret, tx, query(&q, "status"), ts);
        assert_eq!(query(&q, "signature"), expected, "the return signature does not verify: {q:?}");
        let forged = paysys_gateway::auth::return_signature(&secret, tx, "failed", ts);
        assert_ne!(query(&q, "signature"), forged);
        q
    }

    /// Verify the signed status link of an expired or cancelled checkout.
    fn check_status_return(&self, checkout_id: &str, status: &str) {
        let q = self.site.last_query().expect("the shop saw no return");
        assert_eq!(query(&q, "checkout_id"), checkout_id, "{q:?}");
        assert_eq!(query(&q, "status"), status, "{q:?}");
        let secret = MerchantSecret::from_text(&self.gateway.secret);
        let ts: i64 = query(&q, "ts").parse().unwrap();
        let expected = paysys_gateway::auth::return_signature(&secret, checkout_id, status, ts);
        assert_eq!(query(&q, "signature"), expected, "the status signature does not verify: {q:?}");
    }

    /// No card number anywhere the tests can look; nothing on the intake's disk.
    async fn assert_no_card_numbers(&self) {
        let gateway_db = String::from_utf8_lossy(&self.gateway.database_bytes().await).into_owned();
        let vault_db = String::from_utf8_lossy(&database_dump(&self.vault.db.url).await).into_owned();
        let gateway_log = self.gateway.log_text();
        let intake_log = self.intake.log_text();
        let seen = self.seen.lock().unwrap().clone();
        assert!(!gateway_log.is_empty() && !intake_log.is_empty() && !seen.is_empty());
        for (what, text) in [
            ("the gateway's database", &gateway_db),
            ("the vault's database", &vault_db),
            ("the gateway's log", &gateway_log),
            ("the intake's log", &intake_log),
            ("the answers and pages the test saw", &seen),
        ] {
            for pan in TYPED_CARDS {
                assert!(!holds(text, pan), "card number {}… in {what}", &pan[..6]);
            }
        }
        assert_eq!(self.intake.files_written(), Vec::<PathBuf>::new(), "the intake wrote to its working directory");
    }

    async fn finish(self) {
        let Stack { vault, sandbox, intake, gateway, .. } = self;
        intake.stop().await;
        gateway.finish().await;
        sandbox.stop().await;
        vault.finish().await;
    }
}

/// Whether `text` holds `pan`: its digits, grouped by spaces or dashes as the frame
/// formats them, or the hex of its ASCII.
fn holds(text: &str, pan: &str) -> bool {
    let hex: String = pan.bytes().map(|b| format!("{b:02x}")).collect();
    let squeezed: String = text.chars().filter(|c| !matches!(c, ' ' | '-' | '\u{a0}')).collect();
    text.contains(pan) || squeezed.contains(pan) || text.contains(&hex)
}

fn query<'a>(q: &'a [(String, String)], key: &str) -> &'a str {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {key} in {q:?}"))
}

// ---- screenshots ----

/// PNGs of the states the buyer sees, named `{test}-{backend}-{state}.png`.
struct Screens {
    dir: PathBuf,
    prefix: String,
}

impl Screens {
    fn new(prefix: &str) -> Screens {
        Screens { dir: scratch_dir("widget-screens"), prefix: prefix.to_owned() }
    }

    async fn take(&self, b: &Browser, state: &str) -> PathBuf {
        let png = b.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a screenshot is not a PNG");
        let name = format!("{}-{state}.png", self.prefix);
        let path = self.dir.join(&name);
        std::fs::write(&path, &png).unwrap();
        if let Some(out) = std::env::var_os("PAYSYS_SCREENSHOT_DIR") {
            let out = PathBuf::from(out);
            std::fs::create_dir_all(&out).unwrap();
            std::fs::copy(&path, out.join(&name)).unwrap();
        }
        path
    }
}

/// Width and height of a PNG (its IHDR).
fn png_size(path: &Path) -> (u32, u32) {
    let png = std::fs::read(path).unwrap();
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

// ---- driving the browser ----

/// Size the window so that the page's viewport is [`PHONE`] (the window's own frame
/// takes some of a window's size, how much depends on the Chromium version).
async fn phone_window(b: &Browser) {
    b.client.set_window_size(PHONE.0, PHONE.1).await.unwrap();
    let inner = b.client.execute("return [window.innerWidth, window.innerHeight];", vec![]).await.unwrap();
    let (w, h) = (inner[0].as_u64().unwrap() as u32, inner[1].as_u64().unwrap() as u32);
    b.client.set_window_size(2 * PHONE.0 - w, 2 * PHONE.1 - h).await.unwrap();
}

async fn find(b: &Browser, css: &str) -> Option<Element> {
    b.client.find(Locator::Css(css)).await.ok()
}

/// Wait (generously) for an element.
async fn wait_css(b: &Browser, css: &str) -> Element {
    let started = Instant::now();
    while started.elapsed() < WAIT {
        if let Some(e) = find(b, css).await {
            return e;
        }
        tokio::time::sleep(POLL).await;
    }
    let url = b.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
    let source = b.client.source().await.unwrap_or_default();
    panic!("no element {css} at {url}:\n{source}");
}

/// Wait for the current URL to satisfy `pred`.
async fn wait_url(b: &Browser, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    while started.elapsed() < WAIT {
        if let Ok(url) = b.client.current_url().await {
            if pred(url.as_str()) {
                return url.to_string();
            }
        }
        tokio::time::sleep(POLL).await;
    }
    let url = b.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
    let source = b.client.source().await.unwrap_or_default();
    panic!("the browser never reached {what}; at {url}:\n{source}");
}

/// The hosted page's state (`main#checkout[data-state]`).
async fn page_state(b: &Browser) -> String {
    match find(b, "main#checkout").await {
        Some(main) => main.attr("data-state").await.ok().flatten().unwrap_or_default(),
        None => String::new(),
    }
}

/// Open a checkout's page and wait until its card form is ready.
async fn open_checkout(b: &Browser, url: &str) {
    b.client.goto(url).await.unwrap();
    wait_css(b, "main#checkout[data-state=\"ready\"]").await;
}

/// Type a card into the card frame inside `frame_css` (then back to the page). The
/// frame must be ready; the fields are cleared first.
async fn type_card(b: &Browser, frame_css: &str, pan: &str) {
    let frame = wait_css(b, frame_css).await;
    frame.enter_frame().await.unwrap();
    wait_css(b, "form#card[data-state=\"ready\"]").await;
    for (css, value) in [("#number", pan), ("#exp", "1231"), ("#cvc", "123"), ("#holder", "ANA BUYER")] {
        let field = wait_css(b, css).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }
    b.client.enter_parent_frame().await.unwrap();
}

/// Switch into the card frame `frame_css` (back with `leave_frame`).
async fn enter_frame(b: &Browser, frame_css: &str) {
    wait_css(b, frame_css).await.enter_frame().await.unwrap();
}

async fn leave_frame(b: &Browser) {
    b.client.enter_parent_frame().await.unwrap();
}

/// Post a forged `paysys:token` to the page from the page itself (wrong window, wrong
/// origin), then a marker; once the marker arrives every listener has seen the forged
/// one. What `after` (a JS expression) says then.
async fn forged_token_then(b: &Browser, after: &str) -> Value {
    let script = format!(
        "var done = arguments[arguments.length - 1];\
         window.addEventListener('message', function m(e) {{\
           if (e.data !== 'paysys-test-marker') return;\
           window.removeEventListener('message', m); done({after});\
         }});\
         window.postMessage({{type: 'paysys:token', token: 'tok_forged', brand: 'visa', last4: '4242'}}, '*');\
         window.postMessage({{type: 'paysys:ready'}}, '*');\
         window.postMessage('paysys-test-marker', '*');"
    );
    b.client.execute_async(&script, vec![]).await.unwrap()
}

/// Click the pay button; the waiting state is caught for a screenshot when it can be.
async fn pay_and_catch_waiting(s: &Stack, b: &Browser, shot: bool) {
    wait_css(b, "button#pay:not([disabled])").await.click().await.unwrap();
    if shot && page_state(b).await == "paying" {
        s.screens.take(b, "waiting").await;
    }
}

// ---- the hosted page ----

async fn hosted_frictionless(s: &Stack, b: &Browser) {
    let created = s.create_checkout("hosted-frictionless", json!({"three_ds": "force"})).await;
    let id = created["checkout_id"].as_str().unwrap();
    let url = created["url"].as_str().unwrap();
    assert_eq!(url, format!("{}/checkout/{id}", s.gateway.url));
    open_checkout(b, url).await;
    // What the buyer sees first: the merchant, the amount, the description, a pay
    // button that carries the amount.
    assert_eq!(wait_css(b, "#merchant-name").await.text().await.unwrap(), "Test shop");
    let amount = wait_css(b, "#amount").await.text().await.unwrap();
    assert!(amount.contains("500"), "{amount}");
    assert!(wait_css(b, "#description").await.text().await.unwrap().contains("teapot"));
    let pay_label = wait_css(b, "button#pay").await.text().await.unwrap();
    assert!(pay_label.contains("500"), "the pay button carries the amount: {pay_label}");
    s.saw_page(b).await;
    let form = s.screens.take(b, "form").await;
    assert_eq!(png_size(&form), PHONE, "the screenshots are phone-sized");

    // A forged token from the page's own window is ignored: the form stays ready.
    let state = forged_token_then(b, "document.getElementById('checkout').getAttribute('data-state')").await;
    assert_eq!(state, "ready", "the page acted on a message that was not the frame's");

    // The frame: brand from the BIN, a mistyped number refused next to its field.
    type_card(b, "#card-iframe", BAD_LUHN).await;
    wait_css(b, "button#pay:not([disabled])").await.click().await.unwrap();
    enter_frame(b, "#card-iframe").await;
    let error = wait_css(b, "#number-error:not([hidden])").await.text().await.unwrap();
    assert_eq!(wait_css(b, "#brand").await.attr("data-brand").await.unwrap().as_deref(), Some("visa"));
    let number = wait_css(b, "#number").await;
    assert_eq!(number.attr("autocomplete").await.unwrap().as_deref(), Some("cc-number"));
    assert!(number.prop("value").await.unwrap().unwrap().contains(' '), "the number is formatted as typed");
    s.saw_page(b).await;
    leave_frame(b).await;
    assert!(!error.is_empty(), "no error next to the number");
    wait_css(b, "main#checkout[data-state=\"ready\"]").await;
    s.screens.take(b, "field-error").await;

    type_card(b, "#card-iframe", FRICTIONLESS).await;
    pay_and_catch_waiting(s, b, true).await;
    wait_url(b, "the shop", |u| u.starts_with(&s.site.url)).await;
    wait_css(b, "#returned").await;
    let q = s.check_paid_return(id);
    assert_eq!(query(&q, "status"), "captured", "{q:?}");
    assert_eq!(query(&q, "partner_trans_id"), "hosted-frictionless");
    let checked = s.check(id).await;
    assert_eq!(checked["status"], "completed", "{checked}");
    assert_eq!(checked["transaction_id"], query(&q, "transaction_id"));
    assert_eq!(checked["payment"]["status"], "captured", "{checked}");
    assert_eq!(checked["payment"]["three_ds"]["trans_status"], "Y", "{checked}");
    assert_eq!(checked["payment"]["three_ds"]["challenge"], false, "{checked}");

    // The page again: the success screen, its button back to the shop.
    b.client.goto(url).await.unwrap();
    wait_css(b, "section.outcome[data-outcome=\"success\"]").await;
    s.saw_page(b).await;
    s.screens.take(b, "success").await;
}

async fn hosted_challenge(s: &Stack, b: &Browser) {
    let created = s.create_checkout("hosted-challenge", json!({"three_ds": "force", "language": "ru"})).await;
    let id = created["checkout_id"].as_str().unwrap();
    open_checkout(b, created["url"].as_str().unwrap()).await;
    let html_lang = wait_css(b, "html").await.attr("lang").await.unwrap();
    assert_eq!(html_lang.as_deref(), Some("ru"), "the checkout's language");
    s.screens.take(b, "form-ru").await;
    // The language switch: the page and the card frame in Uzbek.
    wait_css(b, "nav.langs a[data-lang=\"uz\"]").await.click().await.unwrap();
    wait_url(b, "the Uzbek page", |u| u.contains("lang=uz")).await;
    wait_css(b, "html[lang=\"uz\"] main#checkout[data-state=\"ready\"]").await;
    enter_frame(b, "#card-iframe").await;
    wait_css(b, "form#card[data-lang=\"uz\"]").await;
    leave_frame(b).await;
    s.screens.take(b, "form-uz").await;
    type_card(b, "#card-iframe", CHALLENGE).await;
    pay_and_catch_waiting(s, b, false).await;
    // The same tab goes to the ACS.
    let otp = wait_css(b, "#otp").await;
    s.saw_page(b).await;
    s.screens.take(b, "challenge").await;
    assert_eq!(s.check(id).await["status"], "processing");
    otp.send_keys("123456").await.unwrap();
    wait_css(b, "#submit").await.click().await.unwrap();
    wait_url(b, "the shop", |u| u.starts_with(&s.site.url)).await;
    wait_css(b, "#returned").await;
    let q = s.check_paid_return(id);
    assert_eq!(query(&q, "status"), "captured", "{q:?}");
    let checked = s.check(id).await;
    assert_eq!(checked["status"], "completed", "{checked}");
    assert_eq!(checked["payment"]["three_ds"]["challenge"], true, "{checked}");
    assert_eq!(checked["payment"]["three_ds"]["trans_status"], "Y", "{checked}");
}

async fn hosted_decline_then_good_card(s: &Stack, b: &Browser) {
    let created = s.create_checkout("hosted-decline", json!({})).await;
    let id = created["checkout_id"].as_str().unwrap();
    open_checkout(b, created["url"].as_str().unwrap()).await;
    type_card(b, "#card-iframe", DECLINED).await;
    pay_and_catch_waiting(s, b, false).await;
    wait_css(b, "main#checkout[data-state=\"declined\"]").await;
    let message = wait_css(b, "#decline-message").await.text().await.unwrap();
    assert!(!message.is_empty(), "a decline says why");
    let left = wait_css(b, "#attempts-left").await.text().await.unwrap();
    assert!(left.contains('4'), "{left}");
    s.saw_page(b).await;
    s.screens.take(b, "declined").await;
    let checked = s.check(id).await;
    assert_eq!(checked["status"], "open", "a decline leaves the checkout open: {checked}");
    assert_eq!(checked["attempts"], 1, "{checked}");
    let declined_tx = checked["transaction_id"].as_str().map(str::to_owned);

    // Another card on the same checkout: a new attempt, a new frame.
    wait_css(b, "button#retry").await.click().await.unwrap();
    wait_css(b, "main#checkout[data-state=\"ready\"]").await;
    type_card(b, "#card-iframe", VISA).await;
    pay_and_catch_waiting(s, b, false).await;
    wait_url(b, "the shop", |u| u.starts_with(&s.site.url)).await;
    let q = s.check_paid_return(id);
    assert_eq!(query(&q, "status"), "captured");
    let checked = s.check(id).await;
    assert_eq!(checked["status"], "completed", "{checked}");
    assert_eq!(checked["attempts"], 2, "{checked}");
    assert_eq!(checked["transaction_id"], query(&q, "transaction_id"));
    assert_ne!(checked["transaction_id"].as_str().map(str::to_owned), declined_tx);
}

async fn hosted_cancelled(s: &Stack, b: &Browser) {
    let created =
        s.create_checkout("hosted-cancelled", json!({"cancel_url": format!("{}?cancelled=1", s.site.url)})).await;
    let id = created["checkout_id"].as_str().unwrap();
    open_checkout(b, created["url"].as_str().unwrap()).await;
    // The merchant cancels while the buyer types; paying shows the cancellation.
    assert_eq!(s.ok("checkout.cancel", json!({"checkout_id": id})).await["status"], "cancelled");
    type_card(b, "#card-iframe", VISA).await;
    wait_css(b, "button#pay:not([disabled])").await.click().await.unwrap();
    wait_css(b, "section.outcome[data-outcome=\"cancelled\"]").await;
    s.saw_page(b).await;
    s.screens.take(b, "cancelled").await;
    let checked = s.check(id).await;
    assert_eq!(checked["status"], "cancelled", "{checked}");
    assert!(checked.get("transaction_id").is_none(), "nothing was paid: {checked}");
    wait_css(b, "a#continue").await.click().await.unwrap();
    wait_url(b, "the shop's cancel page", |u| u.starts_with(&s.site.url) && u.contains("cancelled=1")).await;
    s.check_status_return(id, "cancelled");
}

/// `checkout` was created with the shortest lifetime at the start of the test.
async fn hosted_expired(s: &Stack, b: &Browser, checkout: &Value) {
    let id = checkout["checkout_id"].as_str().unwrap();
    let started = Instant::now();
    loop {
        let status = s.check(id).await["status"].as_str().unwrap().to_owned();
        if status == "expired" {
            break;
        }
        assert_eq!(status, "open");
        assert!(started.elapsed() < Duration::from_secs(120), "the checkout never expired");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A stale tab pays: the page shows the expiry.
    b.client.goto(checkout["url"].as_str().unwrap()).await.unwrap();
    wait_css(b, "section.outcome[data-outcome=\"expired\"]").await;
    s.saw_page(b).await;
    s.screens.take(b, "expired").await;
    wait_css(b, "a#continue").await.click().await.unwrap();
    wait_url(b, "the shop", |u| u.starts_with(&s.site.url)).await;
    s.check_status_return(id, "expired");
    assert_eq!(s.check(id).await["status"], "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosted_checkout_in_a_real_browser() {
    let _turn = BROWSER_TURN.lock().await;
    let Some(b) = Browser::start().await else { return };
    phone_window(&b).await;
    for backend in backends() {
        let s = Stack::start(&backend, "hosted").await;
        // Made first, expired by the time the other cases are done.
        let expiring = s.create_checkout("hosted-expired", json!({"expires_in_sec": 60})).await;
        hosted_frictionless(&s, &b).await;
        hosted_challenge(&s, &b).await;
        hosted_decline_then_good_card(&s, &b).await;
        hosted_cancelled(&s, &b).await;
        hosted_expired(&s, &b, &expiring).await;
        s.assert_no_card_numbers().await;
        eprintln!("{}: screenshots in {}", s.backend, s.screens.dir.display());
        s.finish().await;
    }
    b.close().await;
}

// ---- saved cards ----

/// Pay a checkout on the hosted page with `pan`; lands at the shop.
async fn pay_on_hosted_page(s: &Stack, b: &Browser, url: &str, pan: &str) {
    open_checkout(b, url).await;
    type_card(b, "#card-iframe", pan).await;
    pay_and_catch_waiting(s, b, false).await;
    wait_url(b, "the shop", |u| u.starts_with(&s.site.url)).await;
}

async fn saved_cards(s: &Stack, b: &Browser) {
    let save = |customer: &str| json!({"customer_id": customer, "save_card": true});
    let first = s.create_checkout("save-ana-1", save("cus_ana")).await;
    let first_id = first["checkout_id"].as_str().unwrap();
    pay_on_hosted_page(s, b, first["url"].as_str().unwrap(), VISA).await;
    s.check_paid_return(first_id);
    let checked = s.check(first_id).await;
    assert_eq!((checked["status"].as_str(), checked["customer_id"].as_str()), (Some("completed"), Some("cus_ana")));

    let listed = s.ok("card.list", json!({"customer_id": "cus_ana"})).await;
    let cards = listed["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{listed}");
    let card = &cards[0];
    assert_eq!(card["masked_number"], "424242******4242", "{card}");
    assert_eq!((card["exp_month"].as_i64(), card["exp_year"].as_i64()), (Some(12), Some(2031)));
    assert_eq!(card["brand"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("visa"));
    let ana_token = card["token"].as_str().unwrap().to_owned();

    // The saved token pays without the buyer, as any token does.
    let paid = s
        .ok(
            "payment.create",
            json!({"card_token": ana_token, "amount": 99_000, "currency": "UZS",
                   "partner_trans_id": "saved-ana-1", "three_ds": "skip"}),
        )
        .await;
    assert_eq!(paid["status"], "captured", "{paid}");

    // Another customer with the same card: a token of its own.
    let second = s.create_checkout("save-bob-1", save("cus_bob")).await;
    pay_on_hosted_page(s, b, second["url"].as_str().unwrap(), VISA).await;
    s.check_paid_return(second["checkout_id"].as_str().unwrap());
    let bob = s.ok("card.list", json!({"customer_id": "cus_bob"})).await;
    let bob_cards = bob["cards"].as_array().unwrap();
    assert_eq!(bob_cards.len(), 1, "{bob}");
    let bob_token = bob_cards[0]["token"].as_str().unwrap().to_owned();
    assert_ne!(bob_token, ana_token, "two customers share a token");
    assert_eq!(bob_cards[0]["masked_number"], "424242******4242");

    // The first customer again with the same card: still the one card, the first token.
    let third = s.create_checkout("save-ana-2", save("cus_ana")).await;
    pay_on_hosted_page(s, b, third["url"].as_str().unwrap(), VISA).await;
    s.check_paid_return(third["checkout_id"].as_str().unwrap());
    let again = s.ok("card.list", json!({"customer_id": "cus_ana"})).await;
    let tokens: Vec<&str> = again["cards"].as_array().unwrap().iter().map(|c| c["token"].as_str().unwrap()).collect();
    assert_eq!(tokens, vec![ana_token.as_str()], "{again}");
    // A customer nobody saved a card for has none.
    assert_eq!(s.ok("card.list", json!({"customer_id": "cus_nobody"})).await["cards"], json!([]));
    // Bob's token still pays, Ana's too.
    for (token, ptid) in [(&bob_token, "saved-bob-1"), (&ana_token, "saved-ana-2")] {
        let paid = s
            .ok(
                "payment.create",
                json!({"card_token": token, "amount": 1_000, "currency": "UZS",
                       "partner_trans_id": ptid, "three_ds": "skip"}),
            )
            .await;
        assert_eq!(paid["status"], "captured", "{paid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saved_cards_through_the_hosted_page() {
    let _turn = BROWSER_TURN.lock().await;
    let Some(b) = Browser::start().await else { return };
    phone_window(&b).await;
    for backend in backends() {
        let s = Stack::start(&backend, "saved").await;
        saved_cards(&s, &b).await;
        s.assert_no_card_numbers().await;
        s.finish().await;
    }
    b.close().await;
}

// ---- the embedded form on partners' pages ----

/// A partner's web server on its own loopback origin: answers every request with the
/// page the test set.
struct PartnerSite {
    origin: String,
    page: Arc<Mutex<String>>,
}

impl PartnerSite {
    async fn start() -> PartnerSite {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let page = Arc::new(Mutex::new(String::new()));
        let served = page.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let served = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                        let body = served.lock().unwrap().clone();
                        async move {
                            hyper::Response::builder()
                                .header("content-type", "text/html; charset=utf-8")
                                .header("cache-control", "no-store")
                                .body(Full::new(Bytes::from(body)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        PartnerSite { origin: format!("http://{addr}"), page }
    }

    fn url(&self) -> String {
        format!("{}/shop/pay", self.origin)
    }

    /// The partner's page: loads `paysys.js` from the gateway with its integrity value,
    /// records every event of the form and every message the page receives (`ol#events`,
    /// `ol#messages`, `li[data-name]`), and mounts the form (`mount`) and/or frames a
    /// card frame URL directly (`frame_url`, as `iframe#raw-frame[data-loaded]`).
    fn serve(&self, gateway_url: &str, config: Value) {
        let sri = &paysys_widget::pages::asset("paysys.js").unwrap().integrity;
        let page = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Partner shop</title>\
             <script src=\"{gateway_url}/widget/paysys.js\" integrity=\"{sri}\" crossorigin=\"anonymous\"></script>\
             </head><body><h1>Partner shop</h1><p>Tea set, 1 500 UZS</p><div id=\"pay-form\"></div>\
             <button id=\"pay\" type=\"button\">Pay</button><div id=\"raw\"></div>\
             <ol id=\"events\"></ol><ol id=\"messages\"></ol><script>\
             var config = {config};\
             function record(list, name, detail) {{ var li = document.createElement('li');\
               li.setAttribute('data-name', name); li.textContent = JSON.stringify(detail);\
               document.getElementById(list).appendChild(li); }}\
             window.addEventListener('message', function (e) {{\
               record('messages', (e.data && e.data.type) || String(e.data), {{origin: e.origin}}); }});\
             if (config.mount) {{\
               var form = PaySys.mount('#pay-form', {{checkoutId: config.checkoutId,\
                 clientSecret: config.clientSecret, gatewayUrl: config.gatewayUrl, lang: 'en',\
                 style: {{accent: '#7b2cbf', radius: '10px'}}}});\
               ['ready', 'token', 'success', 'challenge', 'declined', 'processing', 'error'].forEach(function (n) {{\
                 form.on(n, function (d) {{ record('events', n, d || {{}});\
                   if (n === 'success' || n === 'challenge') window.location.assign(d.redirect_url); }}); }});\
               document.getElementById('pay').addEventListener('click', function () {{ form.submit(); }});\
             }}\
             if (config.frameUrl) {{ var f = document.createElement('iframe'); f.id = 'raw-frame';\
               f.addEventListener('load', function () {{ f.setAttribute('data-loaded', '1'); }});\
               f.src = config.frameUrl; document.getElementById('raw').appendChild(f); }}\
             </script></body></html>"
        );
        *self.page.lock().unwrap() = page;
    }
}

/// A browser's `POST` to the gateway with `Origin`, on a fresh connection: status and
/// body.
async fn browser_post(base: &str, path: &str, origin: &str, body: Value) -> (u16, Value) {
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
    let status = head.lines().next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The names recorded in `ol#{list}` of the partner page.
async fn recorded(b: &Browser, list: &str) -> Vec<String> {
    let script = format!(
        "return Array.from(document.querySelectorAll('#{list} li')).map(function (li) {{\
           return li.getAttribute('data-name'); }});"
    );
    let v = b.client.execute(&script, vec![]).await.unwrap();
    v.as_array().unwrap().iter().map(|n| n.as_str().unwrap_or_default().to_owned()).collect()
}

async fn embedded_allowed(s: &Stack, b: &Browser, shop: &PartnerSite) {
    let created = s.create_checkout("embedded-allowed", json!({})).await;
    let id = created["checkout_id"].as_str().unwrap();
    shop.serve(
        &s.gateway.url,
        json!({"mount": true, "checkoutId": id, "clientSecret": created["client_secret"],
               "gatewayUrl": s.gateway.url}),
    );
    b.client.goto(&shop.url()).await.unwrap();
    wait_css(b, ".paysys-card-form[data-state=\"ready\"]").await;
    assert!(recorded(b, "events").await.contains(&"ready".to_owned()));
    s.screens.take(b, "embedded").await;
    // A forged token from the partner page's own window: no event, no payment.
    let events = forged_token_then(b, "Array.from(document.querySelectorAll('#events li')).length").await;
    assert_eq!(events, json!(1), "only the frame's ready was an event");

    type_card(b, "iframe.paysys-card-frame", VISA).await;
    wait_css(b, "button#pay").await.click().await.unwrap();
    wait_url(b, "the shop", |u| u.starts_with(&s.site.url)).await;
    let q = s.check_paid_return(id);
    assert_eq!(query(&q, "status"), "captured");
    let checked = s.check(id).await;
    assert_eq!(checked["status"], "completed", "{checked}");
}

async fn embedded_not_allowed(s: &Stack, b: &Browser, shop: &PartnerSite, stranger: &PartnerSite) {
    let created = s.create_checkout("embedded-stranger", json!({})).await;
    let id = created["checkout_id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();

    // paysys.js on an origin the merchant does not allow: CORS refuses the attempt.
    stranger.serve(
        &s.gateway.url,
        json!({"mount": true, "checkoutId": id, "clientSecret": secret, "gatewayUrl": s.gateway.url}),
    );
    b.client.goto(&stranger.url()).await.unwrap();
    wait_css(b, ".paysys-card-form[data-state=\"failed\"]").await;
    assert!(find(b, "iframe.paysys-card-frame").await.is_none(), "a card frame on an origin not allowed");
    let events = recorded(b, "events").await;
    assert_eq!(events, vec!["error".to_owned()], "{events:?}");
    // The browser refused to hand the gateway's answer to the page: no CORS for it.
    let detail = b.client.execute("return document.querySelector('#events li').textContent;", vec![]).await.unwrap();
    let detail: Value = serde_json::from_str(detail.as_str().unwrap()).unwrap();
    assert_eq!(detail["code"], "network_error", "the page read the gateway's refusal: {detail}");
    s.saw_page(b).await;
    s.screens.take(b, "embedded-refused").await;
    assert_eq!(s.check(id).await["attempts"], 0, "an attempt from an origin not allowed");

    // A card frame lifted into the stranger's page: the frame for the shop's origin
    // does not render there (frame-ancestors).
    let path = format!("/checkout/{id}/attempts");
    let (status, attempt) =
        browser_post(&s.gateway.url, &path, &shop.origin, json!({"client_secret": secret, "origin": shop.origin}))
            .await;
    assert_eq!(status, 200, "{attempt}");
    s.saw(&attempt.to_string());
    let frame_url = attempt["frame_url"].as_str().unwrap().to_owned();
    stranger.serve(&s.gateway.url, json!({"frameUrl": frame_url}));
    b.client.goto(&stranger.url()).await.unwrap();
    wait_css(b, "iframe#raw-frame[data-loaded]").await;
    enter_frame(b, "iframe#raw-frame").await;
    let rendered = find(b, "form#card").await.is_some();
    leave_frame(b).await;
    assert!(!rendered, "the card frame rendered inside a page of another origin");

    // The same frame in the shop's own page renders (the refusal above was the origin's).
    shop.serve(&s.gateway.url, json!({"frameUrl": frame_url}));
    b.client.goto(&shop.url()).await.unwrap();
    wait_css(b, "iframe#raw-frame[data-loaded]").await;
    enter_frame(b, "iframe#raw-frame").await;
    wait_css(b, "form#card[data-state=\"ready\"]").await;
    leave_frame(b).await;

    // A frame asked for the stranger's origin but carrying the shop's grant: it renders
    // (frame-ancestors is the stranger's) but refuses the grant, never says ready, and
    // ignores the stranger's submit.
    let (status, attempt) =
        browser_post(&s.gateway.url, &path, &shop.origin, json!({"client_secret": secret, "origin": shop.origin}))
            .await;
    assert_eq!(status, 200, "{attempt}");
    let shop_grant = attempt["frame_url"].as_str().unwrap().split_once("#grant=").unwrap().1.to_owned();
    let mut lifted = url::Url::parse(&format!("{}/v1/frame", s.intake.url)).unwrap();
    lifted.query_pairs_mut().append_pair("origin", &stranger.origin).append_pair("lang", "en");
    lifted.set_fragment(Some(&format!("grant={shop_grant}")));
    stranger.serve(&s.gateway.url, json!({"frameUrl": lifted.to_string()}));
    b.client.goto(&stranger.url()).await.unwrap();
    wait_css(b, "iframe#raw-frame[data-loaded]").await;
    enter_frame(b, "iframe#raw-frame").await;
    wait_css(b, "form#card[data-state=\"failed\"]").await;
    leave_frame(b).await;
    // The stranger asks it to submit; then a marker to itself: by then the frame has
    // handled the submit (messages keep their order per sender) and answered if at all.
    let answer = b
        .client
        .execute_async(
            "var done = arguments[arguments.length - 1];\
             var frame = document.getElementById('raw-frame').contentWindow;\
             frame.postMessage({type: 'paysys:submit'}, '*');\
             setTimeout(function () { done(true); }, 0);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(answer, json!(true));
    enter_frame(b, "iframe#raw-frame").await;
    let state = wait_css(b, "form#card").await.attr("data-state").await.unwrap();
    leave_frame(b).await;
    assert_eq!(state.as_deref(), Some("failed"), "the frame acted on the stranger's submit");
    let messages = recorded(b, "messages").await;
    assert!(
        !messages.iter().any(|m| m == "paysys:ready" || m == "paysys:token"),
        "the lifted frame talked to the stranger: {messages:?}"
    );
    assert_eq!(s.check(id).await["status"], "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_form_on_partner_origins() {
    let _turn = BROWSER_TURN.lock().await;
    let Some(b) = Browser::start().await else { return };
    phone_window(&b).await;
    for backend in backends() {
        let s = Stack::start(&backend, "embedded").await;
        let shop = PartnerSite::start().await;
        let stranger = PartnerSite::start().await;
        s.gateway.merchant_command(&["update", "--merchant-id", "m_1", "--allowed-origin", &shop.origin]).await;
        embedded_allowed(&s, &b, &shop).await;
        embedded_not_allowed(&s, &b, &shop, &stranger).await;
        s.assert_no_card_numbers().await;
        s.finish().await;
    }
    b.close().await;
}
