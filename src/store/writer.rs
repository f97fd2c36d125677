//! The batching writer: the only path from records to the database.
//!
//! Sessions push [`Record`]s into a bounded queue through a [`RecordSink`]; a full
//! queue makes `send` wait, which is the back-pressure of ARCHITECTURE.md §1.
//! One task takes records off the queue and commits them in batches, one transaction
//! each, when a batch reaches `batch_size` records or `flush_interval` after its
//! first record; a batch that filled while more records wait takes those too, up to
//! `commit_max_rows` / `commit_max_bytes` (group commit, [`super::group`]), so a
//! backlog drains in fewer, larger transactions. A retriable failure retries the *same* batch with capped
//! exponential backoff while the queue absorbs new records; a permanent failure
//! rewrites the batch record by record so only the refused records go to `rejected`.
//! On shutdown (every sink dropped) the queue is drained before the task ends.
//! This module must never drop a record silently: whatever cannot be written is
//! counted in [`WriterStats::lost`] and logged with the count.

use super::batch::{Batch, Queued};
use super::classify::{ErrorClass, classify};
use super::database::BatchWriter;
use super::group::{self, Caps};
use super::stats::{WriterReport, WriterStats};
use super::{Backend, Store};
use crate::config::StorageConfig;
use crate::record::Record;
use crate::telemetry::emit;
use crate::telemetry::events::{BatchCommitted, BatchLost, BatchRetrying, BulkRefused};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// First retry delay; doubles per failed attempt up to `retry_max`.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// The delays between attempts at one batch: [`FIRST_RETRY`] doubling up to
/// `retry_max`, without jitter (one writer per database: nothing to spread out),
/// without end (a batch is retried until the database takes it or a force-stop).
/// The same `backon` sequence the sessions use for reconnects, without their jitter.
fn retry_delays(retry_max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY.min(retry_max))
        .with_max_delay(retry_max)
        .with_factor(2.0)
        .without_max_times()
        .build()
}
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
            caps: Caps {
                rows: cfg.commit_max_rows.max(cfg.batch_size.max(1)),
                bytes: cfg.commit_max_bytes.max(1),
            },
            flush_interval: cfg.flush_interval,
            retry_max: cfg.retry_max.max(Duration::from_millis(1)),
        };
        let task = tokio::spawn(run(store, rx, settings, stats.clone(), force_rx));
        (
            RecordSink { tx, term: None },
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
    tx: mpsc::Sender<Queued>,
    /// The lease term every record sent through this sink is stamped with.
    term: Option<i64>,
}

impl RecordSink {
    /// A sink whose records carry lease `term` (cluster mode): the writer stores
    /// them only while this node holds the source under that same term, so a
    /// session started under an earlier lease can never write under a later one.
    pub fn with_term(&self, term: i64) -> RecordSink {
        RecordSink {
            tx: self.tx.clone(),
            term: Some(term),
        }
    }

    fn queued(&self, mut record: Record) -> Queued {
        crate::redact::secrets::record(&mut record);
        Queued {
            record,
            term: self.term,
        }
    }

    /// Queues one record, waiting while the queue is full (back-pressure: the caller
    /// stops reading its socket meanwhile). Fails only when the writer has stopped.
    pub async fn send(&self, r: Record) -> Result<(), WriterClosed> {
        let q = self.queued(r);
        self.tx.send(q).await.map_err(|_| WriterClosed)
    }

    /// Queues `r` if there is room now (`Ok(None)`); hands it back when the queue is
    /// full (`Ok(Some(r))`), so a session can keep it and stay responsive
    /// (heartbeats, commands) meanwhile.
    pub fn try_send(&self, r: Record) -> Result<Option<Record>, WriterClosed> {
        match self.tx.try_send(self.queued(r)) {
            Ok(()) => Ok(None),
            Err(TrySendError::Full(q)) => Ok(Some(q.record)),
            Err(TrySendError::Closed(_)) => Err(WriterClosed),
        }
    }

