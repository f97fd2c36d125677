//! `[retention]`: deletes rows older than each table's limit, on a timer, in small
//! batches so the writer never waits long behind a prune.
//!
//! Each statement deletes at most `batch` rows of one source, the oldest first: it
//! walks the table's `(source, time)` index in time order from where the previous
//! statement stopped, so no statement scans the table, and the cost of a run follows
//! what it deletes, not the size of the table (`rowid` on SQLite, `ctid` on
//! PostgreSQL, whose dead index entries of earlier batches are skipped by starting
//! each walk at the previous batch's newest deleted time, and the retention task
//! starts each run where its previous run stopped, see [`Pruner`]). The sources come from the
//! configuration ([`prune_sources`]); without a list ([`prune_once`]) they are
//! found by a backward skip over the same index, one index descent per source,
//! instead of `SELECT DISTINCT source`, which read the whole table. The task sleeps
//! briefly between statements so writer transactions interleave. Only tables listed
//! in [`crate::config::RETENTION_TABLES`] are touched, and a connection is pruned
//! only once it is closed. This module never deletes a row younger than its table's
//! limit and never touches the current-state tables `security_sessions` and
//! `tracker_latest`, nor the counts in `events_hourly` (they outlive the history).
//!
//! Of a partitioned PostgreSQL table ([`super::partitions`]) only the DEFAULT
//! partition is walked: a run drops the range partitions whose every row is older
//! than the cutoff and deletes no row of theirs one by one.
//! Walking it as well deleted each day row by row while the cutoff moved through
//! it, so by the time its partition lay wholly before the cutoff there was nothing
//! left to drop (measured on 10 M states: a routine run after midnight deleted a
//! whole day one row at a time, 893 MB of WAL). The price is granularity: a row
//! outlives its limit by up to one partition size. The walk's statement still
//! matches rows by `(tableoid, ctid)`, which is right on any table.

use crate::config::RetentionConfig;
use crate::store::Store;
use chrono::{DateTime, TimeZone, Utc};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Pause between two delete statements: lets the writer's transactions in.
const PAUSE: Duration = Duration::from_millis(5);

/// A prune statement failed; the task logs it and tries again at the next interval.
#[derive(Debug, thiserror::Error)]
#[error("pruning old rows of {table} failed: {source}; retention retries at its next interval")]
pub struct RetentionError {
    /// The table being pruned.
    pub table: String,
    /// The database error.
    #[source]
    pub source: sqlx::Error,
}

/// The column whose age decides a row's deletion, for every prunable table.
pub fn time_column(table: &str) -> Option<&'static str> {
    Some(match table {
        "events" | "tracker_states" | "tracker_readings" | "tracker_lifecycle"
        | "notifications" | "rejected" => "received_at",
        "traffic" => "at",
        "session_events" => "occurred_at",
        "security_session_changes" => "observed_at",
        // Open connections (closed_at NULL) never compare as older.
        "connections" => "closed_at",
        _ => return None,
    })
}

/// The indexed column a prune walks along: the second column of the table's
/// `(source, time)` index. Only `connections` differs from [`time_column`]: its
/// index is on `opened_at`, and a connection closed before the cutoff was opened
/// before it too.
fn walk_column(table: &str) -> Option<&'static str> {
    match table {
        "connections" => Some("opened_at"),
        t => time_column(t),
    }
}

/// The statement that deletes the next `batch` expired rows of one source.
///
/// The backend writes it (`store::{sqlite,postgres}::prune`): SQLite binds `?1`
/// source and `?2` cutoff; PostgreSQL binds `$1` source, `$2` the walk's lower bound
/// (the newest time the previous batch deleted) and `$3` cutoff, and returns the
/// count deleted and the newest walk time. Public so `wsvault bench` can `EXPLAIN`
/// exactly what retention runs.
pub fn delete_statement(store: &Store, table: &str, batch: usize) -> Option<String> {
    Some(store.prune_statement(table, walk_column(table)?, time_column(table)?, batch))
}

