//! PostgreSQL side of the store: pool options, the bulk insert path and the
//! record-by-record fallback.
//!
//! Bulk inserts are `INSERT … SELECT … FROM UNNEST($1::bigint[], $2::text[], …)
//! ON CONFLICT DO NOTHING`: one array parameter per column, so one stable prepared
//! statement serves every batch size and the 65 535-bind limit never applies. JSON
//! columns travel as `text[]` and are cast to `jsonb` in the SELECT, so the server
//! validates them. A batch is cut into runs of at most [`MESSAGE_BUDGET`] bytes per
//! statement. The three high-volume tables (`events`, `tracker_states`,
//! `tracker_readings`) first try an optimistic binary `COPY` ([`copy`]); a batch the
//! server refuses that way is rolled back and written again through `UNNEST`, so
//! `ON CONFLICT` still decides about duplicates. Upsert tables go row by row
//! (PostgreSQL refuses to upsert the same key twice in one statement, and they are
//! low volume). The pool tests connections
//! before handing them out and gives up on an acquire quickly, so the writer's retry
//! loop, not the pool, waits out an outage and recovers when the server is back.
//! This module never decides about retries; it returns errors.

use super::Backend;
use super::batch::{Batch, Groups};
use super::classify::{ErrorClass, classify};
use crate::record::Record;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

mod copy;
pub(crate) mod reader;
mod sql;

pub use copy::CopyCounts;
pub(crate) use copy::CopyGate;
use sql::*;

/// Opens the pool. Connecting eagerly makes a wrong URL or a missing server an
/// error at start-up rather than a retry loop later. `ca_file` (`[storage]`) is the
/// URL's `sslrootcert`; naming a CA means the server must be verified by it, so it
/// implies `sslmode=verify-full` unless the URL chose a mode itself.
pub(crate) async fn connect(url: &str, ca_file: Option<&Path>) -> Result<PgPool, sqlx::Error> {
    let mut options = PgConnectOptions::from_str(url)?.application_name("wsvault");
    if let Some(ca) = ca_file {
        options = options.ssl_root_cert(ca);
        let sslmode_in_url = url::Url::parse(url)
            .map(|u| {
                u.query_pairs()
                    .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
            })
            .unwrap_or(false);
        if !sslmode_in_url {
            options = options.ssl_mode(sqlx::postgres::PgSslMode::VerifyFull);
        }
    }
    PgPoolOptions::new()
        .max_connections(4)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .test_before_acquire(true)
        .idle_timeout(Duration::from_secs(300))
        .connect_with(options)
        .await
}

/// Collects one column of `rows` into the vector bound as one array parameter.
fn col<'a, T: 'a, U>(rows: &[&'a T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(|r| f(r)).collect()
}

/// Largest estimated Bind message per statement. With `TCP_NODELAY` (restored by the
/// vendored sqlx-core, see vendor/README.md) a big message costs no delayed-ACK stall,
/// so a normal batch is one statement per table; the budget only bounds the memory a
/// batch of unusually large payloads asks of the server in one message.
const MESSAGE_BUDGET: usize = 4 * 1024 * 1024;

/// Splits `rows` into runs whose estimated encoded size stays under
/// [`MESSAGE_BUDGET`] (at least one row per run), keeping their order.
fn runs<'s, 'a, T>(
    rows: &'s [&'a T],
    size: impl Fn(&T) -> usize,
) -> impl Iterator<Item = &'s [&'a T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut total = 0;
        let mut n = 0;
        while n < rest.len() {
            total += size(rest[n]);
            if n > 0 && total > MESSAGE_BUDGET {
                break;
            }
            n += 1;
        }
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

/// Text bytes of a row plus a fixed allowance per column (length word, fixed-size
/// value); only used to size statements, so a rough figure is enough.
macro_rules! row_size {
    ($r:ident; $( $text:expr ),*; $ncols:literal) => {
        |$r| 12 * $ncols $( + $text.text_len() )*
    };
}

