//! The PostgreSQL backend, for production and for several vault replicas.
//!
//! Every writer, in this process or another replica, appends to the audit chain under
//! the row lock of `audit_head`, so records get contiguous sequence numbers and each
//! links to the one before it. A commit applies its card writes first and takes that
//! lock last: the head is then held only for the audit insert and the commit itself,
//! and a transaction holding it never waits for anything else (no deadlock with row
//! locks on cards).
//!
//! Batches are written with one `INSERT … SELECT FROM UNNEST($1, $2, …)` per table:
//! one statement, one prepared plan, whatever the batch size.

use super::group_commit::{chain_records, segments, write_error, Segment};
use super::rows::{
    audit_from_row, card_from_row, cvc_from_row, job_from_row, key_from_row, request_from_row, AUDIT_COLUMNS,
    CARD_COLUMNS, CVC_COLUMNS, JOB_COLUMNS, KEY_COLUMNS, REQUEST_COLUMNS,
};
use super::{
    AuditEvent, AuditRecord, AuditSigner, CardRecord, CheckpointRow, Counts, CvcRecord, DekUsage, ExpiredCard,
    ExpiryAudit, KeyChange, KeyRequest, ReencryptJob, Store, StoreError, StoredKey, WriteUnit,
};
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};

/// Connections of the pool (per vault process).
const MAX_CONNECTIONS: u32 = 16;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The vault store on a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect to `url` (`postgres://…`). Does not migrate.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new().max_connections(MAX_CONNECTIONS).connect(url).await?;
        Ok(PostgresStore { pool })
    }
}

/// Lock the chain head, append the audit records of `events` after it, move it.
async fn append_audit<'a>(
    tx: &mut Transaction<'static, Postgres>,
    events: impl Iterator<Item = &'a AuditEvent>,
    signer: &dyn AuditSigner,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT seq, mac FROM audit_head WHERE id = 1 FOR UPDATE").fetch_one(&mut **tx).await?;
    let records = chain_records(row.try_get(0)?, row.try_get(1)?, events, signer);
    let Some(last) = records.last() else {
        return Ok(());
    };
    insert_audit(tx, &records).await?;
    sqlx::query("UPDATE audit_head SET seq = $1, mac = $2 WHERE id = 1")
        .bind(last.seq)
        .bind(&last.mac)
        .execute(&mut **tx)
        .await
        .map_err(write_error)?;
    Ok(())
}

async fn insert_audit(tx: &mut Transaction<'static, Postgres>, records: &[AuditRecord]) -> Result<(), StoreError> {
    let events = || records.iter().map(|r| &r.event);
    sqlx::query(&format!(
        "INSERT INTO audit_log ({AUDIT_COLUMNS}) SELECT * FROM UNNEST(\
         $1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bytea[], $12::bytea[])"
    ))
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

async fn insert_cards(tx: &mut Transaction<'static, Postgres>, cards: &[&CardRecord]) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO cards ({CARD_COLUMNS}) SELECT * FROM UNNEST(\
         $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::int[], $8::int[], $9::bigint[], $10::bytea[], $11::bigint[], $12::bigint[])"
    ))
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
    .execute(&mut **tx)
    .await
    .map_err(write_error)?;
    Ok(())
}

