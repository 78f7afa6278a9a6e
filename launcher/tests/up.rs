//! `paysys up` as a user runs it: the real `paysys` binary starts the real vault, writes
//! `stack.json`, the dev merchant tokenizes a card over mTLS with the certificate named
//! there, `paysys checkout` gives a hosted checkout that a card typed into the intake's
//! frame pays, and SIGTERM stops everything cleanly and removes `stack.json`.
//!
//! The service binaries come from the same target directory (`cargo test --workspace`
//! builds them), passed with `--bin-dir` so the launcher does not build anything itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys::stack::Stack;
use paysys_vault_client::{ClientTls, HttpVersion};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_paysys")).parent().unwrap().to_owned()
}

async fn wait_for_stack(dir: &Path, child: &mut tokio::process::Child) -> Stack {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(stack) = Stack::read_from_dir(dir) {
            return stack;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("paysys up exited early: {status}");
        }
        assert!(Instant::now() < deadline, "no stack.json after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `paysys rpc METHOD PARAMS --dir DIR`, as a user would run it; its JSON answer.
fn rpc(dir: &Path, method: &str, params: &serde_json::Value) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_paysys"))
        .args(["rpc", method, &params.to_string(), "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "paysys rpc {method}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// One HTTP/1.1 request as a browser would send it (`Origin`, JSON body) over plain HTTP
/// to `url`, or over TLS trusting `ca` for `https://`; the status and the body as JSON.
async fn browser_request(
    method: &str,
    url: &str,
    origin: Option<&str>,
    body: Option<&serde_json::Value>,
    ca: &Path,
) -> (u16, serde_json::Value, String) {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    let (scheme, rest) = url.split_once("://").unwrap();
    let (hostport, path) = rest.split_at(rest.find('/').unwrap());
    let tcp = tokio::net::TcpStream::connect(hostport).await.unwrap();
    let mut request = hyper::Request::builder().method(method).uri(path).header("host", hostport);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default()))).unwrap();
    let response = if scheme == "https" {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut std::fs::read(ca).unwrap().as_slice()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let host = hostport.rsplit_once(':').unwrap().0.to_owned();
        let name = rustls_pki_types::ServerName::try_from(host).unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null), text)
}

/// `paysys checkout …` as the README says to try it: the hosted page's URL it prints,
/// then what the page's and the frame's scripts do — an attempt (the grant in the frame
/// URL's fragment), the card to the intake, the token to the gateway — and the checkout
/// is completed. Checks the wiring `paysys up` made: the gateway's grant key and the
/// intake's public key are one pair, and each knows the other's origin.
async fn pay_a_hosted_checkout(dir: &Path, stack: &Stack) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_paysys"))
        .args(["checkout", "--amount", "150000", "--currency", "UZS", "--description", "Green tea", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "paysys checkout: {}", String::from_utf8_lossy(&output.stderr));
    let url = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let prefix = format!("{}/checkout/chk_", stack.gateway.url);
    assert!(url.starts_with(&prefix), "{url}");
    let checkout_id = url.rsplit('/').next().unwrap().to_owned();
    let ca = &stack.pki.ca_cert;
    let (status, _, page) = browser_request("GET", &url, None, None, ca).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&stack.intake.url), "the page frames the intake: {page}");

    let page_origin = stack.gateway.url.as_str();
    let attempts = format!("{url}/attempts");
    let (status, attempt, text) =
        browser_request("POST", &attempts, Some(page_origin), Some(&serde_json::json!({})), ca).await;
    assert_eq!(status, 200, "{text}");
    let frame_url = attempt["frame_url"].as_str().unwrap();
    assert!(frame_url.starts_with(&format!("{}/v1/frame?", stack.intake.url)), "{frame_url}");
    let grant = frame_url.split_once("#grant=").unwrap().1;
    let (status, _, frame) = browser_request("GET", frame_url.split('#').next().unwrap(), None, None, ca).await;
    assert_eq!(status, 200, "{frame}");

    let card = serde_json::json!({
        "grant": grant, "ancestor_origin": page_origin, "number": "4000000000003014",
        "exp_month": 12, "exp_year": 2031, "cvc": "123",
    });
    let cards = format!("{}/v1/cards", stack.intake.url);
    let (status, accepted, text) = browser_request("POST", &cards, Some(&stack.intake.url), Some(&card), ca).await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(accepted["checkout_id"], checkout_id.as_str());
    let (status, _, text) = browser_request("POST", &cards, Some(&stack.intake.url), Some(&card), ca).await;
    assert!(status == 409 && text.contains("grant_used"), "a grant is good for one card: {text}");

    let pay = serde_json::json!({
        "attempt_id": attempt["attempt_id"], "token": accepted["token"],
        "browser": {"java_enabled": false, "javascript_enabled": true, "language": "en", "color_depth": 24,
                    "screen_height": 800, "screen_width": 400, "tz": 0, "user_agent": "paysys-up-test"},
    });
    let (status, paid, text) = browser_request("POST", &format!("{url}/pay"), Some(page_origin), Some(&pay), ca).await;
    assert_eq!((status, paid["status"].as_str()), (200, Some("completed")), "{text}");
    let checked = rpc(dir, "checkout.check", &serde_json::json!({ "checkout_id": checkout_id }));
    assert_eq!(checked["result"]["status"], "completed", "{checked}");
}

