//! The 3-D Secure tables: authentications (one per AReq) and 3DS Method runs. Part of
//! [`crate::store`], so still the only place with SQL; the issuer's use of a CAVV is in
//! the authorization's own transaction ([`Store::authorize`]).
//!
//! Every state change of an authentication is one conditional `UPDATE … WHERE
//! trans_status = 'C'`: of two concurrent ends of a challenge (two submits, a submit and
//! the expiry sweep, two replicas) exactly one changes the row, and only that one sends
//! the RReq.

use super::{Backend, Store, StoreError};
use crate::issuer::IssuedAuthentication;
use paysys_db::rusqlite::{Connection, OptionalExtension};
use paysys_db::{in_transaction, on_pool, on_reader, Args, Bind, StoreRow};
use sqlx::Row;

/// One 3-D Secure authentication. No card number: its balance key and masked form.
#[derive(Clone, PartialEq, Eq)]
pub struct ThreeDsTransaction {
    /// The 3DS Server's id; the primary key and the idempotency key of the AReq.
    pub three_ds_server_trans_id: String,
    pub ds_trans_id: String,
    pub acs_trans_id: String,
    pub message_version: String,
    /// [`crate::cards::CardNumber::balance_key`] of the card.
    pub card_key: String,
    /// `400000******3014`.
    pub masked_pan: String,
    /// Minor units.
    pub purchase_amount: i64,
    /// ISO 4217 numeric.
    pub purchase_currency: String,
    pub purchase_exponent: i64,
    pub merchant_name: String,
    /// Where the RReq goes.
    pub three_ds_server_url: String,
    /// Where the browser posts the CRes.
    pub notification_url: String,
    /// The ARes JSON as sent.
    pub ares: String,
    pub ares_trans_status: String,
    /// `C` while a challenge is open; final otherwise.
    pub trans_status: String,
    pub trans_status_reason: Option<String>,
    /// Set with `authentication_value`, for `Y` and `A` only.
    pub eci: Option<String>,
    pub authentication_value: Option<String>,
    pub challenge_cancel: Option<String>,
    /// The issuer accepted the CAVV for an authorization; it is never accepted again.
    pub cavv_used: bool,
    /// The one-time nonce of the challenge form last shown.
    pub challenge_nonce: Option<String>,
    /// Unix ms after which an open challenge ends `N` `14` (challenges only).
    pub challenge_expires_at: Option<i64>,
    /// A 3DS Method ran for this `threeDSServerTransID`.
    pub method_completed: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ThreeDsTransaction {
    /// Not waiting for a challenge any more.
    pub fn is_final(&self) -> bool {
        self.trans_status != "C"
    }
}

/// Ids and status only: the CAVV and the form nonce are credentials.
impl std::fmt::Debug for ThreeDsTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreeDsTransaction")
            .field("three_ds_server_trans_id", &self.three_ds_server_trans_id)
            .field("ds_trans_id", &self.ds_trans_id)
            .field("acs_trans_id", &self.acs_trans_id)
            .field("masked_pan", &self.masked_pan)
            .field("trans_status", &self.trans_status)
            .field("trans_status_reason", &self.trans_status_reason)
            .field("cavv_used", &self.cavv_used)
            .finish_non_exhaustive()
    }
}

/// Result of [`Store::insert_three_ds`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreeDsInsert {
    Created(ThreeDsTransaction),
    /// The `threeDSServerTransID` was seen before: the first authentication, unchanged.
    Existing(ThreeDsTransaction),
}

/// The final outcome written when a challenge ends.
#[derive(Clone, PartialEq, Eq)]
pub struct ChallengeResult {
    pub trans_status: String,
    pub trans_status_reason: Option<String>,
    pub eci: Option<String>,
    pub authentication_value: Option<String>,
    pub challenge_cancel: Option<String>,
}

