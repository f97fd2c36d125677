//! PostgreSQL time partitions of the four large history tables (see
//! `migrations/postgres/0008_partitions.sql`): created ahead of time, split off the
//! DEFAULT partition when rows landed there first, and dropped whole by retention.
//!
//! Partitions start at multiples of `[storage] partition` counted from the Unix
//! epoch and are named `<table>_pYYYYMMDD` (`_pYYYYMMDDHH` when one starts inside a
//! day). A range already covered, in part, by a partition of another size (after
//! `partition` was changed) gets partitions only for its uncovered pieces, so
//! changing the size never fails and never leaves a hole to the DEFAULT partition.
//! [`Maintainer`] keeps `now … now + 2 periods` covered; rows outside every created
//! range (late data, a clock far off) land in `<table>_default` and are moved into
//! their own partition at the next tick ([`split_default`]).

use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row as _};
use std::time::Duration;

mod task;
pub use task::{Maintainer, maintain, unpartitioned};

/// The partitioned tables and their partition key: the event's own time for the
/// typed rows (whose UNIQUE constraints already hold it), the receive time for the
/// raw tables.
pub const TABLES: [(&str, &str); 4] = [
    ("tracker_states", "state_time"),
    ("tracker_readings", "update_time"),
    ("events", "received_at"),
    ("traffic", "at"),
];

/// How many periods after the current one [`Maintainer`] creates ahead.
const AHEAD: i32 = 2;

/// How long a partition drop or split waits for the table lock before giving up
/// until the next run: a long analyst query must not stall the writer behind it.
const LOCK_TIMEOUT: &str = "5s";

/// Bounds a partition DDL transaction: it waits at most [`LOCK_TIMEOUT`] for its
/// locks, and the server ends it when it sits idle that long. Its locks on the
/// parent table stop every insert; a daemon frozen (SIGSTOP, a stalled VM) in the
/// middle of one must not stop the other daemons' writers for longer than that.
async fn limit(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('lock_timeout', $1, true), \
                set_config('idle_in_transaction_session_timeout', $1, true)",
    )
    .bind(LOCK_TIMEOUT)
    .execute(tx)
    .await
    .map(|_| ())
}

/// One range partition: its name and `[lower, upper)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The partition's table name.
    pub name: String,
    /// Inclusive lower bound.
    pub lower: DateTime<Utc>,
    /// Exclusive upper bound.
    pub upper: DateTime<Utc>,
}

/// The partition key column of `table`, when it is one of [`TABLES`].
pub fn key_column(table: &str) -> Option<&'static str> {
    TABLES.iter().find(|(t, _)| *t == table).map(|(_, c)| *c)
}

/// Whether `table` (of the current schema) is a partitioned table. An existing
/// database migrated with rows in it stays unpartitioned until
/// `wsvault migrate --partition`; every caller checks rather than assumes.
pub async fn is_partitioned(pool: &PgPool, table: &str) -> Result<bool, sqlx::Error> {
    let kind: Option<i8> =
        sqlx::query_scalar("SELECT relkind::\"char\" FROM pg_class WHERE oid = to_regclass($1)")
            .bind(table)
            .fetch_optional(pool)
            .await?;
    Ok(kind == Some(b'p' as i8))
}

/// The DEFAULT partition of `parent`, if it has one: where rows outside every range
/// wait until the next pass moves them (retention walks it row by row meanwhile).
pub async fn default_partition(pool: &PgPool, parent: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid \
         WHERE i.inhparent = to_regclass($1) AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'",
    )
    .bind(parent)
    .fetch_optional(pool)
    .await
}

/// The range partitions of `parent`, oldest first (the DEFAULT partition is not
/// listed). Bounds are read back through PostgreSQL's own cast of the bound text.
pub async fn list(pool: &PgPool, parent: &str) -> Result<Vec<Part>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.relname::text AS name, \
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS lower, \
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS upper \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = to_regclass($1) \
           AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT' \
         ORDER BY 2",
    )
    .bind(parent)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (Some(lower), Some(upper)) = (
            r.try_get::<Option<DateTime<Utc>>, _>("lower")?,
            r.try_get::<Option<DateTime<Utc>>, _>("upper")?,
        ) else {
            continue; // MINVALUE/MAXVALUE bounds: not created by wsvault
        };
        out.push(Part {
            name: r.try_get("name")?,
            lower,
            upper,
        });
    }
    Ok(out)
}

