//! The PostgreSQL backend, for production and for several vault replicas. Only what
//! PostgreSQL does differently lives here; the statements both backends run are in
//! [`super::portable`].
//!
//! Every writer, in this process or another replica, appends to the audit chain under
//! the row lock of `audit_head` ([`LOCK_AUDIT_HEAD`]), so records get contiguous
//! sequence numbers and each links to the one before it. A commit applies its card
//! writes first and takes that lock last: the head is then held only for the audit
//! insert and the commit itself, and a transaction holding it never waits for anything
//! else (no deadlock with row locks on cards).
//!
//! Batches are written with one `INSERT … SELECT FROM UNNEST($1, $2, …)` per table:
//! one statement, one prepared plan, whatever the batch size.

use super::group_commit::{write_error, Segment};
use super::rows::{audit_columns, card_columns, cvc_columns, expired_card, grant_columns, ExpiredRow};
use super::{AuditRecord, ExpiredCard, ReencryptBatch, StoreError};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

/// Connections of the pool (per vault process).
const MAX_CONNECTIONS: u32 = 16;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The vault's PostgreSQL database.
#[derive(Debug, Clone)]
pub(super) struct PostgresStore {
    pub(super) pool: PgPool,
}

impl PostgresStore {
    /// Connect to `url` (`postgres://…`). Does not migrate.
    pub(super) async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new().max_connections(MAX_CONNECTIONS).connect(url).await?;
        Ok(PostgresStore { pool })
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx serializes concurrent migrators (replicas starting together) with an
        // advisory lock.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// REPEATABLE READ: all reads from one snapshot.
    pub(super) async fn begin_snapshot(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?)
    }
}

/// The audit chain head, its row locked until the transaction ends.
pub(super) const LOCK_AUDIT_HEAD: &str = "SELECT seq, mac FROM audit_head WHERE id = 1 FOR UPDATE";

const INSERT_AUDIT: &str = concat!(
    "INSERT INTO audit_log (",
    audit_columns!(),
    ") SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bytea[], $12::bytea[])"
);
const INSERT_CARDS: &str = concat!(
    "INSERT INTO cards (",
    card_columns!(),
    ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::int[], $8::int[], $9::bigint[], $10::bytea[], $11::bigint[], $12::bigint[], $13::text[])"
);
// A nonce spent already inserts nothing (another replica's insert of it is waited for
// first); the row count tells, see `apply_segment`.
const INSERT_GRANTS: &str = concat!(
    "INSERT INTO spent_grants (",
    grant_columns!(),
    ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) ON CONFLICT (nonce) DO NOTHING"
);
// A newer CVC for the same token (tokenize again with `reuse: true`) replaces the old one.
const INSERT_CVCS: &str = concat!(
    "INSERT INTO cvcs (",
    cvc_columns!(),
    ") SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[], $4::bigint[]) \
     ON CONFLICT (token) DO UPDATE SET dek_version = EXCLUDED.dek_version, \
     ciphertext = EXCLUDED.ciphertext, expires_at = EXCLUDED.expires_at"
);
// The CVC goes explicitly as well as by cascade: no reliance on the schema.
const DELETE_CVCS: &str = "DELETE FROM cvcs WHERE token = ANY($1)";
const DELETE_CARDS: &str = "DELETE FROM cards WHERE token = ANY($1)";
// SKIP LOCKED: replicas sweeping at the same time take disjoint batches, and a card a
// re-encryption batch (or a delete) holds is left for the next round rather than
// waited for.
const DELETE_EXPIRED_CARDS: &str = "DELETE FROM cards WHERE token IN (\
       SELECT token FROM cards WHERE expires_at IS NOT NULL AND expires_at <= $1 \
       ORDER BY expires_at, token LIMIT $2 FOR UPDATE SKIP LOCKED) \
     RETURNING token, merchant_id, dek_version, expires_at";
const REENCRYPT_CARDS: &str = "UPDATE cards t SET ciphertext = u.ct, dek_version = $1 \
     FROM UNNEST($2::text[], $3::bytea[]) AS u(token, ct) WHERE t.token = u.token AND t.dek_version = $4";
const REENCRYPT_CVCS: &str = "UPDATE cvcs t SET ciphertext = u.ct, dek_version = $1 \
     FROM UNNEST($2::text[], $3::bytea[]) AS u(token, ct) WHERE t.token = u.token AND t.dek_version = $4";

