//! Refunds under their `partner_refund_id`.

use super::records::{RefundRecord, Slot};
use super::rows::{bind_refund, bind_refund_update, refund_from_row, REFUND_COLUMNS, UPDATE_REFUND};
use super::{Store, StoreError};
use paysys_db::{in_transaction, on_pool, on_reader};
use sqlx::Row;

impl Store {
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
}