/// The statement listing the sources present in `table`, newest index entries
/// first: a recursive skip down the `(source, time)` index, one descent per source.
/// Walking backwards lands on each source's newest rows, which retention never
/// deleted, so PostgreSQL does not step over the dead entries of earlier prunes.
pub fn sources_statement(table: &str) -> String {
    format!(
        "WITH RECURSIVE s(source) AS (SELECT max(source) FROM {table} \
         UNION ALL SELECT (SELECT max(t.source) FROM {table} AS t WHERE t.source < s.source) \
         FROM s WHERE s.source IS NOT NULL) \
         SELECT source FROM s WHERE source IS NOT NULL"
    )
}

/// Prunes every configured table once, for the sources present in each table
/// (found by an index skip); returns rows deleted per table. [`prune_sources`]
/// with the configured source names avoids even that read.
pub async fn prune_once(
    store: &Store,
    cfg: &RetentionConfig,
    now: DateTime<Utc>,
) -> Result<Vec<(String, u64)>, RetentionError> {
    Pruner::default().run(store, cfg, None, now).await
}

/// Prunes every configured table once, for the rows of `sources` (the configured
/// source names); returns rows deleted per table. Rows of a source not listed stay,
/// except in a partition of a partitioned PostgreSQL table that lies wholly before
/// the cutoff: dropping it removes every source's rows of that range (another
/// daemon's retention may drop it too, hence `IF EXISTS`).
pub async fn prune_sources(
    store: &Store,
    cfg: &RetentionConfig,
    sources: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<(String, u64)>, RetentionError> {
    Pruner::default().run(store, cfg, Some(sources), now).await
}

/// Retention runs that remember where each walk stopped. On PostgreSQL the index
/// entries of rows an earlier run deleted stay until `VACUUM`; a walk that started
/// at the oldest possible time would step over all of them again at every run (after
/// a large prune, hundreds of milliseconds per run while autovacuum has not come by).
/// A run of the same `Pruner` starts each (table, source) walk at the newest time the
/// previous one deleted. Every walked time is a receive time (the clock when the
/// record was made), so rows older than that position do not arrive later, except
/// from another daemon with a clock behind by more than the retention limit; those
/// wait for the next fresh `Pruner` (a restart or reload).
#[derive(Debug, Default)]
pub struct Pruner {
    resume: HashMap<(String, String), DateTime<Utc>>,
}

impl Pruner {
    /// One run over every configured table, for `sources` (or the sources present in
    /// each table, found by an index skip); returns rows deleted per table.
    pub async fn run(
        &mut self,
        store: &Store,
        cfg: &RetentionConfig,
        sources: Option<&[String]>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, u64)>, RetentionError> {
        let batch = cfg.batch.max(1);
        let mut out = Vec::new();
        for (table, age) in &cfg.tables {
            let Some(sql) = delete_statement(store, table, batch) else {
                continue;
            };
            let Some(cutoff) = chrono::Duration::from_std(*age)
                .ok()
                .and_then(|a| now.checked_sub_signed(a))
            else {
                continue; // "forever"
            };
            let err = |source| RetentionError {
                table: table.clone(),
                source,
            };
            let found;
            let names = match sources {
                Some(s) => s,
                None => {
                    found = present_sources(store, table).await.map_err(err)?;
                    &found[..]
                }
            };
            // A partitioned table loses whole partitions; only its DEFAULT partition
            // is walked. Walking all of it would delete each day row by row as the
            // cutoff moves through it, long before the day's partition expires.
            let (mut n, sql) = match drop_partitions(store, table, cutoff).await.map_err(err)? {
                Some((dropped, None)) => {
                    out.push((table.clone(), dropped));
                    continue;
                }
                Some((dropped, Some(default))) => {
                    let sql = match (walk_column(table), time_column(table)) {
                        (Some(w), Some(a)) => store.prune_statement(&default, w, a, batch),
                        _ => sql,
                    };
                    (dropped, sql)
                }
                None => (0, sql),
            };
            for source in names {
                let key = (table.clone(), source.clone());
                let from = self.resume.get(&key).copied().unwrap_or_else(walk_floor);
                let (deleted, reached) = prune_source(store, &sql, source, from, cutoff, batch)
                    .await
                    .map_err(err)?;
                n += deleted;
                if let Some(t) = reached {
                    self.resume.insert(key, t);
                }
            }
            out.push((table.clone(), n));
        }
        Ok(out)
    }
}

/// PostgreSQL, a partitioned table: drops its partitions whose every row is older
/// than `cutoff` ([`super::partitions::drop_expired`]) and returns the rows they
/// held, as the statistics last counted them, with the name of its DEFAULT
/// partition; `None` for a table that is not partitioned (the DELETE walk prunes
/// it). Rows of a range partition are never deleted one by one: they go with their
/// partition once the whole partition has expired, so they outlive the limit by up
/// to one partition size (`partition`, a day by default). The DEFAULT partition,
/// empty while the partition task keeps up, is walked like a plain table.
async fn drop_partitions(
    store: &Store,
    table: &str,
    cutoff: DateTime<Utc>,
) -> Result<Option<(u64, Option<String>)>, sqlx::Error> {
    let (Some(pool), Some(age)) = (store.postgres_pool(), time_column(table)) else {
        return Ok(None);
    };
    if super::partitions::key_column(table).is_none()
        || !super::partitions::is_partitioned(pool, table).await?
    {
        return Ok(None);
    }
    let dropped = super::partitions::drop_expired(pool, table, age, cutoff).await?;
    let mut rows = 0u64;
    for (name, n) in dropped {
        tracing::info!(partition = %name, rows = n, "retention dropped a partition");
        rows += u64::try_from(n).unwrap_or(0);
    }
    let default = super::partitions::default_partition(pool, table).await?;
    Ok(Some((rows, default)))
}

async fn present_sources(store: &Store, table: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = store.fetch_all(&sources_statement(table), &[]).await?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}

/// The lower bound of a PostgreSQL walk before its first batch: older than any
/// stored time, and representable by both chrono and PostgreSQL.
fn walk_floor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Deletes the expired rows of one source, batch by batch; returns how many, and on
/// PostgreSQL the newest walk time deleted (where the next run may start).
async fn prune_source(
    store: &Store,
    sql: &str,
    source: &str,
    from: DateTime<Utc>,
    cutoff: DateTime<Utc>,
    batch: usize,
) -> Result<(u64, Option<DateTime<Utc>>), sqlx::Error> {
    let batch = batch as u64;
    let mut deleted = 0u64;
    let mut reached = None;
    let mut lower = from;
    loop {
        let (n, newest) = store.prune_step(sql, source, lower, cutoff).await?;
        deleted += n;
        if let Some(t) = newest {
            lower = t;
            reached = Some(t);
        }
        if n < batch {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    Ok((deleted, reached))
}

/// The retention task; [`Retention::stop`] ends it between statements.
pub struct Retention {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Retention {
    /// Starts pruning every `cfg.interval` (first run right away), for whatever
    /// sources each table holds (see [`prune_once`]); `None` when no table has a
    /// limit.
    pub fn start(store: Store, cfg: RetentionConfig) -> Option<Retention> {
        Self::spawn(store, cfg, None)
    }

    /// Like [`Retention::start`], but after its first run only for the rows of
    /// `sources` (the configured source names, see [`prune_sources`]): no read at
    /// all to find them. The first run still finds every source present, so rows of
    /// a source since removed from the configuration age out too (at each start).
    pub fn start_for(
        store: Store,
        cfg: RetentionConfig,
        sources: Vec<String>,
    ) -> Option<Retention> {
        Self::spawn(store, cfg, Some(sources))
    }

    fn spawn(
        store: Store,
        cfg: RetentionConfig,
        sources: Option<Vec<String>>,
    ) -> Option<Retention> {
        if cfg.tables.is_empty() {
            return None;
        }
        let (stop, mut stop_rx) = watch::channel(false);
        let every = cfg.interval.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut pruner = Pruner::default();
            let mut first = true;
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = super::stopped(&mut stop_rx) => return,
                    _ = ticks.tick() => {}
                }
                let names = if first { None } else { sources.as_deref() };
                first = false;
                tokio::select! {
                    _ = super::stopped(&mut stop_rx) => return,
                    r = pruner.run(&store, &cfg, names, Utc::now()) => match r {
                        Ok(counts) => {
                            for (table, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
                                tracing::info!(table = %table, deleted = n, "retention pruned old rows");
                            }
                        }
                        Err(e) => tracing::warn!("{e}"),
                    },
                }
            }
        });
        Some(Retention { stop, task })
    }

    /// Stops the task; a statement in flight is abandoned (it is one short
    /// autocommit delete, so nothing is left half-done).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
