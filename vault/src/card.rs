//! Card data validation: PAN digits, length, Luhn, brand by BIN range, expiry, CVC.
//!
//! Pure functions. Every failure has its own stable error code (see [`CardError::code`])
//! and none of them ever carries the card number or CVC in its message.

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// Card brands the vault accepts, recognized by BIN range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brand {
    Visa,
    Mastercard,
    Amex,
    UnionPay,
    Jcb,
    Mir,
    Uzcard,
    Humo,
}

impl Brand {
    /// Stable lowercase name used in API responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Brand::Visa => "visa",
            Brand::Mastercard => "mastercard",
            Brand::Amex => "amex",
            Brand::UnionPay => "unionpay",
            Brand::Jcb => "jcb",
            Brand::Mir => "mir",
            Brand::Uzcard => "uzcard",
            Brand::Humo => "humo",
        }
    }

    /// CVC length by brand: American Express uses a 4-digit CID, the others 3 digits.
    pub fn cvc_len(self) -> usize {
        match self {
            Brand::Amex => 4,
            _ => 3,
        }
    }

    /// Brand from the leading digits, or `None` if no supported range matches.
    /// Narrow domestic ranges are checked before the broad international ones.
    fn from_digits(d: &[u8]) -> Option<Brand> {
        let prefix = |n: usize| -> u32 { d.iter().take(n).fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0')) };
        let p2 = prefix(2);
        let p4 = prefix(4);
        match () {
            _ if p4 == 8600 => Some(Brand::Uzcard),
            _ if p4 == 9860 => Some(Brand::Humo),
            _ if (2200..=2204).contains(&p4) => Some(Brand::Mir),
            _ if (2221..=2720).contains(&p4) || (51..=55).contains(&p2) => Some(Brand::Mastercard),
            _ if p2 == 34 || p2 == 37 => Some(Brand::Amex),
            _ if (3528..=3589).contains(&p4) => Some(Brand::Jcb),
            _ if p2 == 62 => Some(Brand::UnionPay),
            _ if d.first() == Some(&b'4') => Some(Brand::Visa),
            _ => None,
        }
    }
}

/// Why card data was refused. Messages are fixed strings: no card data inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    #[error("the card number may contain only digits, spaces and dashes")]
    PanCharacters,
    #[error("the card number must have 12 to 19 digits")]
    PanLength,
    #[error("the card number fails the Luhn check")]
    PanLuhn,
    #[error("the card brand is not supported")]
    UnsupportedBrand,
    #[error("exp_month must be between 1 and 12")]
    ExpMonth,
    #[error("exp_year must be a four-digit year")]
    ExpYear,
    #[error("the card has expired")]
    Expired,
    #[error("the CVC must be 3 digits (4 for American Express)")]
    Cvc,
    #[error("cardholder_name must be 1 to 64 printable characters without digits runs")]
    HolderName,
}

impl CardError {
    /// Stable error code for API responses.
    pub fn code(self) -> &'static str {
        match self {
            CardError::PanCharacters => "pan_invalid_characters",
            CardError::PanLength => "pan_invalid_length",
            CardError::PanLuhn => "pan_luhn_failed",
            CardError::UnsupportedBrand => "pan_unsupported_brand",
            CardError::ExpMonth => "exp_month_invalid",
            CardError::ExpYear => "exp_year_invalid",
            CardError::Expired => "card_expired",
            CardError::Cvc => "cvc_invalid",
            CardError::HolderName => "cardholder_name_invalid",
        }
    }
}

/// A validated card number: digits only, zeroized on drop, never `Debug`-printed.
pub struct Pan {
    digits: Zeroizing<String>,
    brand: Brand,
}

impl std::fmt::Debug for Pan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pan({}, [REDACTED])", self.brand.as_str())
    }
}

impl Pan {
    /// Strip spaces and dashes, then check characters, length, Luhn and brand.
    pub fn parse(input: &SecretString) -> Result<Pan, CardError> {
        let raw = input.expose_secret();
        let mut digits = Zeroizing::new(String::with_capacity(19));
        for c in raw.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' => {}
                _ => return Err(CardError::PanCharacters),
            }
        }
        if !(12..=19).contains(&digits.len()) {
            return Err(CardError::PanLength);
        }
        if !luhn_valid(digits.as_bytes()) {
            return Err(CardError::PanLuhn);
        }
        let brand = Brand::from_digits(digits.as_bytes()).ok_or(CardError::UnsupportedBrand)?;
        Ok(Pan { digits, brand })
    }

    pub fn brand(&self) -> Brand {
        self.brand
    }

    /// The first six digits (the BIN / IIN), which PCI DSS allows to be shown.
    pub fn bin(&self) -> &str {
        &self.digits[..6]
    }

    pub fn last4(&self) -> &str {
        &self.digits[self.digits.len() - 4..]
    }

    pub fn len(&self) -> usize {
        self.digits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digits.is_empty()
    }

    /// The digits. Call sites are the few places that seal or fingerprint the card.
    pub fn expose_digits(&self) -> &str {
        &self.digits
    }
}

