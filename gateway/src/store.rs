//! Persistence: SQLite (default, WAL) or PostgreSQL, chosen by URL. All SQL of the
//! gateway lives in this module.
//!
//! Statements are portable (`$n` placeholders, 64-bit integers), written once and run
//! on either backend by the dispatch of [`paysys_db::store`] (`in_transaction!`,
//! `on_pool!`, `on_reader!`); a record's arguments are bound by one function over
//! [`Bind`] for both.
//!
//! * **SQLite**: one writer at a time (`BEGIN IMMEDIATE` under the database's write
//!   lock); plain reads on read-only connections. A payment's insert and its update
//!   after the acquirer answered, the hot path, and the 3-D Secure authentication's
//!   writes are units of the group committer ([`paysys_db::GroupCommitter`]): one
//!   handoff each, many per commit. `sqlite::memory:` is a temporary file, so tests take
//!   this path too.
//! * **PostgreSQL**: a pool; a payment's insert and its update (with their ledger rows)
//!   are one statement each (data-modifying CTEs), one round trip; workers claim jobs
//!   with `FOR UPDATE SKIP LOCKED` so several gateway replicas share them.
//!
//! Both backends insert a payment with `ON CONFLICT (merchant_id, partner_trans_id) DO
//! NOTHING`: a duplicate idempotency key writes nothing (no ledger rows either) and is
//! answered with the row that holds the key.
//!
//! Work on one payment (capture, void, refund, expiry, resolution) is serialized by a
//! *lease*: `lease_until` is taken with one conditional `UPDATE` and given back when the
//! result is saved. A crashed holder's lease simply runs out.

use crate::state::PaymentStatus;
use crate::three_ds::AutoSettings;
use paysys_db::{get, in_transaction, on_pool, on_reader, Args, Backend, Bind, Connections};
use sqlx::{ColumnIndex, Decode, Row, Type};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections to PostgreSQL.
const POSTGRES_CONNECTIONS: u32 = 16;
/// Read-only connections to a SQLite file.
const SQLITE_READERS: u32 = 4;

pub use paysys_db::StoreError;

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
    pub capture_method: String,
    pub hold_ttl_sec: i64,
    pub after_expired: String,
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
    /// `created`, `authorizing`, `authorized`, `capture`, `release`, `void`, `expire`,
    /// `refund`, `processing`, `failed`, `sync`.
    pub kind: String,
    pub from_status: String,
    pub to_status: String,
    pub amount: i64,
    pub currency: String,
    pub refund_id: Option<String>,
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

/// The gateway's database.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// The ledger columns a transition writes (`seq` is the database's).
const LEDGER_INSERT_COLUMNS: &str = "transaction_id, at, kind, from_status, to_status, amount, currency, refund_id";

/// `INSERT INTO ledger … VALUES (…), (…)` for `n` rows of eight columns.
fn ledger_insert_sql(n: usize) -> String {
    let mut sql = format!("INSERT INTO ledger ({LEDGER_INSERT_COLUMNS}) VALUES ");
    for row in 0..n {
        let b = row * 8;
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8
        ));
    }
    sql
}

/// Insert a payment unless its `(merchant_id, partner_trans_id)` is taken.
fn insert_payment_sql() -> String {
    format!(
        "INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30) \
         ON CONFLICT (merchant_id, partner_trans_id) DO NOTHING"
    )
}

const PAYMENT_COLUMNS: &str = "transaction_id, merchant_id, partner_trans_id, request_digest, card_token, amount, \
     currency, capture_method, hold_ttl_sec, after_expired, description, client_ip, return_url, status, \
     captured_amount, refunded_amount, acquirer_ref, auth_code, rrn, masked_card, decline_code, error_code, \
     hold_expires_at, first_response, lease_until, needs_sync, three_ds, three_ds_expires_at, created_at, updated_at";

const AUTHENTICATION_COLUMNS: &str = "three_ds_server_trans_id, merchant_id, card_token, transaction_id, method_url, \
     method_completed_at, message_version, ds_trans_id, acs_trans_id, acs_url, challenge_id, trans_status, \
     created_at, updated_at";

const REFUND_COLUMNS: &str = "refund_id, transaction_id, merchant_id, partner_refund_id, request_digest, amount, \
     currency, status, rrn, error_code, first_response, created_at, updated_at";

const CAPTURE_COLUMNS: &str = "merchant_id, partner_capture_id, transaction_id, request_digest, status, \
     first_response, created_at, updated_at";

const LEDGER_COLUMNS: &str = "seq, transaction_id, at, kind, from_status, to_status, amount, currency, refund_id";

const UPDATE_PAYMENT: &str = "UPDATE payments SET status = $1, captured_amount = $2, refunded_amount = $3, \
     acquirer_ref = $4, auth_code = $5, rrn = $6, masked_card = $7, decline_code = $8, error_code = $9, \
     hold_expires_at = $10, first_response = $11, lease_until = $12, needs_sync = $13, three_ds = $14, \
     three_ds_expires_at = $15, updated_at = $16 WHERE transaction_id = $17";

const UPDATE_AUTHENTICATION: &str = "UPDATE authentications SET message_version = $1, ds_trans_id = $2, \
     acs_trans_id = $3, acs_url = $4, challenge_id = $5, trans_status = $6, updated_at = $7 \
     WHERE three_ds_server_trans_id = $8";

const UPDATE_REFUND: &str = "UPDATE refunds SET status = $1, rrn = $2, error_code = $3, first_response = $4, \
     updated_at = $5 WHERE refund_id = $6";

