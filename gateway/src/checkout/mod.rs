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

pub mod routes;

use crate::error::{RpcError, WidgetError};
use crate::ids;
use crate::payments::{now_ms, rfc3339, CaptureMethod, Gateway, Merchant, NewPayment, PaymentKey};
use crate::secrets::CheckoutSecrets;
use crate::state::{AfterExpired, PaymentStatus};
use crate::store::{
    AttemptOutcome, AttemptRecord, AttemptSlot, CheckoutRecord, CheckoutStatus, CustomerCard, MerchantRecord,
    PaymentRecord, PaymentStart, Slot,
};
use crate::three_ds::messages::BrowserInfo;
use crate::three_ds::ThreeDsMode;
use crate::vault::{TokenLookup, TokenMetadata};
use paysys_widget::grant::{GrantClaims, GrantSigner, MAX_GRANT_LIFETIME_SECS};
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
enum PaymentEnd {
    /// Authorized (captured or held; what the merchant does later is its business).
    Paid,
    /// The issuer declined, or 3-D Secure did not authenticate the cardholder.
    Declined,
    /// Failed otherwise (unavailable, unknown token).
    Failed,
    /// Not decided yet.
    Pending,
}

fn payment_end(p: &PaymentRecord) -> PaymentEnd {
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

/// The `browser` object of `POST /checkout/{id}/pay`, as the page's script reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct PageBrowser {
    #[serde(default)]
    pub accept_header: Option<String>,
    #[serde(default)]
    pub java_enabled: bool,
    #[serde(default = "yes")]
    pub javascript_enabled: bool,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub color_depth: Option<u8>,
    #[serde(default)]
    pub screen_height: Option<u32>,
    #[serde(default)]
    pub screen_width: Option<u32>,
    /// Minutes from UTC as `getTimezoneOffset()` gives them.
    #[serde(default)]
    pub tz: Option<i32>,
    #[serde(default)]
    pub user_agent: Option<String>,
}

fn yes() -> bool {
    true
}

impl PageBrowser {
    /// The EMV browser fields, with the request's `Accept` header and `User-Agent`
    /// where the page gave none, and the defaults of [`BrowserInfo::unknown`] for the
    /// rest.
    pub fn to_browser_info(&self, accept: Option<&str>, user_agent: Option<&str>) -> BrowserInfo {
        let unknown = BrowserInfo::unknown();
        let clip = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).take(2048).collect() };
        BrowserInfo {
            accept_header: accept
                .or(self.accept_header.as_deref())
                .map(clip)
                .filter(|s| !s.is_empty())
                .unwrap_or(unknown.accept_header),
            user_agent: self
                .user_agent
                .as_deref()
                .or(user_agent)
                .map(clip)
                .filter(|s| !s.is_empty())
                .unwrap_or(unknown.user_agent),
            language: self
                .language
                .as_deref()
                .filter(|l| (1..=8).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                .map(str::to_owned)
                .unwrap_or(unknown.language),
            color_depth: self
                .color_depth
                .filter(|d| [1, 4, 8, 15, 16, 24, 32, 48].contains(d))
                .unwrap_or(unknown.color_depth),
            screen_height: self.screen_height.filter(|h| (1..=999_999).contains(h)).unwrap_or(unknown.screen_height),
            screen_width: self.screen_width.filter(|w| (1..=999_999).contains(w)).unwrap_or(unknown.screen_width),
            tz_offset_min: self.tz.filter(|t| (-840..=720).contains(t)).unwrap_or(unknown.tz_offset_min),
            java_enabled: self.java_enabled,
            javascript_enabled: self.javascript_enabled,
        }
    }
}

/// Who is asking for an attempt or a payment, as the HTTP layer saw the request.
#[derive(Debug, Clone, Default)]
pub struct BrowserRequest {
    /// The connection's address.
    pub client_ip: Option<String>,
    pub accept: Option<String>,
    pub user_agent: Option<String>,
}

/// `POST /checkout/{id}/pay`'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PayAnswer {
    /// `completed`, `declined`, `challenge` or `processing`.
    pub status: &'static str,
    pub redirect_url: Option<String>,
    /// The decline code and the buyer's message.
    pub decline: Option<(String, String)>,
    pub attempts_left: i64,
}

