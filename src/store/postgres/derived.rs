//! PostgreSQL: `tracker_latest` and `events_hourly`, kept in the batch's transaction
//! (see `store/derived.rs` for why there).
//!
//! `tracker_latest`: the `UNNEST … ON CONFLICT` insert keeps it in the same
//! statement from the ids its `RETURNING` gives (`sql::TRACKER_STATES`). After a
//! `COPY` (which returns nothing) [`tracker_latest_copied`] joins the batch's newest
//! state per tracker back to `tracker_states` by the natural key to get the stored
//! ids (every row of a successful `COPY` is new: a duplicate makes the server refuse
//! the whole `COPY`); it updates only where the stored state is older.
//! `events_hourly`: after a `COPY` every event of the batch is new, so they are counted in
//! memory ([`events_hourly_copied`]); the `UNNEST` statement counts the rows its
//! `RETURNING` gives, in the same statement (`sql::EVENTS`).

use crate::record::{Event, TrackerState};
use crate::store::derived::{Hourly, hour_of, newest_per_tracker};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;

const TRACKER_LATEST: &str = "INSERT INTO tracker_latest AS l \
    (source, source_id, state_id, state_time, received_at, lat, lng, speed, heading, \
     connection_status, movement_status) \
    SELECT s.source, s.source_id, s.id, s.state_time, \
     s.received_at, s.lat, s.lng, s.speed, s.heading, s.connection_status, s.movement_status \
    FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[]) AS b(source, source_id, state_time) \
    JOIN tracker_states AS s \
      ON s.source = b.source AND s.source_id = b.source_id AND s.state_time = b.state_time \
    ON CONFLICT (source, source_id) DO UPDATE SET \
    state_id = excluded.state_id, state_time = excluded.state_time, \
    received_at = excluded.received_at, lat = excluded.lat, lng = excluded.lng, \
    speed = excluded.speed, heading = excluded.heading, \
    connection_status = excluded.connection_status, \
    movement_status = excluded.movement_status \
    WHERE excluded.state_time > l.state_time";

/// Adds counted events to `events_hourly`.
const EVENTS_HOURLY: &str = "INSERT INTO events_hourly AS h (source, kind, hour, n) \
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::bigint[]) \
    ON CONFLICT (source, kind, hour) DO UPDATE SET n = h.n + excluded.n";

/// Moves each tracker of `states` (just copied) forward to its newest state. The
/// keys are unique (one newest state per tracker, found in memory), so the join
/// gives at most one row per key and needs no `DISTINCT ON`.
pub(super) async fn tracker_latest_copied(
    conn: &mut PgConnection,
    states: &[&TrackerState],
) -> Result<(), sqlx::Error> {
    if states.is_empty() {
        return Ok(());
    }
    let newest = newest_per_tracker(states);
    let sources: Vec<&str> = newest.iter().map(|s| &*s.source).collect();
    let ids: Vec<i64> = newest.iter().map(|s| s.source_id).collect();
    let times: Vec<DateTime<Utc>> = newest.iter().map(|s| s.state_time).collect();
    sqlx::query(TRACKER_LATEST)
        .bind(sources)
        .bind(ids)
        .bind(times)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Counts `events`, all of which a successful `COPY` inserted, into `events_hourly`.
pub(super) async fn events_hourly_copied(
    conn: &mut PgConnection,
    events: &[&Event],
) -> Result<(), sqlx::Error> {
    let mut hourly = Hourly::<DateTime<Utc>>::default();
    for e in events {
        hourly.add(&e.source, &e.kind, hour_of(e.received_at));
    }
    if hourly.is_empty() {
        return Ok(());
    }
    let (mut sources, mut kinds, mut hours, mut counts) = (vec![], vec![], vec![], vec![]);
    for ((source, kind, hour), n) in hourly.into_rows() {
        sources.push(source);
        kinds.push(kind);
        hours.push(hour);
        counts.push(n);
    }
    sqlx::query(EVENTS_HOURLY)
        .bind(sources)
        .bind(kinds)
        .bind(hours)
        .bind(counts)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
