//! The simulated trackers: their deterministic states and readings, and the
//! generator that advances them at the configured rate.
//!
//! A tracker's `k`-th update is a pure function of (tracker index, k), so the
//! generator only hands out `(index, k)` pairs and each connection renders them
//! (see `render`) in the format its subscribe asked for. It never writes to a socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, FixedOffset, Offset, SubsecRound, TimeDelta, Utc};
use tokio::time::Instant;

use super::{Shared, TrackerStatus};

/// Reading values per `readings_event` item (input, state field, virtual sensor, counter).
pub(super) const READING_VALUES_PER_ITEM: u64 = 4;

/// Generated updates handed to subscribers: (tracker index, update number).
pub(super) type Chunk = Vec<(usize, u64)>;

/// One simulated tracker, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerInfo {
    /// Tracker id (subscribe targets, responses, readings).
    pub tracker_id: u64,
    /// Source id (states, lifecycle).
    pub source_id: u64,
    /// Status reported in subscribe responses.
    pub status: TrackerStatus,
    /// Number of the latest update (0 = only the initial state so far); the tracker
    /// has produced `latest_update + 1` distinct states when it is normal.
    pub latest_update: u64,
}

/// Now, truncated to the second (the default epoch).
pub(super) fn now_truncated() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// The user's timezone offset; an out-of-range value falls back to UTC.
pub(super) fn offset(secs: i32) -> FixedOffset {
    FixedOffset::east_opt(secs).unwrap_or_else(|| Utc.fix())
}

impl Shared {
    /// Tracker id of tracker `idx`.
    pub(super) fn tracker_id(&self, idx: usize) -> u64 {
        self.cfg.tracker_id_base + idx as u64
    }

    /// Source id of tracker `idx`.
    pub(super) fn source_id(&self, idx: usize) -> u64 {
        self.cfg.source_id_base + idx as u64
    }

    /// Status of a tracker id, inside the fleet or not.
    pub(super) fn status_of(&self, tracker_id: u64) -> TrackerStatus {
        let fleet = self.cfg.tracker_id_base..self.cfg.tracker_id_base + self.cfg.trackers as u64;
        self.cfg
            .status_overrides
            .iter()
            .find(|(id, _)| *id == tracker_id)
            .map(|(_, s)| *s)
            .unwrap_or(if fleet.contains(&tracker_id) {
                TrackerStatus::Normal
            } else {
                TrackerStatus::Unknown
            })
    }

    /// Indices of the trackers that produce data.
    pub(super) fn normal_indices(&self) -> Vec<usize> {
        (0..self.cfg.trackers)
            .filter(|i| self.status_of(self.tracker_id(*i)) == TrackerStatus::Normal)
            .collect()
    }

    /// `t` in the user's timezone: `2026-03-02 08:15:07` naive, or ISO 8601 with the
    /// offset (`2026-03-02T09:15:07+01:00`) when the subscribe asked for `iso_datetime`.
    /// Slow (chrono parses the format each time): callers cache, see [`super::render::Times`].
    pub(super) fn timestamp(&self, t: DateTime<Utc>, iso: bool) -> String {
        let local = t.with_timezone(&self.offset);
        if iso {
            local.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
        } else {
            local.format("%Y-%m-%d %H:%M:%S").to_string()
        }
    }

    /// Time between two updates of one tracker: `report_interval` (whole seconds,
    /// the resolution of Navixy times), else one second.
    pub(super) fn step(&self) -> std::time::Duration {
        self.cfg
            .report_interval
            .map(|d| std::time::Duration::from_secs(d.as_secs().max(1)))
            .unwrap_or(std::time::Duration::from_secs(1))
    }

