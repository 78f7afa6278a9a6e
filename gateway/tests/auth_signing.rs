//! The tests sign their JSON-RPC requests with `paysys-test-support`'s own `Auth` header
//! code (written with `ring`, as a merchant writes it, because the support crate may not
//! depend on the gateway). These checks keep that code and the gateway's verifier from
//! drifting apart: a header the support crate makes is one the gateway accepts, spelled
//! exactly as the gateway's own `auth::sign` spells it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysys_gateway::auth::{self, AuthError, AuthHeader};
use paysys_gateway::secrets::MerchantSecret;
use paysys_test_support::rpc::{auth_header, now_ms, RpcClient};

const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"payment.list","params":{}}"#;

#[test]
fn the_gateway_verifies_the_support_crates_header() {
    let secret = MerchantSecret::generate();
    let now = now_ms();
    let header = auth_header("svc_test", secret.expose_secret(), now, BODY);
    let parsed = AuthHeader::parse(&header).unwrap();
    assert_eq!((parsed.service_id.as_str(), parsed.timestamp_ms), ("svc_test", now));
    parsed.check_fresh(paysys_gateway::payments::now_ms()).unwrap();
    parsed.verify(&secret, BODY).unwrap();
    assert_eq!(parsed.verify(&MerchantSecret::generate(), BODY), Err(AuthError::BadSignature));
    assert_eq!(parsed.verify(&secret, b"{}"), Err(AuthError::BadSignature));
}

#[test]
fn the_support_crate_signs_as_the_gateway_does() {
    let secret = MerchantSecret::generate();
    for ts in [0, 1_700_000_000_000, now_ms()] {
        assert_eq!(
            auth_header("svc_test", secret.expose_secret(), ts, BODY),
            auth::sign("svc_test", &secret, ts, BODY)
        );
    }
    let client = RpcClient::new("http://127.0.0.1:1", "svc_test", secret.expose_secret());
    assert_eq!(client.sign_at(BODY, 42), auth::sign("svc_test", &secret, 42, BODY));
}

#[test]
fn both_clocks_are_unix_milliseconds() {
    let (ours, gateways) = (now_ms(), paysys_gateway::payments::now_ms());
    assert!((gateways - ours).abs() < 5_000, "{ours} vs {gateways}");
}
