-- Replays and retries that could move money twice, and per-merchant 3-D Secure `auto`
-- settings.
--
-- `signed_requests`: a state-changing call that carries no idempotency key (a capture
-- without `partner_capture_id`, a void) is claimed here under a digest of its Auth
-- header (service id, timestamp, MAC) and body before it runs; the same signed bytes
-- seen again get the stored answer instead of acting twice. A row lives until its
-- header's timestamp is out of the Auth window (`expires_at`), then the workers sweep
-- it. In the gateway's database, so that replicas on one PostgreSQL share it.
--
-- `captures`: `payment.capture`'s idempotency key, as `refunds` has `partner_refund_id`.
--
-- `merchants`: which DS failures `three_ds: auto` may pay through without 3-D Secure
-- (a comma list of `not_enrolled`, `ds_unavailable`, `ds_timeout`, `trans_status_u`;
-- empty: none), and its minimum amount per currency (a JSON object, currency code ->
-- minor units).

CREATE TABLE signed_requests (
    request_digest TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    -- The JSON answer; NULL while the first request is running.
    response TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX signed_requests_by_expiry ON signed_requests (expires_at);

CREATE TABLE captures (
    merchant_id TEXT NOT NULL,
    partner_capture_id TEXT NOT NULL,
    transaction_id TEXT NOT NULL REFERENCES payments (transaction_id),
    request_digest TEXT NOT NULL,
    -- running | unknown (the acquirer's answer was not seen) | answered
    status TEXT NOT NULL,
    first_response TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, partner_capture_id)
);

ALTER TABLE merchants ADD COLUMN three_ds_auto_proceed_on TEXT NOT NULL DEFAULT 'not_enrolled,ds_unavailable';
ALTER TABLE merchants ADD COLUMN three_ds_auto_min_amounts TEXT NOT NULL DEFAULT '{}';
