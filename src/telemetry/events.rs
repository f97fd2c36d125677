//! The daemon's internal events: one type per thing that happened, each emitting its
//! log line and its metric together (see the module docs of [`crate::telemetry`]).
//!
//! **One counter per quantity.** A quantity is counted either here, as a Prometheus
//! counter bumped when the event is emitted, or — when the daemon itself must read it
//! back (health, watchdog, `status`, the writer's report, tests) — in the atomics of
//! its owner (`WriterStats`, `SourceStatus`), which `ops::metrics::render` copies into
//! the exposition at scrape time. Never both.
//!
//! Emitting must stay cheap and must never fail: without an installed recorder the
//! metric calls are no-ops. Labels follow ARCHITECTURE.md §6: `source`, `kind` (the
//! table), `status`, `outcome`, `table`.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use std::sync::Arc;
use std::time::Duration;

/// Counter: records produced from upstream frames, per `source` and `kind` (table).
pub const RECORDS_RECEIVED: &str = "wsvault_records_received_total";
/// Counter: states and readings stored with the receive time because the upstream
/// time was missing or unreadable, per `source`.
pub const INVALID_TIMESTAMPS: &str = "wsvault_invalid_timestamps_total";
/// Histogram: seconds from a batch's first attempt to its commit, retries included.
pub const WRITE_SECONDS: &str = "wsvault_write_seconds";
/// Buckets of [`WRITE_SECONDS`]: from a fast local commit to a long outage.
pub const WRITE_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Gauge: gaps per `source` and `status` (pending, running, done, partial, failed).
pub const GAPS: &str = "wsvault_gaps";
/// Counter: rows a backfill handed to the writer, per `source` and `table`.
pub const BACKFILL_POINTS: &str = "wsvault_backfill_points_total";
/// Counter: REST calls of the backfill, per `source` and `outcome` (ok, retried, error).
pub const BACKFILL_REQUESTS: &str = "wsvault_backfill_requests_total";

/// Something that happened inside the daemon, emitted once where it happened.
pub trait InternalEvent {
    /// Writes the log line and updates the metric of this event.
    fn emit(self);
}

/// Emits `event`; reads better at the call site than `event.emit()`.
pub fn emit(event: impl InternalEvent) {
    event.emit();
}

/// Describes every metric of this module to the installed recorder (HELP lines).
/// Called by `ops::metrics::install` once the recorder is in place.
pub fn describe() {
    describe_counter!(RECORDS_RECEIVED, "Records produced from upstream frames");
    describe_counter!(
        INVALID_TIMESTAMPS,
        "States and readings stored with the receive time because the upstream time was missing or unreadable"
    );
    describe_histogram!(
        WRITE_SECONDS,
        "Seconds from a batch's first attempt to its commit"
    );
    describe_gauge!(GAPS, "Blind periods per source and backfill status");
    describe_counter!(
        BACKFILL_POINTS,
        "Rows fetched from the REST history and handed to the writer (duplicates of live rows included; the database keeps one)"
    );
    describe_counter!(
        BACKFILL_REQUESTS,
        "REST calls made by the backfill, by outcome (ok, retried, error)"
    );
}

/// A session produced one record from upstream frames. Counted only (one per
/// record: a log line here would flood the journal).
#[derive(Debug, Clone, Copy)]
pub struct RecordReceived<'a> {
    /// The source's name.
    pub source: &'a Arc<str>,
    /// The record's table.
    pub kind: &'static str,
}

impl InternalEvent for RecordReceived<'_> {
    fn emit(self) {
        counter!(RECORDS_RECEIVED, "source" => self.source.clone(), "kind" => self.kind)
            .increment(1);
    }
}

/// A state or reading was stamped with its receive time for want of a readable
/// upstream time. Counted every time; logged when `warn` is set (the session sets
/// it once per source, so a broken device does not flood the log).
#[derive(Debug, Clone, Copy)]
pub struct InvalidTimestamp<'a> {
    /// The source's name.
    pub source: &'a Arc<str>,
    /// The record's table.
    pub kind: &'static str,
    /// Whether to write the warning (the first time for this source).
    pub warn: bool,
}

