//! The real `paysys-sandbox` binary on a free loopback port, over real TLS (and mTLS),
//! on SQLite and — when `PAYSYS_TEST_POSTGRES_URL` names a server — PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys::pki::{CertificateAuthority, IssueRequest};
use paysys_test_support::cards::{LIMITED, SLOW, VISA};
use paysys_test_support::postgres::PostgresDatabase;
use paysys_test_support::process::listening_url;
use paysys_vault_client::{ClientTls, HttpVersion, VaultConnection, VaultResponse};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        TempDir(paysys_test_support::scratch_dir("sandbox"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Default)]
struct Options {
    database_url: Option<String>,
    mtls: bool,
    auth_delay_ms: Option<u64>,
}

/// A running sandbox process; killed when dropped.
struct Sandbox {
    child: Child,
    url: String,
    ca: CertificateAuthority,
    dir: TempDir,
    /// Everything the process wrote to stderr (its logs).
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Client certificate files, when started with mTLS.
    client_identity: Option<(PathBuf, PathBuf)>,
}

impl Sandbox {
    async fn start(options: Options) -> Sandbox {
        let dir = TempDir::new();
        let ca = CertificateAuthority::generate("PaySys Sandbox Test CA").unwrap();
        std::fs::write(dir.0.join("ca.pem"), ca.cert_pem()).unwrap();
        ca.issue(&IssueRequest::server()).unwrap().write(&dir.0.join("server.pem"), &dir.0.join("server.key")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_paysys-sandbox"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(dir.0.join("server.pem"))
            .arg("--tls-key")
            .arg(dir.0.join("server.key"))
            .args(["--auth-delay-ms", &options.auth_delay_ms.unwrap_or(60_000).to_string()])
            .env("PAYSYS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(url) = &options.database_url {
            command.args(["--database-url", url]);
        }
        let client_identity = if options.mtls {
            command.arg("--client-ca").arg(dir.0.join("ca.pem"));
            let (cert, key) = (dir.0.join("client.pem"), dir.0.join("client.key"));
            ca.issue(&IssueRequest::client("spiffe://paysys/gateway")).unwrap().write(&cert, &key).unwrap();
            Some((cert, key))
        } else {
            None
        };
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut stderr_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let url = listening_url(&mut stdout, "paysys-sandbox listening on ", || {
            String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned()
        })
        .await;
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        // Nothing else may appear on stdout; keep draining it so the child never blocks.
        tokio::spawn(async move {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest).await;
            assert!(rest.is_empty(), "unexpected stdout: {rest}");
        });
        Sandbox { child, url, ca, dir, stderr, client_identity }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
    }

    async fn client(&self) -> Client {
        let identity = self.client_identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        self.client_with(identity).await.unwrap()
    }

    async fn client_with(&self, identity: Option<(&Path, &Path)>) -> Result<Client, String> {
        let tls = ClientTls::new(&self.ca_path(), identity, HttpVersion::Http1).map_err(|e| e.to_string())?;
        let connection = tls.connect(&self.url).await.map_err(|e| e.to_string())?;
        Ok(Client(connection))
    }

    fn logs(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// SIGTERM, and wait for a clean exit.
    async fn stop(mut self) {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "exit status {status}; logs:\n{}", self.logs());
    }
}

struct Client(VaultConnection);

impl Client {
    async fn post(&mut self, path: &str, body: Value) -> VaultResponse {
        self.0.call("POST", path, Some(&body)).await.unwrap()
    }

    async fn get(&mut self, path: &str) -> VaultResponse {
        self.0.call("GET", path, None).await.unwrap()
    }

    async fn authorize(&mut self, reference: &str, number: &str, amount: i64, capture: bool) -> VaultResponse {
        self.post("/acquirer/v1/authorizations", authorization(reference, number, amount, capture)).await
    }

