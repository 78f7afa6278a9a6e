//! The issuer's rules, as pure functions: which authorizations it approves, and what a
//! capture, void or refund does to an authorization and to the card's balance.
//!
//! The store runs these inside its transaction, after locking the rows involved, and
//! writes back exactly what they return ([`Transition`]), so the arithmetic lives here
//! once for both database backends and is unit-tested without one.
//!
//! Balances: `balance` is the money on the card; `held` is what open authorizations
//! reserve; `available = balance - held`. An authorization moves `amount` into `held`
//! (or, with `capture`, takes it from `balance` at once); a void releases the hold; a
//! capture takes the captured part from `balance` and releases it from `held` — a final
//! capture releases the whole rest of the hold, a non-final one keeps it for further
//! captures; a refund puts money back into `balance`.

use crate::cards::{CardBehavior, CardNumber, Expiry};

/// ISO 8583 response codes (field 39) the sandbox answers with when it declines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeclineCode {
    /// `05` do not honor: the generic decline.
    DoNotHonor,
    /// `14` invalid card number: not 12–19 digits or fails the Luhn check.
    InvalidCardNumber,
    /// `43` stolen card, pick up (the lost/stolen test card).
    StolenCard,
    /// `51` insufficient funds: the amount exceeds the available balance.
    InsufficientFunds,
    /// `54` expired card: by the issuer's records, or the expiry date has passed.
    ExpiredCard,
    /// `N7` CVV2/CVC2 mismatch (Visa's code; Mastercard says `82` in some regions).
    CvcMismatch,
    /// `96` system malfunction: a processing error; the same request may be retried.
    SystemMalfunction,
    /// `63` security violation: the 3-D Secure authentication value (CAVV) is not one the
    /// network issued for this card, amount and currency, or it was used before.
    ThreeDsAuthenticationInvalid,
}

impl DeclineCode {
    /// Every code, for documentation tests and parsing.
    pub const ALL: [DeclineCode; 8] = [
        DeclineCode::DoNotHonor,
        DeclineCode::InvalidCardNumber,
        DeclineCode::StolenCard,
        DeclineCode::InsufficientFunds,
        DeclineCode::ExpiredCard,
        DeclineCode::CvcMismatch,
        DeclineCode::SystemMalfunction,
        DeclineCode::ThreeDsAuthenticationInvalid,
    ];

    /// The two-character code on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineCode::DoNotHonor => "05",
            DeclineCode::InvalidCardNumber => "14",
            DeclineCode::StolenCard => "43",
            DeclineCode::InsufficientFunds => "51",
            DeclineCode::ExpiredCard => "54",
            DeclineCode::CvcMismatch => "N7",
            DeclineCode::SystemMalfunction => "96",
            DeclineCode::ThreeDsAuthenticationInvalid => "63",
        }
    }

    /// Human-readable reason sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            DeclineCode::DoNotHonor => "do not honor",
            DeclineCode::InvalidCardNumber => "invalid card number",
            DeclineCode::StolenCard => "stolen card, pick up",
            DeclineCode::InsufficientFunds => "insufficient funds",
            DeclineCode::ExpiredCard => "expired card",
            DeclineCode::CvcMismatch => "CVV2/CVC2 mismatch",
            DeclineCode::SystemMalfunction => "system malfunction",
            DeclineCode::ThreeDsAuthenticationInvalid => {
                "security violation: 3-D Secure authentication value not valid"
            }
        }
    }

    /// The code stored as text.
    pub fn parse(code: &str) -> Option<DeclineCode> {
        DeclineCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

/// Where an authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationStatus {
    /// The issuer declined it; nothing was held and nothing can follow.
    Declined,
    /// Approved; funds are held until capture or void.
    Authorized,
    /// Part captured by non-final captures; the rest is still held for more.
    PartiallyCaptured,
    /// Closed by a final capture (of all or part); refunds may follow.
    Captured,
    /// Part of the captured amount was refunded.
    PartiallyRefunded,
    /// The whole captured amount was refunded.
    Refunded,
    /// The hold was released without capture.
    Voided,
}

