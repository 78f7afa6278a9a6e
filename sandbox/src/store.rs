//! Persistence: SQLite (default; `sqlite::memory:` or a file) or PostgreSQL, chosen by
//! URL. All SQL of the sandbox lives in this module and its `three_ds` part (the 3-D
//! Secure authentications).
//!
//! The statements are portable (`$n` placeholders, `ON CONFLICT`, 64-bit integers), so
//! most operations are written once and expanded for both backends by the dispatch of
//! [`paysys_db::store`]; the only differences are how a write transaction starts and how
//! a row is locked ([`RowLock`]):
//!
//! * **SQLite**: every write transaction `BEGIN IMMEDIATE` under the database's write
//!   lock — writers run one at a time, so a balance is never read and written by two
//!   requests at once. An authorization (the hot path) and a new 3-D Secure
//!   authentication are units of the group committer ([`paysys_db::GroupCommitter`]),
//!   many to a commit; `sqlite::memory:` is a temporary file, so tests take this path.
//! * **PostgreSQL**: a pool; `SELECT … FOR UPDATE` locks the authorization or balance
//!   row for the rest of the transaction, and relative updates (`held = held + $1`)
//!   keep concurrent writers to other rows correct. A concurrent duplicate `reference`
//!   loses on the unique index and is answered with the winner's result.
//!
//! The arithmetic is not here: [`crate::issuer`] computes each change and this module
//! writes back exactly that.

use crate::issuer::{
    self, Authorization, AuthorizationStatus, Balance, DeclineCode, LedgerDraft, LedgerKind, OperationError, Refund,
    ThreeDsClaim, Transition,
};
use paysys_db::rusqlite::{Connection, OptionalExtension};
use paysys_db::{in_transaction, on_reader, Args, Backend, Bind, Connections, RowLock, StoreRow};
use sqlx::postgres::PgPool;
use sqlx::Row;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections to PostgreSQL.
const POSTGRES_CONNECTIONS: u32 = 16;

pub use paysys_db::StoreError;

/// An authorization request after screening, ready to be recorded: the ids are already
/// drawn and the card reduced to its masked form and balance key.
#[derive(Debug, Clone)]
pub struct NewAuthorization {
    pub acquirer_ref: String,
    pub reference: String,
    pub merchant_id: String,
    pub masked_pan: String,
    pub balance_key: String,
    pub currency: String,
    pub amount: i64,
    pub capture: bool,
    pub request_digest: String,
    /// A decline decided without the balance (`None`: approve if funds allow).
    pub decline: Option<DeclineCode>,
    /// Balance the card starts with in this currency if it has none yet.
    pub initial_balance: i64,
    pub auth_code: String,
    pub rrn: String,
    pub now: i64,
    /// The 3-D Secure authentication the authorization presents: its CAVV must pass
    /// [`issuer::three_ds_accepted`] (else decline `63`), and an approval marks it used
    /// in the same transaction.
    pub three_ds: Option<ThreeDsClaim>,
}

/// Result of [`Store::authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// A new authorization was recorded (approved or declined).
    Created(Authorization),
    /// The reference was seen before: the first authorization, unchanged.
    Existing(Authorization),
}

/// Result of a capture, void or refund that the issuer accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub authorization: Authorization,
    pub refund: Option<Refund>,
    /// A repeated refund (same `refund_reference` and amount): nothing changed.
    pub replayed: bool,
}

/// What [`Store::ledger`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerFilter {
    pub reference: Option<String>,
    pub acquirer_ref: Option<String>,
    /// Entries with a larger sequence number only.
    pub after_seq: i64,
    pub limit: i64,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Increasing with every entry.
    pub seq: i64,
    pub at: i64,
    /// A [`LedgerKind`] as text.
    pub kind: String,
    pub acquirer_ref: String,
    pub reference: String,
    pub refund_reference: Option<String>,
    pub merchant_id: String,
    pub masked_pan: String,
    pub currency: String,
    pub amount: i64,
    pub decline_code: Option<String>,
}

/// The sandbox's database.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

const AUTHORIZATION_COLUMNS: &str = "acquirer_ref, reference, merchant_id, masked_pan, balance_key, currency, amount, \
     status, auth_code, rrn, decline_code, captured_amount, refunded_amount, request_digest, created_at, updated_at";

