//! The SQLite backend: one file in WAL mode, the embedded default. Only what SQLite
//! does differently lives here; the statements both backends run are in
//! [`super::portable`].
//!
//! All writes go through a pool of exactly one connection and start with
//! `BEGIN IMMEDIATE`, so a write transaction holds the database's write lock from its
//! first statement: no two writers in this process ever race, and a writer in another
//! process (the officer CLI) makes us wait (`busy_timeout`) instead of failing with a
//! lock-upgrade deadlock. Reads use a separate pool of read-only connections, which WAL
//! lets run alongside the writer.
//!
//! A batch is written with multi-row statements cut into chunks of a few fixed lengths
//! ([`CHUNK_LENGTHS`]); each length's statement is built once, on first use.

use super::group_commit::{chunks, write_error, Segment, CHUNK_LENGTHS};
use super::rows::{audit_columns, card_columns, cvc_columns, expired_card, grant_columns, ExpiredRow};
use super::{AuditRecord, CardRecord, CvcRecord, ExpiredCard, ReencryptBatch, SpentGrant, StoreError};
use sqlx::{Sqlite, Transaction};
use std::borrow::Cow;
use std::sync::LazyLock;

/// Connections of the read pool.
const READ_CONNECTIONS: u32 = 8;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The vault's SQLite file: one writer (every write transaction runs there, one at a
/// time), read-only connections for queries, the WAL checkpointer
/// ([`paysys_db::Database`]).
#[derive(Debug, Clone)]
pub(super) struct SqliteStore {
    pub(super) db: paysys_db::Database,
}

impl SqliteStore {
    /// Open (creating if missing) the database at `url` (`sqlite:PATH`). Does not migrate.
    pub(super) async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(SqliteStore { db: paysys_db::Database::open(url, READ_CONNECTIONS).await? })
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.db.writer).await?;
        Ok(())
    }

    /// A write transaction holding the database write lock from its first statement.
    pub(super) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.db.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A read transaction: WAL shows all its reads one snapshot.
    pub(super) async fn begin_snapshot(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.db.reader.begin().await?)
    }
}

/// A multi-row statement for each of the [`CHUNK_LENGTHS`]: `head`, then a chunk's
/// placeholders (`(?, ?), (?, ?)` for rows of two columns, `?, ?` for rows of one),
/// then `tail`. (Statements that run on SQLite only use its own `?` placeholders.)
struct ChunkStatements {
    by_length: Vec<(usize, String)>,
    head: &'static str,
    columns: usize,
    tail: &'static str,
}

impl ChunkStatements {
    fn new(head: &'static str, columns: usize, tail: &'static str) -> ChunkStatements {
        let mut statements = ChunkStatements { by_length: Vec::new(), head, columns, tail };
        statements.by_length = CHUNK_LENGTHS.iter().map(|&rows| (rows, statements.build(rows))).collect();
        statements
    }

    fn build(&self, rows: usize) -> String {
        let row = vec!["?"; self.columns].join(", ");
        let row = if self.columns == 1 { row } else { format!("({row})") };
        format!("{}{}{}", self.head, vec![row; rows].join(", "), self.tail)
    }

    /// The statement for `rows` rows: built once for a chunk length, now for any other.
    fn for_rows(&self, rows: usize) -> Cow<'_, str> {
        match self.by_length.iter().find(|(n, _)| *n == rows) {
            Some((_, sql)) => Cow::Borrowed(sql),
            None => Cow::Owned(self.build(rows)),
        }
    }
}

static INSERT_AUDIT: LazyLock<ChunkStatements> =
    LazyLock::new(|| ChunkStatements::new(concat!("INSERT INTO audit_log (", audit_columns!(), ") VALUES "), 12, ""));
static INSERT_CARDS: LazyLock<ChunkStatements> =
    LazyLock::new(|| ChunkStatements::new(concat!("INSERT INTO cards (", card_columns!(), ") VALUES "), 13, ""));