impl AuthorizationStatus {
    /// Stable text on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationStatus::Declined => "declined",
            AuthorizationStatus::Authorized => "authorized",
            AuthorizationStatus::PartiallyCaptured => "partially_captured",
            AuthorizationStatus::Captured => "captured",
            AuthorizationStatus::PartiallyRefunded => "partially_refunded",
            AuthorizationStatus::Refunded => "refunded",
            AuthorizationStatus::Voided => "voided",
        }
    }

    /// The status stored as text.
    pub fn parse(text: &str) -> Option<AuthorizationStatus> {
        [
            AuthorizationStatus::Declined,
            AuthorizationStatus::Authorized,
            AuthorizationStatus::PartiallyCaptured,
            AuthorizationStatus::Captured,
            AuthorizationStatus::PartiallyRefunded,
            AuthorizationStatus::Refunded,
            AuthorizationStatus::Voided,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One authorization as the network records it. No card number: only its masked form
/// and the key of its balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The network's id, given to the gateway for capture/void/refund.
    pub acquirer_ref: String,
    /// The gateway's transaction id; unique, the idempotency key.
    pub reference: String,
    pub merchant_id: String,
    /// `424242******4242`.
    pub masked_pan: String,
    /// [`CardNumber::balance_key`] of the card.
    pub balance_key: String,
    /// ISO 4217 alphabetic code.
    pub currency: String,
    /// Authorized amount in minor units, > 0.
    pub amount: i64,
    pub status: AuthorizationStatus,
    /// Six characters when approved.
    pub auth_code: Option<String>,
    /// Retrieval reference number, 12 digits.
    pub rrn: String,
    /// Set exactly when `status` is `Declined`.
    pub decline_code: Option<DeclineCode>,
    /// 0 ≤ captured_amount ≤ amount.
    pub captured_amount: i64,
    /// 0 ≤ refunded_amount ≤ captured_amount.
    pub refunded_amount: i64,
    /// Digest of what was asked (merchant, card, amount, currency, capture): a repeated
    /// reference with a different request is a conflict, not a replay.
    pub request_digest: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl Authorization {
    pub fn approved(&self) -> bool {
        self.decline_code.is_none()
    }
}

/// A refund of (part of) a captured authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub acquirer_ref: String,
    /// The gateway's refund id; unique per authorization, the idempotency key.
    pub refund_reference: String,
    pub amount: i64,
    pub rrn: String,
    pub created_at: i64,
}

/// Kinds of ledger entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    /// Approved authorization: `amount` held (or settled at once, see `Capture`).
    Authorization,
    /// Declined authorization: nothing moved; the entry carries the decline code.
    Decline,
    /// Settlement of `amount`.
    Capture,
    /// The uncaptured remainder of a hold released at (partial) capture.
    Release,
    /// The hold released without capture.
    Void,
    /// `amount` returned to the card.
    Refund,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Authorization => "authorization",
            LedgerKind::Decline => "decline",
            LedgerKind::Capture => "capture",
            LedgerKind::Release => "release",
            LedgerKind::Void => "void",
            LedgerKind::Refund => "refund",
        }
    }
}

/// A ledger entry before the store gives it a sequence number; the authorization's
/// references, merchant, masked card and currency are added from the authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerDraft {
    pub kind: LedgerKind,
    pub amount: i64,
    pub refund_reference: Option<String>,
}

/// Why a capture, void or refund was refused. Each has its own stable API code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OperationError {
    #[error("no authorization with this acquirer_ref")]
    UnknownAuthorization,
    #[error("the authorization was declined; there is nothing to capture, void or refund")]
    AuthorizationDeclined,
    #[error("the authorization is already captured")]
    AlreadyCaptured,
    #[error("the authorization is voided")]
    AlreadyVoided,
    #[error("the capture amount exceeds the authorized amount")]
    CaptureExceedsAuthorization,
    #[error("a captured authorization cannot be voided; refund it instead")]
    CannotVoidCaptured,
    #[error("the authorization is not captured; void it instead")]
    NotCaptured,
    #[error("the refund amount exceeds the captured amount not yet refunded")]
    RefundExceedsCaptured,
    #[error("this refund_reference was already used for a different amount")]
    RefundReferenceConflict,
}

/// What an operation changes: the authorization's new state, the balance deltas of its
/// card, the ledger entries to append, and the refund row (for refunds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub authorization: Authorization,
    pub balance_delta: i64,
    pub held_delta: i64,
    pub ledger: Vec<LedgerDraft>,
    pub refund: Option<Refund>,
}

/// The issuer's verdict before looking at the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screening {
    /// A decline that needs no balance; `None` means "approve if funds allow".
    pub decline: Option<DeclineCode>,
    /// Balance the card starts with in a currency it has not used yet.
    pub initial_balance: i64,
    /// Answer only after the configured delay (the slow test card).
    pub delayed: bool,
}

