//! The retention runs of `bench --queries`, with the daemon's own retention code
//! ([`crate::ops::retention`]) and the configured source names: first the run
//! that removes the oldest ~30 % of the history, up to the nearest midnight (what
//! a first prune after lowering a limit does), then a steady-state run that removes
//! the next five minutes of it (what every routine run does). Before them, the plan of each table's delete
//! statement is read: on PostgreSQL both the custom plan of the first executions
//! and the generic plan the server may switch to later.

use super::Measured;
use super::plan;
use super::timeline::{SOURCES, Shape};
use crate::bench::BenchError;
use crate::bench::cookbook::HISTORY_TABLES;
use crate::bench::target::Target;
use crate::config::RetentionConfig;
use crate::ops::retention::{Pruner, delete_statement};
use crate::store::format_ts;
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row as _};
use std::collections::BTreeMap;
use std::time::Instant;

/// The tables the runs prune: every table the fill writes that retention may touch.
const TABLES: [&str; 7] = [
    "tracker_states",
    "tracker_readings",
    "events",
    "session_events",
    "connections",
    "notifications",
    "security_session_changes",
];

/// `[retention] batch`, the daemon's default.
const BATCH: usize = 5_000;

/// The first run's cutoff: five minutes past the UTC midnight nearest to the point
/// that leaves 70 % of the history, so it removes whole days (23–37 % of the week).
/// That is where a routine run (every 5 minutes) first finds a day's partition
/// wholly expired: the five minutes cover the states of the day's last seconds that
/// were received after midnight. On PostgreSQL the run then drops whole daily
/// partitions and nothing else, whatever the clock; the history itself still ends
/// now, as the cookbook's `now()`-relative questions need.
pub(super) fn first_cutoff(shape: &Shape) -> DateTime<Utc> {
    use chrono::{Duration, DurationRound};
    let at = shape.end - (shape.end - shape.start) * 7 / 10;
    let day = Duration::days(1);
    let midnight = match at.duration_trunc(day) {
        Ok(m) if at - m >= Duration::hours(12) => m + day,
        Ok(m) => m,
        Err(_) => at,
    };
    midnight + Duration::minutes(5)
}

/// The two runs, each as one line of the result table.
pub async fn run(target: &Target, shape: &Shape) -> Result<Vec<Measured>, BenchError> {
    let span = shape.end - shape.start;
    let cutoff = first_cutoff(shape);
    let keep = (shape.end - cutoff).to_std().unwrap_or_default();
    println!(
        "[{}] retention cutoff of the first run: {cutoff} (the oldest {:.1} % of the history)",
        target.store.backend().name(),
        (cutoff - shape.start).num_seconds() as f64 * 100.0 / span.num_seconds().max(1) as f64
    );
    let cfg = RetentionConfig {
        tables: TABLES.iter().map(|t| (t.to_string(), keep)).collect(),
        interval: std::time::Duration::from_secs(300),
        batch: BATCH,
    };
    let scans = explain_deletes(target, cutoff).await?;
    // One pruner for both runs, as the daemon's retention task keeps one.
    let mut pruner = Pruner::default();
    let first = timed(
        target,
        &mut pruner,
        &cfg,
        shape.end,
        "retention: the oldest ~30 % (whole days)",
        &scans,
    )
    .await?;
    let steady = shape.end + span / 2016;
    let second = timed(
        target,
        &mut pruner,
        &cfg,
        steady,
        "retention: steady state (the next 5 minutes)",
        &scans,
    )
    .await?;
    Ok(vec![first, second])
}

async fn timed(
    target: &Target,
    pruner: &mut Pruner,
    cfg: &RetentionConfig,
    now: DateTime<Utc>,
    name: &str,
    scans: &[String],
) -> Result<Measured, BenchError> {
    let label = target.store.backend().name();
    let sources: Vec<String> = SOURCES.iter().map(|s| s.to_string()).collect();
    let wal_before = wal_lsn(target).await;
    let t = Instant::now();
    let deleted = pruner
        .run(&target.store, cfg, Some(&sources), now)
        .await
        .map_err(|e| BenchError::Daemon(format!("{name}: {e}")))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let per_table: Vec<String> = deleted.iter().map(|(t, n)| format!("{n} {t}")).collect();
    let wal = match wal_before {
        Some(lsn) => wal_since(target, &lsn).await.map_or_else(String::new, |b| {
            format!(", {:.1} MB of WAL", b as f64 / 1e6)
        }),
        None => String::new(),
    };
    println!("[{label}] {name}: deleted {}{wal}", per_table.join(", "));
    Ok(Measured {
        name: name.to_string(),
        ms,
        rows: deleted.iter().map(|(_, n)| n).sum(),
        scans: scans.to_vec(),
    })
}

