//! PostgreSQL: `tracker_latest` and `events_hourly`, kept in the batch's transaction
//! (see `store/derived.rs` for why there).
//!
//! `tracker_latest`: the `UNNEST … ON CONFLICT` insert keeps it in the same
//! statement from the ids its `RETURNING` gives (`sql::TRACKER_STATES`). A `COPY`
//! returns nothing, so its rows' ids are minted from the identity sequence before it
//! (`insert::mint_state_ids`), and [`tracker_latest_copied`] upserts the batch's
//! newest state per tracker from the batch's own values: every row of a successful
//! `COPY` is new (a duplicate makes the server refuse the whole `COPY`), so no row
//! needs looking up again. It updates only where the stored state is older.
//! `events_hourly`: after a `COPY` every event of the batch is new, so they are counted in
//! memory ([`events_hourly_copied`]); the `UNNEST` statement counts the rows its
//! `RETURNING` gives, in the same statement (`sql::EVENTS`).

use super::sql::{latest_forward, latest_insert};
use crate::record::{Event, TrackerState};
use crate::store::derived::{Hourly, hour_of, newest_per_tracker};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;

const TRACKER_LATEST: &str = concat!(
    latest_insert!(),
    "SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[], \
     $5::timestamptz[], $6::float8[], $7::float8[], $8::float8[], $9::float8[], \
     $10::text[], $11::text[]) ",
    latest_forward!()
);

/// Adds counted events to `events_hourly`.
const EVENTS_HOURLY: &str = "INSERT INTO events_hourly AS h (source, kind, hour, n) \
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::bigint[]) \
    ON CONFLICT (source, kind, hour) DO UPDATE SET n = h.n + excluded.n";

/// Moves each tracker of `states` (just copied, `ids[i]` being the id of
/// `states[i]`) forward to its newest state. Every row of a successful `COPY` is
/// stored, under the id minted for it, so the values come from the batch itself
/// and nothing is looked up; the keys are unique (one newest state per tracker,
/// found in memory), as one upsert statement needs.
pub(super) async fn tracker_latest_copied(
    conn: &mut PgConnection,
    states: &[&TrackerState],
    ids: &[i64],
) -> Result<(), sqlx::Error> {
    let newest = newest_per_tracker(states);
    if newest.is_empty() {
        return Ok(());
    }
    let pick = |f: fn(&TrackerState) -> Option<f64>| -> Vec<Option<f64>> {
        newest.iter().map(|i| f(states[*i])).collect()
    };
    let text = |f: fn(&TrackerState) -> Option<&str>| -> Vec<Option<&str>> {
        newest.iter().map(|i| f(states[*i])).collect()
    };
    sqlx::query(TRACKER_LATEST)
        .bind(text(|s| Some(&*s.source)))
        .bind(
            newest
                .iter()
                .map(|i| states[*i].source_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            newest
                .iter()
                .map(|i| ids.get(*i).copied())
                .collect::<Vec<_>>(),
        )
        .bind(
            newest
                .iter()
                .map(|i| states[*i].state_time)
                .collect::<Vec<DateTime<Utc>>>(),
        )
        .bind(
            newest
                .iter()
                .map(|i| states[*i].received_at)
                .collect::<Vec<DateTime<Utc>>>(),
        )
        .bind(pick(|s| s.lat))
        .bind(pick(|s| s.lng))
        .bind(pick(|s| s.speed))
        .bind(pick(|s| s.heading))
        .bind(text(|s| s.connection_status.as_deref()))
        .bind(text(|s| s.movement_status.as_deref()))
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
