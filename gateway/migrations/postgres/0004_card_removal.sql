-- card.remove deletes the card in the vault too (issue 11, PCI DSS 3.2.1 retention).
--
-- A `removed_tokens` row is also the durable job of deleting the card in the vault
-- (`tokens.remove_for_merchant`): pending while `vault_deleted_at` is NULL. It is done
-- at once when no open payment needs the card, else by a worker once the last one
-- closes; failed attempts back off. Rows removed before this migration start pending,
-- so their cards are deleted too.
ALTER TABLE removed_tokens ADD COLUMN vault_deleted_at BIGINT;
ALTER TABLE removed_tokens ADD COLUMN vault_attempts BIGINT NOT NULL DEFAULT 0;
-- The next attempt (a failure's back-off, or a worker's claim while it tries).
ALTER TABLE removed_tokens ADD COLUMN vault_next_attempt_at BIGINT NOT NULL DEFAULT 0;
-- The last failure's stable code (e.g. `rate_limited`, `vault_sealed`), for operators.
ALTER TABLE removed_tokens ADD COLUMN vault_last_error TEXT;

CREATE INDEX removed_tokens_vault_pending ON removed_tokens (vault_next_attempt_at)
    WHERE vault_deleted_at IS NULL;
-- "Does an open payment still need this card?"
CREATE INDEX payments_by_card_token ON payments (card_token, merchant_id);