/// The start of the period holding `t`: periods are multiples of `period` from the
/// Unix epoch.
pub fn period_start(t: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    let p = i64::try_from(period.as_secs()).unwrap_or(i64::MAX).max(1);
    let s = t.timestamp().div_euclid(p) * p;
    Utc.timestamp_opt(s, 0).single().unwrap_or(t)
}

fn period_len(period: Duration) -> chrono::Duration {
    chrono::Duration::from_std(period).unwrap_or(chrono::Duration::days(1))
}

/// The pieces of `[lo, hi)` that no partition of `parts` covers, in order.
pub fn uncovered(
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    parts: &[Part],
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut sorted: Vec<&Part> = parts
        .iter()
        .filter(|p| p.upper > lo && p.lower < hi)
        .collect();
    sorted.sort_by_key(|p| p.lower);
    let mut out = Vec::new();
    let mut at = lo;
    for p in sorted {
        if p.lower > at {
            out.push((at, p.lower.min(hi)));
        }
        at = at.max(p.upper);
    }
    if at < hi {
        out.push((at, hi));
    }
    out
}

/// The name of the partition of `table` starting at `lower`.
pub fn part_name(table: &str, lower: DateTime<Utc>) -> String {
    if lower.timestamp().rem_euclid(86_400) == 0 {
        format!("{table}_p{}", lower.format("%Y%m%d"))
    } else {
        format!("{table}_p{}", lower.format("%Y%m%d%H"))
    }
}

/// Creates the partitions of every partitioned table in [`TABLES`] that cover
/// `from … to` (whole periods); returns the names created. Rows of those ranges
/// already in the DEFAULT partition are moved into the new partition.
pub async fn ensure(
    pool: &PgPool,
    period: Duration,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let mut created = Vec::new();
    for (table, col) in TABLES {
        if is_partitioned(pool, table).await? {
            created.extend(ensure_table(pool, table, table, col, period, from, to).await?);
        }
    }
    Ok(created)
}

/// [`ensure`] for one partitioned table `parent`, whose partitions are named after
/// `base` (the table's final name: `<t>_new` during a conversion has `<t>`'s).
pub(crate) async fn ensure_table(
    pool: &PgPool,
    parent: &str,
    base: &str,
    col: &str,
    period: Duration,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let len = period_len(period);
    let mut parts = list(pool, parent).await?;
    let mut created = Vec::new();
    let mut lo = period_start(from, period);
    while lo < to {
        let hi = lo + len;
        for (a, b) in uncovered(lo, hi, &parts) {
            let name = part_name(base, a);
            let made = create(pool, parent, base, col, &name, a, b).await?;
            parts.push(Part {
                name: name.clone(),
                lower: a,
                upper: b,
            });
            if made {
                created.push(name);
            }
        }
        lo = hi;
    }
    Ok(created)
}

/// Creates one partition; `false` when another daemon of the cluster created it
/// (or an overlapping one) first. When the DEFAULT partition holds rows of its
/// range, PostgreSQL refuses (the default's constraint would be violated): then the
/// rows are split off in one transaction: detach the default, create the partition,
/// move the rows, attach the default again.
async fn create(
    pool: &PgPool,
    parent: &str,
    base: &str,
    col: &str,
    name: &str,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let ddl = format!(
        "CREATE TABLE \"{name}\" PARTITION OF \"{parent}\" FOR VALUES FROM ('{}') TO ('{}')",
        lower.to_rfc3339(),
        upper.to_rfc3339()
    );
    let mut tx = pool.begin().await?;
    limit(&mut tx).await?;
    match sqlx::query(AssertSqlSafe(ddl.clone()))
        .execute(&mut *tx)
        .await
    {
        Ok(_) => return tx.commit().await.map(|()| true),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514") => {}
        // duplicate_table, "would overlap partition", or (two daemons creating the
        // same partition at once) a unique violation in the catalog: made by another.
        Err(sqlx::Error::Database(e)) if taken_by_another(e.code().as_deref()) => {
            return Ok(false);
        }
        Err(e) => return Err(e),
    }
    tx.rollback().await?;
    let default = format!("{base}_default");
    let mut tx = pool.begin().await?;
    limit(&mut tx).await?;
    let steps = [
        format!("ALTER TABLE \"{parent}\" DETACH PARTITION \"{default}\""),
        ddl,
        format!(
            "WITH moved AS (DELETE FROM \"{default}\" WHERE {col} >= '{lo}' AND {col} < '{hi}' \
             RETURNING *) INSERT INTO \"{name}\" SELECT * FROM moved",
            lo = lower.to_rfc3339(),
            hi = upper.to_rfc3339()
        ),
        format!("ALTER TABLE \"{parent}\" ATTACH PARTITION \"{default}\" DEFAULT"),
    ];
    let mut moved = 0;
    for (i, step) in steps.into_iter().enumerate() {
        let n = sqlx::query(AssertSqlSafe(step))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if i == 3 {
            moved = n;
        }
    }
    tx.commit().await?;
    tracing::info!(
        partition = name,
        rows = moved,
        "rows of the default partition moved into their own partition"
    );
    Ok(true)
}

