//! Webhooks in-process, on SQLite and (with `PAYSYS_TEST_POSTGRES_URL`) PostgreSQL:
//! the outbox written with the payment change only for subscribed endpoints and once
//! per change; a name that resolves to a private address is refused when the endpoint
//! is saved and again at delivery, before any connection, with a resolver the test
//! controls (no real DNS, no packet beyond loopback); the connection goes to the checked
//! address with no second lookup; an endpoint failing for too long is disabled.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys::pki::{CertificateAuthority, IssueRequest};
use paysys_gateway::acquirer::SandboxAcquirer;
use paysys_gateway::https::HttpsPool;
use paysys_gateway::payments::{now_ms, CaptureMethod, Gateway, GatewayConfig, Merchant};
use paysys_gateway::secrets::{MerchantSecret, SecretKey};
use paysys_gateway::state::{AfterExpired, PaymentStatus};
use paysys_gateway::store::{LedgerKind, LedgerRow, MerchantRecord, PaymentRecord, Store};
use paysys_gateway::three_ds::directory::Directory;
use paysys_gateway::three_ds::ThreeDsConfig;
use paysys_gateway::vault::{CardVault, RelayOutcome, RelayRequest, TokenLookup, TokenRemoval};
use paysys_gateway::webhooks::destination::{DestinationPolicy, Resolver};
use paysys_gateway::webhooks::{endpoints, worker, RetrySchedule, WebhookConfig, Webhooks};
use paysys_test_support::postgres::PostgresDatabase;
use paysys_vault_client::{ClientTls, HttpVersion};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MERCHANT: &str = "m_hooks";
const NAME: &str = "hooks.partner.test";

/// Answers what the test sets; counts lookups.
#[derive(Debug, Default)]
struct SwitchResolver {
    answer: Mutex<Vec<IpAddr>>,
    lookups: AtomicUsize,
}

impl SwitchResolver {
    fn set(&self, ip: &str) {
        *self.answer.lock().unwrap() = vec![ip.parse().unwrap()];
    }
}

#[async_trait::async_trait]
impl Resolver for SwitchResolver {
    async fn resolve(&self, host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
        assert!(host == NAME || host == "localhost", "only the test's names are looked up: {host}");
        self.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(self.answer.lock().unwrap().clone())
    }
}

/// The card side is never reached in these tests.
#[derive(Debug)]
struct NoVault;

#[async_trait::async_trait]
impl CardVault for NoVault {
    async fn relay(&self, _: &RelayRequest, _: Duration) -> RelayOutcome {
        RelayOutcome::NotSent("no vault in this test".into())
    }
    async fn token_metadata(&self, _: &str) -> TokenLookup {
        TokenLookup::NotFound
    }
    async fn remove_token(&self, _: &str, _: &str) -> TokenRemoval {
        TokenRemoval::NotFound
    }
}

/// A loopback HTTP receiver: counts connections, keeps each request's head, answers
/// `status`.
#[derive(Debug, Clone)]
struct Receiver {
    port: u16,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    status: Arc<Mutex<u16>>,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::start_with(None).await
    }

    /// Over TLS with `tls` when given.
    async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            port: listener.local_addr().unwrap().port(),
            connections: Arc::default(),
            heads: Arc::default(),
            status: Arc::new(Mutex::new(200)),
        };
        let shared = r.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let r = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(config) => {
                            if let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                                r.answer(stream).await;
                            }
                        }
                        None => r.answer(stream).await,
                    }
                });
            }
        });
        r
    }

    /// Read one request (head, then the body by its content-length), answer `status`.
    async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(&self, mut stream: S) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    self.heads.lock().unwrap().push(text[..end].to_owned());
                    break;
                }
            }
        }
        let status = *self.status.lock().unwrap();
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn url(&self) -> String {
        format!("http://{NAME}:{}/hooks", self.port)
    }
}

struct Harness {
    gateway: Arc<Gateway>,
    merchant: Merchant,
    resolver: Arc<SwitchResolver>,
    pg: Option<PostgresDatabase>,
}

