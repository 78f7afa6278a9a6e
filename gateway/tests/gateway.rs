//! The gateway over real sockets against the real sandbox card network (served
//! in-process over real TLS from the `paysys-sandbox` library), on SQLite and — when
//! `PAYSYS_TEST_POSTGRES_URL` names a server — PostgreSQL.
//!
//! The vault relay is replaced by [`DirectRelay`], which does what the relay does for
//! the gateway (substitute the card data of a token, forward to the acquirer, answer
//! with the acquirer's masked body); the end-to-end tests in `tests/` run the real vault.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys::pki::{CertificateAuthority, IssueRequest};
use paysys_gateway::acquirer::SandboxAcquirer;
use paysys_gateway::auth;
use paysys_gateway::https::{CallError, HttpsPool};
use paysys_gateway::payments::{now_ms, Gateway, GatewayConfig};
use paysys_gateway::secrets::{MerchantSecret, SecretKey};
use paysys_gateway::server::App;
use paysys_gateway::store::{MerchantRecord, RequestClaim, Store};
use paysys_gateway::three_ds::directory::Directory;
use paysys_gateway::three_ds::{AutoFallback, AutoSettings, ThreeDsConfig};
use paysys_gateway::vault::{CardVault, RelayOutcome, RelayRequest, TokenLookup, TokenMetadata, TokenRemoval};
use paysys_test_support::cards::{self, DECLINES, LIMITED, SLOW, UZCARD, VISA};
use paysys_test_support::dump::database_dump;
use paysys_test_support::postgres::{self, PostgresDatabase};
use paysys_test_support::rpc::RpcClient;
use paysys_vault_client::{ClientTls, HttpVersion};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The payment widget's tests, on this file's harness.
#[path = "cases/checkout.rs"]
mod checkout_cases;

const MERCHANT: &str = "m_test";
/// The sandbox's ACS answers `U` (authentication could not be performed).
const ACS_U: &str = cards::UNAVAILABLE;

/// The token the tests use for a card number (never containing it: BIN and last 4 only).
fn token_for(pan: &str) -> String {
    format!("tok_test{}x{}cardtoken", &pan[..6], &pan[pan.len() - 4..])
}

/// Stands in for the vault relay: knows the card behind each token, forwards the
/// authorization with the card data filled in.
#[derive(Debug)]
struct DirectRelay {
    cards: HashMap<String, String>,
    /// Checkout-bound tokens, as the intake makes them: token -> (card number, checkout).
    bound: std::sync::Mutex<HashMap<String, (String, String)>>,
    acquirer: HttpsPool,
}

impl DirectRelay {
    /// The card number behind `token` (a test card's, or a checkout-bound one's).
    fn pan_of(&self, token: &str) -> Option<String> {
        self.cards.get(token).cloned().or_else(|| self.bound.lock().unwrap().get(token).map(|(pan, _)| pan.clone()))
    }
}

/// Fill the dev policy's relay template as the vault would: card data where the policy
/// placed it, the gateway's checked values by name, optional values left out.
fn fill(request: &RelayRequest, pan: &str) -> (String, Value) {
    use paysys_policies::{CardField, CardPlaceholder, Policy, RelayTemplate, Slot};
    let policy = Policy::from_toml(paysys_policies::DEV_POLICY).unwrap();
    let template = policy.relay_template("spiffe://paysys/gateway", request.template).unwrap();
    let values = template.check_values(&request.values).unwrap_or_else(|e| panic!("the vault would refuse: {e}"));
    fn walk(v: &Value, pan: &str, values: &paysys_policies::CheckedValues) -> Option<Value> {
        Some(match v {
            Value::String(s) => match RelayTemplate::slot(s) {
                None => v.clone(),
                Some(Slot::TokenMerchant) => json!(MERCHANT),
                Some(Slot::Value(name)) => values.get(name)?.clone(),
                Some(Slot::Card(CardPlaceholder::Field(CardField::Number))) => json!(pan),
                Some(Slot::Card(CardPlaceholder::Field(CardField::ExpMonth))) => json!(12),
                Some(Slot::Card(CardPlaceholder::Field(CardField::ExpYear))) => json!(2031),
                Some(Slot::Card(CardPlaceholder::ExpiryYymm)) => json!("3112"),
                Some(Slot::Card(CardPlaceholder::Field(CardField::Cvc))) => json!("123"),
                Some(Slot::Card(CardPlaceholder::Field(CardField::Holder))) => json!("T"),
            },
            Value::Array(items) => Value::Array(items.iter().filter_map(|i| walk(i, pan, values)).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().filter_map(|(k, i)| Some((k.clone(), walk(i, pan, values)?))).collect())
            }
            other => other.clone(),
        })
    }
    let body = walk(template.body.as_ref().unwrap(), pan, &values).unwrap();
    (template.path.clone(), body)
}

#[async_trait::async_trait]
impl CardVault for DirectRelay {
    async fn relay(&self, request: &RelayRequest, timeout: Duration) -> RelayOutcome {
        let Some(pan) = self.pan_of(&request.token).filter(|_| request.merchant_id == MERCHANT) else {
            return RelayOutcome::TokenNotFound;
        };
        let (path, body) = fill(request, &pan);
        match self.acquirer.call("POST", &path, Some(&body), timeout, true).await {
            Ok(r) => RelayOutcome::Answered { status: r.status, body: r.body },
            Err(CallError::NotSent(e)) => RelayOutcome::NotSent(e),
            Err(CallError::Uncertain(e)) => RelayOutcome::Uncertain(e),
        }
    }

    async fn token_metadata(&self, token: &str) -> TokenLookup {
        let checkout_id = self.bound.lock().unwrap().get(token).map(|(_, checkout)| checkout.clone());
        match self.pan_of(token) {
            Some(pan) => TokenLookup::Found(TokenMetadata {
                token: token.to_owned(),
                merchant_id: MERCHANT.to_owned(),
                brand: "visa".into(),
                bin: pan[..6].to_owned(),
                last4: pan[pan.len() - 4..].to_owned(),
                exp_month: 12,
                exp_year: 2031,
                // One card, one fingerprint (made of what a fingerprint may not reveal).
                fingerprint: format!("fp-{}-{}", &pan[..6], &pan[pan.len() - 4..]),
                created_at: "2025-01-01T00:00:00Z".into(),
                checkout_id,
            }),
            None => TokenLookup::NotFound,
        }
    }

    async fn remove_token(&self, token: &str, merchant_id: &str) -> TokenRemoval {
        if self.pan_of(token).is_some() && merchant_id == MERCHANT {
            TokenRemoval::Removed
        } else {
            TokenRemoval::NotFound
        }
    }
}

