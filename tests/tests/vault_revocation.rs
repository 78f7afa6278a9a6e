//! Client certificates are revocable and principals are strict, on a real vault process
//! over real mTLS:
//!
//! * `paysys pki revoke` + a reload (SIGHUP, or the vault noticing the file change)
//!   makes the vault refuse a revoked gateway or merchant certificate *at the
//!   handshake*, closes connections already open with it, and leaves every other
//!   certificate working — all without restarting the vault;
//! * a CRL that fails to verify (garbage, another CA's, an older one) keeps the previous
//!   CRL;
//! * a certificate from the right CA that does not name exactly one PaySys principal is
//!   refused *at admission*: the handshake completes, the connection is closed before
//!   any request is read, nothing is served or audited.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys::pki::IssueRequest;
use paysys_tests::{Backend, Identity, SandboxOptions, TestSandbox, TestVault};
use paysys_vault_client::{ClientTls, HttpVersion};
use std::time::{Duration, Instant};

/// How a connection attempt as some client went.
#[derive(Debug)]
enum Outcome {
    /// Answered with this status.
    Served(u16),
    /// Refused; the client's error text.
    Refused(String),
}

/// One health request on a fresh connection with `tls`. In TLS 1.3 the client learns
/// of a refused certificate from the server's alert on its first read, so a refusal
/// can surface at connect or at the request.
async fn attempt(vault_url: &str, tls: &ClientTls) -> Outcome {
    match tls.connect(vault_url).await {
        Err(e) => Outcome::Refused(e.to_string()),
        Ok(mut conn) => match conn.call("GET", "/v1/sys/health", None).await {
            Ok(r) => Outcome::Served(r.status),
            Err(e) => Outcome::Refused(e.to_string()),
        },
    }
}

fn tls_as(vault: &TestVault, who: &Identity) -> ClientTls {
    ClientTls::new(&vault.pki.ca_cert, Some((&who.cert, &who.key)), HttpVersion::Http1).unwrap()
}

async fn assert_served(vault: &TestVault, who: &Identity) {
    match attempt(&vault.url, &tls_as(vault, who)).await {
        Outcome::Served(200) => {}
        other => panic!("{} should be served: {other:?}", who.principal),
    }
}

