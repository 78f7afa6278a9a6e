//! Identifiers the gateway hands out, and the shape checks of identifiers it receives.
//! Random (OS CSPRNG), so they reveal nothing and do not collide in practice; unique
//! keys in the database catch it if they ever do.

use rand::rngs::OsRng;
use rand::Rng;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LOWER_ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn random_chars(alphabet: &[u8], len: usize) -> String {
    let mut rng = OsRng;
    (0..len).map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())])).collect()
}

/// A payment's id, also the reference the acquirer knows it by: `tx_` + 24 base62.
pub fn new_transaction_id() -> String {
    format!("tx_{}", random_chars(BASE62, 24))
}

/// A refund's id, also the acquirer's `refund_reference`: `rf_` + 24 base62.
pub fn new_refund_id() -> String {
    format!("rf_{}", random_chars(BASE62, 24))
}

/// A checkout's id: `chk_` + 24 base62. Unguessable: the hosted page's URL, which
/// carries it, is a bearer link.
pub fn new_checkout_id() -> String {
    format!("chk_{}", random_chars(BASE62, 24))
}

/// A checkout attempt's id: `att_` + 24 base62.
pub fn new_attempt_id() -> String {
    format!("att_{}", random_chars(BASE62, 24))
}

/// Whether `s` has the shape of a checkout id (before it is looked up).
pub fn looks_like_checkout_id(s: &str) -> bool {
    s.strip_prefix("chk_").is_some_and(|rest| rest.len() == 24 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A merchant's public API identity: `svc_` + 20 lower-case alphanumerics (no `-`, which
/// separates the fields of the Auth header).
pub fn new_service_id() -> String {
    format!("svc_{}", random_chars(LOWER_ALNUM, 20))
}

/// A merchant id as the vault knows merchants: `m_` + 16 lower-case alphanumerics.
pub fn new_merchant_id() -> String {
    format!("m_{}", random_chars(LOWER_ALNUM, 16))
}

/// The vault's merchant-id rule: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn merchant_id_valid(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A merchant's own ids (`partner_trans_id`, `partner_refund_id`): 1–64 printable ASCII
/// characters without spaces.
pub fn partner_id_valid(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `s` has the shape of a vault token: `tok_` + 22–64 base62, or a
/// format-preserving token of 12–19 digits that fails the Luhn check. A string that
/// passes Luhn could be a card number; it is refused without being echoed or logged.
pub fn looks_like_token(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix("tok_") {
        (22..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    } else {
        (12..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !luhn_valid(s.as_bytes())
    }
}

pub use paysys_cardnum::luhn_valid;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let tx = new_transaction_id();
        assert!(tx.starts_with("tx_") && tx.len() == 27);
        assert_ne!(tx, new_transaction_id());
        assert!(new_refund_id().starts_with("rf_"));
        let svc = new_service_id();
        assert!(svc.starts_with("svc_") && !svc.contains('-'));
        let m = new_merchant_id();
        assert!(merchant_id_valid(&m) && m.starts_with("m_"));
        assert!(!merchant_id_valid("m 1") && !merchant_id_valid(""));
        assert!(partner_id_valid("order-17/2") && !partner_id_valid("a b") && !partner_id_valid(""));
    }

    #[test]
    fn tokens_and_card_numbers() {
        assert!(looks_like_token("tok_0123456789abcdefABCDEFgh"));
        assert!(!looks_like_token("tok_short"));
        assert!(!looks_like_token("4242424242424242"), "a Luhn-valid number is a card number, not a token");
        assert!(looks_like_token("4242420000004241"));
        assert!(luhn_valid(b"4242424242424242"));
        assert!(!luhn_valid(b"4242424242424241"));
    }
}
