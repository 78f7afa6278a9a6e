//! Identifiers the network hands out: acquirer references, issuer auth codes and
//! retrieval reference numbers. Random, so they reveal nothing and never collide in
//! practice; the database's unique keys catch it if they ever do.

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

#[cfg(test)]
mod tests {
    use super::*;

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
