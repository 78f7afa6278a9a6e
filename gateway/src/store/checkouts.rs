//! Checkouts (`checkout.create`) and their payment attempts.

use super::records::{AttemptCounts, AttemptOutcome, AttemptRecord, CheckoutRecord, CheckoutStatus, Slot};
use super::rows::{
    attempt_from_row, bind_attempt, bind_checkout, checkout_from_row, ATTEMPT_COLUMNS, CHECKOUT_COLUMNS,
};
use super::webhooks::{bind_outbox, events_like, OUTBOX_INSERT};
use super::{Store, StoreError};
use crate::webhooks::OutboxEvent;
use paysys_db::{in_transaction, on_pool, on_reader};
use sqlx::Row;

/// What became of [`Store::open_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptSlot {
    /// Recorded, with its number on the checkout.
    Opened(Box<AttemptRecord>),
    /// The checkout is not open (any more), or has run out.
    NotOpen,
    /// The checkout has had its `max` attempts.
    Exhausted,
}

/// What became of [`Store::begin_checkout_payment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStart {
    /// The attempt is spent and the checkout is `processing`: the caller pays.
    Started,
    /// No such attempt on this checkout.
    UnknownAttempt,
    /// The attempt paid before.
    AttemptUsed,
    /// The checkout is not open (any more), or has run out.
    NotOpen,
}

impl Store {
    /// Insert a new checkout unless `(merchant_id, partner_trans_id)` is taken; then the
    /// checkout that holds the key.
    pub async fn insert_checkout(&self, c: &CheckoutRecord) -> Result<Slot<CheckoutRecord>, StoreError> {
        let inserted = on_pool!(&self.backend, |pool| {
            let sql = format!(
                "INSERT INTO checkouts ({CHECKOUT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                 $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) \
                 ON CONFLICT (merchant_id, partner_trans_id) DO NOTHING"
            );
            bind_checkout(sqlx::query(&sql), c).execute(pool).await?.rows_affected()
        });
        if inserted == 1 {
            return Ok(Slot::Inserted);
        }
        match self.checkout_by_partner_id(&c.merchant_id, &c.partner_trans_id).await? {
            Some(existing) => Ok(Slot::Existing(existing)),
            None => Err(StoreError::Corrupt("a checkout key taken by no checkout".into())),
        }
    }

