//! How the PaySys services keep their data: how they run a SQLite file in WAL mode
//! (this page), and the store plumbing the gateway and the sandbox share — one
//! [`StoreError`], the [`Backend`] a URL chooses, the `on_pool!`/`on_reader!`/
//! `in_transaction!` dispatch and the [`Bind`] trait ([`store`]).
//!
//! # Layout
//!
//! * `lib.rs` — [`Database`]: the sqlx writer, the readers, the [`Checkpointer`].
//! * `group_commit.rs` — [`GroupCommitter`] and its statement arguments [`Args`].
//! * `store.rs` — the shared store plumbing.
//!
//! # Why a checkpointer
//!
//! SQLite's default is that the connection whose commit pushes the WAL past 1000 pages
//! copies the WAL back into the database file (a checkpoint) before that commit returns.
//! With one writer connection per service, that puts every checkpoint on the write
//! path: the writer stalls, requests queue behind it, and throughput and tail latency
//! suffer (the vault's tokenize benchmark at 64 clients: 6,700/s, p99 22 ms with
//! automatic checkpoints; 10,500/s, p99 10 ms without).
//!
//! So a [`Checkpointer`] on a connection of its own (its own thread) runs
//! `PRAGMA wal_checkpoint(PASSIVE)` every [`CHECKPOINT_INTERVAL`]: passive checkpoints
//! never wait for and never block the writer or the readers, and they copy (and sync)
//! the WAL while the writer goes on. The writer keeps SQLite's own checkpoint at
//! [`RESTART_FRAMES`] ([`writer_options`]) because only a checkpoint that catches up with
//! the last frame lets the WAL start over, and under continuous writes only the writer
//! can be sure of that; by then the checkpointer has copied nearly everything, so the
//! writer's share is small. `journal_size_limit` truncates the WAL file after a restart.
//!
//! Measured (vault tokenize, 64 clients, 2 cores, 20 s): 6,700/s p99 22 ms with the
//! writer checkpointing alone; with the checkpointer beside it every 50 ms 7,900/s p99
//! 19 ms, every 20 ms 8,400–8,700/s p99 17 ms, every 10 ms 9,150–9,200/s p99 15 ms.
//! Without any checkpoint (an unbounded WAL, not an option) 10,500/s p99 10 ms. A larger
//! writer page cache did not help. While nothing is written it looks every
//! [`IDLE_CHECKPOINT_INTERVAL`].
//!
//! The gateway and the sandbox also start a [`GroupCommitter`] (see its module): their
//! hottest write transactions (a payment's insert and update, an authorization) run as
//! closures on a rusqlite connection of its own thread, many to a commit, instead of a
//! statement at a time through sqlx. Every other write takes the same [`WriteLock`].

mod group_commit;
pub mod store;

pub use group_commit::{Args, GroupCommitError, GroupCommitter, WriteLock};
pub use rusqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
pub use store::{Backend, Bind, BindValue, Connections, RowLock, SqliteBackend, StoreError, StoreRow};

/// How long a connection waits for another process's lock on the file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite database as a PaySys service runs it: exactly one writer connection (write
/// transactions run one at a time), read-only connections beside it (WAL lets them read
/// while the writer writes), and the [`Checkpointer`]. In memory the reader is the
/// writer (another connection would see another database) and nothing checkpoints.
/// Cheap to clone; the checkpointer stops with the last clone.
#[derive(Debug, Clone)]
pub struct Database {
    pub writer: SqlitePool,
    pub reader: SqlitePool,
    /// Taken by every write through [`Database::writer`] and by the group committer.
    pub write_lock: WriteLock,
    /// After [`Database::start_group_commit`] on a file database.
    pub group: Option<GroupCommitter>,
    path: Option<std::path::PathBuf>,
    _checkpointer: Option<Arc<Checkpointer>>,
}

impl Database {
    /// Open `url` (`sqlite:PATH`, created if missing, or `sqlite::memory:`) with up to
    /// `readers` read-only connections (0: reads use the writer). Does not migrate.
    pub async fn open(url: &str, readers: u32) -> Result<Database, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = if in_memory { options } else { options.journal_mode(SqliteJournalMode::Wal) };
        // The writer connects first: it creates the file and switches it to WAL (a
        // persistent setting), which the other connections then find in place.
        let writer = SqlitePoolOptions::new()
            // A write that failed at COMMIT (say, the disk was full) can leave the
            // connection marked as inside a transaction, and every later BEGIN would fail
            // with it: such a connection is closed on release and a fresh one opened, so
            // the service recovers once the cause is gone. (An in-memory database lives
            // only in its connection, so that one is kept.)
            .after_release(move |conn, _| {
                Box::pin(async move {
                    Ok(in_memory
                        || <<Sqlite as sqlx::Database>::TransactionManager as sqlx::TransactionManager>::get_transaction_depth(
                            conn,
                        ) == 0)
                })
            })
            .max_connections(1)
            .min_connections(1)
            // A local file does not go stale the way a network connection does: no ping
            // (a round trip to the connection's thread) before every use.
            .test_before_acquire(false)
            // Keeping the writer open keeps an in-memory database alive, keeps the WAL and
            // shared-memory files in place for the readers, and spares the hot path a
            // reconnect.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options(options.clone().create_if_missing(true)))
            .await?;
        if in_memory {
            return Ok(Database {
                reader: writer.clone(),
                writer,
                write_lock: WriteLock::default(),
                group: None,
                path: None,
                _checkpointer: None,
            });
        }
        let path = options.get_filename().to_path_buf();
        let checkpointer = Checkpointer::start(options.clone()).await?;
        let reader = if readers == 0 {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(readers)
                .test_before_acquire(false)
                .connect_with(options.read_only(true))
                .await?
        };
        Ok(Database {
            writer,
            reader,
            write_lock: WriteLock::default(),
            group: None,
            path: Some(path),
            _checkpointer: Some(Arc::new(checkpointer)),
        })
    }

    /// Start the [`GroupCommitter`] (a file database only; in memory it stays `None` and
    /// callers write through [`Database::writer`]).
    pub fn start_group_commit(&mut self) -> Result<(), GroupCommitError> {
        if let (None, Some(path)) = (&self.group, &self.path) {
            self.group = Some(GroupCommitter::start(path, self.write_lock.clone())?);
        }
        Ok(())
    }

    /// Wait for the write lock, to be held across a write through [`Database::writer`].
    pub async fn lock_writes(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.write_lock.clone().lock_owned().await
    }
}

