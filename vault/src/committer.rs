//! Group commit: requests hand their writes (with their audit event) to one committer
//! task, which gathers whatever is waiting into a single transaction. Under load many
//! tokenizations share one commit, which is what makes SQLite fast; at low load a
//! batch is just one unit and nothing waits.

use crate::audit::ChainSigner;
use crate::keyring::KeyState;
use crate::store::{Store, StoreError, WriteUnit};
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
    unit: WriteUnit,
    done: oneshot::Sender<Result<(), CommitError>>,
}

/// Handle to the committer task.
#[derive(Debug, Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("operation", &self.unit.audit.operation).finish()
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
        self.jobs.send(Job { unit, done }).await.map_err(|_| CommitError::Stopped)?;
        wait.await.map_err(|_| CommitError::Stopped)?
    }
}

async fn run_committer(store: Arc<dyn Store>, keys: Arc<KeyState>, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let Some(keyring) = keys.get() else {
            for job in batch.drain(..) {
                let _ = job.done.send(Err(CommitError::Sealed));
            }
            continue;
        };
        let signer = ChainSigner(keyring.audit_key());
        let (units, waiters): (Vec<WriteUnit>, Vec<_>) = batch.drain(..).map(|j| (j.unit, j.done)).unzip();
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
