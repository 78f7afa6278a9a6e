//! Identifiers the network hands out: acquirer references, issuer auth codes,
//! retrieval reference numbers, and the 3-D Secure transaction ids, CAVVs and form
//! nonces. Random, so they reveal nothing and never collide in practice; the database's
//! unique keys catch it if they ever do.
//!
//! No 3-D Secure id or value holds a run of 12 or more decimal digits, single dashes or
//! spaces between digits included ([`paysys_cardnum::has_card_length_digit_run`]): the
//! vault masks Luhn-valid digit runs in the answers it relays, and a masked id would be
//! useless.

use rand::Rng;

const LOWER_ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const UPPER_ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn random_chars(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())])).collect()
}

/// `acq_` and 24 characters of `[0-9a-z]` (124 random bits).
pub fn new_acquirer_ref() -> String {
    format!("acq_{}", random_chars(LOWER_ALNUM, 24))
}

/// The issuer's approval code (ISO 8583 field 38): six characters of `[0-9A-Z]`.
pub fn new_auth_code() -> String {
    random_chars(UPPER_ALNUM, 6)
}

/// Retrieval reference number (field 37), 12 digits in the usual `YDDDHH` + sequence
/// layout: last digit of the year, day of the year, hour (UTC), six random digits.
pub fn new_rrn(now: time::OffsetDateTime) -> String {
    let sequence: u32 = rand::thread_rng().gen_range(0..1_000_000);
    format!("{}{:03}{:02}{:06}", now.year().rem_euclid(10), now.ordinal(), now.hour(), sequence)
}

/// Draw `make()` until its result has no long digit run (a handful of draws at most:
/// for a UUID the chance of a redraw is well under 1 %).
fn without_long_digit_run(make: impl Fn() -> String) -> String {
    loop {
        let candidate = make();
        if !paysys_cardnum::has_card_length_digit_run(&candidate) {
            return candidate;
        }
    }
}

/// A random (version 4) UUID, lower-case: the DS and ACS transaction ids.
pub fn new_uuid() -> String {
    without_long_digit_run(|| {
        let mut b: [u8; 16] = rand::thread_rng().gen();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    })
}

/// A CAVV (authentication value): 20 random bytes, standard base64 (28 characters).
pub fn new_authentication_value() -> String {
    use base64::Engine as _;
    without_long_digit_run(|| {
        let b: [u8; 20] = rand::thread_rng().gen();
        base64::engine::general_purpose::STANDARD.encode(b)
    })
}

/// A one-time nonce (challenge forms, Content-Security-Policy script nonces): 16 random
/// bytes, base64url.
pub fn new_nonce() -> String {
    use base64::Engine as _;
    let b: [u8; 16] = rand::thread_rng().gen();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Whether `text` is a UUID in the 8-4-4-4-12 hexadecimal form (either case).
pub fn is_uuid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ds_ids_have_no_long_digit_runs() {
        for _ in 0..2_000 {
            let id = new_uuid();
            assert!(is_uuid(&id) && id.bytes().all(|b| !b.is_ascii_uppercase()), "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
            assert!(!paysys_cardnum::has_card_length_digit_run(&id), "{id}");
            let cavv = new_authentication_value();
            assert_eq!(cavv.len(), 28);
            assert!(!paysys_cardnum::has_card_length_digit_run(&cavv), "{cavv}");
        }
        assert!(!is_uuid("4000000000003014"));
        assert!(!is_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
        assert!(is_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
    }

    #[test]
    fn formats() {
        let r = new_acquirer_ref();
        assert!(r.starts_with("acq_") && r.len() == 28);
        let code = new_auth_code();
        assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        let rrn = new_rrn(time::macros::datetime!(2031-02-03 04:05 UTC));
        assert_eq!(rrn.len(), 12);
        assert!(rrn.starts_with("103404"), "{rrn}");
        assert!(rrn.bytes().all(|b| b.is_ascii_digit()));
    }
}
