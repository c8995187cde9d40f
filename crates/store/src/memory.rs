//! The in-memory fake for other crates' unit tests.
//!
//! It is the same engine as [`crate::EmbeddedStore`] (same revisions, transactions,
//! history, compaction and watch code), on redb's in-memory backend instead of a file:
//! nothing touches the disk and nothing survives the process.

use std::sync::Arc;

use crate::StoreError;
use crate::disk::Disk;
use crate::engine::{Engine, EngineOptions, StoreStats, delegate_backend};

/// A store that lives in memory only. Every handle is independent.
pub struct MemoryStore {
    engine: Engine,
}

impl MemoryStore {
    /// An empty store at revision 1.
    pub fn new() -> Result<Arc<MemoryStore>, StoreError> {
        MemoryStore::with_watch_buffer(EngineOptions::default().watch_buffer)
    }

    /// An empty store whose live watchers buffer only `batches` committed batches
    /// before they must catch up from history (to exercise slow watchers).
    pub fn with_watch_buffer(batches: usize) -> Result<Arc<MemoryStore>, StoreError> {
        let engine = Engine::start(
            Disk::in_memory()?,
            EngineOptions {
                watch_buffer: batches,
                ..EngineOptions::default()
            },
        )?;
        Ok(Arc::new(MemoryStore { engine }))
    }

    /// Counters: revisions, live keys, commits and group sizes.
    pub fn stats(&self) -> StoreStats {
        self.engine.stats()
    }
}

delegate_backend!(MemoryStore);
