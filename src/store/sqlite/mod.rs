//! SQLite side of the store: pool options, the bulk insert path and the
//! record-by-record fallback.
//!
//! Bulk inserts are prepared multi-row `INSERT … VALUES (…),(…) ON CONFLICT DO NOTHING`
//! statements in a few fixed row counts ([`CHUNKS`]), so any batch size is covered by
//! statements the per-connection cache already holds, and no statement comes near
//! SQLite's 32 766-parameter limit (256 rows × 15 columns at most). Every write
//! transaction starts with `BEGIN IMMEDIATE` so the write lock is taken up front and
//! a locked file surfaces as `SQLITE_BUSY` after `busy_timeout`, which the writer
//! retries. This module never decides about retries; it returns errors.

use super::Backend;
use super::batch::{Batch, Groups};
use super::classify::{ErrorClass, classify};
use super::time::format_ts;
use crate::config::StorageConfig;
use crate::record::{
    Connection, Event, Notification, Record, Rejected, SecuritySession, SecuritySessionChange,
    SessionEvent, TrackerLifecycle, TrackerReading, TrackerState, Traffic,
};
use sqlx::Connection as _;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

pub(super) mod checkpoint;
pub(super) mod files;
mod sql;

use sql::*;

type Q = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

/// Opens the pool: file created when missing (mode 0600, see [`files`]), WAL, `synchronous=NORMAL`, the
/// configured busy timeout, and a statement cache large enough for every chunk size
/// of every table.
pub(crate) async fn connect(url: &str, cfg: &StorageConfig) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(cfg.busy_timeout)
        // Statement journals of multi-row inserts stay in memory instead of temp files.
        .pragma("temp_store", "memory")
        // 16 MiB page cache: index pages of a busy table stay hot between batches.
        .pragma("cache_size", "-16384")
        // Checkpoint every ~40 MiB of WAL instead of every 4 MiB. Each commit of a
        // batch dirties index pages all over the file (one leaf per tracker), so the
        // default 1000-page threshold checkpointed (and fsynced the database file)
        // after nearly every batch; this halves the cost of a batch (BENCHMARKS.md).
        .pragma("wal_autocheckpoint", "10000")
        .statement_cache_capacity(256);
    // The first connection switches a new file to WAL, which needs an exclusive lock
    // that SQLite refuses at once (no busy wait) while another process does the same:
    // two daemons starting together on a fresh file failed with "database is locked".
    // The migration lock file serialises that first open across processes.
    let _first_open = match files::database_path(&options, url) {
        Some(path) => {
            files::create_private(&path)?;
            Some(files::MigrateLock::acquire(&path).await?)
        }
        None => None,
    };
    SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(cfg.busy_timeout.max(Duration::from_secs(5)))
        .connect_with(options)
        .await
}

/// Inserts `rows` with `spec`, in chunks of [`CHUNKS`] sizes (or one by one).
async fn insert<T>(
    conn: &mut SqliteConnection,
    spec: &Spec,
    rows: &[&T],
    bind: fn(Q, &T) -> Q,
) -> Result<(), sqlx::Error> {
    let mut rest = rows;
    while !rest.is_empty() {
        let n = if spec.bulk {
            CHUNKS
                .iter()
                .copied()
                .find(|c| *c <= rest.len())
                .unwrap_or(1)
        } else {
            1
        };
        let (chunk, tail) = rest.split_at(n);
        let mut q: Q = sqlx::query(spec.sql(n));
        for row in chunk {
            q = bind(q, row);
        }
        q.execute(&mut *conn).await?;
        rest = tail;
    }
    Ok(())
}

fn ts_opt(t: &Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    t.as_ref().map(format_ts)
}