impl std::fmt::Debug for ChallengeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeResult")
            .field("trans_status", &self.trans_status)
            .field("trans_status_reason", &self.trans_status_reason)
            .field("challenge_cancel", &self.challenge_cancel)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "three_ds_server_trans_id, ds_trans_id, acs_trans_id, message_version, card_key, masked_pan, \
     purchase_amount, purchase_currency, purchase_exponent, merchant_name, three_ds_server_url, notification_url, \
     ares, ares_trans_status, trans_status, trans_status_reason, eci, authentication_value, challenge_cancel, \
     cavv_used, challenge_nonce, challenge_expires_at, method_completed, created_at, updated_at";

/// Bind every column of an authentication, in [`COLUMNS`] order.
fn bind_three_ds<'q, B: Bind<'q>>(b: B, r: &'q ThreeDsTransaction) -> B {
    b.text(&r.three_ds_server_trans_id)
        .text(&r.ds_trans_id)
        .text(&r.acs_trans_id)
        .text(&r.message_version)
        .text(&r.card_key)
        .text(&r.masked_pan)
        .int(r.purchase_amount)
        .text(&r.purchase_currency)
        .int(r.purchase_exponent)
        .text(&r.merchant_name)
        .text(&r.three_ds_server_url)
        .text(&r.notification_url)
        .text(&r.ares)
        .text(&r.ares_trans_status)
        .text(&r.trans_status)
        .opt_text(r.trans_status_reason.as_deref())
        .opt_text(r.eci.as_deref())
        .opt_text(r.authentication_value.as_deref())
        .opt_text(r.challenge_cancel.as_deref())
        .flag(r.cavv_used)
        .opt_text(r.challenge_nonce.as_deref())
        .opt_int(r.challenge_expires_at)
        .flag(r.method_completed)
        .int(r.created_at)
        .int(r.updated_at)
}

fn insert_sql() -> String {
    format!(
        "INSERT INTO threeds_transactions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"
    )
}

/// [`Store::insert_three_ds`] as one group-commit unit (SQLite). `None`: the id is
/// taken already.
fn insert_unit(conn: &Connection, new: ThreeDsTransaction) -> Result<Option<ThreeDsTransaction>, StoreError> {
    let taken = conn
        .prepare_cached("SELECT 1 FROM threeds_transactions WHERE three_ds_server_trans_id = ?1")?
        .exists([&new.three_ds_server_trans_id])?;
    if taken {
        return Ok(None);
    }
    let method_ran = conn
        .prepare_cached("SELECT 1 FROM threeds_method_runs WHERE three_ds_server_trans_id = ?1")?
        .exists([&new.three_ds_server_trans_id])?;
    let record = ThreeDsTransaction { method_completed: new.method_completed || method_ran, ..new };
    bind_three_ds(Args::default(), &record).execute(conn, &insert_sql())?;
    Ok(Some(record))
}

/// The issuer's view of the authentication with this `dsTransID`, read inside the
/// authorization's group-commit unit.
pub(super) fn issued_by_ds_trans_id(
    conn: &Connection,
    ds_trans_id: &str,
) -> Result<Option<IssuedAuthentication>, StoreError> {
    let sql = format!("SELECT {ISSUED_COLUMNS} FROM threeds_transactions WHERE ds_trans_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([ds_trans_id], |r| {
            Ok(IssuedAuthentication {
                card_key: r.get(0)?,
                purchase_amount: r.get(1)?,
                purchase_currency: r.get(2)?,
                authentication_value: r.get(3)?,
                cavv_used: r.get(4)?,
            })
        })
        .optional()?)
}

impl Store {
    /// Record a new authentication, unless its `threeDSServerTransID` exists: then the
    /// first one is returned unchanged. `method_completed` is set when a 3DS Method ran
    /// for the id before.
    pub async fn insert_three_ds(&self, new: &ThreeDsTransaction) -> Result<ThreeDsInsert, StoreError> {
        match self.try_insert_three_ds(new).await {
            // PostgreSQL: a concurrent AReq with the same id committed first.
            Err(e) if e.is_unique_violation() => match self.three_ds_by_server_id(&new.three_ds_server_trans_id).await?
            {
                Some(first) => Ok(ThreeDsInsert::Existing(first)),
                None => Err(e),
            },
            other => other,
        }
    }

