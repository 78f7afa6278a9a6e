-- Token lifecycle (issue 11, PCI DSS 3.2.1 retention): a token may carry an expiry,
-- Unix milliseconds, NULL for none. Past it the token reads as not found, and the
-- vault's sweeper deletes the card row (and its CVC) in audited batches.
ALTER TABLE cards ADD COLUMN expires_at INTEGER;
-- The sweeper takes the oldest expiries first; only expiring cards are indexed.
CREATE INDEX cards_expires_at ON cards (expires_at) WHERE expires_at IS NOT NULL;
