//! The gateway's records, as the store reads and writes them.

use crate::payments::CaptureMethod;
use crate::state::{AfterExpired, PaymentStatus};
use crate::three_ds::{AutoSettings, ThreeDsMode};

/// A merchant: the vault's merchant id, the API service id, the sealed API secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantRecord {
    pub merchant_id: String,
    pub service_id: String,
    pub name: String,
    /// Hex of nonce ‖ AES-256-GCM ciphertext (see `secrets.rs`).
    pub secret_sealed: String,
    pub created_at: i64,
    /// What `three_ds: auto` does for this merchant.
    pub three_ds_auto: AutoSettings,
    /// The payment widget's settings.
    pub widget: WidgetSettings,
}

/// A merchant's payment-widget settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WidgetSettings {
    /// Origins whose pages may embed the card form (`paysys.js`) and call the checkout
    /// endpoints cross-origin; each a serialised origin
    /// ([`paysys_widget::origin::parse_origin`]), compared exactly.
    pub allowed_origins: Vec<String>,
    /// The hosted checkout page may be framed by the allowed origins (otherwise by none).
    pub allow_checkout_framing: bool,
    /// The card-testing switch is armed: a burst of declines closes this merchant's
    /// checkouts for new attempts.
    pub card_testing_guard: bool,
    /// When the switch tripped (unix ms); `None`: checkouts are open.
    pub card_testing_tripped_at: Option<i64>,
}

impl Default for WidgetSettings {
    fn default() -> Self {
        WidgetSettings {
            allowed_origins: Vec::new(),
            allow_checkout_framing: false,
            card_testing_guard: true,
            card_testing_tripped_at: None,
        }
    }
}

/// Where a checkout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutStatus {
    /// The buyer may pay (a new attempt may be issued).
    Open,
    /// A payment is running (or waits for the cardholder's 3-D Secure step).
    Processing,
    /// Paid.
    Completed,
    /// Its time ran out unpaid.
    Expired,
    /// The merchant cancelled it.
    Cancelled,
}

impl CheckoutStatus {
    pub const ALL: [CheckoutStatus; 5] = [
        CheckoutStatus::Open,
        CheckoutStatus::Processing,
        CheckoutStatus::Completed,
        CheckoutStatus::Expired,
        CheckoutStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckoutStatus::Open => "open",
            CheckoutStatus::Processing => "processing",
            CheckoutStatus::Completed => "completed",
            CheckoutStatus::Expired => "expired",
            CheckoutStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<CheckoutStatus> {
        CheckoutStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Nothing more happens to it.
    pub fn is_final(self) -> bool {
        matches!(self, CheckoutStatus::Completed | CheckoutStatus::Expired | CheckoutStatus::Cancelled)
    }
}

/// A checkout (`checkout.create`): what the buyer is asked to pay, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRecord {
    /// `chk_` + 24 base62: the hosted page's URL is a bearer link.
    pub checkout_id: String,
    pub merchant_id: String,
    /// The merchant's idempotency key, unique per merchant.
    pub partner_trans_id: String,
    /// SHA-256 of the canonical `checkout.create` params.
    pub request_digest: String,
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    pub return_url: String,
    pub cancel_url: Option<String>,
    pub capture_method: CaptureMethod,
    pub hold_ttl_sec: i64,
    pub after_expired: AfterExpired,
    pub three_ds: ThreeDsMode,
    /// `uz`, `ru` or `en`.
    pub language: String,
    /// Unix ms; an open checkout past it is expired.
    pub expires_at: i64,
    pub customer_id: Option<String>,
    pub save_card: bool,
    pub status: CheckoutStatus,
    /// SHA-256 (hex) of the client secret; the secret itself is shown once.
    pub client_secret_hash: String,
    /// The latest payment made on it.
    pub transaction_id: Option<String>,
    /// Attempts issued so far.
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One payment attempt on a checkout: the grant issued for it and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempt_id: String,
    pub checkout_id: String,
    pub merchant_id: String,
    /// 1, 2, …: the attempt's number on its checkout.
    pub number: i64,
    /// The grant's nonce.
    pub nonce: String,
    /// The page origin the grant names.
    pub origin: String,
    pub client_ip: Option<String>,
    pub created_at: i64,
    /// The grant's expiry (unix ms).
    pub expires_at: i64,
    /// When a token was paid with it (an attempt pays once).
    pub used_at: Option<i64>,
    pub transaction_id: Option<String>,
    pub outcome: Option<AttemptOutcome>,
    pub finished_at: Option<i64>,
    /// The vault's fingerprint of the card it paid with.
    pub fingerprint: Option<String>,
}

/// What an attempt's payment ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Completed,
    /// The issuer declined, or 3-D Secure did not authenticate: counts for the
    /// card-testing limits.
    Declined,
    /// Failed for another reason (unavailable, unknown token).
    Failed,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Declined => "declined",
            AttemptOutcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        [AttemptOutcome::Completed, AttemptOutcome::Declined, AttemptOutcome::Failed]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// A card saved for a merchant's customer (a token of the vault and what it shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerCard {
    pub merchant_id: String,
    pub customer_id: String,
    pub token: String,
    /// The vault's card fingerprint: one saved card per fingerprint per customer.
    pub fingerprint: String,
    pub brand: String,
    pub bin: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub created_at: i64,
}

