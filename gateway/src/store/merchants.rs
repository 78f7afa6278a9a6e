//! Merchants: their API service id, sealed secret and `three_ds: auto` settings.

use super::records::MerchantRecord;
use super::{Store, StoreError};
use crate::three_ds::AutoSettings;
use paysys_db::{on_pool, on_reader, StoreRow};

impl Store {
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
                let proceed_on = r.text("three_ds_auto_proceed_on")?;
                let min_amounts = r.text("three_ds_auto_min_amounts")?;
                Ok(MerchantRecord {
                    merchant_id: r.text("merchant_id")?,
                    service_id: r.text("service_id")?,
                    name: r.text("name")?,
                    secret_sealed: r.text("secret_sealed")?,
                    created_at: r.int("created_at")?,
                    three_ds_auto: AutoSettings {
                        proceed_on: AutoSettings::parse_proceed_on(&proceed_on).map_err(corrupt)?,
                        min_amounts: AutoSettings::min_amounts_from_json(&min_amounts).map_err(corrupt)?,
                    },
                })
            })
            .transpose()
        })
    }
}
