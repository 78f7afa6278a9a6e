//! Payments: the idempotent insert, the lease, the save after each operation (the
//! hot path: a group-commit unit on SQLite, one statement on PostgreSQL), the workers'
//! claims, and the ledger.

use super::records::{LedgerRow, PaymentFilter, PaymentRecord, RefundRecord, Slot};
use super::rows::{
    bind_ledger, bind_payment, bind_payment_update, bind_refund_update, insert_payment_sql, ledger_args,
    ledger_from_row, payment_from_row, postgres_insert_payment_sql, postgres_save_payment_sql, LEDGER_COLUMNS,
    PAYMENT_COLUMNS, UPDATE_PAYMENT, UPDATE_REFUND,
};
use super::webhooks::{bind_outbox, events_like, postgres_with_outbox, OUTBOX_INSERT};
use super::{Store, StoreError};
use crate::state::PaymentStatus;
use paysys_db::{in_transaction, on_pool, on_reader, Args, Backend};
use sqlx::Row;

impl Store {
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
    /// state, in one transaction — with the webhook events the change makes
    /// ([`crate::webhooks::payment_events`]) fanned out to the merchant's endpoints'
    /// outbox in that same transaction, so an event is never lost nor sent for a change
    /// that was not saved. (A payment's insert makes no event: it is `created`,
    /// `authorizing` or `requires_3ds` before its challenge.)
    pub async fn save_payment(
        &self,
        p: &PaymentRecord,
        ledger: &[LedgerRow],
        refund: Option<&RefundRecord>,
    ) -> Result<(), StoreError> {
        let events = crate::webhooks::payment_events(p, ledger, refund);
        let likes: Vec<String> = events.iter().map(|e| events_like(e.event_type)).collect();
        match &self.backend {
            Backend::Sqlite(sqlite) => {
                let payment = bind_payment_update(Args::default(), p);
                let ledger = ledger_args(ledger);
                let refund = refund.map(|r| bind_refund_update(Args::default(), r));
                let outbox: Vec<Args> =
                    events.iter().zip(&likes).map(|(e, like)| bind_outbox(Args::default(), e, like)).collect();
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
                        for event in outbox {
                            event.execute(conn, OUTBOX_INSERT)?;
                        }
                        Ok(())
                    })
                    .await
            }
            Backend::Postgres(pool) => {
                // One statement, atomic on its own: one round trip instead of four.
                let sql = postgres_save_payment_sql(ledger.len(), refund.is_some());
                let params = 17 + 8 * ledger.len() + if refund.is_some() { 6 } else { 0 };
                let sql = postgres_with_outbox(&sql, params, events.len());
                let query = ledger.iter().fold(bind_payment_update(sqlx::query(&sql), p), bind_ledger);
                let query = match refund {
                    Some(r) => bind_refund_update(query, r),
                    None => query,
                };
                let query = events.iter().zip(&likes).fold(query, |q, (e, like)| bind_outbox(q, e, like));
                query.execute(pool).await?;
                Ok(())
            }
        }
    }

    /// Save a leased payment's new state (as [`Store::save_payment`]) and give its lease
    /// back in the same write: `p.lease_until` becomes 0 here, so no caller can save the
    /// result and forget the lease (which would block the payment until it ran out).
    pub async fn save_and_release(
        &self,
        p: &mut PaymentRecord,
        ledger: &[LedgerRow],
        refund: Option<&RefundRecord>,
    ) -> Result<(), StoreError> {
        p.lease_until = 0;
        self.save_payment(p, ledger, refund).await
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

    pub(super) async fn claim(
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
}
