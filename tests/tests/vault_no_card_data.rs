//! After tokenizing known cards, neither the database (SQLite file bytes, PostgreSQL
//! rows) nor the vault's log holds the card number's digits or the CVC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_test_support::cards;
use paysys_test_support::dump::{database_dump, postgres_tables};
use paysys_tests::{backends, Backend, TestVault};
use serde_json::json;

const PAN: &str = cards::AMEX;
const PAN_SPACED: &str = "3782 822463 10005";
const CVC: &str = "8264";
const VISA: &str = cards::LIMITED;

/// Every byte string a leaked PAN or CVC could look like: the digits, and the hex of
/// their ASCII (how PostgreSQL prints bytea).
fn needles() -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for secret in [PAN, VISA, CVC] {
        all.push(secret.as_bytes().to_vec());
        all.push(hex_ascii(secret).into_bytes());
    }
    all
}

/// `needle` occurs in `haystack` as a whole number (no digit or decimal point right
/// before or after), so a short CVC is not "found" inside a timestamp or a duration
/// (sqlx's debug lines print `elapsed_secs=3.8264e-5`).
fn occurs(haystack: &[u8], needle: &[u8]) -> bool {
    let part_of_a_number = |c: &u8| c.is_ascii_digit() || *c == b'.';
    let n = needle.len();
    haystack.windows(n).enumerate().any(|(i, w)| {
        let bounded =
            (i == 0 || !part_of_a_number(&haystack[i - 1])) && !haystack.get(i + n).is_some_and(part_of_a_number);
        w == needle && (n >= 12 || bounded)
    })
}

#[test]
fn a_short_secret_is_found_as_a_whole_number_only() {
    assert!(occurs(br#"{"cvc":"8264"}"#, b"8264"));
    assert!(occurs(b"cvc=8264 next", b"8264"));
    assert!(!occurs(b"elapsed_secs=3.8264e-5", b"8264"), "inside a duration");
    assert!(!occurs(b"at=1733238264000", b"8264"), "inside a timestamp");
    assert!(!occurs(b"v=8264.5", b"8264"));
    assert!(occurs(b"x3782822463100059", b"378282246310005"), "a PAN is found anywhere");
}

fn hex_ascii(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn find_any(haystack: &[u8], what: &str) -> Option<String> {
    needles()
        .into_iter()
        .find(|n| occurs(haystack, n))
        .map(|n| format!("{what} contains {:?}", String::from_utf8_lossy(&n)))
}

/// `bytes` with every occurrence of the (already checked) tokens and fingerprints cut out.
fn without(bytes: &[u8], values: &[String]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for token in values {
        let t = token.as_bytes();
        let mut kept = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(t) {
                i += t.len();
            } else {
                kept.push(out[i]);
                i += 1;
            }
        }
        out = kept;
    }
    out
}

/// Everything the vault's database holds (SQLite file bytes, PostgreSQL rows as text).
async fn database_text(vault: &TestVault, backend: &Backend) -> Vec<u8> {
    let bytes = database_dump(&vault.db.url).await;
    match backend {
        Backend::Sqlite => assert!(bytes.len() > 4096),
        Backend::Postgres(_) => {
            let tables = postgres_tables(&vault.db.url).await;
            assert!(tables.iter().any(|t| t == "cards"), "{tables:?}");
        }
    }
    bytes
}

#[tokio::test]
async fn no_card_number_or_cvc_in_database_or_log() {
    for backend in backends() {
        let vault = TestVault::start(&backend).await;
        let m = &vault.pki.merchant;
        let mut tokens = Vec::new();
        let mut opaque = Vec::new();
        for (pan, cvc, format) in [(PAN_SPACED, CVC, "opaque"), (PAN, CVC, "bin_last4"), (VISA, "321", "opaque")] {
            let r = vault
                .call(m, "POST", "/v1/tokens", Some(json!({"merchant_id": "m_1", "pan": pan, "exp_month": 3, "exp_year": 2030, "cvc": cvc, "format": format, "cardholder_name": "Grace Hopper"})))
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            // A random token or a keyed fingerprint can spell a short CVC by chance
            // ("…8264…"), which is no leak: those two are checked for the card numbers,
            // and everything else for every needle.
            let token = r.body["token"].as_str().unwrap().to_owned();
            let fingerprint = r.body["fingerprint"].as_str().unwrap().to_owned();
            for value in [&token, &fingerprint] {
                assert!(!value.contains(PAN) && !value.contains(VISA), "{value}");
            }
            opaque.extend([token.clone(), fingerprint]);
            assert!(find_any(&without(&r.raw, &opaque), "response").is_none(), "{}", r.body);
            tokens.push(token);
        }
        // Errors that carry the PAN in odd places must not echo it either.
        for body in [
            json!({"merchant_id": "m_1", "pan": PAN, "exp_month": PAN, "exp_year": 2030}),
            json!({"merchant_id": "m_1", "pan": "3782822463100051", "exp_month": 3, "exp_year": 2030}),
            json!({"merchant_id": "m_1", "pan": PAN, "exp_month": 3, "exp_year": 2030, "cvc": "82640"}),
        ] {
            let r = vault.call(m, "POST", "/v1/tokens", Some(body)).await;
            assert!(r.status >= 400);
            assert!(find_any(&r.raw, "error response").is_none(), "{}", r.body);
        }
        let r = vault.call(m, "GET", &format!("/v1/tokens/{PAN}"), None).await;
        assert_eq!(r.error_code(), Some("token_not_found"));
        for t in &tokens {
            assert_eq!(vault.call(m, "GET", &format!("/v1/tokens/{t}"), None).await.status, 200);
        }
        let audit = vault.call(&vault.pki.alice, "GET", "/v1/audit/records?limit=1000", None).await;
        assert_eq!(audit.status, 200);
        assert!(find_any(&without(&audit.raw, &opaque), "audit log").is_none());

        let db = database_text(&vault, &backend).await;
        assert!(find_any(&without(&db, &opaque), &format!("{} database", backend.name())).is_none());
        // The database does hold the tokens (so the scan looked at the right data).
        assert!(db.windows(tokens[0].len()).any(|w| w == tokens[0].as_bytes()));
        let log = vault.log_text();
        assert!(!log.is_empty());
        assert!(find_any(&without(log.as_bytes(), &opaque), "vault log").is_none(), "{log}");
        vault.finish().await;
    }
}
