//! The PostgreSQL insert path.
//!
//! Bulk inserts are `INSERT … SELECT … FROM UNNEST($1::bigint[], $2::text[], …)
//! ON CONFLICT DO NOTHING`: one array parameter per column, so one stable prepared
//! statement serves every batch size and the 65 535-bind limit never applies. JSON
//! columns travel as `text[]` and are cast to `jsonb` in the SELECT, so the server
//! validates them. A batch is cut into runs of at most [`MESSAGE_BUDGET`] bytes per
//! statement. The three high-volume tables (`events`, `tracker_states`,
//! `tracker_readings`) may instead arrive as pre-encoded binary `COPY` [`Streams`]
//! (see `copy.rs` and `writer.rs`). Upsert tables go row by row (PostgreSQL refuses
//! to upsert the same key twice in one statement, and they are low volume). The
//! caller owns the transaction.

use super::sql::*;
use crate::store::Backend;
use crate::store::batch::Groups;
use crate::store::transact::WriteDialect;
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnection, Postgres};

impl WriteDialect for Postgres {
    const BACKEND: Backend = Backend::Postgres;

    /// The `UNNEST` path, without `COPY`: the record-by-record fallback and the
    /// rewrite of a batch `COPY` refused.
    fn write_groups<'c>(
        conn: &'c mut PgConnection,
        groups: &'c Groups<'c>,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Box::pin(async move { write_groups(conn, groups, &mut Streams::default()).await })
    }
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
pub(super) struct Streams {
    events: Option<Vec<u8>>,
    tracker_states: Option<super::copy::StatesStream>,
    tracker_readings: Option<Vec<u8>>,
}

impl Streams {
    /// Encodes the tables with at least [`copy::MIN_ROWS`] rows. Encoding happens
    /// before the transaction opens, so it adds nothing to the time locks are held.
    /// A value the format cannot carry sends the whole batch through `UNNEST`.
    pub(super) fn encode(g: &Groups<'_>) -> Streams {
        Self::try_encode(g).unwrap_or_default()
    }

    fn try_encode(g: &Groups<'_>) -> Result<Streams, super::copy::Unencodable> {
        fn one<T, S>(
            rows: &[&T],
            encode: impl Fn(&[&T]) -> Result<S, super::copy::Unencodable>,
        ) -> Result<Option<S>, super::copy::Unencodable> {
            if rows.len() < super::copy::MIN_ROWS {
                return Ok(None);
            }
            encode(rows).map(Some)
        }
        Ok(Streams {
            events: one(&g.events, super::copy::events)?,
            tracker_states: one(&g.tracker_states, super::copy::tracker_states)?,
            tracker_readings: one(&g.tracker_readings, super::copy::tracker_readings)?,
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.events.is_none() && self.tracker_states.is_none() && self.tracker_readings.is_none()
    }
}

/// `n` new ids from `tracker_states`' identity sequence, for the rows of its `COPY`
/// stream. Minted in the batch's transaction, one round trip: a rolled-back batch
/// leaves a gap in the ids, as a rolled-back insert does. The sequence is looked up
/// once (`MATERIALIZED`: inlined, the lookup ran once per id and cost ten times the
/// `nextval`); the ids need no order, each row just needs its own.
async fn mint_state_ids(conn: &mut PgConnection, n: usize) -> Result<Vec<i64>, sqlx::Error> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let ids: Vec<i64> = sqlx::query_scalar(
        "WITH q AS MATERIALIZED \
         (SELECT pg_get_serial_sequence('tracker_states', 'id')::regclass AS seq) \
         SELECT array_agg(nextval(q.seq)) FROM q, generate_series(1, $1)",
    )
    .bind(n)
    .fetch_one(&mut *conn)
    .await?;
    if i64::try_from(ids.len()).ok() != Some(n) {
        return Err(sqlx::Error::Protocol(format!(
            "asked tracker_states' id sequence for {n} ids and got {}",
            ids.len()
        )));
    }
    Ok(ids)
}

/// Runs one `COPY … FROM STDIN` with `data` as its whole input.
async fn copy_in(conn: &mut PgConnection, statement: &str, data: &[u8]) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await?;
    Ok(())
}

/// Writes every group, the high-volume tables from `streams` where encoded; the
/// caller owns the transaction.
pub(super) async fn write_groups(
    conn: &mut PgConnection,
    g: &Groups<'_>,
    streams: &mut Streams,
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
        copy_in(conn, super::copy::EVENTS, data).await?;
        super::derived::events_hourly_copied(conn, &g.events).await?;
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
    if let Some(stream) = &mut streams.tracker_states {
        let ids = mint_state_ids(conn, stream.rows()).await?;
        stream.set_ids(&ids);
        copy_in(conn, super::copy::TRACKER_STATES, stream.data()).await?;
        super::derived::tracker_latest_copied(conn, &g.tracker_states, &ids).await?;
    } else {
        // Keeps `tracker_latest` in the same statement (`sql::TRACKER_STATES`).
        unnest!(
            conn,
            TRACKER_STATES,
            g.tracker_states,
            row_size!(r; r.source, r.payload, r.connection_status, r.movement_status; 14),
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
            |r| r.origin.as_str(),
            |r| r.event_id,
            |r| r.connection_id
        );
    }
    if let Some(data) = &streams.tracker_readings {
        copy_in(conn, super::copy::TRACKER_READINGS, data).await?;
    } else {
        unnest!(
            conn,
            TRACKER_READINGS,
            g.tracker_readings,
            row_size!(r; r.source, r.reading_kind, r.name, r.value, r.units, r.payload; 13),
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
            |r| r.origin.as_str(),
            |r| r.event_id,
            |r| r.connection_id
        );
    }
    unnest!(
        conn,
        TRACKER_LIFECYCLE,
        g.tracker_lifecycle,
        row_size!(r; r.source, r.lifecycle_event; 7),
        |r| r.id,
        |r| &*r.source,
        |r| r.source_id,
        |r| r.lifecycle_event.as_str(),
        |r| r.received_at,
        |r| r.event_id,
        |r| r.connection_id
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
        row_size!(r; r.source, r.change; 6),
        |r| &*r.source,
        |r| r.session_id,
        |r| r.change.as_str(),
        |r| r.observed_at,
        |r| r.event_id,
        |r| r.connection_id
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
