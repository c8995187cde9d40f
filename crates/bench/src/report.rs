//! The benchmark's figures, checked against the targets and printed as a
//! table (or serialized as JSON).

use std::fmt;

use serde::Serialize;

use crate::stats::Summary;

/// Pod creates/s at or above this, at the high concurrency…
pub const TARGET_CREATES_PER_SEC: f64 = 3_000.0;
/// …with p99 latency below this (ms).
pub const TARGET_CREATE_P99_MS: f64 = 50.0;
/// The concurrency the create target applies to.
pub const TARGET_CREATE_CONCURRENCY: usize = 64;
/// LIST of this many pods…
pub const TARGET_LIST_PODS: usize = 100_000;
/// …in less than this (ms, median of the samples).
pub const TARGET_LIST_MS: f64 = 2_000.0;
/// Idle resident memory of the server below this (bytes; 40 MB).
pub const TARGET_IDLE_RSS: u64 = 40_000_000;

/// Bare sync rates of the disk holding the data.
#[derive(Clone, Debug, Serialize)]
pub struct DiskFigures {
    pub fsync_per_sec: f64,
    pub fdatasync_per_sec: f64,
}

/// Durable puts of one store at one concurrency.
#[derive(Clone, Debug, Serialize)]
pub struct PutFigures {
    /// "embedded" or "etcd <version>".
    pub system: String,
    pub concurrency: usize,
    pub puts: usize,
    pub value_size: usize,
    pub puts_per_sec: f64,
    pub latency: Summary,
}

/// Pod creates through the API.
#[derive(Clone, Debug, Serialize)]
pub struct CreateFigures {
    pub concurrency: usize,
    pub created: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub per_sec: f64,
    pub latency: Summary,
}

/// Single-pod GETs.
#[derive(Clone, Debug, Serialize)]
pub struct GetFigures {
    pub per_sec: f64,
    pub latency: Summary,
}

/// Full LISTs of a namespace holding `pods` pods.
#[derive(Clone, Debug, Serialize)]
pub struct ListFigures {
    pub pods: usize,
    /// Size of the response body.
    pub bytes: usize,
    pub latency: Summary,
}

/// Watch fan-out delays.
#[derive(Clone, Debug, Serialize)]
pub struct WatchFigures {
    pub watchers: usize,
    /// Pods the writer created.
    pub events: usize,
    /// The writer's achieved rate (events/s).
    pub write_rate: f64,
    /// Events received over all watchers (ideally watchers × events).
    pub deliveries: usize,
    pub missed: usize,
    pub from_write_start: Summary,
    pub from_write_ack: Summary,
    pub write_latency: Summary,
}

/// Resident memory of the server process.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MemoryFigures {
    pub rss_bytes: u64,
    pub peak_bytes: u64,
    /// Pods stored when measured.
    pub pods: usize,
}

/// CPU used during one phase, to tell a CPU-bound server from a waiting one.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseCpu {
    pub phase: String,
    pub seconds: f64,
    /// CPU-seconds of the server process (None in-process).
    pub server_cpu_secs: Option<f64>,
    /// CPU-seconds of the benchmark process (the clients; in-process, the server too).
    pub bench_cpu_secs: Option<f64>,
    /// CPU-seconds of the whole machine: what is neither server nor benchmark is
    /// other load that skews the figures.
    pub machine_cpu_secs: Option<f64>,
    /// Operations done in the phase.
    pub ops: usize,
}

/// Everything one benchmark run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// "full", "quick" or "custom".
    pub profile: String,
    /// How the API server ran.
    pub server: String,
    pub work_dir: String,
    pub seconds: f64,
    /// `/proc/loadavg` (1, 5, 15 min) when the run started and ended.
    pub load_average_before: Option<String>,
    pub load_average_after: Option<String>,
    pub disk: Option<DiskFigures>,
    pub store: Vec<PutFigures>,
    /// Why etcd was not measured, if it was not.
    pub etcd_skipped: Option<String>,
    pub creates: Vec<CreateFigures>,
    pub get: Option<GetFigures>,
    pub watch: Option<WatchFigures>,
    /// The creates that filled the namespace up to each LIST size.
    pub fills: Vec<CreateFigures>,
    pub lists: Vec<ListFigures>,
    pub memory_idle: Option<MemoryFigures>,
    pub memory_loaded: Option<MemoryFigures>,
    pub cpu: Vec<PhaseCpu>,
}

