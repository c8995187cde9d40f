//! `ctr images` without the flotilla binary, for trying the store by hand:
//! `cargo run -p images --example ctr -- --root /tmp/images pull --insecure-registry 127.0.0.1:5000 127.0.0.1:5000/busybox:1.0`

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Store root (the runtime uses `<data-dir>/images`).
    #[arg(long, default_value = "/var/lib/flotilla/images")]
    root: std::path::PathBuf,
    #[command(subcommand)]
    cmd: images::ImagesCommand,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    images::run_cli(args.cmd, &args.root).await
}