/// Recent attempts, for the card-testing limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptCounts {
    /// Attempts issued to one client address since the window's start.
    pub by_client: i64,
    /// The merchant's attempts that finished in the window.
    pub merchant_finished: i64,
    /// Of those, the declined ones.
    pub merchant_declined: i64,
}

/// A payment row. Amount invariants: `0 ≤ refunded ≤ captured ≤ amount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    /// Also the reference the acquirer knows the authorization by.
    pub transaction_id: String,
    pub merchant_id: String,
    pub partner_trans_id: String,
    /// SHA-256 of the canonical `payment.create` params (idempotency comparison).
    pub request_digest: String,
    pub card_token: String,
    pub amount: i64,
    pub currency: String,
    pub capture_method: CaptureMethod,
    pub hold_ttl_sec: i64,
    pub after_expired: AfterExpired,
    pub description: Option<String>,
    pub client_ip: Option<String>,
    pub return_url: Option<String>,
    pub status: PaymentStatus,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    pub acquirer_ref: Option<String>,
    pub auth_code: Option<String>,
    pub rrn: Option<String>,
    /// First six and last four, as the acquirer masked it.
    pub masked_card: Option<String>,
    pub decline_code: Option<String>,
    /// The JSON-RPC error code a failed payment answered with.
    pub error_code: Option<i64>,
    pub hold_expires_at: Option<i64>,
    /// The JSON of the first `payment.create` answer (`{"result":…}` or `{"error":…}`);
    /// `None` while the first call is still running.
    pub first_response: Option<String>,
    pub lease_until: i64,
    /// The acquirer's view must be read back (an operation's outcome was not seen).
    pub needs_sync: bool,
    /// The public part of the 3-D Secure authentication (JSON; never the full CAVV).
    pub three_ds: Option<String>,
    /// While `requires_3ds`: when the 3DS step it waits for runs out.
    pub three_ds_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The 3DS Server's state of one authentication (one `threeDSServerTransID`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthenticationRecord {
    pub three_ds_server_trans_id: String,
    pub merchant_id: String,
    pub card_token: String,
    /// The payment that used it; `None` while a prepared authentication waits.
    pub transaction_id: Option<String>,
    /// The ACS's 3DS Method URL for the card's range, when it has one.
    pub method_url: Option<String>,
    pub method_completed_at: Option<i64>,
    pub message_version: Option<String>,
    pub ds_trans_id: Option<String>,
    pub acs_trans_id: Option<String>,
    pub acs_url: Option<String>,
    /// The unguessable id in the cardholder's challenge link.
    pub challenge_id: Option<String>,
    pub trans_status: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A refund row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    /// Also the acquirer's `refund_reference`.
    pub refund_id: String,
    pub transaction_id: String,
    pub merchant_id: String,
    pub partner_refund_id: String,
    pub request_digest: String,
    pub amount: i64,
    pub currency: String,
    pub status: RefundStatus,
    pub rrn: Option<String>,
    pub error_code: Option<i64>,
    pub first_response: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a refund is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    /// Just recorded; the first call is running.
    Pending,
    /// The acquirer's answer was not seen; retried with the same refund reference
    /// (idempotent at the acquirer) until it is.
    Processing,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Processing => "processing",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RefundStatus> {
        [RefundStatus::Pending, RefundStatus::Processing, RefundStatus::Succeeded, RefundStatus::Failed]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// One ledger row: a state transition (or a money movement within a state) with its
/// amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// Increasing; 0 before insertion.
    pub seq: i64,
    pub transaction_id: String,
    pub at: i64,
    pub kind: LedgerKind,
    pub from_status: String,
    pub to_status: String,
    pub amount: i64,
    pub currency: String,
    pub refund_id: Option<String>,
}

