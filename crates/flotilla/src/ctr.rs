//! `flotilla ctr`: the node-local container tool (the seeds' `docker ps`). Works on the
//! runtime's data directory directly — no API server — so it sees the kubelet's containers
//! and survives a kubelet restart.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use runtime::logs::Stream;
use runtime::spec::labels;
use runtime::{
    Config, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, ExecRequest,
    ImageDefaults, Resources, Rootfs, Runtime,
};

/// `flotilla ctr` flags.
#[derive(Args)]
pub struct CtrCmd {
    /// The runtime's data directory (the kubelet's).
    #[arg(long, default_value = "/var/lib/flotilla")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: CtrCommand,
}

#[derive(Subcommand)]
enum CtrCommand {
    /// List containers (running ones; -a for all).
    Ps {
        /// Show all containers, not only running ones.
        #[arg(short, long)]
        all: bool,
        /// Only print ids.
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate ids and commands.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Print a container's state and spec as JSON.
    Inspect {
        /// Container id (or unique prefix).
        id: String,
    },
    /// Print a container's logs.
    Logs {
        /// Keep following the log.
        #[arg(short, long)]
        follow: bool,
        /// Show the CRI timestamps.
        #[arg(short, long)]
        timestamps: bool,
        /// Container id (or unique prefix).
        id: String,
    },
    /// Run a command in a running container.
    Exec {
        /// Allocate a terminal.
        #[arg(short, long)]
        tty: bool,
        /// Accepted for docker compatibility (stdin is always passed).
        #[arg(short, long)]
        interactive: bool,
        /// Container id (or unique prefix).
        id: String,
        /// The command and its arguments (as with `docker exec`, `--` is optional).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Stop containers: stop signal, grace period, then SIGKILL.
    Stop {
        /// Grace period in seconds.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// Container ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Stop running containers first (no grace).
        #[arg(short, long)]
        force: bool,
        /// Container ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Create and start a container from an image (pulled when missing) or a root
    /// filesystem directory (`--rootfs`): `run IMAGE [--] CMD…`.
    Run(Box<RunArgs>),
    /// Manage images: ls, pull, import, rm, gc.
    Images {
        #[command(subcommand)]
        command: images::ImagesCommand,
    },
}

/// `flotilla ctr run` flags.
#[derive(Args)]
struct RunArgs {
    /// Root filesystem directory (used read-only as the overlay's lower layer) instead
    /// of an image.
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// When to pull the image: missing, always or never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// Registry (host[:port]) to reach over plain http; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// Container name.
    #[arg(long, default_value = "ctr")]
    name: String,
    /// Print the id and return instead of following the output.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits (foreground only).
    #[arg(long)]
    rm: bool,
    /// Environment `KEY=value`.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Memory limit (bytes, or with k/m/g suffix).
    #[arg(short, long)]
    memory: Option<String>,
    /// CPU limit in CPUs (0.5 = half a CPU).
    #[arg(long)]
    cpus: Option<f64>,
    /// Hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// `uid[:gid]`.
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Runtime handler (e.g. `runc`); default built-in.
    #[arg(long)]
    runtime: Option<String>,
    /// Give the container all capabilities and host devices.
    #[arg(long)]
    privileged: bool,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// The image (e.g. `127.0.0.1:5000/busybox:latest`), then the command and its
    /// arguments (`--` before them is optional). With `--rootfs`, only the command.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [CMD]..."
    )]
    args: Vec<String>,
}

fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s.as_str(), 1),
    };
    let n: i64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    Ok(n * mult)
}

