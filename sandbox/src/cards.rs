//! Card numbers as the network sees them: the [`CardNumber`] secret wrapper, Luhn,
//! the masked form that logs and the ledger use, the balance key, expiry, and the
//! documented test-card table ([`TEST_CARDS`], mirrored in `sandbox/README.md`) with each
//! card's issuer outcome and 3-D Secure outcome.
//!
//! The sandbox plays the card network, so it legitimately receives full card numbers;
//! it still never writes one down: the database keys balances and 3-D Secure
//! authentications by a SHA-256 digest and keeps only the first six and last four digits.

use crate::issuer::DeclineCode;
use std::fmt;
use zeroize::Zeroizing;

/// Balance of every approving card, per currency, in minor units: large enough that
/// benchmarks never run out, small enough that sums of amounts cannot overflow `i64`.
pub const LARGE_BALANCE: i64 = 100_000_000_000_000;

/// Balance of the limited-funds card (4000000000009995) in every currency.
pub const LIMITED_BALANCE: i64 = 1_000;

/// How the issuer treats a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBehavior {
    /// Approves while the balance allows; starts with this balance in every currency.
    Approve { balance: i64 },
    /// Declines every authorization with this code.
    Decline(DeclineCode),
    /// Approves (large balance), but the answer is sent only after the configured delay
    /// (longer than the gateway's timeout), so the outcome must be found by inquiry.
    ApproveAfterDelay,
}

/// How the 3-D Secure ACS answers an AReq for a card (in an enrolled range, not expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreeDsBehavior {
    /// `Y`: authenticated without a challenge (ECI and CAVV).
    Frictionless,
    /// `A`: attempts processing (ECI and CAVV).
    Attempted,
    /// `C`: a challenge; the code `123456` ends `Y`, anything else `N` reason `01`.
    Challenge,
    /// `N` reason `01` (card authentication failed).
    NotAuthenticated,
    /// `R` reason `11` (suspected fraud).
    Rejected,
    /// `U` reason `08` (no card record).
    Unavailable,
    /// Answered only after `--auth-delay-ms`, then `U` reason `14` (transaction timed out
    /// at the ACS): longer than the gateway waits.
    AcsTimeout,
}

/// One row of the test-card table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCard {
    pub number: &'static str,
    pub brand: &'static str,
    /// What the issuer does with an authorization.
    pub behavior: CardBehavior,
    /// What the 3-D Secure ACS answers (when the card's range is enrolled).
    pub three_ds: ThreeDsBehavior,
}

const fn approve(number: &'static str, brand: &'static str) -> TestCard {
    TestCard {
        number,
        brand,
        behavior: CardBehavior::Approve { balance: LARGE_BALANCE },
        three_ds: ThreeDsBehavior::Frictionless,
    }
}

const fn decline(number: &'static str, code: DeclineCode) -> TestCard {
    TestCard { number, brand: "visa", behavior: CardBehavior::Decline(code), three_ds: ThreeDsBehavior::Frictionless }
}

/// A 3-D Secure test card: the issuer approves it (large balance); the ACS answers `three_ds`.
const fn authenticates(number: &'static str, brand: &'static str, three_ds: ThreeDsBehavior) -> TestCard {
    TestCard { number, brand, behavior: CardBehavior::Approve { balance: LARGE_BALANCE }, three_ds }
}

/// The documented test cards (any future expiry, any CVC unless noted), with their
/// issuer outcome and their 3-D Secure outcome.
pub const TEST_CARDS: &[TestCard] = &[
    approve("4242424242424242", "visa"),
    approve("5555555555554444", "mastercard"),
    approve("8600069195406311", "uzcard"),
    approve("9860000000000018", "humo"),
    TestCard {
        number: "4000000000009995",
        brand: "visa",
        behavior: CardBehavior::Approve { balance: LIMITED_BALANCE },
        three_ds: ThreeDsBehavior::Frictionless,
    },
    decline("4000000000000002", DeclineCode::DoNotHonor),
    decline("4000000000009979", DeclineCode::StolenCard),
    decline("4000000000000069", DeclineCode::ExpiredCard),
    decline("4000000000000127", DeclineCode::CvcMismatch),
    decline("4000000000000119", DeclineCode::SystemMalfunction),
    TestCard {
        number: "4000000000000259",
        brand: "visa",
        behavior: CardBehavior::ApproveAfterDelay,
        three_ds: ThreeDsBehavior::Frictionless,
    },
    authenticates("4000000000003014", "visa", ThreeDsBehavior::Frictionless),
    authenticates("4000000000003022", "visa", ThreeDsBehavior::Attempted),
    authenticates("4000000000003220", "visa", ThreeDsBehavior::Challenge),
    authenticates("5200000000003001", "mastercard", ThreeDsBehavior::Challenge),
    authenticates("5200000000003019", "mastercard", ThreeDsBehavior::Frictionless),
    authenticates("4000000000003030", "visa", ThreeDsBehavior::NotAuthenticated),
    authenticates("4000000000003048", "visa", ThreeDsBehavior::Rejected),
    authenticates("4000000000003055", "visa", ThreeDsBehavior::Unavailable),
    authenticates("4000000000003063", "visa", ThreeDsBehavior::AcsTimeout),
];