const LEDGER_COLUMNS: &str = "seq, at, kind, acquirer_ref, reference, refund_reference, merchant_id, masked_pan, \
     currency, amount, decline_code";

/// Bind an authorization's columns in [`AUTHORIZATION_COLUMNS`] order.
fn bind_authorization<'q, B: Bind<'q>>(b: B, auth: &'q Authorization) -> B {
    b.text(&auth.acquirer_ref)
        .text(&auth.reference)
        .text(&auth.merchant_id)
        .text(&auth.masked_pan)
        .text(&auth.balance_key)
        .text(&auth.currency)
        .int(auth.amount)
        .text(auth.status.as_str())
        .opt_text(auth.auth_code.as_deref())
        .text(&auth.rrn)
        .opt_text(auth.decline_code.map(DeclineCode::as_str))
        .int(auth.captured_amount)
        .int(auth.refunded_amount)
        .text(&auth.request_digest)
        .int(auth.created_at)
        .int(auth.updated_at)
}

/// Bind a ledger entry of `auth` for [`insert_ledger_sql`]; `decline_code` only for the
/// entry of a new authorization.
fn bind_ledger_entry<'q, B: Bind<'q>>(
    b: B,
    at: i64,
    auth: &'q Authorization,
    entry: &'q LedgerDraft,
    decline_code: Option<DeclineCode>,
) -> B {
    b.int(at)
        .text(entry.kind.as_str())
        .text(&auth.acquirer_ref)
        .text(&auth.reference)
        .opt_text(entry.refund_reference.as_deref())
        .text(&auth.merchant_id)
        .text(&auth.masked_pan)
        .text(&auth.currency)
        .int(entry.amount)
        .opt_text(decline_code.map(DeclineCode::as_str))
}

/// A card's balance after an authorization held funds (the same statement on both
/// backends).
const SET_BALANCE: &str = "UPDATE balances SET balance = $1, held = $2 WHERE balance_key = $3 AND currency = $4";

/// An approved authorization spends the CAVV it presented (both backends).
const SPEND_CAVV: &str =
    "UPDATE threeds_transactions SET cavv_used = TRUE, updated_at = $1 WHERE ds_trans_id = $2 AND cavv_used = FALSE";

