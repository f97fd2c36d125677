//! Running wsvault as a daemon: what an operator and systemd see of it.
//!
//! Owns the [`Registry`] (the live view of every source and the writer that the
//! supervisor keeps current), the `/metrics` and `/healthz` listener, systemd
//! notifications and the watchdog, table retention, and the `backup` and `status`
//! commands. It reads the atomics sessions and the writer publish; it must never block
//! them, never hold a lock across an `.await`, and never write records itself
//! (retention only deletes old rows). It sits above `session`, `store` and `backfill`
//! and is called by `supervisor` and `cli` only: nothing below it imports it (events
//! they emit go through `telemetry`).

pub mod backup;
pub mod health;
pub mod http;
pub mod metrics;
pub mod partition_convert;
pub mod partitions;
pub mod progress;
pub mod retention;
pub mod status;
pub mod systemd;

use crate::config::{StorageConfig, Timing};
use crate::session::{SourceStatus, State, status::now_ms};
use crate::store::WriterStats;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// One source as the registry knows it.
#[derive(Debug, Clone)]
struct Entry {
    status: Arc<SourceStatus>,
    timing: Timing,
    kind: &'static str,
    /// False once the source was removed by a reload (kept so `/metrics` shows it closed).
    active: bool,
    /// Unix ms of registration: the start of a source that has not stepped yet.
    registered_ms: i64,
}

/// The live view of the daemon that `/metrics`, `/healthz` and the watchdog read.
///
/// The supervisor registers every session it starts and retires the ones it stops;
/// readers take a [`Snapshot`] (plain numbers) and judge it with pure functions, so
/// the rules are unit-tested without sockets or databases.
#[derive(Debug)]
pub struct Registry {
    sources: RwLock<BTreeMap<String, Entry>>,
    suspended: std::sync::atomic::AtomicBool,
    writer: Arc<WriterStats>,
    queue_capacity: usize,
    writer_budget: Duration,
}

impl Registry {
    /// A registry for one daemon run; `storage` sizes the writer's time budget
    /// (a retry wait plus one attempt that may wait out the SQLite busy timeout).
    pub fn new(writer: Arc<WriterStats>, storage: &StorageConfig) -> Arc<Registry> {
        Arc::new(Registry {
            sources: RwLock::new(BTreeMap::new()),
            suspended: std::sync::atomic::AtomicBool::new(false),
            writer,
            queue_capacity: storage.queue_capacity,
            writer_budget: storage.retry_max + storage.busy_timeout.max(Duration::from_secs(3)),
        })
    }

    /// Registers (or replaces) a running source.
    pub fn add(&self, name: &str, kind: &'static str, timing: Timing, status: Arc<SourceStatus>) {
        let mut map = self.sources.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(
            name.to_string(),
            Entry {
                status,
                timing,
                kind,
                active: true,
                registered_ms: now_ms(),
            },
        );
    }

    /// Marks a source as removed: it no longer counts for health or the watchdog.
    pub fn retire(&self, name: &str) {
        let mut map = self.sources.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = map.get_mut(name) {
            e.active = false;
        }
    }

    /// Records that the operator suspended (true) or resumed (false) every source.
    pub fn set_suspended(&self, suspended: bool) {
        self.suspended.store(suspended, Ordering::Relaxed);
    }

    /// The writer's counters.
    pub fn writer_stats(&self) -> &Arc<WriterStats> {
        &self.writer
    }

