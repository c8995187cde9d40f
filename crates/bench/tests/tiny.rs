//! Runs every measurement of `flotilla bench` at tiny sizes against an in-process
//! API server, to prove the pieces work end to end. No timing is asserted.

use std::path::Path;
use std::time::Duration;

use bench::server::ServerMode;
use bench::{Options, Sizes, run};

fn tiny() -> Sizes {
    Sizes {
        creates_c1: 5,
        creates_high: 40,
        high_concurrency: 8,
        gets: 20,
        watchers: 3,
        watch_events: 10,
        watch_rate: 200.0,
        list_sizes: vec![60, 80],
        list_samples: 2,
        store_puts_c1: 10,
        store_puts_high: 40,
        value_size: 1024,
        sync_probe: Duration::from_millis(50),
        idle_wait: Duration::ZERO,
        phase_limit: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_measurement_runs_at_tiny_sizes() {
    let parent = tempfile::tempdir().expect("tempdir");
    let etcd = Path::new("/usr/bin/etcd");
    let opts = Options {
        profile: "tiny".into(),
        sizes: tiny(),
        server: ServerMode::InProcess,
        etcd_bin: Some(etcd.to_path_buf()),
        work_parent: Some(parent.path().to_path_buf()),
        keep: false,
        progress: false,
    };
    let report = run(opts).await.expect("benchmark run");

    let disk = report.disk.as_ref().expect("disk figures");
    assert!(disk.fsync_per_sec > 0.0 && disk.fdatasync_per_sec > 0.0);

    let embedded: Vec<_> = report
        .store
        .iter()
        .filter(|p| p.system == "embedded")
        .map(|p| (p.concurrency, p.puts))
        .collect();
    assert_eq!(embedded, vec![(1, 10), (8, 40)]);
    if etcd.exists() {
        assert_eq!(report.etcd_skipped, None);
        let peer: Vec<_> = report
            .store
            .iter()
            .filter(|p| p.system.starts_with("etcd"))
            .map(|p| (p.concurrency, p.puts))
            .collect();
        assert_eq!(peer, vec![(1, 10), (8, 40)]);
    } else {
        assert!(report.etcd_skipped.is_some());
    }

    let creates: Vec<_> = report
        .creates
        .iter()
        .map(|c| (c.concurrency, c.created, c.errors))
        .collect();
    assert_eq!(creates, vec![(1, 5, 0), (8, 40, 0)]);
    assert_eq!(report.get.as_ref().expect("GETs").latency.samples, 20);

    let watch = report.watch.as_ref().expect("watch figures");
    assert_eq!(watch.events, 10);
    assert_eq!(watch.deliveries, 3 * 10);
    assert_eq!(watch.missed, 0);
    assert!(watch.from_write_ack.p99_ms <= watch.from_write_start.p99_ms);

    // 5 + 40 + 10 pods exist, so the first LIST needs a fill of 5, the second 20.
    let fills: Vec<_> = report.fills.iter().map(|f| f.created).collect();
    assert_eq!(fills, vec![5, 20]);
    let lists: Vec<_> = report
        .lists
        .iter()
        .map(|l| (l.pods, l.latency.samples))
        .collect();
    assert_eq!(lists, vec![(60, 2), (80, 2)]);
    assert!(report.lists[1].bytes > report.lists[0].bytes);

    // In-process: no separate server memory to report.
    assert!(report.memory_idle.is_none() && report.memory_loaded.is_none());

    let table = report.to_string();
    for needle in [
        "disk fsync",
        "pod create c=8",
        "pod LIST 80",
        "watch 3 watchers",
    ] {
        assert!(table.contains(needle), "{needle} missing from\n{table}");
    }
    let json = serde_json::to_value(&report).expect("JSON");
    assert_eq!(json["lists"][1]["pods"], 80);

    // The work directory is gone.
    let left: Vec<_> = std::fs::read_dir(parent.path())
        .expect("read parent")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
