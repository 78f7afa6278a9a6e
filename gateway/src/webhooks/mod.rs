//! Webhooks (issue 15): signed notifications of payment and refund changes, written to
//! an outbox in the same transaction as the change, delivered at least once with a
//! stable `webhook-id`, retried with back-off, visible per attempt.
//!
//! # Layout
//!
//! * `mod.rs` (here) — the event types, which change makes which event
//!   ([`payment_events`]), the outbox event ([`OutboxEvent`]) and its stable id, the
//!   retry schedule, the [`Webhooks`] service configuration and its `serve` flags.
//! * `signing.rs` — Standard Webhooks signatures ([`signing::WebhookSecret`]).
//! * `destination.rs` — SSRF screening of endpoint URLs, at save and at every delivery,
//!   behind a [`destination::Resolver`].
//! * `delivery.rs` — one HTTP attempt to the screened address, 10 s deadline.
//! * `worker.rs` — claiming due deliveries (leases; `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL), sending them, back-off, disabling an endpoint that fails for days.
//! * `endpoints.rs` — the JSON-RPC methods `webhook.endpoint.*`, `webhook.list`,
//!   `webhook.resend`, and their OpenRPC entries.
//!
//! The SQL is in `store/webhooks.rs`; the outbox rows are written by
//! `Store::save_payment` (`store/payments.rs`), the one place every payment and refund
//! change is saved, so no path that changes a payment can forget its event.
//!
//! Checkout events (`checkout.completed`, `checkout.expired`) are built by the checkout
//! module (`Gateway::checkout_event`, data: what `checkout.check` shows) and written by
//! `Store::move_checkout` in the transaction that saves the checkout's final status.

pub mod delivery;
pub mod destination;
pub mod endpoints;
pub mod signing;
pub mod worker;

use crate::payments::{payment_view, refund_view, rfc3339};
use crate::secrets::SecretKey;
use crate::state::PaymentStatus;
use crate::store::{LedgerKind, LedgerRow, PaymentRecord, RefundRecord, RefundStatus};
use destination::{DestinationPolicy, Resolver, SystemResolver};
use rand::Rng;
use serde_json::{json, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    PaymentAuthorized,
    /// All or part of the payment was captured (also a hold captured at its expiry).
    PaymentCaptured,
    PaymentFailed,
    PaymentVoided,
    /// Money refunded; `data` is the payment with the refund under `refund`.
    PaymentRefunded,
    /// The hold (or the 3-D Secure step) ran out and was released.
    PaymentExpired,
    /// The cardholder must complete a 3-D Secure challenge (`data.next_action`).
    PaymentRequires3ds,
    /// A refund failed; `data` is the refund.
    RefundFailed,
    /// The checkout was paid; `data` is the checkout with its payment.
    CheckoutCompleted,
    /// The checkout ran out unpaid.
    CheckoutExpired,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::PaymentAuthorized,
        EventType::PaymentCaptured,
        EventType::PaymentFailed,
        EventType::PaymentVoided,
        EventType::PaymentRefunded,
        EventType::PaymentExpired,
        EventType::PaymentRequires3ds,
        EventType::RefundFailed,
        EventType::CheckoutCompleted,
        EventType::CheckoutExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PaymentAuthorized => "payment.authorized",
            EventType::PaymentCaptured => "payment.captured",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentVoided => "payment.voided",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::PaymentExpired => "payment.expired",
            EventType::PaymentRequires3ds => "payment.requires_3ds",
            EventType::RefundFailed => "refund.failed",
            EventType::CheckoutCompleted => "checkout.completed",
            EventType::CheckoutExpired => "checkout.expired",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event as the outbox keeps it, until it is fanned out to the merchant's
/// subscribed endpoints in the same statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The `webhook-id`: derived from what changed (see [`OutboxEvent::new`]).
    pub event_id: String,
    pub merchant_id: String,
    pub event_type: EventType,
    /// The payment's transaction_id, the refund's refund_id, the checkout's id.
    pub object_id: String,
    /// `{"type", "timestamp", "data"}`, as signed and sent.
    pub body: String,
    pub created_at: i64,
}

impl OutboxEvent {
    /// An event about `object_id` at `at`. `discriminator` tells this event from any
    /// other of the same type about the same object (a capture's new captured amount,
    /// a refund's id); the id is a hash of all three, so the same change saved twice
    /// is the same event (the outbox's key refuses the second).
    pub fn new(
        merchant_id: &str,
        event_type: EventType,
        object_id: &str,
        discriminator: &str,
        data: Value,
        at: i64,
    ) -> OutboxEvent {
        let seed = format!("{merchant_id}\n{object_id}\n{}\n{discriminator}", event_type.as_str());
        let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
        let event_id = format!("msg_{}", &hex::encode(digest.as_ref())[..32]);
        let body = json!({ "type": event_type.as_str(), "timestamp": rfc3339(at), "data": data }).to_string();
        OutboxEvent {
            event_id,
            merchant_id: merchant_id.to_owned(),
            event_type,
            object_id: object_id.to_owned(),
            body,
            created_at: at,
        }
    }
}