    /// An approved authorization's acquirer_ref.
    async fn hold(&mut self, reference: &str, number: &str, amount: i64) -> String {
        let r = self.authorize(reference, number, amount, false).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["approved"], true, "{}", r.body);
        assert_eq!(r.body["status"], "authorized");
        r.body["acquirer_ref"].as_str().unwrap().to_owned()
    }

    async fn capture(&mut self, acquirer_ref: &str, amount: Option<i64>) -> VaultResponse {
        let body = match amount {
            Some(a) => json!({ "amount": a }),
            None => json!({}),
        };
        self.post(&format!("/acquirer/v1/authorizations/{acquirer_ref}/capture"), body).await
    }

    async fn void(&mut self, acquirer_ref: &str) -> VaultResponse {
        self.0.call_raw("POST", &format!("/acquirer/v1/authorizations/{acquirer_ref}/void"), None).await.unwrap()
    }

    async fn refund(&mut self, acquirer_ref: &str, amount: i64, refund_reference: &str) -> VaultResponse {
        let body = json!({ "amount": amount, "refund_reference": refund_reference });
        self.post(&format!("/acquirer/v1/authorizations/{acquirer_ref}/refund"), body).await
    }

    /// (balance, held, available) of `number` in `currency`.
    async fn balance(&mut self, number: &str, currency: &str) -> (i64, i64, i64) {
        let r = self.post("/issuer/v1/balance", json!({ "card": { "number": number }, "currency": currency })).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let b = &r.body;
        let get = |k: &str| b[k].as_i64().unwrap();
        assert_eq!(get("available"), get("balance") - get("held"));
        (get("balance"), get("held"), get("available"))
    }

    async fn ledger(&mut self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/acquirer/v1/ledger?{query}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["entries"].as_array().unwrap().clone()
    }
}

fn authorization(reference: &str, number: &str, amount: i64, capture: bool) -> Value {
    json!({
        "merchant_id": "m_test",
        "reference": reference,
        "amount": amount,
        "currency": "UZS",
        "card": { "number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123", "holder": "TEST HOLDER" },
        "capture": capture,
    })
}

fn new_reference() -> String {
    format!("tx_{:016x}", rand::random::<u64>())
}

/// Assert an error response: status, the stable code, and the error shape.
fn assert_error(r: &VaultResponse, status: u16, code: &str) {
    assert_eq!((r.status, r.error_code()), (status, Some(code)), "{}", r.body);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    assert_eq!(r.body.as_object().unwrap().len(), 1, "only `error` at the top: {}", r.body);
}