/// Binds the listed columns of each run of `$rows` and runs `$sql` once per run.
macro_rules! unnest {
    ($conn:expr, $sql:expr, $rows:expr, $size:expr, $( |$r:ident| $e:expr ),+ $(,)?) => {
        for run in runs(&$rows, $size) {
            sqlx::query($sql)
                $( .bind(col(run, |$r| $e)) )+
                .execute(&mut *$conn)
                .await?;
        }
    };
}

/// Byte length of a text column value, for [`row_size!`].
trait TextLen {
    fn text_len(&self) -> usize;
}

impl TextLen for String {
    fn text_len(&self) -> usize {
        self.len()
    }
}

impl TextLen for std::sync::Arc<str> {
    fn text_len(&self) -> usize {
        self.len()
    }
}

impl TextLen for Option<String> {
    fn text_len(&self) -> usize {
        self.as_ref().map_or(0, String::len)
    }
}

/// Pre-encoded binary `COPY` streams, one per high-volume table; `None` means that
/// table goes through its `UNNEST` statement.
#[derive(Default)]
struct Streams {
    events: Option<Vec<u8>>,
    tracker_states: Option<Vec<u8>>,
    tracker_readings: Option<Vec<u8>>,
}

impl Streams {
    /// Encodes the tables with at least [`copy::MIN_ROWS`] rows. Encoding happens
    /// before the transaction opens, so it adds nothing to the time locks are held.
    /// A value the format cannot carry sends the whole batch through `UNNEST`.
    fn encode(g: &Groups<'_>) -> Streams {
        Self::try_encode(g).unwrap_or_default()
    }

    fn try_encode(g: &Groups<'_>) -> Result<Streams, copy::Unencodable> {
        fn one<T>(
            rows: &[&T],
            encode: impl Fn(&[&T]) -> Result<Vec<u8>, copy::Unencodable>,
        ) -> Result<Option<Vec<u8>>, copy::Unencodable> {
            if rows.len() < copy::MIN_ROWS {
                return Ok(None);
            }
            encode(rows).map(Some)
        }
        Ok(Streams {
            events: one(&g.events, copy::events)?,
            tracker_states: one(&g.tracker_states, copy::tracker_states)?,
            tracker_readings: one(&g.tracker_readings, copy::tracker_readings)?,
        })
    }

    fn is_empty(&self) -> bool {
        self.events.is_none() && self.tracker_states.is_none() && self.tracker_readings.is_none()
    }
}

/// Runs one `COPY … FROM STDIN` with `data` as its whole input.
async fn copy_in(conn: &mut PgConnection, statement: &str, data: &[u8]) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await?;
    Ok(())
}

