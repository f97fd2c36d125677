//! The Prometheus exposition behind `/metrics`: the recorder, its descriptions, and
//! the numbers copied from the live [`Snapshot`] at scrape time.
//!
//! Two kinds of numbers (one counter per quantity, see `telemetry::events`): event
//! counters bumped by [`crate::telemetry::events`] where things happen (records
//! received, write latency, backfill calls), and everything the daemon also reads back
//! itself — per-source state and counters, the writer's counts (records written per
//! source and table, batches, retries, rejected, lost, `COPY` outcomes), queue depth
//! and ages — copied from the [`Snapshot`] here, so a scrape always shows the state
//! the health check judges. Rendering never blocks sessions or the writer.

use super::Snapshot;
use crate::session::State;
use crate::telemetry::events::{WRITE_SECONDS, WRITE_SECONDS_BUCKETS};
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Records committed, per `source` and `kind` (table; `rejected` for refused ones),
/// copied from `WriterStats::committed`.
pub const WRITTEN: &str = "wsvault_records_written_total";
/// PostgreSQL batches by `COPY` outcome (label `outcome`), copied from
/// `WriterStats::copy`; absent until the first `COPY` was tried.
pub const COPY_BATCHES: &str = "wsvault_writer_copy_batches_total";

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
                WRITE_SECONDS_BUCKETS,
            );
            let installed = builder.and_then(|b| b.install_recorder());
            match installed {
                Ok(h) => {
                    crate::telemetry::events::describe();
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

/// HELP lines of the metrics copied at scrape time.
fn describe() {
    describe_counter!(WRITTEN, "Records committed to the database");
    describe_counter!(
        COPY_BATCHES,
        "PostgreSQL batches by COPY outcome: copied, or refused (duplicates) and rewritten with ON CONFLICT"
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
    for (source, kind, n) in &w.committed {
        counter!(WRITTEN, "source" => source.clone(), "kind" => *kind).absolute(*n);
    }
    for (outcome, n) in [("copied", w.copy.copied), ("refused", w.copy.refused)] {
        if n > 0 {
            counter!(COPY_BATCHES, "outcome" => outcome).absolute(n);
        }
    }
    if w.last_commit_ms > 0 {
        gauge!("wsvault_writer_last_commit_age_seconds")
            .set(age_secs(snap.now_ms, w.last_commit_ms));
    }
    gauge!("wsvault_healthy").set(f64::from(u8::from(healthy)));
    handle.run_upkeep();
    handle.render()
}
