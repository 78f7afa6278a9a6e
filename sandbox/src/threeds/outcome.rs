//! The DS's and ACS's decisions as pure functions: which card ranges are enrolled, what
//! an AReq gets by test card, the ECI by scheme, and how a challenge ends.

use super::messages::{challenge_cancel, reason, CardRange, TransStatus, CHALLENGE_CODE};
use crate::cards::{CardNumber, Expiry, ThreeDsBehavior};

/// First digits of the enrolled ranges: the international schemes (2 and 5 Mastercard,
/// 3 Amex/JCB, 4 Visa, 6 Discover/UnionPay). 8600… (Uzcard) and 9860… (Humo) are not.
const ENROLLED_FIRST_DIGITS: [u8; 5] = [b'2', b'3', b'4', b'5', b'6'];

/// The PRes card ranges: 16 digits, prefix-aligned, one per enrolled first digit.
pub fn card_ranges(method_url: &str) -> Vec<CardRange> {
    ENROLLED_FIRST_DIGITS
        .iter()
        .map(|d| {
            let d = char::from(*d);
            CardRange {
                start_range: format!("{d}{}", "0".repeat(15)),
                end_range: format!("{d}{}", "9".repeat(15)),
                action_ind: "A",
                acs_start_protocol_version: "2.1.0",
                acs_end_protocol_version: "2.2.0",
                ds_start_protocol_version: "2.1.0",
                ds_end_protocol_version: "2.2.0",
                three_ds_method_url: method_url.to_owned(),
            }
        })
        .collect()
}

/// Whether the card's range is enrolled in 3-D Secure.
pub fn is_enrolled(card: &CardNumber) -> bool {
    card.expose_secret().bytes().next().is_some_and(|d| ENROLLED_FIRST_DIGITS.contains(&d))
}

/// Mastercard-like numbering (first digit 2 or 5) uses Mastercard's ECIs.
fn is_mastercard_like(card: &str) -> bool {
    matches!(card.bytes().next(), Some(b'2' | b'5'))
}

/// The ECI of an authenticated (`Y`) or attempted (`A`) transaction; `None` otherwise.
/// `card` is the number or its masked form (the first digit decides).
pub fn eci(card: &str, status: TransStatus) -> Option<&'static str> {
    match (is_mastercard_like(card), status) {
        (true, TransStatus::Authenticated) => Some("02"),
        (true, TransStatus::Attempted) => Some("01"),
        (false, TransStatus::Authenticated) => Some("05"),
        (false, TransStatus::Attempted) => Some("06"),
        _ => None,
    }
}

/// What the ACS answers an AReq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub status: TransStatus,
    pub reason: Option<&'static str>,
    /// Answer only after `--auth-delay-ms` (the ACS that does not answer in time).
    pub delayed: bool,
}

/// The ARes status for an enrolled card expiring `expiry` (month, two-digit year),
/// `today`: an expired card is `N` `05`; otherwise the card's row of the table.
pub fn decide(card: &CardNumber, expiry: (u32, u32), today: time::Date) -> Decision {
    let decision = |status, reason| Decision { status, reason, delayed: false };
    let expired = Expiry::new(expiry.0, expiry.1).is_none_or(|e| e.is_expired_at(today));
    if expired {
        return decision(TransStatus::NotAuthenticated, Some(reason::EXPIRED_CARD));
    }
    match card.three_ds_behavior() {
        ThreeDsBehavior::Frictionless => decision(TransStatus::Authenticated, None),
        ThreeDsBehavior::Attempted => decision(TransStatus::Attempted, None),
        ThreeDsBehavior::Challenge => decision(TransStatus::Challenge, None),
        ThreeDsBehavior::NotAuthenticated => {
            decision(TransStatus::NotAuthenticated, Some(reason::AUTHENTICATION_FAILED))
        }
        ThreeDsBehavior::Rejected => decision(TransStatus::Rejected, Some(reason::SUSPECTED_FRAUD)),
        ThreeDsBehavior::Unavailable => decision(TransStatus::Unavailable, Some(reason::NO_CARD_RECORD)),
        ThreeDsBehavior::AcsTimeout => {
            Decision { status: TransStatus::Unavailable, reason: Some(reason::TIMED_OUT_AT_ACS), delayed: true }
        }
    }
}

/// What the cardholder did on the challenge page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeAnswer<'a> {
    /// Submitted this code.
    Code(&'a str),
    /// Pressed cancel.
    Cancel,
    /// Nothing within `--challenge-ttl-ms`.
    TimedOut,
}

/// How a challenge ends: status, reason and `challengeCancel` (ECI and CAVV are added
/// for `Y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeEnd {
    pub status: TransStatus,
    pub reason: Option<&'static str>,
    pub challenge_cancel: Option<&'static str>,
}