/// What a ledger row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    /// The payment was recorded.
    Created,
    /// It waits for the cardholder's 3-D Secure step.
    Requires3ds,
    /// The 3-D Secure step ran out.
    Expire3ds,
    /// It went to the acquirer (after 3-D Secure, when it had to wait for that).
    Authorizing,
    /// The acquirer approved the hold.
    Authorized,
    /// Money captured (all of it, or part of a hold).
    Capture,
    /// The rest of a hold released while what was captured stays.
    Release,
    /// The hold released.
    Void,
    /// A hold whose time was up was captured (`after_expired = capture`).
    ExpireCapture,
    /// A hold whose time was up was released (`after_expired = void`).
    ExpireRelease,
    /// Money refunded.
    Refund,
    /// The acquirer's answer was not seen; the outcome is being resolved.
    Processing,
    /// The payment failed.
    Failed,
    /// The acquirer's view, read back, changed the payment.
    Sync,
}

impl LedgerKind {
    pub(super) const ALL: [LedgerKind; 14] = [
        LedgerKind::Created,
        LedgerKind::Requires3ds,
        LedgerKind::Expire3ds,
        LedgerKind::Authorizing,
        LedgerKind::Authorized,
        LedgerKind::Capture,
        LedgerKind::Release,
        LedgerKind::Void,
        LedgerKind::ExpireCapture,
        LedgerKind::ExpireRelease,
        LedgerKind::Refund,
        LedgerKind::Processing,
        LedgerKind::Failed,
        LedgerKind::Sync,
    ];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Created => "created",
            LedgerKind::Requires3ds => "requires_3ds",
            LedgerKind::Expire3ds => "expire_3ds",
            LedgerKind::Authorizing => "authorizing",
            LedgerKind::Authorized => "authorized",
            LedgerKind::Capture => "capture",
            LedgerKind::Release => "release",
            LedgerKind::Void => "void",
            LedgerKind::ExpireCapture => "expire_capture",
            LedgerKind::ExpireRelease => "expire_release",
            LedgerKind::Refund => "refund",
            LedgerKind::Processing => "processing",
            LedgerKind::Failed => "failed",
            LedgerKind::Sync => "sync",
        }
    }

    pub fn parse(s: &str) -> Option<LedgerKind> {
        LedgerKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A signed request claimed by the replay guard, as another caller with the same
/// signed bytes finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestClaim {
    /// The claim is this caller's: it runs the request and stores the answer.
    Claimed,
    /// The first caller is still running it.
    Running,
    /// The first caller's answer (JSON text).
    Answered(String),
}

/// `payment.capture` under a `partner_capture_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRecord {
    pub merchant_id: String,
    pub partner_capture_id: String,
    pub transaction_id: String,
    /// SHA-256 of the canonical params (idempotency comparison).
    pub request_digest: String,
    pub status: CaptureStatus,
    /// The JSON of the first answer (`{"result":…}` or `{"error":…}`) once `Answered`.
    pub first_response: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a keyed capture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureStatus {
    /// Just recorded; the first call is running.
    Running,
    /// The acquirer's answer was not seen: a repeat reads the acquirer's view, it never
    /// sends the capture again (captures are not idempotent at the acquirer).
    Unknown,
    Answered,
}

impl CaptureStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureStatus::Running => "running",
            CaptureStatus::Unknown => "unknown",
            CaptureStatus::Answered => "answered",
        }
    }

    pub fn parse(s: &str) -> Option<CaptureStatus> {
        [CaptureStatus::Running, CaptureStatus::Unknown, CaptureStatus::Answered].into_iter().find(|c| c.as_str() == s)
    }
}

/// Result of inserting a row under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot<T> {
    /// The row is new: the caller does the work.
    Inserted,
    /// The key was taken: the existing row.
    Existing(T),
}

/// A token a merchant removed (`card.remove`), and where deleting its card in the
/// vault stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedToken {
    pub merchant_id: String,
    pub token: String,
    pub removed_at: i64,
    /// When the vault confirmed the card is gone; `None` while pending.
    pub vault_deleted_at: Option<i64>,
    /// Failed attempts so far.
    pub vault_attempts: i64,
    pub vault_next_attempt_at: i64,
    /// The last failure's code.
    pub vault_last_error: Option<String>,
}

/// `payment.list` filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub merchant_id: String,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub status: Option<PaymentStatus>,
    pub limit: i64,
    pub offset: i64,
}
