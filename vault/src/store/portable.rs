//! The vault store on either database: one [`SqlStore`], its statements written once.
//!
//! Statements are portable SQL with `$n` placeholders (sqlx binds them by number on
//! SQLite as on PostgreSQL), `const`s put together at compile time, and run on the
//! backend the URL named through `on_pool!` (a statement on its own) or `on_tx!` (a
//! statement inside a [`Tx`]). What truly differs stays in the backend files and is
//! reached through [`Tx`]: how a write transaction takes its lock and reads the audit
//! chain head, how a batch is written (SQLite: multi-row statements in chunks;
//! PostgreSQL: `UNNEST`), how expired cards are claimed (`SKIP LOCKED`), and how a read
//! snapshot begins.

use super::group_commit::{chain_records, segments, write_error};
use super::postgres::{self, PostgresStore};
use super::rows::{
    audit_columns, audit_from_row, card_columns, card_from_row, cvc_columns, cvc_from_row, job_columns, job_from_row,
    key_columns, key_from_row, request_columns, request_from_row,
};
use super::sqlite::{self, SqliteStore};
use super::{
    AuditEvent, AuditRecord, AuditSigner, CardRecord, CheckpointRow, Counts, CvcRecord, DekUsage, ExpiredCard,
    ExpiryAudit, KeyChange, KeyRequest, ReencryptBatch, ReencryptJob, Store, StoreError, StoredKey, WriteUnit,
};
use async_trait::async_trait;
use sqlx::{Postgres, Row, Sqlite, Transaction};

// ---- The statements ------------------------------------------------------------------