    /// Every number the judges need, read now.
    pub fn snapshot(&self) -> Snapshot {
        let suspended = self.suspended.load(Ordering::Relaxed);
        let map = self.sources.read().unwrap_or_else(PoisonError::into_inner);
        let sources = map
            .iter()
            .map(|(name, e)| {
                let s = &e.status;
                SourceView {
                    name: name.clone(),
                    kind: e.kind,
                    active: e.active,
                    state: s.state(),
                    suspended: suspended || s.state() == State::Suspended,
                    last_frame_ms: s.last_frame_ms.load(Ordering::Relaxed),
                    last_event_ms: s.last_event_ms.load(Ordering::Relaxed),
                    changed_ms: s.changed_ms.load(Ordering::Relaxed).max(e.registered_ms),
                    resume_at_ms: s.resume_at_ms.load(Ordering::Relaxed),
                    attempts: s.attempts.load(Ordering::Relaxed),
                    frames: s.frames.load(Ordering::Relaxed),
                    reconnects: s.reconnects.load(Ordering::Relaxed),
                    timing: e.timing,
                }
            })
            .collect();
        let w = &self.writer;
        Snapshot {
            now_ms: now_ms(),
            sources,
            writer: WriterView {
                healthy: w.is_healthy(),
                last_error: w.last_error(),
                queue_depth: w.queue_depth(),
                queue_capacity: self.queue_capacity,
                last_commit_ms: w.last_commit.load(Ordering::Relaxed),
                last_retry_ms: w.last_retry.load(Ordering::Relaxed),
                busy_since_ms: w.busy_since.load(Ordering::Relaxed),
                budget: self.writer_budget,
                report: w.report(),
                committed: w.committed.by_table(),
                copy: w.copy_counts(),
            },
        }
    }
}

/// One source at one instant.
#[derive(Debug, Clone)]
pub struct SourceView {
    /// The configured name.
    pub name: String,
    /// `navixy`, `tradernet` or `jsonrpc`.
    pub kind: &'static str,
    /// Still configured (false after a reload removed it).
    pub active: bool,
    /// Lifecycle state.
    pub state: State,
    /// Manually suspended (SIGUSR1): neither health nor the watchdog expect traffic.
    pub suspended: bool,
    /// Unix ms of the last inbound frame; 0 = never.
    pub last_frame_ms: i64,
    /// Unix ms of the last data record; 0 = never.
    pub last_event_ms: i64,
    /// Unix ms of the last lifecycle step (or of registration, if later).
    pub changed_ms: i64,
    /// Unix ms until which the session waits before its next attempt.
    pub resume_at_ms: i64,
    /// Consecutive failed attempts.
    pub attempts: u64,
    /// Inbound frames so far.
    pub frames: u64,
    /// Reconnections so far.
    pub reconnects: u64,
    /// The source's reconnect and liveness knobs.
    pub timing: Timing,
}

/// The writer at one instant.
#[derive(Debug, Clone)]
pub struct WriterView {
    /// False while a batch is being retried.
    pub healthy: bool,
    /// Text of the last failed attempt.
    pub last_error: Option<String>,
    /// Records waiting in the queue.
    pub queue_depth: usize,
    /// The queue's size.
    pub queue_capacity: usize,
    /// Unix ms of the last commit; 0 = never.
    pub last_commit_ms: i64,
    /// Unix ms of the last failed (retried) attempt; 0 = never.
    pub last_retry_ms: i64,
    /// Unix ms since which the writer holds a batch it has not committed; 0 = idle.
    pub busy_since_ms: i64,
    /// Longest a healthy writer may go without committing or retrying while it has
    /// work: one retry wait plus one attempt.
    pub budget: Duration,
    /// Lifetime counters.
    pub report: crate::store::WriterReport,
    /// Records committed per `(source, table)` (`rejected` for refused ones).
    pub committed: Vec<(crate::record::SourceName, &'static str, u64)>,
    /// How PostgreSQL batches went in (`COPY` or its fallback).
    pub copy: crate::store::CopyCounts,
}

/// Everything the health check, the watchdog and `/metrics` look at, taken at once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was taken (Unix ms).
    pub now_ms: i64,
    /// Every registered source, by name.
    pub sources: Vec<SourceView>,
    /// The writer.
    pub writer: WriterView,
}

/// Milliseconds in `d`, saturating.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Resolves once `rx` says stop, or its sender is gone (the owner dropped it).
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
