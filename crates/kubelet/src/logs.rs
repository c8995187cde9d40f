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

/// A log file's identity: its inode plus its birth time where the filesystem records
/// one (an inode freed by deleting the oldest rotated file can come back as the next
/// live file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FileId {
    inode: u64,
    born: Option<std::time::SystemTime>,
}

/// Where a follower stands in the live file.
struct Position {
    offset: u64,
    id: FileId,
}

/// The bytes of `path` from `offset`, and the file's identity (default when missing).
fn read_from(path: &Path, offset: u64) -> Result<(Vec<u8>, FileId), LogError> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let io = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), FileId::default()));
        }
        Err(e) => return Err(io(e)),
    };
    let meta = f.metadata().map_err(io)?;
    let id = FileId {
        inode: meta.ino(),
        born: meta.created().ok(),
    };
    if offset > meta.len() {
        return Ok((Vec::new(), id));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(io)?;
    Ok((buf, id))
}

/// The identity and length of `path` (default identity when missing).
fn stat(path: &Path) -> (FileId, u64) {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => (
            FileId {
                inode: m.ino(),
                born: m.created().ok(),
            },
            m.len(),
        ),
        Err(_) => (FileId::default(), 0),
    }
}

/// What a follower missed when the live file was rotated (once or several times)
/// since it last read at `pos`: the rest of its old file (found among the rotated ones
/// by identity), then every newer rotated file whole, oldest first. When the old file
/// is gone (rotated past the last kept file), every rotated file is newer.
fn missed_by_rotation(path: &Path, pos: &Position) -> Result<Vec<Vec<u8>>, LogError> {
    let mut rotated = log_files(path);
    rotated.pop(); // the live file
    let ids: Vec<FileId> = rotated.iter().map(|f| stat(f).0).collect();
    let start = ids.iter().position(|id| *id == pos.id);
    let mut out = Vec::new();
    match start {
        Some(i) => {
            out.push(read_from(&rotated[i], pos.offset)?.0);
            for f in &rotated[i + 1..] {
                out.push(read_from(f, 0)?.0);
            }
        }
        None => {
            for f in &rotated {
                out.push(read_from(f, 0)?.0);
            }
        }
    }
    Ok(out)
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
        id: FileId::default(),
    };
    for f in &files {
        let (bytes, id) = read_from(f, 0)?;
        if f == &path {
            pos = Position {
                offset: bytes.len() as u64,
                id,
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
        // At most ~1 MiB per message: a long log goes out as it is rendered.
        const CHUNK: usize = 1 << 20;
        let mut chunks: Vec<String> = Vec::new();
        let mut chunk = String::new();
        let mut full = false;
        for l in lines {
            if chunk.len() >= CHUNK {
                chunks.push(std::mem::take(&mut chunk));
            }
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
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        let tx = tx.clone();
        async move {
            for c in chunks {
                if tx.send(Bytes::from(c)).await.is_err() {
                    return false;
                }
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
        let (id, len) = stat(&path);
        let rotated = pos.id != FileId::default() && (id != pos.id || len < pos.offset);
        if rotated {
            // Rotated (maybe more than once since the last look): finish what was
            // missed in the rotated files, then read the new live file from its start.
            for rest in missed_by_rotation(&path, &pos)? {
                let lines: Vec<LogLine> = parser.feed(&rest).into_iter().filter(keep).collect();
                parser.reset_pending();
                if !send(lines, &mut budget).await {
                    return Ok(());
                }
            }
            pos.offset = 0;
            pos.id = id;
        }
        let (bytes, got) = read_from(&path, pos.offset)?;
        if pos.id == FileId::default() {
            pos.id = got;
        } else if got != pos.id {
            // Rotated again between the look and the read: the next round reads what
            // is now a rotated file from where this one stands.
            continue;
        }
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

    /// Rotations faster than the follower polls (twice between two looks) lose nothing
    /// and repeat nothing; an inode freed by the deleted oldest file and reused by the
    /// next live file does not stall it.
    #[tokio::test]
    async fn follow_survives_several_rotations_between_polls() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("c.log");
        let line = |n: u32| format!("2024-01-01T00:00:00.{n:06}Z stdout F line {n}\n");
        std::fs::write(&log, line(0)).expect("write");
        let (tx, mut rx) = mpsc::channel(1024);
        let running = Arc::new(AtomicBool::new(true));
        let r = running.clone();
        let opts = LogOptions {
            follow: true,
            ..Default::default()
        };
        let task = tokio::spawn(stream_log(log.clone(), opts, tx, move || {
            let r = r.clone();
            async move { r.load(Ordering::SeqCst) }
        }));
        // Rotate as the runtime does (.1 → .2, live → .1, keep 3 files), twice per
        // poll interval, 20 times.
        let rotate = |log: &Path| {
            let name = |n: u32| {
                let mut p = log.as_os_str().to_owned();
                p.push(format!(".{n}"));
                PathBuf::from(p)
            };
            let _ = std::fs::remove_file(name(2));
            let _ = std::fs::rename(name(1), name(2));
            std::fs::rename(log, name(1)).expect("rotate");
        };
        let mut n = 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
        for _ in 0..20 {
            for _ in 0..2 {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .expect("open");
                f.write_all(line(n).as_bytes()).expect("append");
                n += 1;
                rotate(&log);
                std::fs::write(&log, line(n)).expect("new live file");
                n += 1;
            }
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        running.store(false, Ordering::SeqCst);
        task.await.expect("join").expect("stream");
        let mut got = String::new();
        while let Ok(b) = rx.try_recv() {
            got.push_str(std::str::from_utf8(&b).expect("utf8"));
        }
        let want: String = (0..n).map(|i| format!("line {i}\n")).collect();
        assert_eq!(got, want);
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
