//! The `gaps` table and the few reads the backfill needs, on both backends.
//!
//! Gap rows are control data, not upstream records: they are written directly
//! (not through the writer's queue) because the worker needs each status change
//! committed before it acts on it — a gap marked `done` must never be fetched
//! again, and one left `running` by a crash restarts from its `trackers_done`.
//! The SQL is written once and runs on either backend through the store's seam
//! (`Store::fetch_all`, `Store::execute`): times are bound as the storage contract's
//! text on SQLite and as `timestamptz` on PostgreSQL, exactly as the writer binds
//! them, so equal instants compare equal.

use crate::store::{DbTime, Param, Store};
use chrono::{DateTime, Utc};
use sqlx::FromRow;

/// One `gaps` row.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Gap {
    pub id: i64,
    pub source: String,
    /// Last frame received before the blind period.
    #[sqlx(try_from = "DbTime")]
    pub from_time: DateTime<Utc>,
    /// First frame received after it.
    #[sqlx(try_from = "DbTime")]
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
    #[sqlx(try_from = "DbTime")]
    pub updated_at: DateTime<Utc>,
}

/// Every status a gap can have, for the metrics gauge.
pub const STATUSES: [&str; 5] = ["pending", "running", "done", "partial", "failed"];

type Result<T> = std::result::Result<T, sqlx::Error>;

const COLUMNS: &str = "id, source, from_time, to_time, cause, status, trackers_total, \
     trackers_done, points, attempts, error, updated_at";

async fn gaps_where(store: &Store, cond: &str, params: &[Param<'_>]) -> Result<Vec<Gap>> {
    let sql = format!("SELECT {COLUMNS} FROM gaps WHERE {cond} ORDER BY from_time, id");
    store.fetch_all(&sql, params).await
}

/// `SELECT count(*) …` with `params`.
async fn count(store: &Store, sql: &str, params: &[Param<'_>]) -> Result<i64> {
    let row: Option<(i64,)> = store.fetch_optional(sql, params).await?;
    Ok(row.map_or(0, |(n,)| n))
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
    store
        .execute(
            "INSERT INTO gaps (id, source, from_time, to_time, cause, status, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
            &[
                Param::Int(id),
                Param::Text(source),
                Param::Time(from),
                Param::Time(to),
                Param::Text(cause),
                Param::Time(Utc::now()),
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
        &[Param::Text(source)],
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
    let n = store
        .execute(
            "UPDATE gaps SET status = 'running', attempts = attempts + 1, updated_at = $1 \
         WHERE id = $2 AND status IN ('pending', 'running')",
            &[Param::Time(Utc::now()), Param::Int(id)],
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
    store
        .execute(
            "UPDATE gaps SET trackers_total = $1, trackers_done = $2, points = $3, error = $4, \
         updated_at = $5 WHERE id = $6",
            &[
                Param::OptInt(Some(trackers_total)),
                Param::Int(trackers_done),
                Param::Int(points),
                Param::OptText(error),
                Param::Time(Utc::now()),
                Param::Int(id),
            ],
        )
        .await?;
    Ok(())
}

/// Sets the status (and error text) of a gap.
pub async fn set_status(store: &Store, id: i64, status: &str, error: Option<&str>) -> Result<()> {
    store
        .execute(
            "UPDATE gaps SET status = $1, error = $2, updated_at = $3 WHERE id = $4",
            &[
                Param::Text(status),
                Param::OptText(error),
                Param::Time(Utc::now()),
                Param::Int(id),
            ],
        )
        .await?;
    Ok(())
}

/// Gaps of `source` per status, for the `wsvault_gaps` gauge.
pub async fn counts(store: &Store, source: &str) -> Result<Vec<(String, i64)>> {
    store
        .fetch_all(
            "SELECT status, count(*) FROM gaps WHERE source = $1 GROUP BY status",
            &[Param::Text(source)],
        )
        .await
}

/// The last frame stored for `source` before this run: the newest `received_at` of
/// its frame-bearing tables. Each `max` is answered from the `(source, received_at)`
/// index of its table (one index probe, not a scan). When no frame was ever stored
/// but an earlier run (or another node) had connected, the blind period starts at
/// that connection's opening: it received frames that never reached the database
/// (killed before its first commit), and they must be fetched back too.
pub async fn last_stored(store: &Store, source: &str) -> Result<Option<DateTime<Utc>>> {
    let mut newest: Option<DateTime<Utc>> = None;
    for table in [
        "events",
        "tracker_states",
        "tracker_readings",
        "tracker_lifecycle",
    ] {
        let sql = format!("SELECT max(received_at) FROM {table} WHERE source = $1");
        let t: Option<(DbTime,)> = store.fetch_optional(&sql, &[Param::Text(source)]).await?;
        newest = newest.max(t.and_then(|(t,)| t.0));
    }
    if newest.is_none() {
        let sql = "SELECT max(opened_at) FROM connections WHERE source = $1";
        let t: Option<(DbTime,)> = store.fetch_optional(sql, &[Param::Text(source)]).await?;
        newest = t.and_then(|(t,)| t.0);
    }
    Ok(newest)
}

/// One stored state's time and, for a live row, its GPS fix time (raw text).
#[derive(FromRow)]
struct StoredTime {
    #[sqlx(try_from = "DbTime")]
    state_time: DateTime<Utc>,
    gps_updated: Option<String>,
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
    let sql = format!(
        "SELECT state_time, CASE WHEN origin = 'live' THEN {} END AS gps_updated \
         FROM tracker_states WHERE source = $1 AND source_id = $2 \
         AND state_time >= $3 AND state_time <= $4",
        store.json_field("payload", &["gps", "updated"])
    );
    let rows: Vec<StoredTime> = store
        .fetch_all(
            &sql,
            &[
                Param::Text(source),
                Param::Int(source_id),
                Param::Time(from),
                Param::Time(to),
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.state_time, r.gps_updated.filter(|g| !g.is_empty())))
        .collect())
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
    let rows: Vec<(i64,)> = store
        .fetch_all(
            "SELECT DISTINCT source_id FROM tracker_states WHERE source = $1 \
             AND received_at >= $2 AND received_at <= $3 AND origin = 'live'",
            &[Param::Text(source), Param::Time(since), Param::Time(until)],
        )
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Whether a tracker state with this key is committed (the writer's barrier: it
/// commits in queue order, so once the last row handed over is in, all are).
pub async fn state_committed(
    store: &Store,
    source: &str,
    source_id: i64,
    t: DateTime<Utc>,
) -> Result<bool> {
    let n = count(
        store,
        "SELECT count(*) FROM tracker_states WHERE source = $1 AND source_id = $2 \
         AND state_time = $3",
        &[Param::Text(source), Param::Int(source_id), Param::Time(t)],
    )
    .await?;
    Ok(n > 0)
}

/// The same barrier for a reading.
pub async fn reading_committed(store: &Store, r: &crate::record::TrackerReading) -> Result<bool> {
    let n = count(
        store,
        "SELECT count(*) FROM tracker_readings WHERE source = $1 AND tracker_id = $2 \
         AND reading_kind = $3 AND name = $4 AND update_time = $5",
        &[
            Param::Text(&r.source),
            Param::Int(r.tracker_id),
            Param::Text(&r.reading_kind),
            Param::Text(&r.name),
            Param::Time(r.update_time),
        ],
    )
    .await?;
    Ok(n > 0)
}