fn insert_authorization_sql() -> String {
    format!(
        "INSERT INTO authorizations ({AUTHORIZATION_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    )
}

/// [`Store::try_authorize`] on SQLite: one group-commit unit (the committer's
/// transaction holds the write lock, so the balance and the CAVV read here are the ones
/// written back). `None`: the reference was taken already (nothing written). The same
/// steps and outcomes as [`authorize_postgres`].
fn authorize_unit(conn: &Connection, new: &NewAuthorization) -> Result<Option<Authorization>, StoreError> {
    let taken = conn.prepare_cached("SELECT 1 FROM authorizations WHERE reference = ?1")?.exists([&new.reference])?;
    if taken {
        return Ok(None);
    }
    let mut decline = new.decline;
    if let (None, Some(claim)) = (decline, &new.three_ds) {
        let issued = three_ds::issued_by_ds_trans_id(conn, &claim.ds_trans_id)?;
        if !issuer::three_ds_accepted(issued.as_ref(), claim, &new.balance_key, new.amount) {
            decline = Some(DeclineCode::ThreeDsAuthenticationInvalid);
        }
    }
    let decline = match decline {
        Some(code) => Some(code),
        None => {
            let current = conn
                .prepare_cached("SELECT balance, held FROM balances WHERE balance_key = ?1 AND currency = ?2")?
                .query_row([&new.balance_key, &new.currency], |r| Ok(Balance { balance: r.get(0)?, held: r.get(1)? }))
                .optional()?;
            let current = match current {
                Some(current) => current,
                None => {
                    Args::default().bind(&new.balance_key).bind(&new.currency).bind(new.initial_balance).execute(
                        conn,
                        "INSERT INTO balances (balance_key, currency, balance, held) VALUES ($1, $2, $3, 0)",
                    )?;
                    Balance { balance: new.initial_balance, held: 0 }
                }
            };
            match issuer::hold_funds(current, new.amount, new.capture) {
                Ok(after) => {
                    Args::default()
                        .bind(after.balance)
                        .bind(after.held)
                        .bind(&new.balance_key)
                        .bind(&new.currency)
                        .execute(conn, SET_BALANCE)?;
                    None
                }
                Err(code) => Some(code),
            }
        }
    };
    if let (None, Some(claim)) = (decline, &new.three_ds) {
        // Approved: the CAVV is spent with this authorization.
        Args::default().bind(new.now).bind(&claim.ds_trans_id).execute(conn, SPEND_CAVV)?;
    }
    let auth = authorization_record(new, decline);
    bind_authorization(Args::default(), &auth).execute(conn, &insert_authorization_sql())?;
    for entry in authorization_ledger(&auth) {
        bind_ledger_entry(Args::default(), new.now, &auth, &entry, auth.decline_code)
            .execute(conn, &insert_ledger_sql())?;
    }
    Ok(Some(auth))
}

/// [`Store::try_authorize`] on PostgreSQL: one transaction; `FOR UPDATE` locks the CAVV's
/// and the balance's rows to the commit, so what is checked is what is written back.
/// The same steps and outcomes as [`authorize_unit`] (a taken reference answers with
/// the first authorization; a concurrent duplicate loses on the unique index, and
/// [`Store::authorize`] answers it the same way).
async fn authorize_postgres(pool: &PgPool, new: &NewAuthorization) -> Result<AuthorizeOutcome, StoreError> {
    let lock = RowLock::POSTGRES.for_update();
    let mut tx = pool.begin().await?;
    let sql = format!("SELECT {AUTHORIZATION_COLUMNS} FROM authorizations WHERE reference = $1");
    if let Some(row) = sqlx::query(&sql).bind(&new.reference).fetch_optional(&mut *tx).await? {
        return Ok(AuthorizeOutcome::Existing(authorization_from_row(&row)?));
    }
    let mut decline = new.decline;
    if let (None, Some(claim)) = (decline, &new.three_ds) {
        let sql = format!("SELECT {} FROM threeds_transactions WHERE ds_trans_id = $1{lock}", three_ds::ISSUED_COLUMNS);
        let issued = sqlx::query(&sql)
            .bind(&claim.ds_trans_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| three_ds::issued_from_row(&row))
            .transpose()?;
        if !issuer::three_ds_accepted(issued.as_ref(), claim, &new.balance_key, new.amount) {
            decline = Some(DeclineCode::ThreeDsAuthenticationInvalid);
        }
    }
    let decline = match decline {
        Some(code) => Some(code),
        None => {
            sqlx::query(
                "INSERT INTO balances (balance_key, currency, balance, held) VALUES ($1, $2, $3, 0) \
                 ON CONFLICT (balance_key, currency) DO NOTHING",
            )
            .bind(&new.balance_key)
            .bind(&new.currency)
            .bind(new.initial_balance)
            .execute(&mut *tx)
            .await?;
            let sql = format!("SELECT balance, held FROM balances WHERE balance_key = $1 AND currency = $2{lock}");
            let row = sqlx::query(&sql).bind(&new.balance_key).bind(&new.currency).fetch_one(&mut *tx).await?;
            let current = Balance { balance: row.try_get(0)?, held: row.try_get(1)? };
            match issuer::hold_funds(current, new.amount, new.capture) {
                Ok(after) => {
                    sqlx::query(SET_BALANCE)
                        .bind(after.balance)
                        .bind(after.held)
                        .bind(&new.balance_key)
                        .bind(&new.currency)
                        .execute(&mut *tx)
                        .await?;
                    None
                }
                Err(code) => Some(code),
            }
        }
    };
    if let (None, Some(claim)) = (decline, &new.three_ds) {
        // Approved: the CAVV is spent with this authorization, atomically (its row is
        // locked since the check).
        sqlx::query(
            "UPDATE threeds_transactions SET cavv_used = TRUE, updated_at = $1 \
             WHERE ds_trans_id = $2 AND cavv_used = FALSE",
        )
        .bind(new.now)
        .bind(&claim.ds_trans_id)
        .execute(&mut *tx)
        .await?;
    }
    let auth = authorization_record(new, decline);
    bind_authorization(sqlx::query(&insert_authorization_sql()), &auth).execute(&mut *tx).await?;
    for entry in authorization_ledger(&auth) {
        let sql = insert_ledger_sql();
        bind_ledger_entry(sqlx::query(&sql), new.now, &auth, &entry, auth.decline_code).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(AuthorizeOutcome::Created(auth))
}

impl Store {
    /// Connect to `url` (`sqlite::memory:` — a temporary file —, `sqlite:PATH` created
    /// if missing, or `postgres://…`). Does not migrate.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        // The writer only: the sandbox's reads are few.
        let connections = Connections { sqlite_readers: 0, postgres: POSTGRES_CONNECTIONS };
        Ok(Store { backend: Backend::open(url, connections).await? })
    }

    /// Apply this backend's migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.backend.migrate(&SQLITE_MIGRATOR, &POSTGRES_MIGRATOR).await
    }

    /// Record an authorization: the first one for its `reference` holds funds (or is
    /// declined); any later one returns the first unchanged.
    pub async fn authorize(&self, new: &NewAuthorization) -> Result<AuthorizeOutcome, StoreError> {
        match self.try_authorize(new).await {
            // PostgreSQL: a concurrent request with the same reference committed first.
            // Its row is visible now; answer with it.
            Err(e) if e.is_unique_violation() => match self.find_by_reference(&new.reference).await? {
                Some(first) => Ok(AuthorizeOutcome::Existing(first)),
                None => Err(e),
            },
            other => other,
        }
    }

    async fn try_authorize(&self, new: &NewAuthorization) -> Result<AuthorizeOutcome, StoreError> {
        match &self.backend {
            Backend::Sqlite(sqlite) => {
                let unit = new.clone();
                match sqlite.group.write(move |conn| authorize_unit(conn, &unit)).await? {
                    Some(auth) => Ok(AuthorizeOutcome::Created(auth)),
                    None => match self.find_by_reference(&new.reference).await? {
                        Some(first) => Ok(AuthorizeOutcome::Existing(first)),
                        None => {
                            Err(StoreError::Corrupt("an authorization's reference is taken but cannot be read".into()))
                        }
                    },
                }
            }
            Backend::Postgres(pool) => authorize_postgres(pool, new).await,
        }
    }

    /// Capture `amount` (all still held when `None`) of the authorization `acquirer_ref`;
    /// `final_capture` releases the rest.
    pub async fn capture(
        &self,
        acquirer_ref: &str,
        amount: Option<i64>,
        final_capture: bool,
        now: i64,
    ) -> Result<Result<Applied, OperationError>, StoreError> {
        self.transition(acquirer_ref, None, |auth, _| {
            issuer::capture(auth, amount, final_capture, now).map(|t| Step::Apply(Box::new(t)))
        })
        .await
    }

    /// Release the hold of the authorization `acquirer_ref`.
    pub async fn void(&self, acquirer_ref: &str, now: i64) -> Result<Result<Applied, OperationError>, StoreError> {
        self.transition(acquirer_ref, None, |auth, _| issuer::void(auth, now).map(|t| Step::Apply(Box::new(t)))).await
    }

    /// Refund `amount` of the authorization `acquirer_ref`; idempotent on
    /// `refund_reference` (same amount: the first refund again; another amount: conflict).
    pub async fn refund(
        &self,
        acquirer_ref: &str,
        amount: i64,
        refund_reference: &str,
        rrn: String,
        now: i64,
    ) -> Result<Result<Applied, OperationError>, StoreError> {
        self.transition(acquirer_ref, Some(refund_reference), |auth, earlier| match earlier {
            Some(earlier) if earlier.amount == amount => Ok(Step::Replay(earlier)),
            Some(_) => Err(OperationError::RefundReferenceConflict),
            None => issuer::refund(auth, amount, refund_reference, rrn, now).map(|t| Step::Apply(Box::new(t))),
        })
        .await
    }

    /// Lock the authorization, let `decide` compute the change, write it back.
    async fn transition(
        &self,
        acquirer_ref: &str,
        refund_reference: Option<&str>,
        decide: impl FnOnce(&Authorization, Option<Refund>) -> Result<Step, OperationError>,
    ) -> Result<Result<Applied, OperationError>, StoreError> {
        in_transaction!(&self.backend, |tx, lock| {
            let lock = lock.for_update();
            let sql = format!("SELECT {AUTHORIZATION_COLUMNS} FROM authorizations WHERE acquirer_ref = $1{lock}");
            let Some(row) = sqlx::query(&sql).bind(acquirer_ref).fetch_optional(&mut *tx).await? else {
                return Ok(Err(OperationError::UnknownAuthorization));
            };
            let auth = authorization_from_row(&row)?;
            let earlier = match refund_reference {
                Some(refund_reference) => sqlx::query(
                    "SELECT acquirer_ref, refund_reference, amount, rrn, created_at FROM refunds \
                     WHERE acquirer_ref = $1 AND refund_reference = $2",
                )
                .bind(acquirer_ref)
                .bind(refund_reference)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| refund_from_row(&row))
                .transpose()?,
                None => None,
            };
            let transition = match decide(&auth, earlier) {
                Ok(Step::Apply(transition)) => transition,
                Ok(Step::Replay(refund)) => {
                    return Ok(Ok(Applied { authorization: auth, refund: Some(refund), replayed: true }));
                }
                Err(e) => return Ok(Err(e)),
            };
            let Transition { authorization, balance_delta, held_delta, ledger, refund } = *transition;
            sqlx::query(
                "UPDATE authorizations SET status = $1, captured_amount = $2, refunded_amount = $3, updated_at = $4 \
                 WHERE acquirer_ref = $5",
            )
            .bind(authorization.status.as_str())
            .bind(authorization.captured_amount)
            .bind(authorization.refunded_amount)
            .bind(authorization.updated_at)
            .bind(&authorization.acquirer_ref)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE balances SET balance = balance + $1, held = held + $2 WHERE balance_key = $3 AND currency = $4",
            )
            .bind(balance_delta)
            .bind(held_delta)
            .bind(&authorization.balance_key)
            .bind(&authorization.currency)
            .execute(&mut *tx)
            .await?;
            if let Some(refund) = &refund {
                sqlx::query(
                    "INSERT INTO refunds (acquirer_ref, refund_reference, amount, rrn, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&refund.acquirer_ref)
                .bind(&refund.refund_reference)
                .bind(refund.amount)
                .bind(&refund.rrn)
                .bind(refund.created_at)
                .execute(&mut *tx)
                .await?;
            }
            for entry in &ledger {
                let sql = insert_ledger_sql();
                sqlx::query(&sql)
                    .bind(authorization.updated_at)
                    .bind(entry.kind.as_str())
                    .bind(&authorization.acquirer_ref)
                    .bind(&authorization.reference)
                    .bind(&entry.refund_reference)
                    .bind(&authorization.merchant_id)
                    .bind(&authorization.masked_pan)
                    .bind(&authorization.currency)
                    .bind(entry.amount)
                    .bind(None::<String>)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Ok(Applied { authorization, refund, replayed: false }))
        })
    }

    /// The authorization with this acquirer reference.
    pub async fn find_by_acquirer_ref(&self, acquirer_ref: &str) -> Result<Option<Authorization>, StoreError> {
        let sql = format!("SELECT {AUTHORIZATION_COLUMNS} FROM authorizations WHERE acquirer_ref = $1");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql)
                .bind(acquirer_ref)
                .fetch_optional(pool)
                .await?
                .map(|r| authorization_from_row(&r))
                .transpose()
        })
    }

    /// The authorization with this gateway reference (status inquiry).
    pub async fn find_by_reference(&self, reference: &str) -> Result<Option<Authorization>, StoreError> {
        let sql = format!("SELECT {AUTHORIZATION_COLUMNS} FROM authorizations WHERE reference = $1");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql)
                .bind(reference)
                .fetch_optional(pool)
                .await?
                .map(|r| authorization_from_row(&r))
                .transpose()
        })
    }

    /// Ledger entries in sequence order.
    pub async fn ledger(&self, filter: &LedgerFilter) -> Result<Vec<LedgerEntry>, StoreError> {
        let sql = format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger WHERE seq > $1 AND ($2 IS NULL OR reference = $2) \
             AND ($3 IS NULL OR acquirer_ref = $3) ORDER BY seq LIMIT $4"
        );
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(&sql)
                .bind(filter.after_seq)
                .bind(&filter.reference)
                .bind(&filter.acquirer_ref)
                .bind(filter.limit)
                .fetch_all(pool)
                .await?;
            rows.iter().map(ledger_from_row).collect()
        })
    }

    /// A card's balance in `currency`, if it has ever been used in that currency.
    pub async fn balance(&self, balance_key: &str, currency: &str) -> Result<Option<Balance>, StoreError> {
        on_reader!(&self.backend, |pool| {
            let row = sqlx::query("SELECT balance, held FROM balances WHERE balance_key = $1 AND currency = $2")
                .bind(balance_key)
                .bind(currency)
                .fetch_optional(pool)
                .await?;
            row.map(|row| Ok(Balance { balance: row.try_get(0)?, held: row.try_get(1)? })).transpose()
        })
    }
}

