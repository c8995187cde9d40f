//! Latency summaries: nearest-rank percentiles of a set of samples.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of latency samples, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The nearest-rank `q` quantile (0 < q ≤ 1) of `sorted` (ascending); zero when empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sort `samples` and summarize them.
pub fn summarize(samples: &mut [Duration]) -> Summary {
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Summary {
        samples: samples.len(),
        p50_ms: ms(quantile(samples, 0.50)),
        p99_ms: ms(quantile(samples, 0.99)),
        max_ms: ms(samples.last().copied().unwrap_or_default()),
    }
}

/// Operations per second; zero for an empty interval.
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_quantiles() {
        let hundred: Vec<u64> = (1..=100).collect();
        let cases: &[(&[u64], f64, u64)] = &[
            (&[], 0.5, 0),
            (&[7], 0.5, 7),
            (&[7], 0.99, 7),
            (&[1, 2], 0.5, 1),
            (&[1, 2], 0.99, 2),
            (&[1, 2, 3, 4], 0.5, 2),
            (&hundred, 0.5, 50),
            (&hundred, 0.99, 99),
            (&hundred, 1.0, 100),
            (&hundred, 0.001, 1),
        ];
        for &(samples, q, want) in cases {
            assert_eq!(
                quantile(&ms(samples), q),
                Duration::from_millis(want),
                "q{q} of {samples:?}"
            );
        }
    }

    #[test]
    fn summary_sorts() {
        let mut s = ms(&[30, 10, 20, 40]);
        let sum = summarize(&mut s);
        assert_eq!(sum.samples, 4);
        assert_eq!(sum.p50_ms, 20.0);
        assert_eq!(sum.p99_ms, 40.0);
        assert_eq!(sum.max_ms, 40.0);
        assert_eq!(summarize(&mut []), Summary::default());
    }

    #[test]
    fn rates() {
        assert_eq!(rate(10, Duration::from_secs(2)), 5.0);
        assert_eq!(rate(10, Duration::ZERO), 0.0);
    }
}