/// A card number as received. Read it with [`expose_secret`](Self::expose_secret);
/// `Debug` prints only the masked form; the buffer is zeroed on drop; not `Clone`.
pub struct CardNumber(Zeroizing<String>);

impl CardNumber {
    /// Wrap the number as sent; spaces and dashes are dropped, nothing else is changed.
    pub fn new(raw: &str) -> Self {
        CardNumber(Zeroizing::new(raw.chars().filter(|c| *c != ' ' && *c != '-').collect()))
    }

    /// The digits, for the Luhn check, the digest and the table lookup only.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// 12 to 19 ASCII digits passing the Luhn check.
    pub fn is_valid(&self) -> bool {
        let digits = self.0.as_bytes();
        (12..=19).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) && paysys_cardnum::luhn_valid(digits)
    }

    /// First six and last four digits with the middle starred (`424242******4242`), or
    /// `invalid` for anything that is not 12–19 digits: what logs and the ledger show.
    pub fn masked(&self) -> String {
        let digits = self.0.as_bytes();
        if !(12..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
            return "invalid".to_owned();
        }
        let (head, rest) = self.0.split_at(6);
        let (middle, tail) = rest.split_at(rest.len() - 4);
        format!("{head}{}{tail}", "*".repeat(middle.len()))
    }

    /// The key balances are stored under: SHA-256 of the digits, hex. The sandbox only
    /// ever holds test numbers, and no card number is written to its database.
    pub fn balance_key(&self) -> String {
        let digest =
            ring::digest::digest(&ring::digest::SHA256, format!("paysys-sandbox/card/{}", &*self.0).as_bytes());
        hex::encode(digest.as_ref())
    }

    /// The issuer's rules for this card: its test-card row, or (any other valid number)
    /// approval with a large balance. `None` when the number is not valid.
    pub fn behavior(&self) -> Option<CardBehavior> {
        if let Some(card) = TEST_CARDS.iter().find(|c| c.number == self.expose_secret()) {
            return Some(card.behavior);
        }
        self.is_valid().then_some(CardBehavior::Approve { balance: LARGE_BALANCE })
    }

    /// The ACS's answer for this card: its test-card row, else frictionless (`Y`).
    /// Enrollment (the card's range) and expiry are decided by the directory server.
    pub fn three_ds_behavior(&self) -> ThreeDsBehavior {
        TEST_CARDS
            .iter()
            .find(|c| c.number == self.expose_secret())
            .map_or(ThreeDsBehavior::Frictionless, |c| c.three_ds)
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber({})", self.masked())
    }
}

/// A card's expiry as sent: month 1–12 and a four-digit year (two digits mean 20YY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub month: u8,
    pub year: u16,
}

impl Expiry {
    /// Validate the fields; `None` if the month is not 1–12 or the year not 0–99 or
    /// 2000–2099.
    pub fn new(month: u32, year: u32) -> Option<Expiry> {
        let year = match year {
            0..=99 => 2000 + year,
            2000..=2099 => year,
            _ => return None,
        };
        let month = u8::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
        Some(Expiry { month, year: u16::try_from(year).ok()? })
    }

    /// A card is good through the last day of its expiry month.
    pub fn is_expired_at(&self, today: time::Date) -> bool {
        (i32::from(self.year), self.month) < (today.year(), u8::from(today.month()))
    }
}

/// A CVC is three or four digits.
pub fn cvc_well_formed(cvc: &str) -> bool {
    (3..=4).contains(&cvc.len()) && cvc.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_card_passes_luhn_and_is_unique() {
        for card in TEST_CARDS {
            assert!(CardNumber::new(card.number).is_valid(), "{} fails Luhn", card.number);
            assert_eq!(TEST_CARDS.iter().filter(|c| c.number == card.number).count(), 1);
        }
    }

    #[test]
    fn masking_keeps_bin_and_last_four() {
        assert_eq!(CardNumber::new("4242 4242 4242 4242").masked(), "424242******4242");
        assert_eq!(CardNumber::new("8600069195406311").masked(), "860006******6311");
        assert_eq!(CardNumber::new("4242abc").masked(), "invalid");
        assert_eq!(format!("{:?}", CardNumber::new("4242424242424242")), "CardNumber(424242******4242)");
    }

    #[test]
    fn unknown_valid_numbers_approve_and_invalid_ones_have_no_behavior() {
        assert_eq!(
            CardNumber::new("4111111111111111").behavior(),
            Some(CardBehavior::Approve { balance: LARGE_BALANCE })
        );
        assert_eq!(CardNumber::new("4111111111111112").behavior(), None);
        assert_eq!(CardNumber::new("411111").behavior(), None);
    }

    #[test]
    fn expiry_is_through_the_end_of_the_month() {
        let today = time::macros::date!(2030 - 06 - 15);
        assert!(!Expiry::new(6, 2030).unwrap().is_expired_at(today));
        assert!(!Expiry::new(1, 31).unwrap().is_expired_at(today));
        assert!(Expiry::new(5, 2030).unwrap().is_expired_at(today));
        assert!(Expiry::new(12, 29).unwrap().is_expired_at(today));
        assert_eq!(Expiry::new(13, 2030), None);
        assert_eq!(Expiry::new(0, 2030), None);
        assert_eq!(Expiry::new(1, 1999), None);
    }
}