/// Bind every column of a payment insert, in [`PAYMENT_COLUMNS`] order.
fn bind_payment<'q, B: Bind<'q>>(b: B, p: &'q PaymentRecord) -> B {
    b.text(&p.transaction_id)
        .text(&p.merchant_id)
        .text(&p.partner_trans_id)
        .text(&p.request_digest)
        .text(&p.card_token)
        .int(p.amount)
        .text(&p.currency)
        .text(&p.capture_method)
        .int(p.hold_ttl_sec)
        .text(&p.after_expired)
        .opt_text(p.description.as_deref())
        .opt_text(p.client_ip.as_deref())
        .opt_text(p.return_url.as_deref())
        .text(p.status.as_str())
        .int(p.captured_amount)
        .int(p.refunded_amount)
        .opt_text(p.acquirer_ref.as_deref())
        .opt_text(p.auth_code.as_deref())
        .opt_text(p.rrn.as_deref())
        .opt_text(p.masked_card.as_deref())
        .opt_text(p.decline_code.as_deref())
        .opt_int(p.error_code)
        .opt_int(p.hold_expires_at)
        .opt_text(p.first_response.as_deref())
        .int(p.lease_until)
        .int(i64::from(p.needs_sync))
        .opt_text(p.three_ds.as_deref())
        .opt_int(p.three_ds_expires_at)
        .int(p.created_at)
        .int(p.updated_at)
}

/// Bind the parameters of [`UPDATE_PAYMENT`].
fn bind_payment_update<'q, B: Bind<'q>>(b: B, p: &'q PaymentRecord) -> B {
    b.text(p.status.as_str())
        .int(p.captured_amount)
        .int(p.refunded_amount)
        .opt_text(p.acquirer_ref.as_deref())
        .opt_text(p.auth_code.as_deref())
        .opt_text(p.rrn.as_deref())
        .opt_text(p.masked_card.as_deref())
        .opt_text(p.decline_code.as_deref())
        .opt_int(p.error_code)
        .opt_int(p.hold_expires_at)
        .opt_text(p.first_response.as_deref())
        .int(p.lease_until)
        .int(i64::from(p.needs_sync))
        .opt_text(p.three_ds.as_deref())
        .opt_int(p.three_ds_expires_at)
        .int(p.updated_at)
        .text(&p.transaction_id)
}

/// Bind every column of an authentication insert, in [`AUTHENTICATION_COLUMNS`] order.
fn bind_authentication<'q, B: Bind<'q>>(b: B, a: &'q AuthenticationRecord) -> B {
    b.text(&a.three_ds_server_trans_id)
        .text(&a.merchant_id)
        .text(&a.card_token)
        .opt_text(a.transaction_id.as_deref())
        .opt_text(a.method_url.as_deref())
        .opt_int(a.method_completed_at)
        .opt_text(a.message_version.as_deref())
        .opt_text(a.ds_trans_id.as_deref())
        .opt_text(a.acs_trans_id.as_deref())
        .opt_text(a.acs_url.as_deref())
        .opt_text(a.challenge_id.as_deref())
        .opt_text(a.trans_status.as_deref())
        .int(a.created_at)
        .int(a.updated_at)
}

/// Bind the parameters of [`UPDATE_AUTHENTICATION`].
fn bind_authentication_update<'q, B: Bind<'q>>(b: B, a: &'q AuthenticationRecord) -> B {
    b.opt_text(a.message_version.as_deref())
        .opt_text(a.ds_trans_id.as_deref())
        .opt_text(a.acs_trans_id.as_deref())
        .opt_text(a.acs_url.as_deref())
        .opt_text(a.challenge_id.as_deref())
        .opt_text(a.trans_status.as_deref())
        .int(a.updated_at)
        .text(&a.three_ds_server_trans_id)
}

/// Bind the parameters of [`UPDATE_REFUND`].
fn bind_refund_update<'q, B: Bind<'q>>(b: B, r: &'q RefundRecord) -> B {
    b.text(r.status.as_str())
        .opt_text(r.rrn.as_deref())
        .opt_int(r.error_code)
        .opt_text(r.first_response.as_deref())
        .int(r.updated_at)
        .text(&r.refund_id)
}

/// Bind one ledger row, in [`LEDGER_INSERT_COLUMNS`] order.
fn bind_ledger<'q, B: Bind<'q>>(b: B, row: &'q LedgerRow) -> B {
    b.text(&row.transaction_id)
        .int(row.at)
        .text(&row.kind)
        .text(&row.from_status)
        .text(&row.to_status)
        .int(row.amount)
        .text(&row.currency)
        .opt_text(row.refund_id.as_deref())
}

/// Bind every column of a refund insert, in [`REFUND_COLUMNS`] order.
fn bind_refund<'q, B: Bind<'q>>(b: B, r: &'q RefundRecord) -> B {
    b.text(&r.refund_id)
        .text(&r.transaction_id)
        .text(&r.merchant_id)
        .text(&r.partner_refund_id)
        .text(&r.request_digest)
        .int(r.amount)
        .text(&r.currency)
        .text(r.status.as_str())
        .opt_text(r.rrn.as_deref())
        .opt_int(r.error_code)
        .opt_text(r.first_response.as_deref())
        .int(r.created_at)
        .int(r.updated_at)
}

/// `sql` with every placeholder `$n` renumbered `$(n + offset)`, to follow another
/// statement's parameters in one combined statement.
fn shift_placeholders(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            out.push_str(&(n + offset).to_string());
        }
    }
    out
}

