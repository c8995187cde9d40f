//! The MVCC engine behind every backend.
//!
//! Layered like etcd's mvcc package:
//! - revisions: one global counter, advanced once per committed writing transaction;
//! - key index ([`crate::index`]): the latest state, in memory;
//! - backend ([`crate::disk`]): the durable history in redb;
//! - transactions: evaluated by a single writer thread with group commit;
//! - watchable store ([`crate::watch`]): committed batches are broadcast to watchers,
//!   which fall back to the history on disk whenever they cannot be served live;
//! - compaction: a request to the writer, applied in the same redb transaction as
//!   the writes queued before it.
//!
//! **Write path.** `txn` validates the request and queues it. The writer thread takes
//! everything queued (up to `max_batch`), evaluates the transactions in order against
//! an [`Overlay`] of the index (each writing one gets the next revision, read-only ones
//! and failed compares without writes get none), writes all their events in ONE redb
//! write transaction and commits it durably (one fsync for the whole batch). Only then
//! does it install the changes into the index, publish the new revision, broadcast the
//! events and answer every caller. A transaction whose future is dropped after it was
//! queued still commits, as with etcd.
//!
//! **Read path.** Reads at the latest revision and transactions that only read at the
//! latest revision are served from the index under a shared lock, never touching the
//! disk and never waiting for the writer. Reads at past revisions go to redb snapshots.
//!
//! **Failure.** If a commit fails, the batch is answered with an I/O error and the
//! store refuses every later write: after a failed fsync the state of the file is
//! unknown, and continuing could acknowledge writes that are later lost.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::disk::Disk;
use crate::index::{Index, Overlay, install};
use crate::keys::{KeyRange, txn_may_write, txn_reads_past, validate_range, validate_txn};
use crate::watch::Watcher;
use crate::{
    Event, RangeRequest, RangeResponse, Revision, StoreError, Txn, TxnResponse, WatchRequest,
    WatchStream,
};

/// Tuning shared by every engine-backed store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EngineOptions {
    /// Most requests the writer commits together.
    pub max_batch: usize,
    /// Requests that may wait for the writer before `txn` callers are held back.
    pub queue_depth: usize,
    /// Committed batches buffered per live watcher before it must catch up from disk.
    pub watch_buffer: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_batch: 1024,
            queue_depth: 4096,
            watch_buffer: 1024,
        }
    }
}

/// Counters describing a running store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The latest committed revision.
    pub revision: Revision,
    /// The revision history has been compacted up to.
    pub compacted_revision: Revision,
    /// Live keys.
    pub keys: usize,
    /// Durable commits (fsyncs) since open.
    pub commits: u64,
    /// Writing transactions committed since open; `write_txns / commits` is the mean group size.
    pub write_txns: u64,
    /// Reads of watch history from disk (catch-ups of new or lagging watchers).
    pub watch_replays: u64,
}

/// The state the writer and all readers share.
pub(crate) struct Shared {
    /// The latest-state index together with the revisions it reflects, so a reader never
    /// sees an index from one revision paired with another revision. Readers hold it
    /// shared for in-memory reads and compares; the writer holds it shared while it
    /// evaluates a batch and exclusively only to install a batch that is already
    /// durable. It is never held across an `.await` or while writing to disk.
    state: RwLock<State>,
    /// The durable history. redb does its own locking: one write transaction at a time
    /// (only the writer thread opens them), snapshot reads from any thread.
    pub(crate) disk: Disk,
    /// Mirror of `state.revision`, updated after a batch is installed and before it is
    /// broadcast; watchers rely on that order (see [`Engine::watch`]).
    revision: AtomicI64,
    /// Mirror of `state.compacted`.
    compacted: AtomicI64,
    commits: AtomicU64,
    write_txns: AtomicU64,
    pub(crate) watch_replays: AtomicU64,
}

struct State {
    index: Index,
    revision: Revision,
    compacted: Revision,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // The lock is only poisoned if a holder panicked; the index is still consistent
        // because it is only mutated by `install`, which cannot panic half-way.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn current_revision(&self) -> Revision {
        self.revision.load(Ordering::SeqCst)
    }
}

/// One committed batch, as broadcast to watchers.
pub(crate) struct Published {
    /// The batch holds every event of revisions `first..=last`.
    pub first: Revision,
    pub last: Revision,
    pub events: Vec<Event>,
}

