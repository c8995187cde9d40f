//! Durable put throughput of the embedded store, for profiling the commit path:
//! `cargo run --release -p store --example putbench -- [DIR] [CONCURRENCY] [PUTS]`.

use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<(), store::StoreError> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("store-putbench"));
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let puts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let _ = std::fs::remove_dir_all(&dir);
    let report = store::bench::put_throughput(&dir, concurrency, puts, 1024).await?;
    println!("{report}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
