-- 3-D Secure 2 (the gateway is the 3DS Server).
--
-- A payment keeps the public part of its authentication as JSON (transStatus, ECI,
-- version, reason; never the full authentication value) and the deadline of the 3DS
-- step it waits for (the AReq, then the cardholder's challenge).
--
-- `authentications` is the 3DS Server's working state, one row per
-- threeDSServerTransID: the 3DS Method of `three_ds.prepare`, the ids of the DS and the
-- ACS and the challenge link. Never the authentication value (CAVV): it is held in
-- memory from the ARes (or the DS's results) to the authorization that carries it. No
-- card number: the AReq that carries one goes through the vault relay.

ALTER TABLE payments ADD COLUMN three_ds TEXT;
ALTER TABLE payments ADD COLUMN three_ds_expires_at BIGINT;

CREATE INDEX payments_awaiting_3ds ON payments (status, three_ds_expires_at);

CREATE TABLE authentications (
    three_ds_server_trans_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
    card_token TEXT NOT NULL,
    -- The payment that used it; NULL while a prepared authentication waits for one.
    transaction_id TEXT UNIQUE,
    method_url TEXT,
    method_completed_at BIGINT,
    message_version TEXT,
    ds_trans_id TEXT,
    acs_trans_id TEXT,
    acs_url TEXT,
    challenge_id TEXT UNIQUE,
    trans_status TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
