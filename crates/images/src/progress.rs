//! Progress reporting for long pulls and imports, and a terminal printer for the CLI.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A snapshot of how far a pull or import has got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgressState {
    /// What is being done (`pulling docker.io/library/busybox:latest`, `unpacking`…).
    pub phase: String,
    /// Bytes transferred or copied so far (skipped, already present blobs count as done).
    pub bytes_done: u64,
    /// Bytes expected in all (0 when unknown).
    pub bytes_total: u64,
    /// Layers fetched (or found present) and unpacked so far.
    pub layers_done: usize,
    /// Layers of the image.
    pub layers_total: usize,
}

/// Receives progress updates. Called often (per chunk): implementations must be cheap.
pub trait Progress: Send + Sync {
    /// The state changed.
    fn update(&self, state: &ProgressState);
    /// The operation finished (successfully or not).
    fn finish(&self, _state: &ProgressState) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _: &ProgressState) {}
}

/// Human-readable byte count (`1.5 MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One status line: `pulling x  layers 2/5  12.0 MiB / 40.0 MiB (30%)`.
pub fn format_line(s: &ProgressState) -> String {
    let pct = (s.bytes_done.min(s.bytes_total) * 100).checked_div(s.bytes_total);
    let bytes = if let Some(pct) = pct {
        format!(
            "{} / {} ({pct}%)",
            human_bytes(s.bytes_done),
            human_bytes(s.bytes_total)
        )
    } else {
        human_bytes(s.bytes_done)
    };
    format!(
        "{}  layers {}/{}  {bytes}",
        s.phase, s.layers_done, s.layers_total
    )
}

/// Redraws one line on stderr when it is a terminal (at most every 100 ms); prints
/// nothing per chunk otherwise, and a final line in both cases.
pub struct TerminalProgress {
    tty: bool,
    last: Mutex<Option<Instant>>,
}

impl TerminalProgress {
    /// A printer on stderr.
    pub fn stderr() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
        }
    }
}

impl Progress for TerminalProgress {
    fn update(&self, state: &ProgressState) {
        if !self.tty {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
            return;
        }
        *last = Some(now);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", format_line(state));
        let _ = err.flush();
    }

    fn finish(&self, state: &ProgressState) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{}", format_line(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
        let s = ProgressState {
            phase: "pulling x".into(),
            bytes_done: 1024 * 1024,
            bytes_total: 4 * 1024 * 1024,
            layers_done: 1,
            layers_total: 2,
        };
        assert_eq!(
            format_line(&s),
            "pulling x  layers 1/2  1.0 MiB / 4.0 MiB (25%)"
        );
    }
}
