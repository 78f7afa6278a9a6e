//! Group commit on a thread of its own, for a service's hottest write transactions.
//!
//! Through sqlx every statement is a round trip to the connection's worker thread: a
//! futex wake there and one back, two context switches at least. A payment's
//! transaction of four statements costs eight, and on a 2-core machine those switches,
//! not SQLite, were most of the CPU (`paysys-bench pay`: ~55% of all time in the kernel,
//! ~19 switches of the gateway's writer thread per payment).
//!
//! A [`GroupCommitter`] owns one writer connection (rusqlite, the same bundled SQLite
//! as sqlx's) on a dedicated thread. A unit of work is a closure over that connection,
//! sent in one handoff. The thread takes every unit waiting, runs each in a `SAVEPOINT`
//! of one `BEGIN IMMEDIATE` transaction (a unit that fails is rolled back alone), commits
//! once, and only then answers each caller. So under load many units share one commit
//! and one wake, and nobody hears "done" before its write is committed.
//!
//! It writes beside the service's sqlx writer: both take [`WriteLock`] first, so they
//! never meet SQLite's lock (whose busy handler would sleep).

use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Most units committed in one transaction.
const MAX_BATCH: usize = 256;

/// Serializes a database's write transactions across its writer connections (the sqlx
/// writer and the [`GroupCommitter`]'s).
pub type WriteLock = Arc<tokio::sync::Mutex<()>>;

/// Why a unit was not committed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GroupCommitError {
    /// The connection or the thread could not be started.
    #[error("could not start the group committer: {0}")]
    Start(String),
    /// `BEGIN`, a savepoint or `COMMIT` failed: the whole batch was rolled back.
    #[error("the batch was not committed: {0}")]
    Commit(String),
    /// The unit panicked; its savepoint was rolled back.
    #[error("the write panicked")]
    Panicked,
    /// The committer thread is gone.
    #[error("the group committer has stopped")]
    Stopped,
}

type Finish = Box<dyn FnOnce(Option<&GroupCommitError>) + Send>;
/// Runs a unit on the connection (`None`: the batch failed before it, do not run);
/// `true` when its savepoint is to be kept.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Finish) + Send>;

/// Handle to the committer thread; it stops when the last handle is dropped.
#[derive(Clone)]
pub struct GroupCommitter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter").finish_non_exhaustive()
    }
}

impl GroupCommitter {
    /// Open the existing WAL database at `path` as a writer and start the thread.
    pub fn start(path: &Path, lock: WriteLock) -> Result<GroupCommitter, GroupCommitError> {
        let start = |e: &dyn std::fmt::Display| GroupCommitError::Start(e.to_string());
        let conn = Connection::open(path).map_err(|e| start(&e))?;
        conn.busy_timeout(crate::BUSY_TIMEOUT).map_err(|e| start(&e))?;
        conn.execute_batch(&format!(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = {}; \
             PRAGMA journal_size_limit = {};",
            crate::RESTART_FRAMES,
            crate::WAL_SIZE_LIMIT_BYTES
        ))
        .map_err(|e| start(&e))?;
        conn.set_prepared_statement_cache_capacity(64);
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-group-commit".into())
            .spawn(move || run(conn, queue, lock))
            .map_err(|e| start(&e))?;
        Ok(GroupCommitter { jobs })
    }

    /// Run `unit` in the next group transaction and answer once that has committed. An
    /// `Err` from `unit` rolls back its own writes only.
    pub async fn write<T, E, F>(&self, unit: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<GroupCommitError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn| {
            // `None`: not run, the batch failed before this unit.
            let result = conn.map(|conn| match std::panic::catch_unwind(AssertUnwindSafe(|| unit(conn))) {
                Ok(result) => result,
                Err(_) => Err(E::from(GroupCommitError::Panicked)),
            });
            let keep = matches!(result, Some(Ok(_)));
            let finish: Finish = Box::new(move |failed| {
                let result = match (result, failed) {
                    (Some(Err(e)), _) => Err(e),
                    (_, Some(failed)) => Err(E::from(failed.clone())),
                    (Some(Ok(value)), None) => Ok(value),
                    (None, None) => Err(E::from(GroupCommitError::Stopped)),
                };
                // The caller may have gone away (a dropped request); the write stands.
                let _ = answer.send(result);
            });
            (keep, finish)
        });
        self.jobs.send(job).map_err(|_| E::from(GroupCommitError::Stopped))?;
        answered.await.unwrap_or_else(|_| Err(E::from(GroupCommitError::Stopped)))
    }
}

