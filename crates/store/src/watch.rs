//! Watch streams: history from disk, then live events, without gaps or duplicates.
//!
//! A watcher tracks `next`, the first revision it has not yet delivered. Every
//! delivery advances it, and every source is filtered by it, so nothing is sent twice:
//! - while `next <= replay_to` it reads whole revisions from the on-disk log;
//! - otherwise it takes the next broadcast batch. A batch entirely below `next` is a
//!   duplicate and skipped; a batch starting above `next` means something was missed
//!   (the watcher lagged, or subscribed just after a batch went out), so it sets
//!   `replay_to` to the batch's last revision and reads the missing part from disk,
//!   where every published batch already is;
//! - if the broadcast buffer overflowed (`Lagged`), it replays from disk up to the
//!   published revision and continues live.
//!
//! A slow watcher therefore always catches up from disk. If the history it needs has
//! been compacted meanwhile, the stream ends with [`StoreError::Compacted`], never with
//! a silent gap. The stream does nothing unless polled: dropping it costs nothing.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::engine::{Published, Shared};
use crate::keys::KeyRange;
use crate::{Event, Revision, StoreError, WatchStream};

/// Log entries read from disk per step of a replay.
const REPLAY_CHUNK: usize = 1024;

pub(crate) struct Watcher {
    shared: Arc<Shared>,
    live: broadcast::Receiver<Arc<Published>>,
    range: KeyRange,
    prev_kv: bool,
    /// The first revision not yet delivered.
    next: Revision,
    /// Replay from disk while `next <= replay_to`.
    replay_to: Revision,
    pending: VecDeque<Event>,
    done: bool,
}

impl Watcher {
    pub(crate) fn new(
        shared: Arc<Shared>,
        live: broadcast::Receiver<Arc<Published>>,
        range: KeyRange,
        prev_kv: bool,
        next: Revision,
        replay_to: Revision,
    ) -> Self {
        Watcher {
            shared,
            live,
            range,
            prev_kv,
            next,
            replay_to,
            pending: VecDeque::new(),
            done: false,
        }
    }

    pub(crate) fn into_stream(self) -> WatchStream {
        futures::stream::unfold(self, |mut w| async move {
            w.next_event().await.map(|item| (item, w))
        })
        .boxed()
    }

    async fn next_event(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if self.next <= self.replay_to {
                if let Err(e) = self.replay().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(batch) => self.accept(&batch),
                Err(RecvError::Lagged(_)) => self.replay_to = self.shared.current_revision(),
                Err(RecvError::Closed) => {
                    self.done = true;
                    return Some(Err(StoreError::Closed));
                }
            }
        }
    }

    fn accept(&mut self, batch: &Published) {
        if batch.last < self.next {
            return;
        }
        if batch.first > self.next {
            self.replay_to = batch.last;
            return;
        }
        for e in &batch.events {
            if e.kv.mod_revision >= self.next && self.range.contains(&e.kv.key) {
                self.pending.push_back(Event {
                    kind: e.kind,
                    kv: e.kv.clone(),
                    prev_kv: if self.prev_kv {
                        e.prev_kv.clone()
                    } else {
                        None
                    },
                });
            }
        }
        self.next = batch.last + 1;
    }

    async fn replay(&mut self) -> Result<(), StoreError> {
        self.shared
            .watch_replays
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shared = self.shared.clone();
        let range = self.range.clone();
        let (from, to, prev_kv) = (self.next, self.replay_to, self.prev_kv);
        let replayed = tokio::task::spawn_blocking(move || {
            shared
                .disk
                .read_events(from, to, &range, prev_kv, REPLAY_CHUNK)
        })
        .await
        .map_err(|e| StoreError::Io(format!("watch replay failed: {e}")))??;
        if replayed.scanned_to < from {
            return Err(StoreError::Corrupt(format!(
                "history ends before revision {from}, which was already published"
            )));
        }
        self.pending.extend(replayed.events);
        self.next = replayed.scanned_to + 1;
        Ok(())
    }
}
