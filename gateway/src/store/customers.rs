//! Customers' saved cards: a merchant's customer id -> the tokens of its cards, one per
//! card (the vault's fingerprint). Never shared across customers or merchants.

use super::records::{CustomerCard, Slot};
use super::rows::{bind_customer_card, customer_card_from_row, CUSTOMER_CARD_COLUMNS};
use super::{Store, StoreError};
use paysys_db::{on_pool, on_reader};

impl Store {
    /// Save `card` for its customer unless the customer has the same card
    /// (fingerprint) saved already: then that card, whose token is kept.
    pub async fn save_customer_card(&self, card: &CustomerCard) -> Result<Slot<CustomerCard>, StoreError> {
        let inserted = on_pool!(&self.backend, |pool| {
            let sql = format!(
                "INSERT INTO customer_cards ({CUSTOMER_CARD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (merchant_id, customer_id, fingerprint) DO NOTHING"
            );
            bind_customer_card(sqlx::query(&sql), card).execute(pool).await?.rows_affected()
        });
        if inserted == 1 {
            return Ok(Slot::Inserted);
        }
        let sql = format!(
            "SELECT {CUSTOMER_CARD_COLUMNS} FROM customer_cards \
             WHERE merchant_id = $1 AND customer_id = $2 AND fingerprint = $3"
        );
        let existing = on_reader!(&self.backend, |pool| {
            sqlx::query(&sql)
                .bind(&card.merchant_id)
                .bind(&card.customer_id)
                .bind(&card.fingerprint)
                .fetch_optional(pool)
                .await?
                .map(|r| customer_card_from_row(&r))
                .transpose()?
        });
        existing.map(Slot::Existing).ok_or_else(|| StoreError::Corrupt("a saved card's key taken by no card".into()))
    }

    /// A customer's saved cards, oldest first.
    pub async fn customer_cards(&self, merchant_id: &str, customer_id: &str) -> Result<Vec<CustomerCard>, StoreError> {
        let sql = format!(
            "SELECT {CUSTOMER_CARD_COLUMNS} FROM customer_cards WHERE merchant_id = $1 AND customer_id = $2 \
             ORDER BY created_at, token"
        );
        on_reader!(&self.backend, |pool| {
            let rows = sqlx::query(&sql).bind(merchant_id).bind(customer_id).fetch_all(pool).await?;
            rows.iter().map(customer_card_from_row).collect()
        })
    }

    /// Whether `token` is saved for one of `merchant_id`'s customers.
    pub async fn token_saved(&self, merchant_id: &str, token: &str) -> Result<bool, StoreError> {
        on_reader!(&self.backend, |pool| {
            let row = sqlx::query("SELECT 1 FROM customer_cards WHERE merchant_id = $1 AND token = $2 LIMIT 1")
                .bind(merchant_id)
                .bind(token)
                .fetch_optional(pool)
                .await?;
            Ok(row.is_some())
        })
    }
}
