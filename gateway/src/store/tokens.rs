//! Removed tokens (`card.remove`) and deleting their cards in the vault.

use super::records::RemovedToken;
use super::{Store, StoreError};
use crate::state::PaymentStatus;
use paysys_db::{in_transaction, on_pool, on_reader, StoreRow};
use sqlx::Row;

impl Store {
    /// Record that `merchant_id` removed `token`, with the deletion of its card in the
    /// vault already claimed by the caller until `claimed_until`, so the worker does not
    /// delete the same card beside it. `false` when it was removed before (nothing
    /// written).
    pub async fn remove_token(
        &self,
        merchant_id: &str,
        token: &str,
        now: i64,
        claimed_until: i64,
    ) -> Result<bool, StoreError> {
        let inserted = on_pool!(&self.backend, |pool| {
            sqlx::query(
                "INSERT INTO removed_tokens (merchant_id, token, removed_at, vault_next_attempt_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (merchant_id, token) DO NOTHING",
            )
            .bind(merchant_id)
            .bind(token)
            .bind(now)
            .bind(claimed_until)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Claim the pending deletion of `token`'s card until `until`, unless the worker or
    /// another request holds it (or its back-off runs) at `now`. `true` when claimed.
    pub async fn claim_vault_removal(
        &self,
        merchant_id: &str,
        token: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let claimed = on_pool!(&self.backend, |pool| {
            sqlx::query(
                "UPDATE removed_tokens SET vault_next_attempt_at = $1 WHERE merchant_id = $2 AND token = $3 \
                 AND vault_deleted_at IS NULL AND vault_next_attempt_at <= $4",
            )
            .bind(until)
            .bind(merchant_id)
            .bind(token)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(claimed == 1)
    }

    /// Give a claimed deletion back to the worker, due at once: it deletes the card when
    /// no open payment needs it any more.
    pub async fn release_vault_removal(&self, merchant_id: &str, token: &str) -> Result<(), StoreError> {
        on_pool!(&self.backend, |pool| {
            sqlx::query(
                "UPDATE removed_tokens SET vault_next_attempt_at = 0 \
                 WHERE merchant_id = $1 AND token = $2 AND vault_deleted_at IS NULL",
            )
            .bind(merchant_id)
            .bind(token)
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
                    merchant_id: r.text("merchant_id")?,
                    token: r.text("token")?,
                    removed_at: r.int("removed_at")?,
                    vault_deleted_at: r.opt_int("vault_deleted_at")?,
                    vault_attempts: r.int("vault_attempts")?,
                    vault_next_attempt_at: r.int("vault_next_attempt_at")?,
                    vault_last_error: r.opt_text("vault_last_error")?,
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
