//! ISO 4217 currency codes. The acquirer API speaks alphabetic codes (`UZS`); 3-D Secure
//! messages carry numeric ones (`860`). The issuer's CAVV check compares the two through
//! this table, and the challenge page shows the alphabetic code when it knows it.

/// `(alphabetic, numeric)` of the currencies the sandbox knows.
/// An authorization in a currency missing here cannot match a 3-D Secure authentication.
const CURRENCIES: &[(&str, &str)] = &[
    ("AED", "784"),
    ("AMD", "051"),
    ("AUD", "036"),
    ("AZN", "944"),
    ("BYN", "933"),
    ("CAD", "124"),
    ("CHF", "756"),
    ("CNY", "156"),
    ("CZK", "203"),
    ("EUR", "978"),
    ("GBP", "826"),
    ("GEL", "981"),
    ("HKD", "344"),
    ("INR", "356"),
    ("JPY", "392"),
    ("KGS", "417"),
    ("KRW", "410"),
    ("KZT", "398"),
    ("PLN", "985"),
    ("RUB", "643"),
    ("SEK", "752"),
    ("SGD", "702"),
    ("TJS", "972"),
    ("TMT", "934"),
    ("TRY", "949"),
    ("UAH", "980"),
    ("USD", "840"),
    ("UZS", "860"),
];

/// The numeric code of an alphabetic one (`UZS` → `860`).
pub fn numeric_code(alphabetic: &str) -> Option<&'static str> {
    CURRENCIES.iter().find(|(a, _)| *a == alphabetic).map(|(_, n)| *n)
}

/// The alphabetic code of a numeric one (`860` → `UZS`).
pub fn alphabetic_code(numeric: &str) -> Option<&'static str> {
    CURRENCIES.iter().find(|(_, n)| *n == numeric).map(|(a, _)| *a)
}

/// `amount` minor units with `exponent` decimals, as text: `150000`, 2 → `1500.00`.
pub fn format_amount(amount: i64, exponent: u32) -> String {
    if exponent == 0 {
        return amount.to_string();
    }
    let Some(scale) = 10i64.checked_pow(exponent) else {
        return amount.to_string();
    };
    let width = usize::try_from(exponent).unwrap_or(0);
    format!("{}.{:0width$}", amount / scale, amount % scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_both_ways() {
        assert_eq!(numeric_code("UZS"), Some("860"));
        assert_eq!(numeric_code("USD"), Some("840"));
        assert_eq!(numeric_code("XXX"), None);
        assert_eq!(alphabetic_code("978"), Some("EUR"));
        assert_eq!(alphabetic_code("999"), None);
        for (a, n) in CURRENCIES {
            assert_eq!(a.len(), 3);
            assert!(n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(CURRENCIES.iter().filter(|(x, y)| x == a || y == n).count(), 1, "{a} {n}");
        }
    }

    #[test]
    fn amounts_are_formatted_with_their_exponent() {
        assert_eq!(format_amount(150_000, 2), "1500.00");
        assert_eq!(format_amount(5, 2), "0.05");
        assert_eq!(format_amount(1234, 0), "1234");
        assert_eq!(format_amount(1234, 3), "1.234");
    }
}