/// PostgreSQL: the payment insert and its ledger rows (parameters after the payment's
/// 30) as one statement; it returns 1 when the payment was inserted, 0 when its key was
/// taken (then no ledger row is written either).
fn postgres_insert_payment_sql(ledger_rows: usize) -> String {
    let insert = insert_payment_sql();
    if ledger_rows == 0 {
        return format!("WITH p AS ({insert} RETURNING 1) SELECT count(*) FROM p");
    }
    let values = shift_placeholders(&ledger_insert_sql(ledger_rows), 30);
    let values = values.split_once("VALUES ").map_or("", |(_, v)| v);
    format!(
        "WITH p AS ({insert} RETURNING 1), \
         l AS (INSERT INTO ledger ({LEDGER_INSERT_COLUMNS}) SELECT * FROM (VALUES {values}) \
         AS v ({LEDGER_INSERT_COLUMNS}) WHERE EXISTS (SELECT 1 FROM p)) \
         SELECT count(*) FROM p"
    )
}

/// PostgreSQL: the payment update (17 parameters), its ledger rows and a refund's
/// update as one statement.
fn postgres_save_payment_sql(ledger_rows: usize, refund: bool) -> String {
    let mut parts = vec![format!("u AS ({UPDATE_PAYMENT})")];
    let mut next = 17;
    if ledger_rows > 0 {
        parts.push(format!("l AS ({})", shift_placeholders(&ledger_insert_sql(ledger_rows), next)));
        next += 8 * ledger_rows;
    }
    if refund {
        parts.push(format!("r AS ({})", shift_placeholders(UPDATE_REFUND, next)));
    }
    format!("WITH {} SELECT 1", parts.join(", "))
}

/// The multi-row ledger insert of `rows` for the group committer (`None`: no rows).
fn ledger_args(rows: &[LedgerRow]) -> Option<(String, Args)> {
    if rows.is_empty() {
        return None;
    }
    let args = rows.iter().fold(Args::default(), bind_ledger);
    Some((ledger_insert_sql(rows.len()), args))
}