/// The end of a challenge. The code is compared in constant time.
pub fn end_challenge(answer: ChallengeAnswer<'_>) -> ChallengeEnd {
    use subtle::ConstantTimeEq as _;
    match answer {
        ChallengeAnswer::TimedOut => ChallengeEnd {
            status: TransStatus::NotAuthenticated,
            reason: Some(reason::TIMED_OUT_AT_ACS),
            challenge_cancel: Some(challenge_cancel::TIMED_OUT),
        },
        ChallengeAnswer::Cancel => ChallengeEnd {
            status: TransStatus::NotAuthenticated,
            reason: None,
            challenge_cancel: Some(challenge_cancel::CARDHOLDER_CANCELLED),
        },
        ChallengeAnswer::Code(code) if bool::from(code.trim().as_bytes().ct_eq(CHALLENGE_CODE.as_bytes())) => {
            ChallengeEnd { status: TransStatus::Authenticated, reason: None, challenge_cancel: None }
        }
        ChallengeAnswer::Code(_) => ChallengeEnd {
            status: TransStatus::NotAuthenticated,
            reason: Some(reason::AUTHENTICATION_FAILED),
            challenge_cancel: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cards::TEST_CARDS;

    const TODAY: time::Date = time::macros::date!(2030 - 06 - 15);
    const FUTURE: (u32, u32) = (12, 31);

    fn outcome(number: &str) -> (&'static str, Option<&'static str>, bool) {
        let d = decide(&CardNumber::new(number), FUTURE, TODAY);
        (d.status.as_str(), d.reason, d.delayed)
    }

    #[test]
    fn the_test_card_table() {
        assert_eq!(outcome("4000000000003014"), ("Y", None, false));
        assert_eq!(outcome("4000000000003022"), ("A", None, false));
        assert_eq!(outcome("4000000000003220"), ("C", None, false));
        assert_eq!(outcome("5200000000003001"), ("C", None, false));
        assert_eq!(outcome("5200000000003019"), ("Y", None, false));
        assert_eq!(outcome("4000000000003030"), ("N", Some("01"), false));
        assert_eq!(outcome("4000000000003048"), ("R", Some("11"), false));
        assert_eq!(outcome("4000000000003055"), ("U", Some("08"), false));
        assert_eq!(outcome("4000000000003063"), ("U", Some("14"), true));
        assert_eq!(outcome("4242424242424242"), ("Y", None, false), "any other enrolled card");
        assert_eq!(outcome("4000000000000002"), ("Y", None, false), "issuer declines do not matter here");
        // Expired: N 05, whatever the card's row says.
        for number in ["4000000000003014", "4000000000003220", "4000000000003063"] {
            let d = decide(&CardNumber::new(number), (5, 30), TODAY);
            assert_eq!((d.status, d.reason, d.delayed), (TransStatus::NotAuthenticated, Some("05"), false));
        }
        assert_eq!(decide(&CardNumber::new("4000000000003014"), (6, 30), TODAY).status, TransStatus::Authenticated);
        // Every 3-D Secure test card approves at the issuer.
        for card in TEST_CARDS.iter().filter(|c| c.three_ds != ThreeDsBehavior::Frictionless) {
            assert_eq!(card.behavior, crate::cards::CardBehavior::Approve { balance: crate::cards::LARGE_BALANCE });
        }
    }

    #[test]
    fn enrollment_is_by_first_digit() {
        for n in ["2221000000000009", "378282246310005", "4242424242424242", "5555555555554444", "6011111111111117"] {
            assert!(is_enrolled(&CardNumber::new(n)), "{n}");
        }
        for n in ["8600069195406311", "9860000000000018", "1234567812345670", "7000000000000000"] {
            assert!(!is_enrolled(&CardNumber::new(n)), "{n}");
        }
        let ranges = card_ranges("https://localhost:1/acs/v2/method");
        assert_eq!(ranges.len(), 5);
        assert_eq!(
            (ranges[2].start_range.as_str(), ranges[2].end_range.as_str()),
            ("4000000000000000", "4999999999999999")
        );
        assert!(ranges.iter().all(|r| r.start_range.len() == 16 && r.end_range.len() == 16));
    }

    #[test]
    fn eci_by_scheme() {
        let visa = "4000000000003014";
        let mastercard = "520000******3019";
        assert_eq!(eci(visa, TransStatus::Authenticated), Some("05"));
        assert_eq!(eci(visa, TransStatus::Attempted), Some("06"));
        assert_eq!(eci(mastercard, TransStatus::Authenticated), Some("02"));
        assert_eq!(eci(mastercard, TransStatus::Attempted), Some("01"));
        assert_eq!(eci("2221000000000009", TransStatus::Authenticated), Some("02"));
        assert_eq!(eci("2221000000000009", TransStatus::Attempted), Some("01"));
        assert_eq!(eci("378282246310005", TransStatus::Authenticated), Some("05"));
        assert_eq!(eci("6011111111111117", TransStatus::Attempted), Some("06"));
        for s in
            [TransStatus::Challenge, TransStatus::NotAuthenticated, TransStatus::Rejected, TransStatus::Unavailable]
        {
            assert_eq!(eci(visa, s), None);
            assert_eq!(eci(mastercard, s), None);
        }
    }

    #[test]
    fn challenges_end_by_code_cancel_or_time() {
        let end = |a| {
            let e = end_challenge(a);
            (e.status.as_str(), e.reason, e.challenge_cancel)
        };
        assert_eq!(end(ChallengeAnswer::Code("123456")), ("Y", None, None));
        assert_eq!(end(ChallengeAnswer::Code(" 123456 ")), ("Y", None, None));
        assert_eq!(end(ChallengeAnswer::Code("123457")), ("N", Some("01"), None));
        assert_eq!(end(ChallengeAnswer::Code("")), ("N", Some("01"), None));
        assert_eq!(end(ChallengeAnswer::Code("1234567")), ("N", Some("01"), None));
        assert_eq!(end(ChallengeAnswer::Cancel), ("N", None, Some("01")));
        assert_eq!(end(ChallengeAnswer::TimedOut), ("N", Some("14"), Some("05")));
    }
}
