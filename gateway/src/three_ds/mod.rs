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

use std::time::Duration;

/// `payment.create`'s `three_ds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreeDsMode {
    /// By the configured rules: enrolled cards from `auto_min_amount` up; a card the DS
    /// does not enroll (or a DS that cannot be reached) is paid without 3-D Secure.
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
    /// `auto` authenticates payments of at least this many minor units (any currency).
    pub auto_min_amount: i64,
}

impl Default for ThreeDsConfig {
    fn default() -> Self {
        ThreeDsConfig {
            public_url: "http://127.0.0.1:8080".into(),
            areq_timeout: Duration::from_secs(10),
            challenge_ttl: Duration::from_secs(600),
            method_budget: Duration::from_secs(10),
            prepared_ttl: Duration::from_secs(600),
            auto_min_amount: 0,
        }
    }
}
