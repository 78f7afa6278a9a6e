//! The replay guard: signed requests claimed once, their answers kept until they expire.

use super::records::RequestClaim;
use super::{Store, StoreError};
use paysys_db::on_pool;
use sqlx::Row;

impl Store {
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
}
