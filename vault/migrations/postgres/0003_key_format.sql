-- Key format 2 (issue 11): KCVs are truncated HMAC-SHA256 instead of AES of a zero
-- block, and KEKs are wrapped under a key derived from the root key instead of under the
-- root key itself. Rows written before this migration are format 1; the vault re-wraps
-- and re-labels them, in one transaction with an audit record, the first time it is
-- unsealed (an older binary still running on this database would also insert format 1,
-- which the default records truthfully).
--   1: `kcv` is AES-256(key, 0^128)[0..3]; a KEK's `wrapped` is sealed under the root key.
--   2: `kcv` is HMAC-SHA256(key, "paysys/v1/kcv")[0..3]; a KEK's `wrapped` is sealed
--      under HKDF(root key, "paysys/v1/kek-wrap").
ALTER TABLE keys ADD COLUMN format BIGINT NOT NULL DEFAULT 1 CHECK (format IN (1, 2));

-- `root_kcv` now always means the format-2 KCV. A vault initialized before has its root
-- KCV in the legacy form, which its `pss1` custodian shares carry: keep it under its own
-- name, so those shares can still be checked; the vault records `root_kcv` at its first
-- unseal.
UPDATE vault_meta SET name = 'root_kcv_legacy' WHERE name = 'root_kcv';