    /// Waits for room for one record. Cancel-safe (unlike a pending `send`, which
    /// owns its record), so a session can wait for room inside a `select!`.
    pub async fn reserve(&self) -> Result<SinkPermit<'_>, WriterClosed> {
        self.tx
            .reserve()
            .await
            .map(|p| SinkPermit(p, self))
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
pub struct SinkPermit<'a>(mpsc::Permit<'a, Queued>, &'a RecordSink);

impl SinkPermit<'_> {
    /// Queues `r` in the reserved room, secrets masked and stamped like
    /// [`RecordSink::send`].
    pub fn send(self, r: Record) {
        self.0.send(self.1.queued(r));
    }
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
    /// Group commit: how far a full batch grows with what is already queued.
    caps: Caps,
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
    mut rx: mpsc::Receiver<Queued>,
    s: Settings,
    stats: Arc<WriterStats>,
    mut force: watch::Receiver<bool>,
) -> WriterReport {
    let mut batch = Batch::default();
    let mut items: Vec<Queued> = Vec::with_capacity(s.batch_size);
    let mut gave_up = false;
    let backend = store.backend();
    let mut db = store.batch_writer(stats.clone());
    loop {
        let is_forced = *force.borrow();
        if is_forced {
            rx.close();
        }
        batch.clear();
        let got = if is_forced {
            rx.recv_many(&mut items, s.batch_size).await
        } else {
            tokio::select! {
                n = rx.recv_many(&mut items, s.batch_size) => n,
                () = forced(&mut force) => continue,
            }
        };
        if got == 0 {
            break;
        }
        batch.take(&mut items);
        stats.busy_since.store(unix_ms(), Ordering::Relaxed);
        let deadline = Instant::now() + s.flush_interval;
        while batch.records.len() < s.batch_size && !*force.borrow() {
            let room = s.batch_size - batch.records.len();
            tokio::select! {
                n = rx.recv_many(&mut items, room) => {
                    batch.take(&mut items);
                    if n == 0 { break }
                },
                () = sleep_until(deadline) => break,
                () = forced(&mut force) => break,
            }
        }
        // Group commit: a batch that filled while more records wait takes them too,
        // up to the caps, without waiting for more. Not after a force-stop: each
        // remaining batch then gets one quick attempt, better kept small.
        if batch.records.len() >= s.batch_size && !*force.borrow() {
            let held = batch.records.iter().map(group::weight).sum();
            group::take_queued(
                &mut rx,
                (batch.records.len(), held),
                s.caps,
                |q| group::weight(&q.record),
                |q| items.push(q),
            );
            batch.take(&mut items);
        }
        if gave_up {
            stats
                .lost
                .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
            continue;
        }
        let mut w = Attempts {
            db: db.as_mut(),
            backend,
            stats: &stats,
        };
        gave_up = !w.commit(&mut batch, s, &mut force).await;
        stats.busy_since.store(0, Ordering::Relaxed);
        if !gave_up {
            db.committed(batch.records.len() as u64);
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

/// What one batch's attempts need: the backend's write path and the counters.
struct Attempts<'a> {
    db: &'a mut dyn BatchWriter,
    backend: Backend,
    stats: &'a WriterStats,
}

impl Attempts<'_> {
    /// Bulk first; on a permanent failure, record by record with `rejected` fallback.
    async fn attempt(&mut self, batch: &mut Batch) -> Result<(), sqlx::Error> {
        match self.db.write_bulk(batch).await {
            Ok(()) => Ok(()),
            Err(e) if classify(self.backend, &e) == ErrorClass::Retriable => Err(e),
            Err(e) => {
                emit(BulkRefused {
                    error: &e.to_string(),
                });
                self.db.write_each(batch).await
            }
        }
    }

    /// Commits `batch`, retrying until it is stored. Returns `false` only when
    /// force-stopped and the database did not take the batch (it is counted as lost).
    async fn commit(
        &mut self,
        batch: &mut Batch,
        s: Settings,
        force: &mut watch::Receiver<bool>,
    ) -> bool {
        batch.reset_fates();
        let started = Instant::now();
        let mut delays = retry_delays(s.retry_max);
        let mut attempts: u32 = 0;
        loop {
            let is_forced = *force.borrow();
            let result = if is_forced {
                match timeout(QUICK_ATTEMPT, self.attempt(batch)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("attempt timed out after {QUICK_ATTEMPT:?}")),
                }
            } else {
                // A force-stop (second signal, or the drain deadline) must not wait for
                // an attempt stuck on an unreachable database; the cut attempt is
                // repeated once, quickly, and retries are idempotent (ids are minted in
                // memory).
                tokio::select! {
                    r = self.attempt(batch) => r.map_err(|e| e.to_string()),
                    () = forced(force) => {
                        self.db.discard();
                        continue;
                    }
                }
            };
            match result {
                Ok(()) => {
                    self.stats.account(batch);
                    emit(BatchCommitted {
                        elapsed: started.elapsed(),
                        attempts,
                    });
                    return true;
                }
                Err(e) if is_forced => {
                    self.db.discard();
                    let lost = batch.records.len() as u64;
                    self.stats.lost.fetch_add(lost, Ordering::Relaxed);
                    emit(BatchLost { lost, error: &e });
                    self.stats.set_error(e);
                    return false;
                }
                Err(e) => {
                    attempts += 1;
                    let delay = delays.next().unwrap_or(s.retry_max);
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    self.stats.last_retry.store(unix_ms(), Ordering::Relaxed);
                    self.stats.healthy.store(false, Ordering::Relaxed);
                    emit(BatchRetrying {
                        attempt: attempts,
                        records: batch.records.len(),
                        retry_in: delay,
                        queued: self.stats.queue_depth(),
                        error: &e,
                    });
                    self.stats.set_error(e);
                    tokio::select! {
                        () = sleep(delay) => {}
                        () = forced(force) => {}
                    }
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(retry_max: Duration, n: usize) -> Vec<u128> {
        retry_delays(retry_max)
            .take(n)
            .map(|d| d.as_millis())
            .collect()
    }

    #[test]
    fn retry_delays_double_from_50_ms_up_to_retry_max_and_never_end() {
        assert_eq!(
            millis(Duration::from_millis(500), 8),
            [50, 100, 200, 400, 500, 500, 500, 500]
        );
        assert_eq!(millis(Duration::from_secs(5), 1_000).len(), 1_000);
        // A `retry_max` at the 10 ms floor (below the first delay) caps every delay.
        assert_eq!(millis(Duration::from_millis(10), 3), [10, 10, 10]);
    }
}
