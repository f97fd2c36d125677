//! The cluster's metrics, emitted where the changes happen. They call the `metrics`
//! macros directly so they need nothing from `ops`; the telemetry leaf can take them
//! over unchanged.
//!
//! - `wsvault_leases_held` (gauge): leases this daemon holds; 0 on a standby.
//! - `wsvault_lease_changes_total{reason}` (counter): every lease this daemon gained
//!   or gave up, by [`Change`].
//! - `wsvault_fenced_records_total{source}` (counter): records not written because
//!   the batch found the source's lease gone (the new holder records that stream);
//!   every configured source's series starts at 0, so an alert can use `increase()`.
//! - `wsvault_cluster_ticks_total{outcome}` (counter): lease-loop ticks (`ok`,
//!   `failed`, `abandoned`); a node whose `ok` count stops growing renews nothing and
//!   will lose its sources within the ttl.

/// Why a lease changed hands, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Claimed a source nobody had held before.
    ClaimedNew,
    /// Claimed a source another daemon released (handover or shutdown).
    ClaimedReleased,
    /// Took over a source whose holder stopped renewing (died, froze, partitioned).
    TakenOver,
    /// Handed a source over because this daemon held more than its share.
    Handover,
    /// Released at shutdown.
    Shutdown,
    /// Released because the source left the configuration.
    Removed,
    /// A renewal found the lease held by another daemon or under another term.
    Lost,
    /// Given up locally: not renewed within the ttl minus the safety margin.
    Expired,
}

impl Change {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::ClaimedNew => "claimed_new",
            Change::ClaimedReleased => "claimed_released",
            Change::TakenOver => "taken_over",
            Change::Handover => "handover",
            Change::Shutdown => "shutdown",
            Change::Removed => "removed",
            Change::Lost => "lost",
            Change::Expired => "expired",
        }
    }
}

/// Sets `wsvault_leases_held`.
pub fn leases_held(n: usize) {
    metrics::gauge!("wsvault_leases_held").set(n as f64);
}

/// Counts one lease-loop tick by outcome in `wsvault_cluster_ticks_total`: the one
/// series that shows a node which is up but cannot renew (database unreachable).
pub fn tick(outcome: &'static str) {
    metrics::counter!("wsvault_cluster_ticks_total", "outcome" => outcome).increment(1);
}

/// Starts every source's `wsvault_fenced_records_total` series at 0, so the first
/// fenced records show as an increase rather than as a new series.
pub fn fenced_series<'a>(sources: impl IntoIterator<Item = &'a str>) {
    for source in sources {
        metrics::counter!("wsvault_fenced_records_total", "source" => source.to_string())
            .increment(0);
    }
}

/// Counts one lease change in `wsvault_lease_changes_total`.
pub fn lease_change(reason: Change) {
    metrics::counter!("wsvault_lease_changes_total", "reason" => reason.as_str()).increment(1);
}

/// Counts records of `source` left out of a batch by fencing, and logs them: the
/// operator sees which stream the new holder took.
pub fn fenced_records(source: &str, n: u64) {
    if n == 0 {
        return;
    }
    metrics::counter!("wsvault_fenced_records_total", "source" => source.to_string()).increment(n);
    tracing::warn!(
        source,
        fenced = n,
        "lease lost: {n} records of this source were not written (the new holder records it)"
    );
}
