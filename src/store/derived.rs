//! What both backends derive from a batch for the tables the writer keeps beside the
//! history: `tracker_latest` (the newest state per source and tracker) and
//! `events_hourly` (messages per source, kind and hour).
//!
//! Both are written in the batch's own transaction (`sqlite/derived.rs`,
//! `postgres/derived.rs`), so they commit or roll back with the rows they describe,
//! and a retried batch cannot count twice: `events_hourly` counts only rows the
//! database actually inserted, and `tracker_latest` only moves forward in time. This
//! module only sorts and counts in memory; it never talks to a database.

use crate::record::TrackerState;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::collections::HashMap;

/// The index in `states` of the newest state of each (source, tracker), one per
/// key, in no particular order (the first of equal times). PostgreSQL refuses to
/// upsert one key twice in a statement, and on both backends it spares the older
/// states of a batch a write. Indexes, not references, so a caller can pair each
/// state with what it holds per row (the ids minted for a `COPY`).
pub(crate) fn newest_per_tracker(states: &[&TrackerState]) -> Vec<usize> {
    let mut newest: HashMap<(&str, i64), usize> = HashMap::with_capacity(states.len());
    for (i, s) in states.iter().enumerate() {
        newest
            .entry((&*s.source, s.source_id))
            .and_modify(|kept| {
                if s.state_time > states[*kept].state_time {
                    *kept = i;
                }
            })
            .or_insert(i);
    }
    newest.into_values().collect()
}

/// The start of the UTC hour `t` falls in: the `hour` of its `events_hourly` row
/// (PostgreSQL's `date_trunc('hour', t, 'UTC')`).
pub(crate) fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

/// Inserted events counted per (source, kind, hour).
#[derive(Debug, Default)]
pub(crate) struct Hourly<K: std::hash::Hash + Eq> {
    counts: HashMap<(String, String, K), i64>,
}

impl<K: std::hash::Hash + Eq> Hourly<K> {
    /// Counts one inserted event.
    pub(crate) fn add(&mut self, source: &str, kind: &str, hour: K) {
        *self
            .counts
            .entry((source.to_string(), kind.to_string(), hour))
            .or_insert(0) += 1;
    }

    /// Every (source, kind, hour) with its count.
    pub(crate) fn into_rows(self) -> impl Iterator<Item = ((String, String, K), i64)> {
        self.counts.into_iter()
    }

    /// Whether nothing was counted.
    pub(crate) fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// A bare tracker state (no position, `{}` payload) at `secs` past the epoch, for
/// the unit tests of the derived tables and of the encoders that feed them.
#[cfg(test)]
pub(crate) fn sample_state(source: &str, id: i64, secs: i64) -> TrackerState {
    use chrono::TimeZone;
    TrackerState {
        source: source.into(),
        source_id: id,
        state_time: Utc.timestamp_opt(secs, 0).unwrap(),
        received_at: Utc.timestamp_opt(1_000, 0).unwrap(),
        lat: None,
        lng: None,
        speed: None,
        heading: None,
        connection_status: None,
        movement_status: None,
        payload: "{}".into(),
        origin: Default::default(),
        event_id: None,
        connection_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn state(source: &str, id: i64, secs: i64) -> TrackerState {
        sample_state(source, id, secs)
    }

    #[test]
    fn keeps_the_newest_state_per_source_and_tracker_whatever_the_order() {
        let rows = [
            state("a", 1, 20),
            state("a", 1, 30),
            state("a", 1, 10),
            state("b", 1, 5),
            state("a", 2, 7),
        ];
        let refs: Vec<&TrackerState> = rows.iter().collect();
        let mut got: Vec<(String, i64, i64)> = newest_per_tracker(&refs)
            .into_iter()
            .map(|i| refs[i])
            .map(|s| (s.source.to_string(), s.source_id, s.state_time.timestamp()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [("a".into(), 1, 30), ("a".into(), 2, 7), ("b".into(), 1, 5)]
        );
    }

    #[test]
    fn hour_is_the_start_of_the_utc_hour() {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 17, 59, 59).unwrap()
            + TimeDelta::microseconds(999_999);
        assert_eq!(
            hour_of(t),
            Utc.with_ymd_and_hms(2026, 3, 2, 17, 0, 0).unwrap()
        );
        let exact = Utc.with_ymd_and_hms(2026, 3, 2, 18, 0, 0).unwrap();
        assert_eq!(hour_of(exact), exact);
    }
}
