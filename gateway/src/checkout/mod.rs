//! The payment widget's gateway side: checkouts (`checkout.create`, `checkout.check`,
//! `checkout.cancel`), one-time card grants per payment attempt, paying a checkout with
//! a token the card intake minted for it, customers' saved cards (`card.list`), and the
//! card-testing defence. The HTTP routes the buyer's browser calls are in [`routes`].
//!
//! A checkout pays through the same code as `payment.create`
//! ([`Gateway::pay_with_token`]); each attempt's payment gets the `partner_trans_id`
//! `{checkout's partner_trans_id}/{attempt number}` (unique per merchant as every
//! payment's is); merchants read a checkout's outcome with `checkout.check`.
//!
//! A checkout's status follows its latest payment lazily: whoever reads it
//! ([`Gateway::sync_checkout`]: `checkout.check`, the page, the return after 3-D Secure,
//! the status poll) settles it from the payment, and an open checkout past its time is
//! expired then.

mod customers;
mod pay;
pub mod routes;

pub use pay::{BrowserRequest, IssuedAttempt, PageBrowser, PayAnswer};

use crate::error::RpcError;
use crate::ids;
use crate::payments::{now_ms, payment_view, rfc3339, CaptureMethod, Gateway, Merchant, PaymentKey};
use crate::secrets::CheckoutSecrets;
use crate::state::{AfterExpired, PaymentStatus};
use crate::store::{AttemptOutcome, AttemptRecord, CheckoutRecord, CheckoutStatus, PaymentRecord, Slot};
use crate::three_ds::ThreeDsMode;
use crate::webhooks::{EventType, OutboxEvent};
use paysys_widget::grant::GrantSigner;
use serde_json::{json, Value};

/// Shortest and longest `expires_in_sec`, and its default.
pub const MIN_EXPIRES_IN_SEC: i64 = 60;
pub const MAX_EXPIRES_IN_SEC: i64 = 86_400;
pub const DEFAULT_EXPIRES_IN_SEC: i64 = 1_800;
/// A payment whose attempt was spent this long ago without its payment row appearing
/// never started (the gateway stopped in between): the checkout opens again.
const LOST_START_MS: i64 = 120_000;

/// The card-testing limits on the public checkout endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardTestingLimits {
    /// Attempts (grants) per checkout.
    pub attempts_per_checkout: i64,
    /// Attempts per client address in [`CardTestingLimits::client_window_ms`].
    pub attempts_per_client: i64,
    pub client_window_ms: i64,
    /// Distinct cards (vault fingerprints) paid with from one client address in the
    /// same window.
    pub cards_per_client: i64,
    /// The merchant switch trips at this many declined attempts in
    /// [`CardTestingLimits::merchant_window_ms`] when more than half of the attempts
    /// that finished in the window were declined.
    pub merchant_declines: i64,
    pub merchant_window_ms: i64,
}

impl Default for CardTestingLimits {
    fn default() -> Self {
        CardTestingLimits {
            attempts_per_checkout: 5,
            attempts_per_client: 20,
            client_window_ms: 10 * 60_000,
            cards_per_client: 10,
            merchant_declines: 10,
            merchant_window_ms: 5 * 60_000,
        }
    }
}

/// What the gateway needs to offer the widget: the intake's origin (the card frame's
/// source), its grant key, and the client-secret derivation. Without the first two,
/// checkout methods answer `widget_unavailable`.
#[derive(Debug, Default)]
pub struct WidgetConfig {
    /// The intake's origin, e.g. `https://127.0.0.1:8444`.
    pub intake_origin: Option<String>,
    pub signer: Option<GrantSigner>,
    /// Client secrets of checkouts; `None`: widget unavailable.
    pub secrets: Option<CheckoutSecrets>,
    pub limits: CardTestingLimits,
}

/// The widget's configuration when it is complete.
#[derive(Debug, Clone, Copy)]
pub struct WidgetReady<'a> {
    pub intake_origin: &'a str,
    pub signer: &'a GrantSigner,
    pub secrets: &'a CheckoutSecrets,
}

