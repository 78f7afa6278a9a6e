//! 3-D Secure 2: the gateway is the **3DS Server**; the sandbox plays the directory
//! server (DS) and the issuer's access control server (ACS).
//!
//! ```text
//! three_ds.prepare (optional) ─ PReq/PRes card ranges ─ 3DS Method in a hidden iframe (≤ 10 s)
//! payment.create ─ AReq (through the vault relay: it carries the card number) ─ ARes
//!   Y / A ──────────────── authorize at once with ECI + CAVV
//!   C ─ requires_3ds + next_action.redirect ─ browser: CReq → ACS challenge page
//!         ACS ─ RReq ─▶ /3ds/rreq (answered by RRes)     browser ─ CRes ─▶ /3ds/notify
//!         either one makes the gateway read the result from the DS and authorize (or fail)
//!         the browser then goes to the merchant's return_url, signed
//!   N / R / U / no answer ─ failed: −31020 / −31021 / −31022
//! ```
//!
//! * [`messages`] — the EMV message shapes.
//! * [`directory`] — the DS as the gateway reaches it without card data (ranges, results).
//! * [`authentication`] — the steps above, on the payment and its ledger.
//! * [`routes`] — the browser and ACS facing endpoints; [`pages`] — their HTML.
//!
//! Trust: the CRes and the RReq only *announce* a result. Their ids are checked against
//! the authentication, and the result itself is read from the DS over verified TLS, so
//! a forged, replayed or misdirected message cannot authorize anything.

pub mod authentication;
pub mod directory;
pub mod messages;
pub mod pages;
pub mod routes;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// `payment.create`'s `three_ds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreeDsMode {
    /// By the merchant's [`AutoSettings`]: enrolled cards from the currency's minimum
    /// amount up; a DS failure the merchant allows (by default a card the DS does not
    /// enroll, or a DS that cannot be reached) is paid without 3-D Secure, any other
    /// fails the payment.
    Auto,
    /// Always; a payment that cannot be authenticated fails (−31022).
    Force,
    /// Never.
    Skip,
}

impl ThreeDsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreeDsMode::Auto => "auto",
            ThreeDsMode::Force => "force",
            ThreeDsMode::Skip => "skip",
        }
    }

    pub fn parse(s: &str) -> Option<ThreeDsMode> {
        [ThreeDsMode::Auto, ThreeDsMode::Force, ThreeDsMode::Skip].into_iter().find(|m| m.as_str() == s)
    }
}

/// The 3DS Server's configuration.
#[derive(Debug, Clone)]
pub struct ThreeDsConfig {
    /// The gateway's URL as browsers and the ACS reach it (challenge links, the
    /// notification URL for the CRes, the 3DS Server URL for the RReq).
    pub public_url: String,
    /// How long the AReq may take (the DS waits for the ACS within it).
    pub areq_timeout: Duration,
    /// How long the cardholder has for a challenge before the payment expires.
    pub challenge_ttl: Duration,
    /// How long a prepared 3DS Method may take before the AReq says it did not complete.
    pub method_budget: Duration,
    /// How long a `three_ds.prepare` result may be used by a payment.
    pub prepared_ttl: Duration,
    /// `auto` authenticates payments of at least this many minor units of the currency,
    /// for currencies the merchant's own [`AutoSettings::min_amounts`] does not name
    /// (absent: from the currency's smallest amount up).
    pub auto_min_amounts: BTreeMap<String, i64>,
}

impl Default for ThreeDsConfig {
    fn default() -> Self {
        ThreeDsConfig {
            public_url: "http://127.0.0.1:8080".into(),
            areq_timeout: Duration::from_secs(10),
            challenge_ttl: Duration::from_secs(600),
            method_budget: Duration::from_secs(10),
            prepared_ttl: Duration::from_secs(600),
            auto_min_amounts: BTreeMap::new(),
        }
    }
}

