//! The datastore: Flotilla's etcd.
//!
//! Holds every cluster object as a key/value pair with etcd v3 semantics: one global
//! revision per committed write transaction, range reads (also at a past revision),
//! compare-and-swap transactions, watches from any retained revision, and compaction.
//!
//! Only the API server talks to the store. The [`Backend`] trait is shaped after the
//! etcd v3 KV/Watch API so that a real etcd cluster can serve as a drop-in backend.
//! This crate must never depend on the API server or on any Kubernetes types.
//!
//! Backends:
//! - [`EmbeddedStore`]: the default, durable store on a redb file, with group commit
//!   (concurrent writers share one fsync);
//! - [`MemoryStore`]: the same engine on redb's in-memory backend, for unit tests.
//!
//! Conventions beyond the types below (all as in etcd): an empty store is at revision
//! 1, so the first write is revision 2; a deletion event's `kv` has `create_revision`
//! and `version` 0; a transaction may not write one key twice; a read at a past revision
//! reports that revision in [`RangeResponse::revision`].
//!
//! Layout (like etcd's mvcc): `keys` (key ranges, validation) → `index` (latest state
//! in memory, transaction evaluation) → `disk` (history in redb) → `engine` (writer
//! thread with group commit, reads) → `watch` (history replay + live events).

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub mod bench;
mod disk;
pub mod embedded;
mod engine;
mod index;
mod keys;
pub mod memory;
mod watch;

#[cfg(test)]
mod tests;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use engine::StoreStats;
pub use memory::MemoryStore;

/// A store revision. Revisions start at 1 and grow by one per committed write transaction.
pub type Revision = i64;

/// One key with its value and etcd-style metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    /// Revision of the transaction that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the transaction that last modified this key.
    pub mod_revision: Revision,
    /// Number of modifications since creation (1 right after creation).
    pub version: i64,
}

/// A range read. `range_end` follows etcd: `None` reads the single key, `Some(end)`
/// reads `[key, end)`; use [`prefix_end`] for "every key with this prefix".
#[derive(Clone, Debug, Default)]
pub struct RangeRequest {
    pub key: Bytes,
    pub range_end: Option<Bytes>,
    /// Read at this revision; 0 means the latest.
    pub revision: Revision,
    /// At most this many keys; 0 means no limit.
    pub limit: i64,
    pub keys_only: bool,
    pub count_only: bool,
}

#[derive(Clone, Debug, Default)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut the result short.
    pub more: bool,
    /// Number of keys in the range (ignoring `limit`).
    pub count: i64,
    /// The store revision the read was served at (the header revision).
    pub revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// What a compare looks at on its key. A missing key has revisions and version 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    ModRevision(Revision),
    CreateRevision(Revision),
    Version(i64),
    Value(Bytes),
}

#[derive(Clone, Debug)]
pub struct Compare {
    pub key: Bytes,
    pub op: CompareOp,
    pub target: CompareTarget,
}

#[derive(Clone, Debug)]
pub enum Op {
    Put {
        key: Bytes,
        value: Bytes,
        prev_kv: bool,
    },
    /// Delete `key` (or `[key, range_end)` when `range_end` is set).
    Delete {
        key: Bytes,
        range_end: Option<Bytes>,
        prev_kv: bool,
    },
    Range(RangeRequest),
}

#[derive(Clone, Debug)]
pub enum OpResponse {
    Put {
        prev_kv: Option<KeyValue>,
    },
    Delete {
        deleted: i64,
        prev_kvs: Vec<KeyValue>,
    },
    Range(RangeResponse),
}

/// An etcd-style transaction: if every compare holds, run `success`, else `failure`.
/// A transaction that writes anything commits as exactly one new revision.
#[derive(Clone, Debug, Default)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

#[derive(Clone, Debug)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The revision after the transaction (the new one if it wrote, else the current one).
    pub revision: Revision,
    pub responses: Vec<OpResponse>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change. For a delete, `kv` has the key, an empty value and
/// `mod_revision` = the revision of the deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Debug, Default)]
pub struct WatchRequest {
    pub key: Bytes,
    pub range_end: Option<Bytes>,
    /// Deliver every event with revision >= this; 0 means "from now on" (current + 1).
    pub start_revision: Revision,
    pub prev_kv: bool,
}

/// A stream of events in revision order, without gaps or duplicates. It ends with
/// `Err(StoreError::Compacted{..})` if the start revision was compacted, and
/// with an error if the watcher fell too far behind to be served in order.
pub type WatchStream = BoxStream<'static, Result<Event, StoreError>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("storage i/o error: {0}")]
    Io(String),
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    #[error("store is closed")]
    Closed,
    #[error("invalid request: {0}")]
    InvalidArgument(String),
}

/// The datastore contract (etcd v3 KV + Watch + Maintenance subset).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError>;
    /// Commit a transaction. Returns only after a writing transaction is durable.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError>;
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, StoreError>;
    /// Forget history older than `revision`; reads and watches before it fail with `Compacted`.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
    /// The latest committed revision.
    fn current_revision(&self) -> Revision;
    /// The revision history has been compacted up to (0 if never).
    fn compacted_revision(&self) -> Revision;
}

/// The `range_end` that selects every key starting with `prefix` (etcd's convention).
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    // Every byte was 0xff: etcd uses "\0" to mean "to the end of the keyspace".
    Bytes::from_static(b"\0")
}
