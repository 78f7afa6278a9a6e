//! Captures under a `partner_capture_id`.

use super::records::{CaptureRecord, Slot};
use super::rows::{capture_from_row, CAPTURE_COLUMNS};
use super::{Store, StoreError};
use paysys_db::{on_pool, on_reader};

impl Store {
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
}
