//! SQLite's side of retention: the bounded delete along a `(source, time)` index.

use crate::store::time::format_ts;
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqlitePool;

/// Deletes at most `batch` rows of one source older than the cutoff (`?2`), oldest
/// first along the `(source, walk)` index; `rowid` picks the rows. Returns nothing:
/// SQLite has no dead index entries for a later walk to step over, so it needs no
/// resume point.
pub(crate) fn statement(table: &str, walk: &str, age: &str, batch: usize) -> String {
    let also = if age == walk {
        String::new()
    } else {
        format!(" AND {age} < ?2")
    };
    format!(
        "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} \
         WHERE source = ?1 AND {walk} < ?2{also} ORDER BY {walk} LIMIT {batch})"
    )
}

/// Runs one [`statement`]; returns the rows deleted (and no resume point).
pub(crate) async fn step(
    pool: &SqlitePool,
    sql: &str,
    source: &str,
    cutoff: DateTime<Utc>,
) -> Result<crate::store::database::Pruned, sqlx::Error> {
    let n = sqlx::query(AssertSqlSafe(sql))
        .bind(source)
        .bind(format_ts(&cutoff))
        .execute(pool)
        .await?
        .rows_affected();
    Ok((n, None))
}
