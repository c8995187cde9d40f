//! Benchmarks for the embedded store, callable from the `flotilla` binary.
//!
//! [`put_throughput`] measures acknowledged (durable) puts per second and their
//! latency; [`fsync_rate`] and [`fdatasync_rate`] measure what the disk allows for
//! bare syncs, the ceiling a single unbatched writer could reach.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Backend, EmbeddedOptions, EmbeddedStore, Op, StoreError, Txn};

/// The result of [`put_throughput`].
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub concurrency: usize,
    pub puts: usize,
    pub value_size: usize,
    pub elapsed: Duration,
    pub puts_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Durable commits (fsyncs) the puts needed.
    pub commits: u64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "concurrency {:>3}: {} puts of {} B in {:.2?} = {:.0} puts/s, p50 {:.2?}, p99 {:.2?}, max {:.2?}, {} commits ({:.1} puts/commit)",
            self.concurrency,
            self.puts,
            self.value_size,
            self.elapsed,
            self.puts_per_sec,
            self.p50,
            self.p99,
            self.max,
            self.commits,
            self.puts as f64 / self.commits.max(1) as f64,
        )
    }
}

/// Opens an embedded store in `dir` and performs `total` puts of `value_size`-byte
/// values from `concurrency` concurrent tasks, each put waiting for its durable
/// acknowledgement. Needs a Tokio runtime (a multi-threaded one gives real figures).
pub async fn put_throughput(
    dir: &Path,
    concurrency: usize,
    total: usize,
    value_size: usize,
) -> Result<BenchReport, StoreError> {
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default()).await?;
    let commits_before = store.stats().commits;
    let value = Bytes::from(vec![b'x'; value_size]);
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let store = store.clone();
        let value = value.clone();
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, StoreError>(latencies);
                }
                let txn = Txn {
                    success: vec![Op::Put {
                        key: Bytes::from(format!("/bench/{i:010}")),
                        value: value.clone(),
                        prev_kv: false,
                    }],
                    ..Default::default()
                };
                let t = Instant::now();
                store.txn(txn).await?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        let part = task
            .await
            .map_err(|e| StoreError::Io(format!("benchmark task failed: {e}")))??;
        latencies.extend(part);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let quantile = |q: f64| -> Duration {
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    Ok(BenchReport {
        concurrency,
        puts: latencies.len(),
        value_size,
        elapsed,
        puts_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: quantile(0.50),
        p99: quantile(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        commits: store.stats().commits - commits_before,
    })
}

/// Appends 64 bytes and calls `fsync` (`File::sync_all`) in a loop for `duration`
/// inside `dir`; returns syncs per second.
pub fn fsync_rate(dir: &Path, duration: Duration) -> std::io::Result<f64> {
    sync_rate(dir, duration, |f| f.sync_all())
}

/// Like [`fsync_rate`] with `fdatasync` (`File::sync_data`).
pub fn fdatasync_rate(dir: &Path, duration: Duration) -> std::io::Result<f64> {
    sync_rate(dir, duration, |f| f.sync_data())
}

fn sync_rate(
    dir: &Path,
    duration: Duration,
    sync: impl Fn(&std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe");
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    let block = [0u8; 64];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < duration {
        file.write_all(&block)?;
        sync(&file)?;
        syncs += 1;
    }
    let rate = syncs as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prints the figures; run with
    /// `cargo test -p store --release -- --ignored --nocapture bench_report`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark: slow, prints figures"]
    async fn bench_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let second = Duration::from_secs(1);
        println!(
            "fsync     {:.0}/s",
            fsync_rate(dir.path(), second).expect("fsync")
        );
        println!(
            "fdatasync {:.0}/s",
            fdatasync_rate(dir.path(), second).expect("fdatasync")
        );
        for (concurrency, total) in [(1, 2_000), (64, 50_000)] {
            for value_size in [1024, 2048] {
                let run = tempfile::tempdir().expect("tempdir");
                let report = put_throughput(run.path(), concurrency, total, value_size)
                    .await
                    .expect("bench");
                println!("{report}");
            }
        }
        // 100k objects of 2 KB: load them, then time a reopen (which rebuilds the
        // in-memory index) and look at the memory it takes.
        let run = tempfile::tempdir().expect("tempdir");
        let report = put_throughput(run.path(), 64, 100_000, 2048)
            .await
            .expect("bench");
        println!("{report}");
        let memory = || {
            std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("before reopen: {}", memory());
        let started = Instant::now();
        let store = EmbeddedStore::open(run.path(), EmbeddedOptions::default())
            .await
            .expect("reopen");
        println!(
            "reopen with {} keys took {:.2?}; {}; file {} MiB",
            store.stats().keys,
            started.elapsed(),
            memory(),
            std::fs::metadata(store.path())
                .map(|m| m.len() >> 20)
                .unwrap_or(0)
        );
    }

    #[tokio::test]
    async fn reports_every_put() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = put_throughput(dir.path(), 4, 40, 100).await.expect("bench");
        assert_eq!(report.puts, 40);
        assert!(report.commits >= 1 && report.commits <= 40);
        assert!(report.p50 <= report.p99 && report.p99 <= report.max);
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
            .await
            .expect("reopen");
        let all = store
            .range(crate::RangeRequest {
                key: Bytes::from_static(b"/bench/"),
                range_end: Some(crate::prefix_end(b"/bench/")),
                count_only: true,
                ..Default::default()
            })
            .await
            .expect("range");
        assert_eq!(all.count, 40);
    }
}