// A nonce spent already inserts nothing; the row count tells (see `spend_grants`).
static INSERT_GRANTS: LazyLock<ChunkStatements> = LazyLock::new(|| {
    ChunkStatements::new(
        concat!("INSERT INTO spent_grants (", grant_columns!(), ") VALUES "),
        4,
        " ON CONFLICT (nonce) DO NOTHING",
    )
});
// A newer CVC for the same token (tokenize again with `reuse: true`) replaces the old one.
static INSERT_CVCS: LazyLock<ChunkStatements> = LazyLock::new(|| {
    ChunkStatements::new(
        concat!("INSERT INTO cvcs (", cvc_columns!(), ") VALUES "),
        4,
        " ON CONFLICT (token) DO UPDATE SET dek_version = excluded.dek_version, \
         ciphertext = excluded.ciphertext, expires_at = excluded.expires_at",
    )
});
// The CVC goes explicitly rather than by cascade, so it is gone even on a connection
// where foreign keys were left off.
static DELETE_CVCS: LazyLock<ChunkStatements> =
    LazyLock::new(|| ChunkStatements::new("DELETE FROM cvcs WHERE token IN (", 1, ")"));
static DELETE_CARDS: LazyLock<ChunkStatements> =
    LazyLock::new(|| ChunkStatements::new("DELETE FROM cards WHERE token IN (", 1, ")"));

const EXPIRED_CARDS: &str = "SELECT token, merchant_id, dek_version, expires_at FROM cards \
     WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, token LIMIT ?";
const REENCRYPT_CARD: &str = "UPDATE cards SET ciphertext = ?, dek_version = ? WHERE token = ? AND dek_version = ?";
const REENCRYPT_CVC: &str = "UPDATE cvcs SET ciphertext = ?, dek_version = ? WHERE token = ? AND dek_version = ?";

/// Insert audit records (chain order), a chunk at a time.
pub(super) async fn insert_audit(
    tx: &mut Transaction<'static, Sqlite>,
    records: &[AuditRecord],
) -> Result<(), StoreError> {
    for chunk in chunks(records) {
        let sql = INSERT_AUDIT.for_rows(chunk.len());
        let mut query = sqlx::query(&sql);
        for r in chunk {
            let e = &r.event;
            query = query
                .bind(r.seq)
                .bind(e.at)
                .bind(e.request_id.as_str())
                .bind(e.principal.as_str())
                .bind(e.operation.as_str())
                .bind(e.merchant_id.as_deref())
                .bind(e.token.as_deref())
                .bind(e.decision.as_str())
                .bind(e.outcome.as_str())
                .bind(e.key_version)
                .bind(r.prev_mac.as_slice())
                .bind(r.mac.as_slice());
        }
        query.execute(&mut **tx).await.map_err(write_error)?;
    }
    Ok(())
}

async fn insert_cards(tx: &mut Transaction<'static, Sqlite>, cards: &[&CardRecord]) -> Result<(), StoreError> {
    let sql = INSERT_CARDS.for_rows(cards.len());
    let mut query = sqlx::query(&sql);
    for c in cards {
        query = query
            .bind(c.token.as_str())
            .bind(c.merchant_id.as_str())
            .bind(c.fingerprint.as_str())
            .bind(c.brand.as_str())
            .bind(c.bin.as_str())
            .bind(c.last4.as_str())
            .bind(c.exp_month)
            .bind(c.exp_year)
            .bind(c.dek_version)
            .bind(c.ciphertext.as_slice())
            .bind(c.created_at)
            .bind(c.expires_at)
            .bind(c.checkout_id.as_deref());
    }
    query.execute(&mut **tx).await.map_err(write_error)?;
    Ok(())
}

