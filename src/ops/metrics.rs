//! Prometheus metrics through the `metrics` facade and `metrics-exporter-prometheus`.
//!
//! Two kinds of numbers: event counters bumped where things happen (records received
//! per source and kind by sessions, records written per source and kind and the write
//! latency by the writer), and gauges copied from the live [`Snapshot`] at scrape time
//! (connection state, reconnects, queue depth, ages), so a scrape always shows the
//! state the health check judges. Counting must stay cheap and must never fail: with
//! no recorder installed the calls are no-ops.

use super::Snapshot;
use crate::record::Record;
use crate::session::State;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Records produced from upstream frames, per `source` and `kind` (table).
pub const RECEIVED: &str = "wsvault_records_received_total";
/// Records committed, per `source` and `kind` (table; `rejected` for refused ones).
pub const WRITTEN: &str = "wsvault_records_written_total";
/// Seconds from a batch's first attempt to its commit, retries included.
pub const WRITE_SECONDS: &str = "wsvault_write_seconds";
/// States and readings stored with the receive time because the upstream time was
/// missing or unreadable, per `source`.
pub const INVALID_TIMESTAMPS: &str = "wsvault_invalid_timestamps_total";
/// Counter of PostgreSQL batches by `COPY` outcome (label `outcome`).
pub const COPY_BATCHES: &str = "wsvault_writer_copy_batches_total";
/// Gauge: gaps per `source` and `status` (pending, running, done, partial, failed).
pub const GAPS: &str = "wsvault_gaps";
/// Rows a backfill handed to the writer, per `source` and `table`.
pub const BACKFILL_POINTS: &str = "wsvault_backfill_points_total";
/// REST calls of the backfill, per `source` and `outcome` (ok, retried, error).
pub const BACKFILL_REQUESTS: &str = "wsvault_backfill_requests_total";

