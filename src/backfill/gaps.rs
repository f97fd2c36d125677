//! The `gaps` table and the few reads the backfill needs, on both backends.
//!
//! Gap rows are control data, not upstream records: they are written directly
//! (not through the writer's queue) because the worker needs each status change
//! committed before it acts on it — a gap marked `done` must never be fetched
//! again, and one left `running` by a crash restarts from its `trackers_done`.
//! Times are bound as the storage contract's text on SQLite and as `timestamptz`
//! on PostgreSQL, exactly as the writer binds them, so equal instants compare equal.

use crate::store::{Store, format_ts, parse_ts};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// One `gaps` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub id: i64,
    pub source: String,
    /// Last frame received before the blind period.
    pub from_time: DateTime<Utc>,
    /// First frame received after it.
    pub to_time: DateTime<Utc>,
    /// `network`, `manual`, `down` (or, later, `handover`).
    pub cause: String,
    /// `pending`, `running`, `done`, `partial` or `failed`.
    pub status: String,
    pub trackers_total: Option<i64>,
    pub trackers_done: i64,
    pub points: i64,
    pub attempts: i64,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Every status a gap can have, for the metrics gauge.
pub const STATUSES: [&str; 5] = ["pending", "running", "done", "partial", "failed"];

type Result<T> = std::result::Result<T, sqlx::Error>;

fn ts(text: &str) -> Result<DateTime<Utc>> {
    parse_ts(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// `$1`, `$2`, … as `?` for SQLite (each parameter is used once, in order).
fn sqlite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

const COLUMNS: &str = "id, source, from_time, to_time, cause, status, trackers_total, \
     trackers_done, points, attempts, error, updated_at";

fn gap_sqlite(r: &sqlx::sqlite::SqliteRow) -> Result<Gap> {
    Ok(Gap {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        from_time: ts(&r.try_get::<String, _>(2)?)?,
        to_time: ts(&r.try_get::<String, _>(3)?)?,
        cause: r.try_get(4)?,
        status: r.try_get(5)?,
        trackers_total: r.try_get(6)?,
        trackers_done: r.try_get(7)?,
        points: r.try_get(8)?,
        attempts: r.try_get(9)?,
        error: r.try_get(10)?,
        updated_at: ts(&r.try_get::<String, _>(11)?)?,
    })
}

fn gap_postgres(r: &sqlx::postgres::PgRow) -> Result<Gap> {
    Ok(Gap {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        from_time: r.try_get(2)?,
        to_time: r.try_get(3)?,
        cause: r.try_get(4)?,
        status: r.try_get(5)?,
        trackers_total: r.try_get(6)?,
        trackers_done: r.try_get(7)?,
        points: r.try_get(8)?,
        attempts: r.try_get(9)?,
        error: r.try_get(10)?,
        updated_at: r.try_get(11)?,
    })
}

/// Runs one statement whose parameters are all text or integers or times.
enum P<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Time(DateTime<Utc>),
}

macro_rules! bind_all {
    ($q:expr, $params:expr, $time:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                P::Text(s) => q.bind(s.to_string()),
                P::OptText(s) => q.bind(s.map(str::to_string)),
                P::Int(i) => q.bind(*i),
                P::OptInt(i) => q.bind(*i),
                P::Time(t) => $time(q, t),
            };
        }
        q
    }};
}

async fn execute(store: &Store, sql: &str, params: &[P<'_>]) -> Result<u64> {
    if let Some(pool) = store.sqlite_pool() {
        let sql = sqlite_sql(sql);
        let q = bind_all!(
            sqlx::query(sqlx::AssertSqlSafe(sql)),
            params,
            |q: sqlx::query::Query<'static, sqlx::Sqlite, _>, t: &DateTime<Utc>| q
                .bind(format_ts(t))
        );
        Ok(q.execute(pool).await?.rows_affected())
    } else if let Some(pool) = store.postgres_pool() {
        let q = bind_all!(
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string())),
            params,
            |q: sqlx::query::Query<'static, sqlx::Postgres, _>, t: &DateTime<Utc>| q.bind(*t)
        );
        Ok(q.execute(pool).await?.rows_affected())
    } else {
        Err(sqlx::Error::PoolClosed)
    }
}