/// Writes every group; the caller owns the transaction.
async fn write_groups(conn: &mut SqliteConnection, g: &Groups<'_>) -> Result<(), sqlx::Error> {
    insert(conn, &CONNECTIONS, &g.connections, |q, r: &Connection| {
        q.bind(r.id)
            .bind(r.source.clone())
            .bind(r.url.as_str())
            .bind(format_ts(&r.opened_at))
            .bind(ts_opt(&r.closed_at))
            .bind(r.close_code)
            .bind(r.close_reason.as_deref())
    })
    .await?;
    insert(
        conn,
        &SESSION_EVENTS,
        &g.session_events,
        |q, r: &SessionEvent| {
            q.bind(r.id)
                .bind(r.source.clone())
                .bind(r.connection_id)
                .bind(format_ts(&r.occurred_at))
                .bind(r.event.as_str())
                .bind(r.initiator.as_deref())
                .bind(r.code)
                .bind(r.reason.as_deref())
                .bind(r.detail.as_deref())
        },
    )
    .await?;
    insert(conn, &EVENTS, &g.events, |q, r: &Event| {
        q.bind(r.id)
            .bind(r.source.clone())
            .bind(r.connection_id)
            .bind(format_ts(&r.received_at))
            .bind(r.kind.as_str())
            .bind(r.payload.as_str())
            .bind(r.item_count)
    })
    .await?;
    insert(
        conn,
        &TRACKER_STATES,
        &g.tracker_states,
        |q, r: &TrackerState| {
            q.bind(r.source.clone())
                .bind(r.source_id)
                .bind(format_ts(&r.state_time))
                .bind(format_ts(&r.received_at))
                .bind(r.lat)
                .bind(r.lng)
                .bind(r.speed)
                .bind(r.heading)
                .bind(r.connection_status.as_deref())
                .bind(r.movement_status.as_deref())
                .bind(r.payload.as_str())
                .bind(r.origin.as_str())
        },
    )
    .await?;
    insert(
        conn,
        &TRACKER_READINGS,
        &g.tracker_readings,
        |q, r: &TrackerReading| {
            q.bind(r.source.clone())
                .bind(r.tracker_id)
                .bind(r.reading_kind.as_str())
                .bind(r.name.as_str())
                .bind(r.value.as_str())
                .bind(r.value_num)
                .bind(r.units.as_deref())
                .bind(format_ts(&r.update_time))
                .bind(format_ts(&r.received_at))
                .bind(r.payload.as_str())
                .bind(r.origin.as_str())
        },
    )
    .await?;
    insert(
        conn,
        &TRACKER_LIFECYCLE,
        &g.tracker_lifecycle,
        |q, r: &TrackerLifecycle| {
            q.bind(r.id)
                .bind(r.source.clone())
                .bind(r.source_id)
                .bind(r.lifecycle_event.as_str())
                .bind(format_ts(&r.received_at))
        },
    )
    .await?;
    insert(
        conn,
        &SECURITY_SESSIONS,
        &g.security_sessions,
        |q, r: &SecuritySession| {
            q.bind(r.source.clone())
                .bind(r.session_id)
                .bind(r.owner_login.as_deref())
                .bind(r.user_login.as_deref())
                .bind(r.safety_type_id)
                .bind(r.key_current.as_deref())
                .bind(ts_opt(&r.started_at))
                .bind(ts_opt(&r.expires_at))
                .bind(r.ip.as_deref())
                .bind(r.ip_client.as_deref())
                .bind(format_ts(&r.first_seen_at))
                .bind(format_ts(&r.last_seen_at))
                .bind(ts_opt(&r.ended_at))
                .bind(r.payload.as_str())
        },
    )
    .await?;
    insert(
        conn,
        &SECURITY_SESSION_CHANGES,
        &g.security_session_changes,
        |q, r: &SecuritySessionChange| {
            q.bind(r.source.clone())
                .bind(r.session_id)
                .bind(r.change.as_str())
                .bind(format_ts(&r.observed_at))
        },
    )
    .await?;
    insert(
        conn,
        &NOTIFICATIONS,
        &g.notifications,
        |q, r: &Notification| {
            q.bind(r.id)
                .bind(r.source.clone())
                .bind(r.connection_id)
                .bind(r.seq)
                .bind(format_ts(&r.received_at))
                .bind(r.method.as_str())
                .bind(r.params.as_str())
        },
    )
    .await?;
    insert(conn, &TRAFFIC, &g.traffic, |q, r: &Traffic| {
        q.bind(r.id)
            .bind(r.source.clone())
            .bind(r.connection_id)
            .bind(format_ts(&r.at))
            .bind(r.direction.as_str())
            .bind(r.payload.as_str())
    })
    .await?;
    insert(conn, &REJECTED, &g.rejected, |q, r: &Rejected| {
        q.bind(r.id)
            .bind(r.source.clone())
            .bind(r.kind.as_str())
            .bind(format_ts(&r.received_at))
            .bind(r.error.as_str())
            .bind(r.payload.as_str())
    })
    .await
}

/// Writes the whole batch in one transaction; any error rolls all of it back.
pub(crate) async fn write_bulk(
    conn: &mut SqliteConnection,
    batch: &Batch,
) -> Result<(), sqlx::Error> {
    let groups = Groups::of(batch);
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    write_groups(&mut tx, &groups).await?;
    tx.commit().await
}

/// Writes the batch record by record in one transaction, a savepoint per record; a
/// refused record is swapped for its `rejected` row. Returns an error only for
/// failures that are not about one record (the caller retries the whole batch).
pub(crate) async fn write_each(
    conn: &mut SqliteConnection,
    batch: &mut Batch,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    for i in 0..batch.records.len() {
        if !batch.is_live(i) {
            continue;
        }
        if let Some(err) = write_one(&mut tx, &batch.records[i]).await?
            && batch.refuse(i, &err)
            && let Some(err) = write_one(&mut tx, &batch.records[i]).await?
        {
            batch.refuse(i, &err);
        }
    }
    tx.commit().await
}

/// `Ok(None)`: stored. `Ok(Some(e))`: refused for good, savepoint rolled back.
/// `Err(e)`: the database is unavailable, abandon the transaction.
async fn write_one(
    conn: &mut SqliteConnection,
    record: &Record,
) -> Result<Option<sqlx::Error>, sqlx::Error> {
    let mut sp = conn.begin().await?;
    match write_groups(&mut sp, &Groups::single(record)).await {
        Ok(()) => {
            sp.commit().await?;
            Ok(None)
        }
        Err(e) if classify(Backend::Sqlite, &e) == ErrorClass::Retriable => Err(e),
        Err(e) => {
            sp.rollback().await?;
            Ok(Some(e))
        }
    }
}
