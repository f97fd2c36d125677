//! The batching writer: the only path from records to the database.
//!
//! Sessions push [`Record`]s into a bounded queue through a [`RecordSink`]; a full
//! queue makes `send` wait, which is the back-pressure of ARCHITECTURE.md §1.
//! One task takes records off the queue and commits them in batches, one transaction
//! each, when a batch reaches `batch_size` records or `flush_interval` after its
//! first record. A retriable failure retries the *same* batch with capped
//! exponential backoff while the queue absorbs new records; a permanent failure
//! rewrites the batch record by record so only the refused records go to `rejected`.
//! On shutdown (every sink dropped) the queue is drained before the task ends.
//! This module must never drop a record silently: whatever cannot be written is
//! counted in [`WriterStats::lost`] and logged with the count.

use super::batch::{Batch, Fate};
use super::classify::{ErrorClass, classify};
use super::latency::{LatencyHistogram, LatencySummary};
use super::sqlite::checkpoint::Checkpointer;
use super::{HeldConnection, Store};
use crate::config::StorageConfig;
use crate::record::Record;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// First retry delay; doubles per failed attempt up to `retry_max`.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// After `force_stop`, one attempt per batch, and no longer than this.
const QUICK_ATTEMPT: Duration = Duration::from_secs(2);

/// Starts the writer task.
pub struct Writer;

impl Writer {
    /// Spawns the writer on the current tokio runtime and returns the sending half
    /// (clone it per session) and the handle to watch, force-stop and join it.
    pub fn spawn(store: Store, cfg: &StorageConfig) -> (RecordSink, WriterHandle) {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let (force_tx, force_rx) = watch::channel(false);
        let stats = Arc::new(WriterStats::new(tx.downgrade()));
        let settings = Settings {
            batch_size: cfg.batch_size.max(1),
            flush_interval: cfg.flush_interval,
            retry_max: cfg.retry_max.max(Duration::from_millis(1)),
        };
        let task = tokio::spawn(run(store, rx, settings, stats.clone(), force_rx));
        (
            RecordSink { tx },
            WriterHandle {
                task,
                stats,
                force: force_tx,
            },
        )
    }
}

/// `send` failed: the writer has stopped (force-stopped or ended); the record was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the storage writer has stopped; the record was not queued")]
pub struct WriterClosed;

/// The sending half of the writer's queue. Cloned into every session; the writer
/// finishes once every clone is dropped and the queue is drained.
///
/// Being the only way into the queue, it is where every record gets every known
/// secret masked ([`crate::redact::secrets`]), whichever code built it and whatever
/// the server echoed into it; the masking runs on the sending session's task, so
/// sources share the cost instead of the single writer task paying it.
#[derive(Clone, Debug)]
pub struct RecordSink {
    tx: mpsc::Sender<Record>,
}

impl RecordSink {
    /// Queues one record, waiting while the queue is full (back-pressure: the caller
    /// stops reading its socket meanwhile). Fails only when the writer has stopped.
    pub async fn send(&self, mut r: Record) -> Result<(), WriterClosed> {
        crate::redact::secrets::record(&mut r);
        self.tx.send(r).await.map_err(|_| WriterClosed)
    }

    /// Queues `r` if there is room now (`Ok(None)`); hands it back when the queue is
    /// full (`Ok(Some(r))`), so a session can keep it and stay responsive
    /// (heartbeats, commands) meanwhile.
    pub fn try_send(&self, mut r: Record) -> Result<Option<Record>, WriterClosed> {
        crate::redact::secrets::record(&mut r);
        match self.tx.try_send(r) {
            Ok(()) => Ok(None),
            Err(TrySendError::Full(r)) => Ok(Some(r)),
            Err(TrySendError::Closed(_)) => Err(WriterClosed),
        }
    }

    /// Waits for room for one record. Cancel-safe (unlike a pending `send`, which
    /// owns its record), so a session can wait for room inside a `select!`.
    pub async fn reserve(&self) -> Result<SinkPermit<'_>, WriterClosed> {
        self.tx
            .reserve()
            .await
            .map(SinkPermit)
            .map_err(|_| WriterClosed)
    }

    /// Records queued and not yet taken by the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The queue's capacity (`queue_capacity`), so a low-priority producer (the
    /// backfill) can keep to a share of it and leave the rest to live records.
    pub fn queue_capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Whether the writer has stopped (nothing sent now would be stored).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Room for one record in the writer's queue (see [`RecordSink::reserve`]).
pub struct SinkPermit<'a>(mpsc::Permit<'a, Record>);