impl WidgetConfig {
    pub fn ready(&self) -> Option<WidgetReady<'_>> {
        Some(WidgetReady {
            intake_origin: self.intake_origin.as_deref()?,
            signer: self.signer.as_ref()?,
            secrets: self.secrets.as_ref()?,
        })
    }
}

/// Validated `checkout.create` params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheckout {
    pub amount: i64,
    pub currency: String,
    pub partner_trans_id: String,
    pub return_url: String,
    pub description: Option<String>,
    pub cancel_url: Option<String>,
    pub capture_method: CaptureMethod,
    pub hold_ttl_sec: i64,
    pub after_expired: AfterExpired,
    pub three_ds: ThreeDsMode,
    pub language: paysys_widget::pages::Lang,
    pub expires_in_sec: i64,
    pub customer_id: Option<String>,
    pub save_card: bool,
}

impl NewCheckout {
    /// SHA-256 over the canonical params: what "the same request" means.
    pub fn digest(&self) -> String {
        let canonical = json!({
            "amount": self.amount,
            "currency": self.currency,
            "partner_trans_id": self.partner_trans_id,
            "return_url": self.return_url,
            "description": self.description,
            "cancel_url": self.cancel_url,
            "capture_method": self.capture_method.as_str(),
            "hold_ttl_sec": self.hold_ttl_sec,
            "after_expired": self.after_expired.as_str(),
            "three_ds": self.three_ds.as_str(),
            "language": self.language.as_str(),
            "expires_in_sec": self.expires_in_sec,
            "customer_id": self.customer_id,
            "save_card": self.save_card,
        });
        sha256_hex(canonical.to_string().as_bytes())
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Which checkout `checkout.check` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutKey {
    CheckoutId(String),
    PartnerTransId(String),
}

/// The `partner_trans_id` of the payment attempt `number` of a checkout makes.
pub fn attempt_partner_trans_id(checkout: &CheckoutRecord, number: i64) -> String {
    format!("{}/{number}", checkout.partner_trans_id)
}

/// Where a payment leaves its checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PaymentEnd {
    /// Authorized (captured or held; what the merchant does later is its business).
    Paid,
    /// The issuer declined, or 3-D Secure did not authenticate the cardholder.
    Declined,
    /// Failed otherwise (unavailable, unknown token).
    Failed,
    /// Not decided yet.
    Pending,
}

pub(super) fn payment_end(p: &PaymentRecord) -> PaymentEnd {
    match p.status {
        PaymentStatus::Authorized
        | PaymentStatus::PartiallyCaptured
        | PaymentStatus::Captured
        | PaymentStatus::Voided
        | PaymentStatus::Expired => PaymentEnd::Paid,
        PaymentStatus::Failed => match p.error_code {
            Some(-31040 | -31303 | -31020 | -31021 | -31022) => PaymentEnd::Declined,
            _ => PaymentEnd::Failed,
        },
        PaymentStatus::Created
        | PaymentStatus::Requires3ds
        | PaymentStatus::Authorizing
        | PaymentStatus::Processing => PaymentEnd::Pending,
    }
}

/// The code a buyer's decline is shown by: the issuer's decline code, or
/// `authentication_failed` when 3-D Secure stopped it, `unavailable` otherwise.
pub fn decline_code(p: &PaymentRecord) -> String {
    match (&p.decline_code, p.error_code) {
        (Some(code), _) => code.clone(),
        (None, Some(-31022..=-31020)) => "authentication_failed".into(),
        _ => "unavailable".into(),
    }
}

impl Gateway {
    /// The hosted page's URL of a checkout.
    pub fn checkout_url(&self, checkout_id: &str) -> String {
        format!("{}/checkout/{checkout_id}", self.three_ds.public_url)
    }

    // ---- checkout.create / checkout.check / checkout.cancel ----