/// The event a ledger row means, if any: a transition into a status partners hear
/// about, a capture (partial ones too) or a refund.
fn row_event(row: &LedgerRow) -> Option<EventType> {
    if row.kind == LedgerKind::Refund {
        return Some(EventType::PaymentRefunded);
    }
    if row.from_status == row.to_status && row.kind != LedgerKind::Capture {
        return None;
    }
    match PaymentStatus::parse(&row.to_status)? {
        PaymentStatus::Authorized => Some(EventType::PaymentAuthorized),
        PaymentStatus::PartiallyCaptured | PaymentStatus::Captured => Some(EventType::PaymentCaptured),
        PaymentStatus::Voided => Some(EventType::PaymentVoided),
        PaymentStatus::Expired => Some(EventType::PaymentExpired),
        PaymentStatus::Failed => Some(EventType::PaymentFailed),
        PaymentStatus::Created
        | PaymentStatus::Requires3ds
        | PaymentStatus::Authorizing
        | PaymentStatus::Processing => None,
    }
}

/// The events of one save of payment `p` (its new state) with `ledger` (the rows the
/// save writes) and a refund's new state: what `Store::save_payment` writes to the
/// outbox in the same transaction. `data` is what `payment.check` shows now
/// ([`payment_view`]); a refund's events carry the refund ([`refund_view`]).
pub fn payment_events(p: &PaymentRecord, ledger: &[LedgerRow], refund: Option<&RefundRecord>) -> Vec<OutboxEvent> {
    let mut events: Vec<OutboxEvent> = Vec::new();
    let at = p.updated_at;
    let tx = p.transaction_id.as_str();
    for row in ledger {
        let Some(event_type) = row_event(row) else { continue };
        let event = match event_type {
            EventType::PaymentRefunded => {
                let refund_id = row.refund_id.as_deref().unwrap_or_default();
                let mut data = payment_view(p);
                if let (Some(obj), Some(r)) = (data.as_object_mut(), refund.filter(|r| r.refund_id == refund_id)) {
                    obj.insert("refund".into(), refund_view(r));
                }
                OutboxEvent::new(&p.merchant_id, event_type, tx, refund_id, data, at)
            }
            // A payment is captured in steps; each step leaves a different state.
            EventType::PaymentCaptured => {
                let step = format!("{}/{}", p.status.as_str(), p.captured_amount);
                OutboxEvent::new(&p.merchant_id, event_type, tx, &step, payment_view(p), at)
            }
            // The others happen once per payment.
            other => OutboxEvent::new(&p.merchant_id, other, tx, "", payment_view(p), at),
        };
        if !events.iter().any(|e| e.event_id == event.event_id) {
            events.push(event);
        }
    }
    // A challenge is saved without a transition (the payment has been `requires_3ds`
    // since it was created): the event is the challenge link appearing.
    if p.status == PaymentStatus::Requires3ds {
        let view = payment_view(p);
        if view.get("next_action").is_some() {
            events.push(OutboxEvent::new(&p.merchant_id, EventType::PaymentRequires3ds, tx, "", view, at));
        }
    }
    if let Some(r) = refund.filter(|r| r.status == RefundStatus::Failed) {
        let event =
            OutboxEvent::new(&p.merchant_id, EventType::RefundFailed, &r.refund_id, "", refund_view(r), r.updated_at);
        events.push(event);
    }
    events
}

/// When the attempts after a failure are made: the delay after the first failed
/// attempt, after the second, … ; once they are used up the delivery has failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl Default for RetrySchedule {
    /// 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h, 24 h, 24 h: eleven retries
    /// over about three days (70.7 h).
    fn default() -> Self {
        let s = Duration::from_secs;
        RetrySchedule(vec![
            s(5),
            s(30),
            s(120),
            s(600),
            s(1_800),
            s(3_600),
            s(3 * 3_600),
            s(6 * 3_600),
            s(12 * 3_600),
            s(24 * 3_600),
            s(24 * 3_600),
        ])
    }
}