async fn harness(postgres: bool, disable_after: Duration) -> Harness {
    let dir = paysys_test_support::scratch_dir("webhooks");
    let (url, pg) = if postgres {
        let database = PostgresDatabase::create("paysys_wh").await.unwrap();
        (database.url.clone(), Some(database))
    } else {
        (format!("sqlite:{}", dir.join("gateway.db").display()), None)
    };
    let store = Store::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    let key = SecretKey::from_hex(&SecretKey::generate_hex()).unwrap();
    store
        .insert_merchant(&MerchantRecord {
            merchant_id: MERCHANT.into(),
            service_id: "svc_hooks".into(),
            name: "hooks".into(),
            secret_sealed: key.seal("svc_hooks", &MerchantSecret::generate()).unwrap(),
            created_at: now_ms(),
            three_ds_auto: Default::default(),
            widget: Default::default(),
        })
        .await
        .unwrap();
    let ca = CertificateAuthority::generate("Webhook Test CA").unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    let tls = || ClientTls::new(&dir.join("ca.pem"), None, HttpVersion::Http1).unwrap();
    // Never called: nothing listens there.
    let nowhere = "https://127.0.0.1:9";
    let resolver = Arc::new(SwitchResolver::default());
    let config = WebhookConfig {
        // Loopback stands in for the partner's public address; everything else is screened.
        policy: DestinationPolicy { allow_loopback: true },
        schedule: RetrySchedule::parse("50ms,50ms,50ms").unwrap(),
        disable_after,
        ..WebhookConfig::default()
    };
    let gateway = Arc::new(Gateway {
        store,
        vault: Arc::new(NoVault),
        acquirer: Arc::new(SandboxAcquirer::new(HttpsPool::new(tls(), nowhere), Duration::from_secs(1))),
        directory: Directory::new(HttpsPool::new(tls(), nowhere)),
        config: GatewayConfig::default(),
        three_ds: ThreeDsConfig::default(),
        token_bins: Default::default(),
        webhooks: Webhooks::with_resolver(
            config,
            SecretKey::from_hex(&SecretKey::generate_hex()).unwrap(),
            resolver.clone(),
        ),
        widget: Default::default(),
    });
    let merchant = Merchant {
        merchant_id: MERCHANT.into(),
        service_id: "svc_hooks".into(),
        name: "hooks".into(),
        three_ds_auto: Default::default(),
    };
    Harness { gateway, merchant, resolver, pg }
}

impl Harness {
    async fn rpc(&self, method: &str, params: Value) -> Result<Value, paysys_gateway::error::RpcError> {
        let Value::Object(params) = params else { panic!() };
        endpoints::dispatch(&self.gateway, &self.merchant, method, params).await
    }

    /// A payment saved as `authorized`, then (optionally) `captured`, through the
    /// store's one save path.
    async fn pay(&self, key: &str, capture: bool) -> PaymentRecord {
        let now = now_ms();
        let mut p = PaymentRecord {
            transaction_id: format!("tx_{key}"),
            merchant_id: MERCHANT.into(),
            partner_trans_id: key.into(),
            request_digest: "d".into(),
            card_token: "tok_x".into(),
            amount: 500,
            currency: "USD".into(),
            capture_method: CaptureMethod::Manual,
            hold_ttl_sec: 60,
            after_expired: AfterExpired::Void,
            description: None,
            client_ip: None,
            return_url: None,
            status: PaymentStatus::Authorizing,
            captured_amount: 0,
            refunded_amount: 0,
            acquirer_ref: None,
            auth_code: None,
            rrn: None,
            masked_card: None,
            decline_code: None,
            error_code: None,
            hold_expires_at: None,
            first_response: None,
            lease_until: 0,
            needs_sync: false,
            three_ds: None,
            three_ds_expires_at: None,
            created_at: now,
            updated_at: now,
        };
        let row = |p: &PaymentRecord, kind, from: PaymentStatus, to: PaymentStatus| LedgerRow {
            seq: 0,
            transaction_id: p.transaction_id.clone(),
            at: now,
            kind,
            from_status: from.as_str().into(),
            to_status: to.as_str().into(),
            amount: p.amount,
            currency: p.currency.clone(),
            refund_id: None,
        };
        let created = row(&p, LedgerKind::Authorizing, PaymentStatus::Created, PaymentStatus::Authorizing);
        self.gateway.store.insert_payment(&p, &[created]).await.unwrap();
        p.status = PaymentStatus::Authorized;
        let authorized = row(&p, LedgerKind::Authorized, PaymentStatus::Authorizing, PaymentStatus::Authorized);
        self.gateway.store.save_payment(&p, &[authorized], None).await.unwrap();
        if capture {
            p.status = PaymentStatus::Captured;
            p.captured_amount = p.amount;
            let captured = row(&p, LedgerKind::Capture, PaymentStatus::Authorized, PaymentStatus::Captured);
            self.gateway.store.save_payment(&p, std::slice::from_ref(&captured), None).await.unwrap();
            // The same change saved twice is the same event.
            self.gateway.store.save_payment(&p, &[captured], None).await.unwrap();
        }
        p
    }