#[tokio::test(flavor = "multi_thread")]
async fn up_starts_a_usable_stack_and_stops_cleanly_on_sigterm() {
    for service in ["paysys-vault", "paysys-sandbox", "paysys-gateway", "paysys-intake"] {
        assert!(
            bin_dir().join(service).is_file(),
            "{service} is not built next to paysys: run `cargo test --workspace`"
        );
    }
    let dir = std::env::temp_dir().join(format!("paysys-up-test-{}", rand::random::<u64>()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_paysys"))
        .args(["up", "--vault-port", "0", "--sandbox-port", "0", "--gateway-port", "0", "--intake-port", "0", "--dir"])
        .arg(&dir)
        .arg("--bin-dir")
        .arg(bin_dir())
        .env_remove("PAYSYS_VAULT_DATABASE_URL")
        .env_remove("PAYSYS_GATEWAY_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stack = wait_for_stack(&dir, &mut child).await;
    assert!(stack.dev);
    assert!(stack.vault.database_url.starts_with("sqlite:"));

    // The dev merchant tokenizes with the files named in stack.json.
    let tls = ClientTls::new(
        &stack.pki.ca_cert,
        Some((&stack.pki.merchant.cert, &stack.pki.merchant.key)),
        HttpVersion::Http1,
    )
    .unwrap();
    let mut conn = tls.connect(&stack.vault.url).await.unwrap();
    let body = serde_json::json!({
        "merchant_id": stack.pki.merchant.id, "pan": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2031,
        "format": "opaque", "reuse": false,
    });
    let r = conn.call("POST", "/v1/tokens", Some(&body)).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["last4"], "4242");
    let status = conn.call("GET", "/v1/sys/status", None).await.unwrap();
    assert_eq!(status.status, 403, "merchants may not read the vault's status: {}", status.body);

    // The card intake serves over TLS with the dev CA's certificate.
    assert!(stack.intake.url.starts_with("https://127.0.0.1:"), "{}", stack.intake.url);
    let browser = ClientTls::new(&stack.pki.ca_cert, None, HttpVersion::Http1).unwrap();
    let health = browser.connect(&stack.intake.url).await.unwrap().call("GET", "/health", None).await.unwrap();
    assert_eq!((health.status, health.body.clone()), (200, serde_json::json!({"status": "ok"})));
    pay_a_hosted_checkout(&dir, &stack).await;

    // The dev merchant pays with the token through the gateway, signing with `paysys rpc`
    // (the vault relays the authorization to the sandbox; the gateway never sees the PAN).
    let token = r.body["token"].as_str().unwrap().to_owned();
    let params = serde_json::json!({
        "card_token": token, "amount": 1500, "currency": "USD", "partner_trans_id": "up-test-1",
    });
    let paid = rpc(&dir, "payment.create", &params);
    assert_eq!(paid["result"]["status"], "captured", "{paid}");
    let checked = rpc(&dir, "payment.check", &serde_json::json!({ "partner_trans_id": "up-test-1" }));
    assert_eq!(checked["result"]["transaction_id"], paid["result"]["transaction_id"], "{checked}");
    assert!(!paid.to_string().contains("4242424242424242"));

    // `paysys pki revoke`: the running vault picks the CRL up by itself and refuses bob's
    // officer certificate at the handshake; the merchant is unaffected; no restart.
    let bob = &stack.pki.officers["bob"];
    let bob_tls = ClientTls::new(&stack.pki.ca_cert, Some((&bob.cert, &bob.key)), HttpVersion::Http1).unwrap();
    let health = |tls: ClientTls, url: String| async move {
        match tls.connect(&url).await {
            Ok(mut conn) => conn.call("GET", "/v1/sys/health", None).await.map(|r| r.status).ok(),
            Err(_) => None,
        }
    };
    assert_eq!(health(bob_tls.clone(), stack.vault.url.clone()).await, Some(200));
    let revoked = std::process::Command::new(env!("CARGO_BIN_EXE_paysys"))
        .args(["pki", "revoke", "officer-bob", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(revoked.status.success(), "paysys pki revoke: {}", String::from_utf8_lossy(&revoked.stderr));
    let revocation: serde_json::Value = serde_json::from_slice(&revoked.stdout).unwrap();
    assert_eq!((revocation["crl_number"].as_u64(), revocation["revoked_count"].as_u64()), (Some(2), Some(1)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(bob_tls.clone(), stack.vault.url.clone()).await.is_some() {
        assert!(Instant::now() < deadline, "the vault still serves bob 10 s after `paysys pki revoke`");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(health(tls.clone(), stack.vault.url.clone()).await, Some(200), "the merchant is still served");
    assert!(Path::new(&format!("/proc/{}", stack.vault.pid)).exists(), "the same vault process");

    // SIGTERM: services stopped, stack.json gone, exit 0.
    let pid = child.id().unwrap();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "paysys up exited with {}: {stderr}", output.status);
    assert!(stderr.contains("DEV MODE"), "the dev banner is printed: {stderr}");
    assert!(!Stack::path_in(&dir).exists(), "stack.json is removed on a clean stop");
    for pid in [stack.vault.pid, stack.gateway.pid, stack.sandbox.pid, stack.intake.pid] {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "every service process is gone");
    }
    for pan in ["4242424242424242", "4000000000003014"] {
        assert!(!stderr.contains(pan), "no card number in the stack's logs");
    }

    // A second `up` on the same directory reuses the PKI and the initialized vault.
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_paysys"))
        .args(["up", "--vault-port", "0", "--sandbox-port", "0", "--gateway-port", "0", "--intake-port", "0", "--dir"])
        .arg(&dir)
        .arg("--bin-dir")
        .arg(bin_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut again = again.unwrap();
    let restarted = wait_for_stack(&dir, &mut again).await;
    assert_eq!(restarted.pki.ca_cert, stack.pki.ca_cert);
    let tls = ClientTls::new(
        &restarted.pki.ca_cert,
        Some((&restarted.pki.merchant.cert, &restarted.pki.merchant.key)),
        HttpVersion::Http1,
    )
    .unwrap();
    let mut conn = tls.connect(&restarted.vault.url).await.unwrap();
    let read = conn.call("GET", &format!("/v1/tokens/{token}"), None).await.unwrap();
    assert_eq!(read.status, 200, "the token survives a restart: {}", read.body);
    let again_checked = rpc(&dir, "payment.check", &serde_json::json!({ "partner_trans_id": "up-test-1" }));
    assert_eq!(again_checked["result"]["status"], "captured", "the payment survives a restart: {again_checked}");
    let pid = again.id().unwrap();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    tokio::time::timeout(Duration::from_secs(30), again.wait()).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
