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

#[cfg(test)]
mod tests {
    use super::*;

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
