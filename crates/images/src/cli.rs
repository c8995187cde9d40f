//! `flotilla ctr images …`: the subcommands and their table output.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::progress::{TerminalProgress, human_bytes};
use crate::pull::{Credentials, PullOptions};
use crate::store::{ImageInfo, ImageStore};
use crate::{ImportOptions, reference::ImageRef};

/// `ctr images` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImagesCommand {
    /// List images (REF, DIGEST, SIZE, CREATED).
    #[command(alias = "list")]
    Ls {
        /// Print only the references.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Pull an image from a registry (linux/amd64).
    Pull {
        /// Image reference, e.g. busybox or 127.0.0.1:5000/app:v1.
        reference: String,
        /// Registry (host[:port]) to reach over plain http; repeatable.
        #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
        insecure_registries: Vec<String>,
        /// Credentials for the image's registry, `user:password`.
        #[arg(long, short = 'u', value_name = "USER:PASSWORD")]
        user: Option<String>,
    },
    /// Import a `docker save` or OCI archive.
    Import {
        /// The archive (.tar, .tar.gz, .tar.zst).
        file: PathBuf,
        /// Name for images the archive names only by tag, e.g. 127.0.0.1:5000/app.
        #[arg(long)]
        base_name: Option<String>,
    },
    /// Remove image names (content is freed by gc).
    #[command(alias = "remove", alias = "delete")]
    Rm {
        /// Image references.
        #[arg(required = true)]
        refs: Vec<String>,
    },
    /// Delete blobs and snapshots no image refers to.
    Gc,
}

/// Age like `3 days ago` from an RFC 3339 time.
pub fn age(rfc3339: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return "-".into();
    };
    let secs = (now - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    let (n, unit) = match secs {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86400 => (s / 3600, "hour"),
        s if s < 86400 * 30 => (s / 86400, "day"),
        s if s < 86400 * 365 => (s / (86400 * 30), "month"),
        s => (s / (86400 * 365), "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// The `ls` table.
pub fn format_table(images: &[ImageInfo], now: chrono::DateTime<chrono::Utc>) -> String {
    let mut rows = vec![[
        "REF".to_string(),
        "DIGEST".to_string(),
        "SIZE".to_string(),
        "CREATED".to_string(),
    ]];
    for i in images {
        rows.push([
            i.name.clone(),
            i.target_digest.to_string(),
            human_bytes(i.size),
            age(i.created.as_deref().unwrap_or(&i.stored_at), now),
        ]);
    }
    let mut widths = [0usize; 4];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line = format!(
            "{:w0$}   {:w1$}   {:w2$}   {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Runs one `ctr images` subcommand against the store at `root` (`<data-dir>/images`).
pub async fn run_cli(cmd: ImagesCommand, root: &Path) -> anyhow::Result<()> {
    let store = ImageStore::open(root)
        .with_context(|| format!("opening image store {}", root.display()))?;
    let mut stdout = std::io::stdout().lock();
    match cmd {
        ImagesCommand::Ls { quiet } => {
            let images = store.list()?;
            if quiet {
                for i in images {
                    writeln!(stdout, "{}", i.name)?;
                }
            } else {
                write!(stdout, "{}", format_table(&images, chrono::Utc::now()))?;
            }
        }
        ImagesCommand::Pull {
            reference,
            insecure_registries,
            user,
        } => {
            let r = ImageRef::parse(&reference)?;
            let mut opts = PullOptions {
                insecure_registries,
                progress: Arc::new(TerminalProgress::stderr()),
                ..Default::default()
            };
            if let Some(u) = user {
                let (username, password) =
                    u.split_once(':').context("--user must be USER:PASSWORD")?;
                opts.credentials.insert(
                    r.registry().to_string(),
                    Credentials::Basic {
                        username: username.into(),
                        password: password.into(),
                    },
                );
            }
            let info = store.pull(&reference, &opts).await?;
            writeln!(stdout, "{}: {}", info.name, info.target_digest)?;
        }
        ImagesCommand::Import { file, base_name } => {
            let opts = ImportOptions {
                base_name,
                progress: Arc::new(TerminalProgress::stderr()),
            };
            for info in store.import(&file, &opts).await? {
                writeln!(stdout, "{}: {}", info.name, info.target_digest)?;
            }
        }
        ImagesCommand::Rm { refs } => {
            let mut failed = Vec::new();
            for r in refs {
                match store.remove(&r) {
                    Ok(info) => writeln!(stdout, "{}", info.name)?,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            if !failed.is_empty() {
                anyhow::bail!("{}", failed.join("; "));
            }
        }
        ImagesCommand::Gc => {
            let report = store.gc(&HashSet::new()).await?;
            writeln!(
                stdout,
                "removed {} blobs ({}) and {} snapshots",
                report.removed_blobs.len(),
                human_bytes(report.freed_bytes),
                report.removed_snapshots.len()
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Digest;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ImagesCommand,
    }

    #[test]
    fn parses_subcommands() {
        let c = Cli::try_parse_from([
            "x",
            "pull",
            "--insecure-registry",
            "127.0.0.1:5000",
            "127.0.0.1:5000/a:b",
        ])
        .unwrap();
        match c.cmd {
            ImagesCommand::Pull {
                reference,
                insecure_registries,
                ..
            } => {
                assert_eq!(reference, "127.0.0.1:5000/a:b");
                assert_eq!(insecure_registries, vec!["127.0.0.1:5000"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["x", "rm"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["x", "ls"]).unwrap().cmd,
            ImagesCommand::Ls { quiet: false }
        ));
    }

    #[test]
    fn table() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-03T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let d = Digest::of(b"m");
        let info = ImageInfo {
            name: "docker.io/library/busybox:latest".into(),
            target_digest: d.clone(),
            manifest_digest: d.clone(),
            config_digest: d.clone(),
            size: 2 * 1024 * 1024,
            created: Some("2024-01-01T00:00:00Z".into()),
            stored_at: "2024-01-02T00:00:00Z".into(),
        };
        let t = format_table(&[info], now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("REF "), "{t}");
        assert!(lines[0].contains("DIGEST") && lines[0].contains("SIZE"));
        assert!(lines[1].contains("busybox:latest"));
        assert!(lines[1].contains(d.as_str()));
        assert!(lines[1].contains("2.0 MiB"));
        assert!(lines[1].ends_with("2 days ago"), "{t}");
    }
}
