//! The buyer's calls: a new attempt with its grant, and paying a checkout with the
//! token the intake minted for it.

use super::{attempt_partner_trans_id, decline_code, payment_end, PaymentEnd};
use crate::error::WidgetError;
use crate::ids;
use crate::payments::{now_ms, Gateway, Merchant, NewPayment};
use crate::store::{
    AttemptOutcome, AttemptRecord, AttemptSlot, CheckoutRecord, CheckoutStatus, MerchantRecord, PaymentStart,
};
use crate::three_ds::messages::BrowserInfo;
use crate::vault::TokenLookup;
use paysys_widget::grant::{GrantClaims, MAX_GRANT_LIFETIME_SECS};
use serde_json::{json, Value};

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
    /// The language the page shows (its switch), when it said; else the checkout's.
    pub lang: Option<paysys_widget::pages::Lang>,
}

impl BrowserRequest {
    /// The language to show: the page's when it said, else the checkout's.
    pub fn page_lang(&self, checkout: &CheckoutRecord) -> paysys_widget::pages::Lang {
        self.lang.unwrap_or_else(|| paysys_widget::pages::Lang::parse(&checkout.language).unwrap_or_default())
    }
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
            fingerprint: None,
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
        let lang = client.page_lang(checkout);
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
        let fingerprint = match self.vault.token_metadata(token).await {
            TokenLookup::Found(meta)
                if meta.merchant_id == checkout.merchant_id
                    && meta.checkout_id.as_deref() == Some(checkout.checkout_id.as_str()) =>
            {
                self.token_bins.put(&meta);
                meta.fingerprint
            }
            TokenLookup::Found(_) | TokenLookup::NotFound => {
                tracing::warn!(checkout_id = %checkout.checkout_id, "a token not minted for this checkout refused");
                return Err(WidgetError::TokenNotForCheckout);
            }
            TokenLookup::Unavailable(reason) => {
                tracing::warn!(%reason, "token metadata unavailable");
                return Err(WidgetError::ProcessingUnavailable);
            }
        };
        // Many different cards from one client address: card testing, whatever the outcomes.
        if let Some(ip) = &client.client_ip {
            let limits = &self.widget.limits;
            let others = self.store.other_cards_of_client(ip, now - limits.client_window_ms, &fingerprint).await?;
            if others >= limits.cards_per_client {
                tracing::warn!(client_ip = %ip, cards = others + 1, "too many cards from one client address");
                return Err(WidgetError::RateLimited);
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
        self.store.attempt_card(attempt_id, &fingerprint).await?;
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
        let lang = client.page_lang(checkout);
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
