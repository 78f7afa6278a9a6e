//! The payment widget's gateway side over real sockets, on [`super::Harness`]: the
//! store of checkouts, attempts, saved cards and merchant settings (SQLite and
//! PostgreSQL); `checkout.create`/`check`/`cancel`, idempotency and validation; grants
//! (checked with the intake's [`GrantVerifier`]); the browser endpoints with their
//! headers and CORS; paying with checkout-bound tokens (minted by the stand-in vault as
//! the intake would have them minted); `card.list`; the card-testing limits.

use super::*;
use paysys_gateway::checkout::{CardTestingLimits, WidgetConfig};
use paysys_gateway::secrets::CheckoutSecrets;
use paysys_gateway::store::{
    AttemptCounts, AttemptOutcome, AttemptRecord, AttemptSlot, CheckoutRecord, CheckoutStatus, CustomerCard,
    PaymentStart, Slot, WidgetSettings,
};
use paysys_widget::grant::{GrantSigner, GrantVerifier};
use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The intake the grants send the card frame to.
const INTAKE: &str = "https://127.0.0.1:8444";
/// A merchant shop allowed to embed the form, and one that is not.
const SHOP: &str = "http://127.0.0.1:9001";
const STRANGER: &str = "http://127.0.0.1:9002";

pub(super) fn widget_config() -> WidgetConfig {
    let der = GrantSigner::generate_pkcs8().unwrap();
    WidgetConfig {
        intake_origin: Some(INTAKE.into()),
        signer: Some(GrantSigner::from_pkcs8("gw-test", &der).unwrap()),
        secrets: Some(CheckoutSecrets::generate()),
        limits: CardTestingLimits::default(),
    }
}

/// An HTTP answer: status, headers (lower-case names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
async fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let addr = base.strip_prefix("http://").unwrap();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if headers.get("transfer-encoding").is_some_and(|t| t == "chunked") {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        rest.to_owned()
    };
    Answer { status, headers, body }
}

impl Harness {
    /// The gateway's own origin (the hosted page's).
    fn origin(&self) -> &str {
        &self.url
    }

    async fn browser_post(&self, path: &str, origin: &str, body: Value) -> Answer {
        let body = serde_json::to_vec(&body).unwrap();
        http(&self.url, "POST", path, &[("origin", origin), ("content-type", "application/json")], &body).await
    }

    async fn get(&self, path: &str) -> Answer {
        http(&self.url, "GET", path, &[], b"").await
    }

    /// A new checkout's `checkout.create` result.
    async fn checkout(&self, ptid: &str, extra: Value) -> Value {
        let mut params = json!({"amount": 15000, "currency": "USD", "partner_trans_id": ptid,
                                "return_url": "https://shop.example/back", "three_ds": "skip"});
        if let (Some(obj), Value::Object(more)) = (params.as_object_mut(), extra) {
            obj.extend(more);
        }
        self.ok("checkout.create", params).await
    }

    /// A same-origin attempt (the hosted page's): its JSON.
    async fn attempt(&self, checkout_id: &str) -> Answer {
        self.browser_post(&format!("/checkout/{checkout_id}/attempts"), self.origin(), json!({})).await
    }

    /// A token bound to `checkout_id` for `pan`, as the intake would have the vault mint it.
    fn mint(&self, pan: &str, checkout_id: &str) -> String {
        let token = format!("tok_chk{:024x}", rand::random::<u128>() >> 32);
        self.relay.bound.lock().unwrap().insert(token.clone(), (pan.to_owned(), checkout_id.to_owned()));
        token
    }

    async fn pay(&self, checkout_id: &str, attempt_id: &str, token: &str) -> Answer {
        let body = json!({"attempt_id": attempt_id, "token": token,
                          "browser": {"language": "en", "color_depth": 24, "screen_height": 800,
                                      "screen_width": 1200, "tz": -300, "user_agent": "test",
                                      "java_enabled": false, "javascript_enabled": true}});
        self.browser_post(&format!("/checkout/{checkout_id}/pay"), self.origin(), body).await
    }

    /// An attempt and a payment with a fresh token of `pan` bound to the checkout.
    async fn attempt_and_pay(&self, checkout_id: &str, pan: &str) -> Answer {
        let attempt = self.attempt(checkout_id).await;
        assert_eq!(attempt.status, 200, "{}", attempt.body);
        let attempt_id = attempt.json()["attempt_id"].as_str().unwrap().to_owned();
        let token = self.mint(pan, checkout_id);
        self.pay(checkout_id, &attempt_id, &token).await
    }

