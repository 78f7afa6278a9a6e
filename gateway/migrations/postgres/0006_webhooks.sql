-- Webhooks (issue 15): partners' endpoints, the outbox of deliveries and every attempt.
--
-- A delivery row is written in the same transaction as the payment or refund change
-- that causes it (`store/payments.rs` `save_payment`), one per subscribed enabled
-- endpoint; none when the merchant has no endpoint. Its `event_id` is the stable
-- `webhook-id` (the same for every endpoint and every retry), derived from the change,
-- so saving the same change twice adds nothing (the primary key).
-- Numbered 0006: 0005 is the checkouts' migration on its own branch.

CREATE TABLE webhook_endpoints (
    endpoint_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
    url TEXT NOT NULL,
    -- `*` (every event), or the chosen types as `,payment.captured,refund.failed,`.
    events TEXT NOT NULL,
    description TEXT,
    -- The `whsec_` secret, AES-256-GCM under the gateway's secret key (`secrets.rs`,
    -- bound to the endpoint id); during a rotation the previous one too, until
    -- `previous_secret_expires_at`: both signatures are sent.
    secret_sealed TEXT NOT NULL,
    previous_secret_sealed TEXT,
    previous_secret_expires_at BIGINT,
    -- `enabled` or `disabled` (by the partner, or by the gateway after failing for days:
    -- `disabled_reason` says which, for the account).
    status TEXT NOT NULL,
    disabled_reason TEXT,
    -- Since when every attempt has failed; NULL after a success.
    failing_since BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_by_merchant ON webhook_endpoints (merchant_id, status);

CREATE TABLE webhook_deliveries (
    event_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The payment's transaction_id or the refund's refund_id.
    object_id TEXT NOT NULL,
    -- The JSON body `{type, timestamp, data}`, as signed and sent.
    body TEXT NOT NULL,
    -- `pending` (due at `next_attempt_at`), `delivered`, `failed` (retries exhausted).
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    -- A worker's claim: another skips the row until then.
    lease_until BIGINT NOT NULL,
    delivered_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_merchant ON webhook_deliveries (merchant_id, created_at);

CREATE TABLE webhook_attempts (
    event_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    -- The HTTP status, or NULL when there was none (refused, unreachable, timed out).
    status_code BIGINT,
    latency_ms BIGINT NOT NULL,
    -- A stable word for what went wrong (`timeout`, `connect`, `destination_refused`, …).
    error TEXT,
    -- The first bytes of the response body (truncated, control characters replaced).
    response_excerpt TEXT,
    PRIMARY KEY (event_id, endpoint_id, attempt)
);
