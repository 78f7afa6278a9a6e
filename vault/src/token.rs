//! Token generation. Tokens come from the OS CSPRNG and are never derived from the
//! card number, so a token reveals nothing a database thief could brute-force.

use crate::card::{luhn_valid, Pan};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Token formats a merchant may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFormat {
    /// `tok_` + 24 base62 characters (≈143 bits).
    Opaque,
    /// Same length as the PAN, first 6 and last 4 kept, middle random, failing Luhn
    /// so it can never be mistaken for a card number.
    BinLast4,
}

const OPAQUE_PREFIX: &str = "tok_";
const OPAQUE_RANDOM_LEN: usize = 24;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A fresh random token of `format` for `pan`.
pub fn generate_token(format: TokenFormat, pan: &Pan) -> String {
    match format {
        TokenFormat::Opaque => generate_opaque(),
        TokenFormat::BinLast4 => generate_bin_last4(pan),
    }
}

fn generate_opaque() -> String {
    let mut symbols = Symbols::new();
    let mut token = String::with_capacity(OPAQUE_PREFIX.len() + OPAQUE_RANDOM_LEN);
    token.push_str(OPAQUE_PREFIX);
    for _ in 0..OPAQUE_RANDOM_LEN {
        token.push(char::from(BASE62[usize::from(symbols.draw(BASE62.len() as u8))]));
    }
    token
}

fn generate_bin_last4(pan: &Pan) -> String {
    let mut symbols = Symbols::new();
    let middle_len = pan.len() - 10;
    loop {
        let mut token = String::with_capacity(pan.len());
        token.push_str(pan.bin());
        for _ in 0..middle_len {
            token.push(char::from(b'0' + symbols.draw(10)));
        }
        token.push_str(pan.last4());
        // Draw again rather than patch a digit, so the middle stays uniform over
        // all Luhn-failing values (about 9 in 10 draws qualify).
        if !luhn_valid(token.as_bytes()) && token != pan.expose_digits() {
            return token;
        }
    }
}

/// Uniform random symbols from the OS CSPRNG, read [`Symbols::BATCH`] bytes at a time
/// rather than a read (a `getrandom` system call) per symbol — an opaque token drew
/// 24 of them. A byte below the largest multiple of the alphabet's size gives the
/// symbol `byte % size`; the others are dropped, so every symbol stays equally likely.
struct Symbols {
    bytes: Zeroizing<[u8; Symbols::BATCH]>,
    next: usize,
}

impl Symbols {
    /// Bytes per read: a 24-character token needs 24 and drops one byte in 32.
    const BATCH: usize = 64;

    fn new() -> Symbols {
        Symbols { bytes: Zeroizing::new([0; Symbols::BATCH]), next: Symbols::BATCH }
    }

    /// A symbol of an alphabet of `size` (1 to 255): a number below `size`.
    fn draw(&mut self, size: u8) -> u8 {
        let size = size.max(1);
        let accepted = 256 - 256 % u16::from(size);
        loop {
            if self.next == Symbols::BATCH {
                OsRng.fill_bytes(&mut self.bytes[..]);
                self.next = 0;
            }
            let byte = self.bytes[self.next];
            self.next += 1;
            if u16::from(byte) < accepted {
                return byte % size;
            }
        }
    }
}

/// Whether `s` has the shape of a token this vault could have issued. Used to
/// refuse obviously malformed path parameters before touching the database.
pub fn looks_like_token(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix(OPAQUE_PREFIX) {
        rest.len() >= 22 && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    } else {
        (12..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !luhn_valid(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn pan(s: &str) -> Pan {
        Pan::parse(&SecretString::from(s.to_owned())).unwrap()
    }

    #[test]
    fn opaque_tokens_are_prefixed_base62_and_distinct() {
        let p = pan("4242424242424242");
        let a = generate_token(TokenFormat::Opaque, &p);
        let b = generate_token(TokenFormat::Opaque, &p);
        assert!(a.starts_with("tok_") && a.len() == 28);
        assert!(a[4..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert!(looks_like_token(&a));
    }

    #[test]
    fn bin_last4_tokens_keep_bin_and_last4_and_fail_luhn() {
        for number in ["4242424242424242", "378282246310005", "6200000000000005124"] {
            let p = pan(number);
            for _ in 0..200 {
                let t = generate_token(TokenFormat::BinLast4, &p);
                assert_eq!(t.len(), number.len());
                assert_eq!(&t[..6], &number[..6]);
                assert_eq!(&t[t.len() - 4..], &number[number.len() - 4..]);
                assert!(!luhn_valid(t.as_bytes()));
                assert!(looks_like_token(&t));
            }
        }
    }

    #[test]
    fn symbols_are_uniform_over_the_alphabet() {
        let mut symbols = Symbols::new();
        let mut counts = [0u32; 62];
        for _ in 0..62_000 {
            counts[usize::from(symbols.draw(62))] += 1;
        }
        // 1,000 expected per symbol (standard deviation about 31). `byte % 62` without
        // dropping the top bytes would give symbols 0 to 7 five bytes in 256 (about 1,211
        // each); here every count stays within 150 of 1,000.
        assert!(counts.iter().all(|&n| (850..=1150).contains(&n)), "{counts:?}");
        assert!((0..1000).all(|_| symbols.draw(10) < 10));
    }

    #[test]
    fn a_card_number_does_not_look_like_a_token() {
        assert!(!looks_like_token("4242424242424242"));
        assert!(!looks_like_token("tok_short"));
        assert!(!looks_like_token("../etc/passwd"));
    }
}
