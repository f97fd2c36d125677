//! SQLite's side of the id slots (`crate::id_slots`): one writer at a time holds
//! SQLite's write lock, so a plain `UPDATE … RETURNING` claims a slot atomically. The
//! times are this host's clock: every process of a SQLite database runs on it.

use crate::store::time::format_ts;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqlitePool;
use std::time::Duration;

/// `seen_at` of a released slot: before every real renewal.
pub(crate) const NEVER: &str = "0000-01-01T00:00:00.000000Z";

fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t - chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

/// Claims the least recently seen slot not renewed within `stale`; returns (slot,
/// high water, now in Unix ms).
pub(crate) async fn claim(
    pool: &SqlitePool,
    holder: &str,
    token: i64,
    stale: Duration,
) -> Result<Option<(i64, i64, i64)>, sqlx::Error> {
    let now = Utc::now();
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE id_slots SET holder = ?1, token = ?2, claimed_at = ?3, seen_at = ?3 \
         WHERE slot = (SELECT slot FROM id_slots WHERE seen_at < ?4 \
                       ORDER BY seen_at, slot LIMIT 1) \
         RETURNING slot, high_water",
    )
    .bind(holder)
    .bind(token)
    .bind(format_ts(&now))
    .bind(format_ts(&before(now, stale)))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(slot, hw)| (slot, hw, now.timestamp_millis())))
}

/// Renews `slot` held with `token`; returns now in Unix ms, `None` when it is lost.
pub(crate) async fn renew(
    pool: &SqlitePool,
    slot: u16,
    token: i64,
    high_water: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let now = Utc::now();
    let n = sqlx::query(
        "UPDATE id_slots SET seen_at = ?1, high_water = max(high_water, ?2) \
         WHERE slot = ?3 AND token = ?4",
    )
    .bind(format_ts(&now))
    .bind(high_water)
    .bind(i64::from(slot))
    .bind(token)
    .execute(pool)
    .await?
    .rows_affected();
    Ok((n == 1).then(|| now.timestamp_millis()))
}

/// Releases `slot`: it sorts first for the next claim.
pub(crate) async fn release(
    pool: &SqlitePool,
    slot: u16,
    token: i64,
    high_water: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE id_slots SET holder = NULL, token = NULL, seen_at = ?1, \
         high_water = max(high_water, ?2) WHERE slot = ?3 AND token = ?4",
    )
    .bind(NEVER)
    .bind(high_water)
    .bind(i64::from(slot))
    .bind(token)
    .execute(pool)
    .await
    .map(|_| ())
}
