//! The persistent history, kept in redb.
//!
//! Three tables:
//! - `kv`: `(key, mod_revision)` → `(create_revision, version, value)`, every retained
//!   version of every key; a deletion is stored as a tombstone with `create_revision`
//!   0. Ordered by key then revision, so "the version of `key` at revision R" is one
//!   reverse seek, and the latest-state index is rebuilt by one scan on open.
//! - `log`: `(revision, position)` → key, the change log in commit order that watchers
//!   replay; the event itself is read from `kv`.
//! - `meta`: format version, current revision and compacted revision.
//!
//! Only the writer thread opens write transactions (redb allows one at a time
//! anyway); readers use redb's snapshot read transactions, which never block it.
//! The same code runs on a file (the embedded store) or on redb's in-memory backend
//! (the test fake), so both exercise one implementation.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::Path;

use bytes::Bytes;
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};

use crate::index::{Index, RangeCollector};
use crate::keys::KeyRange;
use crate::{Event, EventType, KeyValue, RangeRequest, RangeResponse, Revision, StoreError};

/// `kv` key: `(key, mod_revision)`.
type KvKey = (&'static [u8], i64);
/// `kv` value: `(create_revision, version, value)`; `create_revision` 0 is a tombstone.
type KvValue = (i64, i64, &'static [u8]);
const KV: TableDefinition<KvKey, KvValue> = TableDefinition::new("kv");
/// `(revision, position within the revision)` → key.
const LOG: TableDefinition<(i64, u32), &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

const META_FORMAT: &str = "format";
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const FORMAT: i64 = 1;
/// The revision of an empty store (etcd's convention: the first write is revision 2).
pub(crate) const INITIAL_REVISION: Revision = 1;

/// Converts any redb error, keeping corruption distinguishable from plain I/O failure.
fn db_err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(msg) => StoreError::Corrupt(msg),
        other => StoreError::Io(other.to_string()),
    }
}

/// Builds a [`KeyValue`] whose key and value share a single allocation (the index
/// holds every live object, so halving the allocations matters).
fn make_kv(
    key: &[u8],
    value: &[u8],
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
) -> KeyValue {
    let mut buf = Vec::with_capacity(key.len() + value.len());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    let buf = Bytes::from(buf);
    KeyValue {
        key: buf.slice(..key.len()),
        value: buf.slice(key.len()..),
        create_revision,
        mod_revision,
        version,
    }
}

/// What [`Disk::load`] recovers on open.
pub(crate) struct Loaded {
    pub revision: Revision,
    pub compacted: Revision,
    pub index: Index,
}

/// Events read back for a watcher.
pub(crate) struct Replayed {
    pub events: Vec<Event>,
    /// Every revision up to and including this one has been scanned.
    pub scanned_to: Revision,
}

/// The redb database holding the history.
pub(crate) struct Disk {
    db: Database,
}