/// Whether a failed `CREATE TABLE … PARTITION OF` means the partition (or an
/// overlapping one) exists already, made by another daemon of the cluster.
fn taken_by_another(code: Option<&str>) -> bool {
    matches!(code, Some("42P07" | "42P17" | "23505"))
}

/// Moves every row of `<table>_default` into a partition of its period (created
/// for it), one period at a time; returns the partitions created. Each step reads
/// the DEFAULT partition, which normally holds few rows.
pub async fn split_default(
    pool: &PgPool,
    table: &str,
    col: &str,
    period: Duration,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!("SELECT min({col}) FROM \"{table}_default\" WHERE {col} >= $1");
    let mut created = Vec::new();
    let mut from = Utc
        .with_ymd_and_hms(1, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    loop {
        let next: Option<DateTime<Utc>> = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .bind(from)
            .fetch_one(pool)
            .await?;
        let Some(t) = next else { break };
        let lo = period_start(t, period);
        let hi = lo + period_len(period);
        // Empty when another daemon split this range first; `from` moves past it
        // either way, so the loop ends.
        created.extend(ensure_table(pool, table, table, col, period, lo, hi).await?);
        from = hi;
    }
    Ok(created)
}

/// Drops every partition of `table` whose upper bound is at or before `cutoff`;
/// returns each dropped partition with its row count as the statistics last saw it
/// (an estimate). `age` is the column retention ages rows by: when it is not the
/// partition key (tracker states and readings are partitioned by their own time but
/// aged by receive time), a partition holding a row received at or after the
/// cutoff (a late backfill) is kept; the DELETE walk removes its older rows, and
/// the partition goes once its last row has expired.
pub async fn drop_expired(
    pool: &PgPool,
    table: &str,
    age: &str,
    cutoff: DateTime<Utc>,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let Some(key) = key_column(table) else {
        return Ok(Vec::new());
    };
    let mut dropped = Vec::new();
    for part in list(pool, table).await? {
        if part.upper > cutoff {
            break;
        }
        if age != key {
            // One descent of the (source, age) index per source, not a scan.
            let young: bool = sqlx::query_scalar(AssertSqlSafe(format!(
                "WITH RECURSIVE s(source) AS (SELECT max(source) FROM \"{p}\" \
                 UNION ALL SELECT (SELECT max(t.source) FROM \"{p}\" AS t WHERE t.source < s.source) \
                 FROM s WHERE s.source IS NOT NULL) \
                 SELECT EXISTS (SELECT 1 FROM s WHERE s.source IS NOT NULL AND EXISTS \
                 (SELECT 1 FROM \"{p}\" AS t WHERE t.source = s.source AND t.{age} >= $1))",
                p = part.name
            )))
            .bind(cutoff)
            .fetch_one(pool)
            .await?;
            if young {
                continue;
            }
        }
        let mut tx = pool.begin().await?;
        limit(&mut tx).await?;
        let rows: f32 = sqlx::query_scalar(
            // `reltuples` is -1 until the partition was first analyzed; the
            // activity statistics' live count stands in then.
            "SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples \
                 ELSE coalesce(s.n_live_tup, 0)::real END \
                 FROM pg_class AS c LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid \
                 WHERE c.oid = to_regclass($1)",
        )
        .bind(&part.name)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(0.0);
        sqlx::query(AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS \"{}\"",
            part.name
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        dropped.push((part.name, rows.max(0.0) as i64));
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests;
