-- The payment widget (issue 13): tokens bound to a checkout, and the one-time grants
-- that minted them. The card intake tokenizes only with a grant the gateway signed; its
-- nonce is recorded here in the same transaction as the card, so one grant mints one
-- token across intake replicas. Times are Unix milliseconds.

-- The checkout a token is bound to (the gateway pays only that checkout with it); NULL
-- for tokens made without a grant.
ALTER TABLE cards ADD COLUMN checkout_id TEXT;

-- Spent grants, kept until an hour after the grant expired (the retention sweeper).
CREATE TABLE spent_grants (
    nonce        TEXT    NOT NULL PRIMARY KEY,
    merchant_id  TEXT    NOT NULL,
    checkout_id  TEXT    NOT NULL,
    expires_at   BIGINT  NOT NULL
);
CREATE INDEX spent_grants_expires_at ON spent_grants (expires_at);