    /// Time of update `k`: the epoch plus `k` steps (saturating).
    pub(super) fn state_time(&self, k: u64) -> DateTime<Utc> {
        let step = self.step().as_secs();
        k.checked_mul(step)
            .and_then(|s| i64::try_from(s).ok())
            .and_then(TimeDelta::try_seconds)
            .and_then(|d| self.epoch.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Tracker list for [`super::NavixyControl::fleet`].
pub(super) fn fleet_info(shared: &Shared) -> Vec<TrackerInfo> {
    let latest = shared.latest().clone();
    latest
        .iter()
        .enumerate()
        .map(|(idx, k)| TrackerInfo {
            tracker_id: shared.tracker_id(idx),
            source_id: shared.source_id(idx),
            status: shared.status_of(shared.tracker_id(idx)),
            latest_update: *k,
        })
        .collect()
}

/// Counts every normal tracker's initial state (and readings) as generated.
pub(super) fn count_initial(shared: &Shared) {
    let n = shared.normal_indices().len() as u64;
    let readings = shared.cfg.readings;
    shared.stats.update(|s| {
        s.states_generated += n;
        if readings {
            s.reading_items_generated += n;
            s.reading_values_generated += n * READING_VALUES_PER_ITEM;
        }
    });
}

/// A duration from seconds, saturating instead of panicking on absurd values.
fn secs_f64(secs: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(secs).unwrap_or(std::time::Duration::MAX)
}

fn blocked(shared: &Shared) -> bool {
    shared.paused.load(Ordering::SeqCst)
        || shared.faults.is_silent()
        || (shared.fanout.len() == 0 && !shared.cfg.run_without_subscribers)
}

/// Advances the trackers round-robin at `rate` updates/s and hands each chunk to the
/// subscribed connections. Waits (without spinning) while paused, silent or without
/// subscribers; a new rate window starts after each wait, so there is no burst.
pub(super) async fn generate(shared: Arc<Shared>) {
    let normal = shared.normal_indices();
    if normal.is_empty() {
        return;
    }
    if shared.cfg.report_interval.is_some() {
        return move_in_real_time(shared, normal).await;
    }
    let total = shared
        .cfg
        .updates
        .map(|u| u.saturating_mul(normal.len() as u64));
    let batch = shared.cfg.batch_size.max(1) as u64;
    let rate = shared.cfg.rate;
    let limited = rate.is_finite() && rate > 0.0;
    let mut produced: u64 = 0;
    let mut count_rx = shared.fanout.count_rx();
    let mut silent_rx = shared.faults.silent_rx();
    loop {
        if total.is_some_and(|t| produced >= t) {
            return;
        }
        if blocked(&shared) {
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = count_rx.changed() => {}
                _ = silent_rx.changed() => {}
            }
            continue;
        }
        let window = Instant::now();
        let mut in_window: u64 = 0;
        while !blocked(&shared) && total.is_none_or(|t| produced < t) {
            let due = if limited {
                let owed = (window.elapsed().as_secs_f64() * rate) as u64;
                owed.saturating_sub(in_window)
            } else {
                batch
            };
            if due == 0 {
                let next =
                    crate::sim::faults::later(window, secs_f64((in_window + 1) as f64 / rate));
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = shared.wake.notified() => {}
                }
                continue;
            }
            let remaining = total.map_or(u64::MAX, |t| t - produced);
            let n = due.min(batch).min(remaining);
            let chunk: Chunk = {
                let mut latest = shared.latest();
                (0..n)
                    .map(|j| {
                        let idx = normal[((produced + j) % normal.len() as u64) as usize];
                        latest[idx] += 1;
                        (idx, latest[idx])
                    })
                    .collect()
            };
            produced += n;
            in_window += n;
            let readings = shared.cfg.readings;
            shared.stats.update(|s| {
                s.states_generated += n;
                if readings {
                    s.reading_items_generated += n;
                    s.reading_values_generated += n * READING_VALUES_PER_ITEM;
                }
            });
            shared.fanout.send_all(Arc::new(chunk)).await;
        }
    }
}

/// The moving fleet: every normal tracker makes update `k` when the clock reaches
/// `epoch + k × step`, whether or not a client listens (then it is only history,
/// served over REST). Chunks go to subscribers unless paused, silent or alone.
async fn move_in_real_time(shared: Arc<Shared>, normal: Vec<usize>) {
    let step = shared.step();
    let tick = step.min(std::time::Duration::from_millis(100));
    let batch = shared.cfg.batch_size.max(1);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let elapsed = (Utc::now() - shared.epoch).num_milliseconds().max(0) as u128;
        let due = (elapsed / step.as_millis().max(1)) as u64;
        let due = shared.cfg.updates.map_or(due, |u| due.min(u));
        let chunk: Chunk = {
            let mut latest = shared.latest();
            let from = normal.first().map(|i| latest[*i]).unwrap_or(due);
            let mut out = Vec::new();
            for k in from + 1..=due {
                for idx in &normal {
                    if latest[*idx] < k {
                        latest[*idx] = k;
                        out.push((*idx, k));
                    }
                }
            }
            out
        };
        if chunk.is_empty() {
            continue;
        }
        let n = chunk.len() as u64;
        let readings = shared.cfg.readings;
        shared.stats.update(|s| {
            s.states_generated += n;
            if readings {
                s.reading_items_generated += n;
                s.reading_values_generated += n * READING_VALUES_PER_ITEM;
            }
        });
        if blocked(&shared) {
            continue;
        }
        for part in chunk.chunks(batch) {
            shared.fanout.send_all(Arc::new(part.to_vec())).await;
        }
    }
}
