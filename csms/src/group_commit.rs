//! Group commit: station reports from all sessions are written by one task,
//! which commits everything that queued up while the previous commit was
//! running in a single transaction. A caller's `write` returns only after the
//! transaction holding its report committed, so an answer sent afterwards
//! never promises more than the database holds; under load one fsync covers
//! many reports instead of one each.

use tokio::sync::{mpsc, oneshot};

use crate::store::{StationWrite, Store, StoreError};

/// Reports waiting for the writer; a full queue makes sessions wait (backpressure).
const QUEUE: usize = 8192;

type Pending = (StationWrite, oneshot::Sender<Result<(), StoreError>>);

/// Handle to the writer task; cheap to clone.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    tx: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer; groups hold at most `max_group` reports.
    pub fn start(store: Store, max_group: usize) -> GroupCommit {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, rx, max_group.max(1)));
        GroupCommit { tx }
    }

    /// Persists `w`; returns once it is committed.
    pub async fn write(&self, w: StationWrite) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx.send((w, done)).await.map_err(|_| StoreError::Unavailable)?;
        wait.await.map_err(|_| StoreError::Unavailable)?
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Pending>, max_group: usize) {
    let mut group: Vec<Pending> = Vec::with_capacity(max_group);
    while let Some(first) = rx.recv().await {
        group.push(first);
        while group.len() < max_group {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let writes: Vec<StationWrite> = group.iter().map(|(w, _)| w.clone()).collect();
        match store.apply_writes(&writes).await {
            Ok(()) => {
                for (_, done) in group.drain(..) {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                // One bad report must not sink the others: retry each on its own.
                tracing::warn!(error = %e, size = group.len(), "group commit failed; writing reports one by one");
                for (w, done) in group.drain(..) {
                    let _ = done.send(store.apply_writes(std::slice::from_ref(&w)).await);
                }
            }
        }
    }
}