const STATES: [State; 7] = [
    State::Connecting,
    State::Open,
    State::Subscribed,
    State::Suspended,
    State::Retrying,
    State::Closed,
    State::Failed,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle; `None`
/// when another recorder was installed first (then `/metrics` says so).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets_for_metric(
                Matcher::Full(WRITE_SECONDS.to_string()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ],
            );
            let installed = builder.and_then(|b| b.install_recorder());
            match installed {
                Ok(h) => {
                    describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!("cannot install the metrics recorder: {e}; /metrics disabled");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    describe_counter!(RECEIVED, "Records produced from upstream frames");
    describe_counter!(WRITTEN, "Records committed to the database");
    describe_counter!(
        INVALID_TIMESTAMPS,
        "States and readings stored with the receive time because the upstream time was missing or unreadable"
    );
    describe_counter!(
        COPY_BATCHES,
        "PostgreSQL batches by COPY outcome: copied, or refused (duplicates) and rewritten with ON CONFLICT"
    );
    describe_histogram!(
        WRITE_SECONDS,
        "Seconds from a batch's first attempt to its commit"
    );
    describe_gauge!(
        "wsvault_source_state",
        "1 for the lifecycle state the source is in, 0 for the others"
    );
    describe_gauge!(
        "wsvault_source_connected",
        "1 while the source has an open WebSocket"
    );
    describe_gauge!(
        "wsvault_source_last_event_age_seconds",
        "Seconds since the source's last data record"
    );
    describe_gauge!(
        "wsvault_source_last_frame_age_seconds",
        "Seconds since the source's last inbound frame (heartbeats included)"
    );
    describe_gauge!(
        "wsvault_writer_queue_depth",
        "Records waiting for the writer"
    );
    describe_gauge!(
        "wsvault_writer_healthy",
        "0 while the writer retries a failing batch"
    );
    describe_gauge!("wsvault_healthy", "1 when /healthz answers 200, else 0");
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

/// Sets the number of gaps of `source` in `status`.
pub fn gaps(source: &str, status: &'static str, n: i64) {
    gauge!(GAPS, "source" => source.to_string(), "status" => status).set(n as f64);
}

/// Counts `n` rows of `table` fetched by a backfill of `source`.
pub fn backfill_points(source: &str, table: &'static str, n: u64) {
    counter!(BACKFILL_POINTS, "source" => source.to_string(), "table" => table).increment(n);
}

/// Exports every backfill counter of `source` at zero when its worker starts, so
/// alert rules and dashboards see the series (and `rate()` works) before the first
/// gap is ever filled.
pub fn backfill_series(source: &str) {
    for table in ["tracker_states", "tracker_readings"] {
        backfill_points(source, table, 0);
    }
    for outcome in ["ok", "retried", "error"] {
        counter!(BACKFILL_REQUESTS, "source" => source.to_string(), "outcome" => outcome)
            .increment(0);
    }
}

/// Counts one REST call of a backfill of `source` by `outcome`.
pub fn backfill_request(source: &str, outcome: &'static str) {
    counter!(BACKFILL_REQUESTS, "source" => source.to_string(), "outcome" => outcome).increment(1);
}

/// Counts one PostgreSQL batch by how `COPY` went (`copied` or `refused`).
pub fn copy_batch(outcome: &'static str) {
    counter!(COPY_BATCHES, "outcome" => outcome).increment(1);
}

/// Counts one record a session produced from upstream frames.
pub fn received(source: &crate::record::SourceName, kind: &'static str) {
    counter!(RECEIVED, "source" => source.clone(), "kind" => kind).increment(1);
}

/// Counts one record stamped with its receive time for want of a readable upstream
/// time.
pub fn invalid_timestamp(source: &crate::record::SourceName) {
    counter!(INVALID_TIMESTAMPS, "source" => source.clone()).increment(1);
}

/// Counts the records of one committed batch.
pub fn written<'a>(records: impl Iterator<Item = &'a Record>) {
    let mut tally: Vec<(&str, &'static str, u64)> = Vec::new();
    for r in records {
        let (source, kind) = (r.source(), r.kind());
        match tally.iter_mut().find(|t| t.0 == source && t.1 == kind) {
            Some(t) => t.2 += 1,
            None => tally.push((source, kind, 1)),
        }
    }
    for (source, kind, n) in tally {
        counter!(WRITTEN, "source" => source.to_string(), "kind" => kind).increment(n);
    }
}

/// Observes one batch's write latency.
pub fn write_latency(d: Duration) {
    histogram!(WRITE_SECONDS).record(d.as_secs_f64());
}

fn age_secs(now_ms: i64, then_ms: i64) -> f64 {
    (now_ms - then_ms).max(0) as f64 / 1000.0
}

/// Copies the snapshot into gauges and renders the Prometheus text exposition.
pub fn render(handle: &PrometheusHandle, snap: &Snapshot, healthy: bool) -> String {
    for s in &snap.sources {
        let name = s.name.clone();
        for st in STATES {
            let on = if st == s.state { 1.0 } else { 0.0 };
            gauge!("wsvault_source_state", "source" => name.clone(), "state" => st.as_str())
                .set(on);
        }
        let connected = matches!(s.state, State::Open | State::Subscribed);
        gauge!("wsvault_source_connected", "source" => name.clone())
            .set(f64::from(u8::from(connected)));
        gauge!("wsvault_source_failed_attempts", "source" => name.clone()).set(s.attempts as f64);
        counter!("wsvault_source_frames_total", "source" => name.clone()).absolute(s.frames);
        counter!("wsvault_source_records_total", "source" => name.clone()).absolute(s.records);
        counter!("wsvault_source_reconnects_total", "source" => name.clone())
            .absolute(s.reconnects);
        if s.last_event_ms > 0 {
            gauge!("wsvault_source_last_event_age_seconds", "source" => name.clone())
                .set(age_secs(snap.now_ms, s.last_event_ms));
        }
        if s.last_frame_ms > 0 {
            gauge!("wsvault_source_last_frame_age_seconds", "source" => name.clone())
                .set(age_secs(snap.now_ms, s.last_frame_ms));
        }
    }
    let w = &snap.writer;
    gauge!("wsvault_writer_queue_depth").set(w.queue_depth as f64);
    gauge!("wsvault_writer_queue_capacity").set(w.queue_capacity as f64);
    gauge!("wsvault_writer_healthy").set(f64::from(u8::from(w.healthy)));
    counter!("wsvault_writer_batches_total").absolute(w.report.batches);
    counter!("wsvault_writer_retries_total").absolute(w.report.retries);
    counter!("wsvault_writer_rejected_total").absolute(w.report.rejected);
    counter!("wsvault_writer_lost_total").absolute(w.report.lost);
    if w.last_commit_ms > 0 {
        gauge!("wsvault_writer_last_commit_age_seconds")
            .set(age_secs(snap.now_ms, w.last_commit_ms));
    }
    gauge!("wsvault_healthy").set(f64::from(u8::from(healthy)));
    handle.run_upkeep();
    handle.render()
}