fn run(conn: Connection, queue: mpsc::Receiver<Job>, lock: WriteLock) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let guard = lock.blocking_lock();
        let mut finishes = Vec::with_capacity(batch.len());
        let mut failure = conn.execute_batch("BEGIN IMMEDIATE").err();
        let mut jobs = batch.into_iter();
        if failure.is_none() {
            for job in jobs.by_ref() {
                if let Err(e) = conn.execute_batch("SAVEPOINT unit") {
                    finishes.push(job(None).1);
                    failure = Some(e);
                    break;
                }
                let (keep, finish) = job(Some(&conn));
                finishes.push(finish);
                let end = if keep { "RELEASE unit" } else { "ROLLBACK TO unit; RELEASE unit" };
                if let Err(e) = conn.execute_batch(end) {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() {
            failure = conn.execute_batch("COMMIT").err();
        }
        let failure = failure.map(|e| GroupCommitError::Commit(e.to_string()));
        if let Some(e) = &failure {
            tracing::error!(error = %e, "group commit failed; the batch was rolled back");
            if !conn.is_autocommit() {
                // Nothing more can be done here; the next batch's BEGIN reports a
                // connection that is still stuck.
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        drop(guard);
        // Units the failure cut off were never run.
        finishes.extend(jobs.map(|job| job(None).1));
        for finish in finishes {
            finish(failure.as_ref());
        }
    }
}

/// Owned statement arguments for a unit, built with the same `.bind(…)` chain as an
/// sqlx query (so one binding macro serves both), and run with `$n` placeholders as
/// sqlx writes them.
#[derive(Debug, Default)]
pub struct Args {
    values: Vec<rusqlite::types::Value>,
    error: Option<rusqlite::Error>,
}

impl Args {
    /// Append the next argument.
    #[must_use]
    pub fn bind<T: rusqlite::ToSql>(mut self, value: T) -> Args {
        use rusqlite::types::ToSqlOutput;
        match value.to_sql() {
            Ok(ToSqlOutput::Borrowed(v)) => self.values.push(v.into()),
            Ok(ToSqlOutput::Owned(v)) => self.values.push(v),
            Ok(_) => self.error = Some(rusqlite::Error::ToSqlConversionFailure("unsupported argument".into())),
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// Run `sql` (with `$1`, `$2`, … placeholders) with these arguments; rows changed.
    pub fn execute(self, conn: &Connection, sql: &str) -> Result<usize, rusqlite::Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut statement = conn.prepare_cached(&numbered_placeholders(sql))?;
        statement.execute(rusqlite::params_from_iter(self.values))
    }
}

/// sqlx's `$n` as SQLite's `?n`: the same explicit parameter numbers, so the order the
/// placeholders appear in does not matter. (`$` appears in PaySys SQL only as a
/// placeholder.)
fn numbered_placeholders(sql: &str) -> String {
    sql.replace('$', "?")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn database(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("paysys-group-{name}-{:08x}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);")
            .unwrap();
        path
    }

    fn count(path: &Path) -> i64 {
        Connection::open(path).unwrap().query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Sqlite(#[from] rusqlite::Error),
        #[error(transparent)]
        Group(#[from] GroupCommitError),
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn units_commit_together_and_a_failing_unit_rolls_back_alone() {
        let path = database("units");
        let group = GroupCommitter::start(&path, WriteLock::default()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200i64 {
            let group = group.clone();
            tasks.push(tokio::spawn(async move {
                group
                    .write(move |conn| -> Result<usize, TestError> {
                        // Every tenth unit writes its row, then fails on a duplicate key:
                        // its first insert must not survive.
                        let key = format!("k{i}");
                        let n =
                            Args::default().bind(&key).bind(i).execute(conn, "INSERT INTO t (k, v) VALUES ($1, $2)")?;
                        if i % 10 == 0 {
                            Args::default().bind(&key).bind(i).execute(conn, "INSERT INTO t (k, v) VALUES ($1, $2)")?;
                        }
                        Ok(n)
                    })
                    .await
            }));
        }
        let mut failed = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(n) => assert_eq!(n, 1),
                Err(TestError::Sqlite(e)) => {
                    assert!(e.to_string().contains("UNIQUE"), "{e}");
                    failed += 1;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(failed, 20);
        assert_eq!(count(&path), 180, "the failed units' first inserts were rolled back with them");
    }

    #[tokio::test]
    async fn placeholders_are_numbered_not_positional() {
        let path = database("numbered");
        let group = GroupCommitter::start(&path, WriteLock::default()).unwrap();
        group
            .write(|conn| -> Result<usize, TestError> {
                Ok(Args::default().bind(7).bind("seven").execute(conn, "INSERT INTO t (v, k) VALUES ($1, $2)")?)
            })
            .await
            .unwrap();
        let v: i64 =
            Connection::open(&path).unwrap().query_row("SELECT v FROM t WHERE k = 'seven'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 7);
        group
            .write(|conn| -> Result<usize, TestError> {
                Ok(Args::default().bind("seven").bind(8).execute(conn, "UPDATE t SET v = $2 WHERE k = $1")?)
            })
            .await
            .unwrap();
        let v: i64 =
            Connection::open(&path).unwrap().query_row("SELECT v FROM t WHERE k = 'seven'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 8);
    }

    #[tokio::test]
    async fn a_panicking_unit_is_rolled_back_and_the_thread_goes_on() {
        let path = database("panic");
        let group = GroupCommitter::start(&path, WriteLock::default()).unwrap();
        let result = group
            .write(|conn| -> Result<(), TestError> {
                Args::default().bind("p").bind(1).execute(conn, "INSERT INTO t (k, v) VALUES ($1, $2)")?;
                #[allow(clippy::panic)]
                {
                    panic!("a bug in a unit")
                }
            })
            .await;
        assert!(matches!(result, Err(TestError::Group(GroupCommitError::Panicked))));
        group
            .write(|conn| -> Result<usize, TestError> {
                Ok(Args::default().bind("q").bind(2).execute(conn, "INSERT INTO t (k, v) VALUES ($1, $2)")?)
            })
            .await
            .unwrap();
        assert_eq!(count(&path), 1);
    }

    #[tokio::test]
    async fn a_batch_that_cannot_commit_answers_with_the_error_and_the_next_batch_commits() {
        let path = database("broken");
        let group = GroupCommitter::start(&path, WriteLock::default()).unwrap();
        // A unit that ends the transaction under the committer's feet: its savepoint can
        // no longer be released, so the batch fails as a whole.
        let result = group
            .write(|conn| -> Result<(), TestError> {
                Args::default().bind("b").bind(1).execute(conn, "INSERT INTO t (k, v) VALUES ($1, $2)")?;
                conn.execute_batch("ROLLBACK")?;
                Ok(())
            })
            .await;
        assert!(matches!(result, Err(TestError::Group(GroupCommitError::Commit(_)))), "{result:?}");
        group
            .write(|conn| -> Result<usize, TestError> {
                Ok(Args::default().bind("c").bind(2).execute(conn, "INSERT INTO t (k, v) VALUES ($1, $2)")?)
            })
            .await
            .unwrap();
        assert_eq!(count(&path), 1, "only the later batch's row");
    }

    #[tokio::test]
    async fn a_write_waits_for_the_write_lock() {
        let path = database("lock");
        let lock = WriteLock::default();
        let group = GroupCommitter::start(&path, lock.clone()).unwrap();
        let held = lock.clone().lock_owned().await;
        let write = tokio::spawn({
            let group = group.clone();
            async move {
                group
                    .write(|conn| -> Result<usize, TestError> {
                        Ok(Args::default().bind("l").bind(1).execute(conn, "INSERT INTO t (k, v) VALUES ($1, $2)")?)
                    })
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!write.is_finished(), "the unit committed while another writer held the lock");
        assert_eq!(count(&path), 0);
        drop(held);
        write.await.unwrap().unwrap();
        assert_eq!(count(&path), 1);
    }
}
