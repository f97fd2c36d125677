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

use super::{DbTime, Param, Store, StoreError};
use crate::record::{Connection, Record, SessionEvent};
use chrono::{DateTime, Utc};
use sqlx::FromRow;
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

/// One `connections` row of a source, as both backends return it.
#[derive(FromRow)]
struct Stored {
    id: i64,
    url: String,
    #[sqlx(try_from = "DbTime")]
    opened_at: DateTime<Utc>,
    #[sqlx(try_from = "DbTime")]
    closed_at: Option<DateTime<Utc>>,
}

/// The records that close every connection of `sources` left open, oldest first:
/// per connection a `suspended` and a `closed` session event, then the `connections`
/// row with `closed_at` (last, so a batch split by a kill leaves the row open and the
/// next start redoes it rather than losing the events).
pub(super) async fn records(store: &Store, sources: &[String]) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    for source in sources {
        let all: Vec<Stored> = store
            .fetch_all(
                "SELECT id, url, opened_at, closed_at FROM connections \
                 WHERE source = $1 ORDER BY opened_at, id",
                &[Param::Text(source)],
            )
            .await
            .map_err(q)?;
        for open in still_open(source, all) {
            let last = last_stored(store, &open).await?;
            out.extend(records_closing(open, last));
        }
    }
    Ok(out)
}

/// The newest time `open`'s source stored anything while `open` was its connection
/// (never before it opened).
async fn last_stored(store: &Store, open: &Open) -> Result<DateTime<Utc>, StoreError> {
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
        let mut params = vec![Param::Text(&open.source), Param::Time(open.opened_at)];
        params.extend(open.next_opened_at.map(Param::Time));
        let newest: Option<(DbTime,)> = store.fetch_optional(&sql, &params).await.map_err(q)?;
        if let Some((DbTime(Some(t)),)) = newest {
            last = last.max(t);
        }
    }
    Ok(last)
}

/// The open ones of a source's connections in opening order, each with the opening
/// time of the connection after it.
fn still_open(source: &str, all: Vec<Stored>) -> Vec<Open> {
    let next: Vec<Option<DateTime<Utc>>> = (0..all.len())
        .map(|i| all.get(i + 1).map(|n| n.opened_at))
        .collect();
    all.into_iter()
        .zip(next)
        .filter(|(c, _)| c.closed_at.is_none())
        .map(|(c, next_opened_at)| Open {
            id: c.id,
            source: source.to_string(),
            url: c.url,
            opened_at: c.opened_at,
            next_opened_at,
        })
        .collect()
}

fn records_closing(open: Open, end: DateTime<Utc>) -> [Record; 3] {
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
        let row = |id, opened_at, closed_at| Stored {
            id,
            url: "u".to_string(),
            opened_at,
            closed_at,
        };
        let all = vec![
            row(1, t(10), None),
            row(2, t(20), Some(t(25))),
            row(3, t(30), None),
        ];
        let open = still_open("s", all);
        let got: Vec<_> = open.iter().map(|o| (o.id, o.next_opened_at)).collect();
        assert_eq!(got, vec![(1, Some(t(20))), (3, None)]);
    }
}