    pub async fn create_checkout(&self, merchant: &Merchant, req: NewCheckout) -> Result<Value, RpcError> {
        let widget = self.widget.ready().ok_or(RpcError::WidgetUnavailable)?;
        let now = now_ms();
        let digest = req.digest();
        let checkout_id = ids::new_checkout_id();
        let secret = widget.secrets.client_secret(&checkout_id);
        let record = CheckoutRecord {
            checkout_id: checkout_id.clone(),
            merchant_id: merchant.merchant_id.clone(),
            partner_trans_id: req.partner_trans_id.clone(),
            request_digest: digest.clone(),
            amount: req.amount,
            currency: req.currency.clone(),
            description: req.description.clone(),
            return_url: req.return_url.clone(),
            cancel_url: req.cancel_url.clone(),
            capture_method: req.capture_method,
            hold_ttl_sec: req.hold_ttl_sec,
            after_expired: req.after_expired,
            three_ds: req.three_ds,
            language: req.language.as_str().to_owned(),
            expires_at: now + req.expires_in_sec * 1000,
            customer_id: req.customer_id.clone(),
            save_card: req.save_card,
            status: CheckoutStatus::Open,
            client_secret_hash: sha256_hex(secret.as_bytes()),
            transaction_id: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_checkout(&record).await? {
            Slot::Inserted => {
                tracing::info!(merchant_id = %merchant.merchant_id, %checkout_id, "checkout created");
                Ok(self.created_view(&record, &secret))
            }
            Slot::Existing(existing) if existing.request_digest != digest => Err(RpcError::IdempotencyConflict),
            Slot::Existing(existing) => {
                let existing = self.sync_checkout(existing).await?;
                let secret = widget.secrets.client_secret(&existing.checkout_id);
                Ok(self.created_view(&existing, &secret))
            }
        }
    }

    fn created_view(&self, c: &CheckoutRecord, client_secret: &str) -> Value {
        json!({
            "checkout_id": c.checkout_id,
            "url": self.checkout_url(&c.checkout_id),
            "client_secret": client_secret,
            "expires_at": rfc3339(c.expires_at),
            "status": c.status.as_str(),
        })
    }

    pub async fn check_checkout(&self, merchant: &Merchant, key: &CheckoutKey) -> Result<Value, RpcError> {
        let checkout = self.find_checkout(merchant, key).await?;
        let checkout = self.sync_checkout(checkout).await?;
        let payment = match &checkout.transaction_id {
            Some(id) => Some(self.check_payment(merchant, &PaymentKey::TransactionId(id.clone())).await?),
            None => None,
        };
        Ok(self.checkout_view(&checkout, payment))
    }

    pub async fn cancel_checkout(&self, merchant: &Merchant, checkout_id: &str) -> Result<Value, RpcError> {
        let checkout = self.find_checkout(merchant, &CheckoutKey::CheckoutId(checkout_id.to_owned())).await?;
        let checkout = self.sync_checkout(checkout).await?;
        let now = now_ms();
        if checkout.status != CheckoutStatus::Open
            || !self
                .store
                .move_checkout(checkout_id, &[CheckoutStatus::Open], CheckoutStatus::Cancelled, None, now, None)
                .await?
        {
            let now_status = self.store.checkout(checkout_id).await?.map_or(checkout.status, |c| c.status);
            return Err(RpcError::WrongState(now_status.as_str().to_owned()));
        }
        tracing::info!(merchant_id = %merchant.merchant_id, %checkout_id, "checkout cancelled");
        let cancelled = self.store.checkout(checkout_id).await?.ok_or(RpcError::NotFound)?;
        Ok(self.checkout_view(&cancelled, None))
    }

    async fn find_checkout(&self, merchant: &Merchant, key: &CheckoutKey) -> Result<CheckoutRecord, RpcError> {
        let found = match key {
            CheckoutKey::CheckoutId(id) => self.store.checkout(id).await?,
            CheckoutKey::PartnerTransId(id) => self.store.checkout_by_partner_id(&merchant.merchant_id, id).await?,
        };
        // Another merchant's checkout is reported exactly like a missing one.
        found.filter(|c| c.merchant_id == merchant.merchant_id).ok_or(RpcError::NotFound)
    }

    /// The checkout as `checkout.check` shows it (with its latest payment, when given).
    pub fn checkout_view(&self, c: &CheckoutRecord, payment: Option<Value>) -> Value {
        let mut v = json!({
            "checkout_id": c.checkout_id,
            "partner_trans_id": c.partner_trans_id,
            "status": c.status.as_str(),
            "url": self.checkout_url(&c.checkout_id),
            "amount": c.amount,
            "currency": c.currency,
            "return_url": c.return_url,
            "capture_method": c.capture_method.as_str(),
            "three_ds": c.three_ds.as_str(),
            "language": c.language,
            "save_card": c.save_card,
            "attempts": c.attempts,
            "expires_at": rfc3339(c.expires_at),
            "created_at": rfc3339(c.created_at),
            "updated_at": rfc3339(c.updated_at),
        });
        if let Some(obj) = v.as_object_mut() {
            let mut put = |k: &str, val: Option<Value>| {
                if let Some(val) = val {
                    obj.insert(k.to_owned(), val);
                }
            };
            put("description", c.description.clone().map(Value::from));
            put("cancel_url", c.cancel_url.clone().map(Value::from));
            put("customer_id", c.customer_id.clone().map(Value::from));
            put("transaction_id", c.transaction_id.clone().map(Value::from));
            put("payment", payment);
        }
        v
    }

    /// The webhook partners hear when checkout `c` moves to `to` at `now` (with
    /// `payment`, the one that paid it): `checkout.completed` or `checkout.expired`, its
    /// data what `checkout.check` shows after the move; `None` for other moves. A
    /// checkout completes or expires once, so the event's id is the checkout's.
    fn checkout_event(
        &self,
        c: &CheckoutRecord,
        to: CheckoutStatus,
        payment: Option<&PaymentRecord>,
        now: i64,
    ) -> Option<OutboxEvent> {
        let event_type = match to {
            CheckoutStatus::Completed => EventType::CheckoutCompleted,
            CheckoutStatus::Expired => EventType::CheckoutExpired,
            _ => return None,
        };
        let mut moved = c.clone();
        moved.status = to;
        moved.updated_at = now;
        if let Some(p) = payment {
            moved.transaction_id = Some(p.transaction_id.clone());
        }
        let data = self.checkout_view(&moved, payment.map(payment_view));
        Some(OutboxEvent::new(&c.merchant_id, event_type, &c.checkout_id, "", data, now))
    }

    /// Bring a checkout up to date: an open one past its time is expired; a processing
    /// one follows its latest payment (resolving it as `payment.check` does when its
    /// outcome is open). The checkout as it then is.
    pub async fn sync_checkout(&self, checkout: CheckoutRecord) -> Result<CheckoutRecord, RpcError> {
        let now = now_ms();
        match checkout.status {
            CheckoutStatus::Open if checkout.expires_at <= now => {
                let id = &checkout.checkout_id;
                let event = self.checkout_event(&checkout, CheckoutStatus::Expired, None, now);
                let from = [CheckoutStatus::Open];
                self.store.move_checkout(id, &from, CheckoutStatus::Expired, None, now, event.as_ref()).await?;
                tracing::info!(checkout_id = %id, "checkout expired");
                Ok(self.store.checkout(id).await?.unwrap_or(checkout))
            }
            CheckoutStatus::Processing => self.follow_payment(checkout).await,
            _ => Ok(checkout),
        }
    }

    /// A processing checkout after its latest attempt's payment.
    async fn follow_payment(&self, checkout: CheckoutRecord) -> Result<CheckoutRecord, RpcError> {
        let attempts = self.store.attempts_of(&checkout.checkout_id).await?;
        let Some(attempt) = attempts.into_iter().filter(|a| a.used_at.is_some()).max_by_key(|a| a.number) else {
            return Ok(checkout);
        };
        let ptid = attempt_partner_trans_id(&checkout, attempt.number);
        let payment = self.store.payment_by_partner_id(&checkout.merchant_id, &ptid).await?;
        let Some(payment) = payment else {
            if attempt.used_at.is_some_and(|at| now_ms() - at > LOST_START_MS) {
                // The payment never started: the buyer may try again.
                self.store.finish_attempt(&attempt.attempt_id, AttemptOutcome::Failed, now_ms()).await?;
                self.reopen(&checkout).await?;
                return Ok(self.store.checkout(&checkout.checkout_id).await?.unwrap_or(checkout));
            }
            return Ok(checkout);
        };
        let payment = if payment_end(&payment) == PaymentEnd::Pending {
            // Resolve what is open about it, as payment.check does.
            let id = payment.transaction_id.clone();
            self.check_payment_record(payment.clone()).await?;
            self.store.payment(&id).await?.unwrap_or(payment)
        } else {
            payment
        };
        self.settle_checkout(&checkout, &attempt, &payment).await?;
        Ok(self.store.checkout(&checkout.checkout_id).await?.unwrap_or(checkout))
    }

    /// Move a processing checkout after its attempt's payment: paid → completed (the
    /// card saved for the customer when asked), declined or failed → open again (or
    /// expired), pending → unchanged.
    pub(super) async fn settle_checkout(
        &self,
        checkout: &CheckoutRecord,
        attempt: &AttemptRecord,
        payment: &PaymentRecord,
    ) -> Result<(), RpcError> {
        let now = now_ms();
        let id = &checkout.checkout_id;
        let tx = Some(payment.transaction_id.as_str());
        match payment_end(payment) {
            PaymentEnd::Pending => {
                if checkout.transaction_id.as_deref() != tx {
                    let statuses = [CheckoutStatus::Processing];
                    self.store.move_checkout(id, &statuses, CheckoutStatus::Processing, tx, now, None).await?;
                }
            }
            PaymentEnd::Paid => {
                let statuses = [CheckoutStatus::Processing];
                let event = self.checkout_event(checkout, CheckoutStatus::Completed, Some(payment), now);
                let to = CheckoutStatus::Completed;
                if self.store.move_checkout(id, &statuses, to, tx, now, event.as_ref()).await? {
                    tracing::info!(checkout_id = %id, transaction_id = %payment.transaction_id, "checkout paid");
                    self.store.finish_attempt(&attempt.attempt_id, AttemptOutcome::Completed, now).await?;
                    if checkout.save_card {
                        self.save_card_for_customer(checkout, &payment.card_token).await;
                    }
                }
            }
            end @ (PaymentEnd::Declined | PaymentEnd::Failed) => {
                let outcome =
                    if end == PaymentEnd::Declined { AttemptOutcome::Declined } else { AttemptOutcome::Failed };
                self.store.finish_attempt(&attempt.attempt_id, outcome, now).await?;
                self.store
                    .move_checkout(id, &[CheckoutStatus::Processing], CheckoutStatus::Open, tx, now, None)
                    .await?;
                if end == PaymentEnd::Declined {
                    self.watch_for_card_testing(&checkout.merchant_id).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn reopen(&self, checkout: &CheckoutRecord) -> Result<(), RpcError> {
        let now = now_ms();
        let id = &checkout.checkout_id;
        self.store.move_checkout(id, &[CheckoutStatus::Processing], CheckoutStatus::Open, None, now, None).await?;
        Ok(())
    }

    /// Trip the merchant's switch when its recent declines look like card testing.
    async fn watch_for_card_testing(&self, merchant_id: &str) -> Result<(), RpcError> {
        let limits = &self.widget.limits;
        let now = now_ms();
        let counts = self.store.attempt_counts(None, now, merchant_id, now - limits.merchant_window_ms).await?;
        let burst = counts.merchant_declined >= limits.merchant_declines
            && counts.merchant_declined * 2 > counts.merchant_finished;
        if burst && self.store.trip_card_testing(merchant_id, now).await? {
            tracing::warn!(
                %merchant_id,
                declined = counts.merchant_declined,
                finished = counts.merchant_finished,
                "card testing suspected: the merchant's checkouts take no new attempts until an operator resets it"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::WidgetError;

    fn new_checkout() -> NewCheckout {
        NewCheckout {
            amount: 15000,
            currency: "UZS".into(),
            partner_trans_id: "o-1".into(),
            return_url: "https://shop.example/back".into(),
            description: None,
            cancel_url: None,
            capture_method: CaptureMethod::Auto,
            hold_ttl_sec: 3600,
            after_expired: AfterExpired::Void,
            three_ds: ThreeDsMode::Auto,
            language: paysys_widget::pages::Lang::En,
            expires_in_sec: 1800,
            customer_id: None,
            save_card: false,
        }
    }

    #[test]
    fn the_digest_covers_every_param() {
        let base = new_checkout();
        let changes: [fn(&mut NewCheckout); 8] = [
            |c| c.amount += 1,
            |c| c.return_url.push('x'),
            |c| c.cancel_url = Some("https://shop.example/c".into()),
            |c| c.language = paysys_widget::pages::Lang::Ru,
            |c| c.expires_in_sec = 60,
            |c| c.customer_id = Some("c".into()),
            |c| c.save_card = true,
            |c| c.three_ds = ThreeDsMode::Skip,
        ];
        for change in changes {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(other.digest(), base.digest(), "{other:?}");
        }
        assert_eq!(new_checkout().digest(), base.digest());
    }

    #[test]
    fn client_secrets_are_derived_per_checkout_and_never_printed() {
        let secrets = CheckoutSecrets::generate();
        let a = secrets.client_secret("chk_a");
        assert_eq!(*a, *secrets.client_secret("chk_a"), "the same checkout, the same secret");
        assert_ne!(*a, *secrets.client_secret("chk_b"));
        assert_ne!(*a, *CheckoutSecrets::generate().client_secret("chk_a"), "another key, another secret");
        let tail = a.strip_prefix("chk_a_secret_").unwrap();
        assert!(tail.len() == 32 && tail.bytes().all(|b| b.is_ascii_alphanumeric()), "{tail}");
        assert!(!format!("{secrets:?}").contains(tail));
    }

    #[test]
    fn statuses_read_back_as_written() {
        for status in CheckoutStatus::ALL {
            assert_eq!(CheckoutStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(CheckoutStatus::parse("paid"), None);
    }

    #[test]
    fn the_pages_browser_data_becomes_valid_emv_fields() {
        let page = PageBrowser {
            color_depth: Some(7),
            screen_width: Some(0),
            tz: Some(-300),
            language: Some("ru-RU".into()),
            user_agent: Some("Mozilla\n/5.0".into()),
            ..PageBrowser::default()
        };
        let info = page.to_browser_info(Some("text/html,*/*"), Some("ignored: the page said"));
        assert!(info.validate().is_ok(), "{info:?}");
        assert_eq!((info.color_depth, info.screen_width, info.tz_offset_min), (24, 1024, -300));
        assert_eq!((info.language.as_str(), info.user_agent.as_str()), ("ru-RU", "Mozilla/5.0"));
        assert_eq!(info.accept_header, "text/html,*/*", "the request's Accept header");
        assert!(PageBrowser::default().to_browser_info(None, None).validate().is_ok());
    }

    #[test]
    fn browser_error_codes_are_stable() {
        let all = [
            WidgetError::Unavailable,
            WidgetError::CheckoutUnknown,
            WidgetError::CheckoutExpired,
            WidgetError::CheckoutCancelled,
            WidgetError::CheckoutCompleted,
            WidgetError::CheckoutProcessing,
            WidgetError::AttemptsExhausted,
            WidgetError::RateLimited,
            WidgetError::CardTestingSuspected,
            WidgetError::TokenNotForCheckout,
            WidgetError::AttemptUnknown,
            WidgetError::AttemptUsed,
            WidgetError::OriginForbidden,
            WidgetError::ClientSecretInvalid,
            WidgetError::InvalidRequest("x".into()),
            WidgetError::ProcessingUnavailable,
            WidgetError::Internal("db on fire at /var/lib".into()),
        ];
        let codes: std::collections::BTreeSet<&str> = all.iter().map(WidgetError::code).collect();
        assert_eq!(codes.len(), all.len(), "one code each");
        assert_eq!(WidgetError::AttemptsExhausted.to_json()["error"]["code"], "attempts_exhausted");
        assert_eq!(WidgetError::TokenNotForCheckout.status(), 403);
        let internal = WidgetError::Internal("db on fire at /var/lib".into()).to_json();
        assert_eq!(internal["error"]["message"], "internal error");
    }
}
