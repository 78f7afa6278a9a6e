//! The 3DS Server's steps on a payment: deciding whether to authenticate, the AReq
//! through the vault relay, frictionless results, the challenge, its completion (by the
//! RReq, the CRes, `payment.check` or the worker) and its expiry.
//!
//! Every step runs under the payment's lease and writes its ledger row. A payment is
//! saved as `authorizing` *before* its authorization is relayed, so a crash in between
//! is resolved by status inquiry like any other, never by authenticating again.

use super::directory::{Enrollment, Results};
use super::messages::{self, AReqParams, AuthenticationResult, BrowserInfo};
use super::{AutoFallback, ThreeDsMode};
use crate::error::{AuthenticationFailure, AuthenticationFailureKind, RpcError};
use crate::money;
use crate::payments::{
    now_ms, payment_view, rfc3339, stored_response, transition, Gateway, Merchant, NewPayment, Settled,
};
use crate::state::PaymentStatus;
use crate::store::{AuthenticationRecord, LedgerKind, LedgerRow, PaymentRecord};
use crate::vault::{RelayOutcome, RelayRequest, ThreeDsProof, TokenLookup, AREQ_TEMPLATE};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Whether and how a new payment is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Straight to authorization.
    Skip,
    /// AReq first; with the prepared authentication when the merchant ran one.
    Authenticate { prepared: Option<Box<AuthenticationRecord>>, method_url: Option<String> },
    /// `force` on a card the DS does not enroll: the payment fails (−31022).
    Unavailable,
}