    async fn pending(&self) -> i64 {
        self.gateway.store.pending_webhook_count().await.unwrap()
    }

    async fn finish(self) {
        if let Some(pg) = self.pg {
            pg.drop_database().await;
        }
    }
}

fn backends() -> Vec<bool> {
    let mut all = vec![false];
    if paysys_test_support::postgres::admin_url().is_some() {
        all.push(true);
    } else {
        eprintln!("PAYSYS_TEST_POSTGRES_URL not set: PostgreSQL variants skipped");
    }
    all
}

#[tokio::test]
async fn the_outbox_is_written_with_the_change_for_subscribed_endpoints_once_per_change() {
    for postgres in backends() {
        let h = harness(postgres, Duration::from_secs(3600)).await;
        let receiver = Receiver::start().await;
        h.resolver.set("127.0.0.1");
        // No endpoint: nothing is written.
        h.pay("a", true).await;
        assert_eq!(h.pending().await, 0);

        let e = h.rpc("webhook.endpoint.create", json!({"url": receiver.url(), "events": ["payment.captured"]})).await;
        let e = e.unwrap();
        assert_eq!(e["events"], json!(["payment.captured"]));
        h.pay("b", false).await;
        assert_eq!(h.pending().await, 0, "payment.authorized is not subscribed");
        h.pay("c", true).await;
        assert_eq!(h.pending().await, 1, "one payment.captured, though saved twice");

        let id = e["endpoint_id"].as_str().unwrap();
        h.rpc("webhook.endpoint.update", json!({"endpoint_id": id, "events": ["*"]})).await.unwrap();
        h.pay("d", true).await;
        assert_eq!(h.pending().await, 3);
        let list = h.rpc("webhook.list", json!({"object_id": "tx_d"})).await.unwrap();
        let types: Vec<&str> =
            list["webhooks"].as_array().unwrap().iter().map(|w| w["type"].as_str().unwrap()).collect();
        assert_eq!(types.len(), 2);
        assert!(types.contains(&"payment.authorized") && types.contains(&"payment.captured"));

        // Bad input stores nothing and says why.
        for (params, fragment) in [
            (json!({"url": receiver.url(), "events": ["payment.nope"]}), "unknown event type"),
            (json!({"url": receiver.url(), "events": []}), "at least one"),
            (json!({"url": "https://hooks.example/4242424242424242"}), "card number"),
            (json!({"url": receiver.url(), "colour": "red"}), "unknown field"),
        ] {
            let e = h.rpc("webhook.endpoint.create", params.clone()).await.unwrap_err();
            assert_eq!(e.code(), -32602, "{params}");
            assert!(e.to_json()["message"].as_str().unwrap().contains(fragment), "{params}: {:?}", e.to_json());
        }
        assert_eq!(h.rpc("webhook.endpoint.list", json!({})).await.unwrap()["endpoints"].as_array().unwrap().len(), 1);
        let e = h.rpc("webhook.endpoint.delete", json!({"endpoint_id": "we_other"})).await.unwrap_err();
        assert_eq!(e.code(), -31003);
        h.finish().await;
    }
}