pub use paysys_cardnum::luhn_valid;

/// Check the expiry month and year against `today` (year, month). A card is valid
/// through the last day of its expiry month.
pub fn check_expiry(exp_month: i64, exp_year: i64, today: (i32, u8)) -> Result<(u8, i32), CardError> {
    let month = u8::try_from(exp_month).ok().filter(|m| (1..=12).contains(m)).ok_or(CardError::ExpMonth)?;
    let year = i32::try_from(exp_year).ok().filter(|y| (2000..=2099).contains(y)).ok_or(CardError::ExpYear)?;
    if (year, month) < today {
        return Err(CardError::Expired);
    }
    Ok((month, year))
}

/// Check a CVC's length and characters for the brand.
pub fn check_cvc(cvc: &SecretString, brand: Brand) -> Result<(), CardError> {
    let c = cvc.expose_secret();
    if c.len() == brand.cvc_len() && c.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(CardError::Cvc)
    }
}

/// Cardholder names are short printable text; a long digit run is refused so a PAN
/// pasted into the wrong field is not stored as metadata anywhere.
pub fn check_holder_name(name: &SecretString) -> Result<(), CardError> {
    let n = name.expose_secret();
    let len = n.chars().count();
    let printable = n.chars().all(|c| !c.is_control());
    let digits = n.chars().filter(char::is_ascii_digit).count();
    if (1..=64).contains(&len) && printable && digits < 6 {
        Ok(())
    } else {
        Err(CardError::HolderName)
    }
}

/// Merchant ids: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn merchant_id_valid(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Replace every run of 12 or more digits (single spaces and dashes allowed between
/// them) with `[digits]` ([`paysys_cardnum::redact_digit_runs`]). Applied to any text
/// that may echo client input (for example a JSON parser's message) before it reaches a
/// response or a log line.
pub fn redact_digit_runs(text: &str) -> String {
    paysys_cardnum::redact_digit_runs(text, REDACT_DIGIT_RUNS_FROM)
}

/// The shortest run of digits [`redact_digit_runs`] cuts.
pub const REDACT_DIGIT_RUNS_FROM: usize = 12;

