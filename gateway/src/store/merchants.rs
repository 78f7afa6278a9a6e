//! Merchants: their API service id, sealed secret, `three_ds: auto` settings and
//! payment-widget settings.

use super::records::{MerchantRecord, WidgetSettings};
use super::{Store, StoreError};
use crate::three_ds::AutoSettings;
use paysys_db::{on_pool, on_reader, StoreRow};

const MERCHANT_COLUMNS: &str = "merchant_id, service_id, name, secret_sealed, created_at, three_ds_auto_proceed_on, \
     three_ds_auto_min_amounts, allowed_origins, allow_checkout_framing, card_testing_guard, card_testing_tripped_at";

impl Store {
    pub async fn insert_merchant(&self, m: &MerchantRecord) -> Result<(), StoreError> {
        let sql =
            format!("INSERT INTO merchants ({MERCHANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
        on_pool!(&self.backend, |pool| {
            sqlx::query(&sql)
                .bind(&m.merchant_id)
                .bind(&m.service_id)
                .bind(&m.name)
                .bind(&m.secret_sealed)
                .bind(m.created_at)
                .bind(m.three_ds_auto.proceed_on_text())
                .bind(m.three_ds_auto.min_amounts_json())
                .bind(m.widget.allowed_origins.join(" "))
                .bind(i64::from(m.widget.allow_checkout_framing))
                .bind(i64::from(m.widget.card_testing_guard))
                .bind(m.widget.card_testing_tripped_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Change a merchant's name, `three_ds: auto` and widget settings; `false` when
    /// there is no such merchant.
    pub async fn update_merchant(&self, m: &MerchantRecord) -> Result<bool, StoreError> {
        on_pool!(&self.backend, |pool| {
            let done = sqlx::query(
                "UPDATE merchants SET name = $1, three_ds_auto_proceed_on = $2, three_ds_auto_min_amounts = $3, \
                 allowed_origins = $4, allow_checkout_framing = $5, card_testing_guard = $6, \
                 card_testing_tripped_at = $7 WHERE merchant_id = $8",
            )
            .bind(&m.name)
            .bind(m.three_ds_auto.proceed_on_text())
            .bind(m.three_ds_auto.min_amounts_json())
            .bind(m.widget.allowed_origins.join(" "))
            .bind(i64::from(m.widget.allow_checkout_framing))
            .bind(i64::from(m.widget.card_testing_guard))
            .bind(m.widget.card_testing_tripped_at)
            .bind(&m.merchant_id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Trip the merchant's card-testing switch at `now` (when it is armed and not
    /// tripped already): its checkouts take no new attempts until an operator resets
    /// it. `true` when this call tripped it.
    pub async fn trip_card_testing(&self, merchant_id: &str, now: i64) -> Result<bool, StoreError> {
        on_pool!(&self.backend, |pool| {
            let done = sqlx::query(
                "UPDATE merchants SET card_testing_tripped_at = $1 \
                 WHERE merchant_id = $2 AND card_testing_guard = 1 AND card_testing_tripped_at IS NULL",
            )
            .bind(now)
            .bind(merchant_id)
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
        let sql = format!("SELECT {MERCHANT_COLUMNS} FROM merchants WHERE {column} = $1");
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
                    widget: WidgetSettings {
                        allowed_origins: r.text("allowed_origins")?.split_whitespace().map(str::to_owned).collect(),
                        allow_checkout_framing: r.int("allow_checkout_framing")? != 0,
                        card_testing_guard: r.int("card_testing_guard")? != 0,
                        card_testing_tripped_at: r.opt_int("card_testing_tripped_at")?,
                    },
                })
            })
            .transpose()
        })
    }
}