/// The spec `ctr run` creates, from a rootfs and an image's defaults (the images crate
/// will provide lowerdirs and `ImageDefaults` from the image config).
fn run_spec(
    rootfs: Rootfs,
    image: &str,
    defaults: ImageDefaults,
    cmd: Vec<String>,
    a: &RunArgs,
) -> anyhow::Result<ContainerSpec> {
    let mut spec = ContainerSpec {
        name: a.name.clone(),
        image: image.to_string(),
        rootfs: Some(rootfs),
        image_defaults: defaults,
        command: cmd,
        hostname: a.hostname.clone(),
        working_dir: a.workdir.clone(),
        privileged: a.privileged,
        readonly_rootfs: a.read_only,
        runtime_handler: a.runtime.clone(),
        ..Default::default()
    };
    spec.labels
        .insert(labels::CONTAINER_NAME.into(), a.name.clone());
    for kv in &a.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        spec.env.push((k.into(), v.into()));
    }
    if let Some(m) = &a.memory {
        spec.resources.memory_limit = Some(parse_bytes(m)?);
    }
    if let Some(c) = a.cpus {
        if c.is_nan() || c <= 0.0 {
            bail!("--cpus must be positive");
        }
        spec.resources.cpu_quota = Some(Resources::quota_from_millis((c * 1000.0) as u64, 100_000));
        spec.resources.cpu_period = Some(100_000);
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        spec.run_as_user = Some(uid.parse().context("--user takes numeric uid[:gid]")?);
        spec.run_as_group = gid
            .map(str::parse)
            .transpose()
            .context("--user takes numeric uid[:gid]")?;
    }
    if spec.process_args().is_empty() {
        bail!("no command: give one after --");
    }
    Ok(spec)
}

/// Docker's "5 seconds" / "About a minute" / "3 hours" wording.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn since(ts: &str) -> Duration {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .and_then(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .unwrap_or_default()
}

/// The STATUS column.
fn status_text(c: &ContainerInfo) -> String {
    match c.state {
        ContainerState::Created => "Created".into(),
        ContainerState::Running => format!(
            "Up {}",
            human(since(c.started_at.as_deref().unwrap_or(&c.created_at)))
        ),
        ContainerState::Exited => {
            let ago = c.finished_at.as_deref().map(since).unwrap_or_default();
            let mut s = format!("Exited ({}) {} ago", c.exit_code.unwrap_or(-1), human(ago));
            if c.reason.as_deref() == Some("OOMKilled") {
                s.push_str(" (OOMKilled)");
            }
            s
        }
        ContainerState::Unknown => "Unknown".into(),
    }
}

fn command_text(c: &ContainerInfo, trunc: bool) -> String {
    let cmd = c.spec.process_args().join(" ");
    if trunc && cmd.chars().count() > 20 {
        format!("\"{}…\"", cmd.chars().take(19).collect::<String>())
    } else {
        format!("\"{cmd}\"")
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < cols {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `ps` table.
fn ps_table(list: &[ContainerInfo], no_trunc: bool) -> String {
    let mut rows = vec![
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "POD",
            "NAMESPACE",
            "NAME",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in list {
        let label = |k: &str| c.spec.labels.get(k).cloned().unwrap_or_default();
        let name = c
            .spec
            .labels
            .get(labels::CONTAINER_NAME)
            .cloned()
            .unwrap_or(c.spec.name.clone());
        rows.push(vec![
            if no_trunc {
                c.id.clone()
            } else {
                c.id[..12.min(c.id.len())].to_string()
            },
            c.spec.image.clone(),
            command_text(c, !no_trunc),
            format!("{} ago", human(since(&c.created_at))),
            status_text(c),
            label(labels::POD_NAME),
            label(labels::POD_NAMESPACE),
            name,
        ]);
    }
    table(&rows)
}

fn print_entries(buf: &[u8], timestamps: bool) {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for line in buf.split(|b| *b == b'\n') {
        let Some(e) = runtime::logs::parse_line(line) else {
            continue;
        };
        let w: &mut dyn Write = if e.stream == Stream::Stdout {
            &mut out
        } else {
            &mut err
        };
        if timestamps {
            let _ = write!(w, "{} ", e.time);
        }
        let _ = w.write_all(&e.content);
        if !e.partial {
            let _ = w.write_all(b"\n");
        }
    }
    let _ = out.flush();
    let _ = err.flush();
}

/// Print a log (all rotated files) and, with `follow`, keep printing until `done()`;
/// follows rotation by noticing the path's inode change.
fn show_logs(
    path: &Path,
    follow: bool,
    timestamps: bool,
    done: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let files = runtime::logs::files_oldest_first(path, 100);
    for f in files.iter().filter(|f| f.as_path() != path) {
        print_entries(
            &std::fs::read(f).with_context(|| format!("read {}", f.display()))?,
            timestamps,
        );
    }
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) if follow => loop {
            if let Ok(f) = std::fs::File::open(path) {
                break f;
            }
            if done() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        },
        Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
    };
    let mut pending: Vec<u8> = vec![];
    loop {
        let mut buf = vec![];
        file.read_to_end(&mut buf)?;
        pending.extend_from_slice(&buf);
        if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
            let rest = pending.split_off(end + 1);
            print_entries(&pending, timestamps);
            pending = rest;
        }
        if !follow {
            return Ok(());
        }
        let finished = done();
        let rotated =
            std::fs::metadata(path).map(|m| m.ino()).ok() != file.metadata().map(|m| m.ino()).ok();
        if rotated && let Ok(f) = std::fs::File::open(path) {
            // The old file is complete: drain it, then switch.
            let mut rest = vec![];
            file.read_to_end(&mut rest)?;
            pending.extend_from_slice(&rest);
            print_entries(&pending, timestamps);
            pending.clear();
            file = f;
            file.seek(SeekFrom::Start(0))?;
            continue;
        }
        if finished && buf.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The overlay layers and defaults of `image` in the node's image store (the kubelet's),
/// pulled first according to `--pull` (with progress on the terminal).
fn image_rootfs(
    data_dir: &Path,
    image: &str,
    a: &RunArgs,
) -> anyhow::Result<(Rootfs, ImageDefaults)> {
    let store = images::ImageStore::open(&data_dir.join("images"))
        .with_context(|| format!("opening the image store in {}", data_dir.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let present = match store.get(image) {
            Ok(_) => true,
            Err(images::ImageError::NotFound(_)) => false,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("image {image}"))),
        };
        let pull = match a.pull.as_str() {
            "always" => true,
            "never" if !present => {
                bail!("image {image} is not present on this node and --pull=never was given")
            }
            _ => !present,
        };
        if pull {
            let opts = images::PullOptions {
                insecure_registries: a.insecure_registries.clone(),
                progress: std::sync::Arc::new(images::progress::TerminalProgress::stderr()),
                ..Default::default()
            };
            let info = store
                .pull(image, &opts)
                .await
                .with_context(|| format!("pulling {image}"))?;
            eprintln!("{}: {}", info.name, info.target_digest);
        }
        let (dirs, icfg) = store
            .rootfs_layers(image)
            .await
            .with_context(|| format!("unpacking {image}"))?;
        Ok((Rootfs::Lowerdirs(dirs), agent::image_defaults(icfg)))
    })
}

