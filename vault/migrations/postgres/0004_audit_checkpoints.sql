-- Signed audit checkpoints (issue 11): the checkpoints this database has seen the vault
-- emit. The security control is the signed copy OUTSIDE the database (the checkpoint file
-- a SIEM ships); these rows only let `audit verify --checkpoint` tell a truncated log
-- (the database knew the checkpoint, but the records it signed are gone) from a restored
-- older database (it has never heard of the checkpoint). A fork (after a restore the vault
-- signs the same seq again over other records) gives two rows with one seq.
CREATE TABLE audit_checkpoints (
    seq       BIGINT  NOT NULL,
    head_mac  BYTEA   NOT NULL,
    at        BIGINT  NOT NULL,
    key_id    TEXT    NOT NULL,
    PRIMARY KEY (seq, head_mac)
);
