//! The `paysys-intake` binary refuses to start on a configuration that would serve cards
//! unsafely or not at all, and says which flag is wrong. (Its requests are tested end to
//! end, next to a real vault, in `tests/tests/intake_cards.rs`.)

// Helpers outside #[test] functions, which clippy's allow-expect-in-tests does not see as
// tests; a failed expect is a failed test.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::process::Output;

fn intake(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_paysys-intake")).args(args).output().expect("run paysys-intake")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A self-signed certificate and key, written to `dir`: enough for the start-up checks
/// that come before the intake listens.
fn certificate(dir: &Path) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
    (cert.display().to_string(), key.display().to_string())
}

fn serve_args<'a>(cert: &'a str, key: &'a str, grant_key: &'a str, public_url: &'a str) -> Vec<&'a str> {
    vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--public-url",
        public_url,
        "--vault-url",
        "https://127.0.0.1:9",
        "--vault-ca",
        cert,
        "--client-cert",
        cert,
        "--client-key",
        key,
        "--grant-public-key",
        grant_key,
    ]
}

#[test]
fn start_up_refuses_missing_or_bad_grant_keys_and_a_plain_http_public_url() {
    let dir = std::env::temp_dir().join(format!("paysys-intake-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let (cert, key) = certificate(&dir);

    // Without the gateway's public key the intake could accept no grant at all.
    let out = intake(&["serve", "--tls-cert", &cert, "--tls-key", &key]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--grant-public-key"), "{}", stderr(&out));

    // A key file that is not 64 hex digits is named, with its key id.
    let bad = dir.join("bad.pub");
    std::fs::write(&bad, "not a key\n").expect("write");
    let bad_arg = format!("g1={}", bad.display());
    let out = intake(&serve_args(&cert, &key, &bad_arg, "https://127.0.0.1:8444"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--grant-public-key g1="), "{}", stderr(&out));
    assert!(stderr(&out).contains("64 hex digits"), "{}", stderr(&out));

    // A key id that is not a plain name is refused by the flag parser.
    let out = intake(&serve_args(&cert, &key, "g 1=/nowhere", "https://127.0.0.1:8444"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Browsers post card numbers to the public URL: plain http is refused.
    let good = dir.join("good.pub");
    std::fs::write(&good, format!("{}\n", "ab".repeat(32))).expect("write");
    let good_arg = format!("g1={}", good.display());
    let out = intake(&serve_args(&cert, &key, &good_arg, "http://127.0.0.1:8444"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--public-url must be https"), "{}", stderr(&out));
    // Nothing it printed on the way holds a listening line: it never served.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));

    let _ = std::fs::remove_dir_all(&dir);
}
