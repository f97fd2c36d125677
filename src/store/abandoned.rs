//! Connections a previous run left open: it was killed (SIGKILL, OOM, power loss) or
//! crashed before its sessions could record their close.
//!
//! Such a `connections` row keeps `closed_at` NULL and has no `suspended` or `closed`
//! row, so the time the daemon was not recording is invisible to the blind-periods
//! query. At start the daemon closes each at the last thing its session stored and
//! records the blind period from there. This module only reads and builds the
//! records; the writer stores them like any other (the `connections` row is an
//! upsert on `id`).
//!
//! "The last thing stored" is the newest row of the connection's source between its
//! opening and the next connection of that source: a source has one connection at a
//! time, and every contract table has a `(source, time)` index, while only some carry
//! `connection_id` (and none has an index on it).

use super::StoreError;
use super::time::{format_ts, parse_ts};
use crate::record::{Connection, Record, SessionEvent};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Row};
use std::sync::Arc;

/// `close_reason` of a connection closed this way, and `reason` of its two rows.
pub const REASON: &str = "daemon stopped without closing (killed or crashed)";
/// `initiator` of the `suspended` row: wsvault itself was down.
pub const INITIATOR: &str = "down";
/// RFC 6455 §7.1.5: the connection ended without a close frame.
const ABNORMAL_CLOSURE: i64 = 1006;

/// Every table and time column a session writes, all indexed on `(source, column)`.
const STORED: [(&str, &str); 9] = [
    ("session_events", "occurred_at"),
    ("events", "received_at"),
    ("notifications", "received_at"),
    ("traffic", "at"),
    ("tracker_states", "received_at"),
    ("tracker_readings", "received_at"),
    ("tracker_lifecycle", "received_at"),
    ("security_sessions", "last_seen_at"),
    ("security_session_changes", "observed_at"),
];

const WHAT: &str = "closing connections a previous run left open";

fn q(source: sqlx::Error) -> StoreError {
    StoreError::Query { what: WHAT, source }
}

/// One open `connections` row.
struct Open {
    id: i64,
    source: String,
    url: String,
    opened_at: DateTime<Utc>,
    /// `opened_at` of the source's next connection, if any.
    next_opened_at: Option<DateTime<Utc>>,
}

/// The records that close every connection of `sources` left open, oldest first:
/// per connection a `suspended` and a `closed` session event, then the `connections`
/// row with `closed_at` (last, so a batch split by a kill leaves the row open and the
/// next start redoes it rather than losing the events).
pub(crate) async fn sqlite(
    pool: &SqlitePool,
    sources: &[String],
) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    for source in sources {
        let rows = sqlx::query(
            "SELECT id, url, opened_at, closed_at FROM connections \
             WHERE source = ? ORDER BY opened_at, id",
        )
        .bind(source)
        .fetch_all(pool)
        .await
        .map_err(q)?;
        let mut all = Vec::with_capacity(rows.len());
        for r in &rows {
            let opened: String = r.try_get("opened_at").map_err(q)?;
            let closed: Option<String> = r.try_get("closed_at").map_err(q)?;
            all.push((
                r.try_get::<i64, _>("id").map_err(q)?,
                r.try_get::<String, _>("url").map_err(q)?,
                ts(&opened)?,
                closed.is_none(),
            ));
        }
        for open in still_open(source, all) {
            let mut last = open.opened_at;
            for (table, column) in STORED {
                let bound = if open.next_opened_at.is_some() {
                    format!(" AND {column} < ?")
                } else {
                    String::new()
                };
                let sql = format!(
                    "SELECT {column} FROM {table} WHERE source = ? AND {column} >= ?{bound} \
                     ORDER BY {column} DESC LIMIT 1"
                );
                let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql))
                    .bind(source)
                    .bind(format_ts(&open.opened_at));
                if let Some(next) = &open.next_opened_at {
                    query = query.bind(format_ts(next));
                }
                if let Some(t) = query.fetch_optional(pool).await.map_err(q)? {
                    last = last.max(ts(&t)?);
                }
            }
            out.extend(records(open, last));
        }
    }
    Ok(out)
}