/// Wait until `tls` is refused with a "revoked" alert; panics after `within`.
async fn wait_until_revoked(vault: &TestVault, tls: &ClientTls, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        match attempt(&vault.url, tls).await {
            Outcome::Refused(e) => {
                assert!(e.contains("CertificateRevoked") || e.contains("revoked"), "refused, but not as revoked: {e}");
                return e;
            }
            Outcome::Served(status) => {
                assert!(Instant::now() < deadline, "still served ({status}) {within:?} after the revocation");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Wait until the vault's log holds `needle` at least `count` times.
async fn wait_for_log(vault: &TestVault, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while vault.log_text().matches(needle).count() < count {
        assert!(Instant::now() < deadline, "no {count}× {needle:?} in the log:\n{}", vault.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn revoked_gateway_and_merchant_certificates_are_refused_at_the_handshake_without_a_restart() {
    let vault = TestVault::start(&Backend::Sqlite).await;
    let pid = vault.pid();
    let pki = vault.pki.clone();
    // The gateway's client keeps its TLS session cache across connections, as the real
    // gateway's does: a resumed session must not get past the revocation either.
    let gateway_tls = tls_as(&vault, &pki.gateway);
    assert!(matches!(attempt(&vault.url, &gateway_tls).await, Outcome::Served(200)));
    let mut open_gateway = gateway_tls.connect(&vault.url).await.unwrap();
    assert_eq!(open_gateway.call("GET", "/v1/sys/health", None).await.unwrap().status, 200);
    assert_served(&vault, &pki.merchant).await;

    // Revoke the gateway, then SIGHUP: refused at once.
    let revocation = pki.revoke("gateway");
    assert_eq!((revocation.crl_number, revocation.revoked_count), (2, 1));
    vault.signal("HUP").await;
    let refusal = wait_until_revoked(&vault, &gateway_tls, Duration::from_secs(5)).await;
    // The refusal was rustls's, during the handshake, for revocation.
    wait_for_log(&vault, "TLS handshake refused", 1).await;
    assert!(vault.log_text().contains("Revoked"), "{refusal}\n{}", vault.log_text());
    // The connection the gateway opened before is closed too.
    wait_for_log(&vault, "client certificate revoked", 1).await;
    assert!(open_gateway.call("GET", "/v1/sys/health", None).await.is_err(), "the open connection still serves");
    // Everybody else is unaffected.
    assert_served(&vault, &pki.merchant).await;
    assert_served(&vault, &pki.other_merchant).await;
    assert_served(&vault, &pki.alice).await;

    // Revoke a merchant and send no signal: the vault notices the new file by itself.
    let merchant_tls = tls_as(&vault, &pki.merchant);
    pki.revoke("merchant-m_1");
    wait_until_revoked(&vault, &merchant_tls, Duration::from_secs(10)).await;
    assert_served(&vault, &pki.other_merchant).await;
    assert_served(&vault, &pki.alice).await;
    let r = vault
        .call(
            &pki.other_merchant,
            "POST",
            "/v1/tokens",
            Some(
                serde_json::json!({"merchant_id": "m_2", "pan": "4242424242424242", "exp_month": 12, "exp_year": 2031}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The gateway is still refused, and all of this was one vault process.
    assert!(matches!(attempt(&vault.url, &gateway_tls).await, Outcome::Refused(_)));
    assert_eq!(vault.pid(), pid);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the vault was not restarted");
    let log = vault.log_text();
    assert!(log.matches("CRL loaded").count() >= 3, "start, SIGHUP and the file change each load it:\n{log}");
    vault.finish().await;
}

#[tokio::test]
async fn a_crl_that_fails_to_verify_keeps_the_previous_one() {
    let vault = TestVault::start(&Backend::Sqlite).await;
    let pki = vault.pki.clone();
    let unrevoked_crl = std::fs::read_to_string(&pki.crl).unwrap();
    pki.revoke("gateway");
    vault.signal("HUP").await;
    let gateway_tls = tls_as(&vault, &pki.gateway);
    wait_until_revoked(&vault, &gateway_tls, Duration::from_secs(5)).await;

    // An attacker (or an accident) who can write the CRL file tries to un-revoke the
    // gateway: the older CRL, another CA's CRL with a high number, garbage, nothing.
    let other_ca = paysys::pki::CertificateAuthority::generate("PaySys Test CA").unwrap();
    let attempts = [
        ("an older CRL of our CA", unrevoked_crl),
        ("a CRL under our CA's name, signed by another key", other_ca.issue_crl(99, &[]).unwrap()),
        ("garbage", "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n".to_owned()),
        ("an empty file", String::new()),
    ];
    for (n, (what, contents)) in attempts.iter().enumerate() {
        std::fs::write(&pki.crl, contents).unwrap();
        vault.signal("HUP").await;
        wait_for_log(&vault, "CRL not reloaded", n + 1).await;
        assert!(
            matches!(attempt(&vault.url, &gateway_tls).await, Outcome::Refused(_)),
            "{what} un-revoked the gateway"
        );
        assert_served(&vault, &pki.merchant).await;
    }
    let log = vault.log_text();
    assert!(log.contains("lower than the loaded"), "{log}");
    assert!(log.contains("signature does not verify"), "{log}");
    vault.finish().await;
}

#[tokio::test]
async fn certificates_that_name_no_principal_are_refused_at_admission_with_nothing_served() {
    let vault = TestVault::start(&Backend::Sqlite).await;
    let ca = vault.pki.ca();
    let crafted = IssueRequest::client_with_names;
    let cases = [
        (
            "two URI SANs",
            crafted(&["spiffe://paysys/gateway", "spiffe://paysys/officer/alice"], &[], None),
            "more than one URI SAN",
        ),
        (
            "a URI that is not spiffe://paysys/",
            IssueRequest::client("https://paysys.example/gateway"),
            "not a spiffe://paysys/ identity",
        ),
        ("a DNS SAN only", crafted(&[], &["gateway.paysys.internal"], Some("spiffe://paysys/gateway")), "no URI SAN"),
        ("a common name only", crafted(&[], &[], Some("spiffe://paysys/gateway")), "no URI SAN"),
        (
            "no extended key usage",
            IssueRequest::client("spiffe://paysys/gateway").without_extended_key_usage(),
            "lacks the clientAuth",
        ),
    ];
    let audited_before = audit_count(&vault).await;
    for (n, (what, request, reason)) in cases.iter().enumerate() {
        let name = format!("crafted-{n}");
        let cert = vault.pki.dir.join(format!("{name}.pem"));
        let key = vault.pki.dir.join(format!("{name}.key"));
        ca.issue(request).unwrap().write(&cert, &key).unwrap();
        let tls = ClientTls::new(&vault.pki.ca_cert, Some((&cert, &key)), HttpVersion::Http1).unwrap();
        match attempt(&vault.url, &tls).await {
            Outcome::Refused(e) => {
                assert!(!e.contains("alert"), "{what}: refused by a TLS alert, not at admission: {e}")
            }
            Outcome::Served(status) => panic!("{what}: served {status}"),
        }
        // The handshake completed (no "TLS handshake refused"); admission said why not.
        wait_for_log(&vault, reason, 1).await;
        wait_for_log(&vault, "client certificate names no principal", n + 1).await;
    }
    assert!(!vault.log_text().contains("TLS handshake refused"), "{}", vault.log_text());
    // A certificate whose EKU is serverAuth only is refused earlier, by rustls.
    let refused = attempt(&vault.url, &tls_as(&vault, &vault.pki.no_client_auth)).await;
    assert!(matches!(refused, Outcome::Refused(_)), "{refused:?}");
    wait_for_log(&vault, "TLS handshake refused", 1).await;
    // Nothing reached a handler: no request was audited.
    assert_eq!(audit_count(&vault).await, audited_before + 1, "only our own audit query is recorded");
    vault.finish().await;
}

/// Audit records so far (the query itself is audited after it answers).
async fn audit_count(vault: &TestVault) -> usize {
    let records = vault.call(&vault.pki.alice, "GET", "/v1/audit/records?limit=5000", None).await;
    assert_eq!(records.status, 200, "{}", records.body);
    records.body["records"].as_array().unwrap().len()
}

#[tokio::test]
async fn the_sandbox_refuses_a_revoked_client_certificate_too() {
    let dir = paysys_tests::scratch_dir("sandbox-crl");
    let pki = paysys_tests::TestPki::generate(&dir);
    let options = SandboxOptions {
        client_ca: Some(pki.ca_cert.clone()),
        extra_args: vec!["--client-crl".into(), pki.crl.display().to_string()],
        ..SandboxOptions::new(&pki)
    };
    let sandbox = TestSandbox::start(&dir, &options).await;
    let ledger = "/acquirer/v1/ledger";
    let r = sandbox.call(&pki.ca_cert, Some(&pki.relay_client), "GET", ledger, None).await;
    assert_eq!(r.status, 200, "{}", r.body);

    pki.revoke("relay-client");
    let tls = ClientTls::new(&pki.ca_cert, Some((&pki.relay_client.cert, &pki.relay_client.key)), HttpVersion::Http1)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refused = match tls.connect(&sandbox.url).await {
            Err(_) => true,
            Ok(mut conn) => conn.call("GET", ledger, None).await.is_err(),
        };
        if refused {
            break;
        }
        assert!(Instant::now() < deadline, "the sandbox still serves a revoked certificate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another certificate of the same CA is still served.
    let r = sandbox.call(&pki.ca_cert, Some(&pki.gateway), "GET", ledger, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    sandbox.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