#[tokio::test]
async fn each_test_card_gets_its_outcome() {
    let sandbox = Sandbox::start(Options::default()).await;
    let mut client = sandbox.client().await;
    let cases: &[(&str, Option<&str>)] = &[
        ("4242424242424242", None),
        ("5555555555554444", None),
        ("8600069195406311", None),
        ("9860000000000018", None),
        ("4000000000009995", None),
        ("4111111111111111", None), // not in the table, valid Luhn
        ("4000000000000002", Some("05")),
        ("4000000000009979", Some("43")),
        ("4000000000000069", Some("54")),
        ("4000000000000127", Some("N7")),
        ("4000000000000119", Some("96")),
        ("4242424242424241", Some("14")), // fails Luhn
        ("42424242", Some("14")),         // too short
    ];
    for &(number, decline) in cases {
        let r = client.authorize(&new_reference(), number, 500, false).await;
        assert_eq!(r.status, 200, "{number}: {}", r.body);
        let body = &r.body;
        let rrn = body["rrn"].as_str().unwrap();
        assert!(rrn.len() == 12 && rrn.bytes().all(|b| b.is_ascii_digit()), "{rrn}");
        assert!(body["acquirer_ref"].as_str().unwrap().starts_with("acq_"));
        match decline {
            None => {
                assert_eq!(body["approved"], true, "{number}: {body}");
                assert_eq!(body["status"], "authorized");
                let code = body["auth_code"].as_str().unwrap();
                assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_alphanumeric()), "{code}");
                assert!(body.get("decline_code").is_none());
                let masked = body["card"]["masked_number"].as_str().unwrap();
                assert_eq!(masked, format!("{}******{}", &number[..6], &number[12..]));
            }
            Some(code) => {
                assert_eq!(body["approved"], false, "{number}: {body}");
                assert_eq!(body["status"], "declined");
                assert_eq!(body["decline_code"], code, "{number}: {body}");
                assert!(body["decline_reason"].as_str().is_some());
                assert!(body.get("auth_code").is_none());
            }
        }
        assert!(!r.raw.windows(number.len()).any(|w| w == number.as_bytes()), "full PAN in the response");
    }

    // Expired by date: any card, decline 54. Malformed CVC: N7. No CVC: fine.
    let mut expired = authorization(&new_reference(), VISA, 100, false);
    expired["card"]["exp_month"] = json!(1);
    expired["card"]["exp_year"] = json!(2020);
    let r = client.post("/acquirer/v1/authorizations", expired).await;
    assert_eq!((r.body["approved"].clone(), r.body["decline_code"].clone()), (json!(false), json!("54")));
    let mut bad_cvc = authorization(&new_reference(), VISA, 100, false);
    bad_cvc["card"]["cvc"] = json!("12x");
    let r = client.post("/acquirer/v1/authorizations", bad_cvc).await;
    assert_eq!(r.body["decline_code"], "N7", "{}", r.body);
    let mut no_cvc = authorization(&new_reference(), VISA, 100, false);
    no_cvc["card"].as_object_mut().unwrap().remove("cvc");
    // Expiry as strings, as a template may render it.
    no_cvc["card"]["exp_month"] = json!("07");
    no_cvc["card"]["exp_year"] = json!("2099");
    let r = client.post("/acquirer/v1/authorizations", no_cvc).await;
    assert_eq!(r.body["approved"], true, "{}", r.body);

    // Declined authorizations hold nothing and can be neither captured nor voided.
    let r = client.authorize(&new_reference(), "4000000000000002", 100, false).await;
    let declined = r.body["acquirer_ref"].as_str().unwrap();
    assert_error(&client.capture(declined, None).await, 409, "authorization_declined");
    assert_error(&client.void(declined).await, 409, "authorization_declined");
    sandbox.stop().await;
}

