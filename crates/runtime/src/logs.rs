//! Container logs in the CRI format the kubelet reads: one entry per line,
//! `<RFC3339Nano> <stdout|stderr> <F|P> <content>`; `P` marks a partial line (a line longer
//! than [`MAX_LINE`] is cut into P entries ending with an F entry).
//!
//! Rotation: when the next entry would push the file past `max_size`, `<log>` becomes
//! `<log>.1`, `<log>.1` becomes `<log>.2`…, keeping `max_files` files in all (the current
//! one included); the oldest is deleted. Readers take `<log>.N … <log>.1 <log>` in order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Errors of the log writer and reader.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A log file could not be opened, written or rotated.
    #[error("log file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Longest content of one entry; longer lines are split into partial entries.
pub const MAX_LINE: usize = 16 * 1024;
/// Default size at which the log rotates.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default number of files kept.
pub const DEFAULT_MAX_FILES: u32 = 5;

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The tag in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One CRI log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// RFC 3339 timestamp with nanoseconds.
    pub time: String,
    /// stdout or stderr.
    pub stream: Stream,
    /// True for a `P` (partial) entry.
    pub partial: bool,
    /// The content without the newline.
    pub content: Vec<u8>,
}

/// Format one entry (with its trailing newline).
pub fn format_entry(time: &str, stream: Stream, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(time.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Parse one line of a CRI log file (without its newline).
pub fn parse_line(line: &[u8]) -> Option<Entry> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Entry {
        time,
        stream,
        partial,
        content: parts.next().unwrap_or_default().to_vec(),
    })
}

/// The rotated file `n` of `path` (`<path>.n`).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// All files of a log, oldest first.
pub fn files_oldest_first(path: &Path, max_files: u32) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..max_files.max(1))
        .rev()
        .map(|n| rotated(path, n))
        .filter(|p| p.exists())
        .collect();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// A size-rotated CRI log file; shared by the stdout and stderr pumps.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl LogWriter {
    /// Open (append to) `path`.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> Result<Self, LogError> {
        let err = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size: max_size.max(1),
            max_files: max_files.max(1),
        })
    }

    /// Append one entry stamped now, rotating first if it would not fit.
    pub fn write_entry(
        &mut self,
        stream: Stream,
        partial: bool,
        content: &[u8],
    ) -> Result<(), LogError> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let bytes = format_entry(&now, stream, partial, content);
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&bytes).map_err(|source| LogError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| LogError::Io { path: p, source }
        };
        if self.max_files <= 1 {
            self.file.set_len(0).map_err(err(&self.path))?;
            self.size = 0;
            return Ok(());
        }
        let _ = fs::remove_file(rotated(&self.path, self.max_files - 1));
        for n in (1..self.max_files - 1).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, n + 1)).map_err(err(&from))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1)).map_err(err(&self.path))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err(&self.path))?;
        self.size = 0;
        Ok(())
    }
}

/// Copy `input` into the log line by line until EOF (run on its own thread per stream).
pub fn pump(input: impl Read, stream: Stream, log: Arc<Mutex<LogWriter>>) {
    pump_tee(input, stream, log, |_| {});
}

/// [`pump`], also handing every chunk read, as read, to `tap` (attached clients).
pub fn pump_tee(
    mut input: impl Read,
    stream: Stream,
    log: Arc<Mutex<LogWriter>>,
    mut tap: impl FnMut(&[u8]),
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut line: Vec<u8> = Vec::with_capacity(MAX_LINE);
    let emit = |content: &[u8], partial: bool| {
        if let Ok(mut w) = log.lock() {
            // A full disk must not stop the container; the entry is lost.
            let _ = w.write_entry(stream, partial, content);
        }
    };
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        tap(&buf[..n]);
        for chunk in buf[..n].split_inclusive(|b| *b == b'\n') {
            if let Some(body) = chunk.strip_suffix(b"\n") {
                line.extend_from_slice(body);
                while line.len() > MAX_LINE {
                    emit(&line[..MAX_LINE], true);
                    line.drain(..MAX_LINE);
                }
                emit(&line, false);
                line.clear();
            } else {
                line.extend_from_slice(chunk);
                while line.len() >= MAX_LINE {
                    emit(&line[..MAX_LINE], true);
                    line.drain(..MAX_LINE);
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&line, false);
    }
}

/// Read every entry of a log, oldest file first.
pub fn read_all(path: &Path, max_files: u32) -> Result<Vec<Entry>, LogError> {
    let mut out = vec![];
    for f in files_oldest_first(path, max_files) {
        let file = File::open(&f).map_err(|source| LogError::Io {
            path: f.clone(),
            source,
        })?;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(|source| LogError::Io {
                path: f.clone(),
                source,
            })?;
            if let Some(e) = parse_line(&line) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse_round_trip() {
        let l = format_entry(
            "2026-01-01T00:00:00.000000001Z",
            Stream::Stderr,
            true,
            b"a b",
        );
        assert_eq!(&l, b"2026-01-01T00:00:00.000000001Z stderr P a b\n");
        let e = parse_line(&l[..l.len() - 1]).unwrap();
        assert_eq!(e.stream, Stream::Stderr);
        assert!(e.partial);
        assert_eq!(e.content, b"a b");
        assert!(parse_line(b"garbage").is_none());
    }

    #[test]
    fn pump_splits_lines_and_long_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0.log");
        let w = Arc::new(Mutex::new(LogWriter::open(&p, 1 << 30, 5).unwrap()));
        let mut input = b"one\ntwo\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend_from_slice(b"\ntail");
        pump(&input[..], Stream::Stdout, w);
        let e = read_all(&p, 5).unwrap();
        let got: Vec<(bool, usize)> = e.iter().map(|e| (e.partial, e.content.len())).collect();
        assert_eq!(
            got,
            [
                (false, 3),
                (false, 3),
                (true, MAX_LINE),
                (false, 10),
                (false, 4)
            ]
        );
    }

    #[test]
    fn rotation_keeps_max_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0.log");
        let mut w = LogWriter::open(&p, 200, 3).unwrap();
        for i in 0..40 {
            w.write_entry(Stream::Stdout, false, format!("line {i}").as_bytes())
                .unwrap();
        }
        assert!(p.exists() && rotated(&p, 1).exists() && rotated(&p, 2).exists());
        assert!(!rotated(&p, 3).exists());
        for f in files_oldest_first(&p, 3) {
            assert!(fs::metadata(&f).unwrap().len() <= 200);
        }
        let all = read_all(&p, 3).unwrap();
        assert_eq!(all.last().unwrap().content, b"line 39");
        let nums: Vec<usize> = all
            .iter()
            .map(|e| String::from_utf8_lossy(&e.content)[5..].parse().unwrap())
            .collect();
        assert!(
            nums.windows(2).all(|w| w[1] == w[0] + 1),
            "in order: {nums:?}"
        );
    }
}
