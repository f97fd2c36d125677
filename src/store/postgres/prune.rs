//! PostgreSQL's side of retention: the bounded delete along a `(source, time)`
//! index, resumable where the previous batch stopped.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

/// Deletes at most `batch` rows of one source with `$2 <= walk < $3` (`$2`: the
/// newest time the previous batch deleted, so the walk does not step over the dead
/// index entries earlier batches left until `VACUUM`); returns the count and the
/// newest walk time deleted. A ctid is unique only within one partition: the rows
/// are matched by `(tableoid, ctid)`; the `ctid = ANY` condition gives each
/// partition a TID scan of the few candidates.
pub(crate) fn statement(table: &str, walk: &str, age: &str, batch: usize) -> String {
    let also = if age == walk {
        String::new()
    } else {
        format!(" AND {age} < $3")
    };
    format!(
        "WITH doomed AS (SELECT tableoid, ctid FROM {table} \
         WHERE source = $1 AND {walk} >= $2 AND {walk} < $3{also} \
         ORDER BY {walk} LIMIT {batch}), \
         gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed)) \
         AND (tableoid, ctid) IN (SELECT tableoid, ctid FROM doomed) \
         RETURNING {walk}) \
         SELECT count(*), max({walk}) FROM gone"
    )
}

/// Runs one [`statement`] from `lower`; returns the rows deleted and the newest walk
/// time among them (where the next batch, and the next run, start).
pub(crate) async fn step(
    pool: &PgPool,
    sql: &str,
    source: &str,
    lower: DateTime<Utc>,
    cutoff: DateTime<Utc>,
) -> Result<crate::store::database::Pruned, sqlx::Error> {
    let (n, newest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(AssertSqlSafe(sql))
        .bind(source)
        .bind(lower)
        .bind(cutoff)
        .fetch_one(pool)
        .await?;
    Ok((u64::try_from(n).unwrap_or(0), newest))
}
