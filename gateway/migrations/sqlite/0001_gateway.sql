-- The gateway's own database: merchants (secrets encrypted under the gateway's secret
-- key), payments with their state, refunds, the ledger (one row per state transition),
-- and tokens a merchant removed. No card number is ever stored: the gateway never
-- receives one; it keeps the token and the masked number (first six, last four).

CREATE TABLE merchants (
    merchant_id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE payments (
    transaction_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
    partner_trans_id TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    card_token TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    capture_method TEXT NOT NULL,
    hold_ttl_sec BIGINT NOT NULL,
    after_expired TEXT NOT NULL,
    description TEXT,
    client_ip TEXT,
    return_url TEXT,
    status TEXT NOT NULL,
    captured_amount BIGINT NOT NULL CHECK (captured_amount >= 0 AND captured_amount <= amount),
    refunded_amount BIGINT NOT NULL CHECK (refunded_amount >= 0 AND refunded_amount <= captured_amount),
    acquirer_ref TEXT,
    auth_code TEXT,
    rrn TEXT,
    masked_card TEXT,
    decline_code TEXT,
    error_code BIGINT,
    hold_expires_at BIGINT,
    first_response TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    needs_sync BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (merchant_id, partner_trans_id)
);

CREATE INDEX payments_by_merchant_time ON payments (merchant_id, created_at);
CREATE INDEX payments_by_status ON payments (status, hold_expires_at);

CREATE TABLE refunds (
    refund_id TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL REFERENCES payments (transaction_id),
    merchant_id TEXT NOT NULL,
    partner_refund_id TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    rrn TEXT,
    error_code BIGINT,
    first_response TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (merchant_id, partner_refund_id)
);

CREATE INDEX refunds_by_transaction ON refunds (transaction_id);

CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    refund_id TEXT
);

CREATE INDEX ledger_by_transaction ON ledger (transaction_id, seq);

CREATE TABLE removed_tokens (
    merchant_id TEXT NOT NULL,
    token TEXT NOT NULL,
    removed_at BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, token)
);
