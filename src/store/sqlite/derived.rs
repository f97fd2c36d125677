//! SQLite: `events_hourly`, kept in the batch's transaction (see `store/derived.rs`
//! for why there). It counts the rows the events insert returned: `INSERT … ON
//! CONFLICT DO NOTHING RETURNING` returns only rows it inserted, so a retried batch
//! adds nothing.
//!
//! `tracker_latest` needs no code here: the trigger of migration
//! `0010_latest_trigger.sql` upserts it from each row `tracker_states` actually
//! inserts (a skipped redelivery fires nothing), with the row's own id, in the
//! insert's statement and so in the batch's transaction.

use super::sql::{CHUNKS, Spec};
use crate::store::derived::Hourly;
use sqlx::Row;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqliteRow};

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