/// Holds, voids, captures, partial captures and refunds move the limited card's balance,
/// and insufficient funds follows from it.
async fn balances_follow_the_money(sandbox: &Sandbox) {
    let mut c = sandbox.client().await;
    assert_eq!(c.balance(LIMITED, "UZS").await, (1000, 0, 1000));
    let first = c.hold(&new_reference(), LIMITED, 600).await;
    assert_eq!(c.balance(LIMITED, "UZS").await, (1000, 600, 400));
    // Every currency has its own 1000.
    assert_eq!(c.balance(LIMITED, "USD").await, (1000, 0, 1000));

    let r = c.authorize(&new_reference(), LIMITED, 401, false).await;
    assert_eq!((r.body["approved"].clone(), r.body["decline_code"].clone()), (json!(false), json!("51")));
    assert_eq!(r.body["decline_reason"], "insufficient funds");
    let second = c.hold(&new_reference(), LIMITED, 400).await;
    assert_eq!(c.balance(LIMITED, "UZS").await, (1000, 1000, 0));

    // Void releases the hold.
    let r = c.void(&second).await;
    assert_eq!((r.status, r.body["status"].clone()), (200, json!("voided")), "{}", r.body);
    assert_eq!(c.balance(LIMITED, "UZS").await, (1000, 600, 400));

    // Partial capture settles 250 and releases the other 350.
    let r = c.capture(&first, Some(250)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["status"].clone(), r.body["captured_amount"].clone()), (json!("captured"), json!(250)));
    assert_eq!(c.balance(LIMITED, "UZS").await, (750, 0, 750));

    // Refunds return money, up to what was captured.
    let r = c.refund(&first, 100, "rf_1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["amount"], 100);
    assert_eq!(r.body["authorization"]["status"], "partially_refunded");
    assert_eq!(r.body["authorization"]["refunded_amount"], 100);
    let rrn = r.body["rrn"].clone();
    assert_eq!(c.balance(LIMITED, "UZS").await, (850, 0, 850));
    // The same refund again: the first answer, no second credit.
    let again = c.refund(&first, 100, "rf_1").await;
    assert_eq!((again.status, again.body["rrn"].clone()), (200, rrn));
    assert_eq!(c.balance(LIMITED, "UZS").await, (850, 0, 850));
    assert_error(&c.refund(&first, 99, "rf_1").await, 409, "refund_reference_conflict");
    assert_error(&c.refund(&first, 151, "rf_2").await, 422, "refund_exceeds_captured");
    let r = c.refund(&first, 150, "rf_2").await;
    assert_eq!(r.body["authorization"]["status"], "refunded", "{}", r.body);
    assert_eq!(c.balance(LIMITED, "UZS").await, (1000, 0, 1000));
    assert_error(&c.refund(&first, 1, "rf_3").await, 422, "refund_exceeds_captured");

    // Authorization with capture: settled at once, no hold.
    let r = c.authorize(&new_reference(), LIMITED, 300, true).await;
    assert_eq!((r.body["status"].clone(), r.body["captured_amount"].clone()), (json!("captured"), json!(300)));
    assert_eq!(c.balance(LIMITED, "UZS").await, (700, 0, 700));
    let sale = r.body["acquirer_ref"].as_str().unwrap().to_owned();
    assert_error(&c.capture(&sale, None).await, 409, "already_captured");
    assert_error(&c.void(&sale).await, 409, "cannot_void_captured");

    // Non-final captures keep the rest on hold; the final one releases it.
    let multi = c.hold(&new_reference(), LIMITED, 500).await;
    assert_eq!(c.balance(LIMITED, "UZS").await, (700, 500, 200));
    let path = format!("/acquirer/v1/authorizations/{multi}/capture");
    let r = c.post(&path, json!({ "amount": 100, "final": false })).await;
    assert_eq!(
        (r.body["status"].clone(), r.body["captured_amount"].clone()),
        (json!("partially_captured"), json!(100))
    );
    assert_eq!(c.balance(LIMITED, "UZS").await, (600, 400, 200));
    assert_eq!(c.refund(&multi, 40, "rf_m").await.body["authorization"]["status"], "partially_captured");
    assert_eq!(c.balance(LIMITED, "UZS").await, (640, 400, 240));
    assert_error(&c.post(&path, json!({ "amount": 401, "final": false })).await, 422, "capture_exceeds_authorization");
    let r = c.post(&path, json!({ "amount": 150 })).await;
    assert_eq!(
        (r.body["status"].clone(), r.body["captured_amount"].clone()),
        (json!("partially_refunded"), json!(250))
    );
    assert_eq!(c.balance(LIMITED, "UZS").await, (490, 0, 490));
    assert_error(&c.capture(&multi, Some(1)).await, 409, "already_captured");
    // A void after a non-final capture releases what is still held.
    let rest = c.hold(&new_reference(), LIMITED, 300).await;
    let r =
        c.post(&format!("/acquirer/v1/authorizations/{rest}/capture"), json!({ "amount": 100, "final": false })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c.void(&rest).await;
    assert_eq!((r.body["status"].clone(), r.body["captured_amount"].clone()), (json!("captured"), json!(100)));
    assert_eq!(c.balance(LIMITED, "UZS").await, (390, 0, 390));

    // The ledger tells the story of the first authorization, card masked.
    let entries = c.ledger(&format!("acquirer_ref={first}")).await;
    let story: Vec<(String, i64)> =
        entries.iter().map(|e| (e["kind"].as_str().unwrap().to_owned(), e["amount"].as_i64().unwrap())).collect();
    let expected = [("authorization", 600), ("capture", 250), ("release", 350), ("refund", 100), ("refund", 150)];
    assert_eq!(story, expected.map(|(k, a)| (k.to_owned(), a)));
    assert!(entries.iter().all(|e| e["masked_number"] == "400000******9995"));
    assert_eq!(entries[3]["refund_reference"], "rf_1");
}

#[tokio::test]
async fn balances_follow_the_money_on_sqlite() {
    let sandbox = Sandbox::start(Options::default()).await;
    balances_follow_the_money(&sandbox).await;
    sandbox.stop().await;
}

#[tokio::test]
async fn balances_follow_the_money_on_postgres() {
    let Some(db) = PostgresDatabase::create("paysys_sandbox").await else {
        eprintln!("PAYSYS_TEST_POSTGRES_URL not set: skipping");
        return;
    };
    let sandbox = Sandbox::start(Options { database_url: Some(db.url.clone()), ..Options::default() }).await;
    balances_follow_the_money(&sandbox).await;
    sandbox.stop().await;
    db.drop_database().await;
}

/// Concurrent duplicates of one reference hold once; concurrent authorizations on the
/// limited card never hold more than its balance; concurrent captures capture once.
async fn concurrency_is_safe(sandbox: &Sandbox) {
    const N: usize = 16;
    let reference = new_reference();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..N {
        let mut c = sandbox.client().await;
        let reference = reference.clone();
        tasks.spawn(async move { c.authorize(&reference, LIMITED, 600, false).await });
    }
    let mut refs = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!((r.status, r.body["approved"].clone()), (200, json!(true)), "{}", r.body);
        refs.push(r.body["acquirer_ref"].as_str().unwrap().to_owned());
    }
    refs.dedup();
    assert_eq!(refs.len(), 1, "one authorization for one reference");
    let mut c = sandbox.client().await;
    assert_eq!(c.balance(LIMITED, "UZS").await, (1000, 600, 400));
    let entries = c.ledger(&format!("reference={reference}")).await;
    assert_eq!(entries.len(), 1, "{entries:?}");

    // 400 left: of N concurrent holds of 150, exactly two pass.
    for _ in 0..N {
        let mut c = sandbox.client().await;
        tasks.spawn(async move { c.authorize(&new_reference(), LIMITED, 150, false).await });
    }
    let mut approved = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        if r.body["approved"] == true {
            approved.push(r.body["acquirer_ref"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(r.body["decline_code"], "51", "{}", r.body);
        }
    }
    assert_eq!(approved.len(), 2);
    assert_eq!(c.balance(LIMITED, "UZS").await, (1000, 900, 100));

    // N concurrent captures of one hold: one succeeds.
    let hold = refs.pop().unwrap();
    for _ in 0..N {
        let mut c = sandbox.client().await;
        let hold = hold.clone();
        tasks.spawn(async move { c.capture(&hold, Some(500)).await });
    }
    let mut captured = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        if r.status == 200 {
            captured += 1;
        } else {
            assert_error(&r, 409, "already_captured");
        }
    }
    assert_eq!(captured, 1);
    // 500 settled, 100 of the 600 released; the two 150 holds remain.
    assert_eq!(c.balance(LIMITED, "UZS").await, (500, 300, 200));
}