enum Request {
    Txn {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnResponse, StoreError>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl Request {
    fn fail(self, error: StoreError) {
        // A caller that went away no longer needs the answer.
        match self {
            Request::Txn { reply, .. } => drop(reply.send(Err(error))),
            Request::Compact { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// The engine: shared state plus the writer thread.
pub(crate) struct Engine {
    shared: Arc<Shared>,
    /// `None` once the engine is shutting down.
    requests: Option<mpsc::Sender<Request>>,
    published: Option<broadcast::Sender<Arc<Published>>>,
    writer: Option<JoinHandle<()>>,
}

impl Engine {
    /// Loads the state from `disk` and starts the writer thread.
    pub(crate) fn start(disk: Disk, opts: EngineOptions) -> Result<Engine, StoreError> {
        let loaded = disk.load()?;
        tracing::debug!(
            revision = loaded.revision,
            compacted = loaded.compacted,
            keys = loaded.index.len(),
            "store loaded"
        );
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(loaded.revision),
            compacted: AtomicI64::new(loaded.compacted),
            state: RwLock::new(State {
                index: loaded.index,
                revision: loaded.revision,
                compacted: loaded.compacted,
            }),
            disk,
            commits: AtomicU64::new(0),
            write_txns: AtomicU64::new(0),
            watch_replays: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
        let (published, _) = broadcast::channel(opts.watch_buffer.max(1));
        let writer = {
            let shared = shared.clone();
            let published = published.clone();
            let max_batch = opts.max_batch.max(1);
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer_loop(&shared, rx, &published, max_batch))
                .map_err(|e| StoreError::Io(format!("cannot start the store writer: {e}")))?
        };
        Ok(Engine {
            shared,
            requests: Some(tx),
            published: Some(published),
            writer: Some(writer),
        })
    }

    pub(crate) async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let range = validate_range(&req)?;
        {
            let state = self.shared.read();
            if req.revision == 0 || req.revision == state.revision {
                return Ok(Overlay::new(&state.index).range(&range, &req, state.revision));
            }
            if req.revision > state.revision {
                return Err(StoreError::FutureRevision {
                    requested: req.revision,
                    current: state.revision,
                });
            }
            if req.revision < state.compacted {
                return Err(StoreError::Compacted {
                    requested: req.revision,
                    compacted: state.compacted,
                });
            }
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.disk.range_at(&range, &req))
            .await
            .map_err(|e| StoreError::Io(format!("past-revision read failed: {e}")))?
    }

    pub(crate) async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        validate_txn(&txn)?;
        if !txn_may_write(&txn) && !txn_reads_past(&txn) {
            let state = self.shared.read();
            let mut overlay = Overlay::new(&state.index);
            let applied = overlay.apply_txn(&txn, state.revision + 1, &mut |_, _| {
                Err(StoreError::InvalidArgument(
                    "past-revision read on the fast path".into(),
                ))
            })?;
            return Ok(TxnResponse {
                succeeded: applied.succeeded,
                revision: state.revision,
                responses: applied.responses,
            });
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::Txn { txn, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Compact { revision, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn send(&self, request: Request) -> Result<(), StoreError> {
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        requests.send(request).await.map_err(|_| StoreError::Closed)
    }

    /// Starts a watch. Subscribing to the broadcast *before* reading the published
    /// revision closes the race between history and live events: a batch published
    /// before the subscription is at or below that revision and is replayed from disk,
    /// a later one arrives live, and one that could be both is dropped as a duplicate
    /// by revision.
    pub(crate) fn watch(&self, req: WatchRequest) -> Result<WatchStream, StoreError> {
        let range = KeyRange::new(&req.key, req.range_end.as_ref())?;
        if req.start_revision < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "negative start revision {}",
                req.start_revision
            )));
        }
        let live = self
            .published
            .as_ref()
            .ok_or(StoreError::Closed)?
            .subscribe();
        let current = self.shared.current_revision();
        let compacted = self.compacted_revision();
        if req.start_revision != 0 && req.start_revision < compacted {
            return Err(StoreError::Compacted {
                requested: req.start_revision,
                compacted,
            });
        }
        let next = if req.start_revision == 0 {
            current + 1
        } else {
            req.start_revision
        };
        Ok(
            Watcher::new(self.shared.clone(), live, range, req.prev_kv, next, current)
                .into_stream(),
        )
    }

    pub(crate) fn current_revision(&self) -> Revision {
        self.shared.current_revision()
    }

    pub(crate) fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::SeqCst)
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let state = self.shared.read();
        StoreStats {
            revision: state.revision,
            compacted_revision: state.compacted,
            keys: state.index.len(),
            commits: self.shared.commits.load(Ordering::Relaxed),
            write_txns: self.shared.write_txns.load(Ordering::Relaxed),
            watch_replays: self.shared.watch_replays.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Engine {
    /// Stops accepting requests, lets the writer finish what is queued, and then closes
    /// every watch stream (with [`StoreError::Closed`]).
    fn drop(&mut self) {
        self.requests.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
        self.published.take();
    }
}

/// The writer thread: takes whatever is queued, commits it as one batch, repeats until
/// the request channel closes.
fn writer_loop(
    shared: &Shared,
    mut requests: mpsc::Receiver<Request>,
    published: &broadcast::Sender<Arc<Published>>,
    max_batch: usize,
) {
    let mut failure: Option<String> = None;
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = requests.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if let Some(reason) = &failure {
            for request in batch.drain(..) {
                request.fail(StoreError::Io(format!(
                    "store stopped after a failed commit: {reason}"
                )));
            }
            continue;
        }
        if let Err(e) = commit_batch(shared, published, &mut batch) {
            tracing::error!(error = %e, "store commit failed; refusing further writes");
            failure = Some(e.to_string());
        }
    }
}

enum Outcome {
    Txn(
        oneshot::Sender<Result<TxnResponse, StoreError>>,
        Result<TxnResponse, StoreError>,
    ),
    Compact(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
}

impl Outcome {
    fn deliver(self) {
        // A caller that went away no longer needs the answer.
        match self {
            Outcome::Txn(reply, result) => drop(reply.send(result)),
            Outcome::Compact(reply, result) => drop(reply.send(result)),
        }
    }

    fn fail(self, error: StoreError) {
        match self {
            Outcome::Txn(reply, _) => drop(reply.send(Err(error))),
            Outcome::Compact(reply, _) => drop(reply.send(Err(error))),
        }
    }
}

/// Evaluates, persists, installs and publishes one batch, then answers its callers.
/// Returns an error only if the commit failed (the callers have been told).
fn commit_batch(
    shared: &Shared,
    published: &broadcast::Sender<Arc<Published>>,
    batch: &mut Vec<Request>,
) -> Result<(), StoreError> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    let mut write_txns = 0u64;
    let (changes, base, revision, compacted, compact_to) = {
        let state = shared.read();
        let base = state.revision;
        let mut revision = base;
        let mut compacted = state.compacted;
        let mut compact_to = None;
        let mut overlay = Overlay::new(&state.index);
        let mut past = |req: &RangeRequest, range: &KeyRange| shared.disk.range_at(range, req);
        for request in batch.drain(..) {
            match request {
                Request::Txn { txn, reply } => {
                    let rev = revision + 1;
                    let result = overlay.apply_txn(&txn, rev, &mut past).map(|applied| {
                        if !applied.events.is_empty() {
                            revision = rev;
                            write_txns += 1;
                            events.extend(applied.events);
                        }
                        TxnResponse {
                            succeeded: applied.succeeded,
                            revision,
                            responses: applied.responses,
                        }
                    });
                    outcomes.push(Outcome::Txn(reply, result));
                }
                Request::Compact {
                    revision: to,
                    reply,
                } => {
                    let result = if to > revision {
                        Err(StoreError::FutureRevision {
                            requested: to,
                            current: revision,
                        })
                    } else if to <= compacted {
                        Err(StoreError::Compacted {
                            requested: to,
                            compacted,
                        })
                    } else {
                        compacted = to;
                        compact_to = Some(to);
                        Ok(())
                    };
                    outcomes.push(Outcome::Compact(reply, result));
                }
            }
        }
        (
            overlay.into_changes(),
            base,
            revision,
            compacted,
            compact_to,
        )
    };

    if events.is_empty() && compact_to.is_none() {
        outcomes.into_iter().for_each(Outcome::deliver);
        return Ok(());
    }
    if let Err(e) = shared.disk.commit(&events, compact_to, revision, compacted) {
        let reason = e.to_string();
        for outcome in outcomes {
            outcome.fail(StoreError::Io(format!("commit failed: {reason}")));
        }
        return Err(e);
    }
    shared.commits.fetch_add(1, Ordering::Relaxed);
    shared.write_txns.fetch_add(write_txns, Ordering::Relaxed);
    {
        let mut state = shared.write();
        install(&mut state.index, changes);
        state.revision = revision;
        state.compacted = compacted;
        shared.revision.store(revision, Ordering::SeqCst);
        shared.compacted.store(compacted, Ordering::SeqCst);
    }
    if !events.is_empty() {
        // No receivers is fine: nobody is watching.
        let _ = published.send(Arc::new(Published {
            first: base + 1,
            last: revision,
            events,
        }));
    }
    outcomes.into_iter().for_each(Outcome::deliver);
    Ok(())
}

/// Implements [`crate::Backend`] for a type with an `engine: Engine` field.
macro_rules! delegate_backend {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Backend for $store {
            async fn range(
                &self,
                req: $crate::RangeRequest,
            ) -> Result<$crate::RangeResponse, $crate::StoreError> {
                self.engine.range(req).await
            }

            async fn txn(
                &self,
                txn: $crate::Txn,
            ) -> Result<$crate::TxnResponse, $crate::StoreError> {
                self.engine.txn(txn).await
            }

            async fn watch(
                &self,
                req: $crate::WatchRequest,
            ) -> Result<$crate::WatchStream, $crate::StoreError> {
                self.engine.watch(req)
            }

            async fn compact(&self, revision: $crate::Revision) -> Result<(), $crate::StoreError> {
                self.engine.compact(revision).await
            }

            fn current_revision(&self) -> $crate::Revision {
                self.engine.current_revision()
            }

            fn compacted_revision(&self) -> $crate::Revision {
                self.engine.compacted_revision()
            }
        }
    };
}
pub(crate) use delegate_backend;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    use crate::Op;

    /// Queues 64 writes before the writer starts: they must all share one commit,
    /// get distinct consecutive revisions, and be visible afterwards.
    #[tokio::test]
    async fn queued_writes_share_one_commit() {
        let disk = Disk::in_memory().expect("in-memory disk");
        let loaded = disk.load().expect("load");
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(loaded.revision),
            compacted: AtomicI64::new(0),
            state: RwLock::new(State {
                index: loaded.index,
                revision: loaded.revision,
                compacted: 0,
            }),
            disk,
            commits: AtomicU64::new(0),
            write_txns: AtomicU64::new(0),
            watch_replays: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(128);
        let (published, mut live) = broadcast::channel(16);
        let mut answers = Vec::new();
        for i in 0..64 {
            let (reply, answer) = oneshot::channel();
            let txn = Txn {
                success: vec![Op::Put {
                    key: Bytes::from(format!("k{i:02}")),
                    value: Bytes::from_static(b"v"),
                    prev_kv: false,
                }],
                ..Default::default()
            };
            tx.send(Request::Txn { txn, reply }).await.expect("queue");
            answers.push(answer);
        }
        // A read-only transaction in the same batch gets no revision of its own.
        let (reply, read_only) = oneshot::channel();
        tx.send(Request::Txn {
            txn: Txn::default(),
            reply,
        })
        .await
        .expect("queue");
        drop(tx);
        let writer = {
            let shared = shared.clone();
            std::thread::spawn(move || writer_loop(&shared, rx, &published, 1024))
        };
        let mut revisions = Vec::new();
        for answer in answers {
            revisions.push(answer.await.expect("answered").expect("committed").revision);
        }
        assert_eq!(revisions, (2..66).collect::<Vec<_>>());
        let read_only = read_only.await.expect("answered").expect("ok");
        assert_eq!(read_only.revision, 65);
        writer.join().expect("writer exits when the queue closes");
        assert_eq!(
            shared.commits.load(Ordering::Relaxed),
            1,
            "one fsync for the whole batch"
        );
        assert_eq!(shared.write_txns.load(Ordering::Relaxed), 64);
        let batch = live.recv().await.expect("one published batch");
        assert_eq!((batch.first, batch.last, batch.events.len()), (2, 65, 64));
        assert_eq!(shared.read().index.len(), 64);
    }
}
