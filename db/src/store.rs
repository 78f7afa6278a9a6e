//! The store plumbing the gateway and the sandbox share: one error type, the backend a
//! URL chooses ([`Backend`]), and the dispatch macros that run a block of sqlx code on
//! whichever backend that is.
//!
//! Their statements are portable (`$n` placeholders, `ON CONFLICT`, 64-bit integers),
//! so a block is written once and the macros paste it into one `match` arm per backend,
//! with `$pool`/`$tx` bound to that backend's pool or transaction:
//!
//! * [`on_reader!`] — a plain read (SQLite: the read-only connections);
//! * [`on_pool!`] — a single-statement write (SQLite: the sqlx writer, under the write
//!   lock);
//! * [`in_transaction!`] — a write transaction (SQLite: `BEGIN IMMEDIATE` under the write
//!   lock; PostgreSQL: `BEGIN`), with a [`RowLock`] that gives the suffix its `SELECT`s
//!   lock rows with.
//!
//! **Where a body returns from.** A macro body is not a closure: it is pasted into the
//! calling function, so `return` and `?` inside it leave *the calling function* (the
//! store method) with that method's error type, and `.await` awaits in it. In
//! [`in_transaction!`] the body commits `$tx` itself; a `return` (or `?`) before that
//! drops the transaction, which rolls it back. The write lock a macro takes is held to
//! the end of the body (or the early return).
//!
//! The hottest writes do not go through these macros: on SQLite they are units of the
//! [`GroupCommitter`] ([`Backend::Sqlite`] always has one — an in-memory URL is opened
//! as a temporary file, so tests take the same path as production), on PostgreSQL one
//! statement or one transaction of their own. Their arguments are bound by functions
//! over [`Bind`], which both an sqlx query and the committer's [`Args`] implement.

use crate::{Args, Database, GroupCommitError, GroupCommitter};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::path::PathBuf;
use std::sync::Arc;

/// Errors of a service's store. Messages may hold SQL text (never card data, which
/// neither the gateway nor the sandbox stores), so they are logged, not sent to clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres://`/`postgresql://`.
    #[error("unsupported database URL (expected sqlite:PATH, sqlite::memory: or postgres://)")]
    UnsupportedUrl,
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value is not one this code writes (an unknown status, say).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A statement of the SQLite group committer failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The SQLite group committer could not commit.
    #[error("database error: {0}")]
    GroupCommit(#[from] GroupCommitError),
    /// The temporary file for an in-memory URL could not be made.
    #[error("could not create a temporary database: {0}")]
    Temporary(#[from] std::io::Error),
}

impl StoreError {
    /// PostgreSQL refused a row on a unique index (a concurrent duplicate committed
    /// first).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// A SQLite file as a store runs it: the [`Database`] and its group committer.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    /// The sqlx writer and readers, and the write lock.
    pub db: Database,
    /// The hottest write transactions, many to a commit.
    pub group: GroupCommitter,
    /// Set when the URL asked for an in-memory database: the file is removed with the
    /// last clone.
    _temporary: Option<Arc<TemporaryFile>>,
}

/// Where a store keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    /// One writer (write transactions run one at a time, sqlx's beside the group
    /// committer's under one lock) and read-only connections, so plain reads never
    /// queue behind writes.
    Sqlite(SqliteBackend),
    /// A pool; concurrent writers are kept apart by row locks and unique indexes.
    Postgres(PgPool),
}

/// How many connections [`Backend::open`] opens.
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    /// Read-only connections to a SQLite file (0: reads use the writer).
    pub sqlite_readers: u32,
    /// The PostgreSQL pool's size.
    pub postgres: u32,
}

impl Backend {
    /// Connect to `url`: `sqlite:PATH` (created if missing), `sqlite::memory:` (a
    /// temporary file, removed when the last clone is dropped) or `postgres://…`. Does
    /// not migrate.
    pub async fn open(url: &str, connections: Connections) -> Result<Backend, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new().max_connections(connections.postgres).connect(url).await?;
            return Ok(Backend::Postgres(pool));
        }
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl);
        }
        // In memory the group committer (a connection of its own) would see another
        // database: a temporary file instead, so tests run the production path.
        let temporary = if is_in_memory(url) { Some(Arc::new(TemporaryFile::new()?)) } else { None };
        let url = match &temporary {
            Some(file) => format!("sqlite:{}", file.path.display()),
            None => url.to_owned(),
        };
        let mut db = Database::open(&url, connections.sqlite_readers).await?;
        db.start_group_commit()?;
        let group = db.group.clone().ok_or_else(|| {
            StoreError::GroupCommit(GroupCommitError::Start("a file database has no group committer".into()))
        })?;
        Ok(Backend::Sqlite(SqliteBackend { db, group, _temporary: temporary }))
    }

    /// Apply this backend's migrations.
    pub async fn migrate(&self, sqlite: &Migrator, postgres: &Migrator) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(sqlite_backend) => sqlite.run(&sqlite_backend.db.writer).await?,
            Backend::Postgres(pool) => postgres.run(pool).await?,
        }
        Ok(())
    }
}