/// How often the background checkpointer runs while the WAL grows.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(10);

/// How often it looks while nothing is written.
pub const IDLE_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// WAL size (frames, i.e. pages) at which the writer checkpoints (SQLite's default).
pub const RESTART_FRAMES: i64 = 1_000;

/// The WAL file is truncated to this size when the writer restarts it.
pub const WAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// The writer's options: its checkpoint at [`RESTART_FRAMES`], the WAL file's size limit.
pub fn writer_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .pragma("wal_autocheckpoint", RESTART_FRAMES.to_string())
        .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string())
}

/// A background task checkpointing a WAL database on its own connection; stops when
/// dropped.
#[derive(Debug)]
pub struct Checkpointer {
    task: tokio::task::JoinHandle<()>,
}

impl Checkpointer {
    /// Start checkpointing the database of `options` (an existing file in WAL mode).
    pub async fn start(options: SqliteConnectOptions) -> Result<Checkpointer, sqlx::Error> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.create_if_missing(false))
            .await?;
        let task = tokio::spawn(run(pool));
        Ok(Checkpointer { task })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(pool: SqlitePool) {
    let mut last = (-1, -1);
    loop {
        let started = tokio::time::Instant::now();
        let pause = match checkpoint(&pool, Mode::Passive).await {
            // Nothing new since the last look: the service is idle.
            Ok(now) if now == last => IDLE_CHECKPOINT_INTERVAL,
            Ok(now) => {
                last = now;
                CHECKPOINT_INTERVAL
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                IDLE_CHECKPOINT_INTERVAL
            }
        };
        tokio::time::sleep_until(started + pause).await;
    }
}

/// How a checkpoint treats the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copy what can be copied now; never wait, never block.
    Passive,
    /// Copy everything (new writes wait meanwhile) and have the next write start the
    /// WAL over (for operators and tests; the background task stays passive).
    Restart,
}

/// One checkpoint; the WAL's size in frames and how many of them are copied.
pub async fn checkpoint(pool: &SqlitePool, mode: Mode) -> Result<(i64, i64), sqlx::Error> {
    use sqlx::Row;
    let sql = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
    };
    let row = sqlx::query(sql).fetch_one(pool).await?;
    Ok((row.try_get(1)?, row.try_get(2)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sqlx::sqlite::SqliteJournalMode;
    use std::str::FromStr;

    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_beside_the_writer() {
        let dir = std::env::temp_dir().join(format!("paysys-db-{:016x}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}", dir.join("t.db").display());
        let options = SqliteConnectOptions::from_str(&url).unwrap().journal_mode(SqliteJournalMode::Wal);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(writer_options(options.clone().create_if_missing(true)))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x BLOB)").execute(&writer).await.unwrap();
        for _ in 0..500 {
            sqlx::query("INSERT INTO t VALUES (randomblob(4000))").execute(&writer).await.unwrap();
        }
        let probe = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await.unwrap();
        // Below the writer's threshold: nothing copied yet.
        let (frames, copied) = checkpoint(&probe, Mode::Passive).await.unwrap();
        assert!(frames >= 500, "{frames}");
        assert_eq!(copied, frames, "a passive checkpoint copies an idle WAL whole");
        // The next write starts the WAL over.
        sqlx::query("INSERT INTO t VALUES (1)").execute(&writer).await.unwrap();
        let (frames, _) = checkpoint(&probe, Mode::Passive).await.unwrap();
        assert!(frames < 10, "the WAL started over: {frames}");
        // The background task does the same on its own.
        let checkpointer = Checkpointer::start(options).await.unwrap();
        for _ in 0..300 {
            sqlx::query("INSERT INTO t VALUES (randomblob(4000))").execute(&writer).await.unwrap();
        }
        let before = std::fs::metadata(dir.join("t.db")).unwrap().len();
        // Wait for it rather than for a fixed time: on a loaded machine its thread may
        // not run for a while, and what this checks is that it copies, not how soon.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut after = before;
        while after <= before && std::time::Instant::now() < deadline {
            tokio::time::sleep(CHECKPOINT_INTERVAL).await;
            after = std::fs::metadata(dir.join("t.db")).unwrap().len();
        }
        assert!(after > before, "the checkpointer copied new pages into the database: {before} → {after}");
        drop(checkpointer);
        writer.close().await;
        probe.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