#[tokio::test]
async fn a_name_resolving_to_a_private_address_is_refused_at_save_and_at_delivery_before_any_connection() {
    for postgres in backends() {
        let h = harness(postgres, Duration::from_secs(3600)).await;
        let receiver = Receiver::start().await;

        h.resolver.set("10.0.0.7");
        let e = h.rpc("webhook.endpoint.create", json!({"url": receiver.url()})).await.unwrap_err();
        assert_eq!(e.code(), -32602);
        assert!(e.to_json()["message"].as_str().unwrap().contains("(private)"), "{:?}", e.to_json());
        h.resolver.set("169.254.169.254");
        let e = h.rpc("webhook.endpoint.create", json!({"url": receiver.url()})).await.unwrap_err();
        assert!(e.to_json()["message"].as_str().unwrap().contains("(metadata)"));

        h.resolver.set("127.0.0.1");
        let created = h.rpc("webhook.endpoint.create", json!({"url": receiver.url()})).await.unwrap();
        let endpoint_id = created["endpoint_id"].as_str().unwrap().to_owned();
        h.pay("rebind", false).await;

        // DNS rebinding: by delivery time the name points at a private address.
        h.resolver.set("10.0.0.7");
        assert_eq!(worker::deliver_due(&h.gateway).await, 1);
        let list = h.rpc("webhook.list", json!({})).await.unwrap();
        let attempt = &list["webhooks"][0]["attempts"][0];
        assert_eq!(attempt["error"], "destination_refused:private", "{list}");
        assert!(attempt.get("status_code").is_none());
        assert_eq!(receiver.connections.load(Ordering::SeqCst), 0);
        assert_eq!(list["webhooks"][0]["status"], "pending");

        // Back on an allowed address: one lookup, one connection to the address checked,
        // the Host header the URL's name.
        h.resolver.set("127.0.0.1");
        let webhook_id = list["webhooks"][0]["webhook_id"].as_str().unwrap().to_owned();
        h.rpc("webhook.resend", json!({"webhook_id": webhook_id, "endpoint_id": endpoint_id})).await.unwrap();
        let lookups = h.resolver.lookups.load(Ordering::SeqCst);
        assert_eq!(worker::deliver_due(&h.gateway).await, 1);
        assert_eq!(h.resolver.lookups.load(Ordering::SeqCst), lookups + 1, "no second lookup");
        assert_eq!(receiver.connections.load(Ordering::SeqCst), 1);
        let head = receiver.heads.lock().unwrap()[0].to_ascii_lowercase();
        assert!(head.starts_with("post /hooks http/1.1"), "{head}");
        assert!(head.contains(&format!("host: {NAME}:{}", receiver.port)), "{head}");
        assert!(head.contains(&format!("webhook-id: {webhook_id}")), "{head}");
        assert!(head.contains("webhook-signature: v1,"), "{head}");
        let list = h.rpc("webhook.list", json!({"status": "delivered"})).await.unwrap();
        assert_eq!(list["webhooks"][0]["attempt_count"], 2);
        h.finish().await;
    }
}