/// Insert audit records (chain order) with one statement.
pub(super) async fn insert_audit(
    tx: &mut Transaction<'static, Postgres>,
    records: &[AuditRecord],
) -> Result<(), StoreError> {
    let events = || records.iter().map(|r| &r.event);
    sqlx::query(INSERT_AUDIT)
        .bind(records.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(events().map(|e| e.at).collect::<Vec<_>>())
        .bind(events().map(|e| e.request_id.as_str()).collect::<Vec<_>>())
        .bind(events().map(|e| e.principal.as_str()).collect::<Vec<_>>())
        .bind(events().map(|e| e.operation.as_str()).collect::<Vec<_>>())
        .bind(events().map(|e| e.merchant_id.as_deref()).collect::<Vec<_>>())
        .bind(events().map(|e| e.token.as_deref()).collect::<Vec<_>>())
        .bind(events().map(|e| e.decision.as_str()).collect::<Vec<_>>())
        .bind(events().map(|e| e.outcome.as_str()).collect::<Vec<_>>())
        .bind(events().map(|e| e.key_version).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.prev_mac.as_slice()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.mac.as_slice()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(write_error)?;
    Ok(())
}

/// Apply a segment of a group commit: one statement per table.
pub(super) async fn apply_segment(
    tx: &mut Transaction<'static, Postgres>,
    segment: &Segment<'_>,
) -> Result<(), StoreError> {
    let grants = &segment.grants;
    if !grants.is_empty() {
        let inserted = sqlx::query(INSERT_GRANTS)
            .bind(grants.iter().map(|g| g.nonce.as_str()).collect::<Vec<_>>())
            .bind(grants.iter().map(|g| g.merchant_id.as_str()).collect::<Vec<_>>())
            .bind(grants.iter().map(|g| g.checkout_id.as_str()).collect::<Vec<_>>())
            .bind(grants.iter().map(|g| g.expires_at).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await
            .map_err(write_error)?
            .rows_affected();
        if inserted != grants.len() as u64 {
            return Err(StoreError::GrantUsed);
        }
    }
    let cards = &segment.cards;
    if !cards.is_empty() {
        sqlx::query(INSERT_CARDS)
            .bind(cards.iter().map(|c| c.token.as_str()).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.merchant_id.as_str()).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.fingerprint.as_str()).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.brand.as_str()).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.bin.as_str()).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.last4.as_str()).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.exp_month).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.exp_year).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.dek_version).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.ciphertext.as_slice()).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.created_at).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.expires_at).collect::<Vec<_>>())
            .bind(cards.iter().map(|c| c.checkout_id.as_deref()).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await
            .map_err(write_error)?;
    }
    let cvcs = &segment.cvcs;
    if !cvcs.is_empty() {
        sqlx::query(INSERT_CVCS)
            .bind(cvcs.iter().map(|c| c.token.as_str()).collect::<Vec<_>>())
            .bind(cvcs.iter().map(|c| c.dek_version).collect::<Vec<_>>())
            .bind(cvcs.iter().map(|c| c.ciphertext.as_slice()).collect::<Vec<_>>())
            .bind(cvcs.iter().map(|c| c.expires_at).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await
            .map_err(write_error)?;
    }
    if !segment.deletes.is_empty() {
        for sql in [DELETE_CVCS, DELETE_CARDS] {
            sqlx::query(sql).bind(segment.deletes.as_slice()).execute(&mut **tx).await.map_err(write_error)?;
        }
    }
    Ok(())
}

/// Delete up to `limit` expired cards that no other transaction holds, with their
/// CVCs; returns them oldest expiry first.
pub(super) async fn delete_expired_cards(
    tx: &mut Transaction<'static, Postgres>,
    now: i64,
    limit: i64,
) -> Result<Vec<ExpiredCard>, StoreError> {
    let rows: Vec<ExpiredRow> =
        sqlx::query_as(DELETE_EXPIRED_CARDS).bind(now).bind(limit).fetch_all(&mut **tx).await.map_err(write_error)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut expired: Vec<ExpiredCard> = rows.into_iter().map(expired_card).collect();
    // RETURNING gives no order; the audit records follow the expiry order.
    expired.sort_by(|a, b| (a.expires_at, &a.token).cmp(&(b.expires_at, &b.token)));
    let tokens: Vec<&str> = expired.iter().map(|c| c.token.as_str()).collect();
    // The CVCs went by cascade; explicitly as well, as in every delete here.
    sqlx::query(DELETE_CVCS).bind(tokens.as_slice()).execute(&mut **tx).await.map_err(write_error)?;
    Ok(expired)
}

/// Move a re-encryption batch's cards and CVCs still under `from_version` to
/// `to_version`, one statement per table; returns how many moved.
pub(super) async fn reencrypt(
    tx: &mut Transaction<'static, Postgres>,
    batch: &ReencryptBatch,
) -> Result<u64, StoreError> {
    let mut moved = 0;
    for (sql, rows) in [(REENCRYPT_CARDS, &batch.cards), (REENCRYPT_CVCS, &batch.cvcs)] {
        if rows.is_empty() {
            continue;
        }
        moved += sqlx::query(sql)
            .bind(batch.to_version)
            .bind(rows.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, c)| c.as_slice()).collect::<Vec<_>>())
            .bind(batch.from_version)
            .execute(&mut **tx)
            .await
            .map_err(write_error)?
            .rows_affected();
    }
    Ok(moved)
}