/// A failure before the cardholder is authenticated that `three_ds: auto` may pay
/// through without 3-D Secure (the merchant then keeps the fraud liability), if the
/// merchant allows it. An issuer's `N` or `R`, or a challenge that ends badly, never
/// proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AutoFallback {
    /// The DS does not enroll the card's range (its PRes, or AReq error `305`).
    NotEnrolled,
    /// The DS cannot be reached, refused the AReq, or answered something unusable.
    DsUnavailable,
    /// The AReq had no answer within its deadline (the DS or ACS may still have it).
    DsTimeout,
    /// The ARes says `U`: the issuer's ACS could not perform the authentication.
    TransStatusU,
}

impl AutoFallback {
    pub const ALL: [AutoFallback; 4] =
        [AutoFallback::NotEnrolled, AutoFallback::DsUnavailable, AutoFallback::DsTimeout, AutoFallback::TransStatusU];

    /// The stable word in settings, the CLI and `three_ds.skipped` of a payment.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoFallback::NotEnrolled => "not_enrolled",
            AutoFallback::DsUnavailable => "ds_unavailable",
            AutoFallback::DsTimeout => "ds_timeout",
            AutoFallback::TransStatusU => "trans_status_u",
        }
    }

    pub fn parse(s: &str) -> Option<AutoFallback> {
        AutoFallback::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// Why a merchant's `three_ds: auto` settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AutoSettingsError {
    #[error("unknown 3-D Secure fallback {0:?} (expected none or a comma list of not_enrolled, ds_unavailable, ds_timeout, trans_status_u)")]
    UnknownFallback(String),
    #[error("a minimum amount must be CURRENCY=MINOR_UNITS, e.g. USD=5000 (got {0:?})")]
    MalformedMinAmount(String),
    #[error("unsupported currency {0:?}")]
    UnknownCurrency(String),
    #[error("the minimum amount for {currency} must be 0 to {max} minor units")]
    MinAmountOutOfRange { currency: String, max: i64 },
}

/// A merchant's rules for `three_ds: auto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoSettings {
    /// The failures that proceed without 3-D Secure; the others fail the payment (−31022).
    pub proceed_on: BTreeSet<AutoFallback>,
    /// Per currency (ISO 4217 code → minor units): payments below it are not
    /// authenticated. A currency not named here takes the gateway's default.
    pub min_amounts: BTreeMap<String, i64>,
}

impl Default for AutoSettings {
    /// Only a card the DS does not enroll, or a DS that cannot be reached, proceeds
    /// without 3-D Secure; every amount is authenticated.
    fn default() -> Self {
        AutoSettings {
            proceed_on: [AutoFallback::NotEnrolled, AutoFallback::DsUnavailable].into_iter().collect(),
            min_amounts: BTreeMap::new(),
        }
    }
}

impl AutoSettings {
    pub fn proceeds_on(&self, fallback: AutoFallback) -> bool {
        self.proceed_on.contains(&fallback)
    }

    /// `none`, or a comma list of fallbacks (as stored and as the CLI takes them).
    pub fn parse_proceed_on(text: &str) -> Result<BTreeSet<AutoFallback>, AutoSettingsError> {
        let text = text.trim();
        if text.is_empty() || text == "none" {
            return Ok(BTreeSet::new());
        }
        text.split(',')
            .map(|w| {
                AutoFallback::parse(w.trim()).ok_or_else(|| AutoSettingsError::UnknownFallback(w.trim().to_owned()))
            })
            .collect()
    }

    /// The stored form of [`proceed_on`](Self::proceed_on): a comma list, empty for none.
    pub fn proceed_on_text(&self) -> String {
        self.proceed_on.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(",")
    }