    async fn set_widget(&self, widget: WidgetSettings) {
        let mut m = self.gateway.store.merchant(MERCHANT).await.unwrap().unwrap();
        m.widget = widget;
        assert!(self.gateway.store.update_merchant(&m).await.unwrap());
    }
}

fn checkout_record(id: &str, ptid: &str, expires_at: i64) -> CheckoutRecord {
    let now = now_ms();
    CheckoutRecord {
        checkout_id: id.into(),
        merchant_id: MERCHANT.into(),
        partner_trans_id: ptid.into(),
        request_digest: "d".into(),
        amount: 1000,
        currency: "USD".into(),
        description: None,
        return_url: "https://shop.example/back".into(),
        cancel_url: None,
        capture_method: paysys_gateway::payments::CaptureMethod::Auto,
        hold_ttl_sec: 3600,
        after_expired: paysys_gateway::state::AfterExpired::Void,
        three_ds: paysys_gateway::three_ds::ThreeDsMode::Skip,
        language: "en".into(),
        expires_at,
        customer_id: None,
        save_card: false,
        status: CheckoutStatus::Open,
        client_secret_hash: "h".into(),
        transaction_id: None,
        attempts: 0,
        created_at: now,
        updated_at: now,
    }
}

fn attempt_record(id: &str, checkout_id: &str, ip: &str) -> AttemptRecord {
    let now = now_ms();
    AttemptRecord {
        attempt_id: id.into(),
        checkout_id: checkout_id.into(),
        merchant_id: MERCHANT.into(),
        number: 0,
        nonce: format!("nonce-{id}"),
        origin: SHOP.into(),
        client_ip: Some(ip.into()),
        created_at: now,
        expires_at: now + 900_000,
        used_at: None,
        transaction_id: None,
        outcome: None,
        finished_at: None,
    }
}

fn card(customer: &str, token: &str, fingerprint: &str) -> CustomerCard {
    CustomerCard {
        merchant_id: MERCHANT.into(),
        customer_id: customer.into(),
        token: token.into(),
        fingerprint: fingerprint.into(),
        brand: "visa".into(),
        bin: "424242".into(),
        last4: "4242".into(),
        exp_month: 12,
        exp_year: 2031,
        created_at: now_ms(),
    }
}

