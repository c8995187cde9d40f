//! Pull throughput benchmark (ignored by default; run with
//! `cargo test -p images --test bench -- --ignored --nocapture`): a 64 MiB
//! incompressible layer pulled from the local docker-registry over loopback, compared
//! with a plain loopback TCP copy of the same bytes into a file.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use images::testutil::{self, LocalRegistry, TestDir};
use images::{ImageStore, Progress, ProgressState, PullOptions};

const MIB: usize = 1024 * 1024;

fn random_bytes(n: usize) -> Vec<u8> {
    // xorshift64*: incompressible enough that gzip keeps the size.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Records when the download phase completed.
struct DownloadDone(Mutex<Option<Instant>>);

impl Progress for DownloadDone {
    fn update(&self, s: &ProgressState) {
        if s.bytes_total > 0
            && s.bytes_done >= s.bytes_total
            && s.phase.starts_with("pulling")
            && let Ok(mut t) = self.0.lock()
            && t.is_none()
        {
            *t = Some(Instant::now());
        }
    }
}

fn loopback_copy(data: &[u8], dest: &std::path::Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let payload = data.to_vec();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(&payload).unwrap();
    });
    let start = Instant::now();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut f = fs::File::create(dest).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n]).unwrap();
    }
    f.sync_all().unwrap();
    let took = start.elapsed();
    server.join().unwrap();
    took
}

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

#[tokio::test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
async fn bench_pull_throughput() {
    if !testutil::is_root() {
        eprintln!("SKIPPED (not root): the fixture layer has a device node");
    }
    let work = TestDir::new("bench");
    let mut b = tar::Builder::new(Vec::new());
    let data = random_bytes(64 * MIB);
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    b.append_data(&mut h, "blob.bin", &data[..]).unwrap();
    let layout = testutil::build_layout(
        &work.path().join("layout"),
        "big",
        vec![b.into_inner().unwrap()],
        "bench",
    );
    let blob = fs::read(layout.dir.join("blobs/sha256").join(layout.layers[0].hex())).unwrap();
    let reg = LocalRegistry::start();
    reg.push(&layout.dir, "big", "bench/big");
    let name = format!("{}/bench/big:big", reg.addr);

    let mut best_copy = Duration::MAX;
    let mut best_download = Duration::MAX;
    let mut best_pull = Duration::MAX;
    for i in 0..3 {
        best_copy = best_copy.min(loopback_copy(&blob, &work.path().join(format!("copy{i}"))));
        let store = ImageStore::open(&work.path().join(format!("store{i}"))).unwrap();
        let done = Arc::new(DownloadDone(Mutex::new(None)));
        let opts = PullOptions {
            insecure_registries: vec![reg.addr.clone()],
            progress: done.clone(),
            ..Default::default()
        };
        let start = Instant::now();
        tokio::time::timeout(Duration::from_secs(300), store.pull(&name, &opts))
            .await
            .unwrap()
            .unwrap();
        best_pull = best_pull.min(start.elapsed());
        if let Some(t) = *done.0.lock().unwrap() {
            best_download = best_download.min(t - start);
        }
    }
    let n = blob.len();
    eprintln!(
        "layer {:.1} MiB: loopback copy {:.0} MiB/s; pull download+verify {:.0} MiB/s; \
         pull incl. unpack {:.0} MiB/s (best of 3)",
        n as f64 / MIB as f64,
        mib_per_s(n, best_copy),
        mib_per_s(n, best_download),
        mib_per_s(n, best_pull)
    );
}
