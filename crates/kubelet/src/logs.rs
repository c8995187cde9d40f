//! Reading CRI-format container logs for `/containerLogs`: lines
//! `<RFC3339Nano> stdout|stderr F|P <text>` (`P`: a partial line continued by the next
//! entry of the same stream), rotated files `<log>.1` (newest) … `<log>.N` (oldest),
//! with upstream's options (`tailLines`, `timestamps`, `sinceSeconds`, `limitBytes`,
//! `follow`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;

/// Errors reading a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("reading log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Options of `/containerLogs` (upstream's PodLogOptions as the kubelet sees them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<u64>,
    pub timestamps: bool,
    pub since_seconds: Option<u64>,
    /// `sinceTime` (RFC 3339); `sinceSeconds` wins when both are given.
    pub since_time: Option<Timestamp>,
    pub limit_bytes: Option<u64>,
}

/// One complete (joined) log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The timestamp as written in the file (of the line's first fragment).
    pub timestamp: String,
    pub time: Option<Timestamp>,
    /// The text including its newline (absent only for a trailing partial line).
    pub text: String,
}

impl LogLine {
    fn render(&self, timestamps: bool) -> String {
        if timestamps {
            format!("{} {}", self.timestamp, self.text)
        } else {
            self.text.clone()
        }
    }
}

/// Joins CRI entries into lines; partial entries are kept per stream.
#[derive(Default)]
pub struct Parser {
    /// Unterminated bytes of the file being read (an entry still being written).
    pending: Vec<u8>,
    partial_stdout: Option<LogLine>,
    partial_stderr: Option<LogLine>,
}

impl Parser {
    /// Feed raw file bytes; returns the complete lines they finish.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<LogLine> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let entry: Vec<u8> = self.pending.drain(..=pos).collect();
            let entry = String::from_utf8_lossy(&entry[..entry.len() - 1]).into_owned();
            if let Some(l) = self.entry(&entry) {
                out.push(l);
            }
        }
        out
    }

    /// Forget a half-read entry (the file was rotated under us).
    pub fn reset_pending(&mut self) {
        self.pending.clear();
    }

    fn entry(&mut self, entry: &str) -> Option<LogLine> {
        let mut parts = entry.splitn(4, ' ');
        let ts = parts.next()?;
        let stream = parts.next()?;
        let tag = parts.next()?;
        let text = parts.next().unwrap_or("");
        let slot = match stream {
            "stdout" => &mut self.partial_stdout,
            "stderr" => &mut self.partial_stderr,
            _ => return None,
        };
        let line = slot.get_or_insert_with(|| LogLine {
            timestamp: ts.to_string(),
            time: ts.parse().ok(),
            text: String::new(),
        });
        line.text.push_str(text);
        // Tags may carry more flags after `P`/`F` separated by `:` (CRI allows it).
        if tag.split(':').next() == Some("P") {
            return None;
        }
        let mut done = slot.take()?;
        done.text.push('\n');
        Some(done)
    }
}

/// The files of one log, oldest first: `<log>.N` … `<log>.1`, `<log>`.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        && let Ok(rd) = std::fs::read_dir(dir)
    {
        for e in rd.flatten() {
            let f = e.file_name();
            let Some(f) = f.to_str() else { continue };
            if let Some(n) = f
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix('.'))
                .and_then(|n| n.parse::<u32>().ok())
            {
                rotated.push((n, e.path()));
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(path.to_path_buf());
    files
}

/// Where a follower stands in the live file.
struct Position {
    offset: u64,
    inode: u64,
}

fn read_from(path: &Path, offset: u64) -> Result<(Vec<u8>, u64), LogError> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let io = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io(e)),
    };
    let inode = f.metadata().map_err(io)?.ino();
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(io)?;
    Ok((buf, inode))
}

