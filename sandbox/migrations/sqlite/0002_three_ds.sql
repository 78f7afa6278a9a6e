-- 3-D Secure 2: one row per authentication (AReq), kept by the directory server and
-- the ACS, and the 3DS Method runs. No card number: the card is its balance key (a
-- SHA-256 digest) and its masked form (first six, last four).

CREATE TABLE threeds_transactions (
    three_ds_server_trans_id TEXT PRIMARY KEY,
    ds_trans_id TEXT NOT NULL UNIQUE,
    acs_trans_id TEXT NOT NULL UNIQUE,
    message_version TEXT NOT NULL,
    card_key TEXT NOT NULL,
    masked_pan TEXT NOT NULL,
    purchase_amount INTEGER NOT NULL CHECK (purchase_amount >= 0),
    purchase_currency TEXT NOT NULL,
    purchase_exponent INTEGER NOT NULL,
    merchant_name TEXT NOT NULL,
    three_ds_server_url TEXT NOT NULL,
    notification_url TEXT NOT NULL,
    -- The ARes as sent: a repeated AReq is answered with exactly this.
    ares TEXT NOT NULL,
    ares_trans_status TEXT NOT NULL,
    -- The current outcome: C while a challenge is open, then final.
    trans_status TEXT NOT NULL,
    trans_status_reason TEXT,
    eci TEXT,
    authentication_value TEXT,
    challenge_cancel TEXT,
    -- Set by the issuer in the transaction of the authorization that used the CAVV.
    cavv_used BOOLEAN NOT NULL DEFAULT FALSE,
    challenge_nonce TEXT,
    challenge_expires_at INTEGER,
    method_completed BOOLEAN NOT NULL DEFAULT FALSE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX threeds_open_challenges ON threeds_transactions (trans_status, challenge_expires_at);

CREATE TABLE threeds_method_runs (
    three_ds_server_trans_id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