#[tokio::test]
async fn concurrency_is_safe_on_sqlite() {
    let dir = TempDir::new();
    // A file we name and keep (WAL); the other tests use the default `sqlite::memory:`,
    // which is a temporary file deleted with the store.
    let url = format!("sqlite:{}", dir.0.join("sandbox.db").display());
    let sandbox = Sandbox::start(Options { database_url: Some(url), ..Options::default() }).await;
    concurrency_is_safe(&sandbox).await;
    sandbox.stop().await;
}

#[tokio::test]
async fn concurrency_is_safe_on_postgres() {
    let Some(db) = PostgresDatabase::create("paysys_sandbox").await else {
        eprintln!("PAYSYS_TEST_POSTGRES_URL not set: skipping");
        return;
    };
    let sandbox = Sandbox::start(Options { database_url: Some(db.url.clone()), ..Options::default() }).await;
    concurrency_is_safe(&sandbox).await;
    sandbox.stop().await;
    db.drop_database().await;
}

#[tokio::test]
async fn authorization_is_idempotent_on_reference() {
    let sandbox = Sandbox::start(Options::default()).await;
    let mut c = sandbox.client().await;
    let reference = new_reference();
    let first = c.authorize(&reference, VISA, 1234, false).await;
    let again = c.authorize(&reference, VISA, 1234, false).await;
    assert_eq!(first.body, again.body);
    // Same reference, different request: a conflict, never a second authorization.
    assert_error(&c.authorize(&reference, VISA, 1235, false).await, 409, "reference_conflict");
    assert_error(&c.authorize(&reference, "5555555555554444", 1234, false).await, 409, "reference_conflict");
    assert_error(&c.authorize(&reference, VISA, 1234, true).await, 409, "reference_conflict");
    // A declined first answer is the answer for good.
    let declined_ref = new_reference();
    let declined = c.authorize(&declined_ref, "4000000000000002", 10, false).await;
    assert_eq!(c.authorize(&declined_ref, "4000000000000002", 10, false).await.body, declined.body);
    assert_eq!(c.ledger(&format!("reference={reference}")).await.len(), 1);
    sandbox.stop().await;
}

