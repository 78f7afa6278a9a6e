//! Wall-clock time as the services store and show it: Unix milliseconds (`i64`) in
//! records, audit events and expiries, RFC 3339 text in answers.
//!
//! Shared because the vault, the gateway and the sandbox each had their own copy, and
//! a timestamp one service writes is compared with another's (a token's expiry, a
//! hold's deadline): one definition keeps them all on the same unit and the same
//! out-of-range rule.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

/// `t` in Unix milliseconds; `i64::MAX` for a time too far out to count in milliseconds.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// RFC 3339 text (UTC, `Z`) for a Unix-millisecond time; empty for a time `time` cannot
/// represent or format (outside years 0–9999).
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The Unix-millisecond time of RFC 3339 `text`, or `None` when it is not RFC 3339.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(unix_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_formatted_in_utc_with_their_fraction() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_720_000_123), "2025-12-03T00:00:00.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_time_that_cannot_be_written_is_empty_text() {
        assert_eq!(rfc3339(i64::MAX), "");
        assert_eq!(rfc3339(i64::MIN), "");
    }

    #[test]
    fn parsing_gives_back_the_milliseconds_and_honours_the_offset() {
        assert_eq!(parse_rfc3339_ms("2025-12-03T00:00:00.123Z"), Some(1_764_720_000_123));
        assert_eq!(parse_rfc3339_ms("2025-12-03T01:00:00+01:00"), Some(1_764_720_000_000));
        assert_eq!(parse_rfc3339_ms(&rfc3339(1_234_567_890_123)), Some(1_234_567_890_123));
        assert_eq!(parse_rfc3339_ms("2025-12-03"), None);
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn now_is_in_milliseconds() {
        let before = OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let now = now_ms();
        let after = OffsetDateTime::now_utc().unix_timestamp() * 1000 + 1000;
        assert!((before..=after).contains(&now), "{before} <= {now} <= {after}");
        assert_eq!(unix_ms(OffsetDateTime::UNIX_EPOCH), 0);
    }
}
