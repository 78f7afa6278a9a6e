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

/// Whether `text` holds [`MIN_CARD_DIGITS`] or more digits in a row, counting a single
/// space or dash between two digits as part of the run (`4242 4242 …`, `4242-4242-…`),
/// the way the vault's masking looks for card numbers in relayed answers. An id meant
/// to pass through a relay unmasked (a 3-D Secure transaction id, a CAVV) must not.
pub fn has_card_length_digit_run(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_digit() {
            run += 1;
            if run >= MIN_CARD_DIGITS {
                return true;
            }
        } else if !(matches!(b, b' ' | b'-') && run > 0 && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            run = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

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
