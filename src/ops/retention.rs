//! `[retention]`: deletes rows older than each table's limit, on a timer, in small
//! batches so the writer never waits long behind a prune.
//!
//! Each statement deletes at most `batch` rows of one source (`rowid` on SQLite,
//! `ctid` on PostgreSQL), selected through the table's `(source, time)` index; the
//! task sleeps briefly between statements so writer transactions interleave. Only
//! tables listed in [`crate::config::RETENTION_TABLES`] are touched, and a
//! connection is pruned only once it is closed. This module never deletes a row
//! younger than its table's limit and never touches the current-state table
//! `security_sessions`.

use crate::config::RetentionConfig;
use crate::store::{Param, Store};
use chrono::{DateTime, Utc};
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

/// Prunes every configured table once; returns rows deleted per table.
pub async fn prune_once(
    store: &Store,
    cfg: &RetentionConfig,
    now: DateTime<Utc>,
) -> Result<Vec<(String, u64)>, RetentionError> {
    let mut out = Vec::new();
    for (table, age) in &cfg.tables {
        let Some(col) = time_column(table) else {
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
        let n = prune_table(store, table, col, cutoff, cfg.batch.max(1))
            .await
            .map_err(err)?;
        out.push((table.clone(), n));
    }
    Ok(out)
}

async fn prune_table(
    store: &Store,
    table: &str,
    col: &str,
    cutoff: DateTime<Utc>,
    batch: usize,
) -> Result<u64, sqlx::Error> {
    let limit = i64::try_from(batch).unwrap_or(i64::MAX);
    let sources: Vec<(String,)> = store
        .fetch_all(&format!("SELECT DISTINCT source FROM {table}"), &[])
        .await?;
    let sql = format!(
        "DELETE FROM {table} WHERE {}",
        store.limited_rows(table, col)
    );
    let mut deleted = 0u64;
    for (source,) in sources {
        loop {
            let n = store
                .execute(
                    &sql,
                    &[Param::Text(&source), Param::Time(cutoff), Param::Int(limit)],
                )
                .await?;
            deleted += n;
            if n < batch as u64 {
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
    }
    Ok(deleted)
}

/// The retention task; [`Retention::stop`] ends it between statements.
pub struct Retention {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Retention {
    /// Starts pruning every `cfg.interval` (first run right away); `None` when no
    /// table has a limit.
    pub fn start(store: Store, cfg: RetentionConfig) -> Option<Retention> {
        if cfg.tables.is_empty() {
            return None;
        }
        let (stop, mut stop_rx) = watch::channel(false);
        let every = cfg.interval.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = super::stopped(&mut stop_rx) => return,
                    _ = ticks.tick() => {}
                }
                tokio::select! {
                    _ = super::stopped(&mut stop_rx) => return,
                    r = prune_once(&store, &cfg, Utc::now()) => match r {
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
