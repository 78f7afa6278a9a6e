//! The SQLite backend: one file in WAL mode, the embedded default.
//!
//! All writes go through a pool of exactly one connection and start with
//! `BEGIN IMMEDIATE`, so a write transaction holds the database's write lock from its
//! first statement: no two writers in this process ever race, and a writer in another
//! process (the officer CLI) makes us wait (`busy_timeout`) instead of failing with a
//! lock-upgrade deadlock. Reads use a separate pool of read-only connections, which WAL
//! lets run alongside the writer.

use super::group_commit::{chain_records, chunks, segments, write_error, Segment};
use super::rows::{
    audit_from_row, card_from_row, cvc_from_row, job_from_row, key_from_row, request_from_row, AUDIT_COLUMNS,
    CARD_COLUMNS, CVC_COLUMNS, JOB_COLUMNS, KEY_COLUMNS, REQUEST_COLUMNS,
};
use super::{
    AuditEvent, AuditRecord, AuditSigner, CardRecord, CheckpointRow, Counts, CvcRecord, DekUsage, ExpiredCard,
    ExpiryAudit, KeyChange, KeyRequest, ReencryptJob, Store, StoreError, StoredKey, WriteUnit,
};
use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

/// Connections of the read pool.
const READ_CONNECTIONS: u32 = 8;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The vault store on a SQLite file: one writer (every write transaction runs there,
/// one at a time), read-only connections for queries, the WAL checkpointer
/// ([`paysys_db::Database`]).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: paysys_db::Database,
}

impl SqliteStore {
    /// Open (creating if missing) the database at `url` (`sqlite:PATH`). Does not migrate.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(SqliteStore { db: paysys_db::Database::open(url, READ_CONNECTIONS).await? })
    }

    /// A write transaction holding the database write lock from its first statement.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.db.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Read the chain head. Only called inside a write transaction, which holds the lock.
async fn chain_head(tx: &mut Transaction<'static, Sqlite>) -> Result<(i64, Vec<u8>), StoreError> {
    let row = sqlx::query("SELECT seq, mac FROM audit_head WHERE id = 1").fetch_one(&mut **tx).await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Append the audit records of `events` after the head and move the head.
async fn append_audit<'a>(
    tx: &mut Transaction<'static, Sqlite>,
    events: impl Iterator<Item = &'a AuditEvent>,
    signer: &dyn AuditSigner,
) -> Result<(), StoreError> {
    let (seq, mac) = chain_head(tx).await?;
    let records = chain_records(seq, mac, events, signer);
    let Some(last) = records.last() else {
        return Ok(());
    };
    for chunk in chunks(&records) {
        insert_audit(tx, chunk).await?;
    }
    sqlx::query("UPDATE audit_head SET seq = ?, mac = ? WHERE id = 1")
        .bind(last.seq)
        .bind(&last.mac)
        .execute(&mut **tx)
        .await
        .map_err(write_error)?;
    Ok(())
}

async fn insert_audit(tx: &mut Transaction<'static, Sqlite>, records: &[AuditRecord]) -> Result<(), StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new(format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) "));
    query.push_values(records, |mut row, r| {
        let e = &r.event;
        row.push_bind(r.seq)
            .push_bind(e.at)
            .push_bind(e.request_id.as_str())
            .push_bind(e.principal.as_str())
            .push_bind(e.operation.as_str())
            .push_bind(e.merchant_id.as_deref())
            .push_bind(e.token.as_deref())
            .push_bind(e.decision.as_str())
            .push_bind(e.outcome.as_str())
            .push_bind(e.key_version)
            .push_bind(r.prev_mac.as_slice())
            .push_bind(r.mac.as_slice());
    });
    query.build().execute(&mut **tx).await.map_err(write_error)?;
    Ok(())
}

async fn insert_cards(tx: &mut Transaction<'static, Sqlite>, cards: &[&CardRecord]) -> Result<(), StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new(format!("INSERT INTO cards ({CARD_COLUMNS}) "));
    query.push_values(cards, |mut row, c| {
        row.push_bind(c.token.as_str())
            .push_bind(c.merchant_id.as_str())
            .push_bind(c.fingerprint.as_str())
            .push_bind(c.brand.as_str())
            .push_bind(c.bin.as_str())
            .push_bind(c.last4.as_str())
            .push_bind(c.exp_month)
            .push_bind(c.exp_year)
            .push_bind(c.dek_version)
            .push_bind(c.ciphertext.as_slice())
            .push_bind(c.created_at)
            .push_bind(c.expires_at);
    });
    query.build().execute(&mut **tx).await.map_err(write_error)?;
    Ok(())
}