/// Mask every digit run in `text` that could be a card number to BIN + last four
/// (`424242******4242`), keeping everything else as it was:
///
/// * every occurrence of `known_pan` (the card being relayed), even inside a longer run
///   of digits or split by single spaces or dashes;
/// * any 12–19 digits passing Luhn, written together or in groups separated by single
///   spaces or dashes.
///
/// Over-masking (an unlucky 12-digit reference that passes Luhn) is the price of never
/// letting a card number through.
pub fn mask_card_numbers(text: &str, known_pan: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // The run: digits with single separators between them. `positions` are the
        // indices in `chars` of its digits; `groups` the digit ranges between separators.
        let mut positions = Vec::new();
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut group_start = 0;
        let mut j = i;
        while j < chars.len() {
            if chars[j].is_ascii_digit() {
                positions.push(j);
                j += 1;
            } else if matches!(chars[j], ' ' | '-') && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
                groups.push((group_start, positions.len()));
                group_start = positions.len();
                j += 1;
            } else {
                break;
            }
        }
        groups.push((group_start, positions.len()));
        let end = positions.last().map_or(i + 1, |p| p + 1);
        let digits: Zeroizing<String> = Zeroizing::new(positions.iter().map(|&p| chars[p]).collect());
        let mut masked = vec![false; positions.len()];
        let mut mask_span = |from: usize, to: usize| {
            for m in masked.iter_mut().take(to.saturating_sub(4)).skip(from + 6) {
                *m = true;
            }
        };
        if !known_pan.is_empty() {
            let mut from = 0;
            while let Some(found) = digits.get(from..).and_then(|rest| rest.find(known_pan)) {
                let start = from + found;
                mask_span(start, start + known_pan.len());
                from = start + 1;
            }
        }
        for (g, &(start, _)) in groups.iter().enumerate() {
            for &(_, stop) in &groups[g..] {
                let len = stop - start;
                if len > 19 {
                    break;
                }
                if len >= 12 && digits.get(start..stop).is_some_and(|d| luhn_valid(d.as_bytes())) {
                    mask_span(start, stop);
                }
            }
        }
        let mut next_digit = 0;
        for (k, c) in chars.iter().enumerate().take(end).skip(i) {
            if positions.get(next_digit) == Some(&k) {
                out.push(if masked[next_digit] { '*' } else { *c });
                next_digit += 1;
            } else {
                out.push(*c);
            }
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pan(s: &str) -> Result<Pan, CardError> {
        Pan::parse(&SecretString::from(s.to_owned()))
    }

    #[test]
    fn brands_by_bin() {
        let cases = [
            ("4242424242424242", Brand::Visa),
            ("5555555555554444", Brand::Mastercard),
            ("2223003122003222", Brand::Mastercard),
            ("378282246310005", Brand::Amex),
            ("6200000000000005", Brand::UnionPay),
            ("3530111333300000", Brand::Jcb),
            ("2200000000000004", Brand::Mir),
            ("8600069195406311", Brand::Uzcard),
            ("9860000000000018", Brand::Humo),
        ];
        for (number, brand) in cases {
            assert_eq!(pan(number).map(|p| p.brand()), Ok(brand), "{number}");
        }
    }

    #[test]
    fn each_failure_has_its_code() {
        assert_eq!(pan("4242 4242 4242 424x").map(|_| ()), Err(CardError::PanCharacters));
        assert_eq!(pan("42424242424").map(|_| ()), Err(CardError::PanLength));
        assert_eq!(pan("42424242424242424242").map(|_| ()), Err(CardError::PanLength));
        assert_eq!(pan("4242424242424241").map(|_| ()), Err(CardError::PanLuhn));
        assert_eq!(pan("1234567812345670").map(|_| ()), Err(CardError::UnsupportedBrand));
        assert!(pan("4242-4242-4242-4242").is_ok());
        assert_eq!(check_expiry(13, 2030, (2026, 11)), Err(CardError::ExpMonth));
        assert_eq!(check_expiry(0, 2030, (2026, 11)), Err(CardError::ExpMonth));
        assert_eq!(check_expiry(10, 2026, (2026, 11)), Err(CardError::Expired));
        assert_eq!(check_expiry(11, 2026, (2026, 11)), Ok((11, 2026)));
        assert_eq!(check_expiry(1, 26, (2026, 11)), Err(CardError::ExpYear));
        let visa = Brand::Visa;
        assert!(check_cvc(&SecretString::from("123".to_owned()), visa).is_ok());
        assert_eq!(check_cvc(&SecretString::from("1234".to_owned()), visa), Err(CardError::Cvc));
        assert!(check_cvc(&SecretString::from("1234".to_owned()), Brand::Amex).is_ok());
        assert_eq!(check_cvc(&SecretString::from("12a".to_owned()), visa), Err(CardError::Cvc));
        assert!(merchant_id_valid("m_123"));
        assert!(!merchant_id_valid("m 123"));
        assert!(!merchant_id_valid(""));
    }

    #[test]
    fn bin_and_last4_and_debug() {
        let p = pan("4242 4242 4242 4242").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(p.bin(), "424242");
        assert_eq!(p.last4(), "4242");
        assert!(!format!("{p:?}").contains("4242"));
    }

    #[test]
    fn card_numbers_are_masked_to_bin_and_last4() {
        let known = "4000000000000127";
        let cases = [
            ("card 4242424242424242 ok", "card 424242******4242 ok"),
            ("4242 4242 4242 4242", "4242 42** **** 4242"),
            ("5555-5555-5555-4444.", "5555-55**-****-4444."),
            ("x4000000000000127y", "x400000******0127y"),
            ("004000000000000127", "004000********0127"),
            ("ref 4000000000000128 and 12345", "ref 4000000000000128 and 12345"),
            ("amount 150000 4242424242424242", "amount 150000 424242******4242"),
            ("2025-05-14T12:00:00Z", "2025-05-14T12:00:00Z"),
            ("", ""),
        ];
        for (text, want) in cases {
            assert_eq!(mask_card_numbers(text, known), want, "{text}");
        }
        assert_eq!(mask_card_numbers("4000000000000128", ""), "4000000000000128", "fails Luhn, not the known card");
    }

    #[test]
    fn digit_runs_are_redacted() {
        assert_eq!(
            redact_digit_runs("invalid type: string \"4242 4242-4242 4242\", expected u8 at line 1 column 12"),
            "invalid type: string \"[digits]\", expected u8 at line 1 column 12"
        );
        assert_eq!(redact_digit_runs("line 12345"), "line 12345");
    }
}