async fn wal_lsn(target: &Target) -> Option<String> {
    let pool = target.store.postgres_pool()?;
    sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(pool)
        .await
        .ok()
}

/// WAL bytes written since `lsn` by the whole server (other databases included).
async fn wal_since(target: &Target, lsn: &str) -> Option<i64> {
    let pool = target.store.postgres_pool()?;
    sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint")
        .bind(lsn)
        .fetch_one(pool)
        .await
        .ok()
}

/// Full scans of the pruned table in the plan of each history table's delete
/// statement (the small tables may be scanned: a few hundred rows).
async fn explain_deletes(
    target: &Target,
    cutoff: DateTime<Utc>,
) -> Result<Vec<String>, BenchError> {
    let what = "reading the plan of a retention statement";
    let mut scans = Vec::new();
    for table in TABLES.into_iter().filter(|t| HISTORY_TABLES.contains(t)) {
        let Some(sql) = delete_statement(&target.store, table, BATCH) else {
            continue;
        };
        if let Some(pool) = target.store.sqlite_pool() {
            let rows = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind(SOURCES[0])
                .bind(format_ts(&cutoff))
                .fetch_all(pool)
                .await
                .map_err(BenchError::sql(what))?;
            let details: Vec<String> = rows
                .iter()
                .filter_map(|r| r.try_get::<String, _>(3).ok())
                .collect();
            let found = plan::sqlite_full_scans(&details, &plan::aliases(&sql, &[table]));
            scans.extend(
                found
                    .into_iter()
                    .map(|s| format!("retention of {table}: {s}")),
            );
        } else if let Some(pool) = target.store.postgres_pool() {
            let mut conn = pool.acquire().await.map_err(BenchError::sql(what))?;
            let prepare = format!("PREPARE wsvault_bench_prune AS {sql}");
            sqlx::raw_sql(AssertSqlSafe(prepare))
                .execute(&mut *conn)
                .await
                .map_err(BenchError::sql(what))?;
            let empty = super::empty_partitions(pool).await?;
            let mut found: BTreeMap<String, Vec<&str>> = BTreeMap::new();
            for (mode, short) in [
                ("force_custom_plan", "custom"),
                ("force_generic_plan", "generic"),
            ] {
                let explain = format!(
                    "SET plan_cache_mode = {mode}; \
                     EXPLAIN (FORMAT JSON) EXECUTE wsvault_bench_prune('{}', '0001-01-01T00:00:00Z', '{}')",
                    SOURCES[0],
                    cutoff.to_rfc3339()
                );
                let rows = sqlx::raw_sql(AssertSqlSafe(explain))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(BenchError::sql(what))?;
                for r in rows {
                    let json: serde_json::Value = r.try_get(0).map_err(BenchError::sql(what))?;
                    let all = plan::postgres_full_scans(&json, &[table]);
                    for scan in plan::without_empty(all, &empty) {
                        let modes = found.entry(scan).or_default();
                        if !modes.contains(&short) {
                            modes.push(short);
                        }
                    }
                }
            }
            scans.extend(found.into_iter().map(|(scan, modes)| {
                format!(
                    "retention of {table}: {scan} ({} plan)",
                    modes.join(" and ")
                )
            }));
            sqlx::raw_sql("DEALLOCATE wsvault_bench_prune; RESET plan_cache_mode")
                .execute(&mut *conn)
                .await
                .map_err(BenchError::sql(what))?;
        }
    }
    Ok(scans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Timelike};

    #[test]
    fn first_cutoff_is_five_minutes_past_the_midnight_nearest_to_seventy_percent_kept() {
        for (h, m) in [(0, 0), (3, 10), (11, 59), (12, 1), (23, 59)] {
            let end = Utc.with_ymd_and_hms(2026, 11, 28, h, m, 0).unwrap();
            let shape = Shape::new(1_000, end);
            let cut = first_cutoff(&shape);
            assert_eq!((cut.hour(), cut.minute(), cut.second()), (0, 5, 0), "{end}");
            let at = end - (end - shape.start) * 7 / 10;
            let midnight = cut - Duration::minutes(5);
            assert!(
                (midnight - at).abs() <= Duration::hours(12),
                "{cut} for {at}"
            );
            let share = (cut - shape.start).num_minutes() as f64 / (7.0 * 1440.0);
            assert!((0.22..=0.38).contains(&share), "{share} for {end}");
        }
    }
}
