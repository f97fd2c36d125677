//! The daemon's partition task: at start and every quarter period, the partitions
//! for `now … now + 2 periods` and the DEFAULT partition's rows moved out.

use super::{AHEAD, TABLES, ensure, is_partitioned, period_len, split_default};
use crate::store::Store;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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

/// How long [`Maintainer::stop`] lets a maintenance pass in flight finish.
const STOP_WAIT: Duration = Duration::from_secs(10);

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
                    _ = crate::ops::stopped(&mut stop_rx) => return,
                    _ = ticks.tick() => {}
                }
                // A pass in flight is let finish (see `stop`): cut off mid-statement,
                // its DDL would go on at the server, holding the table locks, while
                // the client had already moved on.
                match maintain(&pool, period, Utc::now()).await {
                    Ok(made) if !made.is_empty() => {
                        tracing::info!(partitions = %made.join(", "), "partitions created");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        "creating partitions failed: {e}; retried at the next tick \
                         (rows meanwhile go to the default partition)"
                    ),
                }
            }
        });
        Some(Maintainer { stop, task })
    }

    /// Stops the task between passes; a pass in flight gets [`STOP_WAIT`] to finish
    /// (each step is one short transaction with lock and idle limits), then it is
    /// abandoned (each step is one transaction, so nothing is left half-done).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_WAIT, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            let _ = self.task.await;
        }
    }
}
