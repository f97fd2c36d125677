//! SQLite: `tracker_latest` and `events_hourly`, kept in the batch's transaction
//! (see `store/derived.rs` for why there).
//!
//! `tracker_latest` takes the newest state per tracker among the rows the
//! tracker_states insert stored (its `RETURNING` names them with their ids; a
//! redelivered state is skipped, keeping the first row's id) from the batch's own
//! values, with no second lookup of `tracker_states`, and upserts only where
//! the stored state is older. `events_hourly` counts the rows the events insert
//! returned: `INSERT … ON CONFLICT DO NOTHING RETURNING` returns only rows it
//! inserted, so a retried batch adds nothing.

use super::sql::{CHUNKS, Spec, TRACKER_LATEST};
use crate::record::TrackerState;
use crate::store::derived::Hourly;
use crate::store::time::format_ts;
use sqlx::Row;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqliteRow};
use std::collections::HashMap;

type Q = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

/// Inserts `rows` like the parent's `insert`, in the same chunks, and returns the
/// rows the statement's `RETURNING` clause gave (only those actually inserted).
pub(super) async fn insert_returning<T>(
    conn: &mut SqliteConnection,
    spec: &Spec,
    rows: &[&T],
    bind: fn(Q, &T) -> Q,
) -> Result<Vec<SqliteRow>, sqlx::Error> {
    let mut out = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let n = CHUNKS
            .iter()
            .copied()
            .find(|c| *c <= rest.len() && spec.bulk)
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        let mut q: Q = sqlx::query(spec.sql(n));
        for row in chunk {
            q = bind(q, row);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
        rest = tail;
    }
    Ok(out)
}

/// Moves each tracker of `states` forward to its newest state among those the
/// tracker_states insert actually stored (`inserted`: its `RETURNING id, source,
/// source_id, state_time` rows), with that row's id, from the batch's own values.
///
/// A state the insert skipped as a duplicate is left out: it was stored by an earlier
/// committed batch, whose transaction moved `tracker_latest` to it or past it, so it
/// cannot move the tracker forward now. Looking the stored row up again by its natural
/// key (what this did before) cost an index probe per state for nothing.
pub(super) async fn tracker_latest(
    conn: &mut SqliteConnection,
    states: &[&TrackerState],
    inserted: &[SqliteRow],
) -> Result<(), sqlx::Error> {
    if inserted.is_empty() {
        return Ok(());
    }
    let mut ids: HashMap<(&str, i64, &str), i64> = HashMap::with_capacity(inserted.len());
    for row in inserted {
        ids.insert(
            (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
            row.try_get(0)?,
        );
    }
    let mut newest: HashMap<(&str, i64), (i64, &TrackerState)> = HashMap::with_capacity(ids.len());
    for s in states {
        let time = format_ts(&s.state_time);
        let Some(id) = ids.get(&(&*s.source, s.source_id, time.as_str())) else {
            continue;
        };
        newest
            .entry((&*s.source, s.source_id))
            .and_modify(|kept| {
                if s.state_time > kept.1.state_time {
                    *kept = (*id, s);
                }
            })
            .or_insert((*id, s));
    }
    let rows: Vec<(i64, &TrackerState)> = newest.into_values().collect();
    let refs: Vec<&(i64, &TrackerState)> = rows.iter().collect();
    insert_returning(conn, &TRACKER_LATEST, &refs, |q, (id, s)| {
        q.bind(s.source.clone())
            .bind(s.source_id)
            .bind(*id)
            .bind(format_ts(&s.state_time))
            .bind(format_ts(&s.received_at))
            .bind(s.lat)
            .bind(s.lng)
            .bind(s.speed)
            .bind(s.heading)
            .bind(s.connection_status.clone())
            .bind(s.movement_status.clone())
    })
    .await?;
    Ok(())
}

/// Adds the events `inserted` (rows of `source, kind, hour` from the events
/// insert's `RETURNING`) to `events_hourly`.
pub(super) async fn events_hourly(
    conn: &mut SqliteConnection,
    inserted: &[SqliteRow],
) -> Result<(), sqlx::Error> {
    let mut hourly = Hourly::<String>::default();
    for row in inserted {
        let source: &str = row.try_get(0)?;
        let kind: &str = row.try_get(1)?;
        let hour: String = row.try_get(2)?;
        hourly.add(source, kind, hour);
    }
    for ((source, kind, hour), n) in hourly.into_rows() {
        sqlx::query(
            "INSERT INTO events_hourly (source, kind, hour, n) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (source, kind, hour) DO UPDATE SET n = events_hourly.n + excluded.n",
        )
        .bind(source)
        .bind(kind)
        .bind(hour)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