    /// Up to `limit` checkouts behind their state at `now`: open ones past their time,
    /// and processing ones whose payment has settled (the buyer did not come back to
    /// the page, and the merchant did not ask).
    pub async fn checkouts_to_follow(&self, now: i64, limit: i64) -> Result<Vec<CheckoutRecord>, StoreError> {
        let columns: Vec<String> = CHECKOUT_COLUMNS.split(", ").map(|c| format!("c.{}", c.trim())).collect();
        let sql = format!(
            "SELECT {} FROM checkouts c LEFT JOIN payments p ON p.transaction_id = c.transaction_id \
             WHERE (c.status = 'open' AND c.expires_at <= $1) \
             OR (c.status = 'processing' AND p.status IN ('authorized', 'partially_captured', 'captured', \
             'voided', 'expired', 'failed')) ORDER BY c.updated_at LIMIT $2",
            columns.join(", ")
        );
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(pool).await?;
            rows.iter().map(checkout_from_row).collect()
        })
    }

    pub async fn checkout(&self, checkout_id: &str) -> Result<Option<CheckoutRecord>, StoreError> {
        let sql = format!("SELECT {CHECKOUT_COLUMNS} FROM checkouts WHERE checkout_id = $1");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql).bind(checkout_id).fetch_optional(pool).await?.map(|r| checkout_from_row(&r)).transpose()
        })
    }

    pub async fn checkout_by_partner_id(
        &self,
        merchant_id: &str,
        partner_trans_id: &str,
    ) -> Result<Option<CheckoutRecord>, StoreError> {
        let sql = format!("SELECT {CHECKOUT_COLUMNS} FROM checkouts WHERE merchant_id = $1 AND partner_trans_id = $2");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql)
                .bind(merchant_id)
                .bind(partner_trans_id)
                .fetch_optional(pool)
                .await?
                .map(|r| checkout_from_row(&r))
                .transpose()
        })
    }

    /// Move a checkout from one of `from` to `to` (and record `transaction_id` when
    /// given); `false` when it was in none of them (someone else moved it first). The
    /// move's webhook `event`, if any, goes to the outbox in the same transaction, so
    /// only the replica whose move lands writes it.
    pub async fn move_checkout(
        &self,
        checkout_id: &str,
        from: &[CheckoutStatus],
        to: CheckoutStatus,
        transaction_id: Option<&str>,
        now: i64,
        event: Option<&OutboxEvent>,
    ) -> Result<bool, StoreError> {
        let statuses: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        if statuses.is_empty() {
            return Ok(false);
        }
        let sql = format!(
            "UPDATE checkouts SET status = $1, transaction_id = COALESCE($2, transaction_id), updated_at = $3 \
             WHERE checkout_id = $4 AND status IN ({})",
            statuses.join(", ")
        );
        let like = event.map(|e| events_like(e.event_type));
        in_transaction!(&self.backend, |tx, _lock| {
            let done = sqlx::query(&sql)
                .bind(to.as_str())
                .bind(transaction_id)
                .bind(now)
                .bind(checkout_id)
                .execute(&mut *tx)
                .await?;
            let moved = done.rows_affected() == 1;
            if let (true, Some(event), Some(like)) = (moved, event, like.as_deref()) {
                bind_outbox(sqlx::query(OUTBOX_INSERT), event, like).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(moved)
        })
    }

    /// Record a new attempt on an open, unexpired checkout at `now`, numbered after
    /// the ones before, unless it has had `max` of them. `attempt.number` is set here.
    pub async fn open_attempt(&self, attempt: &AttemptRecord, max: i64, now: i64) -> Result<AttemptSlot, StoreError> {
        in_transaction!(&self.backend, |tx, lock| {
            let sql = format!(
                "SELECT status, attempts, expires_at FROM checkouts WHERE checkout_id = $1{}",
                lock.for_update()
            );
            let Some(row) = sqlx::query(&sql).bind(&attempt.checkout_id).fetch_optional(&mut *tx).await? else {
                return Ok(AttemptSlot::NotOpen);
            };
            let (status, attempts, expires_at): (String, i64, i64) =
                (row.try_get("status")?, row.try_get("attempts")?, row.try_get("expires_at")?);
            if status != CheckoutStatus::Open.as_str() || expires_at <= now {
                return Ok(AttemptSlot::NotOpen);
            }
            if attempts >= max {
                return Ok(AttemptSlot::Exhausted);
            }
            sqlx::query("UPDATE checkouts SET attempts = $1, updated_at = $2 WHERE checkout_id = $3")
                .bind(attempts + 1)
                .bind(now)
                .bind(&attempt.checkout_id)
                .execute(&mut *tx)
                .await?;
            let mut opened = attempt.clone();
            opened.number = attempts + 1;
            let sql = format!(
                "INSERT INTO checkout_attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12, $13, $14)"
            );
            bind_attempt(sqlx::query(&sql), &opened).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(AttemptSlot::Opened(Box::new(opened)))
        })
    }

    pub async fn attempt(&self, attempt_id: &str) -> Result<Option<AttemptRecord>, StoreError> {
        let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM checkout_attempts WHERE attempt_id = $1");
        on_reader!(&self.backend, |pool| {
            sqlx::query(&sql).bind(attempt_id).fetch_optional(pool).await?.map(|r| attempt_from_row(&r)).transpose()
        })
    }

    /// The attempts of a checkout, in order.
    pub async fn attempts_of(&self, checkout_id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM checkout_attempts WHERE checkout_id = $1 ORDER BY number");
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(&sql).bind(checkout_id).fetch_all(pool).await?;
            rows.iter().map(attempt_from_row).collect()
        })
    }

    /// Spend `attempt_id` on `checkout_id` and move the checkout from `open` to
    /// `processing`, both or neither: of two concurrent payments with one attempt (or
    /// on one checkout) exactly one starts.
    pub async fn begin_checkout_payment(
        &self,
        checkout_id: &str,
        attempt_id: &str,
        now: i64,
    ) -> Result<PaymentStart, StoreError> {
        in_transaction!(&self.backend, |tx, lock| {
            let sql = format!(
                "SELECT used_at FROM checkout_attempts WHERE attempt_id = $1 AND checkout_id = $2{}",
                lock.for_update()
            );
            let Some(row) = sqlx::query(&sql).bind(attempt_id).bind(checkout_id).fetch_optional(&mut *tx).await? else {
                return Ok(PaymentStart::UnknownAttempt);
            };
            if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
                return Ok(PaymentStart::AttemptUsed);
            }
            let moved = sqlx::query(
                "UPDATE checkouts SET status = 'processing', updated_at = $1 \
                 WHERE checkout_id = $2 AND status = 'open' AND expires_at > $3",
            )
            .bind(now)
            .bind(checkout_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() != 1 {
                return Ok(PaymentStart::NotOpen);
            }
            sqlx::query("UPDATE checkout_attempts SET used_at = $1 WHERE attempt_id = $2")
                .bind(now)
                .bind(attempt_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(PaymentStart::Started)
        })
    }

    /// Record the payment an attempt made.
    pub async fn attempt_paid_with(&self, attempt_id: &str, transaction_id: &str) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query("UPDATE checkout_attempts SET transaction_id = $1 WHERE attempt_id = $2")
                .bind(transaction_id)
                .bind(attempt_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Record the card (its vault fingerprint) an attempt pays with.
    pub async fn attempt_card(&self, attempt_id: &str, fingerprint: &str) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query("UPDATE checkout_attempts SET fingerprint = $1 WHERE attempt_id = $2")
                .bind(fingerprint)
                .bind(attempt_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// How many other cards than `fingerprint` attempts issued to `client_ip` since
    /// `since` paid with.
    pub async fn other_cards_of_client(
        &self,
        client_ip: &str,
        since: i64,
        fingerprint: &str,
    ) -> Result<i64, StoreError> {
        on_reader!(&self.backend, |pool| {
            let row = sqlx::query(
                "SELECT COUNT(DISTINCT fingerprint) FROM checkout_attempts \
                 WHERE client_ip = $1 AND created_at >= $2 AND fingerprint IS NOT NULL AND fingerprint <> $3",
            )
            .bind(client_ip)
            .bind(since)
            .bind(fingerprint)
            .fetch_one(pool)
            .await?;
            Ok(row.try_get::<i64, _>(0)?)
        })
    }

    /// Record what an attempt's payment ended in (once: a later call changes nothing).
    pub async fn finish_attempt(&self, attempt_id: &str, outcome: AttemptOutcome, now: i64) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query(
                "UPDATE checkout_attempts SET outcome = $1, finished_at = $2 WHERE attempt_id = $3 AND outcome IS NULL",
            )
            .bind(outcome.as_str())
            .bind(now)
            .bind(attempt_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Attempts issued to `client_ip` since `client_since`, and `merchant_id`'s attempts
    /// that finished since `merchant_since` (all, and declined).
    pub async fn attempt_counts(
        &self,
        client_ip: Option<&str>,
        client_since: i64,
        merchant_id: &str,
        merchant_since: i64,
    ) -> Result<AttemptCounts, StoreError> {
        on_reader!(&self.backend, |pool| {
            let by_client = match client_ip {
                Some(ip) => {
                    sqlx::query("SELECT COUNT(*) FROM checkout_attempts WHERE client_ip = $1 AND created_at >= $2")
                        .bind(ip)
                        .bind(client_since)
                        .fetch_one(pool)
                        .await?
                        .try_get::<i64, _>(0)?
                }
                None => 0,
            };
            let row = sqlx::query(
                "SELECT COUNT(*) AS finished, \
                 CAST(COALESCE(SUM(CASE WHEN outcome = 'declined' THEN 1 ELSE 0 END), 0) AS BIGINT) AS declined \
                 FROM checkout_attempts WHERE merchant_id = $1 AND finished_at >= $2",
            )
            .bind(merchant_id)
            .bind(merchant_since)
            .fetch_one(pool)
            .await?;
            Ok(AttemptCounts {
                by_client,
                merchant_finished: row.try_get("finished")?,
                merchant_declined: row.try_get("declined")?,
            })
        })
    }
}
