//! `wsvault migrate --partition`: converts the history tables of an existing
//! PostgreSQL database, which held rows when migration 0008 ran, into partitioned
//! tables ([`super::partitions::TABLES`]). Never run at start: the operator decides
//! when the copy's I/O is acceptable.
//!
//! Per table: `<t>_new` is created partitioned (`wsvault_partition_create`, from the
//! migration), with partitions for the data's time range, and the rows are copied
//! one partition range per transaction, each recorded in `partition_progress`, so
//! an interrupted run (or one limited with `--ranges`) goes on where it stopped.
//! The daemon may keep writing meanwhile. The last step takes `<t>`'s lock (the
//! writer waits), copies again what was received since an hour before the
//! conversion began (duplicates are skipped by the unique keys), and swaps the
//! tables (`wsvault_partition_swap`): `<t>` becomes `<t>_old`, which is kept for
//! the operator to check and drop. Views are re-created on the new table and the
//! `wsvault_reader` grants renewed.

use super::partitions::{TABLES, ensure_table, is_partitioned, period_start};
use super::retention::{sources_statement, time_column};
use crate::store::Store;
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;
use std::time::Duration;

/// Why a conversion stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The database is SQLite, which has no partitions.
    #[error("--partition converts PostgreSQL tables; SQLite has no partitions")]
    NotPostgres,
    /// A statement failed; the progress of completed ranges is kept.
    #[error(
        "converting {table} failed at {step}: {source}; run `wsvault migrate --partition` again to resume"
    )]
    Sql {
        /// The table being converted.
        table: String,
        /// What was being done.
        step: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// The tables are converted, but renewing the `wsvault_reader` grants failed.
    #[error("renewing the reader grants after the conversion failed: {0}")]
    Regrant(#[source] crate::store::StoreError),
}

/// Where a run left the conversion.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every table is partitioned.
    Done,
    /// The `--ranges` limit was reached; a later run resumes.
    Paused,
}

/// How long the final step waits for a table's lock before giving up (the run
/// can be repeated; the copied ranges are kept).
const SWAP_LOCK_TIMEOUT: &str = "60s";

/// Converts every unpartitioned table of [`TABLES`], printing progress through
/// `say`; copies at most `ranges` partition ranges in this run when given.
pub async fn convert(
    store: &Store,
    period: Duration,
    ranges: Option<usize>,
    say: &mut dyn FnMut(String),
) -> Result<Outcome, ConvertError> {
    let pool = store.postgres_pool().ok_or(ConvertError::NotPostgres)?;
    let mut budget = ranges.unwrap_or(usize::MAX);
    for (table, col) in TABLES {
        let err = |step| {
            move |source| ConvertError::Sql {
                table: table.to_string(),
                step,
                source,
            }
        };
        if is_partitioned(pool, table)
            .await
            .map_err(err("reading the catalog"))?
        {
            say(format!("{table}: partitioned"));
            continue;
        }
        let bounds = start(pool, table, col, period)
            .await
            .map_err(err("creating the partitioned copy"))?;
        let len = chrono::Duration::from_std(period).unwrap_or(chrono::Duration::days(1));
        let mut at = bounds.done;
        while at < bounds.upper {
            if budget == 0 {
                say(format!(
                    "{table}: paused at {}; run again to resume",
                    at.to_rfc3339()
                ));
                return Ok(Outcome::Paused);
            }
            let to = (period_start(at, period) + len).min(bounds.upper);
            let n = copy_range(pool, table, col, at, to)
                .await
                .map_err(err("copying a range"))?;
            budget -= 1;
            let total = (bounds.upper - bounds.lower).num_seconds().max(1) as f64;
            let done = (to - bounds.lower).num_seconds() as f64;
            say(format!(
                "{table}: copied {n} rows of [{}, {}) ({:.0} %)",
                at.to_rfc3339(),
                to.to_rfc3339(),
                100.0 * done / total
            ));
            at = to;
        }
        let tail = finish(pool, table, bounds.started)
            .await
            .map_err(err("swapping the tables"))?;
        say(format!(
            "{table}: partitioned ({tail} rows received meanwhile copied under the lock); \
             the old table is kept as {table}_old: check it, then DROP TABLE {table}_old"
        ));
    }
    // Renews the `wsvault_reader` grants on the new tables and partitions.
    store.migrate().await.map_err(ConvertError::Regrant)?;
    Ok(Outcome::Done)
}