#[tokio::test]
async fn an_endpoint_failing_for_too_long_is_disabled_and_can_be_enabled_again() {
    for postgres in backends() {
        let h = harness(postgres, Duration::ZERO).await;
        let receiver = Receiver::start().await;
        *receiver.status.lock().unwrap() = 500;
        h.resolver.set("127.0.0.1");
        let created = h.rpc("webhook.endpoint.create", json!({"url": receiver.url()})).await.unwrap();
        let endpoint_id = created["endpoint_id"].as_str().unwrap().to_owned();
        h.pay("fail", false).await;
        assert_eq!(worker::deliver_due(&h.gateway).await, 1);
        let endpoints = h.rpc("webhook.endpoint.list", json!({})).await.unwrap();
        let e = &endpoints["endpoints"][0];
        assert_eq!((e["status"].as_str(), e["disabled_reason"].as_str()), (Some("disabled"), Some("failing")), "{e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(worker::deliver_due(&h.gateway).await, 0, "a disabled endpoint gets nothing");
        assert_eq!(h.pending().await, 1, "its delivery waits");

        *receiver.status.lock().unwrap() = 204;
        let e = h.rpc("webhook.endpoint.update", json!({"endpoint_id": endpoint_id, "enabled": true})).await.unwrap();
        assert_eq!(e["status"], "enabled");
        assert!(e.get("failing_since").is_none());
        assert_eq!(worker::deliver_due(&h.gateway).await, 1);
        assert_eq!(h.pending().await, 0);
        assert_eq!(receiver.connections.load(Ordering::SeqCst), 2);
        h.finish().await;
    }
}

/// A root store holding the certificate of `ca_pem`.
fn client_tls_trusting(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use base64::Engine;
    let body: String = ca_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(der)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn https_endpoints_are_verified_against_the_roots_and_an_untrusted_certificate_delivers_nothing() {
    let dir = paysys_test_support::scratch_dir("webhooks-tls");
    let ca = CertificateAuthority::generate("Webhook Receiver CA").unwrap();
    ca.issue(&IssueRequest::server()).unwrap().write(&dir.join("r.pem"), &dir.join("r.key")).unwrap();
    let server_tls = paysys_sandbox::tls::server_config(&dir.join("r.pem"), &dir.join("r.key"), None, None).unwrap().0;
    let receiver = Receiver::start_with(Some(server_tls)).await;
    let url = format!("https://localhost:{}/hooks", receiver.port);

    // The default client (the Mozilla roots) does not trust the receiver's private CA.
    let h = harness(false, Duration::from_secs(3600)).await;
    h.resolver.set("127.0.0.1");
    h.rpc("webhook.endpoint.create", json!({"url": url})).await.unwrap();
    h.pay("untrusted", false).await;
    assert_eq!(worker::deliver_due(&h.gateway).await, 1);
    let list = h.rpc("webhook.list", json!({})).await.unwrap();
    assert_eq!(list["webhooks"][0]["attempts"][0]["error"], "tls: certificate", "{list}");
    assert!(receiver.heads.lock().unwrap().is_empty(), "nothing was sent");
    h.finish().await;

    // Trusting the CA, the same receiver gets the webhook over TLS.
    let mut h = harness(false, Duration::from_secs(3600)).await;
    let gateway = Arc::get_mut(&mut h.gateway).unwrap();
    let webhooks = std::mem::replace(
        &mut gateway.webhooks,
        Webhooks::new(WebhookConfig::default(), SecretKey::from_hex(&SecretKey::generate_hex()).unwrap()),
    );
    gateway.webhooks = webhooks.with_client_tls(client_tls_trusting(ca.cert_pem()));
    h.resolver.set("127.0.0.1");
    h.rpc("webhook.endpoint.create", json!({"url": url})).await.unwrap();
    h.pay("trusted", false).await;
    assert_eq!(worker::deliver_due(&h.gateway).await, 1);
    let list = h.rpc("webhook.list", json!({})).await.unwrap();
    assert_eq!(list["webhooks"][0]["status"], "delivered", "{list}");
    let head = receiver.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.contains(&format!("host: localhost:{}", receiver.port)), "{head}");
    h.finish().await;
}

#[tokio::test]
async fn a_hanging_endpoint_holds_up_no_other_and_times_out() {
    for postgres in backends() {
        let mut h = harness(postgres, Duration::from_secs(3600)).await;
        Arc::get_mut(&mut h.gateway).unwrap().webhooks.config.timeout = Duration::from_secs(3);
        // Accepts connections and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let receiver = Receiver::start().await;
        h.resolver.set("127.0.0.1");
        let silent_url = format!("http://{NAME}:{silent_port}/hooks");
        h.rpc("webhook.endpoint.create", json!({"url": silent_url})).await.unwrap();
        h.rpc("webhook.endpoint.create", json!({"url": receiver.url()})).await.unwrap();

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(worker::run(h.gateway.clone(), Duration::from_millis(50), async move {
            let _ = stopped.await;
        }));
        let started = std::time::Instant::now();
        h.pay("hol", false).await;
        while receiver.heads.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Well before the silent endpoint's 3 s deadline.
        assert!(
            started.elapsed() < Duration::from_millis(2_500),
            "the healthy endpoint waited {:?}",
            started.elapsed()
        );
        // Its attempt is recorded at once, not after the silent one's deadline.
        let delivered = loop {
            let list = h.rpc("webhook.list", json!({"status": "delivered"})).await.unwrap();
            if !list["webhooks"].as_array().unwrap().is_empty() || started.elapsed() > Duration::from_secs(5) {
                break list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(delivered["webhooks"].as_array().unwrap().len(), 1);
        assert!(started.elapsed() < Duration::from_millis(2_800), "recorded after {:?}", started.elapsed());
        // The silent one times out and is retried later.
        let pending = loop {
            let pending = h.rpc("webhook.list", json!({"status": "pending"})).await.unwrap();
            if pending["webhooks"][0]["attempts"][0].is_object() || started.elapsed() > Duration::from_secs(10) {
                break pending;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(pending["webhooks"][0]["attempts"][0]["error"], "timeout", "{pending}");
        let _ = stop.send(());
        worker.await.unwrap();
        h.finish().await;
    }
}
