//! WAL checkpoints beside the writer instead of inside its commits.
//!
//! With `wal_autocheckpoint`, the connection whose commit pushes the WAL past the
//! threshold copies the WAL back into the database file and fsyncs both, before its
//! `COMMIT` returns. That connection is the writer, so every few batches the writer
//! stood still while the checkpoint ran: under full load a checkpoint took about one
//! sixth of the writer thread's time (BENCHMARKS.md). Here a separate task runs
//! `PRAGMA wal_checkpoint(PASSIVE)` on another pooled connection (its own thread)
//! once enough rows were committed, so copying and fsyncing overlap the next batches.
//! `PASSIVE` never waits for the writer nor blocks it. The writer's own
//! `wal_autocheckpoint` stays as the safety net: when this task falls behind or
//! fails, the WAL is still checkpointed and restarted as before, only on the writer.

use sqlx::sqlite::SqlitePool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Rows committed between background checkpoints. At full rate that is a few MiB of
/// WAL, well under the writer's `wal_autocheckpoint` of ~40 MiB, so the writer's own
/// checkpoint finds almost nothing left to copy; at a trickle it is one checkpoint
/// (two fsyncs) per few minutes instead of one per commit.
const ROWS_PER_CHECKPOINT: u64 = 2_000;

struct Shared {
    pending_rows: AtomicU64,
    wake: Notify,
    /// Completed checkpoints; the writer's stats own it (`WriterStats::wal_checkpoints`).
    checkpoints: Arc<AtomicU64>,
}

/// Handle the writer holds: reports commits, and stops the task when dropped.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the background task on `pool`; each completed checkpoint adds one to
    /// `checkpoints`.
    pub(crate) fn spawn(pool: SqlitePool, checkpoints: Arc<AtomicU64>) -> Checkpointer {
        let shared = Arc::new(Shared {
            pending_rows: AtomicU64::new(0),
            wake: Notify::new(),
            checkpoints,
        });
        let task = tokio::spawn(run(pool, shared.clone()));
        Checkpointer { shared, task }
    }

    /// The writer committed `rows`; wakes the task once enough have piled up.
    pub(crate) fn committed(&self, rows: u64) {
        let before = self.shared.pending_rows.fetch_add(rows, Ordering::Relaxed);
        if before + rows >= ROWS_PER_CHECKPOINT {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(pool: SqlitePool, shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        let pending = shared.pending_rows.load(Ordering::Relaxed);
        if pending < ROWS_PER_CHECKPOINT {
            continue;
        }
        shared.pending_rows.fetch_sub(pending, Ordering::Relaxed);
        let result: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&pool)
                .await;
        match result {
            Ok((busy, wal_frames, copied)) => {
                shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(busy, wal_frames, copied, "background WAL checkpoint");
            }
            // Not a data problem: the rows are committed and the writer's own
            // autocheckpoint still runs. Logged at debug so an outage, which the
            // writer already reports, does not log twice.
            Err(e) => tracing::debug!(error = %e, "background WAL checkpoint failed"),
        }
    }
}
