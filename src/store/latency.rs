//! Commit latency: how long records wait between frame receipt (`received_at`) and
//! the commit of the transaction that stored them.
//!
//! A fixed-bucket histogram of atomic counters, so the writer can record every
//! committed record with one subtraction and one relaxed increment, and readers
//! (the shutdown log line, benchmarks, metrics) can take percentiles at any time
//! without locks. A percentile is reported as the upper bound of the bucket it falls
//! in, so it never understates. This module never touches the database or the clock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the buckets, in microseconds; a last, open bucket holds the rest.
/// Dense where targets sit (1–500 ms), coarse beyond.
const BOUNDS_US: [u64; 36] = [
    250, 500, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000, 12_500, 15_000, 20_000,
    25_000, 30_000, 40_000, 50_000, 60_000, 80_000, 100_000, 125_000, 150_000, 200_000, 250_000,
    300_000, 400_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000, 3_000_000, 5_000_000,
    10_000_000, 30_000_000, 60_000_000,
];

/// Receipt-to-commit latency of every record the writer committed.
#[derive(Debug)]
pub struct LatencyHistogram {
    counts: [AtomicU64; BOUNDS_US.len() + 1],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Percentiles of a [`LatencyHistogram`], in milliseconds (bucket upper bounds;
/// `None` for the open bucket above the last bound).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencySummary {
    /// Records counted.
    pub count: u64,
    /// Median, in ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, in ms.
    pub p99_ms: Option<f64>,
    /// Largest bucket bound with a record in it, in ms.
    pub max_ms: Option<f64>,
}

impl LatencyHistogram {
    /// Counts `n` records that waited `micros` (negative clock steps count as 0).
    pub fn record_n(&self, micros: i64, n: u64) {
        let us = micros.max(0) as u64;
        let idx = BOUNDS_US.partition_point(|b| *b < us);
        self.counts[idx].fetch_add(n, Ordering::Relaxed);
    }

    /// The bucket bound (ms) below which a `q` (0..=1) share of the records fall.
    fn quantile(&self, snapshot: &[u64], total: u64, q: f64) -> Option<f64> {
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in snapshot.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return BOUNDS_US.get(i).map(|b| *b as f64 / 1000.0);
            }
        }
        None
    }

    /// p50, p99 and max so far.
    pub fn summary(&self) -> LatencySummary {
        let snapshot: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = snapshot.iter().sum();
        if total == 0 {
            return LatencySummary::default();
        }
        let max_ms = snapshot
            .iter()
            .rposition(|c| *c > 0)
            .and_then(|i| BOUNDS_US.get(i))
            .map(|b| *b as f64 / 1000.0);
        LatencySummary {
            count: total,
            p50_ms: self.quantile(&snapshot, total, 0.50),
            p99_ms: self.quantile(&snapshot, total, 0.99),
            max_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_upper_bounds() {
        let h = LatencyHistogram::default();
        assert_eq!(h.summary().count, 0);
        h.record_n(700, 98); // 0.7 ms -> bucket (0.5, 1] ms
        h.record_n(45_000, 1); // 45 ms -> (40, 50]
        h.record_n(-5, 1); // clock step: counted as 0
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, Some(1.0));
        assert_eq!(s.p99_ms, Some(1.0));
        assert_eq!(s.max_ms, Some(50.0));
        h.record_n(45_000, 10);
        assert_eq!(h.summary().p99_ms, Some(50.0));
    }

    #[test]
    fn beyond_the_last_bound_is_open() {
        let h = LatencyHistogram::default();
        h.record_n(90_000_000, 1);
        let s = h.summary();
        assert_eq!((s.count, s.p50_ms, s.max_ms), (1, None, None));
    }
}
