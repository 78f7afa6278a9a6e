//! Customers' saved cards: keeping a paid checkout's card for its customer (one per
//! card), `card.list`, and `payment.create`'s refusal of checkout-bound tokens that were
//! not saved.

use crate::error::RpcError;
use crate::payments::{now_ms, rfc3339, Gateway, Merchant};
use crate::store::{CheckoutRecord, CustomerCard, Slot};
use crate::vault::{TokenLookup, TokenMetadata};
use serde_json::{json, Value};

impl Gateway {
    /// Keep `token`'s card for the checkout's customer, unless the customer has the
    /// same card (fingerprint) saved: then the first token stays and this one's card is
    /// deleted in the vault (the removal path of `card.remove`). Failures are logged:
    /// the payment is done either way.
    pub(super) async fn save_card_for_customer(&self, checkout: &CheckoutRecord, token: &str) {
        let Some(customer_id) = &checkout.customer_id else { return };
        let meta = match self.vault.token_metadata(token).await {
            TokenLookup::Found(meta) => meta,
            other => {
                tracing::warn!(checkout_id = %checkout.checkout_id, outcome = ?other, "saving a card: no metadata");
                return;
            }
        };
        let card = customer_card(&checkout.merchant_id, customer_id, &meta, now_ms());
        match self.store.save_customer_card(&card).await {
            Ok(Slot::Inserted) => {
                tracing::info!(checkout_id = %checkout.checkout_id, card_token = %token, "card saved for the customer");
            }
            Ok(Slot::Existing(kept)) if kept.token == token => {}
            Ok(Slot::Existing(kept)) => {
                tracing::info!(
                    checkout_id = %checkout.checkout_id,
                    kept = %kept.token,
                    removed = %token,
                    "the customer has this card saved: the new token is removed"
                );
                self.remove_duplicate_token(&checkout.merchant_id, token).await;
            }
            Err(e) => tracing::error!(checkout_id = %checkout.checkout_id, error = %e, "saving a card failed"),
        }
    }

    async fn remove_duplicate_token(&self, merchant_id: &str, token: &str) {
        let now = now_ms();
        let claimed_until = now + crate::payments::REMOVAL_CLAIM_MS;
        match self.store.remove_token(merchant_id, token, now, claimed_until).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(error = %e, "recording a duplicate token's removal failed");
                return;
            }
        }
        // The payment that used it is settled (paid): it needs the card no more unless it
        // holds funds; then the worker deletes the card once the hold closes.
        let needed = self.store.card_needed_by_open_payment(merchant_id, token).await.unwrap_or(true);
        if needed {
            let _ = self.store.release_vault_removal(merchant_id, token).await;
            return;
        }
        if let Err(e) = self.delete_card_in_vault(merchant_id, token).await {
            tracing::warn!(error = ?e, "deleting a duplicate card failed; the worker retries");
        }
    }

    /// `card.list`: a customer's saved cards.
    pub async fn list_cards(&self, merchant: &Merchant, customer_id: &str) -> Result<Value, RpcError> {
        let cards = self.store.customer_cards(&merchant.merchant_id, customer_id).await?;
        let mut shown = Vec::with_capacity(cards.len());
        for card in cards {
            if self.store.token_removed(&merchant.merchant_id, &card.token).await? {
                continue;
            }
            shown.push(json!({
                "token": card.token,
                "brand": card.brand,
                "masked_number": format!("{}******{}", card.bin, card.last4),
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "created_at": rfc3339(card.created_at),
            }));
        }
        Ok(json!({ "customer_id": customer_id, "cards": shown }))
    }

    /// `payment.create`'s refusal of a checkout-bound token that was not saved for a
    /// customer: such a token pays only its checkout. Tokens a merchant's certificate
    /// made carry no binding; the lookup is cached per token.
    pub(crate) async fn refuse_unsaved_checkout_token(&self, merchant: &Merchant, token: &str) -> Result<(), RpcError> {
        let checkout_id = match self.token_bins.facts(token) {
            Some(facts) => facts.checkout_id,
            None => match self.vault.token_metadata(token).await {
                TokenLookup::Found(meta) => {
                    self.token_bins.put(&meta);
                    meta.checkout_id
                }
                // The relay answers for a token it does not have, as before.
                TokenLookup::NotFound => None,
                TokenLookup::Unavailable(reason) => {
                    tracing::warn!(%reason, "token metadata unavailable");
                    return Err(RpcError::ProcessingUnavailable);
                }
            },
        };
        if checkout_id.is_some() && !self.store.token_saved(&merchant.merchant_id, token).await? {
            return Err(RpcError::UnknownToken);
        }
        Ok(())
    }
}

fn customer_card(merchant_id: &str, customer_id: &str, meta: &TokenMetadata, now: i64) -> CustomerCard {
    CustomerCard {
        merchant_id: merchant_id.to_owned(),
        customer_id: customer_id.to_owned(),
        token: meta.token.clone(),
        fingerprint: meta.fingerprint.clone(),
        brand: meta.brand.clone(),
        bin: meta.bin.clone(),
        last4: meta.last4.clone(),
        exp_month: meta.exp_month,
        exp_year: meta.exp_year,
        created_at: now,
    }
}
