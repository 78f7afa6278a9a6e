//! The sandbox's 3-D Secure 2 directory server and ACS, end to end: the real sandbox
//! binary over real TLS, driven by a real HTTP client the way the gateway (JSON) and a
//! browser (HTML forms) drive it, with a small local HTTP server standing in for the
//! 3DS Server's RReq, method-notification and CRes endpoints. On SQLite (a file) and on
//! PostgreSQL when `PAYSYS_TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use paysys_sandbox::threeds::outbound::{OutboundClient, OutboundResponse};
use paysys_test_support::cards::{
    self, ATTEMPTED, CHALLENGE, FRICTIONLESS, MC_CHALLENGE, MC_FRICTIONLESS, NOT_AUTHENTICATED, REJECTED, UNAVAILABLE,
    UZCARD,
};
use paysys_test_support::dump::{database_dump, postgres_tables};
use paysys_tests::{backends, scratch_dir, Backend, SandboxOptions, TestDatabase, TestPki, TestSandbox};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SLOW_ACS: &str = cards::ACS_TIMEOUT;
const OTHER_VISA: &str = cards::VISA;
const BAD_LUHN: &str = "4000000000003015";

/// Every card number the tests send; none may reach the database or the logs.
const ALL_CARDS: &[&str] = &[
    FRICTIONLESS,
    ATTEMPTED,
    CHALLENGE,
    MC_CHALLENGE,
    MC_FRICTIONLESS,
    NOT_AUTHENTICATED,
    REJECTED,
    UNAVAILABLE,
    SLOW_ACS,
    OTHER_VISA,
    UZCARD,
    BAD_LUHN,
];

const AUTH_DELAY_MS: u64 = 1_500;
const TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------
// A stand-in for the 3DS Server's endpoints: records every request, answers RReqs.

#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: String,
    body: String,
}

struct ThreeDsServer {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ThreeDsServer {
    async fn start() -> ThreeDsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let content_type = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body = String::from_utf8(body.to_vec()).unwrap();
                            let (answer, answer_type) = if path == "/rreq" {
                                let rreq: Value = serde_json::from_str(&body).unwrap();
                                let rres = json!({
                                    "messageType": "RRes", "messageVersion": rreq["messageVersion"],
                                    "threeDSServerTransID": rreq["threeDSServerTransID"],
                                    "dsTransID": rreq["dsTransID"], "acsTransID": rreq["acsTransID"],
                                    "resultsStatus": "01",
                                });
                                (rres.to_string(), "application/json")
                            } else {
                                ("<!doctype html><p>received</p>".to_owned(), "text/html")
                            };
                            sink.lock().unwrap().push(Received { path, content_type, body });
                            let response = hyper::Response::builder()
                                .status(200)
                                .header("content-type", answer_type)
                                .body(Full::new(Bytes::from(answer)))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ThreeDsServer { url, received, task }
    }