/// `partition_progress` columns: started_at, lower_bound, upper_bound, done_until.
type ProgressRow = (
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// A conversion's progress row.
struct Bounds {
    started: DateTime<Utc>,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
    done: DateTime<Utc>,
}

/// Creates `<t>_new` with its partitions and the progress row, or reads the row
/// of an earlier run.
async fn start(
    pool: &PgPool,
    table: &str,
    col: &str,
    period: Duration,
) -> Result<Bounds, sqlx::Error> {
    let new = format!("{table}_new");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&new)
        .fetch_one(pool)
        .await?;
    let row: Option<ProgressRow> = sqlx::query_as(
        "SELECT started_at, lower_bound, upper_bound, done_until FROM partition_progress \
             WHERE tbl = $1 AND finished_at IS NULL",
    )
    .bind(table)
    .fetch_optional(pool)
    .await?;
    if let (true, Some((started, Some(lower), Some(upper), Some(done)))) = (exists, row) {
        copy_index(pool, table, col).await?;
        return Ok(Bounds {
            started,
            lower,
            upper,
            done,
        });
    }
    // A fresh start (or a half-made one from before its progress row existed).
    let mut tx = pool.begin().await?;
    sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS \"{new}\"")))
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT wsvault_partition_create($1, $2)")
        .bind(table)
        .bind(col)
        .execute(&mut *tx)
        .await?;
    let (min, max): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(AssertSqlSafe(
        format!("SELECT min({col}), max({col}) FROM \"{table}\""),
    ))
    .fetch_one(&mut *tx)
    .await?;
    let started: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await?;
    let len = chrono::Duration::from_std(period).unwrap_or(chrono::Duration::days(1));
    let lower = period_start(min.unwrap_or(started), period);
    let upper = period_start(max.unwrap_or(started), period) + len;
    sqlx::query(
        "INSERT INTO partition_progress (tbl, started_at, lower_bound, upper_bound, done_until) \
         VALUES ($1, $2, $3, $4, $3) \
         ON CONFLICT (tbl) DO UPDATE SET started_at = $2, lower_bound = $3, upper_bound = $4, \
         done_until = $3, finished_at = NULL",
    )
    .bind(table)
    .bind(started)
    .bind(lower)
    .bind(upper)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Partitions for the copied range and the days the daemon is about to write.
    let ahead = upper.max(started) + len * 3;
    ensure_table(pool, &new, table, col, period, lower, ahead).await?;
    copy_index(pool, table, col).await?;
    Ok(Bounds {
        started,
        lower,
        upper,
        done: lower,
    })
}

/// An index on the old table's partition key, so each range is read by an index
/// range scan instead of a scan of the whole table. Built without blocking the
/// writer; an invalid one left by an interrupted build is rebuilt. It goes with
/// `<t>_old`.
async fn copy_index(pool: &PgPool, table: &str, col: &str) -> Result<(), sqlx::Error> {
    let name = format!("{table}_partition_copy");
    let valid: Option<bool> = sqlx::query_scalar(
        "SELECT x.indisvalid FROM pg_index x WHERE x.indexrelid = to_regclass($1)",
    )
    .bind(&name)
    .fetch_optional(pool)
    .await?;
    if valid == Some(true) {
        return Ok(());
    }
    if valid == Some(false) {
        sqlx::query(AssertSqlSafe(format!("DROP INDEX CONCURRENTLY \"{name}\"")))
            .execute(pool)
            .await?;
    }
    sqlx::query(AssertSqlSafe(format!(
        "CREATE INDEX CONCURRENTLY \"{name}\" ON \"{table}\" ({col})"
    )))
    .execute(pool)
    .await?;
    Ok(())
}

/// Copies the rows of `[from, to)` and records the progress, in one transaction.
async fn copy_range(
    pool: &PgPool,
    table: &str,
    col: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{table}_new\" SELECT * FROM \"{table}\" \
         WHERE {col} >= $1 AND {col} < $2 ON CONFLICT DO NOTHING"
    )))
    .bind(from)
    .bind(to)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("UPDATE partition_progress SET done_until = $2 WHERE tbl = $1")
        .bind(table)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// Under `<t>`'s lock: copies what was received since an hour before `started`
/// (for each source, along the `(source, receive time)` index), then swaps the
/// tables; returns the rows the tail added.
async fn finish(pool: &PgPool, table: &str, started: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let recv = time_column(table).unwrap_or("received_at");
    let since = started - chrono::Duration::hours(1);
    let mut tx = pool.begin().await?;
    sqlx::query(AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(AssertSqlSafe(format!(
        "LOCK TABLE \"{table}\", \"{table}_new\" IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut *tx)
    .await?;
    let sources: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sources_statement(table)))
        .fetch_all(&mut *tx)
        .await?;
    let tail = format!(
        "INSERT INTO \"{table}_new\" SELECT * FROM \"{table}\" \
         WHERE source = $1 AND {recv} >= $2 ON CONFLICT DO NOTHING"
    );
    let mut n = 0;
    for s in &sources {
        n += sqlx::query(AssertSqlSafe(tail.clone()))
            .bind(s)
            .bind(since)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    sqlx::query("SELECT wsvault_partition_swap($1)")
        .bind(table)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE partition_progress SET finished_at = now() WHERE tbl = $1")
        .bind(table)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
}
