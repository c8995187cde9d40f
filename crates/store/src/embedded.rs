//! The embedded, durable backend: the engine on a redb file in a data directory.
//!
//! Every acknowledged write has been committed with an fsync, so it survives a crash
//! of the process or the machine. Concurrent writers share fsyncs (group commit, see
//! the crate's `engine` module). The data directory holds one file, `store.redb`; redb locks it,
//! so only one store may have a directory open at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::StoreError;
use crate::disk::Disk;
use crate::engine::{Engine, EngineOptions, StoreStats, delegate_backend};

/// The database file inside the data directory.
pub const DB_FILE: &str = "store.redb";

/// Tuning for [`EmbeddedStore`]. The defaults suit a control plane.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// redb's page cache in bytes. The latest state is always in memory, so this only
    /// speeds up past-revision reads and watch replay.
    pub cache_size: usize,
    /// Most transactions committed by one fsync.
    pub max_batch: usize,
    /// Transactions that may wait for the writer before callers are held back.
    pub queue_depth: usize,
    /// Committed batches buffered per live watcher before a slow one has to catch up
    /// from disk.
    pub watch_buffer: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        let engine = EngineOptions::default();
        EmbeddedOptions {
            cache_size: 64 << 20,
            max_batch: engine.max_batch,
            queue_depth: engine.queue_depth,
            watch_buffer: engine.watch_buffer,
        }
    }
}