async fn gaps_where(store: &Store, cond: &str, params: &[P<'_>]) -> Result<Vec<Gap>> {
    let sql = format!("SELECT {COLUMNS} FROM gaps WHERE {cond} ORDER BY from_time, id");
    if let Some(pool) = store.sqlite_pool() {
        let q = bind_all!(
            sqlx::query(sqlx::AssertSqlSafe(sqlite_sql(&sql))),
            params,
            |q: sqlx::query::Query<'static, sqlx::Sqlite, _>, t: &DateTime<Utc>| q
                .bind(format_ts(t))
        );
        q.fetch_all(pool).await?.iter().map(gap_sqlite).collect()
    } else if let Some(pool) = store.postgres_pool() {
        let q = bind_all!(
            sqlx::query(sqlx::AssertSqlSafe(sql)),
            params,
            |q: sqlx::query::Query<'static, sqlx::Postgres, _>, t: &DateTime<Utc>| q.bind(*t)
        );
        q.fetch_all(pool).await?.iter().map(gap_postgres).collect()
    } else {
        Err(sqlx::Error::PoolClosed)
    }
}

/// Records a new blind period as `pending`; returns its id.
pub async fn insert(
    store: &Store,
    source: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cause: &str,
) -> Result<i64> {
    let id = crate::ids::next_id();
    execute(
        store,
        "INSERT INTO gaps (id, source, from_time, to_time, cause, status, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
        &[
            P::Int(id),
            P::Text(source),
            P::Time(from),
            P::Time(to),
            P::Text(cause),
            P::Time(Utc::now()),
        ],
    )
    .await?;
    Ok(id)
}

/// The gaps of `source` still to fill (`pending`, or `running` when a previous run
/// stopped in the middle), oldest first.
pub async fn open_for(store: &Store, source: &str) -> Result<Vec<Gap>> {
    gaps_where(
        store,
        "source = $1 AND status IN ('pending', 'running')",
        &[P::Text(source)],
    )
    .await
}

/// Every gap not (fully) recovered: pending, running, partial and failed, for `status`.
pub async fn unrecovered(store: &Store) -> Result<Vec<Gap>> {
    gaps_where(store, "status <> 'done'", &[]).await
}

/// Marks a gap `running` and counts the attempt. Only a gap that is still open is
/// taken, so a `done`/`partial` gap can never be fetched twice.
pub async fn start(store: &Store, id: i64) -> Result<bool> {
    let n = execute(
        store,
        "UPDATE gaps SET status = 'running', attempts = attempts + 1, updated_at = $1 \
         WHERE id = $2 AND status IN ('pending', 'running')",
        &[P::Time(Utc::now()), P::Int(id)],
    )
    .await?;
    Ok(n == 1)
}

/// Saves the progress of a running gap after a tracker is complete (its rows committed).
pub async fn progress(
    store: &Store,
    id: i64,
    trackers_total: i64,
    trackers_done: i64,
    points: i64,
    error: Option<&str>,
) -> Result<()> {
    execute(
        store,
        "UPDATE gaps SET trackers_total = $1, trackers_done = $2, points = $3, error = $4, \
         updated_at = $5 WHERE id = $6",
        &[
            P::OptInt(Some(trackers_total)),
            P::Int(trackers_done),
            P::Int(points),
            P::OptText(error),
            P::Time(Utc::now()),
            P::Int(id),
        ],
    )
    .await?;
    Ok(())
}

/// Sets the status (and error text) of a gap.
pub async fn set_status(store: &Store, id: i64, status: &str, error: Option<&str>) -> Result<()> {
    execute(
        store,
        "UPDATE gaps SET status = $1, error = $2, updated_at = $3 WHERE id = $4",
        &[
            P::Text(status),
            P::OptText(error),
            P::Time(Utc::now()),
            P::Int(id),
        ],
    )
    .await?;
    Ok(())
}

/// Gaps of `source` per status, for the `wsvault_gaps` gauge.
pub async fn counts(store: &Store, source: &str) -> Result<Vec<(String, i64)>> {
    let sql = "SELECT status, count(*) FROM gaps WHERE source = $1 GROUP BY status";
    if let Some(pool) = store.sqlite_pool() {
        sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sqlite_sql(sql)))
            .bind(source.to_string())
            .fetch_all(pool)
            .await
    } else if let Some(pool) = store.postgres_pool() {
        sqlx::query_as::<_, (String, i64)>(sql)
            .bind(source.to_string())
            .fetch_all(pool)
            .await
    } else {
        Err(sqlx::Error::PoolClosed)
    }
}

/// The last frame stored for `source` before this run: the newest `received_at` of
/// its frame-bearing tables. Each `max` is answered from the `(source, received_at)`
/// index of its table (one index probe, not a scan).
pub async fn last_stored(store: &Store, source: &str) -> Result<Option<DateTime<Utc>>> {
    let mut newest: Option<DateTime<Utc>> = None;
    for table in [
        "events",
        "tracker_states",
        "tracker_readings",
        "tracker_lifecycle",
    ] {
        let sql = format!("SELECT max(received_at) FROM {table} WHERE source = $1");
        let t = if let Some(pool) = store.sqlite_pool() {
            let v: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sqlite_sql(&sql)))
                .bind(source.to_string())
                .fetch_one(pool)
                .await?;
            v.map(|s| ts(&s)).transpose()?
        } else if let Some(pool) = store.postgres_pool() {
            sqlx::query_scalar::<_, Option<DateTime<Utc>>>(sqlx::AssertSqlSafe(sql))
                .bind(source.to_string())
                .fetch_one(pool)
                .await?
        } else {
            return Err(sqlx::Error::PoolClosed);
        };
        newest = newest.max(t);
    }
    Ok(newest)
}