impl RetrySchedule {
    /// Parse `5s,30s,2m,1h,…` (units `ms`, `s`, `m`, `h`).
    pub fn parse(text: &str) -> Result<RetrySchedule, String> {
        let delays = text
            .split(',')
            .map(|part| {
                let part = part.trim();
                let (digits, unit) = part.split_at(part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len()));
                let n: u64 = digits.parse().map_err(|_| format!("{part:?} is not a duration like 30s"))?;
                match unit {
                    "ms" => Ok(Duration::from_millis(n)),
                    "s" => Ok(Duration::from_secs(n)),
                    "m" => Ok(Duration::from_secs(n * 60)),
                    "h" => Ok(Duration::from_secs(n * 3_600)),
                    _ => Err(format!("{part:?} is not a duration like 30s")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err("the retry schedule is empty".into());
        }
        Ok(RetrySchedule(delays))
    }

    /// The delay before the next attempt after `attempts` failed ones, with ±20 %
    /// jitter (so endpoints that failed together are not retried in lockstep); `None`
    /// when the retries are used up.
    pub fn next_delay(&self, attempts: i64) -> Option<Duration> {
        let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
        let base = *self.0.get(index)?;
        let factor = rand::thread_rng().gen_range(0.8..=1.2);
        Some(base.mul_f64(factor))
    }

    /// Every attempt there will be: the first and one per delay.
    pub fn max_attempts(&self) -> i64 {
        i64::try_from(self.0.len()).unwrap_or(i64::MAX - 1) + 1
    }
}

/// How webhooks are sent.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub policy: DestinationPolicy,
    pub schedule: RetrySchedule,
    /// Per attempt, everything included.
    pub timeout: Duration,
    /// An endpoint whose every attempt has failed for this long is disabled.
    pub disable_after: Duration,
    /// How long a worker's claim on a delivery lasts (past `timeout`, so a delivery in
    /// flight is never claimed twice; a crashed worker's claims come back after it).
    pub lease: Duration,
    /// How long the previous secret still signs after a rotation.
    pub rotation_overlap: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            policy: DestinationPolicy::default(),
            schedule: RetrySchedule::default(),
            timeout: Duration::from_secs(10),
            disable_after: Duration::from_secs(5 * 24 * 3_600),
            lease: Duration::from_secs(30),
            rotation_overlap: Duration::from_secs(24 * 3_600),
        }
    }
}

/// The webhook service: its configuration, the key endpoint secrets are sealed under,
/// the resolver and the TLS client configuration.
pub struct Webhooks {
    pub config: WebhookConfig,
    pub(crate) key: SecretKey,
    pub resolver: Arc<dyn Resolver>,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) connections: delivery::ConnectionPool,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks").field("config", &self.config).field("resolver", &self.resolver).finish()
    }
}

impl Webhooks {
    /// Webhooks sealing endpoint secrets under `key` (the gateway's secret key), with
    /// the system resolver.
    pub fn new(config: WebhookConfig, key: SecretKey) -> Webhooks {
        Webhooks::with_resolver(config, key, Arc::new(SystemResolver))
    }

    pub fn with_resolver(config: WebhookConfig, key: SecretKey, resolver: Arc<dyn Resolver>) -> Webhooks {
        Webhooks { config, key, resolver, tls: delivery::client_tls(), connections: Default::default() }
    }

    /// The same, verifying HTTPS endpoints with `tls` instead of the Mozilla roots (a
    /// private CA: the tests' receiver).
    pub fn with_client_tls(self, tls: Arc<rustls::ClientConfig>) -> Webhooks {
        Webhooks { tls, ..self }
    }
}

/// The `serve` flags of webhooks.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookFlags {
    /// Development mode: allows the development-only flags below. Never in production.
    #[arg(long, env = "PAYSYS_GATEWAY_DEV")]
    pub dev: bool,
    /// DEV ONLY (refused without --dev): webhook endpoints on loopback, over plain http
    /// too — for the dev stack and the tests.
    #[arg(long, env = "PAYSYS_GATEWAY_WEBHOOKS_ALLOW_LOOPBACK_HTTP")]
    pub webhooks_allow_loopback_http: bool,
    /// The delays between a webhook's attempts, e.g. `5s,30s,2m,10m,30m,1h,3h,6h,12h,24h,24h`
    /// (the default, about three days); units ms, s, m, h.
    #[arg(long, env = "PAYSYS_GATEWAY_WEBHOOKS_RETRY_SCHEDULE")]
    pub webhooks_retry_schedule: Option<String>,
    /// How long a webhook attempt may take.
    #[arg(long, env = "PAYSYS_GATEWAY_WEBHOOKS_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhooks_timeout_ms: u64,
    /// An endpoint failing every attempt for this many hours is disabled.
    #[arg(long, env = "PAYSYS_GATEWAY_WEBHOOKS_DISABLE_AFTER_HOURS", default_value_t = 120)]
    pub webhooks_disable_after_hours: u64,
}

impl WebhookFlags {
    /// The configuration the flags give; refuses a development flag without `--dev`.
    pub fn config(&self) -> Result<WebhookConfig, String> {
        if self.webhooks_allow_loopback_http && !self.dev {
            return Err("--webhooks-allow-loopback-http is a development flag: it needs --dev".into());
        }
        let defaults = WebhookConfig::default();
        let schedule = match &self.webhooks_retry_schedule {
            Some(text) => RetrySchedule::parse(text)?,
            None => defaults.schedule,
        };
        let timeout = Duration::from_millis(self.webhooks_timeout_ms.clamp(100, 60_000));
        Ok(WebhookConfig {
            policy: DestinationPolicy { allow_loopback: self.webhooks_allow_loopback_http },
            schedule,
            timeout,
            disable_after: Duration::from_secs(self.webhooks_disable_after_hours.saturating_mul(3_600)),
            lease: timeout + Duration::from_secs(20),
            ..defaults
        })
    }
}

#[cfg(test)]
mod tests;