/// [`sqlite`] for PostgreSQL.
pub(crate) async fn postgres(pool: &PgPool, sources: &[String]) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    for source in sources {
        let rows = sqlx::query(
            "SELECT id, url, opened_at, closed_at IS NULL AS open FROM connections \
             WHERE source = $1 ORDER BY opened_at, id",
        )
        .bind(source)
        .fetch_all(pool)
        .await
        .map_err(q)?;
        let mut all = Vec::with_capacity(rows.len());
        for r in &rows {
            all.push((
                r.try_get::<i64, _>("id").map_err(q)?,
                r.try_get::<String, _>("url").map_err(q)?,
                r.try_get::<DateTime<Utc>, _>("opened_at").map_err(q)?,
                r.try_get::<bool, _>("open").map_err(q)?,
            ));
        }
        for open in still_open(source, all) {
            let mut last = open.opened_at;
            for (table, column) in STORED {
                let bound = if open.next_opened_at.is_some() {
                    format!(" AND {column} < $3")
                } else {
                    String::new()
                };
                let sql = format!(
                    "SELECT {column} FROM {table} WHERE source = $1 AND {column} >= $2{bound} \
                     ORDER BY {column} DESC LIMIT 1"
                );
                let mut query = sqlx::query_scalar::<_, DateTime<Utc>>(AssertSqlSafe(sql))
                    .bind(source)
                    .bind(open.opened_at);
                if let Some(next) = open.next_opened_at {
                    query = query.bind(next);
                }
                if let Some(t) = query.fetch_optional(pool).await.map_err(q)? {
                    last = last.max(t);
                }
            }
            out.extend(records(open, last));
        }
    }
    Ok(out)
}

fn ts(text: &str) -> Result<DateTime<Utc>, StoreError> {
    parse_ts(text).map_err(|source| StoreError::Timestamp { what: WHAT, source })
}

/// The open ones of a source's connections `(id, url, opened_at, open)` in opening
/// order, each with the opening time of the connection after it.
fn still_open(source: &str, all: Vec<(i64, String, DateTime<Utc>, bool)>) -> Vec<Open> {
    let next: Vec<Option<DateTime<Utc>>> = (0..all.len())
        .map(|i| all.get(i + 1).map(|n| n.2))
        .collect();
    all.into_iter()
        .zip(next)
        .filter(|((.., open), _)| *open)
        .map(|((id, url, opened_at, _), next_opened_at)| Open {
            id,
            source: source.to_string(),
            url,
            opened_at,
            next_opened_at,
        })
        .collect()
}

fn records(open: Open, end: DateTime<Utc>) -> [Record; 3] {
    let source: crate::record::SourceName = Arc::from(open.source.as_str());
    let event = |event: &str, initiator: Option<&str>| {
        Record::SessionEvent(SessionEvent {
            id: crate::ids::next_id(),
            source: source.clone(),
            connection_id: Some(open.id),
            occurred_at: end,
            event: event.to_string(),
            initiator: initiator.map(str::to_string),
            code: Some(ABNORMAL_CLOSURE),
            reason: Some(REASON.to_string()),
            detail: None,
        })
    };
    [
        event("suspended", Some(INITIATOR)),
        event("closed", None),
        Record::Connection(Connection {
            id: open.id,
            source: source.clone(),
            url: open.url,
            opened_at: open.opened_at,
            closed_at: Some(end),
            close_code: Some(ABNORMAL_CLOSURE),
            close_reason: Some(REASON.to_string()),
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_open_connection_is_bounded_by_the_next_one_of_its_source() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default();
        let all = vec![
            (1, "u".to_string(), t(10), true),
            (2, "u".to_string(), t(20), false),
            (3, "u".to_string(), t(30), true),
        ];
        let open = still_open("s", all);
        let got: Vec<_> = open.iter().map(|o| (o.id, o.next_opened_at)).collect();
        assert_eq!(got, vec![(1, Some(t(20))), (3, None)]);
    }
}