impl Store {
    /// Connect to `url` (`sqlite::memory:` — a temporary file —, `sqlite:PATH` created
    /// if missing, or `postgres://…`). Does not migrate.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let connections = Connections { sqlite_readers: SQLITE_READERS, postgres: POSTGRES_CONNECTIONS };
        Ok(Store { backend: Backend::open(url, connections).await? })
    }

    /// Apply this backend's migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.backend.migrate(&SQLITE_MIGRATOR, &POSTGRES_MIGRATOR).await
    }

    // ---- merchants ----

    pub async fn insert_merchant(&self, m: &MerchantRecord) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query(
                "INSERT INTO merchants (merchant_id, service_id, name, secret_sealed, created_at, \
                 three_ds_auto_proceed_on, three_ds_auto_min_amounts) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&m.merchant_id)
            .bind(&m.service_id)
            .bind(&m.name)
            .bind(&m.secret_sealed)
            .bind(m.created_at)
            .bind(m.three_ds_auto.proceed_on_text())
            .bind(m.three_ds_auto.min_amounts_json())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Change a merchant's name and `three_ds: auto` settings; `false` when there is no
    /// such merchant.
    pub async fn update_merchant(&self, m: &MerchantRecord) -> Result<bool, StoreError> {
        on_pool!(&self.backend, |pool| {
            let done = sqlx::query(
                "UPDATE merchants SET name = $1, three_ds_auto_proceed_on = $2, three_ds_auto_min_amounts = $3 \
                 WHERE merchant_id = $4",
            )
            .bind(&m.name)
            .bind(m.three_ds_auto.proceed_on_text())
            .bind(m.three_ds_auto.min_amounts_json())
            .bind(&m.merchant_id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn merchant_by_service_id(&self, service_id: &str) -> Result<Option<MerchantRecord>, StoreError> {
        self.merchant_where("service_id", service_id).await
    }

    pub async fn merchant(&self, merchant_id: &str) -> Result<Option<MerchantRecord>, StoreError> {
        self.merchant_where("merchant_id", merchant_id).await
    }

    async fn merchant_where(&self, column: &'static str, value: &str) -> Result<Option<MerchantRecord>, StoreError> {
        let sql = format!(
            "SELECT merchant_id, service_id, name, secret_sealed, created_at, three_ds_auto_proceed_on, \
             three_ds_auto_min_amounts FROM merchants WHERE {column} = $1"
        );
        on_reader!(&self.backend, |pool| {
            let row = sqlx::query(&sql).bind(value).fetch_optional(pool).await?;
            row.map(|r| {
                let corrupt = |e: crate::three_ds::AutoSettingsError| StoreError::Corrupt(format!("merchant: {e}"));
                let proceed_on: String = get(&r, "three_ds_auto_proceed_on")?;
                let min_amounts: String = get(&r, "three_ds_auto_min_amounts")?;
                Ok(MerchantRecord {
                    merchant_id: get(&r, "merchant_id")?,
                    service_id: get(&r, "service_id")?,
                    name: get(&r, "name")?,
                    secret_sealed: get(&r, "secret_sealed")?,
                    created_at: get(&r, "created_at")?,
                    three_ds_auto: AutoSettings {
                        proceed_on: AutoSettings::parse_proceed_on(&proceed_on).map_err(corrupt)?,
                        min_amounts: AutoSettings::min_amounts_from_json(&min_amounts).map_err(corrupt)?,
                    },
                })
            })
            .transpose()
        })
    }

    // ---- payments ----

    /// Insert a new payment with its first ledger rows, unless `(merchant_id,
    /// partner_trans_id)` is taken: then the existing payment.
    pub async fn insert_payment(
        &self,
        p: &PaymentRecord,
        ledger: &[LedgerRow],
    ) -> Result<Slot<PaymentRecord>, StoreError> {
        match self.try_insert_payment(p, ledger).await {
            // PostgreSQL: a concurrent duplicate committed first; its row is visible now.
            Err(e) if e.is_unique_violation() => {
                match self.payment_by_partner_id(&p.merchant_id, &p.partner_trans_id).await? {
                    Some(existing) => Ok(Slot::Existing(existing)),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn try_insert_payment(
        &self,
        p: &PaymentRecord,
        ledger: &[LedgerRow],
    ) -> Result<Slot<PaymentRecord>, StoreError> {
        let inserted = match &self.backend {
            Backend::Sqlite(sqlite) => {
                let payment = bind_payment(Args::default(), p);
                let ledger = ledger_args(ledger);
                sqlite
                    .group
                    .write(move |conn| -> Result<bool, StoreError> {
                        if payment.execute(conn, &insert_payment_sql())? == 0 {
                            return Ok(false);
                        }
                        if let Some((sql, args)) = ledger {
                            args.execute(conn, &sql)?;
                        }
                        Ok(true)
                    })
                    .await?
            }
            Backend::Postgres(pool) => {
                // One statement, atomic on its own: one round trip instead of four.
                let sql = postgres_insert_payment_sql(ledger.len());
                let query = ledger.iter().fold(bind_payment(sqlx::query(&sql), p), bind_ledger);
                query.fetch_one(pool).await?.try_get::<i64, _>(0)? == 1
            }
        };
        if inserted {
            return Ok(Slot::Inserted);
        }
        // The key's payment committed before this write (or earlier in its group
        // commit): visible now.
        match self.payment_by_partner_id(&p.merchant_id, &p.partner_trans_id).await? {
            Some(existing) => Ok(Slot::Existing(existing)),
            None => Err(StoreError::Corrupt("a payment conflicted on its key but cannot be read".into())),
        }
    }

    pub async fn payment(&self, transaction_id: &str) -> Result<Option<PaymentRecord>, StoreError> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE transaction_id = $1");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql).bind(transaction_id).fetch_optional(pool).await?.map(|r| payment_from_row(&r)).transpose()
        })
    }

    pub async fn payment_by_partner_id(
        &self,
        merchant_id: &str,
        partner_trans_id: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND partner_trans_id = $2");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql)
                .bind(merchant_id)
                .bind(partner_trans_id)
                .fetch_optional(pool)
                .await?
                .map(|r| payment_from_row(&r))
                .transpose()
        })
    }

    /// Take the payment's lease until `until` if it is free at `now`; `false` when
    /// another operation holds it.
    pub async fn try_lease(&self, transaction_id: &str, now: i64, until: i64) -> Result<bool, StoreError> {
        on_pool!(&self.backend, |pool| {
            let done =
                sqlx::query("UPDATE payments SET lease_until = $1 WHERE transaction_id = $2 AND lease_until <= $3")
                    .bind(until)
                    .bind(transaction_id)
                    .bind(now)
                    .execute(pool)
                    .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Write a payment's mutable state, its new ledger rows and (optionally) a refund's
    /// state, in one transaction.
    pub async fn save_payment(
        &self,
        p: &PaymentRecord,
        ledger: &[LedgerRow],
        refund: Option<&RefundRecord>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(sqlite) => {
                let payment = bind_payment_update(Args::default(), p);
                let ledger = ledger_args(ledger);
                let refund = refund.map(|r| bind_refund_update(Args::default(), r));
                sqlite
                    .group
                    .write(move |conn| -> Result<(), StoreError> {
                        payment.execute(conn, UPDATE_PAYMENT)?;
                        if let Some((sql, args)) = ledger {
                            args.execute(conn, &sql)?;
                        }
                        if let Some(refund) = refund {
                            refund.execute(conn, UPDATE_REFUND)?;
                        }
                        Ok(())
                    })
                    .await
            }
            Backend::Postgres(pool) => {
                // One statement, atomic on its own: one round trip instead of four.
                let sql = postgres_save_payment_sql(ledger.len(), refund.is_some());
                let query = ledger.iter().fold(bind_payment_update(sqlx::query(&sql), p), bind_ledger);
                let query = match refund {
                    Some(r) => bind_refund_update(query, r),
                    None => query,
                };
                query.execute(pool).await?;
                Ok(())
            }
        }
    }

    /// Give a lease back without other changes.
    pub async fn release_lease(&self, transaction_id: &str) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query("UPDATE payments SET lease_until = 0 WHERE transaction_id = $1")
                .bind(transaction_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A merchant's payments, newest first.
    pub async fn list_payments(&self, f: &PaymentFilter) -> Result<Vec<PaymentRecord>, StoreError> {
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND ($2 IS NULL OR created_at >= $2) \
             AND ($3 IS NULL OR created_at < $3) AND ($4 IS NULL OR status = $4) \
             ORDER BY created_at DESC, transaction_id LIMIT $5 OFFSET $6"
        );
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(&sql)
                .bind(&f.merchant_id)
                .bind(f.from_ms)
                .bind(f.to_ms)
                .bind(f.status.map(PaymentStatus::as_str))
                .bind(f.limit)
                .bind(f.offset)
                .fetch_all(pool)
                .await?;
            rows.iter().map(payment_from_row).collect()
        })
    }

    /// Claim up to `limit` holds whose time is up (lease them until `until`).
    pub async fn claim_expired_holds(&self, now: i64, until: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        self.claim(
            "status IN ('authorized', 'partially_captured') AND hold_expires_at IS NOT NULL \
             AND hold_expires_at <= $1 AND lease_until <= $1",
            None,
            now,
            until,
            limit,
        )
        .await
    }

    /// Claim up to `limit` payments whose outcome at the acquirer is unknown: `processing`,
    /// `authorizing` not touched since `stale_before` (a crashed call), or marked
    /// `needs_sync`.
    pub async fn claim_unresolved(
        &self,
        now: i64,
        stale_before: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.claim(
            "lease_until <= $1 AND (status = 'processing' OR needs_sync = 1 \
             OR (status = 'authorizing' AND updated_at < $3))",
            Some(stale_before),
            now,
            until,
            limit,
        )
        .await
    }

    async fn claim(
        &self,
        condition: &str,
        extra: Option<i64>,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        in_transaction!(&self.backend, |tx, lock| {
            let skip_locked = lock.skip_locked();
            let sql = format!("SELECT transaction_id FROM payments WHERE {condition} LIMIT $2{skip_locked}");
            let mut query = sqlx::query(&sql).bind(now).bind(limit);
            if let Some(extra) = extra {
                query = query.bind(extra);
            }
            let rows = query.fetch_all(&mut *tx).await?;
            let mut ids = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get(0)?;
                sqlx::query("UPDATE payments SET lease_until = $1 WHERE transaction_id = $2")
                    .bind(until)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                ids.push(id);
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    /// The ledger of one payment, oldest first.
    pub async fn ledger(&self, transaction_id: &str) -> Result<Vec<LedgerRow>, StoreError> {
        let sql = format!("SELECT {LEDGER_COLUMNS} FROM ledger WHERE transaction_id = $1 ORDER BY seq");
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(&sql).bind(transaction_id).fetch_all(pool).await?;
            rows.iter().map(ledger_from_row).collect()
        })
    }

    // ---- refunds ----

    /// Insert a new refund unless `(merchant_id, partner_refund_id)` is taken.
    pub async fn insert_refund(&self, r: &RefundRecord) -> Result<Slot<RefundRecord>, StoreError> {
        match self.try_insert_refund(r).await {
            Err(e) if e.is_unique_violation() => {
                match self.refund_by_partner_id(&r.merchant_id, &r.partner_refund_id).await? {
                    Some(existing) => Ok(Slot::Existing(existing)),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn try_insert_refund(&self, r: &RefundRecord) -> Result<Slot<RefundRecord>, StoreError> {
        in_transaction!(&self.backend, |tx, _lock| {
            let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE merchant_id = $1 AND partner_refund_id = $2");
            let existing =
                sqlx::query(&sql).bind(&r.merchant_id).bind(&r.partner_refund_id).fetch_optional(&mut *tx).await?;
            if let Some(row) = existing {
                return Ok(Slot::Existing(refund_from_row(&row)?));
            }
            let sql = format!(
                "INSERT INTO refunds ({REFUND_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            );
            bind_refund(sqlx::query(&sql), r).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Slot::Inserted)
        })
    }

    pub async fn refund(&self, refund_id: &str) -> Result<Option<RefundRecord>, StoreError> {
        let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE refund_id = $1");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql).bind(refund_id).fetch_optional(pool).await?.map(|r| refund_from_row(&r)).transpose()
        })
    }

    pub async fn refund_by_partner_id(
        &self,
        merchant_id: &str,
        partner_refund_id: &str,
    ) -> Result<Option<RefundRecord>, StoreError> {
        let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE merchant_id = $1 AND partner_refund_id = $2");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql)
                .bind(merchant_id)
                .bind(partner_refund_id)
                .fetch_optional(pool)
                .await?
                .map(|r| refund_from_row(&r))
                .transpose()
        })
    }

    /// Refunds of a payment whose outcome is still open (`processing`), in minor units.
    pub async fn refunds_in_flight(&self, transaction_id: &str) -> Result<i64, StoreError> {
        on_reader!(&self.backend, |pool| {
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS total FROM refunds WHERE transaction_id = $1 \
                 AND status = 'processing'",
            )
            .bind(transaction_id)
            .fetch_one(pool)
            .await?;
            Ok(row.try_get::<i64, _>(0)?)
        })
    }

    /// Refunds waiting for an outcome, oldest first.
    pub async fn processing_refunds(&self, limit: i64) -> Result<Vec<RefundRecord>, StoreError> {
        let sql =
            format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE status = 'processing' ORDER BY created_at LIMIT $1");
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(&sql).bind(limit).fetch_all(pool).await?;
            rows.iter().map(refund_from_row).collect()
        })
    }

    pub async fn save_refund(&self, r: &RefundRecord) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            bind_refund_update(sqlx::query(UPDATE_REFUND), r).execute(pool).await?;
        });
        Ok(())
    }

    /// Forget a refund that never reached the acquirer (so a retry starts afresh).
    pub async fn delete_refund(&self, refund_id: &str) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query("DELETE FROM refunds WHERE refund_id = $1").bind(refund_id).execute(pool).await?;
        });
        Ok(())
    }

    /// Claim up to `limit` payments waiting for 3-D Secure whose step ran out.
    pub async fn claim_expired_authentications(
        &self,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.claim(
            "status = 'requires_3ds' AND three_ds_expires_at IS NOT NULL AND three_ds_expires_at <= $1 \
             AND lease_until <= $1",
            None,
            now,
            until,
            limit,
        )
        .await
    }

    // ---- 3-D Secure authentications ----

    pub async fn insert_authentication(&self, a: &AuthenticationRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO authentications ({AUTHENTICATION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        match &self.backend {
            Backend::Sqlite(sqlite) => {
                let args = bind_authentication(Args::default(), a);
                sqlite
                    .group
                    .write(move |conn| -> Result<(), StoreError> { Ok(args.execute(conn, &sql).map(drop)?) })
                    .await
            }
            Backend::Postgres(pool) => {
                bind_authentication(sqlx::query(&sql), a).execute(pool).await?;
                Ok(())
            }
        }
    }

    /// Write what the AReq, the challenge and the authorization changed.
    pub async fn save_authentication(&self, a: &AuthenticationRecord) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(sqlite) => {
                let args = bind_authentication_update(Args::default(), a);
                sqlite
                    .group
                    .write(move |conn| -> Result<(), StoreError> {
                        Ok(args.execute(conn, UPDATE_AUTHENTICATION).map(drop)?)
                    })
                    .await
            }
            Backend::Postgres(pool) => {
                bind_authentication_update(sqlx::query(UPDATE_AUTHENTICATION), a).execute(pool).await?;
                Ok(())
            }
        }
    }

    /// Give a prepared authentication to a payment; `false` when another payment has it.
    pub async fn claim_authentication(&self, id: &str, transaction_id: &str, now: i64) -> Result<bool, StoreError> {
        on_pool!(&self.backend, |pool| {
            let done = sqlx::query(
                "UPDATE authentications SET transaction_id = $1, updated_at = $2 \
                 WHERE three_ds_server_trans_id = $3 AND transaction_id IS NULL",
            )
            .bind(transaction_id)
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Undo [`claim_authentication`](Self::claim_authentication) (the payment turned out
    /// to be a repeat of an earlier one).
    pub async fn unclaim_authentication(&self, id: &str, transaction_id: &str) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query(
                "UPDATE authentications SET transaction_id = NULL \
                 WHERE three_ds_server_trans_id = $1 AND transaction_id = $2",
            )
            .bind(id)
            .bind(transaction_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Record that the ACS's 3DS Method ran; `false` when unknown or already recorded.
    pub async fn method_completed(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        on_pool!(&self.backend, |pool| {
            let done = sqlx::query(
                "UPDATE authentications SET method_completed_at = $1 \
                 WHERE three_ds_server_trans_id = $2 AND method_completed_at IS NULL AND method_url IS NOT NULL",
            )
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn authentication(&self, id: &str) -> Result<Option<AuthenticationRecord>, StoreError> {
        self.authentication_where("three_ds_server_trans_id", id).await
    }

    pub async fn authentication_by_challenge(
        &self,
        challenge_id: &str,
    ) -> Result<Option<AuthenticationRecord>, StoreError> {
        self.authentication_where("challenge_id", challenge_id).await
    }

    pub async fn authentication_of_payment(
        &self,
        transaction_id: &str,
    ) -> Result<Option<AuthenticationRecord>, StoreError> {
        self.authentication_where("transaction_id", transaction_id).await
    }

    async fn authentication_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<AuthenticationRecord>, StoreError> {
        let sql = format!("SELECT {AUTHENTICATION_COLUMNS} FROM authentications WHERE {column} = $1");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql).bind(value).fetch_optional(pool).await?.map(|r| authentication_from_row(&r)).transpose()
        })
    }

    // ---- the replay guard ----

    /// Claim the signed request `digest` for `merchant_id` until `expires_at`, or find
    /// who has it. One conditional insert, so of two concurrent identical requests (on
    /// any replica) exactly one is `Claimed`.
    pub async fn claim_request(
        &self,
        digest: &str,
        merchant_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<RequestClaim, StoreError> {
        on_pool!(&self.backend, |pool| {
            let inserted = sqlx::query(
                "INSERT INTO signed_requests (request_digest, merchant_id, response, created_at, expires_at) \
                 VALUES ($1, $2, NULL, $3, $4) ON CONFLICT (request_digest) DO NOTHING",
            )
            .bind(digest)
            .bind(merchant_id)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(RequestClaim::Claimed);
            }
            let row = sqlx::query("SELECT merchant_id, response FROM signed_requests WHERE request_digest = $1")
                .bind(digest)
                .fetch_optional(pool)
                .await?;
            let Some(row) = row else {
                // Swept between the two statements: its time is over, so is this one's.
                return Ok(RequestClaim::Running);
            };
            let owner: String = row.try_get("merchant_id")?;
            if owner != merchant_id {
                return Err(StoreError::Corrupt("a signed request's digest under another merchant".into()));
            }
            let response: Option<String> = row.try_get("response")?;
            Ok(response.map_or(RequestClaim::Running, RequestClaim::Answered))
        })
    }

    /// Store the answer of a claimed request.
    pub async fn answer_request(&self, digest: &str, response: &str) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query("UPDATE signed_requests SET response = $1 WHERE request_digest = $2")
                .bind(response)
                .bind(digest)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Give a claim up (the request did nothing; the same bytes may run again).
    pub async fn forget_request(&self, digest: &str) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query("DELETE FROM signed_requests WHERE request_digest = $1").bind(digest).execute(pool).await?;
        });
        Ok(())
    }

    /// Delete the signed requests whose time is over; how many.
    pub async fn sweep_requests(&self, now: i64) -> Result<u64, StoreError> {
        on_pool!(&self.backend, |pool| {
            let done =
                sqlx::query("DELETE FROM signed_requests WHERE expires_at <= $1").bind(now).execute(pool).await?;
            Ok(done.rows_affected())
        })
    }

    // ---- captures under partner_capture_id ----

    /// Insert a keyed capture unless `(merchant_id, partner_capture_id)` is taken: then
    /// the existing one.
    pub async fn insert_capture(&self, c: &CaptureRecord) -> Result<Slot<CaptureRecord>, StoreError> {
        let inserted = on_pool!(&self.backend, |pool| {
            sqlx::query(&format!(
                "INSERT INTO captures ({CAPTURE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (merchant_id, partner_capture_id) DO NOTHING"
            ))
            .bind(&c.merchant_id)
            .bind(&c.partner_capture_id)
            .bind(&c.transaction_id)
            .bind(&c.request_digest)
            .bind(c.status.as_str())
            .bind(&c.first_response)
            .bind(c.created_at)
            .bind(c.updated_at)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        });
        if inserted {
            return Ok(Slot::Inserted);
        }
        match self.capture(&c.merchant_id, &c.partner_capture_id).await? {
            Some(existing) => Ok(Slot::Existing(existing)),
            None => Err(StoreError::Corrupt("a capture conflicted on its key but cannot be read".into())),
        }
    }

    pub async fn capture(
        &self,
        merchant_id: &str,
        partner_capture_id: &str,
    ) -> Result<Option<CaptureRecord>, StoreError> {
        let sql = format!("SELECT {CAPTURE_COLUMNS} FROM captures WHERE merchant_id = $1 AND partner_capture_id = $2");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql)
                .bind(merchant_id)
                .bind(partner_capture_id)
                .fetch_optional(pool)
                .await?
                .map(|r| capture_from_row(&r))
                .transpose()
        })
    }

    /// Write a keyed capture's status and answer.
    pub async fn save_capture(&self, c: &CaptureRecord) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query(
                "UPDATE captures SET status = $1, first_response = $2, updated_at = $3 \
                 WHERE merchant_id = $4 AND partner_capture_id = $5",
            )
            .bind(c.status.as_str())
            .bind(&c.first_response)
            .bind(c.updated_at)
            .bind(&c.merchant_id)
            .bind(&c.partner_capture_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Forget a keyed capture that never reached the acquirer (so a retry starts afresh).
    pub async fn delete_capture(&self, merchant_id: &str, partner_capture_id: &str) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query("DELETE FROM captures WHERE merchant_id = $1 AND partner_capture_id = $2")
                .bind(merchant_id)
                .bind(partner_capture_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    // ---- removed tokens ----

    pub async fn remove_token(&self, merchant_id: &str, token: &str, now: i64) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query(
                "INSERT INTO removed_tokens (merchant_id, token, removed_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (merchant_id, token) DO NOTHING",
            )
            .bind(merchant_id)
            .bind(token)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The removal of `token` by `merchant_id`, if it was removed.
    pub async fn removed_token(&self, merchant_id: &str, token: &str) -> Result<Option<RemovedToken>, StoreError> {
        on_reader!(&self.backend, |pool| {
            let row = sqlx::query(
                "SELECT merchant_id, token, removed_at, vault_deleted_at, vault_attempts, vault_next_attempt_at, \
                 vault_last_error FROM removed_tokens WHERE merchant_id = $1 AND token = $2",
            )
            .bind(merchant_id)
            .bind(token)
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                Ok(RemovedToken {
                    merchant_id: get(&r, "merchant_id")?,
                    token: get(&r, "token")?,
                    removed_at: get(&r, "removed_at")?,
                    vault_deleted_at: get(&r, "vault_deleted_at")?,
                    vault_attempts: get(&r, "vault_attempts")?,
                    vault_next_attempt_at: get(&r, "vault_next_attempt_at")?,
                    vault_last_error: get(&r, "vault_last_error")?,
                })
            })
            .transpose()
        })
    }

    /// Does an open payment of `merchant_id` still need `token`'s card
    /// ([`PaymentStatus::needs_card`])?
    pub async fn card_needed_by_open_payment(&self, merchant_id: &str, token: &str) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT 1 FROM payments WHERE card_token = $1 AND merchant_id = $2 AND status IN ({}) LIMIT 1",
            statuses_needing_card()
        );
        on_reader!(&self.backend, |pool| {
            Ok(sqlx::query(&sql).bind(token).bind(merchant_id).fetch_optional(pool).await?.is_some())
        })
    }

    /// Claim up to `limit` removed tokens whose card is still in the vault, whose next
    /// attempt is due at `now`, and that no open payment needs any more; each is leased
    /// until `until` (a crashed worker's claim comes back then). (merchant, token) pairs.
    pub async fn claim_vault_removals(
        &self,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        in_transaction!(&self.backend, |tx, lock| {
            let skip_locked = lock.skip_locked();
            let sql = format!(
                "SELECT r.merchant_id, r.token FROM removed_tokens r \
                 WHERE r.vault_deleted_at IS NULL AND r.vault_next_attempt_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.card_token = r.token \
                 AND p.merchant_id = r.merchant_id AND p.status IN ({})) \
                 ORDER BY r.vault_next_attempt_at LIMIT $2{skip_locked}",
                statuses_needing_card()
            );
            let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(&mut *tx).await?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in &rows {
                let (merchant_id, token): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                sqlx::query(
                    "UPDATE removed_tokens SET vault_next_attempt_at = $1 WHERE merchant_id = $2 AND token = $3",
                )
                .bind(until)
                .bind(&merchant_id)
                .bind(&token)
                .execute(&mut *tx)
                .await?;
                claimed.push((merchant_id, token));
            }
            tx.commit().await?;
            Ok(claimed)
        })
    }

    /// The vault confirmed `token`'s card is gone (deleted now, or already).
    pub async fn vault_removal_done(&self, merchant_id: &str, token: &str, now: i64) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query(
                "UPDATE removed_tokens SET vault_deleted_at = $1, vault_last_error = NULL \
                 WHERE merchant_id = $2 AND token = $3 AND vault_deleted_at IS NULL",
            )
            .bind(now)
            .bind(merchant_id)
            .bind(token)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Deleting `token`'s card in the vault failed with `error`; try again at `retry_at`.
    pub async fn vault_removal_failed(
        &self,
        merchant_id: &str,
        token: &str,
        error: &str,
        retry_at: i64,
    ) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query(
                "UPDATE removed_tokens SET vault_attempts = vault_attempts + 1, vault_next_attempt_at = $1, \
                 vault_last_error = $2 WHERE merchant_id = $3 AND token = $4 AND vault_deleted_at IS NULL",
            )
            .bind(retry_at)
            .bind(error)
            .bind(merchant_id)
            .bind(token)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn token_removed(&self, merchant_id: &str, token: &str) -> Result<bool, StoreError> {
        on_reader!(&self.backend, |pool| {
            let row = sqlx::query("SELECT 1 FROM removed_tokens WHERE merchant_id = $1 AND token = $2")
                .bind(merchant_id)
                .bind(token)
                .fetch_optional(pool)
                .await?;
            Ok(row.is_some())
        })
    }
}

