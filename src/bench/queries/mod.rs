//! `wsvault bench --queries`: the SQL cookbook at scale.
//!
//! Per backend: a fresh database is filled with a week of history for `--rows`
//! tracker states (2 000 trackers at most, half as many readings, one `events` row
//! per message, security sessions, notifications, reconnects and `gaps` rows)
//! through the library's writer ([`fill`]); PostgreSQL then gets `VACUUM ANALYZE`
//! (what autovacuum would have done by then). Every cookbook statement
//! ([`crate::bench::cookbook`]) is run once to warm the caches and then three times,
//! the best time counts; its plan is read with `EXPLAIN` and any full scan of a
//! history table is reported ([`plan`]). Last come the retention runs, with the
//! daemon's own retention code: one that removes the oldest ~30 % of the history
//! (up to the nearest midnight), then a steady-state one that removes the next five
//! minutes of it.
//!
//! Like every bench mode it only touches the databases it created.

mod fill;
mod plan;
mod retention;
mod timeline;

use super::BenchError;
use super::cookbook::QUESTIONS;
use super::target::{Env, Target, harness_storage};
use crate::config::StorageConfig;
use crate::store::Backend;
use chrono::Utc;
use sqlx::{AssertSqlSafe, Row as _};
use std::time::Instant;
use timeline::Shape;

/// One line of the result table on one backend.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The cookbook question, or the retention run.
    pub name: String,
    /// Best of three warm runs (retention: the one run), milliseconds.
    pub ms: f64,
    /// Rows returned (retention: rows deleted).
    pub rows: u64,
    /// Full scans of history tables in the plan; empty when the plan is fine.
    pub scans: Vec<String>,
}

/// Everything measured on one backend.
#[derive(Debug)]
pub struct Report {
    pub backend: Backend,
    pub lines: Vec<Measured>,
}

/// Fills a fresh database of `env.backend` with about `rows` states and measures it.
pub async fn run(env: &Env, rows: u64) -> Result<Report, BenchError> {
    let target = Target::create(env, "queries").await?;
    let result = measure(&target, env.backend, rows).await;
    target.cleanup().await;
    result
}

async fn measure(target: &Target, backend: Backend, rows: u64) -> Result<Report, BenchError> {
    let label = backend.name();
    let shape = Shape::new(rows, Utc::now());
    let cfg = StorageConfig {
        queue_capacity: 5_000,
        ..harness_storage(&target.url)
    };
    if let Some(pool) = target.store.postgres_pool() {
        // The daemon creates each day's partition ahead of time: a week of history
        // it wrote lies in daily partitions, not in the DEFAULT one.
        let made = crate::ops::partitions::ensure(
            pool,
            cfg.partition,
            shape.start,
            shape.end + chrono::Duration::days(3),
        )
        .await
        .map_err(BenchError::sql("creating the partitions of the history"))?;
        println!(
            "[{label}] partitions created before the fill: {}",
            made.len()
        );
    }
    let filled = fill::fill(&target.store, &cfg, &shape, label).await?;
    let counts = target.store.table_counts().await?;
    let shown: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    println!(
        "[{label}] fill: {} records through the writer in {:.1} s ({:.0} records/s), {} gaps rows; {} trackers, one report each {} s over {} days: {}",
        filled.records,
        filled.secs,
        filled.records as f64 / filled.secs.max(1e-9),
        filled.gaps,
        shape.trackers,
        shape.tick().num_seconds(),
        timeline::SPAN_DAYS,
        shown.join(", ")
    );
    if let Some(pool) = target.store.postgres_pool() {
        let t = Instant::now();
        sqlx::query("VACUUM ANALYZE")
            .execute(pool)
            .await
            .map_err(BenchError::sql("running VACUUM ANALYZE after the fill"))?;
        println!(
            "[{label}] VACUUM ANALYZE after the fill: {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    println!("[{label}] database size: {}", size(target).await);
    let mut lines = Vec::new();
    for q in QUESTIONS {
        let sql = match backend {
            Backend::Sqlite => q.sqlite,
            Backend::Postgres => q.postgres,
        };
        let scans = explain(target, sql).await?;
        let (ms, rows) = best_of_three(target, sql).await?;
        let m = Measured {
            name: q.name.to_string(),
            ms,
            rows,
            scans,
        };
        print_line(label, &m);
        lines.push(m);
    }
    for m in retention::run(target, &shape).await? {
        print_line(label, &m);
        lines.push(m);
    }
    Ok(Report { backend, lines })
}

fn print_line(label: &str, m: &Measured) {
    let plan = if m.scans.is_empty() {
        "plan ok".to_string()
    } else {
        format!("FULL SCAN: {}", m.scans.join("; "))
    };
    println!(
        "[{label}] {}: {:.2} ms, {} rows; {plan}",
        m.name, m.ms, m.rows
    );
}

/// The database's size on disk, for the record.
async fn size(target: &Target) -> String {
    if let Some(pool) = target.store.postgres_pool() {
        sqlx::query_scalar::<_, String>(
            "SELECT pg_size_pretty(pg_database_size(current_database()))",
        )
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| format!("unknown ({e})"))
    } else {
        target
            .sqlite_path()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or_else(
                || "unknown".into(),
                |m| format!("{:.0} MB", m.len() as f64 / 1e6),
            )
    }
}

/// The full scans of history tables in the plan of `sql`.
async fn explain(target: &Target, sql: &str) -> Result<Vec<String>, BenchError> {
    let tables = &super::cookbook::HISTORY_TABLES;
    let what = "reading a query plan";
    if let Some(pool) = target.store.sqlite_pool() {
        let rows = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(pool)
            .await
            .map_err(BenchError::sql(what))?;
        let details: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(3).ok())
            .collect();
        Ok(plan::sqlite_full_scans(
            &details,
            &plan::aliases(&with_views(target, sql).await?, tables),
        ))
    } else if let Some(pool) = target.store.postgres_pool() {
        let json: serde_json::Value =
            sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN (FORMAT JSON) {sql}")))
                .fetch_one(pool)
                .await
                .map_err(BenchError::sql(what))?;
        Ok(plan::without_empty(
            plan::postgres_full_scans(&json, tables),
            &empty_partitions(pool).await?,
        ))
    } else {
        Ok(Vec::new())
    }
}

