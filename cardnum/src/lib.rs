//! Card-number arithmetic: the Luhn (mod 10) check and check digit. Pure functions over
//! ASCII digits; one implementation for every crate that must recognise or produce a
//! card-number shape (the vault validating a PAN, the gateway and the relay spotting one
//! where it must not be, the sandbox's issuer, the benchmarks' random test cards).

#![forbid(unsafe_code)]

/// Luhn sum of `digits` (ASCII), doubling every second digit from the right when
/// `check_digit_present`; `None` if any byte is not a digit.
fn luhn_sum(digits: &[u8], check_digit_present: bool) -> Option<u32> {
    let first_doubled = usize::from(check_digit_present);
    digits.iter().rev().enumerate().try_fold(0u32, |sum, (i, &byte)| {
        let mut v = u32::from(byte.wrapping_sub(b'0'));
        if v > 9 {
            return None;
        }
        if i % 2 == first_doubled {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        Some(sum + v)
    })
}

/// Whether `digits` (ASCII) pass the Luhn check. Empty input or any non-digit: false.
pub fn luhn_valid(digits: &[u8]) -> bool {
    !digits.is_empty() && luhn_sum(digits, true).is_some_and(|sum| sum.is_multiple_of(10))
}

/// The digit (0–9) that, appended to `payload` (ASCII digits), makes it pass Luhn;
/// `None` if `payload` holds a non-digit.
pub fn luhn_check_digit(payload: &[u8]) -> Option<u8> {
    luhn_sum(payload, false).map(|sum| ((10 - sum % 10) % 10) as u8)
}

/// Shortest card number (ISO/IEC 7812): a digit run this long may be one.
pub const MIN_CARD_DIGITS: usize = 12;

/// The digit runs of `text` as byte ranges with their digit counts. A single space or
/// dash between two digits belongs to the run, the way card numbers are written
/// (`4242 4242 …`, `4242-4242-…`) and the way the vault's masking reads relayed answers.
fn digit_runs(text: &str) -> impl Iterator<Item = (std::ops::Range<usize>, usize)> + '_ {
    let b = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while b.get(i).is_some_and(|c| !c.is_ascii_digit()) {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let start = i;
        let mut digits = 0;
        loop {
            if b.get(i).is_some_and(u8::is_ascii_digit) {
                digits += 1;
                i += 1;
            } else if b.get(i).is_some_and(|c| matches!(c, b' ' | b'-')) && b.get(i + 1).is_some_and(u8::is_ascii_digit)
            {
                i += 1;
            } else {
                break;
            }
        }
        Some((start..i, digits))
    })
}

/// Whether `text` holds a run (see [`redact_digit_runs`]) of [`MIN_CARD_DIGITS`] or more
/// digits. An id meant to pass through a relay unmasked (a 3-D Secure transaction id, a
/// CAVV) must not.
pub fn has_card_length_digit_run(text: &str) -> bool {
    digit_runs(text).any(|(_, digits)| digits >= MIN_CARD_DIGITS)
}

/// `text` with every run of `min_digits` or more digits replaced by `[digits]`; a single
/// space or dash between two digits belongs to the run, so `4242 4242 4242 4242` goes
/// as a whole. For text that may echo client input (a parser's message) before it
/// reaches an answer or a log line. The separators are ASCII, so the cuts fall on
/// character boundaries.
pub fn redact_digit_runs(text: &str, min_digits: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (range, digits) in digit_runs(text) {
        if digits >= min_digits {
            out.push_str(text.get(copied..range.start).unwrap_or_default());
            out.push_str("[digits]");
            copied = range.end;
        }
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// Whether `text` holds a card number: 12–19 digits that pass the Luhn check, written
/// in one piece or in groups joined by single spaces or dashes.
pub fn contains_card_number(text: &str) -> bool {
    let is_card = |digits: &[u8]| (MIN_CARD_DIGITS..=19).contains(&digits.len()) && luhn_valid(digits);
    digit_runs(text).any(|(range, _)| {
        let run = text.as_bytes().get(range).unwrap_or_default();
        let joined: Vec<u8> = run.iter().copied().filter(u8::is_ascii_digit).collect();
        // The groups joined, and each group alone (a number followed by, say, a year).
        is_card(&joined) || run.split(|c| !c.is_ascii_digit()).any(is_card)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs_are_redacted_whole_with_their_separators() {
        assert_eq!(
            redact_digit_runs("invalid type: string \"4242 4242-4242 4242\", expected u8", 12),
            "invalid type: string \"[digits]\", expected u8"
        );
        assert_eq!(redact_digit_runs("line 12345, col 7", 6), "line 12345, col 7");
        assert_eq!(redact_digit_runs("x 123456 y 12 34 56", 6), "x [digits] y [digits]");
        assert_eq!(redact_digit_runs("a - 1234567 -", 6), "a - [digits] -", "a lone dash is no digit");
        assert_eq!(redact_digit_runs("1234  5678", 6), "1234  5678", "two spaces end a run");
        assert_eq!(redact_digit_runs("€ 4242424242424242 ü", 12), "€ [digits] ü");
        assert_eq!(redact_digit_runs("", 6), "");
    }

    #[test]
    fn card_numbers_are_found_in_one_piece_or_in_groups() {
        assert!(contains_card_number("pay 4242424242424242 now"));
        assert!(contains_card_number("pay 4242 4242 4242 4242 now"));
        assert!(contains_card_number("pay 4242-4242-4242-4242"));
        assert!(contains_card_number("4242424242424242 2030"), "a card number followed by a year");
        assert!(!contains_card_number("order 4242424242424241"), "fails Luhn");
        assert!(!contains_card_number("order 12345"));
    }

    #[test]
    fn card_length_runs_count_single_separators() {
        assert!(has_card_length_digit_run("ab123456789012cd"));
        assert!(has_card_length_digit_run("12345678-1234-4123"), "dashes join digit groups");
        assert!(has_card_length_digit_run("4242 4242 4242"));
        assert!(!has_card_length_digit_run("12345678901"));
        assert!(!has_card_length_digit_run("12345678-a234-4123"));
        assert!(!has_card_length_digit_run("123456--123456"), "a double separator ends the run");
        assert!(!has_card_length_digit_run("8a880dc0-d2d2-4067-bcb1-b08d1690b26e"));
    }

    #[test]
    fn known_numbers() {
        for good in ["4242424242424242", "5555555555554444", "378282246310005", "8600069195406311", "79927398713"] {
            assert!(luhn_valid(good.as_bytes()), "{good}");
        }
        for bad in ["4242424242424241", "79927398710", "", "4242x24242424242", "42424242 4242424"] {
            assert!(!luhn_valid(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn check_digit_completes_a_valid_number() {
        assert_eq!(luhn_check_digit(b"7992739871"), Some(3));
        assert_eq!(luhn_check_digit(b"424242424242424"), Some(2));
        assert_eq!(luhn_check_digit(b"42x"), None);
        for payload in ["4", "400000000000000", "123456789012345678"] {
            let d = luhn_check_digit(payload.as_bytes()).unwrap();
            let number = format!("{payload}{d}");
            assert!(luhn_valid(number.as_bytes()), "{number}");
        }
    }
}