    /// The RReqs received for `id`, parsed.
    fn rreqs(&self, id: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == "/rreq")
            .map(|r| {
                assert_eq!(r.content_type, "application/json");
                serde_json::from_str::<Value>(&r.body).unwrap()
            })
            .filter(|v| v["threeDSServerTransID"] == id)
            .collect()
    }

    async fn wait_for_rreqs(&self, id: &str, count: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let rreqs = self.rreqs(id);
            if rreqs.len() >= count || start.elapsed() > TIMEOUT {
                return rreqs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn received_at(&self, path: &str) -> Vec<Received> {
        self.received.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

impl Drop for ThreeDsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------
// Encoding helpers, written here rather than borrowed from the code under test.

fn b64url_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn b64url_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {text:?}"),
        }
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in text.bytes() {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn b64url_json(text: &str) -> Value {
    serde_json::from_slice(&b64url_decode(text)).unwrap()
}

fn form_encode(fields: &[(&str, &str)]) -> Vec<u8> {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&").into_bytes()
}

fn unescape_html(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The `action` of the page's form.
fn form_action(html: &str) -> String {
    let form = &html[html.find("<form").expect("a form")..];
    let start = form.find("action=\"").unwrap() + "action=\"".len();
    unescape_html(&form[start..start + form[start..].find('"').unwrap()])
}

/// The value of the form field `name`.
fn field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    Some(unescape_html(&html[start..start + html[start..].find('"')?]))
}

/// A threeDSServerTransID as a 3DS Server makes one: a UUID v4 without a digit run the
/// vault's masking (and the checks below) would take for a card number.
fn new_id() -> String {
    loop {
        let b: [u8; 16] = rand::random();
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let id = format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32]);
        if !paysys_cardnum::has_card_length_digit_run(&id) {
            return id;
        }
    }
}

// ---------------------------------------------------------------------------------
// The sandbox under test.

struct Harness {
    dir: PathBuf,
    pki: TestPki,
    db: TestDatabase,
    backend: Backend,
    sandbox: TestSandbox,
    client: OutboundClient,
    server: ThreeDsServer,
}

impl Harness {
    async fn start(backend: &Backend, extra_args: &[&str]) -> Harness {
        let dir = scratch_dir("sandbox-3ds");
        let pki = TestPki::generate(&dir);
        let db = TestDatabase::create(backend, &dir).await;
        let options = SandboxOptions {
            auth_delay_ms: AUTH_DELAY_MS,
            database_url: Some(db.url.clone()),
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            ..SandboxOptions::new(&pki)
        };
        let sandbox = TestSandbox::start(&dir, &options).await;
        let client = OutboundClient::new(Some(&pki.ca_cert)).unwrap();
        let server = ThreeDsServer::start().await;
        Harness { dir, pki, db, backend: backend.clone(), sandbox, client, server }
    }

    fn port(&self) -> &str {
        self.sandbox.url.rsplit(':').next().unwrap()
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> paysys_vault_client::VaultResponse {
        self.sandbox.call(&self.pki.ca_cert, None, method, path, body).await
    }

    fn areq(&self, id: &str, card: &str, expiry: &str) -> Value {
        json!({
            "messageType": "AReq", "messageVersion": "2.2.0",
            "threeDSServerTransID": id, "threeDSServerRefNumber": "PAYSYS-3DS-SERVER",
            "threeDSServerURL": format!("{}/rreq", self.server.url),
            "threeDSRequestorID": "m_dev", "threeDSRequestorName": "Dev <shop> & co",
            "threeDSRequestorURL": "https://shop.example", "threeDSCompInd": "U",
            "deviceChannel": "02", "messageCategory": "01",
            "acctNumber": card, "cardExpiryDate": expiry,
            "purchaseAmount": "150000", "purchaseCurrency": "860", "purchaseExponent": "2",
            "purchaseDate": "20300115103000", "acquirerBIN": "400000", "acquirerMerchantID": "m_dev",
            "merchantName": "Dev <shop> & co", "mcc": "5411", "merchantCountryCode": "860",
            "notificationURL": format!("{}/cres", self.server.url),
            "browserAcceptHeader": "text/html", "browserIP": "127.0.0.1",
            "browserJavaEnabled": false, "browserJavascriptEnabled": true,
            "browserLanguage": "en-US", "browserColorDepth": "24",
            "browserScreenHeight": "1080", "browserScreenWidth": "1920", "browserTZ": "-300",
            "browserUserAgent": "Mozilla/5.0 (test)"
        })
    }

    /// An AReq for `card`; the ARes (asserting 200 and no card number in it).
    async fn authenticate(&self, id: &str, card: &str) -> Value {
        let r = self.json("POST", "/3ds/v2/areq", Some(self.areq(id, card, "3112"))).await;
        assert_eq!(r.status, 200, "{card}: {}", r.body);
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(!raw.contains(card), "{raw}");
        assert!(!paysys_cardnum::has_card_length_digit_run(&raw), "{raw}");
        r.body
    }

    async fn results(&self, id: &str) -> Value {
        let r = self.json("GET", &format!("/3ds/v2/results/{id}"), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> (OutboundResponse, String) {
        let r = self.client.post(url, "application/x-www-form-urlencoded", form_encode(fields), TIMEOUT).await.unwrap();
        let html = r.text();
        (r, html)
    }

    /// Open the challenge of an ARes: the page and its form nonce.
    async fn open_challenge(&self, ares: &Value, session: &str) -> (OutboundResponse, String) {
        let creq = json!({
            "threeDSServerTransID": ares["threeDSServerTransID"], "acsTransID": ares["acsTransID"],
            "messageType": "CReq", "messageVersion": "2.2.0", "challengeWindowSize": "05",
        });
        let creq = b64url_encode(creq.to_string().as_bytes());
        self.post_form(ares["acsURL"].as_str().unwrap(), &[("creq", &creq), ("threeDSSessionData", session)]).await
    }

    async fn submit(&self, acs_trans_id: &str, nonce: &str, otp: &str, session: &str, cancel: bool) -> String {
        let url = format!("{}/acs/v2/challenge/submit", self.sandbox.url);
        let mut fields =
            vec![("acsTransID", acs_trans_id), ("nonce", nonce), ("otp", otp), ("threeDSSessionData", session)];
        if cancel {
            fields.push(("cancel", "1"));
        }
        let (r, html) = self.post_form(&url, &fields).await;
        assert_eq!(r.status, 200, "{html}");
        html
    }

    async fn authorize(
        &self,
        reference: &str,
        card: &str,
        amount: i64,
        currency: &str,
        three_ds: Option<Value>,
    ) -> Value {
        let mut body = json!({
            "merchant_id": "m_dev", "reference": reference, "amount": amount, "currency": currency,
            "card": {"number": card, "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        });
        if let Some(t) = three_ds {
            body["three_ds"] = t;
        }
        let r = self.json("POST", "/acquirer/v1/authorizations", Some(body)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Every byte the database holds, as text (SQLite file, PostgreSQL rows).
    async fn database_text(&self) -> Vec<u8> {
        if let Backend::Postgres(_) = &self.backend {
            let tables = postgres_tables(&self.db.url).await;
            assert!(tables.iter().any(|t| t == "threeds_transactions"), "{tables:?}");
        }
        database_dump(&self.db.url).await
    }

    async fn method_completed(&self, id: &str) -> bool {
        use sqlx::{Connection, Row};
        let sql = "SELECT method_completed FROM threeds_transactions WHERE three_ds_server_trans_id = $1";
        match &self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.db.url).await.unwrap();
                sqlx::query(sql).bind(id).fetch_one(&mut conn).await.unwrap().get::<bool, _>(0)
            }
            Backend::Postgres(_) => {
                let mut conn = sqlx::PgConnection::connect(&self.db.url).await.unwrap();
                sqlx::query(sql).bind(id).fetch_one(&mut conn).await.unwrap().get::<bool, _>(0)
            }
        }
    }

    async fn finish(self) {
        self.sandbox.stop().await;
        self.db.drop_database().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn assert_page_headers(r: &OutboundResponse) {
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
}

/// Check the CRes page: aimed at the notificationURL, session data carried through,
/// the CRes itself. Returns the decoded CRes.
fn cres_of(harness: &Harness, html: &str, ares: &Value, session: &str) -> Value {
    assert_eq!(form_action(html), format!("{}/cres", harness.server.url), "{html}");
    assert_eq!(field(html, "threeDSSessionData").as_deref(), Some(session));
    let cres = b64url_json(&field(html, "cres").expect("a cres field"));
    assert_eq!(cres["messageType"], "CRes");
    assert_eq!(cres["threeDSServerTransID"], ares["threeDSServerTransID"]);
    assert_eq!(cres["acsTransID"], ares["acsTransID"]);
    assert_eq!(cres["messageVersion"], "2.2.0");
    assert_eq!(cres["challengeCompletionInd"], "Y");
    assert!(html.contains("<noscript><button type=\"submit\">"), "{html}");
    cres
}

// ---------------------------------------------------------------------------------
// The scenario, on each backend.

async fn outcomes_by_test_card(h: &Harness) {
    // (card, transStatus, transStatusReason, eci)
    let table: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        (FRICTIONLESS, "Y", None, Some("05")),
        (ATTEMPTED, "A", None, Some("06")),
        (CHALLENGE, "C", None, None),
        (MC_CHALLENGE, "C", None, None),
        (MC_FRICTIONLESS, "Y", None, Some("02")),
        (NOT_AUTHENTICATED, "N", Some("01"), None),
        (REJECTED, "R", Some("11"), None),
        (UNAVAILABLE, "U", Some("08"), None),
        (OTHER_VISA, "Y", None, Some("05")),
    ];
    for (card, status, reason, eci) in table {
        let id = new_id();
        let ares = h.authenticate(&id, card).await;
        assert_eq!(ares["messageType"], "ARes");
        assert_eq!(ares["messageVersion"], "2.2.0");
        assert_eq!(ares["threeDSServerTransID"], id.as_str());
        assert_eq!(ares["acsReferenceNumber"], "PAYSYS-SANDBOX-ACS");
        assert_eq!(ares["dsReferenceNumber"], "PAYSYS-SANDBOX-DS");
        assert_eq!(ares["transStatus"], *status, "{card}: {ares}");
        assert_eq!(ares["transStatusReason"].as_str(), *reason, "{card}: {ares}");
        assert_eq!(ares["eci"].as_str(), *eci, "{card}: {ares}");
        let cavv = ares["authenticationValue"].as_str();
        assert_eq!(cavv.is_some(), eci.is_some(), "{card}: {ares}");
        if let Some(cavv) = cavv {
            assert_eq!(cavv.len(), 28, "{cavv}");
        }
        if *status == "C" {
            assert_eq!(ares["acsURL"], format!("https://localhost:{}/acs/v2/challenge", h.port()));
            assert_eq!(ares["acsChallengeMandated"], "N");
            assert_eq!(ares["authenticationType"], "02");
        } else {
            assert!(ares.get("acsURL").is_none() && ares.get("authenticationType").is_none(), "{ares}");
        }
        let results = h.results(&id).await;
        assert_eq!(results["dsTransID"], ares["dsTransID"]);
        assert_eq!(results["acsTransID"], ares["acsTransID"]);
        assert_eq!(results["transStatus"], ares["transStatus"]);
        assert_eq!(results["transStatusReason"], ares["transStatusReason"]);
        assert_eq!(results["eci"], ares["eci"]);
        assert_eq!(results["authenticationValue"], ares["authenticationValue"]);
        assert_eq!(results["final"], *status != "C");
    }

    // The ACS that does not answer in time: held for --auth-delay-ms, recorded at once.
    let id = new_id();
    let started = Instant::now();
    let slow = {
        let h_areq = h.areq(&id, SLOW_ACS, "3112");
        let call = h.json("POST", "/3ds/v2/areq", Some(h_areq));
        tokio::pin!(call);
        // During the wait the results already say U 14.
        tokio::select! {
            _ = &mut call => panic!("the slow ACS card answered early"),
            () = tokio::time::sleep(Duration::from_millis(AUTH_DELAY_MS / 2)) => {}
        }
        let during = h.results(&id).await;
        assert_eq!((during["transStatus"].as_str(), during["transStatusReason"].as_str()), (Some("U"), Some("14")));
        call.await
    };
    assert!(started.elapsed() >= Duration::from_millis(AUTH_DELAY_MS - 100), "{:?}", started.elapsed());
    assert_eq!(slow.status, 200);
    assert_eq!((slow.body["transStatus"].as_str(), slow.body["transStatusReason"].as_str()), (Some("U"), Some("14")));

    // An expired card: N 05, whatever its row says.
    let r = h.json("POST", "/3ds/v2/areq", Some(h.areq(&new_id(), CHALLENGE, "2001"))).await;
    assert_eq!((r.body["transStatus"].as_str(), r.body["transStatusReason"].as_str()), (Some("N"), Some("05")));

    // Idempotent: the same threeDSServerTransID gets the stored ARes (same CAVV).
    let id = new_id();
    let first = h.authenticate(&id, FRICTIONLESS).await;
    let again = h.authenticate(&id, FRICTIONLESS).await;
    assert_eq!(first, again);
    let unknown = h.json("GET", &format!("/3ds/v2/results/{}", new_id()), None).await;
    assert_eq!((unknown.status, unknown.error_code()), (404, Some("not_found")));
}

async fn refusals(h: &Harness) {
    let erro = |r: &paysys_vault_client::VaultResponse| {
        let raw = String::from_utf8_lossy(&r.raw).into_owned();
        for card in ALL_CARDS {
            assert!(!raw.contains(card), "{raw}");
        }
        assert_eq!(r.status, 400, "{raw}");
        assert_eq!(r.body["messageType"], "Erro");
        assert_eq!(r.body["errorComponent"], "D");
        (r.body["errorCode"].as_str().unwrap().to_owned(), r.body["errorDetail"].as_str().unwrap().to_owned())
    };
    let id = new_id();
    let mut missing = h.areq(&id, FRICTIONLESS, "3112");
    missing.as_object_mut().unwrap().remove("acctNumber");
    let r = h.json("POST", "/3ds/v2/areq", Some(missing)).await;
    assert_eq!(erro(&r), ("201".to_owned(), "acctNumber".to_owned()));
    assert_eq!(r.body["threeDSServerTransID"], id.as_str());

    let r = h.json("POST", "/3ds/v2/areq", Some(h.areq(&new_id(), BAD_LUHN, "3112"))).await;
    assert_eq!(erro(&r), ("203".to_owned(), "acctNumber".to_owned()));
    let r = h.json("POST", "/3ds/v2/areq", Some(h.areq(&new_id(), FRICTIONLESS, "12/31"))).await;
    assert_eq!(erro(&r), ("203".to_owned(), "cardExpiryDate".to_owned()));
    let r = h.json("POST", "/3ds/v2/areq", Some(h.areq(&new_id(), UZCARD, "3112"))).await;
    assert_eq!(erro(&r), ("305".to_owned(), "acctNumber".to_owned()));
    let mut preq = h.areq(&new_id(), FRICTIONLESS, "3112");
    preq["messageType"] = json!("PReq");
    let r = h.json("POST", "/3ds/v2/areq", Some(preq)).await;
    assert_eq!(erro(&r).0, "101");
    // A card number where the id belongs is not echoed.
    let r = h.json("POST", "/3ds/v2/areq", Some(h.areq(FRICTIONLESS, FRICTIONLESS, "3112"))).await;
    assert_eq!(erro(&r), ("203".to_owned(), "threeDSServerTransID".to_owned()));
    assert!(r.body.get("threeDSServerTransID").is_none());
}

async fn method_round_trip(h: &Harness) {
    let id = new_id();
    let data = json!({"threeDSServerTransID": id, "threeDSMethodNotificationURL": format!("{}/method", h.server.url)});
    let url = format!("{}/acs/v2/method", h.sandbox.url);
    let (r, html) = h.post_form(&url, &[("threeDSMethodData", &b64url_encode(data.to_string().as_bytes()))]).await;
    assert_eq!(r.status, 200, "{html}");
    assert_page_headers(&r);
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains(&format!("form-action {}", h.server.url)), "{csp}");
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")), "{html}");
    assert!(html.contains("screen.width") && html.contains("navigator.language"), "collects device data");
    let action = form_action(&html);
    assert_eq!(action, format!("{}/method", h.server.url));
    let posted = field(&html, "threeDSMethodData").unwrap();
    assert_eq!(b64url_json(&posted), json!({"threeDSServerTransID": id}));
    // What the browser does with the page: post the form to the 3DS Server.
    let (delivered, _) = h.post_form(&action, &[("threeDSMethodData", &posted)]).await;
    assert_eq!(delivered.status, 200);
    let received = h.server.received_at("/method");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].content_type, "application/x-www-form-urlencoded");
    assert!(received[0].body.starts_with("threeDSMethodData="), "{}", received[0].body);

    // The ACS recorded it: the AReq that follows has method_completed, another has not.
    h.authenticate(&id, FRICTIONLESS).await;
    assert!(h.method_completed(&id).await);
    let other = new_id();
    h.authenticate(&other, FRICTIONLESS).await;
    assert!(!h.method_completed(&other).await);

    let (r, html) = h.post_form(&url, &[("threeDSMethodData", "not base64url!")]).await;
    assert_eq!(r.status, 400, "{html}");
    assert_page_headers(&r);
    let (r, _) = h.post_form(&url, &[("other", "x")]).await;
    assert_eq!(r.status, 400);
}

/// The right code: Y, RReq first, then the CRes page; a second submit changes nothing.
/// Returns (ARes, results) of the authenticated transaction.
async fn challenge_succeeds(h: &Harness) -> (Value, Value) {
    let id = new_id();
    let ares = h.authenticate(&id, CHALLENGE).await;
    let acs_trans_id = ares["acsTransID"].as_str().unwrap();
    let session = "sess/1?&=\"<x>";
    let (r, html) = h.open_challenge(&ares, session).await;
    assert_eq!(r.status, 200, "{html}");
    assert_page_headers(&r);
    assert!(r.header("content-security-policy").unwrap().contains("form-action 'self'"));
    assert!(html.contains("Sandbox: the code is 123456"), "{html}");
    assert!(html.contains("Dev &lt;shop&gt; &amp; co"), "the merchant name, escaped: {html}");
    assert!(!html.contains("Dev <shop>"), "{html}");
    assert!(html.contains("1500.00 UZS"), "{html}");
    assert!(html.contains("3220") && !html.contains(CHALLENGE) && !html.contains("400000"), "{html}");
    assert!(html.contains("<form method=\"post\" action=\"/acs/v2/challenge/submit\">"), "{html}");
    assert!(html.contains("<input id=\"otp\" name=\"otp\""), "{html}");
    assert!(html.contains("id=\"submit\"") && html.contains("id=\"cancel\""), "{html}");
    assert_eq!(field(&html, "acsTransID").as_deref(), Some(acs_trans_id));
    assert_eq!(field(&html, "threeDSSessionData").as_deref(), Some(session));
    let nonce = field(&html, "nonce").unwrap();
    let open = h.results(&id).await;
    assert_eq!((open["transStatus"].as_str(), open["final"].as_bool()), (Some("C"), Some(false)));

    // A forged nonce changes nothing.
    let url = format!("{}/acs/v2/challenge/submit", h.sandbox.url);
    let (r, _) = h
        .post_form(
            &url,
            &[("acsTransID", acs_trans_id), ("nonce", "forged"), ("otp", "123456"), ("threeDSSessionData", session)],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(h.results(&id).await["transStatus"], "C");

    let html = h.submit(acs_trans_id, &nonce, "123456", session, false).await;
    // The RReq reached the 3DS Server before the browser got the CRes page.
    let rreqs = h.server.rreqs(&id);
    assert_eq!(rreqs.len(), 1, "{rreqs:?}");
    let rreq = &rreqs[0];
    assert_eq!(rreq["messageType"], "RReq");
    assert_eq!(rreq["messageVersion"], "2.2.0");
    assert_eq!(rreq["dsTransID"], ares["dsTransID"]);
    assert_eq!(rreq["acsTransID"], ares["acsTransID"]);
    assert_eq!(rreq["messageCategory"], "01");
    assert_eq!(rreq["transStatus"], "Y");
    assert_eq!(rreq["eci"], "05");
    assert_eq!(rreq["authenticationType"], "02");
    assert_eq!(rreq["interactionCounter"], "01");
    assert_eq!(rreq["authenticationValue"].as_str().unwrap().len(), 28);
    assert!(rreq.get("transStatusReason").is_none() && rreq.get("challengeCancel").is_none(), "{rreq}");
    let cres = cres_of(h, &html, &ares, session);
    assert_eq!(cres["transStatus"], "Y");
    let results = h.results(&id).await;
    assert_eq!(results["transStatus"], "Y");
    assert_eq!(results["final"], true);
    assert_eq!(results["eci"], "05");
    assert_eq!(results["authenticationValue"], rreq["authenticationValue"]);

    // A second submit (wrong code this time) and the CReq again: the same outcome, no RReq.
    let again = h.submit(acs_trans_id, &nonce, "000000", session, false).await;
    assert_eq!(cres_of(h, &again, &ares, session)["transStatus"], "Y");
    let (r, reopened) = h.open_challenge(&ares, session).await;
    assert_eq!(r.status, 200);
    assert_eq!(cres_of(h, &reopened, &ares, session)["transStatus"], "Y");
    assert_eq!(h.results(&id).await, results);
    assert_eq!(h.server.rreqs(&id).len(), 1);
    (ares, results)
}

async fn challenge_fails_or_is_cancelled(h: &Harness) {
    // A wrong code on the Mastercard challenge card: N 01.
    let id = new_id();
    let ares = h.authenticate(&id, MC_CHALLENGE).await;
    let (_, html) = h.open_challenge(&ares, "s").await;
    let html =
        h.submit(ares["acsTransID"].as_str().unwrap(), &field(&html, "nonce").unwrap(), "654321", "s", false).await;
    assert_eq!(cres_of(h, &html, &ares, "s")["transStatus"], "N");
    let rreq = &h.server.rreqs(&id)[0];
    assert_eq!((rreq["transStatus"].as_str(), rreq["transStatusReason"].as_str()), (Some("N"), Some("01")));
    assert!(rreq.get("eci").is_none() && rreq.get("authenticationValue").is_none(), "{rreq}");
    let results = h.results(&id).await;
    assert_eq!((results["transStatus"].as_str(), results["transStatusReason"].as_str()), (Some("N"), Some("01")));
    // The right code after that changes nothing.
    h.submit(ares["acsTransID"].as_str().unwrap(), "x", "123456", "s", false).await;
    assert_eq!(h.results(&id).await, results);

    // Cancel: N with challengeCancel 01.
    let id = new_id();
    let ares = h.authenticate(&id, CHALLENGE).await;
    let (_, html) = h.open_challenge(&ares, "").await;
    let nonce = field(&html, "nonce").unwrap();
    let html = h.submit(ares["acsTransID"].as_str().unwrap(), &nonce, "", "", true).await;
    let cres = b64url_json(&field(&html, "cres").unwrap());
    assert_eq!(cres["transStatus"], "N");
    let results = h.results(&id).await;
    assert_eq!((results["transStatus"].as_str(), results["challengeCancel"].as_str()), (Some("N"), Some("01")));
    assert_eq!(h.server.rreqs(&id)[0]["challengeCancel"], "01");

    // A CReq whose ids do not belong together, an unknown acsTransID, a frictionless one.
    let mismatched = json!({"threeDSServerTransID": new_id(), "acsTransID": ares["acsTransID"],
        "messageType": "CReq", "messageVersion": "2.2.0", "challengeWindowSize": "05"});
    let url = ares["acsURL"].as_str().unwrap();
    let (r, _) = h.post_form(url, &[("creq", &b64url_encode(mismatched.to_string().as_bytes()))]).await;
    assert_eq!(r.status, 400);
    let frictionless = h.authenticate(&new_id(), FRICTIONLESS).await;
    let (r, _) = h
        .open_challenge(
            &json!({"threeDSServerTransID": frictionless["threeDSServerTransID"],
        "acsTransID": frictionless["acsTransID"], "acsURL": url}),
            "",
        )
        .await;
    assert_eq!(r.status, 400);
    let (r, html) = h.post_form(url, &[("creq", "!!")]).await;
    assert_eq!(r.status, 400, "{html}");
    assert_page_headers(&r);
}

async fn issuer_checks_the_cavv(h: &Harness, challenged: &(Value, Value)) {
    let reference = |tag: &str| format!("tx_{tag}_{:08x}", rand::random::<u32>());
    let three_ds = |results: &Value| {
        json!({"version": "2.2.0", "trans_status": results["transStatus"], "eci": results["eci"],
            "authentication_value": results["authenticationValue"], "ds_trans_id": results["dsTransID"]})
    };
    // The CAVV of the challenge: approved once; the same CAVV again (other reference): 63.
    let (_, results) = challenged;
    let first = h.authorize(&reference("a"), CHALLENGE, 150_000, "UZS", Some(three_ds(results))).await;
    assert_eq!(first["approved"], true, "{first}");
    let second = h.authorize(&reference("b"), CHALLENGE, 150_000, "UZS", Some(three_ds(results))).await;
    assert_eq!((second["approved"].as_bool(), second["decline_code"].as_str()), (Some(false), Some("63")), "{second}");
    assert_eq!(second["decline_reason"], "security violation: 3-D Secure authentication value not valid");

    // A frictionless CAVV: a made-up value, another amount, currency or card are 63 and
    // do not spend it; then the real one approves.
    let ares = h.authenticate(&new_id(), FRICTIONLESS).await;
    let genuine = json!({"version": "2.2.0", "trans_status": "Y", "eci": ares["eci"],
        "authentication_value": ares["authenticationValue"], "ds_trans_id": ares["dsTransID"]});
    let mut made_up = genuine.clone();
    made_up["authentication_value"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let declined = [
        h.authorize(&reference("c"), FRICTIONLESS, 150_000, "UZS", Some(made_up)).await,
        h.authorize(&reference("d"), FRICTIONLESS, 150_001, "UZS", Some(genuine.clone())).await,
        h.authorize(&reference("e"), FRICTIONLESS, 150_000, "USD", Some(genuine.clone())).await,
        h.authorize(&reference("f"), OTHER_VISA, 150_000, "UZS", Some(genuine.clone())).await,
    ];
    for d in &declined {
        assert_eq!((d["approved"].as_bool(), d["decline_code"].as_str()), (Some(false), Some("63")), "{d}");
    }
    let mut unknown_ds = genuine.clone();
    unknown_ds["ds_trans_id"] = json!(new_id());
    let d = h.authorize(&reference("g"), FRICTIONLESS, 150_000, "UZS", Some(unknown_ds)).await;
    assert_eq!(d["decline_code"], "63");
    let ok = h.authorize(&reference("h"), FRICTIONLESS, 150_000, "UZS", Some(genuine.clone())).await;
    assert_eq!(ok["approved"], true, "{ok}");
    // A repeat of the same reference is the same authorization, not a second use.
    let reference_h = ok["reference"].as_str().unwrap();
    let replay = h.authorize(reference_h, FRICTIONLESS, 150_000, "UZS", Some(genuine)).await;
    assert_eq!(replay["acquirer_ref"], ok["acquirer_ref"]);
    // Without three_ds nothing changes.
    let plain = h.authorize(&reference("i"), FRICTIONLESS, 100, "UZS", None).await;
    assert_eq!(plain["approved"], true);
}

async fn no_card_number_stored_or_logged(h: &Harness) {
    let db = h.database_text().await;
    assert!(db.len() > 1024, "the database was written");
    let logs = h.sandbox.log_text();
    assert!(logs.contains("400000******3220"), "masked numbers are logged: {logs}");
    for card in ALL_CARDS {
        assert!(!db.windows(card.len()).any(|w| w == card.as_bytes()), "{card} in the database");
        assert!(!logs.contains(card), "{card} in the logs");
    }
}

async fn three_ds_end_to_end(backend: &Backend) {
    let h = Harness::start(backend, &[]).await;
    outcomes_by_test_card(&h).await;
    refusals(&h).await;
    method_round_trip(&h).await;
    let challenged = challenge_succeeds(&h).await;
    challenge_fails_or_is_cancelled(&h).await;
    issuer_checks_the_cavv(&h, &challenged).await;
    no_card_number_stored_or_logged(&h).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ds_on_sqlite() {
    three_ds_end_to_end(&Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ds_on_postgres() {
    match backends().into_iter().find(|b| matches!(b, Backend::Postgres(_))) {
        Some(backend) => three_ds_end_to_end(&backend).await,
        None => eprintln!("PAYSYS_TEST_POSTGRES_URL not set: skipping"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_challenge_ends_n_14() {
    let h = Harness::start(&Backend::Sqlite, &["--challenge-ttl-ms", "1000"]).await;
    // Opened, then left too long: the submit gets N 14, cancel 05.
    let id = new_id();
    let ares = h.authenticate(&id, CHALLENGE).await;
    let (_, html) = h.open_challenge(&ares, "s").await;
    let nonce = field(&html, "nonce").unwrap();
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let html = h.submit(ares["acsTransID"].as_str().unwrap(), &nonce, "123456", "s", false).await;
    assert_eq!(cres_of(&h, &html, &ares, "s")["transStatus"], "N");
    let results = h.results(&id).await;
    assert_eq!(
        (results["transStatus"].as_str(), results["transStatusReason"].as_str(), results["challengeCancel"].as_str()),
        (Some("N"), Some("14"), Some("05"))
    );
    assert_eq!(results["final"], true);
    let rreqs = h.server.wait_for_rreqs(&id, 1).await;
    assert_eq!(rreqs.len(), 1, "exactly one RReq: {rreqs:?}");
    assert_eq!((rreqs[0]["transStatus"].as_str(), rreqs[0]["transStatusReason"].as_str()), (Some("N"), Some("14")));

    // Never opened: the ACS ends it on its own and tells the 3DS Server.
    let id = new_id();
    h.authenticate(&id, MC_CHALLENGE).await;
    let rreqs = h.server.wait_for_rreqs(&id, 1).await;
    assert_eq!(rreqs.len(), 1, "the expiry sweep sends the RReq");
    assert_eq!(rreqs[0]["challengeCancel"], "05");
    let results = h.results(&id).await;
    assert_eq!((results["transStatus"].as_str(), results["transStatusReason"].as_str()), (Some("N"), Some("14")));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preq_lists_the_enrolled_ranges_at_the_public_url() {
    let h = Harness::start(&Backend::Sqlite, &["--public-url", "https://acs.example:8443/"]).await;
    let id = new_id();
    let preq = json!({"messageType": "PReq", "messageVersion": "2.2.0", "threeDSServerTransID": id,
        "threeDSServerRefNumber": "PAYSYS-3DS-SERVER"});
    let r = h.json("POST", "/3ds/v2/preq", Some(preq)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["messageType"], "PRes");
    assert_eq!(r.body["threeDSServerTransID"], id.as_str());
    assert!(r.body["dsTransID"].as_str().unwrap().len() == 36);
    let ranges = r.body["cardRangeData"].as_array().unwrap();
    let enrolled = |card: &str| {
        ranges.iter().any(|range| {
            let start = range["startRange"].as_str().unwrap();
            let end = range["endRange"].as_str().unwrap();
            let key = &format!("{card:0<16}")[..16];
            start <= key && key <= end
        })
    };
    for card in [FRICTIONLESS, MC_CHALLENGE, "2221000000000009", "378282246310005", "6011111111111117"] {
        assert!(enrolled(card), "{card}");
    }
    for card in [UZCARD, "9860000000000018"] {
        assert!(!enrolled(card), "{card}");
    }
    for range in ranges {
        assert_eq!(range["threeDSMethodURL"], "https://acs.example:8443/acs/v2/method");
        assert_eq!(range["actionInd"], "A");
        assert_eq!(
            (range["acsStartProtocolVersion"].as_str(), range["acsEndProtocolVersion"].as_str()),
            (Some("2.1.0"), Some("2.2.0"))
        );
    }
    let ares = h.authenticate(&new_id(), CHALLENGE).await;
    assert_eq!(ares["acsURL"], "https://acs.example:8443/acs/v2/challenge");

    let r = h.json("POST", "/3ds/v2/preq", Some(json!({"messageType": "PReq", "messageVersion": "2.2.0"}))).await;
    assert_eq!((r.status, r.body["errorCode"].as_str()), (400, Some("201")));
    assert_eq!(r.body["errorDetail"], "threeDSServerTransID,threeDSServerRefNumber");
    let r = h.json("POST", "/3ds/v2/preq", Some(json!({"messageType": "AReq"}))).await;
    assert_eq!((r.status, r.body["errorCode"].as_str()), (400, Some("101")));
    h.finish().await;
}
