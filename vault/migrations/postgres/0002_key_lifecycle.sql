-- Key lifecycle (issue 4): vault facts set at `init`, seal counts per key, dual-control
-- requests, and resumable re-encryption jobs. Times are Unix milliseconds.

-- Facts about this vault fixed at `init`: `root_kcv` (which root key the custodian
-- shares must rebuild), `unseal_mode` (`custodians` or `dev`), `unseal_threshold` and
-- `unseal_shares`. Public values only; never key material.
CREATE TABLE vault_meta (
    name   TEXT NOT NULL PRIMARY KEY,
    value  TEXT NOT NULL
);

-- AES-GCM seals done with each DEK, summed over every process that ever held it
-- (NIST SP 800-38D: at most 2^32 with random nonces).
ALTER TABLE keys ADD COLUMN seals BIGINT NOT NULL DEFAULT 0;

-- Re-encryption walks the cards of one DEK version in token order.
CREATE INDEX cards_dek_version_token ON cards (dek_version, token);
CREATE INDEX cvcs_dek_version ON cvcs (dek_version);

-- Rotate / retire / destroy requests under dual control.
CREATE TABLE key_requests (
    id            TEXT    NOT NULL PRIMARY KEY,
    action        TEXT    NOT NULL CHECK (action IN ('rotate_kek', 'rotate_dek', 'retire', 'destroy')),
    kind          TEXT    CHECK (kind IN ('kek', 'dek')),
    version       BIGINT,
    force         BOOLEAN NOT NULL DEFAULT FALSE,
    requested_by  TEXT    NOT NULL,
    requested_at  BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    -- pending → executed | expired
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'executed', 'expired')),
    approved_by   TEXT,
    decided_at    BIGINT,
    result        TEXT
);

-- Re-encryption of card records from one DEK version to another. `cursor` is the last
-- token moved; each batch moves its records and the cursor in one transaction.
CREATE TABLE reencrypt_jobs (
    id            BIGSERIAL PRIMARY KEY,
    from_version  BIGINT  NOT NULL,
    to_version    BIGINT  NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    total         BIGINT  NOT NULL,
    done          BIGINT  NOT NULL,
    cursor        TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    finished_at   BIGINT,
    error         TEXT
);