async fn insert_cvcs(tx: &mut Transaction<'static, Sqlite>, cvcs: &[&CvcRecord]) -> Result<(), StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new(format!("INSERT INTO cvcs ({CVC_COLUMNS}) "));
    query.push_values(cvcs, |mut row, c| {
        row.push_bind(c.token.as_str())
            .push_bind(c.dek_version)
            .push_bind(c.ciphertext.as_slice())
            .push_bind(c.expires_at);
    });
    // A newer CVC for the same token (tokenize again with `reuse: true`) replaces the old one.
    query.push(
        " ON CONFLICT (token) DO UPDATE SET dek_version = excluded.dek_version, \
         ciphertext = excluded.ciphertext, expires_at = excluded.expires_at",
    );
    query.build().execute(&mut **tx).await.map_err(write_error)?;
    Ok(())
}

async fn delete_cards(tx: &mut Transaction<'static, Sqlite>, tokens: &[&str]) -> Result<(), StoreError> {
    // The CVC goes explicitly rather than by cascade, so it is gone even on a
    // connection where foreign keys were left off.
    for table in ["cvcs", "cards"] {
        let mut query = QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE token IN ("));
        let mut list = query.separated(", ");
        for token in tokens {
            list.push_bind(*token);
        }
        query.push(")");
        query.build().execute(&mut **tx).await.map_err(write_error)?;
    }
    Ok(())
}

async fn insert_key(tx: &mut Transaction<'static, Sqlite>, key: &StoredKey) -> Result<(), StoreError> {
    sqlx::query(&format!("INSERT INTO keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
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

async fn apply_segment(tx: &mut Transaction<'static, Sqlite>, segment: &Segment<'_>) -> Result<(), StoreError> {
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

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.db.writer).await?;
        Ok(())
    }

    async fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys ORDER BY kind, version"))
            .fetch_all(&self.db.reader)
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
            "SELECT {CARD_COLUMNS} FROM cards WHERE token = ? AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(token)
        .bind(now)
        .fetch_optional(&self.db.reader)
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
            "SELECT {CARD_COLUMNS} FROM cards WHERE merchant_id = ? AND fingerprint = ? \
             AND (expires_at IS NULL OR (expires_at > ? AND expires_at >= ?)) \
             ORDER BY created_at, token LIMIT 1"
        ))
        .bind(merchant_id)
        .bind(fingerprint)
        .bind(now)
        // No expiry asked for: only a card that never expires will do.
        .bind(lives_until.unwrap_or(i64::MAX))
        .fetch_optional(&self.db.reader)
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
        // The write transaction holds the database's write lock from its first statement,
        // so another process sweeping the same file waits and then finds these gone.
        let mut tx = self.begin_write().await?;
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT token, merchant_id, dek_version, expires_at FROM cards \
             WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, token LIMIT ?",
        )
        .bind(now)
        .bind(limit.max(0))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let expired: Vec<ExpiredCard> = rows
            .into_iter()
            .map(|(token, merchant_id, dek_version, expires_at)| ExpiredCard {
                token,
                merchant_id,
                dek_version,
                expires_at,
            })
            .collect();
        let tokens: Vec<&str> = expired.iter().map(|c| c.token.as_str()).collect();
        for chunk in chunks(&tokens) {
            delete_cards(&mut tx, chunk).await?;
        }
        let events: Vec<AuditEvent> = expired.iter().map(audit).collect();
        append_audit(&mut tx, events.iter(), signer).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(expired)
    }

    async fn take_cvc(&self, token: &str, now: i64) -> Result<Option<CvcRecord>, StoreError> {
        // An expired CVC is deleted too (it must not linger), but not returned.
        let row = sqlx::query(&format!("DELETE FROM cvcs WHERE token = ? RETURNING {CVC_COLUMNS}"))
            .bind(token)
            .fetch_optional(&self.db.writer)
            .await?;
        let cvc = row.as_ref().map(cvc_from_row).transpose()?;
        Ok(cvc.filter(|c| c.expires_at > now))
    }

    async fn find_cvc(&self, token: &str, now: i64) -> Result<Option<CvcRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {CVC_COLUMNS} FROM cvcs WHERE token = ? AND expires_at > ?"))
            .bind(token)
            .bind(now)
            .fetch_optional(&self.db.reader)
            .await?;
        Ok(row.as_ref().map(cvc_from_row).transpose()?)
    }

    async fn sweep_expired_cvcs(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM cvcs WHERE expires_at <= ?").bind(now).execute(&self.db.writer).await?;
        Ok(done.rows_affected())
    }

    async fn commit(&self, units: &[WriteUnit], signer: &dyn AuditSigner) -> Result<(), StoreError> {
        if units.is_empty() {
            return Ok(());
        }
        // On any error the transaction is dropped, which rolls it back.
        let mut tx = self.begin_write().await?;
        for segment in segments(units) {
            apply_segment(&mut tx, &segment).await?;
        }
        append_audit(&mut tx, units.iter().map(|u| &u.audit), signer).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(())
    }

    async fn audit_records(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"))
            .bind(after_seq)
            .bind(limit.max(0))
            .fetch_all(&self.db.reader)
            .await?;
        Ok(rows.iter().map(audit_from_row).collect::<Result<_, _>>()?)
    }

    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
        Ok(sqlx::query_as("SELECT seq, mac FROM audit_head WHERE id = 1").fetch_one(&self.db.reader).await?)
    }

    async fn record_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, head_mac, at, key_id) VALUES (?, ?, ?, ?) \
             ON CONFLICT (seq, head_mac) DO NOTHING",
        )
        .bind(checkpoint.seq)
        .bind(checkpoint.head_mac.as_slice())
        .bind(checkpoint.at)
        .bind(checkpoint.key_id.as_str())
        .execute(&self.db.writer)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    async fn recorded_checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, i64, String)> = sqlx::query_as(
            "SELECT seq, head_mac, at, key_id FROM audit_checkpoints WHERE seq > ? ORDER BY seq, at LIMIT ?",
        )
        .bind(after_seq)
        .bind(limit.max(0))
        .fetch_all(&self.db.reader)
        .await?;
        Ok(rows.into_iter().map(|(seq, head_mac, at, key_id)| CheckpointRow { seq, head_mac, at, key_id }).collect())
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        // One read transaction, so the numbers are from one snapshot.
        let mut tx = self.db.reader.begin().await?;
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
        let mut tx = self.begin_write().await?;
        let present: i64 = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM keys)").fetch_one(&mut *tx).await?;
        if present != 0 {
            return Err(StoreError::AlreadyInitialized);
        }
        for key in keys {
            insert_key(&mut tx, key).await?;
        }
        for (name, value) in meta {
            sqlx::query("INSERT INTO vault_meta (name, value) VALUES (?, ?)")
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
        Ok(sqlx::query_as("SELECT name, value FROM vault_meta ORDER BY name").fetch_all(&self.db.reader).await?)
    }

    async fn apply_key_change(
        &self,
        change: &KeyChange,
        audit: &AuditEvent,
        signer: &dyn AuditSigner,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(d) = &change.decide_request {
            let done = sqlx::query(
                "UPDATE key_requests SET state = ?, approved_by = ?, decided_at = ?, result = ? \
                 WHERE id = ? AND state = 'pending'",
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
                "INSERT INTO key_requests ({REQUEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
            sqlx::query("UPDATE keys SET wrapped = ?, wrapped_by = ?, state = ? WHERE kind = ? AND version = ?")
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
                "UPDATE keys SET wrapped = ?, kcv = ?, format = ? WHERE kind = ? AND version = ? AND format = 1",
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
                "INSERT INTO vault_meta (name, value) VALUES (?, ?) \
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
                 updated_at) VALUES (?, ?, 'running', ?, 0, '', ?, ?)",
            )
            .bind(from)
            .bind(to)
            .bind(total)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        }
        if let Some(batch) = &change.reencrypt {
            let mut moved = 0u64;
            for (token, ciphertext) in &batch.cards {
                moved +=
                    sqlx::query("UPDATE cards SET ciphertext = ?, dek_version = ? WHERE token = ? AND dek_version = ?")
                        .bind(ciphertext.as_slice())
                        .bind(batch.to_version)
                        .bind(token)
                        .bind(batch.from_version)
                        .execute(&mut *tx)
                        .await
                        .map_err(write_error)?
                        .rows_affected();
            }
            for (token, ciphertext) in &batch.cvcs {
                moved +=
                    sqlx::query("UPDATE cvcs SET ciphertext = ?, dek_version = ? WHERE token = ? AND dek_version = ?")
                        .bind(ciphertext.as_slice())
                        .bind(batch.to_version)
                        .bind(token)
                        .bind(batch.from_version)
                        .execute(&mut *tx)
                        .await
                        .map_err(write_error)?
                        .rows_affected();
            }
            let done = sqlx::query(
                "UPDATE reencrypt_jobs SET done = done + ?, cursor = ?, updated_at = ? WHERE id = ? AND state = 'running'",
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
                "UPDATE reencrypt_jobs SET state = ?, error = ?, finished_at = ?, updated_at = ? \
                 WHERE id = ? AND state = 'running'",
            )
            .bind(state)
            .bind(error)
            .bind(now)
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
        let row = sqlx::query(&format!("SELECT {REQUEST_COLUMNS} FROM key_requests WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.db.reader)
            .await?;
        Ok(row.as_ref().map(request_from_row).transpose()?)
    }

    async fn key_requests(&self, limit: i64) -> Result<Vec<KeyRequest>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {REQUEST_COLUMNS} FROM key_requests ORDER BY requested_at DESC, id LIMIT ?"))
                .bind(limit.max(0))
                .fetch_all(&self.db.reader)
                .await?;
        Ok(rows.iter().map(request_from_row).collect::<Result<_, _>>()?)
    }

    async fn reencrypt_jobs(&self) -> Result<Vec<ReencryptJob>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM reencrypt_jobs ORDER BY id DESC"))
            .fetch_all(&self.db.reader)
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
            "SELECT {CARD_COLUMNS} FROM cards WHERE dek_version = ? AND token > ? ORDER BY token LIMIT ?"
        ))
        .bind(version)
        .bind(after_token)
        .bind(limit.max(0))
        .fetch_all(&self.db.reader)
        .await?;
        Ok(rows.iter().map(card_from_row).collect::<Result<_, _>>()?)
    }

    async fn cvcs_for_reencrypt(&self, version: i64, limit: i64) -> Result<Vec<(CvcRecord, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.token, v.dek_version, v.ciphertext, v.expires_at, c.merchant_id \
             FROM cvcs v JOIN cards c ON c.token = v.token WHERE v.dek_version = ? ORDER BY v.token LIMIT ?",
        )
        .bind(version)
        .bind(limit.max(0))
        .fetch_all(&self.db.reader)
        .await?;
        rows.iter().map(|r| Ok((cvc_from_row(r)?, r.try_get::<String, _>(4)?))).collect()
    }

    async fn dek_usage(&self) -> Result<Vec<DekUsage>, StoreError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT v, sum(cards), sum(cvcs) FROM ( \
             SELECT dek_version AS v, count(*) AS cards, 0 AS cvcs FROM cards GROUP BY dek_version \
             UNION ALL SELECT dek_version, 0, count(*) FROM cvcs GROUP BY dek_version) GROUP BY v ORDER BY v",
        )
        .fetch_all(&self.db.reader)
        .await?;
        Ok(rows.into_iter().map(|(version, cards, cvcs)| DekUsage { version, cards, cvcs }).collect())
    }

    async fn add_seals(&self, deltas: &[(i64, i64)]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (version, delta) in deltas {
            sqlx::query("UPDATE keys SET seals = seals + ? WHERE kind = 'dek' AND version = ?")
                .bind(delta)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(write_error)?;
        }
        tx.commit().await.map_err(write_error)?;
        Ok(())
    }

    async fn seal_counts(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("SELECT version, seals FROM keys WHERE kind = 'dek' ORDER BY version")
            .fetch_all(&self.db.reader)
            .await?)
    }
}