impl Disk {
    /// Opens (or creates) the database file at `path`.
    pub(crate) fn open_file(path: &Path, cache_size: usize) -> Result<Disk, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_size)
            .create(path)
            .map_err(db_err)?;
        Disk::init(db)
    }

    /// A database that lives in memory only.
    pub(crate) fn in_memory() -> Result<Disk, StoreError> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(db_err)?;
        Disk::init(db)
    }

    fn init(db: Database) -> Result<Disk, StoreError> {
        let w = db.begin_write().map_err(db_err)?;
        {
            w.open_table(KV).map_err(db_err)?;
            w.open_table(LOG).map_err(db_err)?;
            let mut meta = w.open_table(META).map_err(db_err)?;
            let format = meta.get(META_FORMAT).map_err(db_err)?.map(|g| g.value());
            match format {
                None => {
                    meta.insert(META_FORMAT, FORMAT).map_err(db_err)?;
                    meta.insert(META_REVISION, INITIAL_REVISION)
                        .map_err(db_err)?;
                    meta.insert(META_COMPACTED, 0).map_err(db_err)?;
                }
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt(format!(
                        "unsupported store format {other}"
                    )));
                }
            }
        }
        w.commit().map_err(db_err)?;
        Ok(Disk { db })
    }

    /// Reads the current and compacted revisions and rebuilds the latest-state index.
    pub(crate) fn load(&self) -> Result<Loaded, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let meta = r.open_table(META).map_err(db_err)?;
        let revision = meta_value(&meta, META_REVISION)?;
        let compacted = meta_value(&meta, META_COMPACTED)?;
        let kv = r.open_table(KV).map_err(db_err)?;
        // Newest version first per key: the first entry seen for a key is its latest.
        let mut latest = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        for entry in kv.iter().map_err(db_err)?.rev() {
            let (k, v) = entry.map_err(db_err)?;
            let (key, rev) = k.value();
            if last_key.as_deref() == Some(key) {
                continue;
            }
            last_key = Some(key.to_vec());
            let (create, version, value) = v.value();
            if create != 0 {
                latest.push(make_kv(key, value, create, rev, version));
            }
        }
        latest.reverse();
        let index = latest.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        Ok(Loaded {
            revision,
            compacted,
            index,
        })
    }

    /// Durably commits one batch: its events (ordered by revision), an optional
    /// compaction, and the new current and compacted revisions. Returns only once
    /// redb's commit (with fsync) has completed.
    pub(crate) fn commit(
        &self,
        events: &[Event],
        compact_to: Option<Revision>,
        revision: Revision,
        compacted: Revision,
    ) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut kv = w.open_table(KV).map_err(db_err)?;
            let mut log = w.open_table(LOG).map_err(db_err)?;
            let mut rev = 0;
            let mut pos = 0u32;
            for e in events {
                if e.kv.mod_revision != rev {
                    rev = e.kv.mod_revision;
                    pos = 0;
                }
                log.insert((rev, pos), e.kv.key.as_ref()).map_err(db_err)?;
                pos += 1;
                kv.insert(
                    (e.kv.key.as_ref(), rev),
                    (e.kv.create_revision, e.kv.version, e.kv.value.as_ref()),
                )
                .map_err(db_err)?;
            }
            if let Some(to) = compact_to {
                compact_tables(&mut kv, &mut log, to)?;
            }
            let mut meta = w.open_table(META).map_err(db_err)?;
            meta.insert(META_REVISION, revision).map_err(db_err)?;
            meta.insert(META_COMPACTED, compacted).map_err(db_err)?;
        }
        w.commit().map_err(db_err)
    }

    /// Serves a range at a past revision from the retained history. The response's
    /// revision is the one it was served at, `req.revision`.
    pub(crate) fn range_at(
        &self,
        range: &KeyRange,
        req: &RangeRequest,
    ) -> Result<RangeResponse, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let meta = r.open_table(META).map_err(db_err)?;
        let current = meta_value(&meta, META_REVISION)?;
        let compacted = meta_value(&meta, META_COMPACTED)?;
        let at = req.revision;
        if at < compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted,
            });
        }
        if at > current {
            return Err(StoreError::FutureRevision {
                requested: at,
                current,
            });
        }
        let kv = r.open_table(KV).map_err(db_err)?;
        let mut out = RangeCollector::new(req);
        let Some((lo, hi)) = range.bounds() else {
            return Ok(out.finish(at));
        };
        let lo = match lo {
            Bound::Included(k) => Bound::Included((k, i64::MIN)),
            Bound::Excluded(k) => Bound::Excluded((k, i64::MAX)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let hi = match hi {
            Bound::Included(k) => Bound::Included((k, i64::MAX)),
            Bound::Excluded(k) => Bound::Excluded((k, i64::MIN)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let flush = |out: &mut RangeCollector,
                     key: &[u8],
                     rev: Revision,
                     (create, version, value): (i64, i64, &[u8])| {
            if create == 0 {
                return;
            }
            if out.wants_kv() {
                out.push(make_kv(key, value, create, rev, version));
            } else {
                out.skip();
            }
        };
        // Entries come per key in ascending revision; the candidate is the newest
        // version of the current key at or below `at`.
        type Entry<'g> = (redb::AccessGuard<'g, KvKey>, redb::AccessGuard<'g, KvValue>);
        let mut candidate: Option<Entry<'_>> = None;
        for entry in kv.range::<(&[u8], i64)>((lo, hi)).map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let (key, rev) = k.value();
            let other_key = candidate
                .as_ref()
                .is_some_and(|(ck, _)| ck.value().0 != key);
            if other_key && let Some((ck, cv)) = candidate.take() {
                let (ckey, crev) = ck.value();
                flush(&mut out, ckey, crev, cv.value());
            }
            if rev <= at {
                candidate = Some((k, v));
            }
        }
        if let Some((ck, cv)) = &candidate {
            let (ck, crev) = ck.value();
            flush(&mut out, ck, crev, cv.value());
        }
        Ok(out.finish(at))
    }

    /// Reads the events of revisions `from..=to` whose keys lie in `range`, scanning
    /// about `max_entries` log entries at most (always whole revisions).
    pub(crate) fn read_events(
        &self,
        from: Revision,
        to: Revision,
        range: &KeyRange,
        prev_kv: bool,
        max_entries: usize,
    ) -> Result<Replayed, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let meta = r.open_table(META).map_err(db_err)?;
        let compacted = meta_value(&meta, META_COMPACTED)?;
        if from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        // Never claim to have scanned past what this snapshot holds.
        let to = to.min(meta_value(&meta, META_REVISION)?);
        let log = r.open_table(LOG).map_err(db_err)?;
        let kv = r.open_table(KV).map_err(db_err)?;
        let mut events = Vec::new();
        let mut last_rev = from - 1;
        // `scanned`: log entries looked at before this one.
        for (scanned, entry) in log
            .range::<(i64, u32)>((from, 0)..=(to, u32::MAX))
            .map_err(db_err)?
            .enumerate()
        {
            let (k, v) = entry.map_err(db_err)?;
            let (rev, _) = k.value();
            if rev != last_rev {
                if scanned >= max_entries {
                    return Ok(Replayed {
                        events,
                        scanned_to: last_rev,
                    });
                }
                last_rev = rev;
            }
            let key = v.value();
            if !range.contains(key) {
                continue;
            }
            let record = kv.get((key, rev)).map_err(db_err)?.ok_or_else(|| {
                StoreError::Corrupt(format!("log entry at revision {rev} has no version"))
            })?;
            let (create, version, value) = record.value();
            let prev_kv = if prev_kv {
                match kv
                    .range::<(&[u8], i64)>((key, i64::MIN)..(key, rev))
                    .map_err(db_err)?
                    .next_back()
                {
                    Some(prev) => {
                        let (pk, pv) = prev.map_err(db_err)?;
                        let (pkey, prev_rev) = pk.value();
                        let (pcreate, pversion, pvalue) = pv.value();
                        (pcreate != 0).then(|| make_kv(pkey, pvalue, pcreate, prev_rev, pversion))
                    }
                    None => None,
                }
            } else {
                None
            };
            events.push(Event {
                kind: if create == 0 {
                    EventType::Delete
                } else {
                    EventType::Put
                },
                kv: make_kv(key, value, create, rev, version),
                prev_kv,
            });
        }
        Ok(Replayed {
            events,
            scanned_to: to,
        })
    }
}