/// Does this SQLite URL ask for an in-memory database?
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// A database file of its own in the temporary directory, removed (with its WAL and
/// shared-memory files) when dropped.
#[derive(Debug)]
struct TemporaryFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TemporaryFile {
    fn new() -> std::io::Result<TemporaryFile> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "paysys-memory-{}-{}-{nanos:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        let path = dir.join("store.db");
        Ok(TemporaryFile { dir, path })
    }
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        // Connections still closing may hold the files open; on Unix they stay readable
        // until closed, and the directory entry is gone now.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A row of either backend read by column name, the reading twin of [`Bind`]: a store
/// writes one decoder per record (`fn payment_from_row(row: &impl StoreRow)`) for both
/// backends. A value of the wrong type is a [`StoreError::Database`]. Only the types the
/// stores read.
pub trait StoreRow {
    /// A text value.
    fn text(&self, column: &'static str) -> Result<String, StoreError>;
    /// A text value or `NULL`.
    fn opt_text(&self, column: &'static str) -> Result<Option<String>, StoreError>;
    /// An integer.
    fn int(&self, column: &'static str) -> Result<i64, StoreError>;
    /// An integer or `NULL`.
    fn opt_int(&self, column: &'static str) -> Result<Option<i64>, StoreError>;
    /// A boolean (`BOOLEAN` on PostgreSQL, 0 or 1 on SQLite).
    fn flag(&self, column: &'static str) -> Result<bool, StoreError>;
    /// The text value as what `parse` makes of it (a status, say): a value this code
    /// never writes is [`StoreError::Corrupt`], not a default.
    fn parsed<T>(&self, column: &'static str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError>;
}

/// Both backends' rows (`SqliteRow`, `PgRow`): the bounds say that they decode the
/// types above by column name.
impl<R> StoreRow for R
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &'static str) -> Result<String, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &'static str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &'static str) -> Result<i64, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn opt_int(&self, column: &'static str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn flag(&self, column: &'static str) -> Result<bool, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn parsed<T>(&self, column: &'static str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
        let text: &str = self.try_get(column)?;
        parse(text).ok_or_else(|| StoreError::Corrupt(format!("{column} {text:?}")))
    }
}

/// Statement arguments appended one at a time: an sqlx query (either backend) and the
/// group committer's [`Args`] (both through [`BindValue`]). A store writes one function
/// per record (`bind_payment(b, p) -> B`) and uses it for both. Only the types the
/// stores write.
pub trait Bind<'q>: Sized {
    /// A text value.
    fn text(self, value: &'q str) -> Self;
    /// A text value or `NULL`.
    fn opt_text(self, value: Option<&'q str>) -> Self;
    /// An integer.
    fn int(self, value: i64) -> Self;
    /// An integer or `NULL`.
    fn opt_int(self, value: Option<i64>) -> Self;
    /// A boolean (`BOOLEAN` on PostgreSQL, 0 or 1 on SQLite).
    fn flag(self, value: bool) -> Self;
}

/// One argument of type `V` appended, by the implementor's own `bind`: what [`Bind`] is
/// written over, once for both implementors.
pub trait BindValue<V>: Sized {
    /// Append `value`.
    fn bind_value(self, value: V) -> Self;
}

impl<V: rusqlite::ToSql> BindValue<V> for Args {
    fn bind_value(self, value: V) -> Self {
        self.bind(value)
    }
}

impl<'q, DB, V> BindValue<V> for sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    V: 'q + sqlx::Encode<'q, DB> + Type<DB>,
{
    fn bind_value(self, value: V) -> Self {
        self.bind(value)
    }
}

impl<'q, B> Bind<'q> for B
where
    B: BindValue<&'q str> + BindValue<Option<&'q str>> + BindValue<i64> + BindValue<Option<i64>> + BindValue<bool>,
{
    fn text(self, value: &'q str) -> Self {
        self.bind_value(value)
    }
    fn opt_text(self, value: Option<&'q str>) -> Self {
        self.bind_value(value)
    }
    fn int(self, value: i64) -> Self {
        self.bind_value(value)
    }
    fn opt_int(self, value: Option<i64>) -> Self {
        self.bind_value(value)
    }
    fn flag(self, value: bool) -> Self {
        self.bind_value(value)
    }
}

/// How a transaction's `SELECT`s lock the rows they read. On SQLite every suffix is
/// empty: the write transaction holds the database's only write lock from `BEGIN
/// IMMEDIATE`, so no other writer can touch the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLock {
    postgres: bool,
}

impl RowLock {
    /// SQLite's (no suffix).
    pub const SQLITE: RowLock = RowLock { postgres: false };
    /// PostgreSQL's.
    pub const POSTGRES: RowLock = RowLock { postgres: true };

    /// For a `SELECT` of rows the transaction goes on to write: waits for any other
    /// writer of those rows and keeps them locked to the commit.
    pub fn for_update(self) -> &'static str {
        if self.postgres {
            " FOR UPDATE"
        } else {
            ""
        }
    }

    /// For a `SELECT` that claims jobs: rows another transaction has locked are skipped
    /// (another replica is claiming them), the rest locked to the commit.
    pub fn skip_locked(self) -> &'static str {
        if self.postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    }
}

/// Run the block with `$tx` a write transaction of `$backend` (a [`Backend`]) and
/// `$lock` its [`RowLock`]. The block commits `$tx`; `return`/`?` leave the calling
/// function and roll the transaction back (see the [module doc](self)).
#[macro_export]
macro_rules! in_transaction {
    ($backend:expr, |$tx:ident, $lock:ident| $body:block) => {
        match $backend {
            $crate::store::Backend::Sqlite(sqlite) => {
                // Beside the group committer's transactions, not into SQLite's busy wait.
                let _write_guard = sqlite.db.lock_writes().await;
                #[allow(unused_mut)]
                let mut $tx = sqlite.db.writer.begin_with("BEGIN IMMEDIATE").await?;
                #[allow(unused_variables)]
                let $lock = $crate::store::RowLock::SQLITE;
                $body
            }
            $crate::store::Backend::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                #[allow(unused_variables)]
                let $lock = $crate::store::RowLock::POSTGRES;
                $body
            }
        }
    };
}

/// Run the block with `$pool` the pool of `$backend` (a [`Backend`]) for a
/// single-statement write (SQLite: the sqlx writer, under the write lock). `return`/`?`
/// leave the calling function (see the [module doc](self)).
#[macro_export]
macro_rules! on_pool {
    ($backend:expr, |$pool:ident| $body:block) => {
        match $backend {
            $crate::store::Backend::Sqlite(sqlite) => {
                let _write_guard = sqlite.db.lock_writes().await;
                let $pool = &sqlite.db.writer;
                $body
            }
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}

/// Run the read-only block with `$pool` a pool of `$backend` (a [`Backend`]) for reads
/// (SQLite: the read-only connections; in WAL a read never waits for the writer).
/// `return`/`?` leave the calling function (see the [module doc](self)).
#[macro_export]
macro_rules! on_reader {
    ($backend:expr, |$pool:ident| $body:block) => {
        match $backend {
            $crate::store::Backend::Sqlite(sqlite) => {
                let $pool = &sqlite.db.reader;
                $body
            }
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn an_in_memory_url_is_a_temporary_file_removed_with_the_last_clone() {
        let connections = Connections { sqlite_readers: 1, postgres: 1 };
        let backend = Backend::open("sqlite::memory:", connections).await.unwrap();
        let Backend::Sqlite(sqlite) = &backend else { panic!("not SQLite") };
        let dir = sqlite._temporary.as_ref().unwrap().dir.clone();
        assert!(dir.join("store.db").exists());
        let clone = backend.clone();
        drop(backend);
        assert!(dir.exists(), "a clone still uses it");
        drop(clone);
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn a_body_returns_from_the_calling_function() {
        async fn early(backend: &Backend) -> Result<i64, StoreError> {
            on_reader!(backend, |pool| {
                let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(pool).await?;
                if one == 1 {
                    return Ok(10);
                }
            });
            Ok(20)
        }
        let backend = Backend::open("sqlite::memory:", Connections { sqlite_readers: 1, postgres: 1 }).await.unwrap();
        assert_eq!(early(&backend).await.unwrap(), 10);
    }
}