/// Stream a container's log into `tx` as rendered chunks. With `follow`, keep
/// polling the live file until `still_running` says the container is gone (then the
/// rest is drained) or the receiver is dropped.
pub async fn stream_log<F, Fut>(
    path: PathBuf,
    opts: LogOptions,
    tx: mpsc::Sender<Bytes>,
    mut still_running: F,
) -> Result<(), LogError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let since = opts
        .since_seconds
        .and_then(|s| {
            let d = k8s_openapi::jiff::SignedDuration::from_secs(i64::try_from(s).ok()?);
            Timestamp::now().checked_sub(d).ok()
        })
        .or(opts.since_time);
    let mut budget = opts.limit_bytes.unwrap_or(u64::MAX);
    let mut parser = Parser::default();
    let mut lines: Vec<LogLine> = Vec::new();
    let files = log_files(&path);
    let mut pos = Position {
        offset: 0,
        inode: 0,
    };
    for f in &files {
        let (bytes, inode) = read_from(f, 0)?;
        if f == &path {
            pos = Position {
                offset: bytes.len() as u64,
                inode,
            };
        } else {
            // An entry cut at a rotation boundary does not continue in the next file.
            parser.reset_pending();
        }
        lines.extend(parser.feed(&bytes));
    }
    let keep = |l: &LogLine| match (since, l.time) {
        (Some(s), Some(t)) => t >= s,
        _ => true,
    };
    lines.retain(keep);
    if let Some(n) = opts.tail_lines {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
    }
    // Returns false when the output is finished (budget spent or client gone).
    let send = |lines: Vec<LogLine>, budget: &mut u64| {
        let mut chunk = String::new();
        let mut full = false;
        for l in lines {
            let mut s = l.render(opts.timestamps);
            if s.len() as u64 >= *budget {
                let mut cut = usize::try_from(*budget).unwrap_or(usize::MAX);
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                full = true;
            }
            *budget -= s.len() as u64;
            chunk.push_str(&s);
            if full {
                break;
            }
        }
        let tx = tx.clone();
        async move {
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return false;
            }
            !full
        }
    };
    if !send(lines, &mut budget).await || !opts.follow {
        return Ok(());
    }
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = tx.closed() => return Ok(()),
        }
        let running = still_running().await;
        let (mut bytes, inode) = read_from(&path, pos.offset)?;
        if inode != pos.inode && pos.inode != 0 {
            // Rotated: the rest of the old file is now `<log>.1`; finish it, then
            // read the new file from its start.
            if let Some(old) = files_rotated_to(&path) {
                let (rest, _) = read_from(&old, pos.offset)?;
                let lines = parser.feed(&rest);
                if !send(lines, &mut budget).await {
                    return Ok(());
                }
            }
            parser.reset_pending();
            (bytes, _) = read_from(&path, 0)?;
            pos.offset = 0;
        }
        pos.inode = inode;
        pos.offset += bytes.len() as u64;
        let lines: Vec<LogLine> = parser.feed(&bytes).into_iter().filter(keep).collect();
        if !send(lines, &mut budget).await {
            return Ok(());
        }
        if !running {
            return Ok(());
        }
    }
}

fn files_rotated_to(path: &Path) -> Option<PathBuf> {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    let p = PathBuf::from(p);
    p.exists().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_partial_lines_per_stream() {
        let mut p = Parser::default();
        let lines = p.feed(
            b"2024-01-01T00:00:00.1Z stdout P hel\n2024-01-01T00:00:00.2Z stderr F oops\n2024-01-01T00:00:00.3Z stdout F lo\n",
        );
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, vec!["oops\n", "hello\n"]);
        assert_eq!(lines[1].timestamp, "2024-01-01T00:00:00.1Z");
    }

    #[test]
    fn keeps_an_unterminated_entry_until_its_newline() {
        let mut p = Parser::default();
        assert!(p.feed(b"2024-01-01T00:00:00Z stdout F ha").is_empty());
        let l = p.feed(b"lf\n");
        assert_eq!(l[0].text, "half\n");
    }

    #[test]
    fn rotated_files_come_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("c.log");
        for n in ["c.log", "c.log.1", "c.log.2", "c.log.x", "other.log.1"] {
            std::fs::write(dir.path().join(n), "").expect("write");
        }
        let files = log_files(&log);
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap_or_default().to_string_lossy().into())
            .collect();
        assert_eq!(names, vec!["c.log.2", "c.log.1", "c.log"]);
    }
}
