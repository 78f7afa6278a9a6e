-- The sandbox card network: balances per card and currency, authorizations, refunds,
-- and the append-only ledger. No card number is stored: balances are keyed by a digest,
-- authorizations and the ledger keep the masked number (first six, last four).

CREATE TABLE balances (
    balance_key TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance BIGINT NOT NULL,
    held BIGINT NOT NULL CHECK (held >= 0),
    PRIMARY KEY (balance_key, currency)
);

CREATE TABLE authorizations (
    acquirer_ref TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    merchant_id TEXT NOT NULL,
    masked_pan TEXT NOT NULL,
    balance_key TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    status TEXT NOT NULL,
    auth_code TEXT,
    rrn TEXT NOT NULL,
    decline_code TEXT,
    captured_amount BIGINT NOT NULL CHECK (captured_amount >= 0 AND captured_amount <= amount),
    refunded_amount BIGINT NOT NULL CHECK (refunded_amount >= 0 AND refunded_amount <= captured_amount),
    request_digest TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE refunds (
    acquirer_ref TEXT NOT NULL REFERENCES authorizations (acquirer_ref),
    refund_reference TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    rrn TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (acquirer_ref, refund_reference)
);

CREATE TABLE ledger (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    acquirer_ref TEXT NOT NULL,
    reference TEXT NOT NULL,
    refund_reference TEXT,
    merchant_id TEXT NOT NULL,
    masked_pan TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL,
    decline_code TEXT
);

CREATE INDEX ledger_by_reference ON ledger (reference, seq);
CREATE INDEX ledger_by_acquirer_ref ON ledger (acquirer_ref, seq);