impl PayAnswer {
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "status": self.status, "attempts_left": self.attempts_left });
        if let Some(obj) = v.as_object_mut() {
            if let Some(url) = &self.redirect_url {
                obj.insert("redirect_url".into(), Value::from(url.clone()));
            }
            if let Some((code, message)) = &self.decline {
                obj.insert("decline".into(), json!({ "code": code, "message": message }));
            }
        }
        v
    }
}

/// A new attempt's grant and where the card frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedAttempt {
    pub attempt_id: String,
    pub frame_url: String,
    /// Unix ms.
    pub expires_at: i64,
    pub claims: GrantClaims,
}

fn merchant_of(record: &MerchantRecord) -> Merchant {
    Merchant {
        merchant_id: record.merchant_id.clone(),
        service_id: record.service_id.clone(),
        name: record.name.clone(),
        three_ds_auto: record.three_ds_auto.clone(),
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
                .move_checkout(checkout_id, &[CheckoutStatus::Open], CheckoutStatus::Cancelled, None, now)
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

    /// Bring a checkout up to date: an open one past its time is expired; a processing
    /// one follows its latest payment (resolving it as `payment.check` does when its
    /// outcome is open). The checkout as it then is.
    pub async fn sync_checkout(&self, checkout: CheckoutRecord) -> Result<CheckoutRecord, RpcError> {
        let now = now_ms();
        match checkout.status {
            CheckoutStatus::Open if checkout.expires_at <= now => {
                let id = &checkout.checkout_id;
                self.store.move_checkout(id, &[CheckoutStatus::Open], CheckoutStatus::Expired, None, now).await?;
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
    async fn settle_checkout(
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
                    self.store.move_checkout(id, &statuses, CheckoutStatus::Processing, tx, now).await?;
                }
            }
            PaymentEnd::Paid => {
                let statuses = [CheckoutStatus::Processing];
                if self.store.move_checkout(id, &statuses, CheckoutStatus::Completed, tx, now).await? {
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
                self.store.move_checkout(id, &[CheckoutStatus::Processing], CheckoutStatus::Open, tx, now).await?;
                if end == PaymentEnd::Declined {
                    self.watch_for_card_testing(&checkout.merchant_id).await?;
                }
            }
        }
        Ok(())
    }

    async fn reopen(&self, checkout: &CheckoutRecord) -> Result<(), RpcError> {
        let now = now_ms();
        let id = &checkout.checkout_id;
        self.store.move_checkout(id, &[CheckoutStatus::Processing], CheckoutStatus::Open, None, now).await?;
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

    // ---- customers' cards ----

    /// Keep `token`'s card for the checkout's customer, unless the customer has the
    /// same card (fingerprint) saved: then the first token stays and this one's card is
    /// deleted in the vault (the removal path of `card.remove`). Failures are logged:
    /// the payment is done either way.
    async fn save_card_for_customer(&self, checkout: &CheckoutRecord, token: &str) {
        let Some(customer_id) = &checkout.customer_id else { return };
        let meta = match self.vault.token_metadata(token).await {
            TokenLookup::Found(meta) => meta,
            other => {
                tracing::warn!(checkout_id = %checkout.checkout_id, outcome = ?other, "saving a card: no metadata");
                return;
            }
        };
        let card = customer_card(&checkout.merchant_id, customer_id, &meta, now_ms());
        match self.store.save_customer_card(&card).await {
            Ok(Slot::Inserted) => {
                tracing::info!(checkout_id = %checkout.checkout_id, card_token = %token, "card saved for the customer");
            }
            Ok(Slot::Existing(kept)) if kept.token == token => {}
            Ok(Slot::Existing(kept)) => {
                tracing::info!(
                    checkout_id = %checkout.checkout_id,
                    kept = %kept.token,
                    removed = %token,
                    "the customer has this card saved: the new token is removed"
                );
                self.remove_duplicate_token(&checkout.merchant_id, token).await;
            }
            Err(e) => tracing::error!(checkout_id = %checkout.checkout_id, error = %e, "saving a card failed"),
        }
    }

    async fn remove_duplicate_token(&self, merchant_id: &str, token: &str) {
        let now = now_ms();
        let claimed_until = now + crate::payments::REMOVAL_CLAIM_MS;
        match self.store.remove_token(merchant_id, token, now, claimed_until).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(error = %e, "recording a duplicate token's removal failed");
                return;
            }
        }
        // The payment that used it is settled (paid): it needs the card no more unless it
        // holds funds; then the worker deletes the card once the hold closes.
        let needed = self.store.card_needed_by_open_payment(merchant_id, token).await.unwrap_or(true);
        if needed {
            let _ = self.store.release_vault_removal(merchant_id, token).await;
            return;
        }
        if let Err(e) = self.delete_card_in_vault(merchant_id, token).await {
            tracing::warn!(error = ?e, "deleting a duplicate card failed; the worker retries");
        }
    }

    /// `card.list`: a customer's saved cards.
    pub async fn list_cards(&self, merchant: &Merchant, customer_id: &str) -> Result<Value, RpcError> {
        let cards = self.store.customer_cards(&merchant.merchant_id, customer_id).await?;
        let mut shown = Vec::with_capacity(cards.len());
        for card in cards {
            if self.store.token_removed(&merchant.merchant_id, &card.token).await? {
                continue;
            }
            shown.push(json!({
                "token": card.token,
                "brand": card.brand,
                "masked_number": format!("{}******{}", card.bin, card.last4),
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "created_at": rfc3339(card.created_at),
            }));
        }
        Ok(json!({ "customer_id": customer_id, "cards": shown }))
    }

    /// `payment.create`'s refusal of a checkout-bound token that was not saved for a
    /// customer: such a token pays only its checkout. Tokens a merchant's certificate
    /// made carry no binding; the lookup is cached per token.
    pub(crate) async fn refuse_unsaved_checkout_token(&self, merchant: &Merchant, token: &str) -> Result<(), RpcError> {
        let checkout_id = match self.token_bins.facts(token) {
            Some(facts) => facts.checkout_id,
            None => match self.vault.token_metadata(token).await {
                TokenLookup::Found(meta) => {
                    self.token_bins.put(&meta);
                    meta.checkout_id
                }
                // The relay answers for a token it does not have, as before.
                TokenLookup::NotFound => None,
                TokenLookup::Unavailable(reason) => {
                    tracing::warn!(%reason, "token metadata unavailable");
                    return Err(RpcError::ProcessingUnavailable);
                }
            },
        };
        if checkout_id.is_some() && !self.store.token_saved(&merchant.merchant_id, token).await? {
            return Err(RpcError::UnknownToken);
        }
        Ok(())
    }

    // ---- attempts and payments (the browser's calls) ----

    /// Issue a new attempt on an open checkout: its grant for the card frame at
    /// `origin`, under the card-testing limits.
    pub async fn open_checkout_attempt(
        &self,
        checkout: &CheckoutRecord,
        merchant: &MerchantRecord,
        origin: &str,
        client: &BrowserRequest,
    ) -> Result<IssuedAttempt, WidgetError> {
        let widget = self.widget.ready().ok_or(WidgetError::Unavailable)?;
        refuse_closed(checkout.status)?;
        let now = now_ms();
        if checkout.expires_at <= now {
            return Err(WidgetError::CheckoutExpired);
        }
        if merchant.widget.card_testing_guard && merchant.widget.card_testing_tripped_at.is_some() {
            return Err(WidgetError::CardTestingSuspected);
        }
        let limits = &self.widget.limits;
        if checkout.attempts >= limits.attempts_per_checkout {
            return Err(WidgetError::AttemptsExhausted);
        }
        let counts = self
            .store
            .attempt_counts(client.client_ip.as_deref(), now - limits.client_window_ms, &merchant.merchant_id, now)
            .await?;
        if counts.by_client >= limits.attempts_per_client {
            tracing::warn!(client_ip = ?client.client_ip, "checkout attempts from one client address limited");
            return Err(WidgetError::RateLimited);
        }
        let now_s = now / 1000;
        let expires_s = (now_s + MAX_GRANT_LIFETIME_SECS).min(checkout.expires_at / 1000);
        if expires_s <= now_s {
            return Err(WidgetError::CheckoutExpired);
        }
        let nonce = paysys_widget::grant::random_nonce().map_err(|e| WidgetError::Internal(e.to_string()))?;
        let attempt = AttemptRecord {
            attempt_id: ids::new_attempt_id(),
            checkout_id: checkout.checkout_id.clone(),
            merchant_id: checkout.merchant_id.clone(),
            number: 0,
            nonce: nonce.clone(),
            origin: origin.to_owned(),
            client_ip: client.client_ip.clone(),
            created_at: now,
            expires_at: expires_s * 1000,
            used_at: None,
            transaction_id: None,
            outcome: None,
            finished_at: None,
        };
        let opened = match self.store.open_attempt(&attempt, limits.attempts_per_checkout, now).await? {
            AttemptSlot::Opened(a) => *a,
            AttemptSlot::Exhausted => return Err(WidgetError::AttemptsExhausted),
            AttemptSlot::NotOpen => {
                let now_status = self.store.checkout(&checkout.checkout_id).await?.map(|c| c.status);
                refuse_closed(now_status.unwrap_or(CheckoutStatus::Expired))?;
                return Err(WidgetError::CheckoutExpired);
            }
        };
        let claims = GrantClaims {
            merchant_id: checkout.merchant_id.clone(),
            checkout_id: checkout.checkout_id.clone(),
            attempt_id: opened.attempt_id.clone(),
            origin: origin.to_owned(),
            issued_at: now_s,
            expires_at: expires_s,
            nonce,
            save_card: checkout.save_card,
        };
        let grant = widget.signer.sign(&claims);
        let lang = paysys_widget::pages::Lang::parse(&checkout.language).unwrap_or_default();
        let mut frame = url::Url::parse(&format!("{}/v1/frame", widget.intake_origin))
            .map_err(|e| WidgetError::Internal(format!("intake url: {e}")))?;
        frame.query_pairs_mut().append_pair("origin", origin).append_pair("lang", lang.as_str());
        frame.set_fragment(Some(&format!("grant={grant}")));
        tracing::info!(
            checkout_id = %checkout.checkout_id,
            attempt_id = %opened.attempt_id,
            number = opened.number,
            %origin,
            "checkout attempt issued"
        );
        Ok(IssuedAttempt {
            attempt_id: opened.attempt_id,
            frame_url: frame.to_string(),
            expires_at: expires_s * 1000,
            claims,
        })
    }

    /// Pay an open checkout with a token the intake minted for it under `attempt_id`,
    /// through the same code as `payment.create`.
    pub async fn pay_checkout(
        &self,
        checkout: &CheckoutRecord,
        merchant: &MerchantRecord,
        attempt_id: &str,
        token: &str,
        browser: &PageBrowser,
        client: &BrowserRequest,
    ) -> Result<PayAnswer, WidgetError> {
        refuse_closed(checkout.status)?;
        let now = now_ms();
        if checkout.expires_at <= now {
            return Err(WidgetError::CheckoutExpired);
        }
        let attempt = self.store.attempt(attempt_id).await?;
        let Some(attempt) = attempt.filter(|a| a.checkout_id == checkout.checkout_id) else {
            return Err(WidgetError::AttemptUnknown);
        };
        if attempt.used_at.is_some() {
            return Err(WidgetError::AttemptUsed);
        }
        if merchant.widget.card_testing_guard && merchant.widget.card_testing_tripped_at.is_some() {
            return Err(WidgetError::CardTestingSuspected);
        }
        if !ids::looks_like_token(token) {
            return Err(WidgetError::TokenNotForCheckout);
        }
        if self.store.token_removed(&checkout.merchant_id, token).await? {
            return Err(WidgetError::TokenNotForCheckout);
        }
        match self.vault.token_metadata(token).await {
            TokenLookup::Found(meta)
                if meta.merchant_id == checkout.merchant_id
                    && meta.checkout_id.as_deref() == Some(checkout.checkout_id.as_str()) =>
            {
                self.token_bins.put(&meta);
            }
            TokenLookup::Found(_) | TokenLookup::NotFound => {
                tracing::warn!(checkout_id = %checkout.checkout_id, "a token not minted for this checkout refused");
                return Err(WidgetError::TokenNotForCheckout);
            }
            TokenLookup::Unavailable(reason) => {
                tracing::warn!(%reason, "token metadata unavailable");
                return Err(WidgetError::ProcessingUnavailable);
            }
        }
        match self.store.begin_checkout_payment(&checkout.checkout_id, attempt_id, now).await? {
            PaymentStart::Started => {}
            PaymentStart::UnknownAttempt => return Err(WidgetError::AttemptUnknown),
            PaymentStart::AttemptUsed => return Err(WidgetError::AttemptUsed),
            PaymentStart::NotOpen => {
                let status = self.store.checkout(&checkout.checkout_id).await?.map(|c| c.status);
                refuse_closed(status.unwrap_or(CheckoutStatus::Expired))?;
                return Err(WidgetError::CheckoutExpired);
            }
        }
        let request = NewPayment {
            card_token: token.to_owned(),
            amount: checkout.amount,
            currency: checkout.currency.clone(),
            partner_trans_id: attempt_partner_trans_id(checkout, attempt.number),
            capture_method: checkout.capture_method,
            hold_ttl_sec: checkout.hold_ttl_sec,
            after_expired: checkout.after_expired,
            description: checkout.description.clone(),
            client_ip: client.client_ip.clone(),
            return_url: Some(format!("{}/return", self.checkout_url(&checkout.checkout_id))),
            three_ds: checkout.three_ds,
            three_ds_server_trans_id: None,
            browser: Some(browser.to_browser_info(client.accept.as_deref(), client.user_agent.as_deref())),
        };
        let answer = self.pay_with_token(&merchant_of(merchant), request).await;
        let ptid = attempt_partner_trans_id(checkout, attempt.number);
        let Some(payment) = self.store.payment_by_partner_id(&checkout.merchant_id, &ptid).await? else {
            // Refused before a payment row existed (unavailable): the attempt is spent,
            // the checkout open again for a new one.
            tracing::warn!(checkout_id = %checkout.checkout_id, outcome = ?answer.err(), "checkout payment not started");
            self.store.finish_attempt(attempt_id, AttemptOutcome::Failed, now_ms()).await?;
            self.reopen(checkout).await.map_err(|e| WidgetError::Internal(format!("{e:?}")))?;
            return Err(WidgetError::ProcessingUnavailable);
        };
        self.store.attempt_paid_with(attempt_id, &payment.transaction_id).await?;
        self.settle_checkout(checkout, &attempt, &payment)
            .await
            .map_err(|e| WidgetError::Internal(format!("{e:?}")))?;
        let after = self.store.checkout(&checkout.checkout_id).await?.ok_or(WidgetError::CheckoutUnknown)?;
        let attempts_left = (self.widget.limits.attempts_per_checkout - after.attempts).max(0);
        let lang = paysys_widget::pages::Lang::parse(&checkout.language).unwrap_or_default();
        let return_url = format!("{}/return", self.checkout_url(&checkout.checkout_id));
        Ok(match payment_end(&payment) {
            PaymentEnd::Paid => {
                PayAnswer { status: "completed", redirect_url: Some(return_url), decline: None, attempts_left }
            }
            PaymentEnd::Declined | PaymentEnd::Failed => {
                let code = decline_code(&payment);
                let message = paysys_widget::pages::decline_message(&code, lang).to_owned();
                PayAnswer { status: "declined", redirect_url: None, decline: Some((code, message)), attempts_left }
            }
            PaymentEnd::Pending => {
                let (_, next_action) = crate::three_ds::authentication::view(&payment);
                let challenge = next_action.and_then(|a| a.get("url").and_then(Value::as_str).map(str::to_owned));
                match challenge {
                    Some(url) => {
                        PayAnswer { status: "challenge", redirect_url: Some(url), decline: None, attempts_left }
                    }
                    None => PayAnswer { status: "processing", redirect_url: None, decline: None, attempts_left },
                }
            }
        })
    }
}

/// The refusal of an operation on a checkout that is not open.
fn refuse_closed(status: CheckoutStatus) -> Result<(), WidgetError> {
    match status {
        CheckoutStatus::Open => Ok(()),
        CheckoutStatus::Processing => Err(WidgetError::CheckoutProcessing),
        CheckoutStatus::Completed => Err(WidgetError::CheckoutCompleted),
        CheckoutStatus::Expired => Err(WidgetError::CheckoutExpired),
        CheckoutStatus::Cancelled => Err(WidgetError::CheckoutCancelled),
    }
}

fn customer_card(merchant_id: &str, customer_id: &str, meta: &TokenMetadata, now: i64) -> CustomerCard {
    CustomerCard {
        merchant_id: merchant_id.to_owned(),
        customer_id: customer_id.to_owned(),
        token: meta.token.clone(),
        fingerprint: meta.fingerprint.clone(),
        brand: meta.brand.clone(),
        bin: meta.bin.clone(),
        last4: meta.last4.clone(),
        exp_month: meta.exp_month,
        exp_year: meta.exp_year,
        created_at: now,
    }
}