    async fn try_insert_three_ds(&self, new: &ThreeDsTransaction) -> Result<ThreeDsInsert, StoreError> {
        let pool = match &self.backend {
            Backend::Sqlite(sqlite) => {
                let unit = new.clone();
                return match sqlite.group.write(move |conn| insert_unit(conn, unit)).await? {
                    Some(record) => Ok(ThreeDsInsert::Created(record)),
                    None => match self.three_ds_by_server_id(&new.three_ds_server_trans_id).await? {
                        Some(first) => Ok(ThreeDsInsert::Existing(first)),
                        None => Err(StoreError::Corrupt("an authentication's id is taken but cannot be read".into())),
                    },
                };
            }
            Backend::Postgres(pool) => pool,
        };
        // The same steps as `insert_unit`; a concurrent duplicate loses on the primary key
        // and `insert_three_ds` answers it with the first.
        let mut tx = pool.begin().await?;
        let sql = format!("SELECT {COLUMNS} FROM threeds_transactions WHERE three_ds_server_trans_id = $1");
        if let Some(row) = sqlx::query(&sql).bind(&new.three_ds_server_trans_id).fetch_optional(&mut *tx).await? {
            return Ok(ThreeDsInsert::Existing(transaction_from_row(&row)?));
        }
        let method_ran = sqlx::query("SELECT 1 FROM threeds_method_runs WHERE three_ds_server_trans_id = $1")
            .bind(&new.three_ds_server_trans_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let record = ThreeDsTransaction { method_completed: new.method_completed || method_ran, ..new.clone() };
        bind_three_ds(sqlx::query(&insert_sql()), &record).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(ThreeDsInsert::Created(record))
    }

    /// The authentication with this `threeDSServerTransID`.
    pub async fn three_ds_by_server_id(&self, id: &str) -> Result<Option<ThreeDsTransaction>, StoreError> {
        self.three_ds_where("three_ds_server_trans_id", id).await
    }

    /// The authentication with this `acsTransID`.
    pub async fn three_ds_by_acs_id(&self, acs_trans_id: &str) -> Result<Option<ThreeDsTransaction>, StoreError> {
        self.three_ds_where("acs_trans_id", acs_trans_id).await
    }

    async fn three_ds_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<ThreeDsTransaction>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM threeds_transactions WHERE {column} = $1");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql).bind(value).fetch_optional(pool).await?.map(|r| transaction_from_row(&r)).transpose()
        })
    }

    /// Remember the nonce of the challenge form just shown (it replaces any earlier
    /// one, so an older form no longer submits). `false` when the challenge is over.
    pub async fn set_challenge_nonce(&self, acs_trans_id: &str, nonce: &str, now: i64) -> Result<bool, StoreError> {
        on_pool!(&self.backend, |pool| {
            let done = sqlx::query(
                "UPDATE threeds_transactions SET challenge_nonce = $1, updated_at = $2 \
                 WHERE acs_trans_id = $3 AND trans_status = 'C'",
            )
            .bind(nonce)
            .bind(now)
            .bind(acs_trans_id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// End the open challenge `acs_trans_id` with `result` — only if it is still open
    /// and, when `nonce` is given, its form nonce is that one. The updated row when this
    /// call ended it; `None` when it was over already (or the nonce is stale).
    pub async fn end_challenge(
        &self,
        acs_trans_id: &str,
        nonce: Option<&str>,
        result: &ChallengeResult,
        now: i64,
    ) -> Result<Option<ThreeDsTransaction>, StoreError> {
        in_transaction!(&self.backend, |tx, _lock| {
            let done = sqlx::query(
                "UPDATE threeds_transactions SET trans_status = $1, trans_status_reason = $2, eci = $3, \
                 authentication_value = $4, challenge_cancel = $5, challenge_nonce = NULL, updated_at = $6 \
                 WHERE acs_trans_id = $7 AND trans_status = 'C' AND ($8 IS NULL OR challenge_nonce = $8)",
            )
            .bind(&result.trans_status)
            .bind(&result.trans_status_reason)
            .bind(&result.eci)
            .bind(&result.authentication_value)
            .bind(&result.challenge_cancel)
            .bind(now)
            .bind(acs_trans_id)
            .bind(nonce)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(None);
            }
            let sql = format!("SELECT {COLUMNS} FROM threeds_transactions WHERE acs_trans_id = $1");
            let row = sqlx::query(&sql).bind(acs_trans_id).fetch_one(&mut *tx).await?;
            let ended = transaction_from_row(&row)?;
            tx.commit().await?;
            Ok(Some(ended))
        })
    }

    /// The `acsTransID`s of open challenges whose time ran out at `now`, at most `limit`.
    pub async fn expired_challenges(&self, now: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(
                "SELECT acs_trans_id FROM threeds_transactions \
                 WHERE trans_status = 'C' AND challenge_expires_at <= $1 ORDER BY challenge_expires_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| Ok(r.try_get::<String, _>(0)?)).collect()
        })
    }

    /// Record that the 3DS Method ran for `id` (before or after its AReq).
    pub async fn record_method_run(&self, id: &str, now: i64) -> Result<(), StoreError> {
        in_transaction!(&self.backend, |tx, _lock| {
            sqlx::query(
                "INSERT INTO threeds_method_runs (three_ds_server_trans_id, created_at) VALUES ($1, $2) \
                 ON CONFLICT (three_ds_server_trans_id) DO NOTHING",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE threeds_transactions SET method_completed = TRUE, updated_at = $1 \
                 WHERE three_ds_server_trans_id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

/// The `SELECT` list of [`issued_from_row`], for the authorization's transaction.
pub(super) const ISSUED_COLUMNS: &str = "card_key, purchase_amount, purchase_currency, authentication_value, cavv_used";

pub(super) fn issued_from_row(row: &impl StoreRow) -> Result<IssuedAuthentication, StoreError> {
    Ok(IssuedAuthentication {
        card_key: row.text("card_key")?,
        purchase_amount: row.int("purchase_amount")?,
        purchase_currency: row.text("purchase_currency")?,
        authentication_value: row.opt_text("authentication_value")?,
        cavv_used: row.flag("cavv_used")?,
    })
}

fn transaction_from_row(row: &impl StoreRow) -> Result<ThreeDsTransaction, StoreError> {
    Ok(ThreeDsTransaction {
        three_ds_server_trans_id: row.text("three_ds_server_trans_id")?,
        ds_trans_id: row.text("ds_trans_id")?,
        acs_trans_id: row.text("acs_trans_id")?,
        message_version: row.text("message_version")?,
        card_key: row.text("card_key")?,
        masked_pan: row.text("masked_pan")?,
        purchase_amount: row.int("purchase_amount")?,
        purchase_currency: row.text("purchase_currency")?,
        purchase_exponent: row.int("purchase_exponent")?,
        merchant_name: row.text("merchant_name")?,
        three_ds_server_url: row.text("three_ds_server_url")?,
        notification_url: row.text("notification_url")?,
        ares: row.text("ares")?,
        ares_trans_status: row.text("ares_trans_status")?,
        trans_status: row.text("trans_status")?,
        trans_status_reason: row.opt_text("trans_status_reason")?,
        eci: row.opt_text("eci")?,
        authentication_value: row.opt_text("authentication_value")?,
        challenge_cancel: row.opt_text("challenge_cancel")?,
        cavv_used: row.flag("cavv_used")?,
        challenge_nonce: row.opt_text("challenge_nonce")?,
        challenge_expires_at: row.opt_int("challenge_expires_at")?,
        method_completed: row.flag("method_completed")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}
