-- Vault schema, SQLite flavour. Times are Unix milliseconds. Later migrations add
-- key-lifecycle requests and re-encryption jobs; keep this file unchanged once released
-- (sqlx checks migration checksums).

-- Wrapped keys only: `wrapped` is ciphertext under the root key (KEK) or a KEK (DEK).
CREATE TABLE keys (
    kind        TEXT    NOT NULL CHECK (kind IN ('kek', 'dek')),
    version     INTEGER NOT NULL,
    wrapped_by  INTEGER NOT NULL,
    wrapped     BLOB    NOT NULL,
    kcv         TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, version)
);

-- One row per token. `ciphertext` is the sealed PAN payload; the rest is metadata.
-- `fingerprint` is deliberately not unique: `reuse: false` mints a second token for
-- the same card.
CREATE TABLE cards (
    token        TEXT    NOT NULL PRIMARY KEY,
    merchant_id  TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    brand        TEXT    NOT NULL,
    bin          TEXT    NOT NULL,
    last4        TEXT    NOT NULL,
    exp_month    INTEGER NOT NULL,
    exp_year     INTEGER NOT NULL,
    dek_version  INTEGER NOT NULL,
    ciphertext   BLOB    NOT NULL,
    created_at   INTEGER NOT NULL
);
-- Dedup lookup (`reuse: true`): oldest card of a merchant with this fingerprint.
CREATE INDEX cards_merchant_fingerprint ON cards (merchant_id, fingerprint, created_at);
-- Re-encryption jobs and status counts walk cards by DEK version.
CREATE INDEX cards_dek_version ON cards (dek_version);

-- Sealed CVCs awaiting their single use (PCI DSS 3.3.1: never kept after authorization).
CREATE TABLE cvcs (
    token        TEXT    NOT NULL PRIMARY KEY REFERENCES cards (token) ON DELETE CASCADE,
    dek_version  INTEGER NOT NULL,
    ciphertext   BLOB    NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX cvcs_expires_at ON cvcs (expires_at);

-- Append-only audit chain: each record's `mac` covers its content and `prev_mac`.
CREATE TABLE audit_log (
    seq          INTEGER NOT NULL PRIMARY KEY,
    at           INTEGER NOT NULL,
    request_id   TEXT    NOT NULL,
    principal    TEXT    NOT NULL,
    operation    TEXT    NOT NULL,
    merchant_id  TEXT,
    token        TEXT,
    decision     TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    key_version  INTEGER,
    prev_mac     BLOB    NOT NULL,
    mac          BLOB    NOT NULL
);

-- The chain head: the single row every writer locks to append, so records get
-- contiguous sequence numbers and each links to the one before it.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    mac  BLOB    NOT NULL
);
INSERT INTO audit_head (id, seq, mac) VALUES (1, 0, zeroblob(32));