async fn insert_cvcs(tx: &mut Transaction<'static, Postgres>, cvcs: &[&CvcRecord]) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO cvcs ({CVC_COLUMNS}) SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[], $4::bigint[]) \
         ON CONFLICT (token) DO UPDATE SET dek_version = EXCLUDED.dek_version, \
         ciphertext = EXCLUDED.ciphertext, expires_at = EXCLUDED.expires_at"
    ))
    .bind(cvcs.iter().map(|c| c.token.as_str()).collect::<Vec<_>>())
    .bind(cvcs.iter().map(|c| c.dek_version).collect::<Vec<_>>())
    .bind(cvcs.iter().map(|c| c.ciphertext.as_slice()).collect::<Vec<_>>())
    .bind(cvcs.iter().map(|c| c.expires_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map_err(write_error)?;
    Ok(())
}

async fn insert_key(tx: &mut Transaction<'static, Postgres>, key: &StoredKey) -> Result<(), StoreError> {
    sqlx::query(&format!("INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
        .bind(key.kind.as_str())
        .bind(key.version)
        .bind(key.wrapped_by)
        .bind(key.wrapped.as_slice())
        .bind(key.kcv.as_str())
        .bind(key.state.as_str())
        .bind(key.created_at)
        .bind(key.format.as_i64())
        .execute(&mut **tx)
        .await
        .map_err(write_error)?;
    Ok(())
}

async fn apply_segment(tx: &mut Transaction<'static, Postgres>, segment: &Segment<'_>) -> Result<(), StoreError> {
    if !segment.cards.is_empty() {
        insert_cards(tx, &segment.cards).await?;
    }
    if !segment.cvcs.is_empty() {
        insert_cvcs(tx, &segment.cvcs).await?;
    }
    if !segment.deletes.is_empty() {
        // The CVC goes explicitly as well as by cascade: no reliance on the schema.
        for sql in ["DELETE FROM cvcs WHERE token = ANY($1)", "DELETE FROM cards WHERE token = ANY($1)"] {
            sqlx::query(sql).bind(segment.deletes.as_slice()).execute(&mut **tx).await.map_err(write_error)?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx serializes concurrent migrators (replicas starting together) with an
        // advisory lock.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys ORDER BY kind, version"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(key_from_row).collect::<Result<_, _>>()?)
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
        let row = sqlx::query(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE token = $1 AND (expires_at IS NULL OR expires_at > $2)"
        ))
        .bind(token)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(card_from_row).transpose()?)
    }

    async fn find_card_by_fingerprint(
        &self,
        merchant_id: &str,
        fingerprint: &str,
        now: i64,
        lives_until: Option<i64>,
    ) -> Result<Option<CardRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE merchant_id = $1 AND fingerprint = $2 \
             AND (expires_at IS NULL OR (expires_at > $3 AND expires_at >= $4)) \
             ORDER BY created_at, token LIMIT 1"
        ))
        .bind(merchant_id)
        .bind(fingerprint)
        .bind(now)
        // No expiry asked for: only a card that never expires will do.
        .bind(lives_until.unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(card_from_row).transpose()?)
    }

    async fn delete_expired_cards(
        &self,
        now: i64,
        limit: i64,
        audit: &ExpiryAudit,
        signer: &dyn AuditSigner,
    ) -> Result<Vec<ExpiredCard>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: replicas sweeping at the same time take disjoint batches, and a
        // card a re-encryption batch (or a delete) holds is left for the next round
        // rather than waited for. The audit head is locked last, as in every commit.
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "DELETE FROM cards WHERE token IN (\
               SELECT token FROM cards WHERE expires_at IS NOT NULL AND expires_at <= $1 \
               ORDER BY expires_at, token LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING token, merchant_id, dek_version, expires_at",
        )
        .bind(now)
        .bind(limit.max(0))
        .fetch_all(&mut *tx)
        .await
        .map_err(write_error)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut expired: Vec<ExpiredCard> = rows
            .into_iter()
            .map(|(token, merchant_id, dek_version, expires_at)| ExpiredCard {
                token,
                merchant_id,
                dek_version,
                expires_at,
            })
            .collect();
        // RETURNING gives no order; the audit records follow the expiry order.
        expired.sort_by(|a, b| (a.expires_at, &a.token).cmp(&(b.expires_at, &b.token)));
        let tokens: Vec<&str> = expired.iter().map(|c| c.token.as_str()).collect();
        // The CVCs went by cascade; explicitly as well, as in every delete here.
        sqlx::query("DELETE FROM cvcs WHERE token = ANY($1)")
            .bind(tokens.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        let events: Vec<AuditEvent> = expired.iter().map(audit).collect();
        append_audit(&mut tx, events.iter(), signer).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(expired)
    }

    async fn take_cvc(&self, token: &str, now: i64) -> Result<Option<CvcRecord>, StoreError> {
        // An expired CVC is deleted too (it must not linger), but not returned. Two
        // concurrent takers cannot both get it: the second DELETE finds no row.
        let row = sqlx::query(&format!("DELETE FROM cvcs WHERE token = $1 RETURNING {CVC_COLUMNS}"))
            .bind(token)
            .fetch_optional(&self.pool)
            .await?;
        let cvc = row.as_ref().map(cvc_from_row).transpose()?;
        Ok(cvc.filter(|c| c.expires_at > now))
    }

    async fn find_cvc(&self, token: &str, now: i64) -> Result<Option<CvcRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {CVC_COLUMNS} FROM cvcs WHERE token = $1 AND expires_at > $2"))
            .bind(token)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(cvc_from_row).transpose()?)
    }

    async fn sweep_expired_cvcs(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM cvcs WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn commit(&self, units: &[WriteUnit], signer: &dyn AuditSigner) -> Result<(), StoreError> {
        if units.is_empty() {
            return Ok(());
        }
        // On any error the transaction is dropped, which rolls it back.
        let mut tx = self.pool.begin().await?;
        for segment in segments(units) {
            apply_segment(&mut tx, &segment).await?;
        }
        append_audit(&mut tx, units.iter().map(|u| &u.audit), signer).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(())
    }

    async fn audit_records(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"))
            .bind(after_seq)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(audit_from_row).collect::<Result<_, _>>()?)
    }

    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
        Ok(sqlx::query_as("SELECT seq, mac FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?)
    }

    async fn record_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, head_mac, at, key_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (seq, head_mac) DO NOTHING",
        )
        .bind(checkpoint.seq)
        .bind(checkpoint.head_mac.as_slice())
        .bind(checkpoint.at)
        .bind(checkpoint.key_id.as_str())
        .execute(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    async fn recorded_checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, i64, String)> = sqlx::query_as(
            "SELECT seq, head_mac, at, key_id FROM audit_checkpoints WHERE seq > $1 ORDER BY seq, at LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(seq, head_mac, at, key_id)| CheckpointRow { seq, head_mac, at, key_id }).collect())
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        // REPEATABLE READ: all numbers from one snapshot.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        let (cards, cvcs, audit_records): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM cards), (SELECT count(*) FROM cvcs), (SELECT count(*) FROM audit_log)",
        )
        .fetch_one(&mut *tx)
        .await?;
        let cards_by_dek: Vec<(i64, i64)> =
            sqlx::query_as("SELECT dek_version, count(*) FROM cards GROUP BY dek_version ORDER BY dek_version")
                .fetch_all(&mut *tx)
                .await?;
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
        let mut tx = self.pool.begin().await?;
        // Take the chain head first: two replicas initializing at once are serialized
        // here, and the second sees the first one's keys.
        sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE").execute(&mut *tx).await?;
        let present: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM keys)").fetch_one(&mut *tx).await?;
        if present {
            return Err(StoreError::AlreadyInitialized);
        }
        for key in keys {
            insert_key(&mut tx, key).await?;
        }
        for (name, value) in meta {
            sqlx::query("INSERT INTO vault_meta (name, value) VALUES ($1, $2)")
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(write_error)?;
        }
        append_audit(&mut tx, std::iter::once(audit), signer).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(())
    }

    async fn meta(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT name, value FROM vault_meta ORDER BY name").fetch_all(&self.pool).await?)
    }

    async fn apply_key_change(
        &self,
        change: &KeyChange,
        audit: &AuditEvent,
        signer: &dyn AuditSigner,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(d) = &change.decide_request {
            let done = sqlx::query(
                "UPDATE key_requests SET state = $1, approved_by = $2, decided_at = $3, result = $4 \
                 WHERE id = $5 AND state = 'pending'",
            )
            .bind(&d.state)
            .bind(&d.approved_by)
            .bind(d.decided_at)
            .bind(&d.result)
            .bind(&d.id)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict("the request is no longer pending".into()));
            }
        }
        if let Some(r) = &change.insert_request {
            sqlx::query(&format!(
                "INSERT INTO key_requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
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
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        }
        for key in &change.insert_keys {
            insert_key(&mut tx, key).await?;
        }
        for key in &change.update_keys {
            sqlx::query("UPDATE keys SET wrapped = $1, wrapped_by = $2, state = $3 WHERE kind = $4 AND version = $5")
                .bind(key.wrapped.as_slice())
                .bind(key.wrapped_by)
                .bind(key.state.as_str())
                .bind(key.kind.as_str())
                .bind(key.version)
                .execute(&mut *tx)
                .await
                .map_err(write_error)?;
        }
        for key in &change.migrate_keys {
            let done = sqlx::query(
                "UPDATE keys SET wrapped = $1, kcv = $2, format = $3 WHERE kind = $4 AND version = $5 AND format = 1",
            )
            .bind(key.wrapped.as_slice())
            .bind(key.kcv.as_str())
            .bind(key.format.as_i64())
            .bind(key.kind.as_str())
            .bind(key.version)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict("the key is no longer in format 1".into()));
            }
        }
        for (name, value) in &change.set_meta {
            sqlx::query(
                "INSERT INTO vault_meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        }
        if let Some((from, to, total, now)) = change.start_job {
            sqlx::query(
                "INSERT INTO reencrypt_jobs (from_version, to_version, state, total, done, cursor, created_at, \
                 updated_at) VALUES ($1, $2, 'running', $3, 0, '', $4, $4)",
            )
            .bind(from)
            .bind(to)
            .bind(total)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        }
        if let Some(batch) = &change.reencrypt {
            let mut moved = 0u64;
            for (table, rows) in [("cards", &batch.cards), ("cvcs", &batch.cvcs)] {
                if rows.is_empty() {
                    continue;
                }
                moved += sqlx::query(&format!(
                    "UPDATE {table} t SET ciphertext = u.ct, dek_version = $1 \
                     FROM UNNEST($2::text[], $3::bytea[]) AS u(token, ct) \
                     WHERE t.token = u.token AND t.dek_version = $4"
                ))
                .bind(batch.to_version)
                .bind(rows.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|(_, c)| c.as_slice()).collect::<Vec<_>>())
                .bind(batch.from_version)
                .execute(&mut *tx)
                .await
                .map_err(write_error)?
                .rows_affected();
            }
            let done = sqlx::query(
                "UPDATE reencrypt_jobs SET done = done + $1, cursor = $2, updated_at = $3 \
                 WHERE id = $4 AND state = 'running'",
            )
            .bind(i64::try_from(moved).unwrap_or(i64::MAX))
            .bind(&batch.cursor)
            .bind(batch.now)
            .bind(batch.job_id)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict("the re-encryption job is not running".into()));
            }
        }
        if let Some((id, state, error, now)) = &change.finish_job {
            sqlx::query(
                "UPDATE reencrypt_jobs SET state = $1, error = $2, finished_at = $3, updated_at = $3 \
                 WHERE id = $4 AND state = 'running'",
            )
            .bind(state)
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        }
        append_audit(&mut tx, std::iter::once(audit), signer).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(())
    }

    async fn key_request(&self, id: &str) -> Result<Option<KeyRequest>, StoreError> {
        let row = sqlx::query(&format!("SELECT {REQUEST_COLUMNS} FROM key_requests WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(request_from_row).transpose()?)
    }

    async fn key_requests(&self, limit: i64) -> Result<Vec<KeyRequest>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {REQUEST_COLUMNS} FROM key_requests ORDER BY requested_at DESC, id LIMIT $1"))
                .bind(limit.max(0))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(request_from_row).collect::<Result<_, _>>()?)
    }

    async fn reencrypt_jobs(&self) -> Result<Vec<ReencryptJob>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM reencrypt_jobs ORDER BY id DESC"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
    }

    async fn cards_for_reencrypt(
        &self,
        version: i64,
        after_token: &str,
        limit: i64,
    ) -> Result<Vec<CardRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE dek_version = $1 AND token > $2 ORDER BY token LIMIT $3"
        ))
        .bind(version)
        .bind(after_token)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(card_from_row).collect::<Result<_, _>>()?)
    }

    async fn cvcs_for_reencrypt(&self, version: i64, limit: i64) -> Result<Vec<(CvcRecord, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.token, v.dek_version, v.ciphertext, v.expires_at, c.merchant_id \
             FROM cvcs v JOIN cards c ON c.token = v.token WHERE v.dek_version = $1 ORDER BY v.token LIMIT $2",
        )
        .bind(version)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((cvc_from_row(r)?, r.try_get::<String, _>(4)?))).collect()
    }

    async fn dek_usage(&self) -> Result<Vec<DekUsage>, StoreError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT v, sum(cards)::bigint, sum(cvcs)::bigint FROM ( \
             SELECT dek_version AS v, count(*) AS cards, 0::bigint AS cvcs FROM cards GROUP BY dek_version \
             UNION ALL SELECT dek_version, 0::bigint, count(*) FROM cvcs GROUP BY dek_version) u GROUP BY v ORDER BY v",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(version, cards, cvcs)| DekUsage { version, cards, cvcs }).collect())
    }

    async fn add_seals(&self, deltas: &[(i64, i64)]) -> Result<(), StoreError> {
        for (version, delta) in deltas {
            sqlx::query("UPDATE keys SET seals = seals + $1 WHERE kind = 'dek' AND version = $2")
                .bind(delta)
                .bind(version)
                .execute(&self.pool)
                .await
                .map_err(write_error)?;
        }
        Ok(())
    }

    async fn seal_counts(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("SELECT version, seals FROM keys WHERE kind = 'dek' ORDER BY version")
            .fetch_all(&self.pool)
            .await?)
    }
}