fn meta_value(
    meta: &impl ReadableTable<&'static str, i64>,
    name: &str,
) -> Result<Revision, StoreError> {
    meta.get(name)
        .map_err(db_err)?
        .map(|g| g.value())
        .ok_or_else(|| StoreError::Corrupt(format!("missing {name} in store metadata")))
}

/// Removes history below `to`: every log entry, and every version of a key except the
/// newest one below `to` (dropped too when it is a tombstone). Versions at `to` and
/// later stay, so reads at `to` and watches from `to` still work. Only keys changed
/// since the previous compaction can have anything to remove, and the log lists exactly
/// those, so the work is proportional to the history being dropped.
fn compact_tables(
    kv: &mut Table<'_, KvKey, KvValue>,
    log: &mut Table<'_, (i64, u32), &'static [u8]>,
    to: Revision,
) -> Result<(), StoreError> {
    let mut touched = BTreeSet::new();
    for entry in log.range::<(i64, u32)>(..(to, 0)).map_err(db_err)? {
        let (_, key) = entry.map_err(db_err)?;
        touched.insert(key.value().to_vec());
    }
    log.retain_in::<(i64, u32), _>(..(to, 0), |_, _| false)
        .map_err(db_err)?;
    for key in &touched {
        let key = key.as_slice();
        let newest = match kv
            .range::<(&[u8], i64)>((key, i64::MIN)..(key, to))
            .map_err(db_err)?
            .next_back()
        {
            Some(entry) => {
                let (k, v) = entry.map_err(db_err)?;
                Some((k.value().1, v.value().0 == 0))
            }
            None => None,
        };
        if let Some((rev, tombstone)) = newest {
            kv.retain_in::<(&[u8], i64), _>((key, i64::MIN)..(key, rev), |_, _| false)
                .map_err(db_err)?;
            if tombstone {
                kv.remove((key, rev)).map_err(db_err)?;
            }
        }
    }
    Ok(())
}