impl InternalEvent for InvalidTimestamp<'_> {
    fn emit(self) {
        counter!(INVALID_TIMESTAMPS, "source" => self.source.clone()).increment(1);
        if self.warn {
            tracing::warn!(
                kind = self.kind,
                "an upstream time was missing or unreadable: stored with the receive \
                 time, upstream text kept in payload; counted in \
                 wsvault_invalid_timestamps_total (warned once per source)"
            );
        }
    }
}

/// The writer committed a batch. `attempts` counts the failed attempts before it.
#[derive(Debug, Clone, Copy)]
pub struct BatchCommitted {
    /// From the first attempt to the commit.
    pub elapsed: Duration,
    /// Failed attempts before this one (0 = first try).
    pub attempts: u32,
}

impl InternalEvent for BatchCommitted {
    fn emit(self) {
        histogram!(WRITE_SECONDS).record(self.elapsed.as_secs_f64());
        if self.attempts > 0 {
            tracing::info!(
                attempts = self.attempts,
                "database write succeeded after retrying"
            );
        }
    }
}

/// A batch attempt failed with a retriable error; the writer retries the same batch.
/// Counted in `WriterStats::retries` (read back by health and the watchdog).
#[derive(Debug, Clone, Copy)]
pub struct BatchRetrying<'a> {
    /// Failed attempts so far, this one included.
    pub attempt: u32,
    /// Records in the batch.
    pub records: usize,
    /// Wait before the next attempt.
    pub retry_in: Duration,
    /// Records waiting in the queue behind the batch.
    pub queued: usize,
    /// The database's error text.
    pub error: &'a str,
}

impl InternalEvent for BatchRetrying<'_> {
    fn emit(self) {
        tracing::warn!(
            attempt = self.attempt,
            records = self.records,
            retry_in = ?self.retry_in,
            queued = self.queued,
            error = %self.error,
            "database write failed; retrying the same batch"
        );
    }
}

/// A force-stopped writer's last attempt at a batch failed: its records are lost.
/// Counted in `WriterStats::lost`.
#[derive(Debug, Clone, Copy)]
pub struct BatchLost<'a> {
    /// Records of the batch.
    pub lost: u64,
    /// Why the attempt failed.
    pub error: &'a str,
}

impl InternalEvent for BatchLost<'_> {
    fn emit(self) {
        tracing::error!(
            lost = self.lost,
            error = %self.error,
            "writer force-stopped and the database did not take the batch; records lost"
        );
    }
}

/// The bulk statement of a batch was refused for a value; the batch is rewritten
/// record by record so only the refused records go to `rejected`.
#[derive(Debug, Clone, Copy)]
pub struct BulkRefused<'a> {
    /// The database's error text.
    pub error: &'a str,
}

impl InternalEvent for BulkRefused<'_> {
    fn emit(self) {
        tracing::debug!(error = %self.error, "bulk insert refused; writing record by record");
    }
}

/// PostgreSQL refused a batch's `COPY` (a duplicate, a bad value); it is written
/// again through `ON CONFLICT DO NOTHING`. Counted in `WriterStats` (copy outcomes).
#[derive(Debug, Clone, Copy)]
pub struct CopyRefused<'a> {
    /// The server's error text.
    pub error: &'a str,
}

impl InternalEvent for CopyRefused<'_> {
    fn emit(self) {
        tracing::debug!(
            error = %self.error,
            "COPY refused the batch; writing it with ON CONFLICT DO NOTHING"
        );
    }
}

/// The database refused one record for good; it is stored in `rejected` instead.
/// Counted in `WriterStats::rejected` when the batch commits.
#[derive(Debug, Clone, Copy)]
pub struct RecordRejected<'a> {
    /// The record's table.
    pub table: &'static str,
    /// The record's source.
    pub source: &'a str,
    /// The database's words.
    pub error: &'a str,
}