#[tokio::test]
async fn the_checkout_store_on_every_database() {
    for db in databases() {
        let h = Harness::start(db, 5_000, 60_000).await;
        let store = &h.gateway.store;
        let now = now_ms();

        // One checkout per idempotency key; the second insert finds the first.
        let c = checkout_record("chk_store1", "order-1", now + 600_000);
        assert_eq!(store.insert_checkout(&c).await.unwrap(), Slot::Inserted);
        let again = checkout_record("chk_store2", "order-1", now + 600_000);
        assert_eq!(store.insert_checkout(&again).await.unwrap(), Slot::Existing(c.clone()), "{db:?}");
        assert!(store.checkout("chk_store2").await.unwrap().is_none());
        assert_eq!(store.checkout_by_partner_id(MERCHANT, "order-1").await.unwrap(), Some(c.clone()));

        // Attempts are numbered on their checkout and limited.
        let mut numbers = Vec::new();
        for i in 0..2 {
            match store.open_attempt(&attempt_record(&format!("att_{i}"), "chk_store1", "10.0.0.1"), 2, now).await {
                Ok(AttemptSlot::Opened(a)) => numbers.push(a.number),
                other => panic!("{db:?}: {other:?}"),
            }
        }
        assert_eq!(numbers, [1, 2]);
        let third = store.open_attempt(&attempt_record("att_x", "chk_store1", "10.0.0.1"), 2, now).await.unwrap();
        assert_eq!(third, AttemptSlot::Exhausted);
        assert!(store.attempt("att_x").await.unwrap().is_none(), "an exhausted attempt stores nothing");
        assert_eq!(store.checkout("chk_store1").await.unwrap().unwrap().attempts, 2);

        // One payment at a time: the attempt is spent and the checkout processing, both
        // or neither.
        assert_eq!(store.begin_checkout_payment("chk_store1", "att_0", now).await.unwrap(), PaymentStart::Started);
        assert_eq!(store.begin_checkout_payment("chk_store1", "att_0", now).await.unwrap(), PaymentStart::AttemptUsed);
        assert_eq!(store.begin_checkout_payment("chk_store1", "att_1", now).await.unwrap(), PaymentStart::NotOpen);
        assert!(store.attempt("att_1").await.unwrap().unwrap().used_at.is_none(), "refused: not spent");
        assert_eq!(
            store.begin_checkout_payment("chk_other", "att_1", now).await.unwrap(),
            PaymentStart::UnknownAttempt
        );
        let processing = store.checkout("chk_store1").await.unwrap().unwrap();
        assert_eq!(processing.status, CheckoutStatus::Processing);
        // Moves are conditional on where the checkout is.
        assert!(!store
            .move_checkout("chk_store1", &[CheckoutStatus::Open], CheckoutStatus::Cancelled, None, now)
            .await
            .unwrap());
        assert!(store
            .move_checkout("chk_store1", &[CheckoutStatus::Processing], CheckoutStatus::Open, Some("tx_1"), now)
            .await
            .unwrap());
        let reopened = store.checkout("chk_store1").await.unwrap().unwrap();
        assert_eq!((reopened.status, reopened.transaction_id.as_deref()), (CheckoutStatus::Open, Some("tx_1")));
        // An expired checkout takes no attempt and no payment.
        let old = checkout_record("chk_store3", "order-3", now - 1);
        store.insert_checkout(&old).await.unwrap();
        let late = store.open_attempt(&attempt_record("att_late", "chk_store3", "10.0.0.2"), 5, now).await.unwrap();
        assert_eq!(late, AttemptSlot::NotOpen);

        // The card-testing counts: per client address, and the merchant's finished ones.
        store.finish_attempt("att_0", AttemptOutcome::Declined, now).await.unwrap();
        store.finish_attempt("att_0", AttemptOutcome::Completed, now).await.unwrap();
        assert_eq!(store.attempt("att_0").await.unwrap().unwrap().outcome, Some(AttemptOutcome::Declined), "once");
        store.finish_attempt("att_1", AttemptOutcome::Failed, now).await.unwrap();
        let counts = store.attempt_counts(Some("10.0.0.1"), now - 60_000, MERCHANT, now - 60_000).await.unwrap();
        assert_eq!(counts, AttemptCounts { by_client: 2, merchant_finished: 2, merchant_declined: 1 });
        let counts = store.attempt_counts(Some("10.9.9.9"), now - 60_000, MERCHANT, now + 1).await.unwrap();
        assert_eq!(counts, AttemptCounts::default());

        // Saved cards: one per card per customer, never merged across customers.
        assert_eq!(store.save_customer_card(&card("cust-1", "tok_a", "fp1")).await.unwrap(), Slot::Inserted);
        let dup = store.save_customer_card(&card("cust-1", "tok_b", "fp1")).await.unwrap();
        assert!(matches!(dup, Slot::Existing(ref kept) if kept.token == "tok_a"), "{dup:?}");
        assert_eq!(store.save_customer_card(&card("cust-2", "tok_c", "fp1")).await.unwrap(), Slot::Inserted);
        assert_eq!(store.save_customer_card(&card("cust-1", "tok_d", "fp2")).await.unwrap(), Slot::Inserted);
        let tokens = |cards: Vec<CustomerCard>| cards.into_iter().map(|c| c.token).collect::<Vec<_>>();
        assert_eq!(tokens(store.customer_cards(MERCHANT, "cust-1").await.unwrap()), ["tok_a", "tok_d"]);
        assert_eq!(tokens(store.customer_cards(MERCHANT, "cust-2").await.unwrap()), ["tok_c"]);
        assert!(store.token_saved(MERCHANT, "tok_a").await.unwrap());
        assert!(!store.token_saved(MERCHANT, "tok_b").await.unwrap());

        // Merchant settings round-trip; the switch trips once, and only when armed.
        let settings = WidgetSettings {
            allowed_origins: vec![SHOP.into(), "https://shop.example".into()],
            allow_checkout_framing: true,
            card_testing_guard: true,
            card_testing_tripped_at: None,
        };
        h.set_widget(settings.clone()).await;
        assert_eq!(store.merchant(MERCHANT).await.unwrap().unwrap().widget, settings);
        assert!(store.trip_card_testing(MERCHANT, now).await.unwrap());
        assert!(!store.trip_card_testing(MERCHANT, now + 1).await.unwrap());
        assert_eq!(store.merchant(MERCHANT).await.unwrap().unwrap().widget.card_testing_tripped_at, Some(now));
        h.set_widget(WidgetSettings { card_testing_guard: false, ..settings }).await;
        assert!(!store.trip_card_testing(MERCHANT, now).await.unwrap(), "a disarmed switch does not trip");
        h.finish().await;
    }
}