/// What is already stored for one tracker around a window: every `state_time`, and
/// the GPS fix time (`gps.updated`, raw text) of each live row. A live state is keyed
/// by `last_update`, which Navixy may set a little after the fix a track point
/// carries as `get_time`; the fix times let the backfill skip such points.
pub async fn stored_times(
    store: &Store,
    source: &str,
    source_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, Option<String>)>> {
    if let Some(pool) = store.sqlite_pool() {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT state_time, CASE WHEN origin = 'live' \
             THEN json_extract(payload, '$.gps.updated') END \
             FROM tracker_states WHERE source = ? AND source_id = ? \
             AND state_time >= ? AND state_time <= ?",
        )
        .bind(source.to_string())
        .bind(source_id)
        .bind(format_ts(&from))
        .bind(format_ts(&to))
        .fetch_all(pool)
        .await?;
        rows.into_iter()
            .map(|(t, g)| Ok((ts(&t)?, g.filter(|g| !g.is_empty()))))
            .collect()
    } else if let Some(pool) = store.postgres_pool() {
        sqlx::query_as(
            "SELECT state_time, CASE WHEN origin = 'live' \
             THEN payload -> 'gps' ->> 'updated' END \
             FROM tracker_states WHERE source = $1 AND source_id = $2 \
             AND state_time >= $3 AND state_time <= $4",
        )
        .bind(source.to_string())
        .bind(source_id)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await
    } else {
        Err(sqlx::Error::PoolClosed)
    }
}

/// Source ids of the states received live in the first minute after `since` (the
/// snapshot sent after a resubscribe holds every tracker): one that the tracker
/// list lacks means the list is out of date.
pub async fn stored_times_sources(
    store: &Store,
    source: &str,
    since: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let until = since + chrono::TimeDelta::minutes(1);
    if let Some(pool) = store.sqlite_pool() {
        sqlx::query_scalar(
            "SELECT DISTINCT source_id FROM tracker_states WHERE source = ? \
             AND received_at >= ? AND received_at <= ? AND origin = 'live'",
        )
        .bind(source.to_string())
        .bind(format_ts(&since))
        .bind(format_ts(&until))
        .fetch_all(pool)
        .await
    } else if let Some(pool) = store.postgres_pool() {
        sqlx::query_scalar(
            "SELECT DISTINCT source_id FROM tracker_states WHERE source = $1 \
             AND received_at >= $2 AND received_at <= $3 AND origin = 'live'",
        )
        .bind(source.to_string())
        .bind(since)
        .bind(until)
        .fetch_all(pool)
        .await
    } else {
        Err(sqlx::Error::PoolClosed)
    }
}

/// Whether a tracker state with this key is committed (the writer's barrier: it
/// commits in queue order, so once the last row handed over is in, all are).
pub async fn state_committed(
    store: &Store,
    source: &str,
    source_id: i64,
    t: DateTime<Utc>,
) -> Result<bool> {
    if let Some(pool) = store.sqlite_pool() {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tracker_states WHERE source = ? AND source_id = ? \
             AND state_time = ?",
        )
        .bind(source.to_string())
        .bind(source_id)
        .bind(format_ts(&t))
        .fetch_one(pool)
        .await?;
        Ok(n > 0)
    } else if let Some(pool) = store.postgres_pool() {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tracker_states WHERE source = $1 AND source_id = $2 \
             AND state_time = $3",
        )
        .bind(source.to_string())
        .bind(source_id)
        .bind(t)
        .fetch_one(pool)
        .await?;
        Ok(n > 0)
    } else {
        Err(sqlx::Error::PoolClosed)
    }
}

/// The same barrier for a reading.
pub async fn reading_committed(store: &Store, r: &crate::record::TrackerReading) -> Result<bool> {
    if let Some(pool) = store.sqlite_pool() {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tracker_readings WHERE source = ? AND tracker_id = ? \
             AND reading_kind = ? AND name = ? AND update_time = ?",
        )
        .bind(r.source.to_string())
        .bind(r.tracker_id)
        .bind(r.reading_kind.clone())
        .bind(r.name.clone())
        .bind(format_ts(&r.update_time))
        .fetch_one(pool)
        .await?;
        Ok(n > 0)
    } else if let Some(pool) = store.postgres_pool() {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tracker_readings WHERE source = $1 AND tracker_id = $2 \
             AND reading_kind = $3 AND name = $4 AND update_time = $5",
        )
        .bind(r.source.to_string())
        .bind(r.tracker_id)
        .bind(r.reading_kind.clone())
        .bind(r.name.clone())
        .bind(r.update_time)
        .fetch_one(pool)
        .await?;
        Ok(n > 0)
    } else {
        Err(sqlx::Error::PoolClosed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbered_parameters_become_question_marks() {
        assert_eq!(
            super::sqlite_sql("a = $1 AND b = $12 AND c = '$x'"),
            "a = ? AND b = ? AND c = '$x'"
        );
    }
}