const LOAD_KEYS: &str = concat!("SELECT ", key_columns!(), " FROM keys ORDER BY kind, version");
const ANY_KEY: &str = "SELECT EXISTS (SELECT 1 FROM keys)";
const INSERT_KEY: &str = concat!("INSERT INTO keys (", key_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
const UPDATE_KEY: &str = "UPDATE keys SET wrapped = $1, wrapped_by = $2, state = $3 WHERE kind = $4 AND version = $5";
const MIGRATE_KEY: &str =
    "UPDATE keys SET wrapped = $1, kcv = $2, format = $3 WHERE kind = $4 AND version = $5 AND format = 1";
const ADD_SEALS: &str = "UPDATE keys SET seals = seals + $1 WHERE kind = 'dek' AND version = $2";
const SEAL_COUNTS: &str = "SELECT version, seals FROM keys WHERE kind = 'dek' ORDER BY version";

const META: &str = "SELECT name, value FROM vault_meta ORDER BY name";
const INSERT_META: &str = "INSERT INTO vault_meta (name, value) VALUES ($1, $2)";
const SET_META: &str =
    "INSERT INTO vault_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value";

const FIND_CARD: &str =
    concat!("SELECT ", card_columns!(), " FROM cards WHERE token = $1 AND (expires_at IS NULL OR expires_at > $2)");
const FIND_CARD_BY_FINGERPRINT: &str = concat!(
    "SELECT ",
    card_columns!(),
    " FROM cards WHERE merchant_id = $1 AND fingerprint = $2 \
     AND (expires_at IS NULL OR (expires_at > $3 AND expires_at >= $4)) \
     ORDER BY created_at, token LIMIT 1"
);
const CARDS_FOR_REENCRYPT: &str =
    concat!("SELECT ", card_columns!(), " FROM cards WHERE dek_version = $1 AND token > $2 ORDER BY token LIMIT $3");

const FIND_CVC: &str = concat!("SELECT ", cvc_columns!(), " FROM cvcs WHERE token = $1 AND expires_at > $2");
const TAKE_CVC: &str = concat!("DELETE FROM cvcs WHERE token = $1 RETURNING ", cvc_columns!());
const SWEEP_CVCS: &str = "DELETE FROM cvcs WHERE expires_at <= $1";
const GRANT_SPENT: &str = "SELECT EXISTS (SELECT 1 FROM spent_grants WHERE nonce = $1)";
const SWEEP_SPENT_GRANTS: &str = "DELETE FROM spent_grants WHERE expires_at <= $1";
const CVCS_FOR_REENCRYPT: &str = "SELECT v.token, v.dek_version, v.ciphertext, v.expires_at, c.merchant_id \
     FROM cvcs v JOIN cards c ON c.token = v.token WHERE v.dek_version = $1 ORDER BY v.token LIMIT $2";

const AUDIT_RECORDS: &str =
    concat!("SELECT ", audit_columns!(), " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
const AUDIT_HEAD: &str = "SELECT seq, mac FROM audit_head WHERE id = 1";
const MOVE_AUDIT_HEAD: &str = "UPDATE audit_head SET seq = $1, mac = $2 WHERE id = 1";
const RECORD_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (seq, head_mac, at, key_id) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (seq, head_mac) DO NOTHING";
const RECORDED_CHECKPOINTS: &str =
    "SELECT seq, head_mac, at, key_id FROM audit_checkpoints WHERE seq > $1 ORDER BY seq, at LIMIT $2";

const COUNTS: &str =
    "SELECT (SELECT count(*) FROM cards), (SELECT count(*) FROM cvcs), (SELECT count(*) FROM audit_log)";
const CARDS_BY_DEK: &str = "SELECT dek_version, count(*) FROM cards GROUP BY dek_version ORDER BY dek_version";
// PostgreSQL's sum of bigints is a numeric: the casts keep every column a 64-bit integer.
const DEK_USAGE: &str = "SELECT v, CAST(sum(cards) AS BIGINT), CAST(sum(cvcs) AS BIGINT) FROM ( \
     SELECT dek_version AS v, count(*) AS cards, CAST(0 AS BIGINT) AS cvcs FROM cards GROUP BY dek_version \
     UNION ALL SELECT dek_version, CAST(0 AS BIGINT), count(*) FROM cvcs GROUP BY dek_version) u \
     GROUP BY v ORDER BY v";

const KEY_REQUEST: &str = concat!("SELECT ", request_columns!(), " FROM key_requests WHERE id = $1");
const KEY_REQUESTS: &str =
    concat!("SELECT ", request_columns!(), " FROM key_requests ORDER BY requested_at DESC, id LIMIT $1");
const INSERT_REQUEST: &str = concat!(
    "INSERT INTO key_requests (",
    request_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);
const DECIDE_REQUEST: &str = "UPDATE key_requests SET state = $1, approved_by = $2, decided_at = $3, result = $4 \
     WHERE id = $5 AND state = 'pending'";

const REENCRYPT_JOBS: &str = concat!("SELECT ", job_columns!(), " FROM reencrypt_jobs ORDER BY id DESC");
const START_JOB: &str = "INSERT INTO reencrypt_jobs (from_version, to_version, state, total, done, cursor, \
     created_at, updated_at) VALUES ($1, $2, 'running', $3, 0, '', $4, $4)";
const ADVANCE_JOB: &str = "UPDATE reencrypt_jobs SET done = done + $1, cursor = $2, updated_at = $3 \
     WHERE id = $4 AND state = 'running'";
const FINISH_JOB: &str = "UPDATE reencrypt_jobs SET state = $1, error = $2, finished_at = $3, updated_at = $3 \
     WHERE id = $4 AND state = 'running'";

// ---- Running them on either backend --------------------------------------------------
//
// Each macro below runs its body once per backend arm, with its name bound to that
// backend's pool or connection, so the body is written once and compiled twice. Both
// arms must give the body the same type, and a `?` or `return` in the body returns from
// the function the macro is written in.

/// Run `$body` with `$pool` one of the store's pools: `reader` for plain reads (SQLite:
/// the read-only connections, which WAL lets read beside the writer) or `writer` for a
/// write statement on its own (SQLite: the one writer connection). PostgreSQL has one
/// pool for both.
macro_rules! on_pool {
    ($store:expr, $sqlite_pool:ident, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite(db) => {
                let $pool = &db.db.$sqlite_pool;
                $body
            }
            Backend::Postgres(db) => {
                let $pool = &db.pool;
                $body
            }
        }
    };
}

/// Run `$body` inside the transaction `$tx` (a `&mut Tx`), with `$conn` its connection.
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

/// The vault's store on the database its URL names.
#[derive(Debug, Clone)]
pub(super) struct SqlStore {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// A transaction on either backend, from [`SqlStore::begin_write`] or
/// [`SqlStore::begin_snapshot`]. Dropped without [`Tx::commit`], it rolls back.
enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl SqlStore {
    /// Open the store named by `url` (`sqlite:…` or `postgres://…`). Does not migrate.
    pub(super) async fn open(url: &str) -> Result<SqlStore, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(SqliteStore::open(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(PostgresStore::open(url).await?)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        Ok(SqlStore { backend })
    }

    /// A write transaction: on SQLite it holds the file's write lock from its first
    /// statement; on PostgreSQL writers serialize on the audit chain head (see
    /// [`Tx::lock_audit_head`]).
    async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(db) => Tx::Sqlite(db.begin_write().await?),
            Backend::Postgres(db) => Tx::Postgres(db.pool.begin().await?),
        })
    }

    /// A read-only transaction whose reads all see one snapshot.
    async fn begin_snapshot(&self) -> Result<Tx, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(db) => Tx::Sqlite(db.begin_snapshot().await?),
            Backend::Postgres(db) => Tx::Postgres(db.begin_snapshot().await?),
        })
    }
}