/// Writes every group; the caller owns the transaction.
async fn write_groups(
    conn: &mut PgConnection,
    g: &Groups<'_>,
    streams: &Streams,
) -> Result<(), sqlx::Error> {
    for r in &g.connections {
        sqlx::query(CONNECTIONS)
            .bind(r.id)
            .bind(&*r.source)
            .bind(r.url.as_str())
            .bind(r.opened_at)
            .bind(r.closed_at)
            .bind(r.close_code)
            .bind(r.close_reason.as_deref())
            .execute(&mut *conn)
            .await?;
    }
    unnest!(
        conn,
        SESSION_EVENTS,
        g.session_events,
        row_size!(r; r.source, r.event, r.initiator, r.reason, r.detail; 9),
        |r| r.id,
        |r| &*r.source,
        |r| r.connection_id,
        |r| r.occurred_at,
        |r| r.event.as_str(),
        |r| r.initiator.as_deref(),
        |r| r.code,
        |r| r.reason.as_deref(),
        |r| r.detail.as_deref()
    );
    if let Some(data) = &streams.events {
        copy_in(conn, copy::EVENTS, data).await?;
    } else {
        unnest!(
            conn,
            EVENTS,
            g.events,
            row_size!(r; r.source, r.kind, r.payload; 7),
            |r| r.id,
            |r| &*r.source,
            |r| r.connection_id,
            |r| r.received_at,
            |r| r.kind.as_str(),
            |r| r.payload.as_str(),
            |r| r.item_count
        );
    }
    if let Some(data) = &streams.tracker_states {
        copy_in(conn, copy::TRACKER_STATES, data).await?;
    } else {
        unnest!(
            conn,
            TRACKER_STATES,
            g.tracker_states,
            row_size!(r; r.source, r.payload, r.connection_status, r.movement_status; 12),
            |r| &*r.source,
            |r| r.source_id,
            |r| r.state_time,
            |r| r.received_at,
            |r| r.lat,
            |r| r.lng,
            |r| r.speed,
            |r| r.heading,
            |r| r.connection_status.as_deref(),
            |r| r.movement_status.as_deref(),
            |r| r.payload.as_str(),
            |r| r.origin.as_str()
        );
    }
    if let Some(data) = &streams.tracker_readings {
        copy_in(conn, copy::TRACKER_READINGS, data).await?;
    } else {
        unnest!(
            conn,
            TRACKER_READINGS,
            g.tracker_readings,
            row_size!(r; r.source, r.reading_kind, r.name, r.value, r.units, r.payload; 11),
            |r| &*r.source,
            |r| r.tracker_id,
            |r| r.reading_kind.as_str(),
            |r| r.name.as_str(),
            |r| r.value.as_str(),
            |r| r.value_num,
            |r| r.units.as_deref(),
            |r| r.update_time,
            |r| r.received_at,
            |r| r.payload.as_str(),
            |r| r.origin.as_str()
        );
    }
    unnest!(
        conn,
        TRACKER_LIFECYCLE,
        g.tracker_lifecycle,
        row_size!(r; r.source, r.lifecycle_event; 5),
        |r| r.id,
        |r| &*r.source,
        |r| r.source_id,
        |r| r.lifecycle_event.as_str(),
        |r| r.received_at
    );
    for r in &g.security_sessions {
        sqlx::query(SECURITY_SESSIONS)
            .bind(&*r.source)
            .bind(r.session_id)
            .bind(r.owner_login.as_deref())
            .bind(r.user_login.as_deref())
            .bind(r.safety_type_id)
            .bind(r.key_current.as_deref())
            .bind(r.started_at)
            .bind(r.expires_at)
            .bind(r.ip.as_deref())
            .bind(r.ip_client.as_deref())
            .bind(r.first_seen_at)
            .bind(r.last_seen_at)
            .bind(r.ended_at)
            .bind(r.payload.as_str())
            .execute(&mut *conn)
            .await?;
    }
    unnest!(
        conn,
        SECURITY_SESSION_CHANGES,
        g.security_session_changes,
        row_size!(r; r.source, r.change; 4),
        |r| &*r.source,
        |r| r.session_id,
        |r| r.change.as_str(),
        |r| r.observed_at
    );
    unnest!(
        conn,
        NOTIFICATIONS,
        g.notifications,
        row_size!(r; r.source, r.method, r.params; 7),
        |r| r.id,
        |r| &*r.source,
        |r| r.connection_id,
        |r| r.seq,
        |r| r.received_at,
        |r| r.method.as_str(),
        |r| r.params.as_str()
    );
    unnest!(
        conn,
        TRAFFIC,
        g.traffic,
        row_size!(r; r.source, r.direction, r.payload; 6),
        |r| r.id,
        |r| &*r.source,
        |r| r.connection_id,
        |r| r.at,
        |r| r.direction.as_str(),
        |r| r.payload.as_str()
    );
    unnest!(
        conn,
        REJECTED,
        g.rejected,
        row_size!(r; r.source, r.kind, r.error, r.payload; 6),
        |r| r.id,
        |r| &*r.source,
        |r| r.kind.as_str(),
        |r| r.received_at,
        |r| r.error.as_str(),
        |r| r.payload.as_str()
    );
    Ok(())
}

