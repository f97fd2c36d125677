//! SQLite: `tracker_latest` and `events_hourly`, kept in the batch's transaction
//! (see `store/derived.rs` for why there).
//!
//! `tracker_latest` joins the batch's newest state per tracker back to
//! `tracker_states` by the natural key, so it takes the id of the row actually
//! stored (a redelivered state keeps the first row's id), and upserts only where
//! the stored state is older. `events_hourly` counts the rows the events insert
//! returned: `INSERT … ON CONFLICT DO NOTHING RETURNING` returns only rows it
//! inserted, so a retried batch adds nothing.

use super::sql::{CHUNKS, Spec};
use crate::record::TrackerState;
use crate::store::derived::{Hourly, newest_per_tracker};
use crate::store::time::format_ts;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr, SqlStr};
use std::sync::{Arc, OnceLock};

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

/// `tracker_latest` from the newest state per tracker of `(?,?,?)` keys, `n` keys.
fn latest_sql(n: usize) -> SqlStr {
    static SQL: OnceLock<Vec<SqlStr>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        CHUNKS
            .iter()
            .map(|n| {
                let values = vec!["(?,?,?)"; *n].join(",");
                let text = format!(
                    "INSERT INTO tracker_latest (source, source_id, state_id, state_time, \
                     received_at, lat, lng, speed, heading, connection_status, movement_status) \
                     SELECT s.source, s.source_id, s.id, s.state_time, s.received_at, s.lat, \
                     s.lng, s.speed, s.heading, s.connection_status, s.movement_status \
                     FROM (VALUES {values}) AS b \
                     JOIN tracker_states AS s ON s.source = b.column1 \
                     AND s.source_id = b.column2 AND s.state_time = b.column3 \
                     WHERE true \
                     ON CONFLICT (source, source_id) DO UPDATE SET \
                     state_id = excluded.state_id, state_time = excluded.state_time, \
                     received_at = excluded.received_at, lat = excluded.lat, \
                     lng = excluded.lng, speed = excluded.speed, heading = excluded.heading, \
                     connection_status = excluded.connection_status, \
                     movement_status = excluded.movement_status \
                     WHERE excluded.state_time > tracker_latest.state_time"
                );
                AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
            })
            .collect()
    });
    let idx = CHUNKS
        .iter()
        .position(|c| *c == n)
        .unwrap_or(CHUNKS.len() - 1);
    all[idx].clone()
}

/// Moves each tracker of `states` (already inserted) forward to its newest state.
pub(super) async fn tracker_latest(
    conn: &mut SqliteConnection,
    states: &[&TrackerState],
) -> Result<(), sqlx::Error> {
    if states.is_empty() {
        return Ok(());
    }
    let newest = newest_per_tracker(states);
    let mut rest = &newest[..];
    while !rest.is_empty() {
        let n = CHUNKS
            .iter()
            .copied()
            .find(|c| *c <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        let mut q: Q = sqlx::query(latest_sql(n));
        for s in chunk {
            q = q
                .bind(s.source.clone())
                .bind(s.source_id)
                .bind(format_ts(&s.state_time));
        }
        q.execute(&mut *conn).await?;
        rest = tail;
    }
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