/// Record grants as spent; [`StoreError::GrantUsed`] if any nonce already was (or
/// appears twice among them).
async fn spend_grants(tx: &mut Transaction<'static, Sqlite>, grants: &[&SpentGrant]) -> Result<(), StoreError> {
    let sql = INSERT_GRANTS.for_rows(grants.len());
    let mut query = sqlx::query(&sql);
    for g in grants {
        query =
            query.bind(g.nonce.as_str()).bind(g.merchant_id.as_str()).bind(g.checkout_id.as_str()).bind(g.expires_at);
    }
    let inserted = query.execute(&mut **tx).await.map_err(write_error)?.rows_affected();
    if inserted != grants.len() as u64 {
        return Err(StoreError::GrantUsed);
    }
    Ok(())
}

async fn insert_cvcs(tx: &mut Transaction<'static, Sqlite>, cvcs: &[&CvcRecord]) -> Result<(), StoreError> {
    let sql = INSERT_CVCS.for_rows(cvcs.len());
    let mut query = sqlx::query(&sql);
    for c in cvcs {
        query = query.bind(c.token.as_str()).bind(c.dek_version).bind(c.ciphertext.as_slice()).bind(c.expires_at);
    }
    query.execute(&mut **tx).await.map_err(write_error)?;
    Ok(())
}

async fn delete_cards(tx: &mut Transaction<'static, Sqlite>, tokens: &[&str]) -> Result<(), StoreError> {
    for statements in [&DELETE_CVCS, &DELETE_CARDS] {
        let sql = statements.for_rows(tokens.len());
        let mut query = sqlx::query(&sql);
        for token in tokens {
            query = query.bind(*token);
        }
        query.execute(&mut **tx).await.map_err(write_error)?;
    }
    Ok(())
}

/// Apply a segment of a group commit, a chunk at a time.
pub(super) async fn apply_segment(
    tx: &mut Transaction<'static, Sqlite>,
    segment: &Segment<'_>,
) -> Result<(), StoreError> {
    for chunk in chunks(&segment.grants) {
        spend_grants(tx, chunk).await?;
    }
    for chunk in chunks(&segment.cards) {
        insert_cards(tx, chunk).await?;
    }
    for chunk in chunks(&segment.cvcs) {
        insert_cvcs(tx, chunk).await?;
    }
    for chunk in chunks(&segment.deletes) {
        delete_cards(tx, chunk).await?;
    }
    Ok(())
}

/// Delete up to `limit` expired cards (oldest expiry first) with their CVCs; returns
/// them in that order. The write transaction holds the file's write lock, so another
/// process sweeping the same file waits and then finds these gone.
pub(super) async fn delete_expired_cards(
    tx: &mut Transaction<'static, Sqlite>,
    now: i64,
    limit: i64,
) -> Result<Vec<ExpiredCard>, StoreError> {
    let rows: Vec<ExpiredRow> = sqlx::query_as(EXPIRED_CARDS).bind(now).bind(limit).fetch_all(&mut **tx).await?;
    let expired: Vec<ExpiredCard> = rows.into_iter().map(expired_card).collect();
    let tokens: Vec<&str> = expired.iter().map(|c| c.token.as_str()).collect();
    for chunk in chunks(&tokens) {
        delete_cards(tx, chunk).await?;
    }
    Ok(expired)
}

/// Move a re-encryption batch's cards and CVCs still under `from_version` to
/// `to_version`, a row at a time; returns how many moved.
pub(super) async fn reencrypt(
    tx: &mut Transaction<'static, Sqlite>,
    batch: &ReencryptBatch,
) -> Result<u64, StoreError> {
    let mut moved = 0;
    for (sql, rows) in [(REENCRYPT_CARD, &batch.cards), (REENCRYPT_CVC, &batch.cvcs)] {
        for (token, ciphertext) in rows {
            moved += sqlx::query(sql)
                .bind(ciphertext.as_slice())
                .bind(batch.to_version)
                .bind(token)
                .bind(batch.from_version)
                .execute(&mut **tx)
                .await
                .map_err(write_error)?
                .rows_affected();
        }
    }
    Ok(moved)
}
