//! The vault's API is mTLS only: every bad client certificate fails the handshake.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_tests::{Backend, Identity, TestVault};
use paysys_vault_client::{ClientTls, HttpVersion};

/// In TLS 1.3 the client learns of a rejected certificate from the server's alert, on
/// its first read; either the handshake or the first request must fail.
async fn refused(vault: &TestVault, tls: ClientTls) -> String {
    match tls.connect(&vault.url).await {
        Err(e) => e.to_string(),
        Ok(mut conn) => match conn.call("GET", "/v1/sys/health", None).await {
            Err(e) => e.to_string(),
            Ok(r) => panic!("request answered {} instead of failing the handshake", r.status),
        },
    }
}

fn tls_as(vault: &TestVault, who: &Identity) -> ClientTls {
    ClientTls::new(&vault.pki.ca_cert, Some((&who.cert, &who.key)), HttpVersion::Http1).unwrap()
}

#[tokio::test]
async fn bad_client_certificates_fail_the_handshake() {
    let vault = TestVault::start(&Backend::Sqlite).await;

    let none = ClientTls::new(&vault.pki.ca_cert, None, HttpVersion::Http1).unwrap();
    let e = refused(&vault, none).await;
    assert!(e.contains("CertificateRequired") || e.contains("certificate required"), "no certificate: {e}");

    let e = refused(&vault, tls_as(&vault, &vault.pki.foreign)).await;
    assert!(e.contains("UnknownCA") || e.contains("unknown"), "foreign CA: {e}");

    let e = refused(&vault, tls_as(&vault, &vault.pki.expired)).await;
    assert!(e.contains("CertificateExpired") || e.contains("expired") || e.contains("BadCertificate"), "expired: {e}");

    let e = refused(&vault, tls_as(&vault, &vault.pki.no_client_auth)).await;
    assert!(!e.is_empty(), "no clientAuth usage: {e}");

    // The server logged each refusal; the good certificate still works.
    // The server logs a refusal after the client has already seen the alert: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while vault.log_text().matches("TLS handshake refused").count() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = vault.log_text();
    assert!(log.matches("TLS handshake refused").count() >= 4, "{log}");
    let ok = vault.call(&vault.pki.merchant, "GET", "/v1/sys/health", None).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["sealed"], false);
    vault.finish().await;
}

#[tokio::test]
async fn the_vault_certificate_is_checked_by_clients_too() {
    let vault = TestVault::start(&Backend::Sqlite).await;
    // A client trusting another CA refuses the vault.
    let other = paysys_tests::scratch_dir("other-ca");
    let other_pki = paysys_tests::TestPki::generate(&other);
    let tls = ClientTls::new(
        &other_pki.ca_cert,
        Some((&other_pki.merchant.cert, &other_pki.merchant.key)),
        HttpVersion::Http1,
    )
    .unwrap();
    assert!(tls.connect(&vault.url).await.is_err());
    vault.finish().await;
    let _ = std::fs::remove_dir_all(&other);
}
