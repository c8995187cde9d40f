//! `flotilla bench control-plane` without building the whole `flotilla` binary:
//! `cargo run -p bench --example control_plane -- --server-bin PATH/flotilla --quick`
//! (the server and the sim are children running `PATH/flotilla`).

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: bench::control_plane::ControlPlaneArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.args.server_bin.is_none() {
        anyhow::bail!("--server-bin is required (the flotilla binary to run)");
    }
    bench::control_plane::run_cli(cli.args).await
}