#[tokio::test]
async fn every_error_has_its_stable_code() {
    let sandbox = Sandbox::start(Options::default()).await;
    let mut c = sandbox.client().await;
    let hold = c.hold(&new_reference(), VISA, 1000).await;

    assert_error(&c.capture(&hold, Some(1001)).await, 422, "capture_exceeds_authorization");
    assert_error(&c.capture(&hold, Some(0)).await, 422, "invalid_amount");
    assert_error(&c.refund(&hold, 10, "r1").await, 409, "not_captured");
    assert_eq!(c.capture(&hold, None).await.status, 200);
    assert_error(&c.capture(&hold, Some(1)).await, 409, "already_captured");
    assert_error(&c.void(&hold).await, 409, "cannot_void_captured");
    assert_error(&c.refund(&hold, 1001, "r1").await, 422, "refund_exceeds_captured");
    assert_error(&c.refund(&hold, 10, "bad reference!").await, 422, "invalid_reference");

    let voided = c.hold(&new_reference(), VISA, 10).await;
    assert_eq!(c.void(&voided).await.status, 200);
    assert_error(&c.void(&voided).await, 409, "already_voided");
    assert_error(&c.capture(&voided, None).await, 409, "already_voided");
    assert_error(&c.refund(&voided, 1, "r").await, 409, "already_voided");

    for unknown in ["acq_doesnotexist", "x"] {
        assert_error(&c.capture(unknown, None).await, 404, "unknown_authorization");
        assert_error(&c.void(unknown).await, 404, "unknown_authorization");
        assert_error(&c.refund(unknown, 1, "r").await, 404, "unknown_authorization");
        assert_error(&c.get(&format!("/acquirer/v1/authorizations/{unknown}")).await, 404, "unknown_authorization");
    }
    assert_error(&c.get("/acquirer/v1/inquiry?reference=tx_never_seen").await, 404, "unknown_reference");
    assert_error(&c.get("/acquirer/v1/inquiry").await, 400, "invalid_request");

    let with = |field: &str, value: Value| {
        let mut body = authorization(&new_reference(), VISA, 100, false);
        let (outer, inner) = field.split_once('.').map_or((field, None), |(o, i)| (o, Some(i)));
        match inner {
            Some(inner) => body[outer][inner] = value,
            None => body[outer] = value,
        }
        body
    };
    let cases = [
        (with("amount", json!(0)), 422, "invalid_amount"),
        (with("amount", json!(-5)), 422, "invalid_amount"),
        (with("amount", json!(1_000_000_000_000_i64)), 422, "invalid_amount"),
        (with("amount", json!(1.5)), 400, "invalid_request"),
        (with("currency", json!("usd")), 422, "invalid_currency"),
        (with("currency", json!("USDT")), 422, "invalid_currency"),
        (with("card.exp_month", json!(13)), 422, "invalid_expiry"),
        (with("card.exp_year", json!("20x0")), 422, "invalid_expiry"),
        (with("merchant_id", json!("")), 422, "invalid_merchant_id"),
        (with("reference", json!("a b")), 422, "invalid_reference"),
        (with("reference", json!("r".repeat(65))), 422, "invalid_reference"),
        (with("unexpected", json!(1)), 400, "invalid_request"),
        (with("card.number", json!(4242424242424242_i64)), 400, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let r = c.post("/acquirer/v1/authorizations", body).await;
        assert_error(&r, status, code);
        assert!(!String::from_utf8_lossy(&r.raw).contains(VISA), "the error echoes the card number: {}", r.body);
    }
    let r = c.0.call_raw("POST", "/acquirer/v1/authorizations", Some(b"{\"merchant_id\":".to_vec())).await.unwrap();
    assert_error(&r, 400, "invalid_json");
    let r = c.0.call_raw("POST", "/acquirer/v1/authorizations", Some(vec![b' '; 20_000])).await.unwrap();
    assert_error(&r, 413, "body_too_large");
    assert_error(&c.get("/acquirer/v1/nowhere").await, 404, "not_found");
    assert_error(&c.get("/acquirer/v1/authorizations").await, 405, "method_not_allowed");
    assert_error(&c.get("/acquirer/v1/ledger?limit=0").await, 400, "invalid_request");
    let r = c.post("/issuer/v1/balance", json!({ "card": { "number": "1234567890123" }, "currency": "UZS" })).await;
    assert_error(&r, 422, "invalid_card_number");
    sandbox.stop().await;
}

#[tokio::test]
async fn the_slow_card_answers_late_and_inquiry_finds_it() {
    let sandbox = Sandbox::start(Options { auth_delay_ms: Some(3_000), ..Options::default() }).await;
    let reference = new_reference();
    let mut slow_client = sandbox.client().await;
    let slow = {
        let reference = reference.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = slow_client.authorize(&reference, SLOW, 777, false).await;
            (r, started.elapsed())
        })
    };
    // The gateway gives up long before; by then the network has decided.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut c = sandbox.client().await;
    let inquiry = c.get(&format!("/acquirer/v1/inquiry?reference={reference}")).await;
    assert_eq!(inquiry.status, 200, "{}", inquiry.body);
    assert_eq!((inquiry.body["approved"].clone(), inquiry.body["status"].clone()), (json!(true), json!("authorized")));
    assert!(!slow.is_finished(), "the answer must come only after the delay");
    // The gateway resolves the payment by inquiry and captures by acquirer_ref.
    let acquirer_ref = inquiry.body["acquirer_ref"].as_str().unwrap();
    assert_eq!(c.capture(acquirer_ref, None).await.status, 200);
    let (late, elapsed) = slow.await.unwrap();
    assert!(elapsed >= Duration::from_millis(2_900), "{elapsed:?}");
    assert_eq!(late.body["acquirer_ref"], acquirer_ref);
    let entries = c.ledger(&format!("reference={reference}")).await;
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["authorization", "capture"], "exactly one authorization");
    sandbox.stop().await;
}