/// The partitions that hold no rows as the last `VACUUM ANALYZE` counted (those
/// created ahead of the history's end, and the DEFAULT ones), see
/// [`plan::without_empty`].
pub(super) async fn empty_partitions(
    pool: &sqlx::PgPool,
) -> Result<std::collections::BTreeSet<String>, BenchError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE c.relpages = 0 AND c.reltuples <= 0",
    )
    .fetch_all(pool)
    .await
    .map_err(BenchError::sql("listing the empty partitions"))?;
    Ok(names.into_iter().collect())
}

/// `sql` followed by the definitions of the SQLite views it reads, so the aliases
/// a view gives its tables are known when its plan names them.
async fn with_views(target: &Target, sql: &str) -> Result<String, BenchError> {
    let Some(pool) = target.store.sqlite_pool() else {
        return Ok(sql.to_string());
    };
    let views: Vec<(String, String)> =
        sqlx::query_as("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
            .fetch_all(pool)
            .await
            .map_err(BenchError::sql("reading the view definitions"))?;
    let mut text = sql.to_string();
    for (name, def) in views {
        if sql.contains(&name) {
            text.push('\n');
            text.push_str(&def);
        }
    }
    Ok(text)
}

/// Runs `sql` once to warm the caches, then three times on the same connection;
/// the best time in milliseconds and the row count.
async fn best_of_three(target: &Target, sql: &'static str) -> Result<(f64, u64), BenchError> {
    let what = "running a cookbook statement";
    let mut best = f64::INFINITY;
    let mut rows = 0;
    if let Some(pool) = target.store.sqlite_pool() {
        let mut conn = pool.acquire().await.map_err(BenchError::sql(what))?;
        for run in 0..4 {
            let t = Instant::now();
            let n = sqlx::query(sql)
                .fetch_all(&mut *conn)
                .await
                .map_err(BenchError::sql(what))?
                .len();
            if run > 0 {
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            rows = n as u64;
        }
    } else if let Some(pool) = target.store.postgres_pool() {
        let mut conn = pool.acquire().await.map_err(BenchError::sql(what))?;
        for run in 0..4 {
            let t = Instant::now();
            let n = sqlx::query(sql)
                .fetch_all(&mut *conn)
                .await
                .map_err(BenchError::sql(what))?
                .len();
            if run > 0 {
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            rows = n as u64;
        }
    }
    Ok((best, rows))
}

/// The result table of every backend measured, in Markdown, for BENCHMARKS.md.
pub fn print_table(reports: &[Report]) {
    let find = |b: Backend| reports.iter().find(|r| r.backend == b);
    let Some(first) = reports.first() else {
        return;
    };
    println!("| question | SQLite ms | PostgreSQL ms | plan ok |");
    println!("|---|---|---|---|");
    for (i, line) in first.lines.iter().enumerate() {
        let cell = |b: Backend| {
            find(b)
                .and_then(|r| r.lines.get(i))
                .map_or_else(|| "—".to_string(), |m| format!("{:.2}", m.ms))
        };
        // The table names what scans where; the per-backend lines above say how.
        let scans: Vec<String> = reports
            .iter()
            .filter_map(|r| r.lines.get(i).map(|m| (r.backend, m)))
            .filter(|(_, m)| !m.scans.is_empty())
            .map(|(b, m)| format!("{}: {} full scans", b.name(), m.scans.len()))
            .collect();
        let ok = if scans.is_empty() {
            "yes".to_string()
        } else {
            format!("no ({})", scans.join("; "))
        };
        println!(
            "| {} | {} | {} | {ok} |",
            line.name,
            cell(Backend::Sqlite),
            cell(Backend::Postgres)
        );
    }
}
