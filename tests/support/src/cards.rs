//! The sandbox card network's documented test cards (see `paysys-sandbox`'s
//! `cards.rs` and the README's test-card table). Each is a valid Luhn number; none is a
//! real card.

/// Visa, approved (and authenticated frictionless by 3-D Secure, like any enrolled card).
pub const VISA: &str = "4242424242424242";
/// Mastercard, approved.
pub const MASTERCARD: &str = "5555555555554444";
/// American Express: 15 digits, a four-digit CVC (the vault's tests tokenize it).
pub const AMEX: &str = "378282246310005";
/// Approved up to a limit: larger amounts are declined `51`.
pub const LIMITED: &str = "4000000000009995";
/// Answers only after the sandbox's `--auth-delay-ms` (an acquirer timeout).
pub const SLOW: &str = "4000000000000259";
/// Cards declined with a fixed response code: (card number, code).
pub const DECLINES: [(&str, &str); 5] = [
    ("4000000000000002", "05"),
    ("4000000000009979", "43"),
    ("4000000000000069", "54"),
    ("4000000000000127", "N7"),
    ("4000000000000119", "96"),
];
/// UzCard: not in an enrolled 3-D Secure range of the sandbox's directory server.
pub const UZCARD: &str = "8600069195406311";

/// 3-D Secure: frictionless, authenticated (`Y`).
pub const FRICTIONLESS: &str = "4000000000003014";
/// 3-D Secure: attempted (`A`).
pub const ATTEMPTED: &str = "4000000000003022";
/// 3-D Secure: challenged (`C`) by the ACS.
pub const CHALLENGE: &str = "4000000000003220";
/// 3-D Secure on Mastercard: challenged.
pub const MC_CHALLENGE: &str = "5200000000003001";
/// 3-D Secure on Mastercard: frictionless.
pub const MC_FRICTIONLESS: &str = "5200000000003019";
/// 3-D Secure: not authenticated (`N`).
pub const NOT_AUTHENTICATED: &str = "4000000000003030";
/// 3-D Secure: rejected (`R`).
pub const REJECTED: &str = "4000000000003048";
/// 3-D Secure: the ACS answers `U` (authentication could not be performed).
pub const UNAVAILABLE: &str = "4000000000003055";
/// 3-D Secure: the ACS answers too late.
pub const ACS_TIMEOUT: &str = "4000000000003063";