/// Writes the whole batch in one transaction; any error rolls all of it back.
///
/// When `gate` allows it and the batch is big enough, the high-volume tables go in
/// by `COPY` first. If the server refuses that (a duplicate, a bad value), the batch
/// is written again in a new transaction through `UNNEST … ON CONFLICT DO NOTHING`,
/// and an error of that attempt is what the caller sees. A retriable error of the
/// `COPY` attempt is returned as it is: the writer retries the batch later.
pub(crate) async fn write_bulk(
    pool: &PgPool,
    gate: &CopyGate,
    ctx: TxContext<'_>,
    batch: &mut Batch,
) -> Result<(), sqlx::Error> {
    if gate.open() {
        let mut copied = false;
        match write_tx(pool, ctx, batch, Some(&mut copied)).await {
            Ok(()) => {
                if copied {
                    gate.copied();
                }
                return Ok(());
            }
            Err(e) if classify(Backend::Postgres, &e) == ErrorClass::Retriable => return Err(e),
            Err(e) if copied => {
                gate.refused();
                tracing::debug!(
                    error = %e,
                    "COPY refused the batch; writing it with ON CONFLICT DO NOTHING"
                );
            }
            Err(e) => return Err(e),
        }
    }
    write_tx(pool, ctx, batch, None).await
}

/// What every write transaction of a daemon does before its inserts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TxContext<'a> {
    /// Cluster fencing, with `[cluster]`.
    pub fence: Option<&'a super::Fence>,
    /// The `node` column value of `connections` and `session_events` rows.
    pub node: Option<&'a str>,
}

/// Inside `conn`'s transaction: names the node for the `node` column defaults
/// (migration 0005) and fences the batch, marking the records of sources whose
/// lease is no longer this node's as fenced. A fenced record is never unmarked: a
/// lease does not come back under the same term.
async fn prepare(
    conn: &mut PgConnection,
    ctx: TxContext<'_>,
    batch: &mut Batch,
) -> Result<(), sqlx::Error> {
    if let Some(node) = ctx.node {
        sqlx::query("SELECT set_config('wsvault.node', $1, true)")
            .bind(node)
            .execute(&mut *conn)
            .await?;
    }
    let Some(fence) = ctx.fence else {
        return Ok(());
    };
    let sources = batch.live_sources();
    if sources.is_empty() {
        return Ok(());
    }
    let lost = crate::cluster::fence_batch(
        conn,
        &fence.node,
        &fence.view,
        sources.iter().map(String::as_str),
    )
    .await?;
    for source in lost {
        let n = batch.fence_source(&source);
        crate::cluster::metrics::fenced_records(&source, n);
        let _ = fence.fenced.send(source);
    }
    Ok(())
}

/// One transaction holding the whole batch; `COPY` for the big tables when `copied`
/// is given (set to whether any `COPY` ran).
async fn write_tx(
    pool: &PgPool,
    ctx: TxContext<'_>,
    batch: &mut Batch,
    copied: Option<&mut bool>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    prepare(&mut tx, ctx, batch).await?;
    let groups = Groups::of(batch);
    let streams = match copied {
        Some(flag) => {
            let streams = Streams::encode(&groups);
            *flag = !streams.is_empty();
            streams
        }
        None => Streams::default(),
    };
    write_groups(&mut tx, &groups, &streams).await?;
    tx.commit().await
}

/// Writes the batch record by record in one transaction, a savepoint per record; a
/// refused record is swapped for its `rejected` row. Returns an error only for
/// failures that are not about one record (the caller retries the whole batch).
pub(crate) async fn write_each(
    pool: &PgPool,
    ctx: TxContext<'_>,
    batch: &mut Batch,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    prepare(&mut tx, ctx, batch).await?;
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
/// `Err(e)`: the server is unavailable, abandon the transaction.
async fn write_one(
    conn: &mut PgConnection,
    record: &Record,
) -> Result<Option<sqlx::Error>, sqlx::Error> {
    let mut sp = conn.begin().await?;
    match write_groups(&mut sp, &Groups::single(record), &Streams::default()).await {
        Ok(()) => {
            sp.commit().await?;
            Ok(None)
        }
        Err(e) if classify(Backend::Postgres, &e) == ErrorClass::Retriable => Err(e),
        Err(e) => {
            sp.rollback().await?;
            Ok(Some(e))
        }
    }
}
