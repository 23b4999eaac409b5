//! Group commit: station reports from all sessions are written by one task,
//! which commits everything that queued up while the previous commit was
//! running in a single transaction (a single statement, when the group comes
//! to one, commits on its own). A caller's `write` returns only after the
//! transaction holding its report committed, so an answer sent afterwards
//! never promises more than the database holds; under load one fsync covers
//! many reports instead of one each.
//!
//! The writer keeps a connection of the pool from group to group when the
//! pool has at least [`HOLD_FROM_POOL_SIZE`] connections (the others serve
//! everything else), and gives it back after [`HOLD_IDLE`] without work, when
//! the store closes and after a failed group.

use tokio::sync::{mpsc, oneshot};

use crate::store::{StationWrite, Store, StoreError, WriteConnection};

/// The smallest pool the writer keeps a connection of: with fewer, every
/// other user of the store (the API, connects, SQLite's checkpoints) would
/// have one connection or none.
pub const HOLD_FROM_POOL_SIZE: u32 = 3;

/// A kept connection goes back to the pool after this long without work, so
/// a connection the server or the network has dropped is found by the pool's
/// own test rather than by the next group.
pub const HOLD_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

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
    let mut writes: Vec<StationWrite> = Vec::with_capacity(max_group);
    let mut waiting: Vec<oneshot::Sender<Result<(), StoreError>>> = Vec::with_capacity(max_group);
    // Kept from one group to the next (no pool checkout per group); given
    // back when the store closes, which waits for it, after an error (the
    // pool then tests it and drops it if it is broken) and when idle.
    let hold = store.max_connections() >= HOLD_FROM_POOL_SIZE;
    let mut conn: Option<WriteConnection> = None;
    let mut closing = std::pin::pin!(store.close_event());
    loop {
        let (w, done) = tokio::select! {
            // A closed store first: its connection is not used again.
            biased;
            () = &mut closing, if conn.is_some() => {
                conn = None;
                continue;
            }
            () = tokio::time::sleep(HOLD_IDLE), if conn.is_some() => {
                conn = None;
                continue;
            }
            next = rx.recv() => match next {
                Some(next) => next,
                None => break,
            },
        };
        writes.push(w);
        waiting.push(done);
        while writes.len() < max_group {
            match rx.try_recv() {
                Ok((w, done)) => {
                    writes.push(w);
                    waiting.push(done);
                }
                Err(_) => break,
            }
        }
        let result = match conn.take() {
            Some(c) => Ok(c),
            None => store.write_connection().await,
        };
        let result = match result {
            Ok(mut c) => {
                let r = c.apply_writes(&writes).await;
                if r.is_ok() && hold {
                    conn = Some(c);
                }
                r
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                for done in waiting.drain(..) {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                // One bad report must not sink the others: retry each on its own.
                tracing::warn!(error = %e, size = writes.len(), "group commit failed; writing reports one by one");
                for (w, done) in writes.iter().zip(waiting.drain(..)) {
                    let _ = done.send(store.apply_writes(std::slice::from_ref(w)).await);
                }
            }
        }
        writes.clear();
    }
}