/// Screen an authorization: card number, expiry date, CVC format, the card's row in the
/// test-card table. The balance check comes later, under the balance row's lock.
pub fn screen(number: &CardNumber, expiry: Expiry, cvc: Option<&str>, today: time::Date) -> Screening {
    let declined = |code| Screening { decline: Some(code), initial_balance: 0, delayed: false };
    let Some(behavior) = number.behavior() else {
        return declined(DeclineCode::InvalidCardNumber);
    };
    if expiry.is_expired_at(today) {
        return declined(DeclineCode::ExpiredCard);
    }
    if cvc.is_some_and(|c| !crate::cards::cvc_well_formed(c)) {
        return declined(DeclineCode::CvcMismatch);
    }
    match behavior {
        CardBehavior::Approve { balance } => Screening { decline: None, initial_balance: balance, delayed: false },
        CardBehavior::ApproveAfterDelay => {
            Screening { decline: None, initial_balance: crate::cards::LARGE_BALANCE, delayed: true }
        }
        CardBehavior::Decline(code) => declined(code),
    }
}

/// What an authorization presents of its 3-D Secure authentication (its `three_ds`).
#[derive(Clone, PartialEq, Eq)]
pub struct ThreeDsClaim {
    pub ds_trans_id: String,
    /// The CAVV as the 3DS Server received it.
    pub authentication_value: String,
    /// ISO 4217 numeric code of the authorization's currency (`None`: not one the
    /// sandbox knows, which matches no authentication).
    pub currency_numeric: Option<&'static str>,
}

impl std::fmt::Debug for ThreeDsClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreeDsClaim").field("ds_trans_id", &self.ds_trans_id).finish_non_exhaustive()
    }
}

/// What the network recorded for the authentication a `dsTransID` names.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedAuthentication {
    /// [`CardNumber::balance_key`] of the authenticated card.
    pub card_key: String,
    pub purchase_amount: i64,
    /// ISO 4217 numeric.
    pub purchase_currency: String,
    /// The CAVV, for `Y` and `A` only.
    pub authentication_value: Option<String>,
    pub cavv_used: bool,
}

impl std::fmt::Debug for IssuedAuthentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedAuthentication").field("cavv_used", &self.cavv_used).finish_non_exhaustive()
    }
}

/// The issuer's CAVV check: the network issued this CAVV for this `dsTransID`, the same
/// card, amount and currency, and no authorization used it yet. The CAVV is compared in
/// constant time. A failed check declines with `63`.
pub fn three_ds_accepted(
    issued: Option<&IssuedAuthentication>,
    claim: &ThreeDsClaim,
    card_key: &str,
    amount: i64,
) -> bool {
    use subtle::ConstantTimeEq as _;
    let Some(issued) = issued else { return false };
    let Some(cavv) = issued.authentication_value.as_deref() else { return false };
    let same_value = bool::from(cavv.as_bytes().ct_eq(claim.authentication_value.as_bytes()));
    same_value
        && !issued.cavv_used
        && issued.card_key == card_key
        && issued.purchase_amount == amount
        && claim.currency_numeric == Some(issued.purchase_currency.as_str())
}

/// A card's balance in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub balance: i64,
    pub held: i64,
}

impl Balance {
    pub fn available(&self) -> i64 {
        self.balance.saturating_sub(self.held)
    }
}

/// Hold `amount` (or settle it at once with `capture`), or decline with `51`.
pub fn hold_funds(current: Balance, amount: i64, capture: bool) -> Result<Balance, DeclineCode> {
    if amount > current.available() {
        return Err(DeclineCode::InsufficientFunds);
    }
    Ok(if capture {
        Balance { balance: current.balance - amount, held: current.held }
    } else {
        Balance { balance: current.balance, held: current.held + amount }
    })
}

/// Status of an authorization with nothing left on hold, from what was refunded.
fn settled_status(captured_amount: i64, refunded_amount: i64) -> AuthorizationStatus {
    if refunded_amount == 0 {
        AuthorizationStatus::Captured
    } else if refunded_amount == captured_amount {
        AuthorizationStatus::Refunded
    } else {
        AuthorizationStatus::PartiallyRefunded
    }
}