/// The gateway served in-process; it dereferences to its merchant's signed JSON-RPC
/// client (`h.ok(…)`, `h.post(…)`, `h.sign(…)`, `h.service_id`).
struct Harness {
    gateway: Arc<Gateway>,
    /// The stand-in vault (checkout-bound tokens are minted here).
    relay: Arc<DirectRelay>,
    /// The gateway's URL.
    url: String,
    rpc: RpcClient,
    /// The merchant's secret (`rpc.secret` is its text), for tests that sign by hand.
    secret: MerchantSecret,
    sandbox: HttpsPool,
    dir: PathBuf,
    db_url: String,
    pg: Option<PostgresDatabase>,
}

impl std::ops::Deref for Harness {
    type Target = RpcClient;

    fn deref(&self) -> &RpcClient {
        &self.rpc
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

fn databases() -> Vec<Db> {
    let mut all = vec![Db::Sqlite];
    if postgres::admin_url().is_some() {
        all.push(Db::Postgres);
    } else {
        eprintln!("PAYSYS_TEST_POSTGRES_URL not set: PostgreSQL variants skipped");
    }
    all
}

impl Harness {
    async fn start(db: Db, acquirer_timeout_ms: u64, slow_card_delay_ms: u64) -> Harness {
        Harness::start_with(db, acquirer_timeout_ms, slow_card_delay_ms, AutoSettings::default()).await
    }

    /// A gateway whose merchant has `three_ds_auto` as its 3-D Secure `auto` settings.
    async fn start_with(
        db: Db,
        acquirer_timeout_ms: u64,
        slow_card_delay_ms: u64,
        three_ds_auto: AutoSettings,
    ) -> Harness {
        let dir = paysys_test_support::scratch_dir("gw");
        // The sandbox, in-process over real TLS.
        let ca = CertificateAuthority::generate("Gateway Test CA").unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
        ca.issue(&IssueRequest::server()).unwrap().write(&dir.join("sb.pem"), &dir.join("sb.key")).unwrap();
        let sandbox_tls =
            paysys_sandbox::tls::server_config(&dir.join("sb.pem"), &dir.join("sb.key"), None, None).unwrap().0;
        let store = paysys_sandbox::store::Store::open("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let network =
            Arc::new(paysys_sandbox::api::Network { store, auth_delay: Duration::from_millis(slow_card_delay_ms) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox_url = format!("https://{}", listener.local_addr().unwrap());
        tokio::spawn(paysys_sandbox::run(listener, sandbox_tls, network, 16 * 1024, std::future::pending()));
        let client_tls = || ClientTls::new(&dir.join("ca.pem"), None, HttpVersion::Http1).unwrap();

        let (db_url, pg) = match db {
            Db::Sqlite => (format!("sqlite:{}", dir.join("gateway.db").display()), None),
            Db::Postgres => {
                let database = PostgresDatabase::create("paysys_gw").await.unwrap();
                (database.url.clone(), Some(database))
            }
        };
        let store = Store::open(&db_url).await.unwrap();
        store.migrate().await.unwrap();
        let key = SecretKey::from_hex(&SecretKey::generate_hex()).unwrap();
        let secret = MerchantSecret::generate();
        let service_id = paysys_gateway::ids::new_service_id();
        store
            .insert_merchant(&MerchantRecord {
                merchant_id: MERCHANT.into(),
                service_id: service_id.clone(),
                name: "test".into(),
                secret_sealed: key.seal(&service_id, &secret).unwrap(),
                created_at: now_ms(),
                three_ds_auto,
                widget: Default::default(),
            })
            .await
            .unwrap();
        let mut cards: HashMap<String, String> = HashMap::new();
        for pan in [VISA, LIMITED, SLOW, UZCARD, ACS_U].into_iter().chain(DECLINES.iter().map(|(p, _)| *p)) {
            cards.insert(token_for(pan), pan.to_owned());
        }
        let relay = Arc::new(DirectRelay {
            cards,
            bound: Default::default(),
            acquirer: HttpsPool::new(client_tls(), &sandbox_url),
        });
        let timeout = Duration::from_millis(acquirer_timeout_ms);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let gateway = Arc::new(Gateway {
            store,
            vault: relay.clone(),
            acquirer: Arc::new(SandboxAcquirer::new(HttpsPool::new(client_tls(), &sandbox_url), timeout)),
            directory: Directory::new(HttpsPool::new(client_tls(), &sandbox_url)),
            webhooks: paysys_gateway::webhooks::Webhooks::new(
                Default::default(),
                SecretKey::from_hex(&SecretKey::generate_hex()).unwrap(),
            ),
            config: GatewayConfig { acquirer_timeout: timeout, lease_wait: Duration::from_secs(10) },
            three_ds: ThreeDsConfig { public_url: url.clone(), ..ThreeDsConfig::default() },
            token_bins: Default::default(),
            widget: checkout_cases::widget_config(),
        });
        let app = Arc::new(App::new(gateway.clone(), key));
        tokio::spawn(paysys_gateway::run(listener, None, app, 64 * 1024, std::future::pending()));
        Harness {
            gateway,
            relay,
            url: url.clone(),
            rpc: RpcClient::new(&url, &service_id, secret.expose_secret()),
            secret,
            sandbox: HttpsPool::new(client_tls(), &sandbox_url),
            dir,
            db_url,
            pg,
        }
    }

    async fn finish(self) {
        if let Some(database) = &self.pg {
            database.drop_database().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Sandbox ledger entries for one gateway reference.
    async fn sandbox_ledger(&self, reference: &str) -> Vec<Value> {
        let r = self
            .sandbox
            .call("GET", &format!("/acquirer/v1/ledger?reference={reference}"), None, Duration::from_secs(5), true)
            .await
            .unwrap();
        r.body["entries"].as_array().cloned().unwrap_or_default()
    }

    async fn sandbox_authorization(&self, reference: &str) -> Value {
        let r = self
            .sandbox
            .call("GET", &format!("/acquirer/v1/inquiry?reference={reference}"), None, Duration::from_secs(5), true)
            .await
            .unwrap();
        r.body
    }
}

fn create_params(pan: &str, amount: i64, partner: &str, extra: Value) -> Value {
    let mut p = json!({"card_token": token_for(pan), "amount": amount, "currency": "USD", "partner_trans_id": partner});
    if let (Some(obj), Value::Object(more)) = (p.as_object_mut(), extra) {
        obj.extend(more);
    }
    p
}

fn kinds(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn auth_header_is_required_and_checked() {
    let h = Harness::start(Db::Sqlite, 5_000, 60_000).await;
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"payment.list","params":{}}"#;
    let unauthorized = |v: &Value| v["error"]["code"] == -32504;
    // Missing.
    let (_, v) = h.post(body, None).await;
    assert!(unauthorized(&v), "{v}");
    // Wrong secret.
    let wrong = auth::sign(&h.service_id, &MerchantSecret::generate(), now_ms(), body);
    assert!(unauthorized(&h.post(body, Some(wrong)).await.1));
    // Stale timestamp (and one from the future).
    for ts in [now_ms() - 301_000, now_ms() + 301_000] {
        let stale = auth::sign(&h.service_id, &h.secret, ts, body);
        assert!(unauthorized(&h.post(body, Some(stale)).await.1));
    }
    // Body changed after signing.
    let signed = h.sign(body);
    let changed = br#"{"jsonrpc":"2.0","id":7,"method":"payment.list","params":{"count":1}}"#;
    assert!(unauthorized(&h.post(changed, Some(signed.clone())).await.1));
    // Unknown service id.
    let unknown = auth::sign("svc_nobody", &h.secret, now_ms(), body);
    assert!(unauthorized(&h.post(body, Some(unknown)).await.1));
    // Garbage.
    assert!(unauthorized(&h.post(body, Some("nonsense".into())).await.1));
    // The right one.
    let (_, v) = h.post(body, Some(signed)).await;
    assert_eq!(v["id"], 7);
    assert!(v["result"]["payments"].is_array(), "{v}");
    h.finish().await;
}

#[tokio::test]
async fn json_rpc_envelope_batches_and_discovery() {
    let h = Harness::start(Db::Sqlite, 5_000, 60_000).await;
    let send = |body: &'static [u8]| {
        let h = &h;
        async move { h.post(body, Some(h.sign(body))).await.1 }
    };
    assert_eq!(send(b"{not json").await["error"]["code"], -32700);
    assert_eq!(send(br#"{"jsonrpc":"1.0","id":1,"method":"payment.list"}"#).await["error"]["code"], -32600);
    assert_eq!(send(br#"[]"#).await["error"]["code"], -32600);
    assert_eq!(send(br#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#).await["error"]["code"], -32601);
    assert_eq!(
        send(br#"{"jsonrpc":"2.0","id":1,"method":"payment.list","params":[1]}"#).await["error"]["code"],
        -32602
    );
    assert_eq!(
        send(br#"{"jsonrpc":"2.0","id":1,"method":"payment.list","params":{"bogus":1}}"#).await["error"]["code"],
        -32602
    );
    let batch = send(
        br#"[{"jsonrpc":"2.0","id":"a","method":"payment.list","params":{"count":1}},
             {"jsonrpc":"2.0","method":"payment.list"},
             {"jsonrpc":"2.0","id":"b","method":"nope"}]"#,
    )
    .await;
    let batch = batch.as_array().unwrap();
    assert_eq!(batch.len(), 2, "the notification gets no answer");
    assert_eq!(batch[0]["id"], "a");
    assert!(batch[0]["result"].is_object());
    assert_eq!(batch[1]["error"]["code"], -32601);
    let doc = h.ok("rpc.discover", json!({})).await;
    assert_eq!(doc["openrpc"], "1.2.6");
    assert!(doc["methods"].as_array().unwrap().len() >= 10);
    h.finish().await;
}

#[tokio::test]
async fn payments_on_every_database() {
    for db in databases() {
        let h = Harness::start(db, 5_000, 60_000).await;
        auto_capture(&h).await;
        hold_partial_capture_refund(&h).await;
        hold_void(&h).await;
        declines(&h).await;
        idempotency_and_validation(&h).await;
        cards(&h).await;
        card_removal_waits_for_open_holds(&h).await;
        card_removal_is_claimed_by_one_deleter(&h).await;
        list(&h).await;
        h.finish().await;
    }
}

async fn auto_capture(h: &Harness) {
    let r = h.ok("payment.create", create_params(VISA, 1500, "auto-1", json!({}))).await;
    assert_eq!(r["status"], "captured", "{r}");
    assert_eq!(r["captured_amount"], 1500);
    assert_eq!(r["card"]["masked_number"], "424242******4242");
    let tx = r["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(kinds(&h.sandbox_ledger(&tx).await), ["authorization", "capture"]);
    let checked = h.ok("payment.check", json!({"partner_trans_id": "auto-1"})).await;
    assert_eq!(checked["transaction_id"], tx.as_str());
    let ledger = h.gateway.store.ledger(&tx).await.unwrap();
    let steps: Vec<(&str, &str)> = ledger.iter().map(|l| (l.from_status.as_str(), l.to_status.as_str())).collect();
    // `three_ds: auto` (the default) authenticates an enrolled card first.
    assert_eq!(
        steps,
        [
            ("created", "created"),
            ("created", "requires_3ds"),
            ("requires_3ds", "authorizing"),
            ("authorizing", "captured")
        ]
    );
    let skipped = h.ok("payment.create", create_params(VISA, 1500, "auto-2", json!({"three_ds": "skip"}))).await;
    let ledger = h.gateway.store.ledger(skipped["transaction_id"].as_str().unwrap()).await.unwrap();
    let steps: Vec<(&str, &str)> = ledger.iter().map(|l| (l.from_status.as_str(), l.to_status.as_str())).collect();
    assert_eq!(steps, [("created", "created"), ("created", "authorizing"), ("authorizing", "captured")]);
    assert!(skipped.get("three_ds").is_none(), "{skipped}");
}

async fn hold_partial_capture_refund(h: &Harness) {
    let r = h.ok("payment.create", create_params(VISA, 10_000, "hold-1", json!({"capture_method": "manual"}))).await;
    assert_eq!(r["status"], "authorized");
    assert!(r["hold_expires_at"].is_string());
    let tx = r["transaction_id"].as_str().unwrap().to_owned();
    let e = h.err("payment.capture", json!({"transaction_id": tx, "amount": 10_001})).await;
    assert_eq!(e["code"], -31031);
    let r = h.ok("payment.capture", json!({"transaction_id": tx, "amount": 3000, "final": false})).await;
    assert_eq!((r["status"].as_str(), r["captured_amount"].as_i64()), (Some("partially_captured"), Some(3000)));
    let r = h.ok("payment.capture", json!({"transaction_id": tx, "amount": 2000})).await;
    assert_eq!((r["status"].as_str(), r["captured_amount"].as_i64()), (Some("captured"), Some(5000)));
    assert_eq!(h.sandbox_authorization(&tx).await["status"], "captured");
    assert_eq!(kinds(&h.sandbox_ledger(&tx).await), ["authorization", "capture", "capture", "release"]);
    let e = h.err("payment.capture", json!({"transaction_id": tx})).await;
    assert_eq!(e["code"], -31008);
    let e = h.err("payment.void", json!({"transaction_id": tx})).await;
    assert_eq!(e["code"], -31007);

    let refund = json!({"transaction_id": tx, "amount": 1000, "partner_refund_id": "rf-1"});
    let r = h.ok("payment.refund", refund.clone()).await;
    assert_eq!(r["status"], "succeeded");
    assert_eq!(h.ok("payment.refund", refund.clone()).await, r, "same key, same params: the first answer");
    let e = h.err("payment.refund", json!({"transaction_id": tx, "amount": 999, "partner_refund_id": "rf-1"})).await;
    assert_eq!(e["code"], -31010);
    let e = h.err("payment.refund", json!({"transaction_id": tx, "amount": 4001, "partner_refund_id": "rf-2"})).await;
    assert_eq!(e["code"], -31032);
    assert_eq!(e["data"]["refundable_amount"], 4000);
    h.ok("payment.refund", json!({"transaction_id": tx, "amount": 4000, "partner_refund_id": "rf-3"})).await;
    let p = h.ok("payment.check", json!({"transaction_id": tx})).await;
    assert_eq!((p["refunded_amount"].as_i64(), p["refundable_amount"].as_i64()), (Some(5000), Some(0)));
    let c = h.ok("refund.check", json!({"partner_refund_id": "rf-1"})).await;
    assert_eq!(c["refund_id"], r["refund_id"]);
    assert_eq!(h.sandbox_authorization(&tx).await["refunded_amount"], 5000);
}

async fn hold_void(h: &Harness) {
    let r = h.ok("payment.create", create_params(LIMITED, 700, "void-1", json!({"capture_method": "manual"}))).await;
    let tx = r["transaction_id"].as_str().unwrap().to_owned();
    // The hold reduces what is left on the limited card (1000).
    let e = h.err("payment.create", create_params(LIMITED, 400, "void-2", json!({}))).await;
    assert_eq!(e["code"], -31303);
    assert_eq!(e["data"]["decline_code"], "51");
    let r = h.ok("payment.void", json!({"transaction_id": tx})).await;
    assert_eq!(r["status"], "voided");
    assert_eq!(h.sandbox_authorization(&tx).await["status"], "voided");
    assert_eq!(h.err("payment.void", json!({"transaction_id": tx})).await["code"], -31008);
    assert_eq!(h.err("payment.capture", json!({"transaction_id": tx})).await["code"], -31008);
    // Released: 400 passes now.
    let r = h.ok("payment.create", create_params(LIMITED, 400, "void-3", json!({"capture_method": "manual"}))).await;
    h.ok("payment.void", json!({"transaction_id": r["transaction_id"]})).await;
}

async fn declines(h: &Harness) {
    for (pan, code) in DECLINES {
        let e = h.err("payment.create", create_params(pan, 1000, &format!("decline-{code}"), json!({}))).await;
        assert_eq!(e["code"], -31040, "{pan}: {e}");
        assert_eq!(e["data"]["decline_code"], code, "{pan}");
        let tx = e["data"]["transaction_id"].as_str().unwrap();
        let p = h.ok("payment.check", json!({"transaction_id": tx})).await;
        assert_eq!(p["status"], "failed");
        assert_eq!(p["decline_code"], code);
        assert_eq!(kinds(&h.sandbox_ledger(tx).await), ["decline"]);
    }
}

async fn idempotency_and_validation(h: &Harness) {
    let params = create_params(VISA, 2000, "idem-1", json!({"description": "order 17"}));
    let first = h.ok("payment.create", params.clone()).await;
    assert_eq!(h.ok("payment.create", params.clone()).await, first);
    let e = h.err("payment.create", create_params(VISA, 2001, "idem-1", json!({"description": "order 17"}))).await;
    assert_eq!(e["code"], -31010);
    let tx = first["transaction_id"].as_str().unwrap();
    assert_eq!(kinds(&h.sandbox_ledger(tx).await), ["authorization", "capture"], "authorized once");
    // A declined first answer is replayed too.
    let e1 = h.err("payment.create", create_params(DECLINES[0].0, 1000, "idem-2", json!({}))).await;
    let e2 = h.err("payment.create", create_params(DECLINES[0].0, 1000, "idem-2", json!({}))).await;
    assert_eq!(e1, e2);

    // Amount limits per currency (ISO 4217 minor units).
    for (amount, currency) in [(49, "USD"), (10_000_001, "USD"), (15_000_001, "JPY"), (1000, "XXX"), (1000, "usd")] {
        let mut p = create_params(VISA, amount, &format!("lim-{amount}-{currency}"), json!({}));
        p["currency"] = json!(currency);
        assert_eq!(h.err("payment.create", p).await["code"], -31001, "{amount} {currency}");
    }
    let mut p = create_params(VISA, 1000, "lim-float", json!({}));
    p["amount"] = json!(10.5);
    assert_eq!(h.err("payment.create", p).await["code"], -31001);
    let mut p = create_params(VISA, 1000, "bad-token", json!({}));
    p["card_token"] = json!(VISA);
    let e = h.err("payment.create", p).await;
    assert_eq!(e["code"], -31300);
    assert!(!e.to_string().contains(VISA), "a card number is never echoed");
    let mut p = create_params(VISA, 1000, "unknown-token", json!({}));
    p["card_token"] = json!("tok_unknownunknownunknown00");
    assert_eq!(h.err("payment.create", p).await["code"], -31400);
    assert_eq!(h.err("payment.check", json!({"transaction_id": "tx_nope"})).await["code"], -31003);
    assert_eq!(h.err("payment.void", json!({"transaction_id": "tx_nope"})).await["code"], -31003);
}

async fn cards(h: &Harness) {
    let token = token_for(LIMITED);
    let c = h.ok("card.get", json!({"card_token": token})).await;
    assert_eq!(c["last4"], "9995");
    assert!(!c.to_string().contains(LIMITED));
    // No open payment needs the card (LIMITED's holds were voided): deleted in the vault at once.
    let r = h.ok("card.remove", json!({"card_token": token})).await;
    assert_eq!((&r["removed"], &r["card_data_deleted"]), (&json!(true), &json!(true)), "{r}");
    let removal = h.gateway.store.removed_token(MERCHANT, &token).await.unwrap().unwrap();
    assert!(removal.vault_deleted_at.is_some(), "{removal:?}");
    // Removing again changes nothing.
    assert_eq!(h.ok("card.remove", json!({"card_token": token})).await["card_data_deleted"], true);
    assert_eq!(h.err("card.get", json!({"card_token": token})).await["code"], -31400);
    let e = h.err("payment.create", create_params(LIMITED, 100, "after-remove", json!({}))).await;
    assert_eq!(e["code"], -31400);
    assert_eq!(h.err("card.get", json!({"card_token": "tok_unknownunknownunknown00"})).await["code"], -31400);
}

/// A card with an open hold stays in the vault until the hold closes; then the worker
/// deletes it. The pending deletion is a row in the store, not memory.
async fn card_removal_waits_for_open_holds(h: &Harness) {
    let token = token_for(VISA);
    let hold = h.ok("payment.create", create_params(VISA, 500, "rm-hold", json!({"capture_method": "manual"}))).await;
    assert_eq!(hold["status"], "authorized");
    let tx = hold["transaction_id"].as_str().unwrap().to_owned();
    assert!(h.gateway.store.card_needed_by_open_payment(MERCHANT, &token).await.unwrap());

    let r = h.ok("card.remove", json!({"card_token": token})).await;
    assert_eq!((&r["removed"], &r["card_data_deleted"]), (&json!(true), &json!(false)), "{r}");
    paysys_gateway::workers::run_once(&h.gateway).await;
    let pending = h.gateway.store.removed_token(MERCHANT, &token).await.unwrap().unwrap();
    assert_eq!(pending.vault_deleted_at, None, "the hold still needs the card");
    assert!(h.gateway.store.claim_vault_removals(now_ms(), now_ms() + 1, 10).await.unwrap().is_empty());

    // The hold can still be captured (by the acquirer's reference), and then it is closed.
    assert_eq!(h.ok("payment.capture", json!({"transaction_id": tx})).await["status"], "captured");
    assert!(!h.gateway.store.card_needed_by_open_payment(MERCHANT, &token).await.unwrap());
    paysys_gateway::workers::run_once(&h.gateway).await;
    let done = h.gateway.store.removed_token(MERCHANT, &token).await.unwrap().unwrap();
    assert!(done.vault_deleted_at.is_some(), "{done:?}");
    assert_eq!(h.ok("card.remove", json!({"card_token": token})).await["card_data_deleted"], true);
    // A refund goes by the acquirer's reference: the deleted card is not needed.
    let refund = json!({"transaction_id": tx, "amount": 100, "partner_refund_id": "rm-refund"});
    assert_eq!(h.ok("payment.refund", refund).await["status"], "succeeded");
}

/// A removal is claimed by the request that records it, so the worker does not delete
/// the same card beside it (each deletion is one `tokens.remove_for_merchant` at the
/// vault); a claim that runs out (its holder crashed) goes to the worker.
async fn card_removal_is_claimed_by_one_deleter(h: &Harness) {
    let store = &h.gateway.store;
    let (token, now) = ("tok_claimclaimclaimclaim0000", now_ms());
    assert!(store.remove_token(MERCHANT, token, now, now + 60_000).await.unwrap());
    assert!(!store.remove_token(MERCHANT, token, now, now + 60_000).await.unwrap(), "recorded once");
    assert!(store.claim_vault_removals(now, now + 60_000, 10).await.unwrap().is_empty(), "the worker waits");
    assert!(!store.claim_vault_removal(MERCHANT, token, now, now + 60_000).await.unwrap(), "so does a request");
    let later = now + 60_001;
    let claimed = store.claim_vault_removals(later, later + 60_000, 10).await.unwrap();
    assert_eq!(claimed, vec![(MERCHANT.to_owned(), token.to_owned())]);
    // Given back (an open payment still needs the card): due at once again.
    store.release_vault_removal(MERCHANT, token).await.unwrap();
    assert!(store.claim_vault_removal(MERCHANT, token, now, now + 60_000).await.unwrap());
    store.vault_removal_done(MERCHANT, token, now).await.unwrap();
    assert!(!store.claim_vault_removal(MERCHANT, token, later * 2, later * 2).await.unwrap(), "done is done");
}

async fn list(h: &Harness) {
    let all = h.ok("payment.list", json!({"count": 50})).await;
    assert!(all["count"].as_i64().unwrap() >= 5);
    let captured = h.ok("payment.list", json!({"status": "captured", "count": 2})).await;
    let items = captured["payments"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|p| p["status"] == "captured"));
    assert_eq!(h.err("payment.list", json!({"count": 51})).await["code"], -32602);
    let future = h.ok("payment.list", json!({"from": now_ms() + 60_000})).await;
    assert_eq!(future["count"], 0);
}

#[tokio::test]
async fn hold_expiry_applies_after_expired() {
    for db in databases() {
        let h = Harness::start(db, 5_000, 60_000).await;
        let void = h
            .ok(
                "payment.create",
                create_params(VISA, 1000, "exp-void", json!({"capture_method": "manual", "hold_ttl_sec": 1})),
            )
            .await;
        let capture = h
            .ok(
                "payment.create",
                create_params(
                    VISA,
                    1000,
                    "exp-capture",
                    json!({"capture_method": "manual", "hold_ttl_sec": 1, "after_expired": "capture"}),
                ),
            )
            .await;
        let partly = h
            .ok(
                "payment.create",
                create_params(VISA, 1000, "exp-partly", json!({"capture_method": "manual", "hold_ttl_sec": 1})),
            )
            .await;
        h.ok("payment.capture", json!({"transaction_id": partly["transaction_id"], "amount": 400, "final": false}))
            .await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let e = h.err("payment.capture", json!({"transaction_id": void["transaction_id"]})).await;
        assert_eq!(e["code"], -31033);
        paysys_gateway::workers::run_once(&h.gateway).await;
        let check = |p: &Value| h.ok("payment.check", json!({"transaction_id": p["transaction_id"]}));
        assert_eq!(check(&void).await["status"], "expired");
        let c = check(&capture).await;
        assert_eq!((c["status"].as_str(), c["captured_amount"].as_i64()), (Some("captured"), Some(1000)));
        let p = check(&partly).await;
        assert_eq!((p["status"].as_str(), p["captured_amount"].as_i64()), (Some("captured"), Some(400)));
        let tx = |p: &Value| p["transaction_id"].as_str().unwrap().to_owned();
        assert_eq!(h.sandbox_authorization(&tx(&void)).await["status"], "voided");
        assert_eq!(h.sandbox_authorization(&tx(&capture)).await["status"], "captured");
        assert_eq!(h.sandbox_authorization(&tx(&partly)).await["captured_amount"], 400);
        h.finish().await;
    }
}

#[tokio::test]
async fn a_timed_out_authorization_is_resolved_by_inquiry_not_reauthorized() {
    for db in databases() {
        let h = Harness::start(db, 400, 1_500).await;
        let r = h.ok("payment.create", create_params(SLOW, 1000, "slow-1", json!({}))).await;
        assert_eq!(r["status"], "processing", "{r}");
        let tx = r["transaction_id"].as_str().unwrap().to_owned();
        // A retry with the same key answers with the payment, never authorizes again.
        let again = h.ok("payment.create", create_params(SLOW, 1000, "slow-1", json!({}))).await;
        assert_eq!(again["transaction_id"], tx.as_str());
        // The sandbox recorded it at once: an inquiry finds it approved.
        let checked = h.ok("payment.check", json!({"transaction_id": tx})).await;
        assert_eq!(checked["status"], "captured", "{checked}");
        let manual =
            h.ok("payment.create", create_params(SLOW, 1000, "slow-2", json!({"capture_method": "manual"}))).await;
        assert_eq!(manual["status"], "processing");
        paysys_gateway::workers::run_once(&h.gateway).await;
        let manual = h.ok("payment.check", json!({"transaction_id": manual["transaction_id"]})).await;
        assert_eq!(manual["status"], "authorized");
        tokio::time::sleep(Duration::from_millis(1_600)).await;
        for reference in [tx.as_str(), manual["transaction_id"].as_str().unwrap()] {
            let auths = kinds(&h.sandbox_ledger(reference).await).iter().filter(|k| *k == "authorization").count();
            assert_eq!(auths, 1, "exactly one authorization for {reference}");
        }
        h.finish().await;
    }
}

#[tokio::test]
async fn concurrent_captures_never_exceed_the_hold_and_concurrent_creates_authorize_once() {
    for db in databases() {
        let h = Arc::new(Harness::start(db, 5_000, 60_000).await);
        let r =
            h.ok("payment.create", create_params(VISA, 10_000, "conc-1", json!({"capture_method": "manual"}))).await;
        let tx = r["transaction_id"].as_str().unwrap().to_owned();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let h = h.clone();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let params = json!({"transaction_id": tx, "amount": 300, "final": false});
                h.call_with_id("payment.capture", params, i).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            let v = t.await.unwrap();
            if v.get("result").is_some() {
                ok += 1;
            } else {
                let code = v["error"]["code"].as_i64().unwrap();
                assert!([-31031, -31008, -31011].contains(&code), "{v}");
            }
        }
        let p = h.ok("payment.check", json!({"transaction_id": tx})).await;
        assert_eq!(p["captured_amount"].as_i64().unwrap(), ok * 300);
        assert!(ok * 300 <= 10_000 && ok >= 1, "{ok}");
        let at_sandbox = h.sandbox_authorization(&tx).await;
        assert_eq!(at_sandbox["captured_amount"], p["captured_amount"]);

        let mut tasks = Vec::new();
        for _ in 0..50 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.call("payment.create", create_params(VISA, 1234, "conc-create", json!({}))).await
            }));
        }
        let mut ids = std::collections::HashSet::new();
        for t in tasks {
            let v = t.await.unwrap();
            match v.get("result") {
                Some(r) => {
                    ids.insert(r["transaction_id"].as_str().unwrap().to_owned());
                }
                None => assert_eq!(v["error"]["code"], -31011, "{v}"),
            }
        }
        assert!(ids.len() <= 1);
        let p = h.ok("payment.check", json!({"partner_trans_id": "conc-create"})).await;
        let tx = p["transaction_id"].as_str().unwrap();
        assert_eq!(kinds(&h.sandbox_ledger(tx).await), ["authorization", "capture"], "one authorization");
        let h = Arc::try_unwrap(h).ok().unwrap();
        // No card number in the gateway's database (the SQLite files, or the PostgreSQL rows).
        let bytes = database_dump(&h.db_url).await;
        for pan in [VISA, LIMITED, SLOW] {
            assert!(!bytes.windows(pan.len()).any(|w| w == pan.as_bytes()), "{pan} in the database");
        }
        h.finish().await;
    }
}

/// The same signature spelled differently: the MAC in upper-case hex and the timestamp
/// with leading zeros. Both verify; neither may pass as a new request.
fn respelled(header: &str) -> [String; 2] {
    let (rest, ts) = header.rsplit_once('-').unwrap();
    let (service, mac) = rest.rsplit_once('-').unwrap();
    [format!("{service}-{}-{ts}", mac.to_uppercase()), format!("{service}-{mac}-00{ts}")]
}

fn rpc_body(method: &str, params: Value, id: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).unwrap()
}

#[tokio::test]
async fn replayed_captures_and_voids_get_the_first_answer_and_move_no_money() {
    for db in databases() {
        let h = Arc::new(Harness::start(db, 5_000, 60_000).await);
        let r =
            h.ok("payment.create", create_params(VISA, 10_000, "replay-1", json!({"capture_method": "manual"}))).await;
        let tx = r["transaction_id"].as_str().unwrap().to_owned();

        // A partial capture, then the exact same signed bytes again (a replay by whoever
        // copied them, or the client's own retry after a lost answer).
        let body = rpc_body("payment.capture", json!({"transaction_id": tx, "amount": 3000, "final": false}), 41);
        let header = h.sign(&body);
        let (_, first) = h.post(&body, Some(header.clone())).await;
        assert_eq!(first["result"]["captured_amount"], 3000, "{first}");
        let (_, again) = h.post(&body, Some(header.clone())).await;
        assert_eq!(again, first, "the retry gets the same JSON");
        for header in respelled(&header) {
            let (_, v) = h.post(&body, Some(header.clone())).await;
            assert_eq!(v, first, "{header}");
        }
        assert_eq!(h.sandbox_authorization(&tx).await["captured_amount"], 3000, "captured once");
        assert_eq!(h.ok("payment.check", json!({"transaction_id": tx})).await["captured_amount"], 3000);
        assert_eq!(kinds(&h.sandbox_ledger(&tx).await), ["authorization", "capture"]);

        // The same params signed anew are a new request, and act.
        let (_, v) = h.post(&body, Some(auth::sign(&h.service_id, &h.secret, now_ms() + 1, &body))).await;
        assert_eq!(v["result"]["captured_amount"], 6000, "{v}");

        // Identical requests at once: one acts, the others get its answer or −31011.
        let body = rpc_body("payment.capture", json!({"transaction_id": tx, "amount": 1000, "final": false}), 42);
        let header = h.sign(&body);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (h, body, header) = (h.clone(), body.clone(), header.clone());
                tokio::spawn(async move { h.post(&body, Some(header)).await.1 })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            let v = t.await.unwrap();
            if v.get("result").is_some() {
                answers.push(v);
            } else {
                assert_eq!(v["error"]["code"], -31011, "{v}");
                assert_eq!(v["id"], 42);
            }
        }
        assert!(!answers.is_empty() && answers.iter().all(|a| a == &answers[0]), "{answers:?}");
        assert_eq!(h.sandbox_authorization(&tx).await["captured_amount"], 7000, "one capture of the ten");
        let (_, v) = h.post(&body, Some(header)).await;
        assert_eq!(v, answers[0]);

        // A void replayed answers as the first; the hold is released once.
        let r =
            h.ok("payment.create", create_params(VISA, 2_000, "replay-2", json!({"capture_method": "manual"}))).await;
        let tx = r["transaction_id"].as_str().unwrap().to_owned();
        let body = rpc_body("payment.void", json!({"transaction_id": tx}), 7);
        let header = h.sign(&body);
        let (_, first) = h.post(&body, Some(header.clone())).await;
        assert_eq!(first["result"]["status"], "voided", "{first}");
        let (_, again) = h.post(&body, Some(header.clone())).await;
        assert_eq!(again, first);
        assert_eq!(kinds(&h.sandbox_ledger(&tx).await), ["authorization", "void"]);
        // A void of a captured payment is refused; its replay is refused the same way.
        let captured = h.ok("payment.create", create_params(VISA, 2_000, "replay-3", json!({}))).await;
        let body = rpc_body("payment.void", json!({"transaction_id": captured["transaction_id"]}), 8);
        let header = h.sign(&body);
        let (_, first) = h.post(&body, Some(header.clone())).await;
        assert_eq!(first["error"]["code"], -31007, "{first}");
        assert_eq!(h.post(&body, Some(header)).await.1, first);

        // In a batch, and as a notification (no answer, but no second act either).
        let r =
            h.ok("payment.create", create_params(VISA, 9_000, "replay-4", json!({"capture_method": "manual"}))).await;
        let tx = r["transaction_id"].as_str().unwrap().to_owned();
        let batch = serde_json::to_vec(&json!([
            {"jsonrpc": "2.0", "id": 1, "method": "payment.capture",
             "params": {"transaction_id": tx, "amount": 1000, "final": false}},
            {"jsonrpc": "2.0", "id": 2, "method": "payment.check", "params": {"transaction_id": tx}},
        ]))
        .unwrap();
        let header = h.sign(&batch);
        let (_, first) = h.post(&batch, Some(header.clone())).await;
        assert_eq!(first[0]["result"]["captured_amount"], 1000, "{first}");
        assert_eq!(h.post(&batch, Some(header)).await.1, first);
        let note = serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": "payment.capture",
            "params": {"transaction_id": tx, "amount": 1000, "final": false}}))
        .unwrap();
        let header = h.sign(&note);
        for _ in 0..3 {
            let (status, v) = h.post(&note, Some(header.clone())).await;
            assert_eq!((status, v), (204, Value::Null));
        }
        assert_eq!(h.sandbox_authorization(&tx).await["captured_amount"], 2000, "one capture each");

        // Reads are not remembered: a replayed check reads again.
        let body = rpc_body("payment.check", json!({"transaction_id": tx}), 9);
        let header = h.sign(&body);
        assert_eq!(h.post(&body, Some(header.clone())).await.1["result"]["captured_amount"], 2000);
        h.ok("payment.capture", json!({"transaction_id": tx, "amount": 500, "final": false})).await;
        assert_eq!(h.post(&body, Some(header)).await.1["result"]["captured_amount"], 2500);

        let h = Arc::try_unwrap(h).ok().unwrap();
        h.finish().await;
    }
}

#[tokio::test]
async fn the_replay_guard_forgets_requests_past_the_auth_window() {
    for db in databases() {
        let h = Harness::start(db, 5_000, 60_000).await;
        let store = &h.gateway.store;
        let now = now_ms();
        assert_eq!(store.claim_request("d-old", MERCHANT, now, now - 1).await.unwrap(), RequestClaim::Claimed);
        assert_eq!(store.claim_request("d-new", MERCHANT, now, now + 60_000).await.unwrap(), RequestClaim::Claimed);
        assert_eq!(store.claim_request("d-new", MERCHANT, now, now + 60_000).await.unwrap(), RequestClaim::Running);
        store.answer_request("d-new", "{\"result\":1}").await.unwrap();
        assert_eq!(
            store.claim_request("d-new", MERCHANT, now, now + 60_000).await.unwrap(),
            RequestClaim::Answered("{\"result\":1}".into())
        );
        paysys_gateway::workers::run_once(&h.gateway).await;
        assert_eq!(store.sweep_requests(now_ms()).await.unwrap(), 0, "the workers swept the old one");
        assert_eq!(store.claim_request("d-old", MERCHANT, now, now + 1).await.unwrap(), RequestClaim::Claimed);
        assert!(matches!(store.claim_request("d-new", MERCHANT, now, now).await.unwrap(), RequestClaim::Answered(_)));
        h.finish().await;
    }
}

#[tokio::test]
async fn partner_capture_id_is_an_idempotency_key() {
    for db in databases() {
        let h = Arc::new(Harness::start(db, 5_000, 60_000).await);
        let r = h.ok("payment.create", create_params(VISA, 10_000, "key-1", json!({"capture_method": "manual"}))).await;
        let tx = r["transaction_id"].as_str().unwrap().to_owned();
        let keyed = |amount: i64, key: &str| json!({"transaction_id": tx, "amount": amount, "final": false, "partner_capture_id": key});
        let first = h.call("payment.capture", keyed(3000, "cap-1")).await;
        assert_eq!(first["result"]["captured_amount"], 3000, "{first}");
        // Signed anew (not the replay guard's business): the key answers as the first time.
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(h.call("payment.capture", keyed(3000, "cap-1")).await, first);
        assert_eq!(h.sandbox_authorization(&tx).await["captured_amount"], 3000);
        // The key with other params.
        assert_eq!(h.err("payment.capture", keyed(2000, "cap-1")).await["code"], -31010);
        let mut other_final = keyed(3000, "cap-1");
        other_final["final"] = json!(true);
        assert_eq!(h.err("payment.capture", other_final).await["code"], -31010);
        let r = h.ok("payment.create", create_params(VISA, 10_000, "key-2", json!({"capture_method": "manual"}))).await;
        let other_tx = r["transaction_id"].as_str().unwrap().to_owned();
        let e = h
            .err(
                "payment.capture",
                json!({"transaction_id": other_tx, "amount": 3000, "final": false, "partner_capture_id": "cap-1"}),
            )
            .await;
        assert_eq!(e["code"], -31010);
        assert_eq!(h.sandbox_authorization(&other_tx).await["captured_amount"], 0);
        // A new key captures again.
        assert_eq!(h.ok("payment.capture", keyed(2000, "cap-2")).await["captured_amount"], 5000);

        // Ten at once with one key: one capture; the rest get its answer or −31011.
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let (h, params) = (h.clone(), keyed(1000, "cap-3"));
                tokio::spawn(async move { h.call_with_id("payment.capture", params, i).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            let v = t.await.unwrap();
            match v.get("result") {
                Some(r) => results.push(r.clone()),
                None => assert_eq!(v["error"]["code"], -31011, "{v}"),
            }
        }
        assert!(!results.is_empty() && results.iter().all(|r| r == &results[0]), "{results:?}");
        assert_eq!(h.sandbox_authorization(&tx).await["captured_amount"], 6000, "one capture under cap-3");

        // A refused capture is remembered as refused; an over-capture under a new key
        // changes nothing at the acquirer.
        let e = h.err("payment.capture", keyed(9000, "cap-4")).await;
        assert_eq!(e["code"], -31031);
        assert_eq!(h.err("payment.capture", keyed(9000, "cap-4")).await, e);
        assert_eq!(h.sandbox_authorization(&tx).await["captured_amount"], 6000);

        // Keys are screened like every other stored id.
        for key in ["4242424242424242", "cap-4242-4242-4242-4242", ""] {
            let e = h.err("payment.capture", keyed(100, key)).await;
            assert_eq!(e["code"], -32602, "{key:?}: {e}");
            assert!(!e.to_string().contains("4242"), "{e}");
        }
        let e = h
            .err(
                "payment.refund",
                json!({"transaction_id": tx, "amount": 100, "partner_refund_id": "4242424242424242"}),
            )
            .await;
        assert_eq!(e["code"], -32602, "{e}");
        assert_eq!(e["message"], "invalid params: partner_refund_id must not contain a card number");
        assert_eq!(h.sandbox_authorization(&tx).await["refunded_amount"], 0);
        let h = Arc::try_unwrap(h).ok().unwrap();
        h.finish().await;
    }
}

fn payment_in(pan: &str, amount: i64, currency: &str, partner: &str) -> Value {
    json!({"card_token": token_for(pan), "amount": amount, "currency": currency, "partner_trans_id": partner})
}

#[tokio::test]
async fn three_ds_auto_follows_the_merchants_settings() {
    for db in databases() {
        // The default: a card the DS does not enroll is paid without 3-D Secure; an
        // ACS that cannot authenticate (`U`) fails the payment.
        let h = Harness::start(db, 5_000, 60_000).await;
        let r = h.ok("payment.create", payment_in(UZCARD, 1500, "USD", "d-uz")).await;
        assert_eq!(r["status"], "captured", "{r}");
        let e = h.err("payment.create", payment_in(ACS_U, 1500, "USD", "d-u")).await;
        assert_eq!((e["code"].as_i64(), e["data"]["trans_status"].as_str()), (Some(-31022), Some("U")), "{e}");
        h.finish().await;

        // A merchant that allows none: the not-enrolled card fails, and nothing is authorized.
        let none = AutoSettings { proceed_on: Default::default(), ..AutoSettings::default() };
        let h = Harness::start_with(db, 5_000, 60_000, none).await;
        let e = h.err("payment.create", payment_in(UZCARD, 1500, "USD", "n-uz")).await;
        assert_eq!((e["code"].as_i64(), e["data"]["reason"].as_str()), (Some(-31022), Some("unavailable")), "{e}");
        let tx = e["data"]["transaction_id"].as_str().unwrap().to_owned();
        let p = h.ok("payment.check", json!({"transaction_id": tx})).await;
        assert_eq!(p["status"], "failed");
        assert!(h.sandbox_ledger(&tx).await.is_empty(), "no authorization at the acquirer");
        // `skip` is still the merchant's to ask for.
        let r = h
            .ok(
                "payment.create",
                json!({"card_token": token_for(UZCARD), "amount": 1500, "currency": "USD",
            "partner_trans_id": "n-uz-skip", "three_ds": "skip"}),
            )
            .await;
        assert_eq!(r["status"], "captured");
        h.finish().await;

        // A merchant that lets `U` through: paid without 3-D Secure, and the payment says so.
        let u = AutoSettings {
            proceed_on: [AutoFallback::NotEnrolled, AutoFallback::TransStatusU].into_iter().collect(),
            ..AutoSettings::default()
        };
        let h = Harness::start_with(db, 5_000, 60_000, u).await;
        let r = h.ok("payment.create", payment_in(ACS_U, 1500, "USD", "u-u")).await;
        assert_eq!(r["status"], "captured", "{r}");
        assert_eq!(
            (r["three_ds"]["skipped"].as_str(), r["three_ds"]["trans_status"].as_str()),
            (Some("trans_status_u"), Some("U"))
        );
        // ... but `force` still fails it.
        let e = h
            .err(
                "payment.create",
                json!({"card_token": token_for(ACS_U), "amount": 1500, "currency": "USD",
            "partner_trans_id": "u-force", "three_ds": "force"}),
            )
            .await;
        assert_eq!(e["code"], -31022);
        h.finish().await;

        // A minimum per currency: USD below 50.00 skips 3-D Secure; the same amount in
        // another currency is authenticated.
        let min = AutoSettings {
            min_amounts: AutoSettings::parse_min_amounts(&["USD=5000"]).unwrap(),
            ..AutoSettings::default()
        };
        let h = Harness::start_with(db, 5_000, 60_000, min).await;
        let below = h.ok("payment.create", payment_in(VISA, 4999, "USD", "m-usd-below")).await;
        assert!(below.get("three_ds").is_none(), "not authenticated: {below}");
        let at = h.ok("payment.create", payment_in(VISA, 5000, "USD", "m-usd-at")).await;
        assert_eq!(at["three_ds"]["trans_status"], "Y", "{at}");
        let eur = h.ok("payment.create", payment_in(VISA, 4999, "EUR", "m-eur")).await;
        assert_eq!(eur["three_ds"]["trans_status"], "Y", "only USD has a minimum: {eur}");
        let uzs = h.ok("payment.create", payment_in(VISA, 4999, "UZS", "m-uzs")).await;
        assert_eq!(uzs["three_ds"]["trans_status"], "Y", "{uzs}");
        for (r, skipped) in [(&below, true), (&at, false)] {
            let ledger = h.gateway.store.ledger(r["transaction_id"].as_str().unwrap()).await.unwrap();
            assert_eq!(ledger.iter().any(|l| l.to_status == "requires_3ds"), !skipped, "{r}");
        }
        h.finish().await;
    }
}