/// The SQL list of the statuses in which a payment needs its card (`'created', …`).
fn statuses_needing_card() -> String {
    let quoted: Vec<String> =
        PaymentStatus::ALL.into_iter().filter(|s| s.needs_card()).map(|s| format!("'{}'", s.as_str())).collect();
    quoted.join(", ")
}

fn payment_from_row<R>(row: &R) -> Result<PaymentRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: String = get(row, "status")?;
    let needs_sync: i64 = get(row, "needs_sync")?;
    Ok(PaymentRecord {
        transaction_id: get(row, "transaction_id")?,
        merchant_id: get(row, "merchant_id")?,
        partner_trans_id: get(row, "partner_trans_id")?,
        request_digest: get(row, "request_digest")?,
        card_token: get(row, "card_token")?,
        amount: get(row, "amount")?,
        currency: get(row, "currency")?,
        capture_method: get(row, "capture_method")?,
        hold_ttl_sec: get(row, "hold_ttl_sec")?,
        after_expired: get(row, "after_expired")?,
        description: get(row, "description")?,
        client_ip: get(row, "client_ip")?,
        return_url: get(row, "return_url")?,
        status: PaymentStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        captured_amount: get(row, "captured_amount")?,
        refunded_amount: get(row, "refunded_amount")?,
        acquirer_ref: get(row, "acquirer_ref")?,
        auth_code: get(row, "auth_code")?,
        rrn: get(row, "rrn")?,
        masked_card: get(row, "masked_card")?,
        decline_code: get(row, "decline_code")?,
        error_code: get(row, "error_code")?,
        hold_expires_at: get(row, "hold_expires_at")?,
        first_response: get(row, "first_response")?,
        lease_until: get(row, "lease_until")?,
        needs_sync: needs_sync != 0,
        three_ds: get(row, "three_ds")?,
        three_ds_expires_at: get(row, "three_ds_expires_at")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn authentication_from_row<R>(row: &R) -> Result<AuthenticationRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(AuthenticationRecord {
        three_ds_server_trans_id: get(row, "three_ds_server_trans_id")?,
        merchant_id: get(row, "merchant_id")?,
        card_token: get(row, "card_token")?,
        transaction_id: get(row, "transaction_id")?,
        method_url: get(row, "method_url")?,
        method_completed_at: get(row, "method_completed_at")?,
        message_version: get(row, "message_version")?,
        ds_trans_id: get(row, "ds_trans_id")?,
        acs_trans_id: get(row, "acs_trans_id")?,
        acs_url: get(row, "acs_url")?,
        challenge_id: get(row, "challenge_id")?,
        trans_status: get(row, "trans_status")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn refund_from_row<R>(row: &R) -> Result<RefundRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: String = get(row, "status")?;
    Ok(RefundRecord {
        refund_id: get(row, "refund_id")?,
        transaction_id: get(row, "transaction_id")?,
        merchant_id: get(row, "merchant_id")?,
        partner_refund_id: get(row, "partner_refund_id")?,
        request_digest: get(row, "request_digest")?,
        amount: get(row, "amount")?,
        currency: get(row, "currency")?,
        status: RefundStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("refund status {status:?}")))?,
        rrn: get(row, "rrn")?,
        error_code: get(row, "error_code")?,
        first_response: get(row, "first_response")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn capture_from_row<R>(row: &R) -> Result<CaptureRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: String = get(row, "status")?;
    Ok(CaptureRecord {
        merchant_id: get(row, "merchant_id")?,
        partner_capture_id: get(row, "partner_capture_id")?,
        transaction_id: get(row, "transaction_id")?,
        request_digest: get(row, "request_digest")?,
        status: CaptureStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("capture status {status:?}")))?,
        first_response: get(row, "first_response")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn ledger_from_row<R>(row: &R) -> Result<LedgerRow, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(LedgerRow {
        seq: get(row, "seq")?,
        transaction_id: get(row, "transaction_id")?,
        at: get(row, "at")?,
        kind: get(row, "kind")?,
        from_status: get(row, "from_status")?,
        to_status: get(row, "to_status")?,
        amount: get(row, "amount")?,
        currency: get(row, "currency")?,
        refund_id: get(row, "refund_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_shift_past_the_first_statement() {
        assert_eq!(shift_placeholders("a = $1, b = $12 WHERE c = $3", 17), "a = $18, b = $29 WHERE c = $20");
        assert_eq!(shift_placeholders("no placeholders", 5), "no placeholders");
    }

    #[test]
    fn the_postgres_statements_number_their_parameters_in_binding_order() {
        let insert = postgres_insert_payment_sql(2);
        assert!(insert.contains("$30)") && insert.contains("($31, $32,") && insert.ends_with("SELECT count(*) FROM p"));
        assert!(insert.contains("$46)") && !insert.contains("$47"), "{insert}");
        let save = postgres_save_payment_sql(1, true);
        assert!(save.contains("transaction_id = $17") && save.contains("($18, $19,"), "{save}");
        assert!(save.contains("refund_id = $31") && !save.contains("$32"), "{save}");
    }
}
