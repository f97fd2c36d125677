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

use crate::store::Store;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row as _};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
            create(pool, parent, base, col, &name, a, b).await?;
            parts.push(Part {
                name: name.clone(),
                lower: a,
                upper: b,
            });
            created.push(name);
        }
        lo = hi;
    }
    Ok(created)
}

/// Creates one partition. When the DEFAULT partition holds rows of its range,
/// PostgreSQL refuses (the default's constraint would be violated): then the rows
/// are split off in one transaction: detach the default, create the partition,
/// move the rows, attach the default again.
async fn create(
    pool: &PgPool,
    parent: &str,
    base: &str,
    col: &str,
    name: &str,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let ddl = format!(
        "CREATE TABLE \"{name}\" PARTITION OF \"{parent}\" FOR VALUES FROM ('{}') TO ('{}')",
        lower.to_rfc3339(),
        upper.to_rfc3339()
    );
    let mut tx = pool.begin().await?;
    sqlx::query(AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
    )))
    .execute(&mut *tx)
    .await?;
    match sqlx::query(AssertSqlSafe(ddl.clone()))
        .execute(&mut *tx)
        .await
    {
        Ok(_) => return tx.commit().await,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514") => {}
        Err(e) => return Err(e),
    }
    tx.rollback().await?;
    let default = format!("{base}_default");
    let mut tx = pool.begin().await?;
    let steps = [
        format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"),
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
    Ok(())
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
        let made = ensure_table(pool, table, table, col, period, lo, hi).await?;
        if made.is_empty() {
            // The range is covered, yet rows sit in the default: cannot happen while
            // PostgreSQL routes rows; stop rather than loop.
            break;
        }
        created.extend(made);
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
        sqlx::query(AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
        )))
        .execute(&mut *tx)
        .await?;
        let rows: f32 =
            sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)")
                .bind(&part.name)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0.0);
        sqlx::query(AssertSqlSafe(format!("DROP TABLE \"{}\"", part.name)))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        dropped.push((part.name, rows.max(0.0) as i64));
    }
    Ok(dropped)
}

/// The unpartitioned tables of [`TABLES`]: an existing database whose tables held
/// rows when migration 0008 ran.
pub async fn unpartitioned(pool: &PgPool) -> Result<Vec<&'static str>, sqlx::Error> {
    let mut out = Vec::new();
    for (table, _) in TABLES {
        if !is_partitioned(pool, table).await? {
            out.push(table);
        }
    }
    Ok(out)
}

/// One maintenance pass at `now`: the partitions for `now … now + 2 periods`, and
/// the DEFAULT partition's rows moved to partitions of their own.
pub async fn maintain(
    pool: &PgPool,
    period: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let ahead = now + period_len(period) * (AHEAD + 1);
    let mut created = ensure(pool, period, now, ahead).await?;
    for (table, col) in TABLES {
        if is_partitioned(pool, table).await? {
            created.extend(split_default(pool, table, col, period).await?);
        }
    }
    Ok(created)
}

/// The partition task of the daemon (PostgreSQL only); [`Maintainer::stop`] ends it.
pub struct Maintainer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Maintainer {
    /// Runs [`maintain`] now and then every quarter period (at most hourly), so
    /// partitions exist two periods before rows need them; `None` on SQLite. Logs
    /// once, as a warning, which tables are not partitioned and how to convert them:
    /// the daemon never rewrites a table by itself.
    pub fn start(store: Store, period: Duration) -> Option<Maintainer> {
        let pool = store.postgres_pool()?.clone();
        let (stop, mut stop_rx) = watch::channel(false);
        let every = (period / 4)
            .min(Duration::from_secs(3600))
            .max(Duration::from_secs(60));
        let task = tokio::spawn(async move {
            match unpartitioned(&pool).await {
                Ok(t) if !t.is_empty() => tracing::warn!(
                    tables = %t.join(", "),
                    "these tables are not partitioned (they held rows when the partitioning \
                     migration ran), so retention deletes their rows one by one; \
                     `wsvault migrate --partition` converts them (see README, Retention)"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot read which tables are partitioned: {e}"),
            }
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = super::stopped(&mut stop_rx) => return,
                    _ = ticks.tick() => {}
                }
                tokio::select! {
                    _ = super::stopped(&mut stop_rx) => return,
                    r = maintain(&pool, period, Utc::now()) => match r {
                        Ok(made) if !made.is_empty() => {
                            tracing::info!(partitions = %made.join(", "), "partitions created");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(
                            "creating partitions failed: {e}; retried at the next tick \
                             (rows meanwhile go to the default partition)"
                        ),
                    },
                }
            }
        });
        Some(Maintainer { stop, task })
    }

    /// Stops the task; a statement in flight is abandoned (each step is one
    /// transaction, so nothing is left half-done).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn periods_start_at_multiples_from_the_epoch() {
        let day = Duration::from_secs(86_400);
        assert_eq!(
            period_start(t("2026-03-02T17:05:00Z"), day),
            t("2026-03-02T00:00:00Z")
        );
        let six = Duration::from_secs(6 * 3600);
        assert_eq!(
            period_start(t("2026-03-02T17:05:00Z"), six),
            t("2026-03-02T12:00:00Z")
        );
        assert_eq!(
            part_name("events", t("2026-03-02T00:00:00Z")),
            "events_p20260302"
        );
        assert_eq!(
            part_name("events", t("2026-03-02T12:00:00Z")),
            "events_p2026030212"
        );
    }

    #[test]
    fn uncovered_leaves_out_existing_partitions() {
        let p = |a: &str, b: &str| Part {
            name: String::new(),
            lower: t(a),
            upper: t(b),
        };
        let parts = [
            p("2026-03-02T00:00:00Z", "2026-03-02T06:00:00Z"),
            p("2026-03-02T12:00:00Z", "2026-03-03T00:00:00Z"),
        ];
        assert_eq!(
            uncovered(t("2026-03-02T00:00:00Z"), t("2026-03-04T00:00:00Z"), &parts),
            vec![
                (t("2026-03-02T06:00:00Z"), t("2026-03-02T12:00:00Z")),
                (t("2026-03-03T00:00:00Z"), t("2026-03-04T00:00:00Z")),
            ]
        );
        assert!(uncovered(t("2026-03-02T12:00:00Z"), t("2026-03-03T00:00:00Z"), &parts).is_empty());
    }
}