/// The durable store. Dropping the last handle finishes queued writes and closes the
/// file once no watch stream is left (watch streams keep the history open).
pub struct EmbeddedStore {
    engine: Engine,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, creating the directory if needed, and
    /// rebuilds the in-memory index from disk. Runs the disk work on a blocking thread.
    pub async fn open(dir: &Path, opts: EmbeddedOptions) -> Result<Arc<EmbeddedStore>, StoreError> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || EmbeddedStore::open_blocking(&dir, opts))
            .await
            .map_err(|e| StoreError::Io(format!("opening the store failed: {e}")))?
    }

    /// [`EmbeddedStore::open`] for callers outside an async runtime.
    pub fn open_blocking(
        dir: &Path,
        opts: EmbeddedOptions,
    ) -> Result<Arc<EmbeddedStore>, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Io(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(DB_FILE);
        let started = std::time::Instant::now();
        let disk = Disk::open_file(&path, opts.cache_size)?;
        let engine = Engine::start(
            disk,
            EngineOptions {
                max_batch: opts.max_batch,
                queue_depth: opts.queue_depth,
                watch_buffer: opts.watch_buffer,
            },
        )?;
        tracing::info!(
            path = %path.display(),
            revision = engine.current_revision(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded store opened"
        );
        Ok(Arc::new(EmbeddedStore { engine, path }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters: revisions, live keys, commits and group sizes.
    pub fn stats(&self) -> StoreStats {
        self.engine.stats()
    }
}

delegate_backend!(EmbeddedStore);

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::io::Write;
    use std::process::Stdio;
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::io::AsyncBufReadExt;

    use super::*;
    use crate::tests::{assert_contiguous, b, collect_until, delete, get, put, put_op};
    use crate::{Backend, RangeRequest, Revision, Txn, WatchRequest, prefix_end};

    fn all() -> RangeRequest {
        RangeRequest {
            key: b("/"),
            range_end: Some(prefix_end(b"/")),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn restart_keeps_data_revisions_and_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (revision, before_compaction, old_b) = {
            let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
                .await
                .expect("open");
            put(&*s, "/a", "1").await;
            let old_b = put(&*s, "/b", "1").await;
            put(&*s, "/b", "2").await;
            put(&*s, "/c", "1").await;
            let compact_at = delete(&*s, "/c", None).await.revision;
            s.compact(compact_at).await.expect("compact");
            put(&*s, "/a", "2").await;
            (s.current_revision(), compact_at, old_b)
        };
        let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
            .await
            .expect("reopen");
        assert_eq!(s.current_revision(), revision);
        assert_eq!(s.compacted_revision(), before_compaction);
        let now = s.range(all()).await.expect("range");
        let state: Vec<(Bytes, Bytes, Revision, i64)> = now
            .kvs
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.clone(),
                    kv.create_revision,
                    kv.version,
                )
            })
            .collect();
        assert_eq!(
            state,
            [(b("/a"), b("2"), 2, 2), (b("/b"), b("2"), old_b, 2)]
        );
        assert!(matches!(
            get(&*s, "/b", old_b).await,
            Err(StoreError::Compacted { .. })
        ));
        let at = s
            .range(RangeRequest {
                revision: before_compaction,
                ..all()
            })
            .await
            .expect("past read");
        assert_eq!(
            at.kvs.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>(),
            [b("1"), b("2")]
        );
        // Revisions continue where they stopped.
        assert_eq!(put(&*s, "/d", "1").await, revision + 1);
        // History after the compaction is still watchable.
        let mut w = s
            .watch(WatchRequest {
                start_revision: before_compaction,
                ..WatchRequest {
                    key: b("/"),
                    range_end: Some(prefix_end(b"/")),
                    ..Default::default()
                }
            })
            .await
            .expect("watch");
        let events = collect_until(&mut w, revision + 1).await;
        assert_contiguous(&events, before_compaction, revision + 1);
        drop(w);
        drop(s);
        // The directory is released once the store and its watchers are gone.
        EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
            .await
            .expect("third open");
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_directory_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
            .await
            .expect("open");
        assert!(matches!(
            EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).await,
            Err(StoreError::Io(_))
        ));
    }

    /// Set in the re-executed child of [`acknowledged_writes_survive_kill_9`].
    const CRASH_CHILD_DIR: &str = "FLOTILLA_STORE_CRASH_CHILD_DIR";
    const CRASH_TEST: &str = "embedded::tests::acknowledged_writes_survive_kill_9";
    const KILL_AFTER_ACKS: usize = 300;
    const CHILD_WRITERS: usize = 16;

    fn crash_value(key: &str, seq: usize) -> Bytes {
        let mut v = format!("{key}#{seq}#").into_bytes();
        v.resize(1024, b'.');
        Bytes::from(v)
    }

    /// The child: concurrent writers that print every acknowledged put as
    /// `ACK <key> <seq> <revision>` until they are killed.
    async fn crash_child(dir: &Path) {
        let s = EmbeddedStore::open(dir, EmbeddedOptions::default())
            .await
            .expect("child open");
        let mut tasks = Vec::new();
        for w in 0..CHILD_WRITERS {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0.. {
                    // Overwrites, so recovery must also get versions right.
                    let key = format!("/crash/{w}/{}", seq % 8);
                    let txn = Txn {
                        success: vec![crate::Op::Put {
                            key: b(&key),
                            value: crash_value(&key, seq),
                            prev_kv: false,
                        }],
                        ..Default::default()
                    };
                    let rev = s.txn(txn).await.expect("child put").revision;
                    // One write(2) per line, so a kill cannot tear a line.
                    let line = format!("ACK {key} {seq} {rev}\n");
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).expect("stdout");
                    out.flush().expect("stdout");
                }
            }));
        }
        for t in tasks {
            t.await.expect("child writer");
        }
    }

    /// Re-executes this test binary as a child that writes concurrently, SIGKILLs it
    /// mid-stream, reopens the store and checks that every acknowledged write is there,
    /// that the revision did not go back, and that a watch from the beginning sees
    /// every revision exactly once, consistent with the recovered state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_writes_survive_kill_9() {
        if let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) {
            crash_child(Path::new(&dir)).await;
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = std::env::current_exe().expect("test binary");
        let mut child = tokio::process::Command::new(exe)
            .args([CRASH_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CRASH_CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn child");
        let mut lines =
            tokio::io::BufReader::new(child.stdout.take().expect("child stdout")).lines();
        // key → (seq, revision) of its last acknowledged write
        let mut acked: Vec<(String, usize, Revision)> = Vec::new();
        let mut killed = false;
        while let Some(line) = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .expect("child output stalled")
            .expect("read child output")
        {
            let fields: Vec<&str> = line.split(' ').collect();
            if let ["ACK", key, seq, rev] = fields[..] {
                acked.push((
                    key.to_string(),
                    seq.parse().expect("seq"),
                    rev.parse().expect("revision"),
                ));
            }
            if acked.len() >= KILL_AFTER_ACKS && !killed {
                child.start_kill().expect("SIGKILL the child");
                killed = true;
            }
        }
        let status = child.wait().await.expect("child exit");
        assert!(
            killed,
            "the child stopped on its own after {} acks: {status}",
            acked.len()
        );
        assert!(!status.success(), "the child was killed");
        assert!(acked.len() >= KILL_AFTER_ACKS);

        let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
            .await
            .expect("reopen after kill");
        let max_acked = acked.iter().map(|a| a.2).max().expect("acks");
        let current = s.current_revision();
        assert!(
            current >= max_acked,
            "revision went back: {current} < {max_acked}"
        );

        // Every acknowledged write is in the history, exactly once, in revision order.
        let watch = WatchRequest {
            key: b("/crash/"),
            range_end: Some(prefix_end(b"/crash/")),
            start_revision: 2,
            prev_kv: false,
        };
        let mut w = s.watch(watch).await.expect("watch");
        let history = collect_until(&mut w, current).await;
        assert_contiguous(&history, 2, current);
        let by_rev: BTreeMap<Revision, &crate::Event> =
            history.iter().map(|e| (e.kv.mod_revision, e)).collect();
        let mut seen = HashSet::new();
        for (key, seq, rev) in &acked {
            assert!(seen.insert(*rev), "revision {rev} acknowledged twice");
            let e = by_rev
                .get(rev)
                .unwrap_or_else(|| panic!("acknowledged revision {rev} is missing"));
            assert_eq!(e.kv.key, b(key));
            assert_eq!(
                e.kv.value,
                crash_value(key, *seq),
                "value of {key} at {rev}"
            );
        }
        // The recovered latest state is the last event per key, with versions counted right.
        let mut expected: BTreeMap<Bytes, (Bytes, Revision, i64)> = BTreeMap::new();
        for e in &history {
            let version = expected.get(&e.kv.key).map_or(1, |v| v.2 + 1);
            expected.insert(
                e.kv.key.clone(),
                (e.kv.value.clone(), e.kv.mod_revision, version),
            );
        }
        let state = s
            .range(RangeRequest {
                key: b("/crash/"),
                range_end: Some(prefix_end(b"/crash/")),
                ..Default::default()
            })
            .await
            .expect("range");
        let got: BTreeMap<Bytes, (Bytes, Revision, i64)> = state
            .kvs
            .into_iter()
            .map(|kv| (kv.key, (kv.value, kv.mod_revision, kv.version)))
            .collect();
        assert_eq!(got, expected);
        // And the store keeps going from there.
        let next = s
            .txn(Txn {
                success: vec![put_op("/after", "1")],
                ..Default::default()
            })
            .await
            .expect("put");
        assert_eq!(next.revision, current + 1);
    }
}