    /// `CUR=AMOUNT` entries (each may itself be a comma list): a known currency and
    /// 0 up to its largest amount.
    pub fn parse_min_amounts<S: AsRef<str>>(entries: &[S]) -> Result<BTreeMap<String, i64>, AutoSettingsError> {
        let mut map = BTreeMap::new();
        for entry in entries.iter().flat_map(|e| e.as_ref().split(',')).map(str::trim).filter(|e| !e.is_empty()) {
            let malformed = || AutoSettingsError::MalformedMinAmount(entry.to_owned());
            let (code, amount) = entry.split_once('=').ok_or_else(malformed)?;
            let amount: i64 = amount.trim().parse().map_err(|_| malformed())?;
            let code = code.trim();
            let currency =
                crate::money::currency(code).map_err(|_| AutoSettingsError::UnknownCurrency(code.to_owned()))?;
            if !(0..=currency.max_amount).contains(&amount) {
                return Err(AutoSettingsError::MinAmountOutOfRange {
                    currency: currency.code.to_owned(),
                    max: currency.max_amount,
                });
            }
            map.insert(currency.code.to_owned(), amount);
        }
        Ok(map)
    }

    /// Read the stored JSON object of minimum amounts (checked like the CLI's input).
    pub fn min_amounts_from_json(text: &str) -> Result<BTreeMap<String, i64>, AutoSettingsError> {
        let malformed = || AutoSettingsError::MalformedMinAmount(text.chars().take(64).collect());
        let map: BTreeMap<String, i64> = serde_json::from_str(text).map_err(|_| malformed())?;
        let entries: Vec<String> = map.iter().map(|(c, a)| format!("{c}={a}")).collect();
        AutoSettings::parse_min_amounts(&entries)
    }

    /// The stored form of [`min_amounts`](Self::min_amounts).
    pub fn min_amounts_json(&self) -> String {
        serde_json::json!(self.min_amounts).to_string()
    }

    /// As `merchant show` and `merchant create --json` print them.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "proceed_on": self.proceed_on.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            "min_amounts": self.min_amounts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_proceeds_only_when_the_card_is_not_enrolled_or_the_ds_is_unavailable() {
        let d = AutoSettings::default();
        assert!(d.proceeds_on(AutoFallback::NotEnrolled) && d.proceeds_on(AutoFallback::DsUnavailable));
        assert!(!d.proceeds_on(AutoFallback::DsTimeout) && !d.proceeds_on(AutoFallback::TransStatusU));
        assert_eq!(d.proceed_on_text(), "not_enrolled,ds_unavailable");
        assert_eq!(AutoSettings::parse_proceed_on(&d.proceed_on_text()).unwrap(), d.proceed_on);
    }

    #[test]
    fn settings_are_parsed_strictly() {
        assert!(AutoSettings::parse_proceed_on("none").unwrap().is_empty());
        assert!(AutoSettings::parse_proceed_on("").unwrap().is_empty());
        assert_eq!(AutoSettings::parse_proceed_on("ds_timeout, trans_status_u").unwrap().len(), 2);
        assert!(
            matches!(AutoSettings::parse_proceed_on("not_enrolled,N"), Err(AutoSettingsError::UnknownFallback(w)) if w == "N")
        );
        let m = AutoSettings::parse_min_amounts(&["USD=5000,EUR=0", "UZS=10000000"]).unwrap();
        assert_eq!(m.get("USD"), Some(&5000));
        assert_eq!(m.get("EUR"), Some(&0));
        assert_eq!(m.len(), 3);
        for bad in ["USD", "USD=", "USD=1.5", "usd=100", "XYZ=1", "USD=-1", "USD=10000001"] {
            assert!(AutoSettings::parse_min_amounts(&[bad]).is_err(), "{bad}");
        }
        let settings = AutoSettings { min_amounts: m, ..AutoSettings::default() };
        assert_eq!(AutoSettings::min_amounts_from_json(&settings.min_amounts_json()).unwrap(), settings.min_amounts);
        assert!(AutoSettings::min_amounts_from_json("{\"USD\": -5}").is_err());
    }
}