/// What became of an AReq.
enum AresOutcome {
    Answered(AuthenticationResult),
    NotEnrolled,
    Unavailable(String),
    TimedOut(String),
    UnknownToken,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The public 3DS part of a payment (the `three_ds` column), as a JSON object.
fn public_three_ds(p: &PaymentRecord) -> Map<String, Value> {
    p.three_ds
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

fn set_public_three_ds(p: &mut PaymentRecord, update: impl FnOnce(&mut Map<String, Value>)) {
    let mut view = public_three_ds(p);
    update(&mut view);
    p.three_ds = Some(Value::Object(view).to_string());
}

fn record_result(view: &mut Map<String, Value>, r: &AuthenticationResult) {
    view.insert("version".into(), Value::from(r.message_version.clone()));
    view.insert("ds_trans_id".into(), Value::from(r.ds_trans_id.clone()));
    view.insert("trans_status".into(), Value::from(r.trans_status.clone()));
    view.insert("trans_status_reason".into(), r.trans_status_reason.clone().map_or(Value::Null, Value::from));
    view.insert("eci".into(), r.eci.clone().map_or(Value::Null, Value::from));
    let masked = r.authentication_value.as_deref().map(AuthenticationResult::masked_value);
    view.insert("authentication_value".into(), masked.map_or(Value::Null, Value::from));
    if let Some(cancel) = &r.challenge_cancel {
        view.insert("challenge_cancel".into(), Value::from(cancel.clone()));
    }
}

fn failure_kind(trans_status: &str) -> AuthenticationFailureKind {
    match trans_status {
        "N" => AuthenticationFailureKind::NotAuthenticated,
        "R" => AuthenticationFailureKind::Rejected,
        _ => AuthenticationFailureKind::TimedOut,
    }
}

impl Gateway {
    /// Decide before the payment exists (an error here records nothing).
    pub(crate) async fn plan_authentication(&self, merchant: &Merchant, req: &NewPayment) -> Result<Plan, RpcError> {
        if let Some(id) = &req.three_ds_server_trans_id {
            return self.prepared_plan(merchant, req, id).await;
        }
        match req.three_ds {
            ThreeDsMode::Skip => return Ok(Plan::Skip),
            ThreeDsMode::Auto if req.amount < self.auto_min_amount(merchant, &req.currency) => return Ok(Plan::Skip),
            ThreeDsMode::Auto | ThreeDsMode::Force => {}
        }
        let bin = self.token_bin(merchant, &req.card_token).await?;
        let may_proceed =
            req.three_ds == ThreeDsMode::Auto && merchant.three_ds_auto.proceeds_on(AutoFallback::NotEnrolled);
        Ok(match self.directory.enrollment(&bin).await {
            Enrollment::Enrolled { method_url } => Plan::Authenticate { prepared: None, method_url },
            Enrollment::Unknown => Plan::Authenticate { prepared: None, method_url: None },
            Enrollment::NotEnrolled if may_proceed => Plan::Skip,
            Enrollment::NotEnrolled => Plan::Unavailable,
        })
    }

    /// `auto` authenticates from this amount of `currency` up: the merchant's own
    /// minimum for the currency, else the gateway's, else every amount.
    fn auto_min_amount(&self, merchant: &Merchant, currency: &str) -> i64 {
        let own = merchant.three_ds_auto.min_amounts.get(currency);
        own.or_else(|| self.three_ds.auto_min_amounts.get(currency)).copied().unwrap_or(0)
    }

    async fn prepared_plan(&self, merchant: &Merchant, req: &NewPayment, id: &str) -> Result<Plan, RpcError> {
        let refused = || {
            RpcError::InvalidParams(
                "three_ds_server_trans_id is unknown, expired, used by another payment or for another card".into(),
            )
        };
        let auth = self.store.authentication(id).await?.ok_or_else(refused)?;
        if auth.merchant_id != merchant.merchant_id || auth.card_token != req.card_token {
            return Err(refused());
        }
        if let Some(used_by) = &auth.transaction_id {
            // The same payment asked again: the insert finds it and answers as before.
            let same = self.store.payment(used_by).await?.is_some_and(|p| p.partner_trans_id == req.partner_trans_id);
            return if same { Ok(Plan::Skip) } else { Err(refused()) };
        }
        if now_ms() - auth.created_at > ms(self.three_ds.prepared_ttl) {
            return Err(refused());
        }
        let method_url = auth.method_url.clone();
        Ok(Plan::Authenticate { prepared: Some(Box::new(auth)), method_url })
    }

    /// The token's BIN from the vault (never more of the card).
    async fn token_bin(&self, merchant: &Merchant, token: &str) -> Result<String, RpcError> {
        if let Some((owner, bin)) = self.token_bins.get(token) {
            return if owner == merchant.merchant_id { Ok(bin) } else { Err(RpcError::UnknownToken) };
        }
        match self.vault.token_metadata(token).await {
            TokenLookup::Found(meta) if meta.merchant_id == merchant.merchant_id => {
                self.token_bins.put(&meta);
                Ok(meta.bin)
            }
            TokenLookup::Found(_) | TokenLookup::NotFound => Err(RpcError::UnknownToken),
            TokenLookup::Unavailable(reason) => {
                tracing::warn!(%reason, "token metadata unavailable");
                Err(RpcError::ProcessingUnavailable)
            }
        }
    }

    /// `three_ds.prepare`: an authentication for a card, with the ACS's 3DS Method
    /// when its range has one, for the merchant's checkout to run before
    /// `payment.create`.
    pub async fn prepare_authentication(&self, merchant: &Merchant, card_token: &str) -> Result<Value, RpcError> {
        if self.store.token_removed(&merchant.merchant_id, card_token).await? {
            return Err(RpcError::UnknownToken);
        }
        let bin = self.token_bin(merchant, card_token).await?;
        let enrollment = self.directory.enrollment(&bin).await;
        let method_url = match &enrollment {
            Enrollment::Enrolled { method_url } => method_url.clone(),
            _ => None,
        };
        let now = now_ms();
        let auth = AuthenticationRecord {
            three_ds_server_trans_id: messages::new_trans_id(),
            merchant_id: merchant.merchant_id.clone(),
            card_token: card_token.to_owned(),
            method_url: method_url.clone(),
            created_at: now,
            updated_at: now,
            ..AuthenticationRecord::default()
        };
        self.store.insert_authentication(&auth).await?;
        let id = &auth.three_ds_server_trans_id;
        let public = &self.three_ds.public_url;
        let method = method_url.as_ref().map(|url| {
            json!({
                "page_url": format!("{public}/3ds/method/{id}"),
                "three_ds_method_url": url,
                "three_ds_method_data": messages::method_data(id, &format!("{public}/3ds/method-notification")),
            })
        });
        Ok(json!({
            "three_ds_server_trans_id": id,
            "enrolled": match enrollment {
                Enrollment::Enrolled { .. } => Value::Bool(true),
                Enrollment::NotEnrolled => Value::Bool(false),
                Enrollment::Unknown => Value::Null,
            },
            "method": method,
            "method_budget_ms": ms(self.three_ds.method_budget),
            "expires_at": rfc3339(now + ms(self.three_ds.prepared_ttl)),
        }))
    }

    /// A leased payment in `requires_3ds`, just inserted: send the AReq and act on the
    /// ARes. Gives the lease back.
    pub(crate) async fn authenticate(
        &self,
        merchant: &Merchant,
        mut p: PaymentRecord,
        req: &NewPayment,
        prepared: Option<Box<AuthenticationRecord>>,
        method_url: Option<String>,
    ) -> Result<Value, RpcError> {
        let now = now_ms();
        let (mut auth, comp_ind) = match prepared {
            Some(auth) => {
                let comp_ind = self.wait_for_method(&auth).await?;
                (*auth, comp_ind)
            }
            None => {
                let auth = AuthenticationRecord {
                    three_ds_server_trans_id: messages::new_trans_id(),
                    merchant_id: p.merchant_id.clone(),
                    card_token: p.card_token.clone(),
                    transaction_id: Some(p.transaction_id.clone()),
                    method_url: method_url.clone(),
                    created_at: now,
                    updated_at: now,
                    ..AuthenticationRecord::default()
                };
                self.store.insert_authentication(&auth).await?;
                // The merchant did not run the range's 3DS Method: N; no method: U.
                (auth, if method_url.is_some() { "N" } else { "U" })
            }
        };
        let mode = req.three_ds;
        set_public_three_ds(&mut p, |v| {
            v.insert("mode".into(), Value::from(mode.as_str()));
            v.insert("three_ds_server_trans_id".into(), Value::from(auth.three_ds_server_trans_id.clone()));
            v.insert("method_completion".into(), Value::from(comp_ind));
            v.insert("challenge".into(), Value::Bool(false));
        });
        let outcome = self.send_areq(&p, &merchant.name, req, &auth, comp_ind).await?;
        if let AresOutcome::Unavailable(reason) = &outcome {
            tracing::warn!(transaction_id = %p.transaction_id, %reason, "3-D Secure unavailable");
        }
        let now = now_ms();
        let mut ledger = Vec::new();
        let fallback = match &outcome {
            AresOutcome::NotEnrolled => Some(AutoFallback::NotEnrolled),
            AresOutcome::Unavailable(_) => Some(AutoFallback::DsUnavailable),
            AresOutcome::TimedOut(_) => Some(AutoFallback::DsTimeout),
            AresOutcome::Answered(r) if r.trans_status == "U" => Some(AutoFallback::TransStatusU),
            AresOutcome::Answered(_) | AresOutcome::UnknownToken => None,
        };
        if let Some(fallback) = fallback.filter(|f| mode == ThreeDsMode::Auto && merchant.three_ds_auto.proceeds_on(*f))
        {
            // `auto`, and the merchant lets this failure be paid without 3-D Secure (it
            // keeps the liability); the payment says what happened.
            tracing::info!(transaction_id = %p.transaction_id, fallback = fallback.as_str(), "paid without 3-D Secure");
            set_public_three_ds(&mut p, |v| {
                match &outcome {
                    AresOutcome::Answered(r) => record_result(v, r),
                    _ => {
                        v.insert("trans_status".into(), Value::Null);
                    }
                }
                v.insert("skipped".into(), Value::from(fallback.as_str()));
            });
            let amount = p.amount;
            transition(&mut p, PaymentStatus::Authorizing, LedgerKind::Authorizing, amount, now, &mut ledger)?;
            p.three_ds_expires_at = None;
            self.store.save_payment(&p, &ledger, None).await?;
            return self.authorize(&mut p, None).await;
        }
        match outcome {
            AresOutcome::Answered(r) if r.trans_status == "Y" || r.trans_status == "A" => {
                self.authorize_authenticated(p, &mut auth, &r, ledger).await.map(|(_, result)| result)?
            }
            AresOutcome::Answered(r) if r.trans_status == "C" => {
                let acs_url = r.acs_url.clone().unwrap_or_default();
                let challenge_id = hex::encode(rand::random::<[u8; 24]>());
                auth.message_version = Some(r.message_version.clone());
                auth.ds_trans_id = Some(r.ds_trans_id.clone());
                auth.acs_trans_id = Some(r.acs_trans_id.clone());
                auth.acs_url = Some(acs_url);
                auth.challenge_id = Some(challenge_id.clone());
                auth.trans_status = Some("C".into());
                auth.updated_at = now;
                self.store.save_authentication(&auth).await?;
                let challenge_url = format!("{}/3ds/challenge/{challenge_id}", self.three_ds.public_url);
                set_public_three_ds(&mut p, |v| {
                    record_result(v, &r);
                    v.insert("challenge".into(), Value::Bool(true));
                    v.insert("challenge_url".into(), Value::from(challenge_url));
                });
                p.three_ds_expires_at = Some(now + ms(self.three_ds.challenge_ttl));
                p.updated_at = now;
                let result = Ok(payment_view(&p));
                p.first_response = Some(stored_response(&result));
                self.store.save_and_release(&mut p, &ledger, None).await?;
                tracing::info!(transaction_id = %p.transaction_id, "3-D Secure challenge");
                result
            }
            AresOutcome::Answered(r) => {
                auth.ds_trans_id = Some(r.ds_trans_id.clone());
                auth.acs_trans_id = Some(r.acs_trans_id.clone());
                auth.trans_status = Some(r.trans_status.clone());
                auth.updated_at = now;
                self.store.save_authentication(&auth).await?;
                set_public_three_ds(&mut p, |v| record_result(v, &r));
                let kind = failure_kind(&r.trans_status);
                self.fail_authentication(&mut p, kind, Some(&r), ledger).await?.into_answer()
            }
            AresOutcome::NotEnrolled | AresOutcome::Unavailable(_) => self
                .fail_authentication(&mut p, AuthenticationFailureKind::Unavailable, None, ledger)
                .await?
                .into_answer(),
            AresOutcome::TimedOut(reason) => {
                tracing::warn!(transaction_id = %p.transaction_id, %reason, "AReq timed out");
                self.fail_authentication(&mut p, AuthenticationFailureKind::TimedOut, None, ledger).await?.into_answer()
            }
            AresOutcome::UnknownToken => {
                let result = self.fail(&mut p, RpcError::UnknownToken, now, &mut ledger)?;
                self.save_final(&mut p, ledger, result).await?.into_answer()
            }
        }
    }

    /// The threeDSCompInd of a prepared authentication: `Y` once the ACS's method page
    /// has notified, `N` when the budget ran out first, `U` when there is no method.
    async fn wait_for_method(&self, auth: &AuthenticationRecord) -> Result<&'static str, RpcError> {
        if auth.method_url.is_none() {
            return Ok("U");
        }
        let deadline = auth.created_at + ms(self.three_ds.method_budget);
        loop {
            let current = self.store.authentication(&auth.three_ds_server_trans_id).await?;
            if current.and_then(|a| a.method_completed_at).is_some() {
                return Ok("Y");
            }
            if now_ms() >= deadline {
                return Ok("N");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn send_areq(
        &self,
        p: &PaymentRecord,
        merchant_name: &str,
        req: &NewPayment,
        auth: &AuthenticationRecord,
        comp_ind: &str,
    ) -> Result<AresOutcome, RpcError> {
        let currency = money::currency(&p.currency)?;
        let unknown = BrowserInfo::unknown();
        let values = messages::areq_values(&AReqParams {
            three_ds_server_trans_id: &auth.three_ds_server_trans_id,
            comp_ind,
            amount: p.amount,
            currency_numeric: currency.numeric,
            exponent: currency.exponent,
            purchase_date: messages::purchase_date(now_ms()),
            merchant_id: &p.merchant_id,
            merchant_name,
            public_url: &self.three_ds.public_url,
            client_ip: p.client_ip.as_deref(),
            browser: req.browser.as_ref().unwrap_or(&unknown),
        });
        let request = RelayRequest {
            token: p.card_token.clone(),
            merchant_id: p.merchant_id.clone(),
            template: AREQ_TEMPLATE,
            values,
        };
        Ok(match self.vault.relay(&request, self.three_ds.areq_timeout).await {
            RelayOutcome::Answered { status: 200, body } => {
                match AuthenticationResult::from_ares(&body, &auth.three_ds_server_trans_id) {
                    Some(r) if messages::looks_masked(&r) => self.unmasked(r, &auth.three_ds_server_trans_id).await,
                    Some(r) => AresOutcome::Answered(r),
                    None => AresOutcome::Unavailable("an ARes of unexpected shape".into()),
                }
            }
            RelayOutcome::Answered { status, body } => {
                let code = body.get("errorCode").and_then(Value::as_str).unwrap_or_default().to_owned();
                tracing::warn!(transaction_id = %p.transaction_id, status, error_code = %code, "the DS refused the AReq");
                if code == "305" {
                    AresOutcome::NotEnrolled
                } else {
                    AresOutcome::Unavailable(format!("the DS answered {status} {code}"))
                }
            }
            RelayOutcome::TokenNotFound => AresOutcome::UnknownToken,
            RelayOutcome::NotSent(reason) => AresOutcome::Unavailable(reason),
            RelayOutcome::Uncertain(reason) => AresOutcome::TimedOut(reason),
        })
    }

    /// The vault masks digit runs that could be card numbers in relayed answers, and a
    /// DS's UUID or CAVV can look like one: read the result again from the DS directly
    /// (no card data on that path), keeping the ARes's challenge URL.
    async fn unmasked(&self, ares: AuthenticationResult, three_ds_server_trans_id: &str) -> AresOutcome {
        tracing::info!(%three_ds_server_trans_id, "the relay masked part of the ARes; reading the DS's results");
        match self.directory.results(three_ds_server_trans_id).await {
            Results::Found(r) if !messages::looks_masked(&r) && r.trans_status == ares.trans_status => {
                AresOutcome::Answered(AuthenticationResult { acs_url: ares.acs_url, ..r })
            }
            Results::Found(_) => AresOutcome::Unavailable("a masked ARes and results that differ".into()),
            Results::NotFound => AresOutcome::Unavailable("a masked ARes and no results at the DS".into()),
            Results::Unavailable(e) => AresOutcome::Unavailable(format!("a masked ARes; results unavailable: {e}")),
        }
    }

    /// Y or A: move to `authorizing` (saved before anything is sent) and authorize with
    /// ECI + CAVV. The CAVV is never written down: it goes from the ARes (or the DS's
    /// results) to the authorization in memory.
    async fn authorize_authenticated(
        &self,
        mut p: PaymentRecord,
        auth: &mut AuthenticationRecord,
        r: &AuthenticationResult,
        mut ledger: Vec<LedgerRow>,
    ) -> Result<(PaymentRecord, Result<Value, RpcError>), RpcError> {
        let now = now_ms();
        auth.message_version = Some(r.message_version.clone());
        auth.ds_trans_id = Some(r.ds_trans_id.clone());
        auth.acs_trans_id = Some(r.acs_trans_id.clone());
        auth.trans_status = Some(r.trans_status.clone());
        auth.updated_at = now;
        self.store.save_authentication(auth).await?;
        set_public_three_ds(&mut p, |v| {
            record_result(v, r);
            v.remove("challenge_url");
        });
        let amount = p.amount;
        transition(&mut p, PaymentStatus::Authorizing, LedgerKind::Authorizing, amount, now, &mut ledger)?;
        p.three_ds_expires_at = None;
        self.store.save_payment(&p, &ledger, None).await?;
        let proof = ThreeDsProof {
            message_version: r.message_version.clone(),
            trans_status: r.trans_status.clone(),
            eci: r.eci.clone(),
            // Y and A always carry one (`from_ares` and the results reader refuse them
            // without); an empty one would be refused by the vault's template, unsent.
            authentication_value: r.authentication_value.clone().unwrap_or_default(),
            ds_trans_id: r.ds_trans_id.clone(),
        };
        let result = self.authorize(&mut p, Some(proof)).await;
        Ok((p, result))
    }

    /// Fail a leased payment for `kind`, save it, give the lease back. The `Err` is the
    /// store's; the [`Settled`] answer is the 3-D Secure error.
    pub(crate) async fn fail_authentication(
        &self,
        p: &mut PaymentRecord,
        kind: AuthenticationFailureKind,
        r: Option<&AuthenticationResult>,
        mut ledger: Vec<LedgerRow>,
    ) -> Result<Settled, RpcError> {
        let error = RpcError::Authentication(AuthenticationFailure {
            kind,
            transaction_id: p.transaction_id.clone(),
            trans_status: r.map(|r| r.trans_status.clone()),
            trans_status_reason: r.and_then(|r| r.trans_status_reason.clone()),
        });
        let result = self.fail(p, error, now_ms(), &mut ledger)?;
        self.save_final(p, ledger, result).await
    }

    async fn save_final(
        &self,
        p: &mut PaymentRecord,
        ledger: Vec<LedgerRow>,
        result: Settled,
    ) -> Result<Settled, RpcError> {
        p.three_ds_expires_at = None;
        set_public_three_ds(p, |v| {
            v.remove("challenge_url");
        });
        if p.first_response.is_none() {
            p.first_response = Some(result.stored_response());
        }
        self.store.save_and_release(p, &ledger, None).await?;
        Ok(result)
    }

    /// Finish the authentication of a payment waiting in `requires_3ds`, from the DS's
    /// results (after an RReq, a CRes, a `payment.check`); expire it when its window
    /// is over. Waits for the payment's lease; returns the payment as it is after.
    pub async fn complete_authentication(&self, transaction_id: &str) -> Result<PaymentRecord, RpcError> {
        let p = self.lease(transaction_id).await?;
        self.settle_authentication(p).await
    }

    /// [`complete_authentication`](Self::complete_authentication) on a leased payment.
    pub async fn settle_authentication(&self, p: PaymentRecord) -> Result<PaymentRecord, RpcError> {
        if p.status != PaymentStatus::Requires3ds {
            self.store.release_lease(&p.transaction_id).await?;
            return Ok(p);
        }
        let expired = p.three_ds_expires_at.is_some_and(|at| now_ms() >= at);
        let auth = self.store.authentication_of_payment(&p.transaction_id).await?;
        let result = match &auth {
            Some(a) if a.acs_trans_id.is_some() => match self.directory.results(&a.three_ds_server_trans_id).await {
                Results::Found(r) if r.final_result && Some(&r.acs_trans_id) == a.acs_trans_id.as_ref() => Some(r),
                Results::Found(_) | Results::NotFound => None,
                Results::Unavailable(reason) => {
                    tracing::warn!(transaction_id = %p.transaction_id, %reason, "3DS results unavailable");
                    None
                }
            },
            _ => None,
        };
        match (result, auth) {
            (Some(r), Some(mut auth)) if r.trans_status == "Y" || r.trans_status == "A" => {
                let (p, _) = self.authorize_authenticated(p, &mut auth, &r, Vec::new()).await?;
                Ok(p)
            }
            (Some(r), Some(mut auth)) => {
                auth.trans_status = Some(r.trans_status.clone());
                auth.updated_at = now_ms();
                self.store.save_authentication(&auth).await?;
                let mut p = p;
                set_public_three_ds(&mut p, |v| record_result(v, &r));
                // The answer (the 3-D Secure error) went to whoever created the payment;
                // here only the saved payment matters.
                let _answer =
                    self.fail_authentication(&mut p, failure_kind(&r.trans_status), Some(&r), Vec::new()).await?;
                Ok(p)
            }
            _ if expired => self.expire_authentication(p).await,
            _ => {
                self.store.release_lease(&p.transaction_id).await?;
                Ok(p)
            }
        }
    }

    /// The challenge window (or the AReq's time) ran out with no result: `expired`.
    async fn expire_authentication(&self, mut p: PaymentRecord) -> Result<PaymentRecord, RpcError> {
        let now = now_ms();
        let mut ledger = Vec::new();
        p.error_code = Some(AuthenticationFailureKind::TimedOut.code());
        transition(&mut p, PaymentStatus::Expired, LedgerKind::Expire3ds, 0, now, &mut ledger)?;
        p.three_ds_expires_at = None;
        set_public_three_ds(&mut p, |v| {
            v.remove("challenge_url");
            v.insert("expired".into(), Value::Bool(true));
        });
        self.store.save_and_release(&mut p, &ledger, None).await?;
        tracing::info!(transaction_id = %p.transaction_id, "3-D Secure window expired");
        Ok(p)
    }

    /// A 3DS Method notification from the cardholder's browser.
    pub async fn method_completed(&self, three_ds_server_trans_id: &str) -> Result<bool, RpcError> {
        Ok(self.store.method_completed(three_ds_server_trans_id, now_ms()).await?)
    }
}

/// The `three_ds` object `payment.check` shows, and the `next_action` of a payment
/// waiting for its cardholder.
pub fn view(p: &PaymentRecord) -> (Option<Value>, Option<Value>) {
    let mut view = public_three_ds(p);
    if view.is_empty() {
        return (None, None);
    }
    let challenge_url = view.remove("challenge_url");
    let next_action = match challenge_url {
        Some(url) if p.status == PaymentStatus::Requires3ds => Some(json!({ "type": "redirect", "url": url })),
        _ => None,
    };
    (Some(Value::Object(view)), next_action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_their_codes() {
        assert_eq!(failure_kind("N").code(), -31020);
        assert_eq!(failure_kind("R").code(), -31021);
        assert_eq!(failure_kind("U").code(), -31022);
    }
}
