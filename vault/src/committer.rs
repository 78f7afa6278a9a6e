//! Group commit: requests hand their writes (with their audit event) to one committer
//! task, which gathers whatever is waiting into a single transaction. Under load many
//! tokenizations share one commit, which is what makes SQLite fast; at low load a
//! batch is just one unit and nothing waits.
//!
//! Key-lifecycle changes (requests, approvals, rotations, re-encryption batches) go
//! through the same task with [`Committer::commit_key_change`]: each runs alone in its own
//! transaction with its audit record, in line with the card writes around it, and is
//! signed with the audit key of the moment — so a sealed vault changes no keys.

use crate::audit::ChainSigner;
use crate::keyring::KeyState;
use crate::store::{AuditEvent, KeyChange, Store, StoreError, WriteUnit};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most units committed in one transaction.
const MAX_BATCH: usize = 512;

/// Why a unit was not committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The vault was sealed before the audit record could be signed.
    #[error("the vault is sealed")]
    Sealed,
    /// The store refused or failed the unit.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The committer task is gone (the vault is shutting down).
    #[error("the committer has stopped")]
    Stopped,
}

struct Job {
    work: Work,
    done: oneshot::Sender<Result<(), CommitError>>,
}

/// What a job asks the committer to write.
// Units are the hot path and stay unboxed; key changes are rare and boxed.
#[allow(clippy::large_enum_variant)]
enum Work {
    /// Card writes, batched with other units.
    Unit(WriteUnit),
    /// A key-store change, committed on its own.
    KeyChange(Box<(KeyChange, AuditEvent)>),
}

/// Handle to the committer task.
#[derive(Debug, Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let operation = match &self.work {
            Work::Unit(unit) => &unit.audit.operation,
            Work::KeyChange(change) => &change.1.operation,
        };
        f.debug_struct("Job").field("operation", operation).finish()
    }
}

impl Committer {
    /// Start the committer task on the current runtime.
    pub fn start(store: Arc<dyn Store>, keys: Arc<KeyState>) -> Committer {
        let (jobs, rx) = mpsc::channel(MAX_BATCH * 8);
        tokio::spawn(run_committer(store, keys, rx));
        Committer { jobs }
    }

    /// Commit one unit (its writes and its audit record) and wait until it is durable.
    pub async fn commit(&self, unit: WriteUnit) -> Result<(), CommitError> {
        let (done, wait) = oneshot::channel();
        self.jobs.send(Job { work: Work::Unit(unit), done }).await.map_err(|_| CommitError::Stopped)?;
        wait.await.map_err(|_| CommitError::Stopped)?
    }

    /// Apply a key-store change with its audit record and wait until it is durable.
    pub async fn commit_key_change(&self, change: KeyChange, audit: AuditEvent) -> Result<(), CommitError> {
        let (done, wait) = oneshot::channel();
        let work = Work::KeyChange(Box::new((change, audit)));
        self.jobs.send(Job { work, done }).await.map_err(|_| CommitError::Stopped)?;
        wait.await.map_err(|_| CommitError::Stopped)?
    }
}

async fn run_committer(store: Arc<dyn Store>, keys: Arc<KeyState>, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<(WriteUnit, oneshot::Sender<Result<(), CommitError>>)> = Vec::with_capacity(MAX_BATCH);
    // A key change met while gathering a batch runs right after that batch.
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        match first.work {
            Work::KeyChange(change) => {
                let result = match keys.get() {
                    None => Err(CommitError::Sealed),
                    Some(keyring) => {
                        let (change, audit) = *change;
                        store
                            .apply_key_change(&change, &audit, &ChainSigner(keyring.audit_key()))
                            .await
                            .map_err(CommitError::Store)
                    }
                };
                let _ = first.done.send(result);
                continue;
            }
            Work::Unit(unit) => batch.push((unit, first.done)),
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Job { work: Work::Unit(unit), done }) => batch.push((unit, done)),
                Ok(job) => {
                    held = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        let Some(keyring) = keys.get() else {
            for (_, done) in batch.drain(..) {
                let _ = done.send(Err(CommitError::Sealed));
            }
            continue;
        };
        let signer = ChainSigner(keyring.audit_key());
        let (units, waiters): (Vec<WriteUnit>, Vec<_>) = batch.drain(..).unzip();
        match store.commit(&units, &signer).await {
            Ok(()) => {
                for done in waiters {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) if units.len() == 1 => {
                if let Some(done) = waiters.into_iter().next() {
                    let _ = done.send(Err(CommitError::Store(e)));
                }
            }
            Err(_) => {
                // One unit spoiled the batch (e.g. a token collision): commit the units
                // one by one so only the faulty one fails.
                for (unit, done) in units.iter().zip(waiters) {
                    let result = store.commit(std::slice::from_ref(unit), &signer).await.map_err(CommitError::Store);
                    let _ = done.send(result);
                }
            }
        }
    }
}