/// Run `flotilla ctr …`; returns the process exit code.
pub fn run(cmd: CtrCmd) -> anyhow::Result<i32> {
    if let CtrCommand::Images { command } = cmd.command {
        let root = cmd.data_dir.join("images");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(images::run_cli(command, &root))?;
        return Ok(0);
    }
    let rt = Runtime::new(Config::new(&cmd.data_dir)?)?;
    let cmd_data_dir = cmd.data_dir.clone();
    match cmd.command {
        CtrCommand::Ps {
            all,
            quiet,
            no_trunc,
        } => {
            let list: Vec<ContainerInfo> = rt
                .list()?
                .into_iter()
                .filter(|c| all || c.state == ContainerState::Running)
                .collect();
            if quiet {
                for c in &list {
                    println!(
                        "{}",
                        if no_trunc {
                            &c.id[..]
                        } else {
                            &c.id[..12.min(c.id.len())]
                        }
                    );
                }
            } else {
                print!("{}", ps_table(&list, no_trunc));
            }
        }
        CtrCommand::Inspect { id } => {
            let id = rt.resolve(&id)?;
            let info = rt.status(&id)?;
            let stats = rt.stats(&id)?;
            let mut v = serde_json::to_value(&info)?;
            v["stats"] = serde_json::json!({
                "cpuUsageNanos": stats.cpu_usage_ns,
                "memoryBytes": stats.memory_bytes,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        CtrCommand::Logs {
            follow,
            timestamps,
            id,
        } => {
            let id = rt.resolve(&id)?;
            let path = rt.log_path(&id)?;
            let done = || {
                rt.status(&id)
                    .map(|i| i.state != ContainerState::Running)
                    .unwrap_or(true)
            };
            show_logs(&path, follow, timestamps, &done)?;
        }
        CtrCommand::Exec {
            tty,
            interactive: _,
            id,
            cmd,
        } => {
            let id = rt.resolve(&id)?;
            let code = rt.exec(
                &id,
                &ExecRequest {
                    cmd,
                    tty,
                    ..Default::default()
                },
                Stdio::inherit(),
                Stdio::inherit(),
                Stdio::inherit(),
            )?;
            return Ok(code);
        }
        CtrCommand::Stop { time, ids } => {
            for id in ids {
                let full = rt.resolve(&id)?;
                rt.stop(&full, Duration::from_secs(time))?;
                println!("{id}");
            }
        }
        CtrCommand::Rm { force, ids } => {
            for id in ids {
                let full = rt.resolve(&id)?;
                if force {
                    rt.stop(&full, Duration::ZERO)?;
                }
                rt.remove(&full)?;
                println!("{id}");
            }
        }
        CtrCommand::Images { .. } => unreachable!("handled above"),
        CtrCommand::Run(a) => {
            // `run IMAGE -- CMD`: clap keeps a `--` that follows the image.
            let strip = |v: &[String]| -> Vec<String> {
                match v.split_first() {
                    Some((first, rest)) if first == "--" => rest.to_vec(),
                    _ => v.to_vec(),
                }
            };
            let spec = match &a.rootfs {
                Some(dir) => {
                    if !dir.is_dir() {
                        bail!("--rootfs {} is not a directory", dir.display());
                    }
                    let rootfs = Rootfs::Lowerdirs(vec![dir.canonicalize()?]);
                    let image = dir.display().to_string();
                    run_spec(rootfs, &image, ImageDefaults::default(), strip(&a.args), &a)?
                }
                None => {
                    let Some((image, cmd)) = a.args.split_first() else {
                        bail!("ctr run needs an IMAGE (or --rootfs DIR)");
                    };
                    let (rootfs, defaults) = image_rootfs(&cmd_data_dir, image, &a)?;
                    run_spec(rootfs, image, defaults, strip(cmd), &a)?
                }
            };
            let id = rt.create_container(&spec)?;
            if let Err(e) = rt.start(&id) {
                let _ = rt.remove(&id);
                return Err(e.into());
            }
            if a.detach {
                println!("{id}");
                return Ok(0);
            }
            let path = rt.log_path(&id)?;
            let done = || {
                rt.status(&id)
                    .map(|i| i.state != ContainerState::Running)
                    .unwrap_or(true)
            };
            show_logs(&path, true, false, &done)?;
            // Foreground run: wait as long as the container runs (a century is "forever").
            let info = rt.wait(&id, Duration::from_secs(100 * 365 * 86_400))?;
            if a.rm {
                rt.remove(&id)?;
            }
            return Ok(info.exit_code.unwrap_or(255));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(state: ContainerState) -> ContainerInfo {
        let now = chrono::Utc::now().to_rfc3339();
        ContainerInfo {
            id: "0123456789abcdef".repeat(4),
            spec: ContainerSpec {
                image: "busybox".into(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hello world; sleep 100".into(),
                ],
                labels: [
                    (labels::POD_NAME.to_string(), "web-1".to_string()),
                    (labels::POD_NAMESPACE.to_string(), "default".to_string()),
                    (labels::CONTAINER_NAME.to_string(), "app".to_string()),
                ]
                .into(),
                ..Default::default()
            },
            state,
            pid: None,
            shim_pid: None,
            created_at: now.clone(),
            started_at: Some(now.clone()),
            finished_at: Some(now),
            exit_code: Some(0),
            reason: None,
            cgroup: String::new(),
            log_path: PathBuf::new(),
            handler: String::new(),
        }
    }

    #[test]
    fn ps_looks_like_docker() {
        let t = ps_table(
            &[info(ContainerState::Running), info(ContainerState::Exited)],
            false,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("CONTAINER ID   IMAGE     COMMAND"),
            "{t}"
        );
        assert!(lines[0].ends_with("POD     NAMESPACE   NAME"), "{t}");
        assert!(
            lines[1].starts_with("0123456789ab   busybox   \"sh -c echo hello wo…\""),
            "{t}"
        );
        assert!(lines[1].contains("Up Less than a second"), "{t}");
        assert!(
            lines[2].contains("Exited (0) Less than a second ago"),
            "{t}"
        );
        assert!(lines[1].ends_with("web-1   default     app"), "{t}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(human(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human(Duration::from_secs(150)), "2 minutes");
        assert_eq!(human(Duration::from_secs(3 * 86_400)), "3 days");
        assert_eq!(parse_bytes("32m").unwrap(), 32 << 20);
        assert!(parse_bytes("x").is_err());
    }
}