#[tokio::test]
async fn mtls_requires_a_certificate_from_the_client_ca() {
    let sandbox = Sandbox::start(Options { mtls: true, ..Options::default() }).await;
    let mut c = sandbox.client().await;
    assert_eq!(c.get("/health").await.status, 200);

    // No certificate: the handshake or the first request fails.
    let anonymous = match sandbox.client_with(None).await {
        Ok(mut c) => c.0.call("GET", "/health", None).await.map(|r| r.status).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    assert!(anonymous.is_err(), "{anonymous:?}");

    // A certificate from another CA.
    let dir = &sandbox.dir.0;
    let stranger = CertificateAuthority::generate("Someone Else").unwrap();
    stranger
        .issue(&IssueRequest::client("spiffe://paysys/gateway"))
        .unwrap()
        .write(&dir.join("stranger.pem"), &dir.join("stranger.key"))
        .unwrap();
    let foreign = match sandbox.client_with(Some((&dir.join("stranger.pem"), &dir.join("stranger.key")))).await {
        Ok(mut c) => c.0.call("GET", "/health", None).await.map(|r| r.status).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    assert!(foreign.is_err(), "{foreign:?}");
    // Our CA, but expired.
    sandbox
        .ca
        .issue(&IssueRequest::client("spiffe://paysys/gateway").expired())
        .unwrap()
        .write(&dir.join("expired.pem"), &dir.join("expired.key"))
        .unwrap();
    let expired = match sandbox.client_with(Some((&dir.join("expired.pem"), &dir.join("expired.key")))).await {
        Ok(mut c) => c.0.call("GET", "/health", None).await.map(|r| r.status).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    assert!(expired.is_err(), "{expired:?}");
    sandbox.stop().await;
}

#[tokio::test]
async fn no_full_card_number_in_logs_or_database() {
    let dir = TempDir::new();
    let db = dir.0.join("sandbox.db");
    let sandbox =
        Sandbox::start(Options { database_url: Some(format!("sqlite:{}", db.display())), ..Options::default() }).await;
    let mut c = sandbox.client().await;
    let numbers = ["4242424242424242", "4000000000009995", "4000000000000002", "4111111111111111", "4242424242424241"];
    for number in numbers {
        let reference = new_reference();
        let r = c.authorize(&reference, number, 100, false).await;
        if r.body["approved"] == true {
            let acquirer_ref = r.body["acquirer_ref"].as_str().unwrap().to_owned();
            c.capture(&acquirer_ref, Some(50)).await;
            c.refund(&acquirer_ref, 10, "r1").await;
            c.balance(number, "UZS").await;
        }
    }
    let logs = sandbox.logs();
    sandbox.stop().await;
    assert!(logs.contains("424242******4242"), "masked numbers are logged: {logs}");
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&dir.0).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 4096, "the database was written");
    for number in numbers {
        assert!(!logs.contains(number), "{number} in the logs");
        assert!(!bytes.windows(number.len()).any(|w| w == number.as_bytes()), "{number} in the database");
    }
}

#[tokio::test]
async fn state_survives_a_restart_on_a_database_file() {
    let dir = TempDir::new();
    let url = format!("sqlite:{}", dir.0.join("sandbox.db").display());
    let sandbox = Sandbox::start(Options { database_url: Some(url.clone()), ..Options::default() }).await;
    let mut c = sandbox.client().await;
    let reference = new_reference();
    let hold = c.hold(&reference, LIMITED, 700).await;
    sandbox.stop().await;

    let sandbox = Sandbox::start(Options { database_url: Some(url), ..Options::default() }).await;
    let mut c = sandbox.client().await;
    assert_eq!(c.balance(LIMITED, "UZS").await, (1000, 700, 300));
    let inquiry = c.get(&format!("/acquirer/v1/inquiry?reference={reference}")).await;
    assert_eq!(inquiry.body["acquirer_ref"], hold.as_str());
    assert_eq!(c.void(&hold).await.status, 200);
    assert_eq!(c.balance(LIMITED, "UZS").await, (1000, 0, 1000));
    sandbox.stop().await;
}

#[tokio::test]
async fn http2_and_the_cards_command() {
    let sandbox = Sandbox::start(Options::default()).await;
    let tls = ClientTls::new(&sandbox.ca_path(), None, HttpVersion::Http2).unwrap();
    let mut h2 = tls.connect(&sandbox.url).await.unwrap();
    let r = h2.call("GET", "/health", None).await.unwrap();
    assert_eq!((r.status, r.body.clone()), (200, json!({ "status": "ok" })));
    sandbox.stop().await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paysys-sandbox")).arg("cards").output().unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    for number in ["4242424242424242", "4000000000009995", "4000000000000259"] {
        assert!(table.contains(number), "{table}");
    }
    // The README documents the same table.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for card in paysys_sandbox::cards::TEST_CARDS {
        assert!(readme.contains(card.number), "{} missing from README.md", card.number);
    }
    for code in paysys_sandbox::issuer::DeclineCode::ALL {
        assert!(readme.contains(&format!("`{}`", code.as_str())), "{code:?} missing from README.md");
    }
}