impl SinkPermit<'_> {
    /// Queues `r` in the reserved room, secrets masked like [`RecordSink::send`].
    pub fn send(self, mut r: Record) {
        crate::redact::secrets::record(&mut r);
        self.0.send(r);
    }
}

/// Counters shared between the writer task and whoever reports on it (metrics,
/// `/healthz`, the watchdog). Updated by the writer only.
#[derive(Debug)]
pub struct WriterStats {
    /// Records committed to their own table (duplicates ignored by the database count too).
    pub written: AtomicU64,
    /// Committed transactions.
    pub batches: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
    /// Records the database refused, stored in `rejected` instead.
    pub rejected: AtomicU64,
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
    queue: mpsc::WeakSender<Record>,
}

impl WriterStats {
    fn new(queue: mpsc::WeakSender<Record>) -> Self {
        WriterStats {
            written: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            last_commit: AtomicI64::new(0),
            last_error: Mutex::new(None),
            healthy: AtomicBool::new(true),
            last_retry: AtomicI64::new(0),
            busy_since: AtomicI64::new(0),
            latency: LatencyHistogram::default(),
            wal_checkpoints: Arc::default(),
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

    /// A snapshot of the counters.
    pub fn report(&self) -> WriterReport {
        WriterReport {
            written: self.written.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }

    fn set_error(&self, text: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(text);
        }
    }
}

/// What the writer did over its life, returned by [`WriterHandle::join`].
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

/// Controls a running writer.
#[derive(Debug)]
pub struct WriterHandle {
    task: JoinHandle<WriterReport>,
    stats: Arc<WriterStats>,
    force: watch::Sender<bool>,
}

impl WriterHandle {
    /// The live counters.
    pub fn stats(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    /// The second shutdown signal: stop retrying, refuse new records, give every
    /// queued batch at most one quick attempt, count the rest as lost, and exit.
    pub fn force_stop(&self) {
        self.force.send_replace(true);
    }

    /// A cloneable [`WriterHandle::force_stop`] for a signal watcher that must be
    /// able to cut a drain short while another task awaits [`WriterHandle::join`].
    pub fn force_trigger(&self) -> ForceStop {
        ForceStop(self.force.clone())
    }

    /// Waits until the writer has finished: after every [`RecordSink`] is dropped
    /// and the queue is drained (or after `force_stop`).
    pub async fn join(self) -> WriterReport {
        match self.task.await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "storage writer task failed");
                self.stats.report()
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    batch_size: usize,
    flush_interval: Duration,
    retry_max: Duration,
}

/// Resolves once `force_stop` was called; never when the handle is gone without it.
async fn forced(force: &mut watch::Receiver<bool>) {
    if force.wait_for(|f| *f).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Record>,
    s: Settings,
    stats: Arc<WriterStats>,
    mut force: watch::Receiver<bool>,
) -> WriterReport {
    let mut batch = Batch::default();
    let mut gave_up = false;
    let mut held = HeldConnection::default();
    let checkpointer = store
        .sqlite_pool()
        .map(|p| Checkpointer::spawn(p.clone(), stats.wal_checkpoints.clone()));
    loop {
        let is_forced = *force.borrow();
        if is_forced {
            rx.close();
        }
        batch.clear();
        let got = if is_forced {
            rx.recv_many(&mut batch.records, s.batch_size).await
        } else {
            tokio::select! {
                n = rx.recv_many(&mut batch.records, s.batch_size) => n,
                () = forced(&mut force) => continue,
            }
        };
        if got == 0 {
            break;
        }
        stats.busy_since.store(unix_ms(), Ordering::Relaxed);
        let deadline = Instant::now() + s.flush_interval;
        while batch.records.len() < s.batch_size && !*force.borrow() {
            let room = s.batch_size - batch.records.len();
            tokio::select! {
                n = rx.recv_many(&mut batch.records, room) => if n == 0 { break },
                () = sleep_until(deadline) => break,
                () = forced(&mut force) => break,
            }
        }
        if gave_up {
            stats
                .lost
                .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
            continue;
        }
        gave_up = !commit(&store, &mut held, &mut batch, s, &stats, &mut force).await;
        stats.busy_since.store(0, Ordering::Relaxed);
        if let (false, Some(c)) = (gave_up, &checkpointer) {
            c.committed(batch.records.len() as u64);
        }
    }
    let report = stats.report();
    if report.lost > 0 {
        tracing::error!(
            lost = report.lost,
            "storage writer stopped; records were lost"
        );
    }
    let latency = stats.latency();
    tracing::info!(
        written = report.written,
        batches = report.batches,
        retries = report.retries,
        rejected = report.rejected,
        lost = report.lost,
        latency_count = latency.count,
        latency_p50_ms = latency.p50_ms.unwrap_or(-1.0),
        latency_p99_ms = latency.p99_ms.unwrap_or(-1.0),
        "storage writer finished"
    );
    report
}

/// Bulk first; on a permanent failure, record by record with `rejected` fallback.
async fn attempt(
    store: &Store,
    held: &mut HeldConnection,
    batch: &mut Batch,
) -> Result<(), sqlx::Error> {
    match store.write_bulk(held, &mut *batch).await {
        Ok(()) => Ok(()),
        Err(e) if classify(store.backend(), &e) == ErrorClass::Retriable => Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "bulk insert refused; writing record by record");
            store.write_each(held, batch).await
        }
    }
}

/// Commits `batch`, retrying until it is stored. Returns `false` only when
/// force-stopped and the database did not take the batch (it is counted as lost).
async fn commit(
    store: &Store,
    held: &mut HeldConnection,
    batch: &mut Batch,
    s: Settings,
    stats: &WriterStats,
    force: &mut watch::Receiver<bool>,
) -> bool {
    batch.reset_fates();
    let started = Instant::now();
    let mut delay = FIRST_RETRY.min(s.retry_max);
    let mut attempts: u32 = 0;
    loop {
        let is_forced = *force.borrow();
        let result = if is_forced {
            match timeout(QUICK_ATTEMPT, attempt(store, held, batch)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("attempt timed out after {QUICK_ATTEMPT:?}")),
            }
        } else {
            // A force-stop (second signal, or the drain deadline) must not wait for an
            // attempt stuck on an unreachable database; the cut attempt is repeated
            // once, quickly, and retries are idempotent (ids are minted in memory).
            tokio::select! {
                r = attempt(store, held, batch) => r.map_err(|e| e.to_string()),
                () = forced(force) => {
                    held.discard();
                    continue;
                }
            }
        };
        match result {
            Ok(()) => {
                account(stats, batch);
                crate::ops::metrics::write_latency(started.elapsed());
                if attempts > 0 {
                    tracing::info!(attempts, "database write succeeded after retrying");
                }
                return true;
            }
            Err(e) if is_forced => {
                held.discard();
                let lost = batch.records.len() as u64;
                stats.lost.fetch_add(lost, Ordering::Relaxed);
                tracing::error!(lost, error = %e, "writer force-stopped and the database did not take the batch; records lost");
                stats.set_error(e);
                return false;
            }
            Err(e) => {
                attempts += 1;
                stats.retries.fetch_add(1, Ordering::Relaxed);
                stats.last_retry.store(unix_ms(), Ordering::Relaxed);
                stats.healthy.store(false, Ordering::Relaxed);
                tracing::warn!(
                    attempt = attempts,
                    records = batch.records.len(),
                    retry_in = ?delay,
                    queued = stats.queue_depth(),
                    error = %e,
                    "database write failed; retrying the same batch"
                );
                stats.set_error(e);
                tokio::select! {
                    () = sleep(delay) => {}
                    () = forced(force) => {}
                }
                delay = (delay * 2).min(s.retry_max);
            }
        }
    }
}

