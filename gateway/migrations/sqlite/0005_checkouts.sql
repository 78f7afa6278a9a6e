-- The payment widget (issue 13): checkouts, their attempts, customers' saved cards, and
-- each merchant's widget settings.
--
-- `checkouts`: what a merchant asked `checkout.create` for, unique per merchant on
-- `partner_trans_id` (the idempotency key, as for payments). `status`: open |
-- processing (a payment is running) | completed | expired | cancelled. The client
-- secret is kept as its SHA-256 only. `transaction_id`: the checkout's latest payment;
-- each attempt's payment has `partner_trans_id` = the checkout's + '/' + the attempt's
-- number. `attempts`: how many attempts were issued (the per-checkout limit).
--
-- `checkout_attempts`: one per grant issued; `nonce` is the grant's (the vault spends
-- it). `merchant_id` and `client_ip` are here for the card-testing limits (per client
-- address, per merchant declines in a window); `outcome` is what its payment ended in
-- (completed | declined | failed), `finished_at` when; `fingerprint` the vault's
-- fingerprint of the card it paid with (distinct cards per client address).
--
-- `customer_cards`: a merchant's customer -> the tokens of the cards saved for it, one
-- per card (the vault's fingerprint): the same card saved again keeps the first token.
-- Never merged across customers or merchants.
--
-- `merchants`: the origins that may embed the card form (space separated, each a
-- serialised origin), whether those origins may frame the hosted page, the
-- card-testing switch, and when it tripped (NULL: checkouts are open).

CREATE TABLE checkouts (
    checkout_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
    partner_trans_id TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    description TEXT,
    return_url TEXT NOT NULL,
    cancel_url TEXT,
    capture_method TEXT NOT NULL,
    hold_ttl_sec BIGINT NOT NULL,
    after_expired TEXT NOT NULL,
    three_ds TEXT NOT NULL,
    language TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    customer_id TEXT,
    save_card BIGINT NOT NULL,
    status TEXT NOT NULL,
    client_secret_hash TEXT NOT NULL,
    transaction_id TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (merchant_id, partner_trans_id)
);

CREATE TABLE checkout_attempts (
    attempt_id TEXT PRIMARY KEY,
    checkout_id TEXT NOT NULL REFERENCES checkouts (checkout_id),
    merchant_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    nonce TEXT NOT NULL UNIQUE,
    origin TEXT NOT NULL,
    client_ip TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    transaction_id TEXT,
    outcome TEXT,
    finished_at BIGINT,
    fingerprint TEXT,
    UNIQUE (checkout_id, number)
);

CREATE INDEX checkout_attempts_by_client ON checkout_attempts (client_ip, created_at);
CREATE INDEX checkout_attempts_by_merchant_finish ON checkout_attempts (merchant_id, finished_at);

CREATE TABLE customer_cards (
    merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
    customer_id TEXT NOT NULL,
    token TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    brand TEXT NOT NULL,
    bin TEXT NOT NULL,
    last4 TEXT NOT NULL,
    exp_month BIGINT NOT NULL,
    exp_year BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, customer_id, fingerprint)
);

CREATE INDEX customer_cards_by_token ON customer_cards (merchant_id, token);

ALTER TABLE merchants ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '';
ALTER TABLE merchants ADD COLUMN allow_checkout_framing BIGINT NOT NULL DEFAULT 0;
ALTER TABLE merchants ADD COLUMN card_testing_guard BIGINT NOT NULL DEFAULT 1;
ALTER TABLE merchants ADD COLUMN card_testing_tripped_at BIGINT;