/// The verdict on one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
        })
    }
}

fn verdict(ok: bool) -> Option<Verdict> {
    Some(if ok { Verdict::Met } else { Verdict::Missed })
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub what: String,
    pub result: String,
    pub target: String,
    pub verdict: Option<Verdict>,
}

fn row(what: impl Into<String>, result: impl Into<String>) -> Row {
    Row {
        what: what.into(),
        result: result.into(),
        target: String::new(),
        verdict: None,
    }
}

fn lat(s: &Summary) -> String {
    format!(
        "p50 {} p99 {} max {}",
        ms(s.p50_ms),
        ms(s.p99_ms),
        ms(s.max_ms)
    )
}

/// Milliseconds with a precision suited to their size.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// Bytes in decimal megabytes.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A count in thousands when round, as the issue names sizes ("10k").
pub fn count(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

impl Report {
    /// The table's rows, targets checked.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        if let Some(d) = &self.disk {
            rows.push(row("disk fsync", format!("{:.0} /s", d.fsync_per_sec)));
            rows.push(row(
                "disk fdatasync",
                format!("{:.0} /s", d.fdatasync_per_sec),
            ));
        }
        let mut concurrencies: Vec<usize> = self.store.iter().map(|p| p.concurrency).collect();
        concurrencies.dedup();
        for c in concurrencies {
            let at: Vec<&PutFigures> = self.store.iter().filter(|p| p.concurrency == c).collect();
            for p in &at {
                rows.push(row(
                    format!("store put c={c} {} ({} B)", p.system, p.value_size),
                    format!("{:.0} /s  {}", p.puts_per_sec, lat(&p.latency)),
                ));
            }
            let embedded = at.iter().find(|p| p.system == "embedded");
            let etcd = at.iter().find(|p| p.system.starts_with("etcd"));
            if let (Some(e), Some(o)) = (embedded, etcd)
                && o.puts_per_sec > 0.0
            {
                let ratio = e.puts_per_sec / o.puts_per_sec;
                rows.push(Row {
                    what: format!("store put c={c} embedded/etcd"),
                    result: format!("{ratio:.2}x"),
                    target: "≥ 1.00x".into(),
                    verdict: verdict(ratio >= 1.0),
                });
            }
        }
        if let Some(why) = &self.etcd_skipped {
            rows.push(row("store put etcd", format!("not measured: {why}")));
        }
        for c in &self.creates {
            let mut r = row(
                format!("pod create c={}", c.concurrency),
                format!(
                    "{:.0} /s  {}{}",
                    c.per_sec,
                    lat(&c.latency),
                    if c.errors > 0 {
                        format!("  {} ERRORS", c.errors)
                    } else {
                        String::new()
                    }
                ),
            );
            if c.concurrency == TARGET_CREATE_CONCURRENCY {
                r.target =
                    format!("≥ {TARGET_CREATES_PER_SEC:.0} /s, p99 < {TARGET_CREATE_P99_MS:.0} ms");
                r.verdict = verdict(
                    c.errors == 0
                        && c.per_sec >= TARGET_CREATES_PER_SEC
                        && c.latency.p99_ms < TARGET_CREATE_P99_MS,
                );
            }
            rows.push(r);
        }
        if let Some(g) = &self.get {
            rows.push(row(
                format!("pod GET c=1 ({} samples)", g.latency.samples),
                format!("{:.0} /s  {}", g.per_sec, lat(&g.latency)),
            ));
        }
        if let Some(w) = &self.watch {
            let name = format!("watch {} watchers x {} events", w.watchers, count(w.events));
            rows.push(row(
                format!("{name} (from write start)"),
                lat(&w.from_write_start),
            ));
            rows.push(row(
                format!("{name} (after write ack)"),
                format!(
                    "{}  ({} delivered, {} missed, writer {:.0} /s)",
                    lat(&w.from_write_ack),
                    w.deliveries,
                    w.missed,
                    w.write_rate
                ),
            ));
        }
        for f in &self.fills {
            rows.push(row(
                format!("pod create c={} (fill)", f.concurrency),
                format!(
                    "{} pods {:.0} /s  {}{}",
                    f.created,
                    f.per_sec,
                    lat(&f.latency),
                    if f.errors > 0 {
                        format!("  {} ERRORS", f.errors)
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        for l in &self.lists {
            let mut r = row(
                format!("pod LIST {} ({} samples)", count(l.pods), l.latency.samples),
                format!(
                    "median {} max {}  ({})",
                    ms(l.latency.p50_ms),
                    ms(l.latency.max_ms),
                    mb(l.bytes as u64)
                ),
            );
            if l.pods == TARGET_LIST_PODS {
                r.target = format!("< {:.0} s", TARGET_LIST_MS / 1e3);
                r.verdict = verdict(l.latency.p50_ms < TARGET_LIST_MS);
            }
            rows.push(r);
        }
        if let Some(m) = &self.memory_idle {
            rows.push(Row {
                what: "server RSS idle".into(),
                result: format!("{}  (peak {})", mb(m.rss_bytes), mb(m.peak_bytes)),
                target: format!("< {}", mb(TARGET_IDLE_RSS)),
                verdict: verdict(m.rss_bytes < TARGET_IDLE_RSS),
            });
        }
        if let Some(m) = &self.memory_loaded {
            rows.push(row(
                format!("server RSS with {} pods", count(m.pods)),
                format!("{}  (peak {})", mb(m.rss_bytes), mb(m.peak_bytes)),
            ));
        }
        rows
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "flotilla bench ({}): {}; work dir {}; {:.0} s; load average {} before, {} after",
            self.profile,
            self.server,
            self.work_dir,
            self.seconds,
            self.load_average_before.as_deref().unwrap_or("?"),
            self.load_average_after.as_deref().unwrap_or("?"),
        )?;
        let rows = self.rows();
        let w0 = rows
            .iter()
            .map(|r| r.what.chars().count())
            .max()
            .unwrap_or(0);
        let w1 = rows
            .iter()
            .map(|r| r.result.chars().count())
            .max()
            .unwrap_or(0);
        let w2 = rows
            .iter()
            .map(|r| r.target.chars().count())
            .max()
            .unwrap_or(0)
            .max("target".len());
        writeln!(
            f,
            "{:w0$}  {:w1$}  {:w2$}  verdict",
            "measurement", "result", "target"
        )?;
        for r in &rows {
            let verdict = r.verdict.map(|v| v.to_string()).unwrap_or_default();
            writeln!(
                f,
                "{:w0$}  {:w1$}  {:w2$}  {verdict}",
                r.what, r.result, r.target
            )?;
        }
        if !self.cpu.is_empty() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            writeln!(
                f,
                "CPU per phase ({cores} cores shared by server and clients):"
            )?;
            for c in &self.cpu {
                let pct = |cpu: Option<f64>| {
                    cpu.map_or("-".to_string(), |v| {
                        format!("{:.0}%", 100.0 * v / c.seconds.max(1e-9))
                    })
                };
                let per_op = |cpu: Option<f64>| {
                    cpu.filter(|_| c.ops > 0).map_or("-".to_string(), |v| {
                        format!("{:.0} µs", 1e6 * v / c.ops as f64)
                    })
                };
                let others = match (c.machine_cpu_secs, c.server_cpu_secs, c.bench_cpu_secs) {
                    (Some(m), s, Some(b)) => Some((m - s.unwrap_or(0.0) - b).max(0.0)),
                    _ => None,
                };
                writeln!(
                    f,
                    "  {:34} {:>7.1} s  server {:>5} ({:>8}/op)  bench {:>5} ({:>8}/op)  other processes {:>5}",
                    c.phase,
                    c.seconds,
                    pct(c.server_cpu_secs),
                    per_op(c.server_cpu_secs),
                    pct(c.bench_cpu_secs),
                    per_op(c.bench_cpu_secs),
                    pct(others),
                )?;
            }
        }
        for c in self.creates.iter().chain(&self.fills) {
            if let Some(e) = &c.first_error {
                writeln!(f, "first create error at c={}: {e}", c.concurrency)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(p50: f64, p99: f64) -> Summary {
        Summary {
            samples: 100,
            p50_ms: p50,
            p99_ms: p99,
            max_ms: p99,
        }
    }

    fn create(concurrency: usize, per_sec: f64, p99: f64, errors: usize) -> CreateFigures {
        CreateFigures {
            concurrency,
            created: 1000,
            errors,
            first_error: None,
            seconds: 1.0,
            per_sec,
            latency: summary(1.0, p99),
        }
    }

    fn verdict_of(report: &Report, prefix: &str) -> Option<Verdict> {
        report
            .rows()
            .into_iter()
            .find(|r| r.what.starts_with(prefix))
            .and_then(|r| r.verdict)
    }

    #[test]
    fn create_target_needs_rate_latency_and_no_errors() {
        let cases = [
            (create(64, 3500.0, 40.0, 0), Some(Verdict::Met)),
            (create(64, 2999.0, 40.0, 0), Some(Verdict::Missed)),
            (create(64, 3500.0, 50.0, 0), Some(Verdict::Missed)),
            (create(64, 3500.0, 40.0, 1), Some(Verdict::Missed)),
            (create(1, 100.0, 400.0, 0), None),
        ];
        for (figures, want) in cases {
            let report = Report {
                creates: vec![figures.clone()],
                ..Default::default()
            };
            assert_eq!(verdict_of(&report, "pod create"), want, "{figures:?}");
        }
    }

    #[test]
    fn list_memory_and_store_targets() {
        let list = |pods, p50| ListFigures {
            pods,
            bytes: 1,
            latency: summary(p50, p50),
        };
        let put = |system: &str, c, per_sec| PutFigures {
            system: system.into(),
            concurrency: c,
            puts: 10,
            value_size: 1024,
            puts_per_sec: per_sec,
            latency: summary(1.0, 1.0),
        };
        let report = Report {
            lists: vec![list(10_000, 5_000.0), list(100_000, 1_999.0)],
            memory_idle: Some(MemoryFigures {
                rss_bytes: 40_000_000,
                peak_bytes: 50_000_000,
                pods: 0,
            }),
            store: vec![
                put("embedded", 1, 100.0),
                put("etcd 3.4.23", 1, 200.0),
                put("embedded", 64, 9000.0),
                put("etcd 3.4.23", 64, 3000.0),
            ],
            ..Default::default()
        };
        assert_eq!(verdict_of(&report, "pod LIST 10k"), None);
        assert_eq!(verdict_of(&report, "pod LIST 100k"), Some(Verdict::Met));
        assert_eq!(
            verdict_of(&report, "server RSS idle"),
            Some(Verdict::Missed)
        );
        assert_eq!(
            verdict_of(&report, "store put c=1 embedded/etcd"),
            Some(Verdict::Missed)
        );
        assert_eq!(
            verdict_of(&report, "store put c=64 embedded/etcd"),
            Some(Verdict::Met)
        );
        let text = report.to_string();
        assert!(text.contains("3.00x"), "{text}");
        assert!(text.contains("0.50x"), "{text}");
    }

    #[test]
    fn formats_units() {
        let cases: &[(f64, &str)] = &[(0.123, "0.12 ms"), (12.34, "12.3 ms"), (1234.4, "1234 ms")];
        for &(v, want) in cases {
            assert_eq!(ms(v), want);
        }
        assert_eq!(mb(38_500_000), "38.5 MB");
        assert_eq!(count(100_000), "100k");
        assert_eq!(count(1_500), "1500");
    }
}
