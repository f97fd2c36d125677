//! The writer's counters: what the health check, the watchdog, `/metrics`, `status`
//! and the shutdown report read. The writer task (and its backend half) update them;
//! everyone else only reads. Each quantity is counted here once; `ops::metrics`
//! copies them into the Prometheus exposition at scrape time.

use super::batch::{Batch, Fate};
use super::latency::{LatencyHistogram, LatencySummary};
use crate::record::SourceName;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Counters shared between the writer task and whoever reports on it (metrics,
/// `/healthz`, the watchdog). Updated by the writer only.
#[derive(Debug)]
pub struct WriterStats {
    /// Records committed, per source and table: the one count behind the report's
    /// `written` and `rejected`, `wsvault_records_written_total` and
    /// `wsvault_writer_rejected_total`.
    pub committed: Committed,
    /// Committed transactions.
    pub batches: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
    /// Records that could not be written at all (force-stop, or a refused `rejected` row).
    pub lost: AtomicU64,
    /// Unix milliseconds of the last commit; 0 before the first.
    pub last_commit: AtomicI64,
    /// Text of the last failed attempt (never cleared, see `healthy`).
    pub last_error: Mutex<Option<String>>,
    /// False while a batch is being retried.
    pub healthy: AtomicBool,
    /// Unix milliseconds of the last failed attempt; 0 before the first. With
    /// `last_commit` it tells a writer that retries (database down) from a wedged one.
    pub last_retry: AtomicI64,
    /// Unix milliseconds since which the writer holds a batch it has not committed
    /// yet; 0 while it waits for records.
    pub busy_since: AtomicI64,
    /// Receipt (`received_at`) to commit latency of every committed record.
    pub latency: LatencyHistogram,
    /// SQLite WAL checkpoints run beside the writer (see `store/sqlite/checkpoint.rs`);
    /// stays 0 on PostgreSQL. Shared with the checkpoint task, hence the `Arc`.
    pub wal_checkpoints: Arc<AtomicU64>,
    /// How PostgreSQL batches went in (`COPY` or its fallback); zero on SQLite.
    pub copy: CopyOutcomes,
    queue: mpsc::WeakSender<super::batch::Queued>,
}

impl WriterStats {
    pub(super) fn new(queue: mpsc::WeakSender<super::batch::Queued>) -> Self {
        WriterStats {
            committed: Committed::default(),
            batches: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            last_commit: AtomicI64::new(0),
            last_error: Mutex::new(None),
            healthy: AtomicBool::new(true),
            last_retry: AtomicI64::new(0),
            busy_since: AtomicI64::new(0),
            latency: LatencyHistogram::default(),
            wal_checkpoints: Arc::default(),
            copy: CopyOutcomes::default(),
            queue,
        }
    }

    /// Records waiting in the queue now (0 once every sink is gone).
    pub fn queue_depth(&self) -> usize {
        self.queue
            .upgrade()
            .map(|tx| tx.max_capacity() - tx.capacity())
            .unwrap_or(0)
    }

    /// Whether the last attempt succeeded (false while a batch is being retried).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The last failure's text, if any attempt ever failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// Unix milliseconds of the last commit, `None` before the first.
    pub fn last_commit_unix_ms(&self) -> Option<i64> {
        Some(self.last_commit.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// p50/p99 of receipt-to-commit latency so far (benchmarks, shutdown log).
    pub fn latency(&self) -> LatencySummary {
        self.latency.summary()
    }

    /// Records committed to their own table so far (the report's `written`).
    pub fn written(&self) -> u64 {
        self.committed.written()
    }

    /// How PostgreSQL batches went in so far.
    pub fn copy_counts(&self) -> CopyCounts {
        self.copy.counts()
    }

    /// A snapshot of the counters.
    pub fn report(&self) -> WriterReport {
        WriterReport {
            written: self.committed.written(),
            batches: self.batches.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rejected: self.committed.rejected(),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }

    /// Accounts a committed batch: its records by fate and table, the batch, the
    /// receipt-to-commit latency of every stored record, and a healthy writer.
    pub(super) fn account(&self, batch: &Batch) {
        self.committed.add(batch);
        self.lost
            .fetch_add(batch.count(Fate::Dropped), Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        for (record, fate) in batch.records.iter().zip(&batch.fates) {
            if super::batch::is_written(*fate) {
                let waited = now - record.received_at().timestamp_micros();
                self.latency.record_n(waited, 1);
            }
        }
        self.last_commit.store(now / 1000, Ordering::Relaxed);
        self.healthy.store(true, Ordering::Relaxed);
    }

    pub(super) fn set_error(&self, text: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(text);
        }
    }
}

/// What the writer did over its life, returned by [`super::WriterHandle::join`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterReport {
    /// Records committed to their own table.
    pub written: u64,
    /// Committed transactions.
    pub batches: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Records refused by the database and stored in `rejected` instead.
    pub rejected: u64,
    /// Records that could not be written at all; always logged with the count.
    pub lost: u64,
}

/// Committed records per `(source, table)`: a record stored in its own table counts
/// under its table, one the database refused under `rejected` (its replacement row).
///
/// The writer adds one batch at a time (tallied first, then one lock), so the
/// per-table counts and the totals always agree; the totals read without the lock.
#[derive(Debug, Default)]
pub struct Committed {
    written: AtomicU64,
    rejected: AtomicU64,
    by_table: Mutex<Vec<(SourceName, &'static str, u64)>>,
}

impl Committed {
    /// Counts the records of a committed batch that were stored (not dropped).
    fn add(&self, batch: &Batch) {
        let mut tally: Vec<(&SourceName, &'static str, u64)> = Vec::new();
        for (r, fate) in batch.records.iter().zip(&batch.fates) {
            if !super::batch::is_written(*fate) {
                continue;
            }
            let (source, kind) = (r.source_name(), r.kind());
            match tally.iter_mut().find(|t| t.0 == source && t.1 == kind) {
                Some(t) => t.2 += 1,
                None => tally.push((source, kind, 1)),
            }
        }
        let mut all = self.by_table.lock().unwrap_or_else(PoisonError::into_inner);
        for (source, kind, n) in tally {
            match all.iter_mut().find(|t| &t.0 == source && t.1 == kind) {
                Some(t) => t.2 += n,
                None => all.push((source.clone(), kind, n)),
            }
        }
        drop(all);
        self.written
            .fetch_add(batch.count(Fate::Pending), Ordering::Relaxed);
        self.rejected
            .fetch_add(batch.count(Fate::Substituted), Ordering::Relaxed);
    }

    /// Records committed to their own table.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Records refused by the database and stored in `rejected` instead.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// `(source, table, records)` for every pair with committed rows, in the order
    /// they first appeared.
    pub fn by_table(&self) -> Vec<(SourceName, &'static str, u64)> {
        self.by_table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// How PostgreSQL batches went in. A steady share of refusals means duplicates keep
/// arriving (two daemons on one account, a source that re-sends everything):
/// correct, but each such batch is written twice.
#[derive(Debug, Default)]
pub struct CopyOutcomes {
    copied: AtomicU64,
    refused: AtomicU64,
}

impl CopyOutcomes {
    /// The server took a batch by `COPY`.
    pub(super) fn copied(&self) {
        self.copied.fetch_add(1, Ordering::Relaxed);
    }

    /// The server refused a batch by `COPY`; it was written with `ON CONFLICT`.
    pub(super) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn counts(&self) -> CopyCounts {
        CopyCounts {
            copied: self.copied.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of [`CopyOutcomes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyCounts {
    /// Batches whose high-volume tables went in by `COPY`.
    pub copied: u64,
    /// Batches the server refused by `COPY`, then written with `ON CONFLICT`.
    pub refused: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, Rejected, Traffic};

    pub(super) fn traffic(source: &str) -> Record {
        Record::Traffic(Traffic {
            id: crate::ids::next_id(),
            source: source.into(),
            connection_id: None,
            at: chrono::Utc::now(),
            direction: "received".into(),
            payload: "x".into(),
        })
    }

    #[test]
    fn committed_counts_each_stored_record_once_by_source_and_table() {
        let mut batch = Batch {
            records: vec![traffic("a"), traffic("b"), traffic("a"), traffic("a")],
            ..Batch::default()
        };
        batch.reset_fates();
        // Record 2 was refused and stored as its `rejected` row; record 3 was lost.
        batch.records[2] = Rejected::of(&batch.records[2], "refused");
        batch.fates[2] = Fate::Substituted;
        batch.fates[3] = Fate::Dropped;
        let c = Committed::default();
        c.add(&batch);
        c.add(&batch);
        assert_eq!((c.written(), c.rejected()), (4, 2));
        let by: Vec<(String, &str, u64)> = c
            .by_table()
            .into_iter()
            .map(|(s, k, n)| (s.to_string(), k, n))
            .collect();
        assert_eq!(
            by,
            [
                ("a".to_string(), "traffic", 2),
                ("b".to_string(), "traffic", 2),
                ("a".to_string(), "rejected", 2),
            ]
        );
    }
}

#[cfg(test)]
mod lease_tests {
    use super::*;
    use crate::store::batch::Queued;

    fn queued(source: &str, term: Option<i64>) -> Queued {
        Queued {
            record: super::tests::traffic(source),
            term,
        }
    }

    #[test]
    fn fencing_one_lease_term_leaves_the_other_terms_of_the_source_alone() {
        let mut items = vec![
            queued("a", Some(1)),
            queued("a", Some(2)),
            queued("b", None),
            queued("a", Some(1)),
        ];
        let mut batch = Batch::default();
        batch.take(&mut items);
        assert!(items.is_empty());
        batch.reset_fates();
        assert_eq!(
            batch.live_leases(),
            [
                ("a".to_string(), Some(1)),
                ("a".to_string(), Some(2)),
                ("b".to_string(), None)
            ]
        );
        assert_eq!(batch.fence_lease("a", Some(1)), 2);
        assert_eq!(
            batch.fates,
            [Fate::Fenced, Fate::Pending, Fate::Pending, Fate::Fenced]
        );
        assert_eq!(
            batch.live_leases(),
            [("a".to_string(), Some(2)), ("b".to_string(), None)]
        );
        batch.clear();
        assert!(batch.terms.is_empty() && batch.records.is_empty());
    }
}
