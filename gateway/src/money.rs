//! Currencies and amount limits. Amounts are integers in ISO 4217 minor units; every
//! currency has a minimum and a maximum so that no sum the gateway forms (captured,
//! refunded) can overflow, and every amount fits the acquirer's 12 digits.

/// A currency the gateway accepts, with its ISO 4217 exponent and limits (minor units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    pub code: &'static str,
    /// ISO 4217 numeric code (3-D Secure messages carry this one).
    pub numeric: &'static str,
    /// ISO 4217 minor units: 2 for UZS (tiyin), 0 for JPY, 3 for KWD.
    pub exponent: u8,
    pub min_amount: i64,
    pub max_amount: i64,
}

/// Largest amount the acquirer accepts (ISO 8583: 12 digits).
pub const ACQUIRER_MAX_AMOUNT: i64 = 999_999_999_999;

/// Accepted currencies. Limits are chosen in major units and written in minor units.
pub const CURRENCIES: &[Currency] = &[
    Currency { code: "UZS", numeric: "860", exponent: 2, min_amount: 100, max_amount: 100_000_000_000 }, // 1 .. 1e9 so'm
    Currency { code: "USD", numeric: "840", exponent: 2, min_amount: 50, max_amount: 10_000_000 }, // 0.50 .. 100 000
    Currency { code: "EUR", numeric: "978", exponent: 2, min_amount: 50, max_amount: 10_000_000 },
    Currency { code: "GBP", numeric: "826", exponent: 2, min_amount: 30, max_amount: 10_000_000 },
    Currency { code: "CHF", numeric: "756", exponent: 2, min_amount: 50, max_amount: 10_000_000 },
    Currency { code: "RUB", numeric: "643", exponent: 2, min_amount: 100, max_amount: 1_000_000_000 },
    Currency { code: "KZT", numeric: "398", exponent: 2, min_amount: 100, max_amount: 5_000_000_000 },
    Currency { code: "KGS", numeric: "417", exponent: 2, min_amount: 100, max_amount: 1_000_000_000 },
    Currency { code: "TJS", numeric: "972", exponent: 2, min_amount: 100, max_amount: 100_000_000 },
    Currency { code: "TRY", numeric: "949", exponent: 2, min_amount: 100, max_amount: 300_000_000 },
    Currency { code: "CNY", numeric: "156", exponent: 2, min_amount: 100, max_amount: 70_000_000 },
    Currency { code: "AED", numeric: "784", exponent: 2, min_amount: 200, max_amount: 40_000_000 },
    Currency { code: "JPY", numeric: "392", exponent: 0, min_amount: 50, max_amount: 15_000_000 },
    Currency { code: "KRW", numeric: "410", exponent: 0, min_amount: 500, max_amount: 150_000_000 },
    Currency { code: "KWD", numeric: "414", exponent: 3, min_amount: 100, max_amount: 30_000_000 },
    Currency { code: "BHD", numeric: "048", exponent: 3, min_amount: 100, max_amount: 40_000_000 },
];

/// Why an amount or currency is refused (JSON-RPC −31001).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// Not one of [`CURRENCIES`].
    #[error("unsupported currency")]
    UnknownCurrency,
    /// Not a JSON integer (a fraction, a string, too large for 64 bits).
    #[error("amount must be an integer number of minor units")]
    NotAnInteger,
    /// Below the currency's minimum.
    #[error("amount below the minimum of {min} minor units for {currency}")]
    TooSmall { currency: &'static str, min: i64 },
    /// Above the currency's maximum.
    #[error("amount above the maximum of {max} minor units for {currency}")]
    TooLarge { currency: &'static str, max: i64 },
}

/// Look up an ISO 4217 alphabetic code (upper case, exact).
pub fn currency(code: &str) -> Result<&'static Currency, AmountError> {
    CURRENCIES.iter().find(|c| c.code == code).ok_or(AmountError::UnknownCurrency)
}

/// A payment amount from JSON: an integer within the currency's limits.
pub fn payment_amount(value: &serde_json::Value, currency: &Currency) -> Result<i64, AmountError> {
    let amount = json_integer(value)?;
    check_limits(amount, currency)
}

/// An amount within `currency`'s limits.
pub fn check_limits(amount: i64, currency: &Currency) -> Result<i64, AmountError> {
    if amount < currency.min_amount {
        return Err(AmountError::TooSmall { currency: currency.code, min: currency.min_amount });
    }
    if amount > currency.max_amount {
        return Err(AmountError::TooLarge { currency: currency.code, max: currency.max_amount });
    }
    Ok(amount)
}

/// A partial amount (capture, refund): a positive integer; the caller compares it with
/// what is left, which is itself within the currency's limits.
pub fn partial_amount(value: &serde_json::Value) -> Result<i64, AmountError> {
    let amount = json_integer(value)?;
    if amount < 1 {
        return Err(AmountError::TooSmall { currency: "", min: 1 });
    }
    Ok(amount)
}

fn json_integer(value: &serde_json::Value) -> Result<i64, AmountError> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().ok_or(AmountError::NotAnInteger),
        _ => Err(AmountError::NotAnInteger),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_limit_fits_the_acquirer_and_doubles_without_overflow() {
        for c in CURRENCIES {
            assert!(c.min_amount >= 1 && c.min_amount <= c.max_amount, "{}", c.code);
            assert!(c.max_amount <= ACQUIRER_MAX_AMOUNT, "{}", c.code);
            assert!(c.max_amount.checked_mul(2).is_some());
            assert_eq!(c.code.len(), 3);
        }
    }

    #[test]
    fn amounts_are_checked_per_currency() {
        let uzs = currency("UZS").unwrap();
        let jpy = currency("JPY").unwrap();
        assert_eq!(uzs.exponent, 2);
        assert_eq!(jpy.exponent, 0);
        assert_eq!(currency("KWD").unwrap().exponent, 3);
        assert_eq!(payment_amount(&json!(150_000), uzs), Ok(150_000));
        assert_eq!(payment_amount(&json!(99), uzs), Err(AmountError::TooSmall { currency: "UZS", min: 100 }));
        assert!(matches!(payment_amount(&json!(100_000_000_001_i64), uzs), Err(AmountError::TooLarge { .. })));
        assert!(matches!(payment_amount(&json!(15_000_001), jpy), Err(AmountError::TooLarge { .. })));
        assert_eq!(payment_amount(&json!(10.5), uzs), Err(AmountError::NotAnInteger));
        assert_eq!(payment_amount(&json!("1000"), uzs), Err(AmountError::NotAnInteger));
        assert_eq!(payment_amount(&json!(-5), uzs), Err(AmountError::TooSmall { currency: "UZS", min: 100 }));
        assert_eq!(payment_amount(&json!(u64::MAX), uzs), Err(AmountError::NotAnInteger));
        assert_eq!(payment_amount(&json!(1e30), uzs), Err(AmountError::NotAnInteger));
        assert_eq!(currency("uzs"), Err(AmountError::UnknownCurrency));
        assert_eq!(currency("XXX"), Err(AmountError::UnknownCurrency));
        assert_eq!(partial_amount(&json!(0)), Err(AmountError::TooSmall { currency: "", min: 1 }));
        assert_eq!(partial_amount(&json!(7)), Ok(7));
    }
}
