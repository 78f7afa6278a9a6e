//! The 3-D Secure Server's authentications, and the payments whose 3DS step ran out.

use super::records::AuthenticationRecord;
use super::rows::{
    authentication_from_row, bind_authentication, bind_authentication_update, AUTHENTICATION_COLUMNS,
    UPDATE_AUTHENTICATION,
};
use super::{Store, StoreError};
use paysys_db::{on_pool, on_reader, Args, Backend};

impl Store {
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
}