/// Capture `amount` (all that is still held when `None`) of an open hold. A `final`
/// capture releases whatever stays uncaptured and closes the authorization; a non-final
/// one keeps the rest on hold for later captures (`partially_captured`).
pub fn capture(
    auth: &Authorization,
    amount: Option<i64>,
    final_capture: bool,
    now: i64,
) -> Result<Transition, OperationError> {
    match auth.status {
        AuthorizationStatus::Authorized | AuthorizationStatus::PartiallyCaptured => {}
        AuthorizationStatus::Declined => return Err(OperationError::AuthorizationDeclined),
        AuthorizationStatus::Voided => return Err(OperationError::AlreadyVoided),
        AuthorizationStatus::Captured | AuthorizationStatus::PartiallyRefunded | AuthorizationStatus::Refunded => {
            return Err(OperationError::AlreadyCaptured)
        }
    }
    let still_held = auth.amount - auth.captured_amount;
    let amount = amount.unwrap_or(still_held);
    if amount > still_held {
        return Err(OperationError::CaptureExceedsAuthorization);
    }
    let captured_amount = auth.captured_amount + amount;
    let closes = final_capture || captured_amount == auth.amount;
    let mut ledger = vec![LedgerDraft { kind: LedgerKind::Capture, amount, refund_reference: None }];
    let (status, held_delta) = if closes {
        let released = still_held - amount;
        if released > 0 {
            ledger.push(LedgerDraft { kind: LedgerKind::Release, amount: released, refund_reference: None });
        }
        (settled_status(captured_amount, auth.refunded_amount), -still_held)
    } else {
        (AuthorizationStatus::PartiallyCaptured, -amount)
    };
    let authorization = Authorization { status, captured_amount, updated_at: now, ..auth.clone() };
    Ok(Transition { authorization, balance_delta: -amount, held_delta, ledger, refund: None })
}

/// Release what an authorization still holds: the whole hold of an uncaptured one
/// (`voided`), or the rest after non-final captures (then it is closed as captured).
pub fn void(auth: &Authorization, now: i64) -> Result<Transition, OperationError> {
    match auth.status {
        AuthorizationStatus::Authorized | AuthorizationStatus::PartiallyCaptured => {}
        AuthorizationStatus::Declined => return Err(OperationError::AuthorizationDeclined),
        AuthorizationStatus::Voided => return Err(OperationError::AlreadyVoided),
        AuthorizationStatus::Captured | AuthorizationStatus::PartiallyRefunded | AuthorizationStatus::Refunded => {
            return Err(OperationError::CannotVoidCaptured)
        }
    }
    let still_held = auth.amount - auth.captured_amount;
    let status = if auth.captured_amount == 0 {
        AuthorizationStatus::Voided
    } else {
        settled_status(auth.captured_amount, auth.refunded_amount)
    };
    let authorization = Authorization { status, updated_at: now, ..auth.clone() };
    Ok(Transition {
        authorization,
        balance_delta: 0,
        held_delta: -still_held,
        ledger: vec![LedgerDraft { kind: LedgerKind::Void, amount: still_held, refund_reference: None }],
        refund: None,
    })
}