/// What a transition's decision asks the store to do.
#[derive(Debug)]
enum Step {
    Apply(Box<Transition>),
    /// A repeated refund: answer with the earlier one.
    Replay(Refund),
}

fn insert_ledger_sql() -> String {
    "INSERT INTO ledger (at, kind, acquirer_ref, reference, refund_reference, merchant_id, masked_pan, currency, \
     amount, decline_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        .to_owned()
}

/// The authorization row for `new` with the issuer's decision.
fn authorization_record(new: &NewAuthorization, decline: Option<DeclineCode>) -> Authorization {
    let (status, captured_amount) = match (decline, new.capture) {
        (Some(_), _) => (AuthorizationStatus::Declined, 0),
        (None, false) => (AuthorizationStatus::Authorized, 0),
        (None, true) => (AuthorizationStatus::Captured, new.amount),
    };
    Authorization {
        acquirer_ref: new.acquirer_ref.clone(),
        reference: new.reference.clone(),
        merchant_id: new.merchant_id.clone(),
        masked_pan: new.masked_pan.clone(),
        balance_key: new.balance_key.clone(),
        currency: new.currency.clone(),
        amount: new.amount,
        status,
        auth_code: decline.is_none().then(|| new.auth_code.clone()),
        rrn: new.rrn.clone(),
        decline_code: decline,
        captured_amount,
        refunded_amount: 0,
        request_digest: new.request_digest.clone(),
        created_at: new.now,
        updated_at: new.now,
    }
}

