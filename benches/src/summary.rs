//! Latency percentiles from individually timed operations.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Percentiles of a set of latencies, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of timed operations.
    pub n: usize,
    /// Fastest.
    pub min_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Summary {
    /// Summarises `samples` (any order); `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let mean = us.iter().sum::<f64>() / us.len() as f64;
        Some(Summary {
            n: us.len(),
            min_us: us[0],
            p50_us: percentile(&us, 50.0),
            p90_us: percentile(&us, 90.0),
            p99_us: percentile(&us, 99.0),
            p999_us: percentile(&us, 99.9),
            max_us: us[us.len() - 1],
            mean_us: mean,
        })
    }

    /// As a JSON value (`null` for no samples).
    pub fn json(samples: &[Duration]) -> serde_json::Value {
        serde_json::to_value(Summary::of(samples)).unwrap_or(serde_json::Value::Null)
    }
}

/// The `q`-th percentile of sorted values, interpolated linearly between ranks (numpy's
/// default, so that Rust and Python tables agree on the method).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Runs `op` `iters` times, timing each run alone (its result is dropped untimed), adds
/// every time to `samples` and returns the total, as criterion's `iter_custom` wants.
pub fn timed<T>(iters: u64, samples: &mut Vec<Duration>, mut op: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let started = Instant::now();
        let result = black_box(op());
        let took = started.elapsed();
        drop(result);
        samples.push(took);
        total += took;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let samples: Vec<Duration> = (1..=5).map(Duration::from_micros).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!((s.n, s.min_us, s.p50_us, s.max_us), (5, 1.0, 3.0, 5.0));
        assert!((s.p90_us - 4.6).abs() < 1e-9);
        assert!(Summary::of(&[]).is_none());
    }
}