/// Refund `amount` of what was captured and not yet refunded. Several partial refunds
/// may follow, each with its own `refund_reference`.
pub fn refund(
    auth: &Authorization,
    amount: i64,
    refund_reference: &str,
    rrn: String,
    now: i64,
) -> Result<Transition, OperationError> {
    match auth.status {
        AuthorizationStatus::Captured
        | AuthorizationStatus::PartiallyCaptured
        | AuthorizationStatus::PartiallyRefunded => {}
        AuthorizationStatus::Refunded => return Err(OperationError::RefundExceedsCaptured),
        AuthorizationStatus::Declined => return Err(OperationError::AuthorizationDeclined),
        AuthorizationStatus::Voided => return Err(OperationError::AlreadyVoided),
        AuthorizationStatus::Authorized => return Err(OperationError::NotCaptured),
    }
    if amount > auth.captured_amount - auth.refunded_amount {
        return Err(OperationError::RefundExceedsCaptured);
    }
    let refunded_amount = auth.refunded_amount + amount;
    let status = match auth.status {
        // Still holding the rest: it stays open for captures.
        AuthorizationStatus::PartiallyCaptured => AuthorizationStatus::PartiallyCaptured,
        _ => settled_status(auth.captured_amount, refunded_amount),
    };
    let authorization = Authorization { status, refunded_amount, updated_at: now, ..auth.clone() };
    let refund = Refund {
        acquirer_ref: auth.acquirer_ref.clone(),
        refund_reference: refund_reference.to_owned(),
        amount,
        rrn,
        created_at: now,
    };
    Ok(Transition {
        authorization,
        balance_delta: amount,
        held_delta: 0,
        ledger: vec![LedgerDraft {
            kind: LedgerKind::Refund,
            amount,
            refund_reference: Some(refund_reference.to_owned()),
        }],
        refund: Some(refund),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorized(amount: i64) -> Authorization {
        Authorization {
            acquirer_ref: "acq_1".into(),
            reference: "tx_1".into(),
            merchant_id: "m".into(),
            masked_pan: "424242******4242".into(),
            balance_key: "k".into(),
            currency: "USD".into(),
            amount,
            status: AuthorizationStatus::Authorized,
            auth_code: Some("A1B2C3".into()),
            rrn: "012345678901".into(),
            decline_code: None,
            captured_amount: 0,
            refunded_amount: 0,
            request_digest: "d".into(),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn a_cavv_is_accepted_once_for_its_card_amount_and_currency() {
        let issued = IssuedAuthentication {
            card_key: "card".into(),
            purchase_amount: 1000,
            purchase_currency: "860".into(),
            authentication_value: Some("AAABBBCCCDDDEEEFFFGGGHHHIII=".into()),
            cavv_used: false,
        };
        let claim = ThreeDsClaim {
            ds_trans_id: "ds".into(),
            authentication_value: "AAABBBCCCDDDEEEFFFGGGHHHIII=".into(),
            currency_numeric: Some("860"),
        };
        assert!(three_ds_accepted(Some(&issued), &claim, "card", 1000));
        assert!(!three_ds_accepted(None, &claim, "card", 1000), "unknown dsTransID");
        assert!(!three_ds_accepted(Some(&issued), &claim, "other card", 1000));
        assert!(!three_ds_accepted(Some(&issued), &claim, "card", 999));
        let used = IssuedAuthentication { cavv_used: true, ..issued.clone() };
        assert!(!three_ds_accepted(Some(&used), &claim, "card", 1000));
        let no_cavv = IssuedAuthentication { authentication_value: None, ..issued.clone() };
        assert!(!three_ds_accepted(Some(&no_cavv), &claim, "card", 1000));
        let other_value = ThreeDsClaim { authentication_value: "AAABBBCCCDDDEEEFFFGGGHHHIIJ=".into(), ..claim.clone() };
        assert!(!three_ds_accepted(Some(&issued), &other_value, "card", 1000));
        let other_currency = ThreeDsClaim { currency_numeric: Some("840"), ..claim.clone() };
        assert!(!three_ds_accepted(Some(&issued), &other_currency, "card", 1000));
        let unknown_currency = ThreeDsClaim { currency_numeric: None, ..claim };
        assert!(!three_ds_accepted(Some(&issued), &unknown_currency, "card", 1000));
    }

    #[test]
    fn holds_respect_the_available_balance() {
        let b = Balance { balance: 1000, held: 0 };
        let b = hold_funds(b, 600, false).unwrap();
        assert_eq!(b, Balance { balance: 1000, held: 600 });
        assert_eq!(hold_funds(b, 401, false), Err(DeclineCode::InsufficientFunds));
        assert_eq!(hold_funds(b, 400, true).unwrap(), Balance { balance: 600, held: 600 });
    }

    #[test]
    fn partial_capture_releases_the_rest_of_the_hold() {
        let t = capture(&authorized(1000), Some(300), true, 2).unwrap();
        assert_eq!((t.balance_delta, t.held_delta), (-300, -1000));
        assert_eq!(t.authorization.status, AuthorizationStatus::Captured);
        assert_eq!(t.authorization.captured_amount, 300);
        assert_eq!(
            t.ledger.iter().map(|l| (l.kind, l.amount)).collect::<Vec<_>>(),
            [(LedgerKind::Capture, 300), (LedgerKind::Release, 700)]
        );
        assert_eq!(capture(&t.authorization, None, true, 3), Err(OperationError::AlreadyCaptured));
        assert_eq!(void(&t.authorization, 3), Err(OperationError::CannotVoidCaptured));
        assert_eq!(capture(&authorized(1000), Some(1001), true, 2), Err(OperationError::CaptureExceedsAuthorization));
    }

    #[test]
    fn non_final_captures_keep_the_rest_on_hold() {
        let first = capture(&authorized(1000), Some(300), false, 2).unwrap();
        assert_eq!((first.balance_delta, first.held_delta), (-300, -300));
        assert_eq!(first.authorization.status, AuthorizationStatus::PartiallyCaptured);
        let refunded = refund(&first.authorization, 100, "r1", "1".into(), 3).unwrap().authorization;
        assert_eq!(refunded.status, AuthorizationStatus::PartiallyCaptured);
        assert_eq!(capture(&refunded, Some(701), false, 4), Err(OperationError::CaptureExceedsAuthorization));
        let second = capture(&refunded, Some(200), true, 4).unwrap();
        assert_eq!((second.balance_delta, second.held_delta), (-200, -700));
        assert_eq!(second.authorization.status, AuthorizationStatus::PartiallyRefunded);
        assert_eq!(second.authorization.captured_amount, 500);
        assert_eq!(
            second.ledger.iter().map(|l| (l.kind, l.amount)).collect::<Vec<_>>(),
            [(LedgerKind::Capture, 200), (LedgerKind::Release, 500)]
        );
        // Capturing everything that is left closes it without `final`.
        let all = capture(&first.authorization, None, false, 5).unwrap().authorization;
        assert_eq!((all.status, all.captured_amount), (AuthorizationStatus::Captured, 1000));
        // A void after a partial capture releases only the rest.
        let rest = void(&first.authorization, 5).unwrap();
        assert_eq!((rest.held_delta, rest.authorization.status), (-700, AuthorizationStatus::Captured));
    }

    #[test]
    fn refunds_never_exceed_what_was_captured() {
        let captured = capture(&authorized(1000), Some(500), true, 2).unwrap().authorization;
        let first = refund(&captured, 200, "r1", "1".into(), 3).unwrap();
        assert_eq!(first.authorization.status, AuthorizationStatus::PartiallyRefunded);
        assert_eq!(refund(&first.authorization, 301, "r2", "2".into(), 4), Err(OperationError::RefundExceedsCaptured));
        let second = refund(&first.authorization, 300, "r2", "2".into(), 4).unwrap();
        assert_eq!(second.authorization.status, AuthorizationStatus::Refunded);
        assert_eq!(second.balance_delta, 300);
        assert_eq!(refund(&second.authorization, 1, "r3", "3".into(), 5), Err(OperationError::RefundExceedsCaptured));
        assert_eq!(refund(&authorized(10), 1, "r", "4".into(), 5), Err(OperationError::NotCaptured));
    }

    #[test]
    fn voided_and_declined_authorizations_are_final() {
        let voided = void(&authorized(10), 2).unwrap().authorization;
        assert_eq!(void(&voided, 3), Err(OperationError::AlreadyVoided));
        assert_eq!(capture(&voided, None, true, 3), Err(OperationError::AlreadyVoided));
        let declined = Authorization {
            status: AuthorizationStatus::Declined,
            decline_code: Some(DeclineCode::DoNotHonor),
            ..authorized(10)
        };
        assert_eq!(capture(&declined, None, true, 3), Err(OperationError::AuthorizationDeclined));
        assert_eq!(void(&declined, 3), Err(OperationError::AuthorizationDeclined));
    }

    #[test]
    fn screening_follows_the_test_card_table() {
        let today = time::macros::date!(2030 - 01 - 01);
        let future = Expiry::new(12, 2035).unwrap();
        let code = |n: &str, cvc: Option<&str>| screen(&CardNumber::new(n), future, cvc, today).decline;
        assert_eq!(code("4242424242424242", Some("123")), None);
        assert_eq!(code("4000000000000002", None), Some(DeclineCode::DoNotHonor));
        assert_eq!(code("4000000000009979", None), Some(DeclineCode::StolenCard));
        assert_eq!(code("4000000000000069", None), Some(DeclineCode::ExpiredCard));
        assert_eq!(code("4000000000000127", Some("123")), Some(DeclineCode::CvcMismatch));
        assert_eq!(code("4000000000000119", None), Some(DeclineCode::SystemMalfunction));
        assert_eq!(code("4242424242424241", None), Some(DeclineCode::InvalidCardNumber));
        assert_eq!(code("4242424242424242", Some("12a")), Some(DeclineCode::CvcMismatch));
        assert!(screen(&CardNumber::new("4000000000000259"), future, None, today).delayed);
        let past = Expiry::new(12, 2029).unwrap();
        assert_eq!(
            screen(&CardNumber::new("4242424242424242"), past, None, today).decline,
            Some(DeclineCode::ExpiredCard)
        );
        for c in DeclineCode::ALL {
            assert_eq!(DeclineCode::parse(c.as_str()), Some(c));
        }
    }
}