fn account(stats: &WriterStats, batch: &Batch) {
    stats
        .written
        .fetch_add(batch.count(Fate::Pending), Ordering::Relaxed);
    stats
        .rejected
        .fetch_add(batch.count(Fate::Substituted), Ordering::Relaxed);
    stats
        .lost
        .fetch_add(batch.count(Fate::Dropped), Ordering::Relaxed);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    for (record, fate) in batch.records.iter().zip(&batch.fates) {
        if super::batch::is_written(*fate) {
            let waited = now - record.received_at().timestamp_micros();
            stats.latency.record_n(waited, 1);
        }
    }
    crate::ops::metrics::written(
        batch
            .records
            .iter()
            .zip(&batch.fates)
            .filter(|(_, f)| super::batch::is_written(**f))
            .map(|(r, _)| r),
    );
    stats.last_commit.store(now / 1000, Ordering::Relaxed);
    stats.healthy.store(true, Ordering::Relaxed);
}

/// Triggers a writer's force-stop from anywhere (see [`WriterHandle::force_trigger`]).
#[derive(Debug, Clone)]
pub struct ForceStop(watch::Sender<bool>);

impl ForceStop {
    /// Same as [`WriterHandle::force_stop`].
    pub fn force_stop(&self) {
        self.0.send_replace(true);
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