impl InternalEvent for RecordRejected<'_> {
    fn emit(self) {
        tracing::warn!(
            table = self.table,
            source = self.source,
            error = %self.error,
            "database refused a record; storing it in `rejected` instead"
        );
    }
}

/// The database refused even the `rejected` row of a record: one record lost.
/// Counted in `WriterStats::lost` when the batch commits.
#[derive(Debug, Clone, Copy)]
pub struct RejectedRowRefused<'a> {
    /// The record's source.
    pub source: &'a str,
    /// The database's words.
    pub error: &'a str,
}

impl InternalEvent for RejectedRowRefused<'_> {
    fn emit(self) {
        tracing::error!(
            source = self.source,
            error = %self.error,
            "database refused even the `rejected` row of a record; 1 record lost"
        );
    }
}

/// A backfill REST call ended (`ok`, `error`) or will be retried (`retried`).
#[derive(Debug, Clone, Copy)]
pub struct BackfillRequest<'a> {
    /// The source's name.
    pub source: &'a str,
    /// `ok`, `retried` or `error`.
    pub outcome: &'static str,
}

impl InternalEvent for BackfillRequest<'_> {
    fn emit(self) {
        counter!(BACKFILL_REQUESTS, "source" => self.source.to_string(), "outcome" => self.outcome)
            .increment(1);
    }
}

/// A backfill REST call failed and will be retried after `wait`.
#[derive(Clone, Copy)]
pub struct BackfillRetrying<'a> {
    /// The source's name.
    pub source: &'a str,
    /// The REST path called.
    pub path: &'a str,
    /// Wait before the next try.
    pub wait: Duration,
    /// What went wrong (already masked by the REST client).
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for BackfillRetrying<'_> {
    fn emit(self) {
        BackfillRequest {
            source: self.source,
            outcome: "retried",
        }
        .emit();
        tracing::debug!(
            path = self.path,
            "REST call will be retried in {:?}: {}",
            self.wait,
            self.error
        );
    }
}

/// A backfill worker started: every backfill counter of its source is exported at
/// zero, so alert rules and dashboards see the series (and `rate()` works) before
/// the first gap is ever filled.
#[derive(Debug, Clone, Copy)]
pub struct BackfillStarted<'a> {
    /// The source's name.
    pub source: &'a str,
}

impl InternalEvent for BackfillStarted<'_> {
    fn emit(self) {
        for table in ["tracker_states", "tracker_readings"] {
            counter!(BACKFILL_POINTS, "source" => self.source.to_string(), "table" => table)
                .increment(0);
        }
        for outcome in ["ok", "retried", "error"] {
            counter!(BACKFILL_REQUESTS, "source" => self.source.to_string(), "outcome" => outcome)
                .increment(0);
        }
    }
}

/// A backfill handed `n` rows of `table` to the writer.
#[derive(Debug, Clone, Copy)]
pub struct BackfillPoints<'a> {
    /// The source's name.
    pub source: &'a str,
    /// `tracker_states` or `tracker_readings`.
    pub table: &'static str,
    /// Rows handed over.
    pub n: u64,
}

impl InternalEvent for BackfillPoints<'_> {
    fn emit(self) {
        counter!(BACKFILL_POINTS, "source" => self.source.to_string(), "table" => self.table)
            .increment(self.n);
    }
}

/// A backfill worker counted the gaps of its source in one status.
#[derive(Debug, Clone, Copy)]
pub struct GapsCounted<'a> {
    /// The source's name.
    pub source: &'a str,
    /// The gap status.
    pub status: &'static str,
    /// Gaps in that status.
    pub n: i64,
}

impl InternalEvent for GapsCounted<'_> {
    fn emit(self) {
        gauge!(GAPS, "source" => self.source.to_string(), "status" => self.status)
            .set(self.n as f64);
    }
}