/// Ledger entries of a new authorization: the decline, or the hold (and the capture
/// when it was captured at once).
fn authorization_ledger(auth: &Authorization) -> Vec<LedgerDraft> {
    let entry = |kind| LedgerDraft { kind, amount: auth.amount, refund_reference: None };
    match auth.status {
        AuthorizationStatus::Declined => vec![entry(LedgerKind::Decline)],
        AuthorizationStatus::Captured => vec![entry(LedgerKind::Authorization), entry(LedgerKind::Capture)],
        _ => vec![entry(LedgerKind::Authorization)],
    }
}

fn authorization_from_row(row: &impl StoreRow) -> Result<Authorization, StoreError> {
    Ok(Authorization {
        acquirer_ref: row.text("acquirer_ref")?,
        reference: row.text("reference")?,
        merchant_id: row.text("merchant_id")?,
        masked_pan: row.text("masked_pan")?,
        balance_key: row.text("balance_key")?,
        currency: row.text("currency")?,
        amount: row.int("amount")?,
        status: row.parsed("status", AuthorizationStatus::parse)?,
        auth_code: row.opt_text("auth_code")?,
        rrn: row.text("rrn")?,
        decline_code: row
            .opt_text("decline_code")?
            .map(|c| DeclineCode::parse(&c).ok_or_else(|| StoreError::Corrupt(format!("decline code {c:?}"))))
            .transpose()?,
        captured_amount: row.int("captured_amount")?,
        refunded_amount: row.int("refunded_amount")?,
        request_digest: row.text("request_digest")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

fn refund_from_row(row: &impl StoreRow) -> Result<Refund, StoreError> {
    Ok(Refund {
        acquirer_ref: row.text("acquirer_ref")?,
        refund_reference: row.text("refund_reference")?,
        amount: row.int("amount")?,
        rrn: row.text("rrn")?,
        created_at: row.int("created_at")?,
    })
}

fn ledger_from_row(row: &impl StoreRow) -> Result<LedgerEntry, StoreError> {
    Ok(LedgerEntry {
        seq: row.int("seq")?,
        at: row.int("at")?,
        kind: row.text("kind")?,
        acquirer_ref: row.text("acquirer_ref")?,
        reference: row.text("reference")?,
        refund_reference: row.opt_text("refund_reference")?,
        merchant_id: row.text("merchant_id")?,
        masked_pan: row.text("masked_pan")?,
        currency: row.text("currency")?,
        amount: row.int("amount")?,
        decline_code: row.opt_text("decline_code")?,
    })
}

mod three_ds;

pub use three_ds::{ChallengeResult, ThreeDsInsert, ThreeDsTransaction};
