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
use paysys_gateway::store::{DeliveryFilter, EndpointStatus, WebhookEndpointRecord};
use paysys_gateway::webhooks::EventType;
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
        fingerprint: None,
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
            .move_checkout("chk_store1", &[CheckoutStatus::Open], CheckoutStatus::Cancelled, None, now, None)
            .await
            .unwrap());
        assert!(store
            .move_checkout("chk_store1", &[CheckoutStatus::Processing], CheckoutStatus::Open, Some("tx_1"), now, None)
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
        // Distinct cards per client address.
        store.attempt_card("att_0", "fp-a").await.unwrap();
        store.attempt_card("att_1", "fp-b").await.unwrap();
        assert_eq!(store.other_cards_of_client("10.0.0.1", now - 60_000, "fp-c").await.unwrap(), 2);
        assert_eq!(store.other_cards_of_client("10.0.0.1", now - 60_000, "fp-a").await.unwrap(), 1);
        assert_eq!(store.other_cards_of_client("10.0.0.2", now - 60_000, "fp-c").await.unwrap(), 0);

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

/// The query of a URL as a map.
fn query_of(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[tokio::test]
async fn checkouts_are_created_checked_cancelled_and_paid_on_every_database() {
    for db in databases() {
        let h = Harness::start(db, 5_000, 60_000).await;

        // checkout.create: the hosted URL, the client secret, idempotent by partner_trans_id.
        let params = json!({"amount": 15000, "currency": "USD", "partner_trans_id": "co-1",
                            "return_url": "https://shop.example/back", "description": "order 17",
                            "three_ds": "skip", "language": "ru", "expires_in_sec": 900});
        let created = h.ok("checkout.create", params.clone()).await;
        let id = created["checkout_id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("chk_") && id.len() == 28, "{id}");
        assert_eq!(created["url"], format!("{}/checkout/{id}", h.url));
        let secret = created["client_secret"].as_str().unwrap();
        assert!(secret.starts_with(&format!("{id}_secret_")) && secret.len() == id.len() + 8 + 32, "{secret}");
        assert_eq!(created["status"], "open");
        assert_eq!(
            h.ok("checkout.create", params.clone()).await,
            created,
            "{db:?}: the same params, the same checkout"
        );
        let mut changed = params.clone();
        changed["amount"] = json!(15001);
        assert_eq!(h.err("checkout.create", changed).await["code"], -31010);
        let stored = h.gateway.store.checkout(&id).await.unwrap().unwrap();
        assert!(!stored.client_secret_hash.contains(secret) && stored.client_secret_hash.len() == 64);

        let checked = h.ok("checkout.check", json!({"checkout_id": id})).await;
        assert_eq!((checked["status"].as_str(), checked["language"].as_str()), (Some("open"), Some("ru")));
        assert!(checked.get("payment").is_none());
        assert_eq!(h.ok("checkout.check", json!({"partner_trans_id": "co-1"})).await, checked);
        assert_eq!(
            h.err("checkout.check", json!({"checkout_id": "chk_000000000000000000000000"})).await["code"],
            -31003
        );
        assert_eq!(h.err("checkout.check", json!({})).await["code"], -32602);

        // Validation: a clear error, and nothing stored.
        let base = json!({"amount": 15000, "currency": "USD", "partner_trans_id": "bad",
                          "return_url": "https://shop.example/back"});
        let with = |k: &str, v: Value| {
            let mut p = base.clone();
            p[k] = v;
            p
        };
        for (params, code) in [
            (with("expires_in_sec", json!(59)), -32602),
            (with("expires_in_sec", json!(86_401)), -32602),
            (with("save_card", json!(true)), -32602),
            (with("language", json!("de")), -32602),
            (with("return_url", json!("https://shop.example/back?card=4242424242424242")), -32602),
            (with("cancel_url", json!("https://shop.example/c?pan=4242%204242%204242%204242")), -32602),
            (with("cancel_url", json!("ftp://shop.example/c")), -32602),
            (with("customer_id", json!("4242-4242-4242-4242")), -32602),
            (with("amount", json!(10)), -31001),
            (with("currency", json!("XXX")), -31001),
            (with("unknown", json!(1)), -32602),
            (json!({"amount": 15000, "currency": "USD", "partner_trans_id": "bad"}), -32602),
        ] {
            let e = h.err("checkout.create", params.clone()).await;
            assert_eq!(e["code"], code, "{params}: {e}");
            assert!(!e.to_string().contains("4242"), "{e}");
        }
        assert_eq!(h.err("checkout.check", json!({"partner_trans_id": "bad"})).await["code"], -31003);

        // checkout.cancel while open; then it is over.
        let cancelled_id = h.checkout("co-cancel", json!({})).await["checkout_id"].as_str().unwrap().to_owned();
        let cancelled = h.ok("checkout.cancel", json!({"checkout_id": cancelled_id})).await;
        assert_eq!(cancelled["status"], "cancelled");
        let again = h.err("checkout.cancel", json!({"checkout_id": cancelled_id})).await;
        assert_eq!((again["code"].as_i64(), again["data"]["status"].as_str()), (Some(-31008), Some("cancelled")));
        let refused = h.attempt(&cancelled_id).await;
        assert_eq!((refused.status, refused.code().as_str()), (410, "checkout_cancelled"));

        // Pay: a decline, then a good card on the same checkout; the card saved for the
        // customer.
        let paid = h.checkout("co-pay", json!({"customer_id": "cust-1", "save_card": true})).await;
        let paid_id = paid["checkout_id"].as_str().unwrap().to_owned();
        let (decline_pan, decline_code) = DECLINES[0];
        let declined = h.attempt_and_pay(&paid_id, decline_pan).await;
        assert_eq!(declined.status, 200, "{}", declined.body);
        let answer = declined.json();
        assert_eq!(answer["status"], "declined", "{answer}");
        assert_eq!(answer["decline"]["code"], decline_code);
        assert_eq!(answer["attempts_left"], 4);
        let checked = h.ok("checkout.check", json!({"checkout_id": paid_id})).await;
        assert_eq!((checked["status"].as_str(), checked["payment"]["status"].as_str()), (Some("open"), Some("failed")));
        let good = h.attempt_and_pay(&paid_id, VISA).await.json();
        assert_eq!(good["status"], "completed", "{good}");
        let signed = good["redirect_url"].as_str().unwrap();
        assert!(signed.starts_with("https://shop.example/back?transaction_id="), "{signed}");
        let checked = h.ok("checkout.check", json!({"partner_trans_id": "co-pay"})).await;
        assert_eq!(checked["status"], "completed");
        assert_eq!(checked["payment"]["status"], "captured");
        assert_eq!(checked["payment"]["partner_trans_id"], "co-pay/2", "the attempt's payment key");
        let tx = checked["transaction_id"].as_str().unwrap().to_owned();
        assert_eq!(h.ok("payment.check", json!({"partner_trans_id": "co-pay/2"})).await["transaction_id"], tx);

        // Back to the merchant, signed as 3-D Secure returns are.
        let back = h.get(&format!("/checkout/{paid_id}/return")).await;
        assert_eq!(back.status, 303, "{}", back.body);
        let location = back.header("location").unwrap();
        assert!(location.starts_with("https://shop.example/back?"), "{location}");
        let q = query_of(location);
        assert_eq!((q["transaction_id"].as_str(), q["status"].as_str()), (tx.as_str(), "captured"));
        assert_eq!((q["checkout_id"].as_str(), q["partner_trans_id"].as_str()), (paid_id.as_str(), "co-pay"));
        let ts: i64 = q["ts"].parse().unwrap();
        assert_eq!(q["signature"], auth::return_signature(&h.secret, &tx, "captured", ts));
        let q = query_of(signed);
        let ts: i64 = q["ts"].parse().unwrap();
        assert_eq!(q["signature"], auth::return_signature(&h.secret, &tx, "captured", ts));
        let over = h.attempt(&paid_id).await;
        assert_eq!((over.status, over.code().as_str()), (409, "checkout_completed"));

        // card.list: the saved card; the same card again for the same customer keeps the
        // first token (the new one is removed), another customer gets a card of its own.
        let list = h.ok("card.list", json!({"customer_id": "cust-1"})).await;
        let cards = list["cards"].as_array().unwrap();
        assert_eq!(cards.len(), 1, "{list}");
        assert_eq!(cards[0]["masked_number"], "424242******4242");
        let saved = cards[0]["token"].as_str().unwrap().to_owned();
        let second = h.checkout("co-pay-2", json!({"customer_id": "cust-1", "save_card": true})).await;
        let second_id = second["checkout_id"].as_str().unwrap().to_owned();
        let attempt = h.attempt(&second_id).await.json();
        let token2 = h.mint(VISA, &second_id);
        let r = h.pay(&second_id, attempt["attempt_id"].as_str().unwrap(), &token2).await.json();
        assert_eq!(r["status"], "completed", "{r}");
        let list = h.ok("card.list", json!({"customer_id": "cust-1"})).await;
        assert_eq!(list["cards"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list["cards"][0]["token"], saved.as_str());
        assert!(h.gateway.store.removed_token(MERCHANT, &token2).await.unwrap().is_some(), "the duplicate is removed");
        let other = h.checkout("co-pay-3", json!({"customer_id": "cust-2", "save_card": true})).await;
        let other_id = other["checkout_id"].as_str().unwrap().to_owned();
        assert_eq!(h.attempt_and_pay(&other_id, VISA).await.json()["status"], "completed");
        let list2 = h.ok("card.list", json!({"customer_id": "cust-2"})).await;
        assert_eq!(list2["cards"].as_array().unwrap().len(), 1);
        assert_ne!(list2["cards"][0]["token"], saved.as_str(), "never merged across customers");
        assert_eq!(h.ok("card.list", json!({"customer_id": "nobody"})).await["cards"], json!([]));

        // payment.create: a saved checkout token pays; an unsaved checkout-bound one is unknown.
        let pay = json!({"card_token": saved, "amount": 1000, "currency": "USD", "partner_trans_id": "saved-1",
                         "three_ds": "skip"});
        assert_eq!(h.ok("payment.create", pay).await["status"], "captured");
        let unsaved = h.mint(VISA, &paid_id);
        let pay = json!({"card_token": unsaved, "amount": 1000, "currency": "USD", "partner_trans_id": "unsaved-1",
                         "three_ds": "skip"});
        assert_eq!(h.err("payment.create", pay).await["code"], -31400);

        let dump = database_dump(&h.db_url).await;
        for pan in [VISA, decline_pan] {
            assert!(!dump.windows(pan.len()).any(|w| w == pan.as_bytes()), "{db:?}: a card number in the database");
        }
        h.finish().await;
    }
}

#[tokio::test]
async fn attempts_carry_a_verifiable_grant_and_the_browser_endpoints_refuse_what_they_must() {
    let h = Harness::start(Db::Sqlite, 5_000, 60_000).await;
    let created = h.checkout("g-1", json!({"expires_in_sec": 120})).await;
    let id = created["checkout_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();

    // The hosted page's attempt: a grant for the gateway's own origin, in the fragment.
    let attempt = h.attempt(&id).await;
    assert_eq!(attempt.status, 200, "{}", attempt.body);
    assert_eq!(attempt.header("cache-control"), Some("no-store"));
    let a = attempt.json();
    let frame_url = a["frame_url"].as_str().unwrap();
    let (frame, grant) = frame_url.split_once("#grant=").unwrap();
    let frame = url::Url::parse(frame).unwrap();
    assert_eq!(frame.origin().ascii_serialization(), INTAKE);
    assert_eq!(frame.path(), "/v1/frame");
    assert_eq!(
        query_of(frame.as_str()),
        BTreeMap::from([("origin".into(), h.url.clone()), ("lang".into(), "en".into())])
    );
    // The page's language switch reaches the frame.
    let ru = h.browser_post(&format!("/checkout/{id}/attempts"), h.origin(), json!({"lang": "ru"})).await;
    assert!(ru.json()["frame_url"].as_str().unwrap().contains("&lang=ru#grant="), "{}", ru.body);
    let signer = h.gateway.widget.signer.as_ref().unwrap();
    let mut verifier = GrantVerifier::new();
    verifier.add_hex(signer.kid(), &signer.public_key_hex()).unwrap();
    let claims = verifier.verify(grant, now_ms() / 1000).unwrap();
    assert_eq!((claims.merchant_id.as_str(), claims.checkout_id.as_str()), (MERCHANT, id.as_str()));
    assert_eq!(claims.attempt_id, a["attempt_id"].as_str().unwrap());
    assert_eq!(claims.origin, h.url);
    assert!(!claims.save_card);
    let checkout = h.gateway.store.checkout(&id).await.unwrap().unwrap();
    assert!(claims.expires_at <= checkout.expires_at / 1000, "no longer than the checkout");
    assert!(claims.expires_at - claims.issued_at <= 900);
    let stored = h.gateway.store.attempt(&claims.attempt_id).await.unwrap().unwrap();
    assert_eq!((stored.nonce.as_str(), stored.number), (claims.nonce.as_str(), 1));

    // The page: its CSP, not cached, not framable unless the merchant allows it.
    let page = h.get(&format!("/checkout/{id}")).await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(h.get("/checkout/chk_000000000000000000000000").await.status, 404);
    assert_eq!(h.get("/checkout/not-an-id").await.status, 404);
    let settings =
        WidgetSettings { allowed_origins: vec![SHOP.into()], allow_checkout_framing: true, ..Default::default() };
    h.set_widget(settings.clone()).await;
    let page = h.get(&format!("/checkout/{id}")).await;
    assert!(page.header("content-security-policy").unwrap().contains(&format!("frame-ancestors {SHOP}")));
    assert_eq!(page.header("x-frame-options"), None);
    h.set_widget(WidgetSettings { allow_checkout_framing: false, ..settings }).await;
    assert!(h.get(&format!("/checkout/{id}")).await.header("content-security-policy").unwrap().contains("'none'"));

    // The scripts and styles of the inventory, and nothing else.
    let js = h.get("/widget/checkout.js").await;
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().contains("javascript"));
    assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(h.get("/widget/paysys.js").await.status, 200);
    assert_eq!(h.get("/widget/frame.js").await.status, 404, "the frame's script is the intake's");
    assert_eq!(h.get("/widget/nothing.js").await.status, 404);

    // The embedded form: only an allowed origin, exactly, with the client secret.
    let path = format!("/checkout/{id}/attempts");
    let stranger = h.browser_post(&path, STRANGER, json!({"client_secret": secret, "origin": STRANGER})).await;
    assert_eq!((stranger.status, stranger.code().as_str()), (403, "origin_forbidden"));
    assert_eq!(stranger.header("access-control-allow-origin"), None);
    let near = h.browser_post(&path, "http://127.0.0.1:90010", json!({"client_secret": secret})).await;
    assert_eq!(near.status, 403, "no prefix match");
    let no_secret = h.browser_post(&path, SHOP, json!({"origin": SHOP})).await;
    assert_eq!((no_secret.status, no_secret.code().as_str()), (401, "client_secret_invalid"));
    let wrong = h.browser_post(&path, SHOP, json!({"client_secret": format!("{secret}x"), "origin": SHOP})).await;
    assert_eq!(wrong.status, 401);
    let lying = h.browser_post(&path, SHOP, json!({"client_secret": secret, "origin": STRANGER})).await;
    assert_eq!((lying.status, lying.code().as_str()), (403, "origin_forbidden"));
    let embedded = h.browser_post(&path, SHOP, json!({"client_secret": secret, "origin": SHOP})).await;
    assert_eq!(embedded.status, 200, "{}", embedded.body);
    assert_eq!(embedded.header("access-control-allow-origin"), Some(SHOP));
    let grant = embedded.json()["frame_url"].as_str().unwrap().split_once("#grant=").unwrap().1.to_owned();
    assert_eq!(verifier.verify(&grant, now_ms() / 1000).unwrap().origin, SHOP);
    let preflight =
        http(&h.url, "OPTIONS", &path, &[("origin", SHOP), ("access-control-request-method", "POST")], b"").await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(SHOP));
    let preflight = http(&h.url, "OPTIONS", &path, &[("origin", STRANGER)], b"").await;
    assert_eq!(preflight.status, 403);
    assert_eq!(preflight.header("access-control-allow-origin"), None);

    // Paying: only a token minted for this checkout, with an attempt of this checkout,
    // once.
    let attempt_id = a["attempt_id"].as_str().unwrap().to_owned();
    let pay_path = format!("/checkout/{id}/pay");
    let merchant_token = token_for(VISA);
    let r = h.pay(&id, &attempt_id, &merchant_token).await;
    assert_eq!((r.status, r.code().as_str()), (403, "token_not_for_checkout"), "a merchant certificate's token");
    let other = h.checkout("g-2", json!({})).await["checkout_id"].as_str().unwrap().to_owned();
    let r = h.pay(&id, &attempt_id, &h.mint(VISA, &other)).await;
    assert_eq!(r.code(), "token_not_for_checkout", "another checkout's token");
    let r = h.pay(&id, &attempt_id, VISA).await;
    assert_eq!(r.code(), "token_not_for_checkout");
    assert!(!r.body.contains(VISA), "a card number is never echoed");
    let other_attempt = h.attempt(&other).await.json()["attempt_id"].as_str().unwrap().to_owned();
    let r = h.pay(&id, &other_attempt, &h.mint(VISA, &id)).await;
    assert_eq!((r.status, r.code().as_str()), (404, "attempt_unknown"));
    let r = h.browser_post(&pay_path, h.origin(), json!({"attempt_id": attempt_id, "token": "x", "cvc": "123"})).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"));
    let r = h.browser_post(&pay_path, STRANGER, json!({"attempt_id": attempt_id, "token": h.mint(VISA, &id)})).await;
    assert_eq!((r.status, r.code().as_str()), (403, "origin_forbidden"));
    let r = h.pay(&id, &attempt_id, &h.mint(DECLINES[0].0, &id)).await;
    assert_eq!(r.json()["status"], "declined");
    let r = h.pay(&id, &attempt_id, &h.mint(VISA, &id)).await;
    assert_eq!((r.status, r.code().as_str()), (409, "attempt_used"));
    assert_eq!(h.ok("checkout.check", json!({"checkout_id": id})).await["status"], "open");

    // Five attempts per checkout.
    for _ in 0..2 {
        assert_eq!(h.attempt(&id).await.status, 200);
    }
    let r = h.attempt(&id).await;
    assert_eq!((r.status, r.code().as_str()), (429, "attempts_exhausted"));

    // An expired checkout: no attempt, no payment; its page returns to the merchant
    // with the signed status.
    let expired_id = "chk_EXPIREDexpired0000000000";
    let mut record = checkout_record(expired_id, "g-expired", now_ms() - 1);
    record.cancel_url = Some("https://shop.example/cancel".into());
    h.gateway.store.insert_checkout(&record).await.unwrap();
    let r = h.attempt(expired_id).await;
    assert_eq!((r.status, r.code().as_str()), (410, "checkout_expired"));
    assert_eq!(h.ok("checkout.check", json!({"checkout_id": expired_id})).await["status"], "expired");
    let page = h.get(&format!("/checkout/{expired_id}")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    // The continue link (HTML-escaped in the page, wherever the page puts it).
    let start = page.body.find("https://shop.example/cancel?").expect("the cancel link");
    let link = page.body[start..].split('"').next().unwrap().replace("&amp;", "&");
    let q = query_of(&link);
    assert!(link.starts_with("https://shop.example/cancel?"), "{link}");
    assert_eq!(q["status"], "expired");
    let ts: i64 = q["ts"].parse().unwrap();
    assert_eq!(q["signature"], auth::return_signature(&h.secret, expired_id, "expired", ts));
    assert_eq!(h.get(&format!("/checkout/{expired_id}/status")).await.json(), json!({"status": "expired"}));
    h.finish().await;
}

#[tokio::test]
async fn card_testing_limits_per_client_and_the_merchant_switch() {
    let h = Harness::start(Db::Sqlite, 5_000, 60_000).await;
    // The merchant switch: ten declines in the window, most attempts declined.
    let mut declines = 0;
    let mut checkout_id = String::new();
    while declines < 10 {
        if declines % 5 == 0 {
            checkout_id =
                h.checkout(&format!("ct-{declines}"), json!({})).await["checkout_id"].as_str().unwrap().to_owned();
        }
        let r = h.attempt_and_pay(&checkout_id, DECLINES[declines % DECLINES.len()].0).await;
        assert_eq!(r.json()["status"], "declined", "{}", r.body);
        declines += 1;
    }
    let fresh = h.checkout("ct-after", json!({})).await["checkout_id"].as_str().unwrap().to_owned();
    let r = h.attempt(&fresh).await;
    assert_eq!((r.status, r.code().as_str()), (403, "card_testing_suspected"));
    assert!(h.gateway.store.merchant(MERCHANT).await.unwrap().unwrap().widget.card_testing_tripped_at.is_some());
    // An operator re-opens (`merchant update --card-testing-reset`).
    h.set_widget(WidgetSettings::default()).await;
    assert_eq!(h.attempt(&fresh).await.status, 200);

    // Per client address: 20 attempts in ten minutes (11 so far).
    for i in 0..9 {
        let id = h.checkout(&format!("rl-{i}"), json!({})).await["checkout_id"].as_str().unwrap().to_owned();
        assert_eq!(h.attempt(&id).await.status, 200, "attempt {i}");
    }
    let r = h.attempt(&fresh).await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
    h.finish().await;
}

#[tokio::test]
async fn a_checkout_pays_with_3ds_as_payment_create_does() {
    let h = Harness::start(Db::Sqlite, 5_000, 60_000).await;
    // Frictionless: completed at once, the payment carrying its authentication.
    let id = h.checkout("3ds-1", json!({"three_ds": "force"})).await["checkout_id"].as_str().unwrap().to_owned();
    let r = h.attempt_and_pay(&id, cards::FRICTIONLESS).await.json();
    assert_eq!(r["status"], "completed", "{r}");
    let checked = h.ok("checkout.check", json!({"checkout_id": id})).await;
    assert_eq!(checked["payment"]["three_ds"]["trans_status"], "Y", "{checked}");

    // A challenge: the page is sent to the 3DS Server's challenge link; meanwhile the
    // checkout is processing, and its page and return say so.
    let id = h.checkout("3ds-2", json!({"three_ds": "force"})).await["checkout_id"].as_str().unwrap().to_owned();
    let r = h.attempt_and_pay(&id, cards::CHALLENGE).await.json();
    assert_eq!(r["status"], "challenge", "{r}");
    let url = r["redirect_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/3ds/challenge/", h.url)), "{url}");
    let checked = h.ok("checkout.check", json!({"checkout_id": id})).await;
    assert_eq!(checked["status"], "processing");
    assert_eq!(checked["payment"]["status"], "requires_3ds");
    assert_eq!(checked["payment"]["return_url"], format!("{}/checkout/{id}/return", h.url));
    let busy = h.attempt(&id).await;
    assert_eq!((busy.status, busy.code().as_str()), (409, "checkout_processing"));
    assert_eq!(h.get(&format!("/checkout/{id}")).await.status, 200);
    assert_eq!(h.get(&format!("/checkout/{id}/status")).await.json(), json!({"status": "processing"}));
    h.finish().await;
}

#[tokio::test]
async fn two_payments_at_once_on_one_checkout_start_one() {
    for db in databases() {
        let h = Harness::start(db, 5_000, 60_000).await;
        let id = h.checkout("race-1", json!({})).await["checkout_id"].as_str().unwrap().to_owned();
        let a1 = h.attempt(&id).await.json()["attempt_id"].as_str().unwrap().to_owned();
        let a2 = h.attempt(&id).await.json()["attempt_id"].as_str().unwrap().to_owned();
        let (t1, t2) = (h.mint(VISA, &id), h.mint(VISA, &id));
        let (r1, r2) = tokio::join!(h.pay(&id, &a1, &t1), h.pay(&id, &a2, &t2));
        let statuses = [&r1, &r2].map(|r| (r.status, r.json()["status"].as_str().unwrap_or_default().to_owned()));
        let completed = statuses.iter().filter(|(_, s)| s == "completed").count();
        assert_eq!(completed, 1, "{db:?}: {statuses:?}");
        let refused = [&r1, &r2].into_iter().find(|r| r.status != 200).unwrap();
        assert!(["checkout_processing", "checkout_completed"].contains(&refused.code().as_str()), "{}", refused.body);
        let payments = h.ok("payment.list", json!({})).await;
        assert_eq!(payments["count"], 1, "{db:?}: one payment, one authorization: {payments}");
        h.finish().await;
    }
}

/// A Luhn-valid 16-digit card number starting with `prefix` (15 digits).
fn luhn_pan(prefix: &str) -> String {
    let digits: Vec<u32> = prefix.chars().map(|c| c.to_digit(10).unwrap()).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    format!("{prefix}{}", (10 - sum % 10) % 10)
}

#[tokio::test]
async fn many_cards_from_one_client_address_are_refused() {
    let h = Harness::start(Db::Sqlite, 5_000, 60_000).await;
    let mut first = String::new();
    for i in 0..10 {
        let pan = luhn_pan(&format!("424242000000{i:03}"));
        if i == 0 {
            first = pan.clone();
        }
        let id = h.checkout(&format!("cards-{i}"), json!({})).await["checkout_id"].as_str().unwrap().to_owned();
        let r = h.attempt_and_pay(&id, &pan).await;
        assert_eq!(r.status, 200, "card {i}: {}", r.body);
    }
    let id = h.checkout("cards-10", json!({})).await["checkout_id"].as_str().unwrap().to_owned();
    let r = h.attempt_and_pay(&id, &luhn_pan("424242000000010")).await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"), "the eleventh card");
    // A card this client used before is no new card.
    let r = h.attempt_and_pay(&id, &first).await;
    assert_eq!(r.status, 200, "{}", r.body);
    h.finish().await;
}

#[tokio::test]
async fn the_workers_bring_checkouts_up_to_date_without_a_reader() {
    for db in databases() {
        // The relay gives up after 400 ms; the slow card is answered after 1.5 s.
        let h = Harness::start(db, 400, 1_500).await;
        let id = h.checkout("w-1", json!({"customer_id": "cust-w", "save_card": true})).await["checkout_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = h.attempt_and_pay(&id, SLOW).await.json();
        assert_eq!(r["status"], "processing", "{r}");
        let store = &h.gateway.store;
        assert_eq!(store.checkout(&id).await.unwrap().unwrap().status, CheckoutStatus::Processing);
        let expired = checkout_record("chk_WORKERSexpired00000000", "w-expired", now_ms() - 1);
        store.insert_checkout(&expired).await.unwrap();
        // The partner listens for the checkout events only.
        let endpoint = WebhookEndpointRecord {
            endpoint_id: "we_checkouts".into(),
            merchant_id: MERCHANT.into(),
            url: "https://hooks.example/paysys".into(),
            events: Some(vec![EventType::CheckoutCompleted, EventType::CheckoutExpired]),
            description: None,
            secret_sealed: "00".into(),
            previous_secret_sealed: None,
            previous_secret_expires_at: None,
            status: EndpointStatus::Enabled,
            disabled_reason: None,
            failing_since: None,
            created_at: now_ms(),
            updated_at: now_ms(),
        };
        store.insert_webhook_endpoint(&endpoint).await.unwrap();

        // Nobody reads the checkouts; the workers resolve the payment, then the checkout.
        paysys_gateway::workers::run_once(&h.gateway).await;
        let done = store.checkout(&id).await.unwrap().unwrap();
        assert_eq!(done.status, CheckoutStatus::Completed, "{db:?}");
        assert_eq!(store.customer_cards(MERCHANT, "cust-w").await.unwrap().len(), 1, "the card saved");
        let over = store.checkout("chk_WORKERSexpired00000000").await.unwrap().unwrap();
        assert_eq!(over.status, CheckoutStatus::Expired);

        // Each move wrote its event with it, data as checkout.check shows it; moving
        // again (another replica's workers, a reader) writes nothing more.
        paysys_gateway::workers::run_once(&h.gateway).await;
        let filter = DeliveryFilter { merchant_id: MERCHANT.into(), limit: 10, ..DeliveryFilter::default() };
        let events = store.webhook_deliveries(&filter).await.unwrap();
        assert_eq!(events.len(), 2, "{db:?}: {events:?}");
        let body_of = |t: EventType| -> Value {
            let e = events.iter().find(|e| e.event_type == t).unwrap_or_else(|| panic!("no {t}"));
            serde_json::from_str(&e.body).unwrap()
        };
        let completed = body_of(EventType::CheckoutCompleted);
        assert_eq!(completed["type"], "checkout.completed");
        let checked = h.ok("checkout.check", json!({"checkout_id": id})).await;
        for key in ["checkout_id", "status", "transaction_id", "amount", "partner_trans_id"] {
            assert_eq!(completed["data"][key], checked[key], "{key}");
        }
        assert_eq!(completed["data"]["payment"]["status"], checked["payment"]["status"]);
        assert_eq!(completed["data"]["status"], "completed");
        let expired = body_of(EventType::CheckoutExpired);
        assert_eq!(expired["data"]["checkout_id"], "chk_WORKERSexpired00000000");
        assert_eq!(expired["data"]["status"], "expired");
        assert!(expired["data"].get("payment").is_none());
        h.finish().await;
    }
}
