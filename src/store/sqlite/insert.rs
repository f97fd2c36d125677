//! The SQLite insert path: prepared multi-row `INSERT … VALUES (…),(…) ON CONFLICT DO
//! NOTHING` statements in a few fixed row counts ([`CHUNKS`]), so any batch size is
//! covered by statements the per-connection cache already holds, and no statement
//! comes near SQLite's 32 766-parameter limit (256 rows × 15 columns at most). Times
//! are bound as the storage text ([`format_ts`]). The caller owns the transaction.

use super::derived;
use super::sql::*;
use crate::record::{
    Connection, Event, Notification, Rejected, SecuritySession, SecuritySessionChange,
    SessionEvent, TrackerLifecycle, TrackerReading, TrackerState, Traffic,
};
use crate::store::Backend;
use crate::store::batch::Groups;
use crate::store::time::format_ts;
use crate::store::transact::WriteDialect;
use futures_util::future::BoxFuture;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection};

type Q = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

impl WriteDialect for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;

    fn write_groups<'c>(
        conn: &'c mut SqliteConnection,
        groups: &'c Groups<'c>,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Box::pin(write_groups(conn, groups))
    }
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
pub(super) async fn write_groups(
    conn: &mut SqliteConnection,
    g: &Groups<'_>,
) -> Result<(), sqlx::Error> {
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
    let inserted = derived::insert_returning(conn, &EVENTS, &g.events, |q, r: &Event| {
        q.bind(r.id)
            .bind(r.source.clone())
            .bind(r.connection_id)
            .bind(format_ts(&r.received_at))
            .bind(r.kind.as_str())
            .bind(r.payload.as_str())
            .bind(r.item_count)
    })
    .await?;
    derived::events_hourly(conn, &inserted).await?;
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
                .bind(r.event_id)
                .bind(r.connection_id)
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
                .bind(r.event_id)
                .bind(r.connection_id)
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
                .bind(r.event_id)
                .bind(r.connection_id)
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
                .bind(r.event_id)
                .bind(r.connection_id)
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