impl Tx {
    async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
        .map_err(write_error)
    }

    /// Read the audit chain head and hold it until commit: PostgreSQL locks its row, so
    /// records get contiguous sequence numbers across replicas; SQLite's write
    /// transaction holds the whole file already.
    async fn lock_audit_head(&mut self) -> Result<(i64, Vec<u8>), StoreError> {
        let sql = match self {
            Tx::Sqlite(_) => AUDIT_HEAD,
            Tx::Postgres(_) => postgres::LOCK_AUDIT_HEAD,
        };
        let row = on_tx!(self, |conn| sqlx::query_as(sql).fetch_one(conn).await?);
        Ok(row)
    }

    /// Append the audit records of `events` after the head and move the head.
    async fn append_audit<'a>(
        &mut self,
        events: impl Iterator<Item = &'a AuditEvent>,
        signer: &dyn AuditSigner,
    ) -> Result<(), StoreError> {
        let (seq, mac) = self.lock_audit_head().await?;
        let records = chain_records(seq, mac, events, signer);
        let Some(last) = records.last() else {
            return Ok(());
        };
        match self {
            Tx::Sqlite(tx) => sqlite::insert_audit(tx, &records).await?,
            Tx::Postgres(tx) => postgres::insert_audit(tx, &records).await?,
        }
        on_tx!(self, |conn| {
            sqlx::query(MOVE_AUDIT_HEAD).bind(last.seq).bind(&last.mac).execute(conn).await.map_err(write_error)?;
        });
        Ok(())
    }

    async fn insert_key(&mut self, key: &StoredKey) -> Result<(), StoreError> {
        on_tx!(self, |conn| {
            sqlx::query(INSERT_KEY)
                .bind(key.kind.as_str())
                .bind(key.version)
                .bind(key.wrapped_by)
                .bind(key.wrapped.as_slice())
                .bind(key.kcv.as_str())
                .bind(key.state.as_str())
                .bind(key.created_at)
                .bind(key.format.as_i64())
                .execute(conn)
                .await
                .map_err(write_error)?;
        });
        Ok(())
    }

    /// Run the write statement `sql` with the `(name, value)` binds of each meta entry.
    async fn write_meta(&mut self, sql: &str, meta: &[(String, String)]) -> Result<(), StoreError> {
        for (name, value) in meta {
            on_tx!(self, |conn| {
                sqlx::query(sql).bind(name).bind(value).execute(conn).await.map_err(write_error)?;
            });
        }
        Ok(())
    }

    /// Move a re-encryption batch's records to the new DEK and the job's cursor on.
    async fn reencrypt(&mut self, batch: &ReencryptBatch) -> Result<(), StoreError> {
        let moved = match self {
            Tx::Sqlite(tx) => sqlite::reencrypt(tx, batch).await?,
            Tx::Postgres(tx) => postgres::reencrypt(tx, batch).await?,
        };
        let advanced = on_tx!(self, |conn| {
            sqlx::query(ADVANCE_JOB)
                .bind(i64::try_from(moved).unwrap_or(i64::MAX))
                .bind(&batch.cursor)
                .bind(batch.now)
                .bind(batch.job_id)
                .execute(conn)
                .await
                .map_err(write_error)?
                .rows_affected()
        });
        if advanced != 1 {
            return Err(StoreError::Conflict("the re-encryption job is not running".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.migrate().await,
            Backend::Postgres(db) => db.migrate().await,
        }
    }

    async fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        on_pool!(self, reader, |pool| {
            let rows = sqlx::query(LOAD_KEYS).fetch_all(pool).await?;
            Ok(rows.iter().map(key_from_row).collect::<Result<_, _>>()?)
        })
    }

    async fn insert_initial_keys(
        &self,
        keys: &[StoredKey],
        audit: &AuditEvent,
        signer: &dyn AuditSigner,
    ) -> Result<(), StoreError> {
        self.initialize(keys, &[], audit, signer).await
    }

    async fn find_card_at(&self, token: &str, now: i64) -> Result<Option<CardRecord>, StoreError> {
        on_pool!(self, reader, |pool| {
            let row = sqlx::query(FIND_CARD).bind(token).bind(now).fetch_optional(pool).await?;
            Ok(row.as_ref().map(card_from_row).transpose()?)
        })
    }

    async fn find_card_by_fingerprint(
        &self,
        merchant_id: &str,
        fingerprint: &str,
        now: i64,
        lives_until: Option<i64>,
    ) -> Result<Option<CardRecord>, StoreError> {
        on_pool!(self, reader, |pool| {
            let row = sqlx::query(FIND_CARD_BY_FINGERPRINT)
                .bind(merchant_id)
                .bind(fingerprint)
                .bind(now)
                // No expiry asked for: only a card that never expires will do.
                .bind(lives_until.unwrap_or(i64::MAX))
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(card_from_row).transpose()?)
        })
    }

    async fn delete_expired_cards(
        &self,
        now: i64,
        limit: i64,
        audit: &ExpiryAudit,
        signer: &dyn AuditSigner,
    ) -> Result<Vec<ExpiredCard>, StoreError> {
        let mut tx = self.begin_write().await?;
        let expired = match &mut tx {
            Tx::Sqlite(tx) => sqlite::delete_expired_cards(tx, now, limit.max(0)).await?,
            Tx::Postgres(tx) => postgres::delete_expired_cards(tx, now, limit.max(0)).await?,
        };
        if expired.is_empty() {
            return Ok(expired);
        }
        let events: Vec<AuditEvent> = expired.iter().map(audit).collect();
        tx.append_audit(events.iter(), signer).await?;
        tx.commit().await?;
        Ok(expired)
    }

    async fn take_cvc(&self, token: &str, now: i64) -> Result<Option<CvcRecord>, StoreError> {
        // An expired CVC is deleted too (it must not linger), but not returned. Two
        // concurrent takers cannot both get it: the second DELETE finds no row.
        let cvc = on_pool!(self, writer, |pool| {
            let row = sqlx::query(TAKE_CVC).bind(token).fetch_optional(pool).await?;
            row.as_ref().map(cvc_from_row).transpose()?
        });
        Ok(cvc.filter(|c| c.expires_at > now))
    }

    async fn find_cvc(&self, token: &str, now: i64) -> Result<Option<CvcRecord>, StoreError> {
        on_pool!(self, reader, |pool| {
            let row = sqlx::query(FIND_CVC).bind(token).bind(now).fetch_optional(pool).await?;
            Ok(row.as_ref().map(cvc_from_row).transpose()?)
        })
    }

    async fn sweep_expired_cvcs(&self, now: i64) -> Result<u64, StoreError> {
        on_pool!(self, writer, |pool| Ok(sqlx::query(SWEEP_CVCS).bind(now).execute(pool).await?.rows_affected()))
    }

    async fn grant_spent(&self, nonce: &str) -> Result<bool, StoreError> {
        on_pool!(self, reader, |pool| Ok(sqlx::query_scalar(GRANT_SPENT).bind(nonce).fetch_one(pool).await?))
    }

    async fn sweep_spent_grants(&self, before: i64) -> Result<u64, StoreError> {
        on_pool!(self, writer, |pool| {
            Ok(sqlx::query(SWEEP_SPENT_GRANTS).bind(before).execute(pool).await?.rows_affected())
        })
    }

    async fn commit(&self, units: &[WriteUnit], signer: &dyn AuditSigner) -> Result<(), StoreError> {
        if units.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        // The card writes first and the audit head last: on PostgreSQL the head is then
        // held only for the audit insert and the commit, and a transaction holding it
        // never waits for a card's row lock (no deadlock).
        for segment in segments(units) {
            match &mut tx {
                Tx::Sqlite(tx) => sqlite::apply_segment(tx, &segment).await?,
                Tx::Postgres(tx) => postgres::apply_segment(tx, &segment).await?,
            }
        }
        tx.append_audit(units.iter().map(|u| &u.audit), signer).await?;
        tx.commit().await
    }

    async fn audit_records(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        on_pool!(self, reader, |pool| {
            let rows = sqlx::query(AUDIT_RECORDS).bind(after_seq).bind(limit.max(0)).fetch_all(pool).await?;
            Ok(rows.iter().map(audit_from_row).collect::<Result<_, _>>()?)
        })
    }

    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
        on_pool!(self, reader, |pool| Ok(sqlx::query_as(AUDIT_HEAD).fetch_one(pool).await?))
    }

    async fn record_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<(), StoreError> {
        on_pool!(self, writer, |pool| {
            sqlx::query(RECORD_CHECKPOINT)
                .bind(checkpoint.seq)
                .bind(checkpoint.head_mac.as_slice())
                .bind(checkpoint.at)
                .bind(checkpoint.key_id.as_str())
                .execute(pool)
                .await
                .map_err(write_error)?;
        });
        Ok(())
    }

    async fn recorded_checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, i64, String)> = on_pool!(self, reader, |pool| {
            sqlx::query_as(RECORDED_CHECKPOINTS).bind(after_seq).bind(limit.max(0)).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|(seq, head_mac, at, key_id)| CheckpointRow { seq, head_mac, at, key_id }).collect())
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let mut tx = self.begin_snapshot().await?;
        let (cards, cvcs, audit_records): (i64, i64, i64) =
            on_tx!(&mut tx, |conn| sqlx::query_as(COUNTS).fetch_one(conn).await?);
        let cards_by_dek: Vec<(i64, i64)> =
            on_tx!(&mut tx, |conn| sqlx::query_as(CARDS_BY_DEK).fetch_all(conn).await?);
        tx.commit().await?;
        Ok(Counts { cards, cvcs, audit_records, cards_by_dek })
    }

    async fn initialize(
        &self,
        keys: &[StoredKey],
        meta: &[(String, String)],
        audit: &AuditEvent,
        signer: &dyn AuditSigner,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        // The chain head first: two PostgreSQL replicas initializing at once are
        // serialized here, and the second sees the first one's keys.
        tx.lock_audit_head().await?;
        let present: bool = on_tx!(&mut tx, |conn| sqlx::query_scalar(ANY_KEY).fetch_one(conn).await?);
        if present {
            return Err(StoreError::AlreadyInitialized);
        }
        for key in keys {
            tx.insert_key(key).await?;
        }
        tx.write_meta(INSERT_META, meta).await?;
        tx.append_audit(std::iter::once(audit), signer).await?;
        tx.commit().await
    }

    async fn meta(&self) -> Result<Vec<(String, String)>, StoreError> {
        on_pool!(self, reader, |pool| Ok(sqlx::query_as(META).fetch_all(pool).await?))
    }

    async fn apply_key_change(
        &self,
        change: &KeyChange,
        audit: &AuditEvent,
        signer: &dyn AuditSigner,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(d) = &change.decide_request {
            let decided = on_tx!(&mut tx, |conn| {
                sqlx::query(DECIDE_REQUEST)
                    .bind(&d.state)
                    .bind(&d.approved_by)
                    .bind(d.decided_at)
                    .bind(&d.result)
                    .bind(&d.id)
                    .execute(conn)
                    .await
                    .map_err(write_error)?
                    .rows_affected()
            });
            if decided != 1 {
                return Err(StoreError::Conflict("the request is no longer pending".into()));
            }
        }
        if let Some(r) = &change.insert_request {
            on_tx!(&mut tx, |conn| {
                sqlx::query(INSERT_REQUEST)
                    .bind(&r.id)
                    .bind(&r.action)
                    .bind(&r.kind)
                    .bind(r.version)
                    .bind(r.force)
                    .bind(&r.requested_by)
                    .bind(r.requested_at)
                    .bind(r.expires_at)
                    .bind(&r.state)
                    .bind(&r.approved_by)
                    .bind(r.decided_at)
                    .bind(&r.result)
                    .execute(conn)
                    .await
                    .map_err(write_error)?;
            });
        }
        for key in &change.insert_keys {
            tx.insert_key(key).await?;
        }
        for key in &change.update_keys {
            on_tx!(&mut tx, |conn| {
                sqlx::query(UPDATE_KEY)
                    .bind(key.wrapped.as_slice())
                    .bind(key.wrapped_by)
                    .bind(key.state.as_str())
                    .bind(key.kind.as_str())
                    .bind(key.version)
                    .execute(conn)
                    .await
                    .map_err(write_error)?;
            });
        }
        for key in &change.migrate_keys {
            let migrated = on_tx!(&mut tx, |conn| {
                sqlx::query(MIGRATE_KEY)
                    .bind(key.wrapped.as_slice())
                    .bind(key.kcv.as_str())
                    .bind(key.format.as_i64())
                    .bind(key.kind.as_str())
                    .bind(key.version)
                    .execute(conn)
                    .await
                    .map_err(write_error)?
                    .rows_affected()
            });
            if migrated != 1 {
                return Err(StoreError::Conflict("the key is no longer in format 1".into()));
            }
        }
        tx.write_meta(SET_META, &change.set_meta).await?;
        if let Some((from, to, total, now)) = change.start_job {
            on_tx!(&mut tx, |conn| {
                sqlx::query(START_JOB)
                    .bind(from)
                    .bind(to)
                    .bind(total)
                    .bind(now)
                    .execute(conn)
                    .await
                    .map_err(write_error)?;
            });
        }
        if let Some(batch) = &change.reencrypt {
            tx.reencrypt(batch).await?;
        }
        if let Some((id, state, error, now)) = &change.finish_job {
            on_tx!(&mut tx, |conn| {
                sqlx::query(FINISH_JOB)
                    .bind(state)
                    .bind(error)
                    .bind(now)
                    .bind(id)
                    .execute(conn)
                    .await
                    .map_err(write_error)?;
            });
        }
        tx.append_audit(std::iter::once(audit), signer).await?;
        tx.commit().await
    }

    async fn key_request(&self, id: &str) -> Result<Option<KeyRequest>, StoreError> {
        on_pool!(self, reader, |pool| {
            let row = sqlx::query(KEY_REQUEST).bind(id).fetch_optional(pool).await?;
            Ok(row.as_ref().map(request_from_row).transpose()?)
        })
    }

    async fn key_requests(&self, limit: i64) -> Result<Vec<KeyRequest>, StoreError> {
        on_pool!(self, reader, |pool| {
            let rows = sqlx::query(KEY_REQUESTS).bind(limit.max(0)).fetch_all(pool).await?;
            Ok(rows.iter().map(request_from_row).collect::<Result<_, _>>()?)
        })
    }

    async fn reencrypt_jobs(&self) -> Result<Vec<ReencryptJob>, StoreError> {
        on_pool!(self, reader, |pool| {
            let rows = sqlx::query(REENCRYPT_JOBS).fetch_all(pool).await?;
            Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
        })
    }

    async fn cards_for_reencrypt(
        &self,
        version: i64,
        after_token: &str,
        limit: i64,
    ) -> Result<Vec<CardRecord>, StoreError> {
        on_pool!(self, reader, |pool| {
            let rows = sqlx::query(CARDS_FOR_REENCRYPT)
                .bind(version)
                .bind(after_token)
                .bind(limit.max(0))
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(card_from_row).collect::<Result<_, _>>()?)
        })
    }

    async fn cvcs_for_reencrypt(&self, version: i64, limit: i64) -> Result<Vec<(CvcRecord, String)>, StoreError> {
        on_pool!(self, reader, |pool| {
            let rows = sqlx::query(CVCS_FOR_REENCRYPT).bind(version).bind(limit.max(0)).fetch_all(pool).await?;
            rows.iter().map(|r| Ok((cvc_from_row(r)?, r.try_get::<String, _>(4)?))).collect()
        })
    }

    async fn dek_usage(&self) -> Result<Vec<DekUsage>, StoreError> {
        let rows: Vec<(i64, i64, i64)> =
            on_pool!(self, reader, |pool| sqlx::query_as(DEK_USAGE).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|(version, cards, cvcs)| DekUsage { version, cards, cvcs }).collect())
    }

    async fn add_seals(&self, deltas: &[(i64, i64)]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        // One transaction, one commit for all. The deltas come in DEK order, so
        // replicas flushing at once lock the rows in the same order.
        let mut tx = self.begin_write().await?;
        for (version, delta) in deltas {
            on_tx!(&mut tx, |conn| {
                sqlx::query(ADD_SEALS).bind(delta).bind(version).execute(conn).await.map_err(write_error)?;
            });
        }
        tx.commit().await
    }

    async fn seal_counts(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        on_pool!(self, reader, |pool| Ok(sqlx::query_as(SEAL_COUNTS).fetch_all(pool).await?))
    }
}
